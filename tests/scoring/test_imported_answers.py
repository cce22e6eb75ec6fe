"""Imported ``company`` and ``job_title`` reach scoring as form answers do.

The rule is the same whoever hands answers over: an answer is kept only while the
gating consent is live (now, and when the answer was given) and only for purposes the
lead permits; a withdrawal forgets it; an unchanged answer changes nothing; an older
answer never replaces a newer one. Imports hand each row with a grant over for that
row's purpose, at its ``consent_at``; a row without evidence grants nothing.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from capture.imports import ImportReport, format_report, import_contacts
from consent_ledger.api import ConsentLedger
from scoring import services
from scoring.models import LeadAttribute
from tests.factories import notice_hash
from tests.scoring.conftest import counts, grant, rows, withdraw
from zeroparty import lead_signals
from zeroparty.db import Database
from zeroparty.wiring import build_ledger

HEADER = (
    "email,name,company,job_title,country,purpose,consent_source,consent_at,notice_sha256,method"
)
AT = "2026-03-01T09:30:00Z"
LATER = "2026-04-01T09:30:00Z"
ATTRIBUTES = (
    "SELECT id, subject_id, kind, name, value, purposes, source_ref, occurred_at, consent_seq "
    "FROM scoring_attributes ORDER BY id"
)


def run(
    database: Database, *lines: str, ledger: ConsentLedger | None = None, **options: Any
) -> ImportReport:
    data = "\n".join([HEADER, *lines]).encode() + b"\n"
    ledger = ledger if ledger is not None else build_ledger(database)
    report = import_contacts(ledger, io.BytesIO(data), **options)
    assert report.ok, report.problems
    return report


def attributes(database: Database) -> dict[tuple[str, str], LeadAttribute]:
    with database.read() as session:
        kept = session.scalars(select(LeadAttribute).order_by(LeadAttribute.id)).all()
        return {(a.name, a.value): a for a in kept}


def lead_id(database: Database, email: str) -> str:
    found = rows(database, "SELECT subject_id FROM subject_profiles WHERE email = :e", e=email)
    return str(found[0].subject_id)


def explained(database: Database, email: str) -> services.Explanation:
    with database.read() as session:
        return services.explain(session.connection(), lead_id(database, email))


def scoring_state(database: Database) -> list[list[Any]]:
    """Every scoring row that a re-import might touch, ids and timestamps included."""
    return [
        [tuple(r) for r in rows(database, ATTRIBUTES)],
        [tuple(r) for r in rows(database, "SELECT * FROM scoring_leads ORDER BY subject_id")],
        [tuple(r) for r in rows(database, "SELECT * FROM scoring_points ORDER BY id")],
        [tuple(r) for r in rows(database, "SELECT * FROM scoring_stage_changes ORDER BY id")],
    ]


@pytest.fixture
def profiling(database: Database) -> str:
    return notice_hash(database, "profiling")


@pytest.fixture
def newsletter(database: Database) -> str:
    return notice_hash(database, "newsletter")


def test_a_profiling_grant_keeps_the_row_job_title_and_the_score_counts_it(
    database: Database, profiling: str
) -> None:
    report = run(database, f"ann@example.com,Ann,Acme,CTO,DE,profiling,fair,{AT},{profiling},")
    assert report.rows_for_scoring == 1
    kept = attributes(database)
    assert set(kept) == {("company", "Acme"), ("job_title", "CTO")}
    title = kept[("job_title", "CTO")]
    assert title.kind == "field"
    assert orjson.loads(title.purposes) == ["profiling"]
    assert title.source_ref == f"import:{report.file_sha256}:2"
    assert title.occurred_at == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    entry = rows(database, "SELECT seq FROM consent_events WHERE source = 'import'")[0]
    assert title.consent_seq == entry.seq
    explanation = explained(database, "ann@example.com")
    assert explanation.permitted
    assert [(p.rule, p.source, p.consent_seq) for p in explanation.points] == [
        ("decision-maker", "field:job_title=CTO", entry.seq)
    ]
    assert explanation.score == 15


def test_a_row_granting_another_purpose_keeps_nothing_without_scoring_consent(
    database: Database, newsletter: str
) -> None:
    run(database, f"nl@example.com,,Acme,CTO,,newsletter,fair,{AT},{newsletter},double-opt-in")
    assert counts(database)["scoring_attributes"] == 0
    assert counts(database)["scoring_leads"] == 0


def test_a_pending_double_opt_in_grant_keeps_nothing(database: Database, newsletter: str) -> None:
    grant(database, "pend@example.com", occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    run(database, f"pend@example.com,,Acme,CTO,,newsletter,fair,{AT},{newsletter},")
    assert counts(database)["scoring_attributes"] == 0


def test_a_contact_row_without_evidence_keeps_nothing_even_for_a_scored_lead(
    database: Database,
) -> None:
    grant(database, "known@example.com", occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    report = run(database, "known@example.com,Known,Acme,CTO,,,,,,")
    assert report.rows_for_scoring == 0
    assert counts(database)["scoring_attributes"] == 0


def test_another_purpose_counts_while_scoring_is_permitted_and_until_withdrawn(
    database: Database, newsletter: str
) -> None:
    grant(database, "both@example.com", occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    run(database, f"both@example.com,,,CTO,,newsletter,fair,{AT},{newsletter},double-opt-in")
    title = attributes(database)[("job_title", "CTO")]
    assert orjson.loads(title.purposes) == ["newsletter"]
    assert explained(database, "both@example.com").score == 15
    withdraw(database, "both@example.com", "newsletter")
    assert attributes(database) == {}
    assert explained(database, "both@example.com").score == 0


def test_a_value_given_before_scoring_consent_began_is_not_kept(
    database: Database, newsletter: str
) -> None:
    """As for events: the answer counts only if the gating consent was live then."""
    grant(database, "late@example.com", occurred_at=datetime(2026, 6, 1, tzinfo=UTC))
    run(database, f"late@example.com,,,CTO,,newsletter,fair,{AT},{newsletter},double-opt-in")
    assert attributes(database) == {}


def test_a_withdrawal_forgets_the_imported_answers_and_the_score(
    database: Database, profiling: str
) -> None:
    run(database, f"wd@example.com,,Acme,CTO,,profiling,fair,{AT},{profiling},")
    assert counts(database)["scoring_attributes"] == 2
    withdraw(database, "wd@example.com")
    after = counts(database)
    assert (after["scoring_attributes"], after["scoring_leads"], after["scoring_points"]) == (
        0,
        0,
        0,
    )


def test_reimporting_the_same_file_changes_nothing_in_scoring(
    database: Database, profiling: str, newsletter: str
) -> None:
    lines = (
        f"ann@example.com,Ann,Acme,CTO,DE,profiling,fair,{AT},{profiling},",
        f"ann@example.com,Ann,Acme,CTO,DE,newsletter,fair,{AT},{newsletter},double-opt-in",
        f"bob@example.com,Bob,Initech,Analyst,,profiling,fair,{AT},{profiling},",
        "cat@example.com,Cat,Bought Ltd,CEO,,,,,,",
    )
    first = run(database, *lines)
    assert (first.rows_for_scoring, first.grants_recorded) == (3, 3)
    before = scoring_state(database)
    assert len(before[0]) == 4  # two answers each for ann and bob, none for cat
    again = run(database, *lines)
    assert (again.grants_recorded, again.grants_already_recorded) == (0, 3)
    assert again.rows_for_scoring == 3  # handed over again; scoring found nothing new
    assert scoring_state(database) == before


def test_one_value_granted_for_two_purposes_stays_while_either_is_permitted(
    database: Database, profiling: str, newsletter: str
) -> None:
    """Rows of one lead in separate chunks: the answer collects both purposes."""
    run(
        database,
        f"two@example.com,,,CTO,,profiling,fair,{AT},{profiling},",
        f"two@example.com,,,CTO,,newsletter,fair,{LATER},{newsletter},double-opt-in",
        chunk_rows=1,
    )
    (title,) = attributes(database).values()
    assert orjson.loads(title.purposes) == ["profiling", "newsletter"]
    assert title.source_ref.endswith(":2")  # the first sighting stands
    withdraw(database, "two@example.com", "newsletter")
    assert set(attributes(database)) == {("job_title", "CTO")}
    assert explained(database, "two@example.com").score == 15


def test_an_older_imported_value_never_replaces_a_newer_answer(
    submit: Callable[..., Any], database: Database, profiling: str
) -> None:
    submit("form@example.com", job_title="Intern")
    run(database, f"form@example.com,,,CTO,,profiling,old CRM,{AT},{profiling},")
    assert set(attributes(database)) == {("job_title", "Intern")}
    assert explained(database, "form@example.com").score == 0


def test_a_newer_imported_value_replaces_an_older_one(database: Database, profiling: str) -> None:
    run(database, f"new@example.com,,,Intern,,profiling,fair,{AT},{profiling},")
    assert explained(database, "new@example.com").score == 0
    run(database, f"new@example.com,,,Head of Data,,profiling,fair,{LATER},{profiling},")
    assert set(attributes(database)) == {("job_title", "Head of Data")}
    assert explained(database, "new@example.com").score == 15


def test_a_dry_run_keeps_nothing(database: Database, profiling: str) -> None:
    report = run(
        database, f"dry@example.com,,Acme,CTO,,profiling,fair,{AT},{profiling},", dry_run=True
    )
    assert report.rows_for_scoring == 0
    assert set(counts(database).values()) == {0}
    assert "for scoring: company, job_title of rows with consent evidence, on import" in (
        "\n".join(format_report(report, "x.csv"))
    )


def test_a_rejected_import_keeps_nothing_in_scoring(database: Database, profiling: str) -> None:
    good = [f"ok{i}@example.com,,,CTO,,profiling,fair,{AT},{profiling}," for i in range(5)]
    data = "\n".join([HEADER, *good, "broken,,,,,,,,,"]).encode() + b"\n"
    report = import_contacts(build_ledger(database), io.BytesIO(data), chunk_rows=2)
    assert not report.ok
    assert report.rows_for_scoring == 0
    assert set(counts(database).values()) == {0}


def test_the_report_says_where_the_columns_went(database: Database, profiling: str) -> None:
    line = f"rep@example.com,,Acme,CTO,,profiling,fair,{AT},{profiling},"
    report = run(database, line)
    assert report.columns_for_scoring == ("company", "job_title")
    assert report.columns_not_kept == ()
    text = "\n".join(format_report(report, "x.csv"))
    assert "for scoring: company, job_title of 1 row(s) with consent evidence handed on" in text
    assert "not kept" not in text
    # A ledger wired without scoring: nothing listens to lead signals.
    report = run(database, line, ledger=ConsentLedger(database))
    assert (report.columns_for_scoring, report.columns_not_kept) == ((), ("company", "job_title"))
    assert "not kept: company, job_title" in "\n".join(format_report(report, "x.csv"))


def test_answers_published_on_a_plain_connection_join_its_transaction(
    database: Database,
) -> None:
    grant(database, "conn@example.com", occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    signal = lead_signals.LeadSignal(
        lead_id(database, "conn@example.com"),
        datetime(2026, 2, 1, tzinfo=UTC),
        "import:test:2",
        (
            lead_signals.LeadInput(
                lead_signals.InputKind.FIELD, "job_title", ("CTO",), ("profiling",)
            ),
        ),
    )

    def publish_and_fail() -> None:
        with database.write_connection() as connection:
            build_ledger(database).publish_signals(connection, [signal])
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        publish_and_fail()
    assert attributes(database) == {}
    with database.write_connection() as connection:
        build_ledger(database).publish_signals(connection, [signal])
    assert set(attributes(database)) == {("job_title", "CTO")}


def test_a_grant_with_method_double_opt_in_is_live(database: Database, newsletter: str) -> None:
    """The premise of the tests above that use newsletter rows."""
    run(database, f"doi@example.com,,,,,newsletter,fair,{AT},{newsletter},double-opt-in")
    state = rows(database, "SELECT permitted FROM consent_state WHERE purpose_key = 'newsletter'")
    assert [bool(r.permitted) for r in state] == [True]
