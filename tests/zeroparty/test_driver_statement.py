"""DriverStatement: a statement compiled once, run on the DBAPI cursor, with the values
the statement holds itself (literals, LIMIT) sent along with the caller's; Prepared:
the same with the column types' bind and result processing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from typing import cast as cast_table

import pytest
from sqlalchemy import Integer, String, Table, bindparam, cast, insert, literal, or_, select
from sqlalchemy.exc import IntegrityError

from scoring.models import ScoredLead
from zeroparty.db import Database, DriverStatement, Prepared, driver_cursor


def test_a_statement_with_literals_and_parameters_runs_on_the_driver(database: Database) -> None:
    statement = (
        select(
            cast(literal(7), String) + ":" + bindparam("name", type_=String),
            cast(bindparam("n", type_=Integer), Integer) + 1,
        )
        .limit(1)
        .offset(0)
    )
    with database.write_connection() as connection:
        compiled = DriverStatement.compile(statement, connection.dialect)
        assert compiled.defaults, "the literal 7, ':' and the LIMIT travel with it"
        with driver_cursor(connection) as cursor:
            cursor.execute(compiled.sql, compiled.parameters({"name": "abc", "n": 41}))
            assert tuple(cursor.fetchone()) == ("7:abc", 42)


# --- Prepared: compiled once, run on the driver, with the column types' own processing ---

WHEN = datetime(2026, 12, 5, 6, 1, 2, 345678, tzinfo=UTC)
_leads = cast_table(Table, ScoredLead.__table__)
_INSERT = Prepared(insert(_leads))
_SELECT = Prepared(select(_leads).where(_leads.c.subject_id.in_(bindparam("ids", expanding=True))))


def _lead(n: int, **values: object) -> dict[str, object]:
    return {
        "subject_id": f"lead-{n}",
        "stage": "MQL",
        "score": 12.5 + n,
        "model_id": None,
        "scored_at": WHEN,
        "stage_since": WHEN + timedelta(seconds=n),
        "recycled_score": None,
        "lead_types": None,
        **values,
    }


def test_prepared_writes_and_reads_what_the_engine_does(database: Database) -> None:
    with database.write_connection() as connection:
        _INSERT.execute(connection, _lead(1))
        _INSERT.executemany(connection, [_lead(2, model_id=7), _lead(3, lead_types="{}")])
        connection.execute(insert(_leads), _lead(4))  # the engine, for comparison
    with database.read() as session:
        engine_rows = session.execute(select(_leads).order_by(_leads.c.subject_id)).all()
    with database.write_connection() as connection:
        prepared = _SELECT.execute(connection, {"ids": ["lead-1", "lead-2", "lead-3", "lead-4"]})
    assert sorted(tuple(row) for row in prepared) == [tuple(row) for row in engine_rows]
    # Named as the statement's columns; timestamps aware UTC, floats as floats.
    ordered = sorted(prepared, key=lambda row: row.subject_id)
    assert ordered[0].scored_at == WHEN
    assert ordered[0].scored_at.tzinfo is not None
    assert ordered[0].stage_since == WHEN + timedelta(seconds=1)
    assert isinstance(ordered[0].score, float)
    assert ordered[0].score == 13.5
    assert [row.model_id for row in ordered] == [None, 7, None, None]


def test_prepared_is_compiled_once_per_dialect(database: Database) -> None:
    with database.write_connection() as connection:
        assert _SELECT.on(connection.dialect) is _SELECT.on(connection.dialect)
        for count in (1, 3):  # expanding lists are rendered per call
            assert _SELECT.execute(connection, {"ids": [f"x{i}" for i in range(count)]}) == []


def test_a_statement_returning_nothing_gives_no_rows(database: Database) -> None:
    with database.write_connection() as connection:
        assert _INSERT.execute(connection, _lead(5)) == []


def test_driver_errors_come_out_as_sqlalchemy_exceptions(database: Database) -> None:
    def insert_twice() -> None:
        with database.write_connection() as connection:
            _INSERT.execute(connection, _lead(6))
            _INSERT.execute(connection, _lead(6))

    with pytest.raises(IntegrityError):
        insert_twice()
    with database.read() as session:  # the failed transaction left nothing behind
        assert session.execute(select(_leads.c.subject_id)).all() == []


_BY_IDS_AND_STAGES = Prepared(
    select(_leads.c.subject_id, _leads.c.stage)
    .where(
        _leads.c.subject_id.in_(bindparam("ids", expanding=True)),
        _leads.c.stage.in_(bindparam("stages", expanding=True)),
        _leads.c.score >= bindparam("least"),
    )
    .order_by(_leads.c.subject_id)
    .limit(10)
)


def test_in_lists_are_rendered_once_per_shape_and_read_right(database: Database) -> None:
    with database.write_connection() as connection:
        _INSERT.executemany(
            connection, [_lead(n, stage="MQL" if n % 2 else "SQL") for n in range(1, 7)]
        )

        def ids(rows: list[Any]) -> list[str]:
            return [row.subject_id for row in rows]

        prepared = _BY_IDS_AND_STAGES.on(connection.dialect)
        asked = {"ids": ["lead-1", "lead-2", "lead-3"], "stages": ["MQL"], "least": 0}
        assert ids(_BY_IDS_AND_STAGES.execute(connection, asked)) == ["lead-1", "lead-3"]
        assert set(prepared.shapes) == {(1, 3)} or set(prepared.shapes) == {(3, 1)}
        # The same shape with other values: the kept SQL, the new values.
        again = {"ids": ["lead-4", "lead-5", "lead-6"], "stages": ["SQL"], "least": 16}
        assert ids(_BY_IDS_AND_STAGES.execute(connection, again)) == ["lead-4", "lead-6"]
        assert len(prepared.shapes) == 1
        both = {"ids": ["lead-5", "lead-6"], "stages": ["MQL", "SQL"], "least": 0}
        assert ids(_BY_IDS_AND_STAGES.execute(connection, both)) == ["lead-5", "lead-6"]
        none = {"ids": [], "stages": ["MQL"], "least": 0}
        assert _BY_IDS_AND_STAGES.execute(connection, none) == []
        assert len(prepared.shapes) == 3
        # A timestamp inside a list goes through its type's processing, as a single one.
        at = Prepared(select(_leads.c.subject_id).where(_leads.c.scored_at.in_([WHEN])))
        assert len(at.execute(connection)) == 6


_BY_TIME = Prepared(
    select(_leads.c.subject_id)
    .where(
        or_(
            _leads.c.scored_at == bindparam("at"),
            _leads.c.stage_since == bindparam("at"),
            _leads.c.model_id == bindparam("model"),
        )
    )
    .order_by(_leads.c.subject_id)
)


def test_plain_parameters_are_processed_in_order_and_may_repeat(database: Database) -> None:
    """A statement without lists or values of its own (rendered without a dict): a
    timestamp goes in as the engine writes it, a name used twice is sent twice, a None
    is sent as NULL, not processed."""
    with database.write_connection() as connection:
        _INSERT.executemany(connection, [_lead(n, model_id=n) for n in range(1, 5)])
        cases = [
            {"at": WHEN, "model": None},
            {"at": WHEN + timedelta(seconds=2), "model": 4},
            {"at": WHEN - timedelta(days=1), "model": 3},
        ]
        for values in cases:
            prepared = [row.subject_id for row in _BY_TIME.execute(connection, values)]
            engine = list(connection.execute(_BY_TIME.statement, values).scalars())
            assert prepared == engine
        assert [r.subject_id for r in _BY_TIME.execute(connection, cases[0])] == [
            "lead-1",
            "lead-2",
            "lead-3",
            "lead-4",
        ]
        assert [r.subject_id for r in _BY_TIME.execute(connection, cases[1])] == [
            "lead-2",
            "lead-4",
        ]
        assert [r.subject_id for r in _BY_TIME.execute(connection, cases[2])] == ["lead-3"]
