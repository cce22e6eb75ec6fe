"""``ledger verify`` finds every kind of tampering, as an attacker with SQL would do it.

The attacker here has full access to the database: the append-only triggers are
dropped (SQLite) or disabled (PostgreSQL) before the ledger is changed, so only the
hash chain, the head and the projection check stand between them and a silent edit.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from consent_ledger import state, verify
from consent_ledger.actions import ConsentAction
from consent_ledger.entries import ENTRY_FIELDS, GENESIS_HASH, format_timestamp, seal
from consent_ledger.models import ConsentEvent
from consent_ledger.verify import VerifyReport, verify_ledger
from tests.factories import record
from zeroparty.cli import main
from zeroparty.db import Database
from zeroparty.settings import Settings

BASE = datetime(2026, 1, 1, tzinfo=UTC)


@contextmanager
def tampering(database: Database) -> Iterator[Connection]:
    """A transaction with the append-only guards out of the way, committed at the end."""
    with database.engine.begin() as connection:
        if database.dialect == "sqlite":
            for name in ("consent_events_no_update", "consent_events_no_delete"):
                connection.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        else:
            connection.execute(text("ALTER TABLE consent_events DISABLE TRIGGER USER"))
        yield connection


def _verify(database: Database) -> VerifyReport:
    with database.connect() as connection:
        return verify_ledger(connection)


def _problem(database: Database) -> tuple[int | None, str]:
    report = _verify(database)
    assert report.problem is not None, "tampering went unnoticed"
    return report.problem.seq, report.problem.kind


def _row(connection: Connection, seq: int) -> dict[str, Any]:
    row = connection.execute(text("SELECT * FROM consent_events WHERE seq = :s"), {"s": seq})
    return dict(row.mappings().one())


def _fill(database: Database, count: int = 5, *, evidence: bool = False) -> None:
    """``count`` entries, alternating grants and withdrawals for two leads."""
    for i in range(count):
        action = ConsentAction.GRANTED if i % 4 < 2 else ConsentAction.WITHDRAWN
        record(
            database,
            f"lead{i % 2}@example.com",
            "profiling",
            action,
            occurred_at=BASE + timedelta(minutes=i),
            evidence={"ip": "192.0.2.0/24", "n": i} if evidence else {},
        )


def _forged_fields(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The hashed fields of a stored row, with ``changes`` applied, ready for :func:`seal`."""
    values = {
        "seq": template["seq"],
        "prev_hash": template["prev_hash"],
        "subject_id": template["subject_id"],
        "purpose": template["purpose_key"],
        "action": template["action"],
        "confirmation_required": bool(template["confirmation_required"]),
        "notice_sha256": template["notice_sha256"],
        "source": template["source"],
        "source_ref": template["source_ref"],
        "jurisdiction": template["jurisdiction"],
        "method": template["method"],
        "locale": template["locale"],
        "occurred_at": template["occurred_at"],
        "recorded_at": template["recorded_at"],
        "evidence_sha256": template["evidence_sha256"],
    }
    values.update(changes)
    assert tuple(sorted(values)) == tuple(sorted(ENTRY_FIELDS))
    return values


def _stored_time(connection: Connection, seq: int, column: str) -> str:
    """A stored timestamp in canonical spelling, as the app reads it back."""
    moment = connection.execute(
        select(getattr(ConsentEvent, column)).where(ConsentEvent.seq == seq)
    ).scalar_one()
    return format_timestamp(moment)


# --- intact ledgers ------------------------------------------------------------------


def test_empty_ledger_is_intact(database: Database) -> None:
    report = _verify(database)
    assert report.ok
    assert (report.entries, report.head_seq, report.head_hash) == (0, 0, GENESIS_HASH)
    assert report.projection_rows == 0


