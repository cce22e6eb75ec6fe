"""Current consent as a fold over the ledger: the pure fold, the kept projection, the rebuild.

The kept projection (``consent_state``) is maintained entry by entry inside each append;
the rebuild and ``verify`` fold the whole ledger. They must never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from consent_ledger import ledger, projection, state
from consent_ledger.actions import ConsentAction, ConsentMethod
from consent_ledger.models import ConsentEvent, ConsentState
from consent_ledger.projection import PENDING, ConsentFact, StateValue, apply, fold
from consent_ledger.subjects import get_or_create_subject
from consent_ledger.verify import verify_ledger
from tests.conftest import DatabaseFactory
from tests.factories import record
from zeroparty.db import Database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOTICE_A = "a" * 64
NOTICE_B = "b" * 64
NEGATIVE = [
    ConsentAction.WITHDRAWN,
    ConsentAction.REFUSED,
    ConsentAction.GPC_OPT_OUT,
    ConsentAction.EXPIRED,
    ConsentAction.ERASED,
]


def fact(
    seq: int,
    action: ConsentAction | str,
    at: datetime | int = 0,
    *,
    confirm: bool = False,
    notice: str | None = None,
) -> ConsentFact:
    """A fact at ``T0 + at`` seconds (or at the given moment)."""
    moment = at if isinstance(at, datetime) else T0 + timedelta(seconds=at)
    if notice is None and action == ConsentAction.GRANTED:
        notice = NOTICE_A
    return ConsentFact(seq, str(action), confirm, notice, moment)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- apply and fold ------------------------------------------------------------------


def test_nothing_folds_to_nothing() -> None:
    assert fold([]) is None


def test_plain_grant_is_permitted_from_its_moment() -> None:
    assert apply(None, fact(1, "granted", 5)) == StateValue(
        "granted", True, at(5), NOTICE_A, 1, at(5)
    )


def test_double_opt_in_is_pending_until_confirmed() -> None:
    pending = apply(None, fact(1, "granted", 0, confirm=True))
    assert pending == StateValue(PENDING, False, None, NOTICE_A, 1, at(0))

    confirmed = apply(pending, fact(2, "confirmed", 60))
    # Permission begins at the confirmation; the notice is the one granted under.
    assert confirmed == StateValue("confirmed", True, at(60), NOTICE_A, 2, at(60))


def test_confirmation_without_a_pending_grant_changes_nothing() -> None:
    granted = apply(None, fact(1, "granted", 0))
    after = apply(granted, fact(2, "confirmed", 10))
    assert (after.status, after.permitted, after.since, after.notice_sha256) == (
        "granted",
        True,
        at(0),
        NOTICE_A,
    )

    withdrawn = apply(granted, fact(2, "withdrawn", 5))
    late_click = apply(withdrawn, fact(3, "confirmed", 10))
    assert (late_click.status, late_click.permitted, late_click.since) == (
        "withdrawn",
        False,
        at(5),
    )
    assert (late_click.last_seq, late_click.last_occurred_at) == (3, at(10))

    confirmed = fold([fact(1, "granted", 0, confirm=True), fact(2, "confirmed", 1)])
    assert confirmed is not None
    twice = apply(confirmed, fact(3, "confirmed", 2))
    assert (twice.status, twice.permitted, twice.since) == ("confirmed", True, at(1))


def test_confirmation_with_no_history_permits_nothing() -> None:
    alone = apply(None, fact(1, "confirmed", 0))
    assert alone.permitted is False
    assert alone.since is None


def test_new_grant_replaces_pending_notice() -> None:
    pending = apply(None, fact(1, "granted", 0, confirm=True, notice=NOTICE_A))
    regrant = apply(pending, fact(2, "granted", 1, notice=NOTICE_B))
    assert regrant == StateValue("granted", True, at(1), NOTICE_B, 2, at(1))


@pytest.mark.parametrize("negative", NEGATIVE)
def test_every_negative_action_ends_permission(negative: ConsentAction) -> None:
    granted = apply(None, fact(1, "granted", 0))
    after = apply(granted, fact(2, negative, 30))
    assert after == StateValue(negative.value, False, at(30), NOTICE_A, 2, at(30))


@pytest.mark.parametrize("negative", NEGATIVE)
def test_negative_action_cancels_a_pending_grant(negative: ConsentAction) -> None:
    state_value = fold(
        [
            fact(1, "granted", 0, confirm=True),
            fact(2, negative, 1),
            fact(3, "confirmed", 2),
        ]
    )
    assert state_value is not None
    assert state_value.permitted is False
    assert state_value.status == negative.value


@pytest.mark.parametrize("negative", NEGATIVE)
@pytest.mark.parametrize("negative_first", [True, False], ids=["no-seq-first", "no-seq-last"])
def test_no_wins_over_a_grant_at_the_same_instant(
    negative: ConsentAction, negative_first: bool
) -> None:
    """SPEC rule 8, whichever was written to the ledger first."""
    no_seq, yes_seq = (1, 2) if negative_first else (2, 1)
    facts = [fact(yes_seq, "granted", 10), fact(no_seq, negative, 10)]
    for order in (facts, facts[::-1]):
        result = fold(order)
        assert result is not None
        assert result.permitted is False
        assert result.status == negative.value


def test_no_wins_over_a_confirmation_at_the_same_instant() -> None:
    result = fold(
        [
            fact(1, "granted", 0, confirm=True),
            fact(3, "withdrawn", 10),
            fact(2, "confirmed", 10),
        ]
    )
    assert result is not None
    assert (result.status, result.permitted) == ("withdrawn", False)


def test_a_later_grant_wins_over_an_earlier_no() -> None:
    result = fold([fact(1, "withdrawn", 0), fact(2, "granted", 1)])
    assert result is not None
    assert (result.status, result.permitted) == ("granted", True)


def test_out_of_order_arrival_folds_by_when_it_happened() -> None:
    """An offline grant recorded after a withdrawal it preceded does not revive consent."""
    result = fold([fact(1, "withdrawn", 100), fact(2, "granted", 50)])
    assert result is not None
    assert (result.status, result.permitted, result.since) == ("withdrawn", False, at(100))
    assert (result.last_seq, result.last_occurred_at) == (1, at(100))

    # A withdrawal recorded late, but which happened before the grant, changes nothing.
    result = fold([fact(1, "granted", 100), fact(2, "withdrawn", 50)])
    assert result is not None
    assert (result.status, result.permitted, result.since) == ("granted", True, at(100))


def test_fold_continues_from_a_given_state() -> None:
    first = fold([fact(1, "granted", 0)])
    assert fold([fact(2, "withdrawn", 1)], first) == fold(
        [fact(1, "granted", 0), fact(2, "withdrawn", 1)]
    )


# --- pure properties -----------------------------------------------------------------

ACTIONS = [a.value for a in ConsentAction]


@st.composite
def fact_lists(draw: st.DrawFn, max_size: int = 12) -> list[ConsentFact]:
    """Facts for one pair with seq 1..n and few distinct instants (so ties happen)."""
    size = draw(st.integers(0, max_size))
    return [
        ConsentFact(
            seq,
            draw(st.sampled_from(ACTIONS)),
            draw(st.booleans()),
            draw(st.sampled_from([None, NOTICE_A, NOTICE_B])),
            at(draw(st.integers(0, 4))),
        )
        for seq in range(1, size + 1)
    ]


def _incremental(facts: list[ConsentFact]) -> StateValue | None:
    """What ``ledger._project`` does as entries arrive in seq order."""
    current: StateValue | None = None
    seen: list[ConsentFact] = []
    for item in facts:
        seen.append(item)
        if current is None:
            current = apply(None, item)
        elif projection.comes_after(item, current):
            current = apply(current, item)
        else:
            current = fold(seen)
    return current


def _reference_permitted(facts: list[ConsentFact]) -> bool:
    """An independent reading of the rules: the latest effective word decides."""
    permitted = pending = False
    for item in sorted(
        facts, key=lambda f: (f.occurred_at, f.action in {a.value for a in NEGATIVE}, f.seq)
    ):
        if item.action == "granted":
            permitted, pending = not item.confirmation_required, item.confirmation_required
        elif item.action == "confirmed":
            if pending:
                permitted, pending = True, False
        else:
            permitted = pending = False
    return permitted


@given(fact_lists(), st.randoms(use_true_random=False))
@settings(max_examples=300)
def test_fold_does_not_depend_on_arrival_order(facts: list[ConsentFact], rng: Any) -> None:
    shuffled = list(facts)
    rng.shuffle(shuffled)
    assert fold(shuffled) == fold(facts)


@given(fact_lists())
@settings(max_examples=300)
def test_incremental_application_equals_the_fold(facts: list[ConsentFact]) -> None:
    assert _incremental(facts) == fold(facts)


@given(fact_lists())
@settings(max_examples=300)
def test_fold_agrees_with_a_reference_reading(facts: list[ConsentFact]) -> None:
    result = fold(facts)
    assert (result.permitted if result else False) == _reference_permitted(facts)


@given(fact_lists())
@settings(max_examples=300)
def test_a_no_at_the_latest_instant_always_wins(facts: list[ConsentFact]) -> None:
    if not facts:
        return
    latest = max(f.occurred_at for f in facts)
    if any(f.action in {a.value for a in NEGATIVE} for f in facts if f.occurred_at == latest):
        result = fold(facts)
        assert result is not None
        assert result.permitted is False


@given(fact_lists())
@settings(max_examples=300)
def test_folded_state_points_at_the_last_fact_applied(facts: list[ConsentFact]) -> None:
    result = fold(facts)
    if not facts:
        assert result is None
        return
    assert result is not None
    last = max(facts, key=projection.order_key)
    assert (result.last_seq, result.last_occurred_at) == (last.seq, last.occurred_at)
    if result.permitted:
        assert result.since is not None
        assert result.since <= result.last_occurred_at


# --- the kept projection in the database ---------------------------------------------


def _kept(database: Database) -> dict[tuple[str, str], StateValue]:
    with database.read() as session:
        rows = session.execute(select(ConsentState)).scalars().all()
        return {
            (r.subject_id, r.purpose_key): StateValue(
                r.status, r.permitted, r.since, r.notice_sha256, r.last_seq, r.last_occurred_at
            )
            for r in rows
        }


def _folded_from_ledger(database: Database) -> dict[tuple[str, str], StateValue]:
    with database.read() as session:
        rows = session.execute(select(ConsentEvent)).scalars().all()
        pairs: dict[tuple[str, str], list[ConsentFact]] = {}
        for r in rows:
            pairs.setdefault((r.subject_id, r.purpose_key), []).append(
                ConsentFact(
                    r.seq, r.action, r.confirmation_required, r.notice_sha256, r.occurred_at
                )
            )
    folded = {pair: fold(facts) for pair, facts in pairs.items()}
    return {pair: value for pair, value in folded.items() if value is not None}


def _rebuild(database: Database) -> int:
    with database.write() as session:
        return state.rebuild_projection(session)


def _verified(database: Database) -> bool:
    with database.connect() as connection:
        report = verify_ledger(connection)
    assert report.problem is None, report.problem
    return True


def test_kept_projection_equals_the_rebuilt_one(database: Database) -> None:
    record(database, "a@example.com", "newsletter")
    record(database, "a@example.com", "newsletter", ConsentAction.CONFIRMED)
    record(database, "a@example.com", "profiling")
    record(database, "b@example.com", "profiling")
    record(database, "b@example.com", "profiling", ConsentAction.WITHDRAWN)
    record(database, "c@example.com", "sale_sharing", ConsentAction.REFUSED, jurisdiction="US-CA")
    record(database, "c@example.com", "product_updates", method=ConsentMethod.DOUBLE_OPT_IN)

    kept = _kept(database)
    assert kept == _folded_from_ledger(database)
    assert _rebuild(database) == len(kept) == 5
    assert _kept(database) == kept
    assert _verified(database)


def test_rebuild_restores_a_damaged_projection(database: Database) -> None:
    record(database, "a@example.com", "profiling")
    record(database, "b@example.com", "profiling", ConsentAction.WITHDRAWN)
    kept = _kept(database)
    with database.write() as session:
        row = session.execute(select(ConsentState).limit(1)).scalar_one()
        row.permitted = not row.permitted
        row.status = "tampered"
    assert _kept(database) != kept
    assert _rebuild(database) == 2
    assert _kept(database) == kept
    assert _verified(database)


def test_rebuild_of_an_empty_ledger_is_empty(database: Database) -> None:
    assert _rebuild(database) == 0
    assert _kept(database) == {}


def test_rebuild_in_batches(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(7):
        record(database, f"batch{i}@example.com", "profiling", evidence={})
    kept = _kept(database)
    monkeypatch.setattr(state, "REBUILD_BATCH", 3)
    assert _rebuild(database) == 7
    assert _kept(database) == kept


def _status(database: Database, email: str, purpose: str) -> tuple[str, bool]:
    with database.read() as session:
        answer = state.consent_now(session, email, purpose)
    return answer.status, answer.permitted


def test_late_withdrawal_that_happened_before_the_grant_changes_nothing(
    database: Database,
) -> None:
    record(database, "late@example.com", "profiling")
    record(
        database,
        "late@example.com",
        "profiling",
        ConsentAction.WITHDRAWN,
        occurred_at=datetime.now(UTC) - timedelta(hours=1),
    )
    assert _status(database, "late@example.com", "profiling") == ("granted", True)
    assert _kept(database) == _folded_from_ledger(database)
    assert _verified(database)


def test_late_grant_that_happened_before_the_withdrawal_does_not_revive(
    database: Database,
) -> None:
    now = datetime.now(UTC)
    record(database, "revive@example.com", "profiling", occurred_at=now - timedelta(hours=3))
    record(
        database,
        "revive@example.com",
        "profiling",
        ConsentAction.WITHDRAWN,
        occurred_at=now - timedelta(hours=1),
    )
    # Recorded last, happened in between: the withdrawal still has the last word.
    record(database, "revive@example.com", "profiling", occurred_at=now - timedelta(hours=2))
    assert _status(database, "revive@example.com", "profiling") == ("withdrawn", False)
    kept = _kept(database)
    assert kept == _folded_from_ledger(database)
    (value,) = kept.values()
    assert value.last_seq == 2
    assert _rebuild(database) == 1
    assert _kept(database) == kept
    assert _verified(database)


def test_confirmation_recorded_before_its_grant_arrives(database: Database) -> None:
    now = datetime.now(UTC)
    record(
        database,
        "order@example.com",
        "newsletter",
        ConsentAction.CONFIRMED,
        occurred_at=now - timedelta(minutes=1),
    )
    assert _status(database, "order@example.com", "newsletter")[1] is False
    record(database, "order@example.com", "newsletter", occurred_at=now - timedelta(minutes=5))
    # Folded by time: grant (pending), then the confirmation.
    assert _status(database, "order@example.com", "newsletter") == ("confirmed", True)
    assert _kept(database) == _folded_from_ledger(database)
    assert _verified(database)


def test_no_at_the_same_instant_wins_in_the_database(
    database: Database, subtests: pytest.Subtests
) -> None:
    moment = datetime.now(UTC) - timedelta(minutes=10)
    for negative in NEGATIVE:
        with subtests.test(negative=negative.value):
            # The no is written first, the grant second: seq order must not decide.
            email = f"tie-{negative.value}@example.com"
            record(database, email, "profiling", negative, occurred_at=moment)
            record(database, email, "profiling", occurred_at=moment)
            assert _status(database, email, "profiling") == (negative.value, False)
            assert _kept(database) == _folded_from_ledger(database)
    assert _verified(database)


# --- properties against the database --------------------------------------------------

PAIRS = [(s, p) for s in range(2) for p in ("newsletter", "profiling")]


@dataclass(frozen=True)
class Step:
    pair: int
    action: str
    offset: int
    confirmation_required: bool
    notice: str | None
    batch_with_previous: bool


steps = st.builds(
    Step,
    pair=st.integers(0, len(PAIRS) - 1),
    action=st.sampled_from(ACTIONS),
    offset=st.integers(0, 5),
    confirmation_required=st.booleans(),
    notice=st.sampled_from([None, NOTICE_A, NOTICE_B]),
    batch_with_previous=st.booleans(),
)


def _batches(sequence: list[Step]) -> list[list[Step]]:
    batches: list[list[Step]] = []
    for step in sequence:
        if batches and step.batch_with_previous:
            batches[-1].append(step)
        else:
            batches.append([step])
    return batches


@given(st.lists(steps, min_size=1, max_size=14))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
def test_kept_projection_equals_fold_and_rebuild_and_chain_verifies(
    database_factory: DatabaseFactory, sequence: list[Step]
) -> None:
    # Append-only tables cannot be emptied between examples: a fresh database for each.
    url = database_factory.new_url()
    database = Database.from_url(url)
    try:
        _check_appends(database, sequence)
    finally:
        database.dispose()
        database_factory.drop(url)


def _check_appends(database: Database, sequence: list[Step]) -> None:
    with database.write() as session:
        subject_ids = [get_or_create_subject(session, f"prop{i}@example.com").id for i in range(2)]
    facts: dict[tuple[str, str], list[ConsentFact]] = {}
    for batch in _batches(sequence):
        drafts = []
        for step in batch:
            subject, purpose = PAIRS[step.pair]
            drafts.append(
                ledger.EntryDraft(
                    subject_id=subject_ids[subject],
                    purpose=purpose,
                    action=step.action,
                    source="api",
                    method="electronic",
                    occurred_at=at(step.offset),
                    notice_sha256=step.notice,
                    confirmation_required=step.confirmation_required,
                )
            )
        with database.write() as session:
            entries = ledger.append_many(session, drafts)
        for entry in entries:
            facts.setdefault((entry.subject_id, entry.purpose), []).append(
                ConsentFact(
                    entry.seq,
                    entry.action,
                    entry.confirmation_required,
                    entry.notice_sha256,
                    entry.occurred_at,
                )
            )

    expected = {pair: fold(pair_facts) for pair, pair_facts in facts.items()}
    kept = _kept(database)
    assert kept == expected
    assert _verified(database)
    assert _rebuild(database) == len(expected)
    assert _kept(database) == expected
    with database.connect() as connection:
        report = verify_ledger(connection)
    assert report.ok
    assert report.entries == len(sequence)
