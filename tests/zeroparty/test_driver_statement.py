"""DriverStatement: a statement compiled once, run on the DBAPI cursor, with the values
the statement holds itself (literals, LIMIT) sent along with the caller's."""

from __future__ import annotations

from sqlalchemy import Integer, String, bindparam, cast, literal, select

from zeroparty.db import Database, DriverStatement, driver_cursor


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