def test_ledger_with_entries_is_intact(database: Database) -> None:
    _fill(database, 6, evidence=True)
    record(database, "other@example.com", "newsletter")
    report = _verify(database)
    assert report.ok, report.problem
    assert (report.entries, report.head_seq) == (7, 7)
    assert report.projection_rows == 3


def test_erased_evidence_still_verifies(database: Database) -> None:
    """Erasure deletes evidence bodies; the commitments stay and the chain holds."""
    _fill(database, 4, evidence=True)
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM consent_evidence WHERE seq IN (1, 3)"))
    assert _verify(database).ok


# --- tampering -----------------------------------------------------------------------
#
# Where several tamperings share one database, each is undone (with the guards still out
# of the way) and the ledger checked intact again before the next: a fresh database per
# case would cost more than the checks themselves.


def _set(database: Database, seq: int, column: str, value: Any) -> None:
    with tampering(database) as connection:
        connection.execute(
            text(f"UPDATE consent_events SET {column} = :v WHERE seq = :s"), {"v": value, "s": seq}
        )


def _insert_rows(connection: Connection, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        columns = ", ".join(row)
        values = ", ".join(f":{name}" for name in row)
        connection.execute(text(f"INSERT INTO consent_events ({columns}) VALUES ({values})"), row)


def test_edited_field_is_found_at_that_entry(database: Database, subtests: pytest.Subtests) -> None:
    _fill(database, 5)
    with database.connect() as connection:
        other_lead = _row(connection, 2)["subject_id"]
        originals = {seq: _row(connection, seq) for seq in (1, 3)}
    edits: list[tuple[int, str, Any]] = [
        (3, "action", "granted"),
        (3, "subject_id", other_lead),  # a real subject: only the chain can object
        (3, "purpose_key", "newsletter"),
        (3, "notice_sha256", "f" * 64),
        (3, "source", "console"),
        (3, "jurisdiction", "US-CA"),
        (3, "confirmation_required", True),
        (3, "occurred_at", originals[1]["occurred_at"]),
        (3, "recorded_at", originals[1]["occurred_at"]),
        (3, "evidence_sha256", "e" * 64),
        (1, "method", "verbal"),
        (1, "locale", "de"),
    ]
    for seq, column, value in edits:
        with subtests.test(seq=seq, column=column):
            assert value != originals[seq][column]
            _set(database, seq, column, value)
            assert _problem(database) == (seq, "hash")
            _set(database, seq, column, originals[seq][column])
            assert _verify(database).ok


def test_deleted_entries_are_found(database: Database, subtests: pytest.Subtests) -> None:
    _fill(database, 5)
    with database.connect() as connection:
        rows = {seq: _row(connection, seq) for seq in range(1, 6)}
    cases = [
        ((3,), (3, "gap")),  # from the middle
        ((1,), (1, "gap")),  # the first
        ((2, 3), (2, "gap")),
        ((4, 5), (4, "head")),  # a truncated tail: the chain is fine, the head is not
        ((5,), (5, "head")),
        ((1, 2, 3, 4, 5), (1, "head")),  # everything
    ]
    for deleted, expected in cases:
        with subtests.test(deleted=deleted):
            with tampering(database) as connection:
                for seq in deleted:
                    connection.execute(
                        text("DELETE FROM consent_events WHERE seq = :s"), {"s": seq}
                    )
            report = _verify(database)
            assert report.problem is not None
            assert (report.problem.seq, report.problem.kind) == expected
            if expected[1] == "gap":
                assert f"found seq {max(deleted) + 1}" in report.problem.message
            else:
                assert (report.entries, report.head_seq) == (min(deleted) - 1, 5)
            with tampering(database) as connection:
                _insert_rows(connection, [rows[seq] for seq in deleted])
            assert _verify(database).ok


def test_forged_entry_appended_without_the_head_is_found(database: Database) -> None:
    """A correctly chained and sealed entry, but ``ledger_head`` was not moved."""
    _fill(database, 4)
    with database.engine.begin() as connection:  # INSERT needs no trigger out of the way
        last = _row(connection, 4)
        fields = _forged_fields(
            last,
            seq=5,
            prev_hash=last["hash"],
            action="granted",
            occurred_at=_stored_time(connection, 4, "occurred_at"),
            recorded_at=_stored_time(connection, 4, "recorded_at"),
        )
        forged = {**last, "seq": 5, "prev_hash": last["hash"], "action": "granted"}
        forged["hash"] = seal(fields)
        _insert_rows(connection, [forged])
    assert _problem(database) == (5, "head")


def test_tampered_head_is_found(database: Database, subtests: pytest.Subtests) -> None:
    _fill(database, 4)
    with database.connect() as connection:
        third, fourth = _row(connection, 3)["hash"], _row(connection, 4)["hash"]
    cases: list[tuple[str, dict[str, Any], tuple[int | None, str]]] = [
        ("UPDATE ledger_head SET seq = 3, hash = :h", {"h": third}, (4, "head")),
        ("UPDATE ledger_head SET hash = :h", {"h": "e" * 64}, (4, "head")),
        ("UPDATE ledger_head SET seq = 9", {}, (5, "head")),
        ("DELETE FROM ledger_head", {}, (None, "head")),
    ]
    for statement, params, expected in cases:
        with subtests.test(statement=statement):
            with database.engine.begin() as connection:
                connection.execute(text(statement), params)
            assert _problem(database) == expected
            with database.engine.begin() as connection:
                connection.execute(text("DELETE FROM ledger_head"))
                connection.execute(
                    text("INSERT INTO ledger_head (id, seq, hash) VALUES (1, 4, :h)"),
                    {"h": fourth},
                )
            assert _verify(database).ok


def test_reordered_entries_are_found(database: Database) -> None:
    _fill(database, 5)
    with tampering(database) as connection:
        connection.execute(text("UPDATE consent_events SET seq = -2 WHERE seq = 2"))
        connection.execute(text("UPDATE consent_events SET seq = 2 WHERE seq = 3"))
        connection.execute(text("UPDATE consent_events SET seq = 3 WHERE seq = -2"))
    assert _problem(database) == (2, "link")


def test_swapped_content_is_found(database: Database) -> None:
    """Rows keep their seq; everything else of entries 2 and 3 changes places."""
    _fill(database, 5)
    with tampering(database) as connection:
        two, three = _row(connection, 2), _row(connection, 3)
        columns = [c for c in two if c != "seq"]
        assignments = ", ".join(f"{c} = :{c}" for c in columns)
        statement = text(f"UPDATE consent_events SET {assignments} WHERE seq = :seq")
        # The hash column is unique: park one row's hash while the other moves.
        connection.execute(statement, {**three, "seq": 2, "hash": "c" * 64})
        connection.execute(statement, {**two, "seq": 3})
        connection.execute(
            text("UPDATE consent_events SET hash = :h WHERE seq = 2"), {"h": three["hash"]}
        )
    seq, kind = _problem(database)
    assert seq == 2
    assert kind in {"link", "hash"}


def test_resealed_entry_is_found_at_the_next_link(database: Database) -> None:
    """An edit whose own hash is recomputed correctly breaks the next entry's link."""
    _fill(database, 5)
    with tampering(database) as connection:
        stored = _row(connection, 3)
        fields = _forged_fields(
            stored,
            action="granted",
            occurred_at=_stored_time(connection, 3, "occurred_at"),
            recorded_at=_stored_time(connection, 3, "recorded_at"),
        )
        resealed = seal(fields)
        assert resealed != stored["hash"]
        connection.execute(
            text("UPDATE consent_events SET action = 'granted', hash = :h WHERE seq = 3"),
            {"h": resealed},
        )
    report = _verify(database)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (4, "link")
    assert "entry 3" in report.problem.message


def test_resealed_last_entry_is_found_by_the_head(database: Database) -> None:
    _fill(database, 3)
    with tampering(database) as connection:
        stored = _row(connection, 3)
        fields = _forged_fields(
            stored,
            source_ref="forged",
            occurred_at=_stored_time(connection, 3, "occurred_at"),
            recorded_at=_stored_time(connection, 3, "recorded_at"),
        )
        connection.execute(
            text("UPDATE consent_events SET source_ref = 'forged', hash = :h WHERE seq = 3"),
            {"h": seal(fields)},
        )
    assert _problem(database) == (3, "head")


def test_tampered_evidence_is_found(database: Database, subtests: pytest.Subtests) -> None:
    _fill(database, 4, evidence=True)
    record(database, "bare@example.com", "profiling", evidence={})  # entry 5, no evidence
    with database.connect() as connection:
        kept = {
            row.seq: (row.salt, row.body)
            for row in connection.execute(text("SELECT seq, salt, body FROM consent_evidence"))
        }
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("UPDATE consent_evidence SET body = :b WHERE seq = 2",
         {"b": '{"ip":"203.0.113.0/24","n":1}'}, 2),
        ("UPDATE consent_evidence SET body = :b WHERE seq = 3", {"b": kept[3][1] + " "}, 3),
        ("UPDATE consent_evidence SET salt = :s WHERE seq = 4", {"s": "0" * 32}, 4),
        ("INSERT INTO consent_evidence (seq, salt, body) VALUES (5, :s, :b)",
         {"s": "1" * 32, "b": '{"ip":"192.0.2.0/24"}'}, 5),
    ]  # fmt: skip
    for statement, params, seq in cases:
        with subtests.test(statement=statement):
            with database.engine.begin() as connection:
                connection.execute(text(statement), params)
            assert _problem(database) == (seq, "evidence")
            with database.engine.begin() as connection:
                connection.execute(text("DELETE FROM consent_evidence"))
                for kept_seq, (salt, body) in kept.items():
                    connection.execute(
                        text("INSERT INTO consent_evidence (seq, salt, body) VALUES (:q, :s, :b)"),
                        {"q": kept_seq, "s": salt, "b": body},
                    )
            assert _verify(database).ok


