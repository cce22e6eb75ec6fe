"""The events each behaviour rule counts, for many leads at once (a full rescore).

:func:`scoring.engine.score_lead` is handed every event of a lead and, rule by rule,
counts the events of the rule's type inside its window in (time, id) order, scoring
those counted ``min_count`` to ``min_count + max_count - 1``. Here the same count runs
over a batch of leads in one pass: one statement reads only the events some rule can
count (of a type a rule reads, inside the widest window of that type's rules), lead by
lead in (time, id) order, and the counted events come out per lead as ``(rule index, event)``
pairs for :func:`scoring.engine.counted_points`. The window test and the order are the
engine's own (the same timestamps compared in Python; ids ordered by code point: SQLite's
``BINARY`` collation, PostgreSQL's ``"C"``), so the points are exactly the engine's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect

from scoring.engine import EventFact
from scoring.rules import BehaviourRule, ScoringModel
from zeroparty.db import Prepared, Transaction, UTCDateTime, connection_of, driver_cursor

Counted = dict[str, list[tuple[int, EventFact]]]
_by_rule = itemgetter(0)


def rule_since(rule: BehaviourRule, now: datetime) -> datetime | None:
    """The earliest time ``rule`` counts an event at ``now`` (``None``: no window), as
    :func:`scoring.engine.behaviour_points` has it."""
    return now - timedelta(days=rule.window_days) if rule.window_days else None


# A counted event as read: (rule index, event id, time as the driver gives it, consent seq).
CountedRow = tuple[int, str, Any, int]


@dataclass(frozen=True, slots=True)
class CountedRows:
    """Per lead, the events the model's behaviour rules count, as read: ``(i, event id,
    stored time, consent seq)`` for ``model.behaviour[i]``, in rule order, then in (time,
    id) order (leads without any are absent). ``loaded`` turns a stored time into
    UTCDateTime's value; ``stored`` is the other way; ``as_written`` is a stored time as
    UTCDateTime writes it (itself, unless a row was written otherwise)."""

    by_lead: dict[str, list[CountedRow]]
    loaded: Callable[[Any], datetime]
    stored: Callable[[datetime], Any]

    def as_written(self, stored_at: Any) -> Any:
        if stored_at.__class__ is str and len(stored_at) != _SQLITE_TIME_LENGTH:
            return self.stored(self.loaded(stored_at))
        return stored_at


def counted_events(
    session: Transaction, model: ScoringModel, subject_ids: Sequence[str], now: datetime
) -> Counted:
    """Per lead of ``subject_ids`` (sorted, distinct), the events ``model``'s behaviour
    rules count at ``now``: ``(i, event)`` for ``model.behaviour[i]``, in rule order,
    then in (time, id) order. Leads without any are absent."""
    counted = counted_rows(session, model, subject_ids, now)
    rules, loaded = model.behaviour, counted.loaded
    return {
        subject_id: [
            (i, EventFact(event_id, rules[i].event, loaded(occurred_at), seq))
            for i, event_id, occurred_at, seq in rows
        ]
        for subject_id, rows in counted.by_lead.items()
    }


def counted_rows(
    session: Transaction, model: ScoringModel, subject_ids: Sequence[str], now: datetime
) -> CountedRows:
    """:func:`counted_events` as read, without making an event of each (a full rescore
    writes them straight into point rows)."""
    connection = connection_of(session)
    dialect = connection.dialect
    # Times are compared as the driver gives them (SQLite: UTCDateTime's fixed-width
    # text, in time order; PostgreSQL: aware datetimes); only counted events' times are
    # turned into UTCDateTime's values, and only by the caller.
    stored, loaded = _time_processors(dialect)
    found: dict[str, list[CountedRow]] = {}
    rules = model.behaviour
    if not rules or not subject_ids:
        return CountedRows(found, loaded, stored)
    by_type: dict[str, list[tuple[int, BehaviourRule, Any]]] = {}
    for i, rule in enumerate(rules):
        since = rule_since(rule, now)
        by_type.setdefault(rule.event, []).append(
            (i, rule, None if since is None else stored(since))
        )
    types = sorted(by_type)
    # Per type, the earliest time any of its rules counts (None: all of them).
    earliest = [_earliest([rule_since(rule, now) for _, rule, _ in by_type[t]]) for t in types]
    statement = _statement(dialect.name, tuple(e is not None for e in earliest))
    values: dict[str, object] = {
        "ids": list(subject_ids),
        "first": subject_ids[0],
        "last": subject_ids[-1],
    }
    for n, (event_type, since) in enumerate(zip(types, earliest, strict=True)):
        values[f"type_{n}"] = event_type
        if since is not None:
            values[f"since_{n}"] = since
    sql, parameters = statement.on(dialect).render(values)
    with driver_cursor(connection) as cursor:
        cursor.execute(sql, parameters)
        rows = cursor.fetchall()  # plain tuples: most rows are only counted
    # Per type, its rules: (index, window start, the counts from which it scores).
    reading = {
        event_type: tuple(
            (i, since, rule.min_count, rule.min_count + rule.max_count)
            for i, rule, since in of_type
        )
        for event_type, of_type in by_type.items()
    }
    lead: str | None = None
    counts: list[int] = []
    for subject_id, event_type, event_id, occurred_at, consent_seq in rows:
        if subject_id != lead:  # rows come lead by lead
            lead, counts = subject_id, [0] * len(rules)
        for i, since, first, beyond in reading[event_type]:
            if since is not None and occurred_at < since:
                continue
            count = counts[i] = counts[i] + 1
            if first <= count < beyond:
                found.setdefault(subject_id, []).append((i, event_id, occurred_at, consent_seq))
    if len(rules) > 1:
        for pairs in found.values():
            pairs.sort(key=_by_rule)  # stable: each rule's events stay in (time, id) order
    return CountedRows(found, loaded, stored)


def _time_processors(dialect: Dialect) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """UTCDateTime's bind and result processing on ``dialect``: a time as the driver
    stores it, and a stored time as UTCDateTime loads it."""
    processors = _TIME_PROCESSORS.get(dialect)
    if processors is None:
        impl = UTCDateTime().dialect_impl(dialect)
        bind = impl.bind_processor(dialect)
        result = impl.result_processor(dialect, None)
        processors = _TIME_PROCESSORS[dialect] = (
            bind or _unchanged,
            result or _unchanged,
        )
    return processors


def _unchanged(value: Any) -> Any:
    return value


_SQLITE_TIME_LENGTH = len("2026-12-05 09:30:00.000000")  # UTCDateTime's text on SQLite
_TIME_PROCESSORS: dict[Dialect, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}


def _earliest(sinces: list[datetime | None]) -> datetime | None:
    return None if any(s is None for s in sinces) else min(s for s in sinces if s is not None)


_STATEMENTS: dict[tuple[str, tuple[bool, ...]], Prepared] = {}


def _statement(dialect: str, windowed: tuple[bool, ...]) -> Prepared:
    """The read for one shape of model: per type read, whether it has a window. The
    batch's ids bound the index range scanned (``first``/``last``) and filter it."""
    key = (dialect, windowed)
    found = _STATEMENTS.get(key)
    if found is not None:
        return found
    kinds = " OR ".join(
        f"(type = :type_{n} AND occurred_at >= :since_{n})" if has_window else f"type = :type_{n}"
        for n, has_window in enumerate(windowed)
    )
    if dialect == "postgresql":
        among, collate = "subject_id = ANY(:ids)", ' COLLATE "C"'
        ids = bindparam("ids", type_=ARRAY(String))
    else:
        among, collate = "subject_id IN :ids", ""
        ids = bindparam("ids", expanding=True)
    sql = (
        "SELECT subject_id, type, id, occurred_at, consent_seq FROM scoring_events "
        f"WHERE subject_id BETWEEN :first AND :last AND {among} AND ({kinds}) "
        f"ORDER BY subject_id, occurred_at, id{collate}"
    )
    binds: list[Any] = [ids, bindparam("first", type_=String), bindparam("last", type_=String)]
    for n, has_window in enumerate(windowed):
        binds.append(bindparam(f"type_{n}", type_=String))
        if has_window:
            binds.append(bindparam(f"since_{n}", type_=UTCDateTime))
    statement = (
        text(sql)
        .bindparams(*binds)
        .columns(
            subject_id=String,
            type=String,
            id=String,
            occurred_at=String,  # as the driver gives it (see counted_events)
            consent_seq=BigInteger,
        )
    )
    prepared = _STATEMENTS[key] = Prepared(statement)
    return prepared