def test_tampered_projection_is_found(database: Database, subtests: pytest.Subtests) -> None:
    _fill(database, 5)
    record(database, "third@example.com", "newsletter")
    statements = [
        "UPDATE consent_state SET permitted = NOT permitted "
        "WHERE last_seq = (SELECT MAX(last_seq) FROM consent_state)",
        "UPDATE consent_state SET status = 'granted'",
        "UPDATE consent_state SET notice_sha256 = NULL",
        "UPDATE consent_state SET since = last_occurred_at WHERE since IS NULL",
        "UPDATE consent_state SET last_seq = last_seq + 1",
        "DELETE FROM consent_state WHERE last_seq = (SELECT MIN(last_seq) FROM consent_state)",
        "DELETE FROM consent_state",
        # A row for a pair the ledger has no entry for.
        "INSERT INTO consent_state (subject_id, purpose_key, status, permitted, since, "
        "notice_sha256, last_seq, last_occurred_at) SELECT subject_id, 'sale_sharing', "
        "status, permitted, since, notice_sha256, last_seq, last_occurred_at "
        "FROM consent_state WHERE last_seq = (SELECT MAX(last_seq) FROM consent_state)",
    ]
    for statement in statements:
        with subtests.test(statement=statement):
            with database.engine.begin() as connection:
                changed = connection.execute(text(statement)).rowcount
            assert changed > 0
            assert _problem(database)[1] == "projection"
            # The projection is derived: rebuilding it from the ledger repairs it.
            with database.write() as session:
                assert state.rebuild_projection(session) == 3
            assert _verify(database).ok


def test_chain_problem_is_reported_before_projection_problem(database: Database) -> None:
    _fill(database, 4)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE consent_state SET permitted = NOT permitted"))
    with tampering(database) as connection:
        connection.execute(text("UPDATE consent_events SET source = 'import' WHERE seq = 2"))
    assert _problem(database) == (2, "hash")


# --- progress ------------------------------------------------------------------------


def test_progress_is_reported_for_both_phases(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(9):
        record(database, f"p{i}@example.com", "profiling", evidence={})
    monkeypatch.setattr(verify, "PROGRESS_EVERY", 2)
    calls: list[tuple[str, int, int]] = []
    with database.connect() as connection:
        report = verify_ledger(connection, lambda *args: calls.append(args))
    assert report.ok
    assert [c for c in calls if c[0] == "chain"] == [("chain", n, 9) for n in (2, 4, 6, 8)]
    assert [c for c in calls if c[0] == "projection"] == [
        ("projection", n, 9) for n in (2, 4, 6, 8)
    ]


def test_no_progress_below_the_interval(database: Database) -> None:
    _fill(database, 3)
    calls: list[tuple[str, int, int]] = []
    with database.connect() as connection:
        assert verify_ledger(connection, lambda *args: calls.append(args)).ok
    assert verify.PROGRESS_EVERY > 3
    assert calls == []


# --- the command ---------------------------------------------------------------------


def test_cli_exit_0_when_intact(
    cli_env: Settings, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(database, 3)
    assert main(["ledger", "verify", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ledger intact: 3 entries")
    assert err == ""


def test_cli_exit_0_on_empty_ledger(
    cli_env: Settings, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", "verify", "--quiet"]) == 0
    assert "ledger intact: 0 entries" in capsys.readouterr().out


def test_cli_exit_1_names_the_first_bad_entry(
    cli_env: Settings,
    database: Database,
    capsys: pytest.CaptureFixture[str],
    subtests: pytest.Subtests,
) -> None:
    _fill(database, 4)
    with database.connect() as connection:
        rows = {seq: _row(connection, seq) for seq in (2, 4)}
    cases = [
        ("UPDATE consent_events SET action = 'refused' WHERE seq = 2", "at entry 2 (hash)"),
        ("DELETE FROM consent_events WHERE seq = 2", "at entry 2 (gap)"),
        ("DELETE FROM consent_events WHERE seq = 4", "at entry 4 (head)"),
    ]
    for statement, expected in cases:
        with subtests.test(statement=statement):
            with tampering(database) as connection:
                connection.execute(text(statement))
            assert main(["ledger", "verify", "--quiet"]) == 1
            out = capsys.readouterr().out
            assert out.startswith("LEDGER BROKEN")
            assert expected in out
            with tampering(database) as connection:
                connection.execute(text("DELETE FROM consent_events WHERE seq IN (2, 4)"))
                _insert_rows(connection, [rows[2], rows[4]])
            assert main(["ledger", "verify", "--quiet"]) == 0
            capsys.readouterr()


def test_cli_shows_progress_unless_quiet(
    cli_env: Settings,
    database: Database,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fill(database, 4)
    monkeypatch.setattr(verify, "PROGRESS_EVERY", 2)
    assert main(["ledger", "verify"]) == 0
    out, err = capsys.readouterr()
    assert "chain: 2/4 entries" in err
    assert "chain: 4/4 entries" in err
    assert out.startswith("ledger intact: 4 entries")
    assert main(["ledger", "verify", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


# --- resources -----------------------------------------------------------------------


def test_verify_closes_its_cursors_when_it_stops_early(database: Database) -> None:
    _fill(database, 4)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE consent_state SET permitted = NOT permitted"))
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems.append(_verify(database).problem)  # stops in the projection check
        gc.collect()
        with tampering(database) as connection:
            connection.execute(text("UPDATE consent_events SET source = 'x' WHERE seq = 2"))
        problems.append(_verify(database).problem)  # stops in the chain check
        gc.collect()
    assert [p.kind if p else None for p in problems] == ["projection", "hash"]
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
