"""Answers about consent: now, at a past moment, and the projection's rebuild."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from itertools import groupby
from typing import Any, cast

import orjson
from sqlalchemy import Table, and_, bindparam, delete, insert, select
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

from consent_ledger import projection
from consent_ledger.actions import Mechanism
from consent_ledger.ledger import lock_head
from consent_ledger.models import ConsentEvent, ConsentState, Purpose, Subject, SubjectProfile
from zeroparty.db import WRITE_OPTION, DriverStatement, Transaction, connection_of
from zeroparty.errors import NotFound

DEFAULT_STATUS = "default"
NO_RECORD = projection.NO_RECORD
REBUILD_BATCH = 2000


class UnknownPurpose(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"purpose: no purpose {key[:64]!r}", fields={"purpose": "unknown purpose"})


@dataclass(frozen=True, slots=True)
class ConsentAnswer:
    """Whether contacting a subject for a purpose is permitted (at a moment)."""

    purpose: str
    permitted: bool
    status: str
    since: datetime | None
    notice_sha256: str | None


def _default_answer(
    purpose: str, mechanism: str, jurisdictions: str, subject_jurisdiction: str | None
) -> ConsentAnswer:
    """The answer for a subject with no entry for the purpose (SPEC rule 8).

    Opt-in: nothing is permitted. Opt-out: permitted only for a subject whose recorded
    jurisdiction is one the purpose names; unknown jurisdiction means not permitted.
    """
    if mechanism == Mechanism.OPT_OUT and subject_jurisdiction:
        allowed = orjson.loads(jurisdictions)
        if subject_jurisdiction in allowed:
            return ConsentAnswer(purpose, True, DEFAULT_STATUS, None, None)
    return ConsentAnswer(purpose, False, NO_RECORD, None, None)


_p, _sp, _s, _cs, _ev = (
    cast(Table, model.__table__)
    for model in (Purpose, SubjectProfile, Subject, ConsentState, ConsentEvent)
)
# One indexed query answers "may I contact X about P now": the purpose's mechanism,
# the subject's jurisdiction and the kept state, all outer-joined so an unknown
# address still gets the purpose's default and an unknown purpose gets no row.
_CURRENT = (
    select(
        _p.c.mechanism,
        _p.c.jurisdictions,
        _s.c.jurisdiction,
        _cs.c.status,
        _cs.c.permitted,
        _cs.c.since,
        _cs.c.notice_sha256,
    )
    .select_from(
        _p.outerjoin(_sp, _sp.c.email == bindparam("email"))
        .outerjoin(_s, _s.c.id == _sp.c.subject_id)
        .outerjoin(_cs, and_(_cs.c.subject_id == _sp.c.subject_id, _cs.c.purpose_key == _p.c.key))
    )
    .where(_p.c.key == bindparam("purpose"))
)
_PURPOSE_AND_SUBJECT = (
    select(_p.c.mechanism, _p.c.jurisdictions, _s.c.jurisdiction)
    .select_from(_p.outerjoin(_s, _s.c.id == bindparam("sid")))
    .where(_p.c.key == bindparam("purpose"))
)
_FACTS_UNTIL = (
    select(
        _ev.c.seq,
        _ev.c.action,
        _ev.c.confirmation_required,
        _ev.c.notice_sha256,
        _ev.c.occurred_at,
    )
    .where(
        _ev.c.subject_id == bindparam("sid"),
        _ev.c.purpose_key == bindparam("purpose"),
        _ev.c.occurred_at <= bindparam("at"),
    )
    .order_by(_ev.c.occurred_at, _ev.c.seq)
)


def consent_now(session: Transaction, email: str, purpose: str) -> ConsentAnswer:
    """Whether ``email`` (normalised) may be contacted for ``purpose`` now.

    Read from the kept projection, which every append updates in its own transaction,
    so a withdrawal is reflected by the next request (SPEC rule 2).
    """
    row = connection_of(session).execute(_CURRENT, {"email": email, "purpose": purpose}).first()
    if row is None:
        raise UnknownPurpose(purpose)
    mechanism, jurisdictions, subject_jurisdiction, status, permitted, since, notice = row
    if status is None or status == NO_RECORD:
        return _default_answer(purpose, mechanism, jurisdictions, subject_jurisdiction)
    return ConsentAnswer(purpose, bool(permitted), status, since, notice)


@cache
def _current_statement(dialect: Dialect) -> DriverStatement:
    return DriverStatement.compile(_CURRENT, dialect)


def _aware(value: datetime | str | None) -> datetime | None:
    # What UTCDateTime gives back: SQLite keeps naive UTC text, PostgreSQL an aware value.
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def consent_now_on_cursor(cursor: Any, dialect: Dialect, email: str, purpose: str) -> ConsentAnswer:
    """:func:`consent_now` as one statement, compiled once, on a DBAPI cursor: the
    consent API's look-up, which SQLAlchemy's execution would make several times dearer
    than the query itself."""
    statement = _current_statement(dialect)
    cursor.execute(statement.sql, statement.parameters({"email": email, "purpose": purpose}))
    row = cursor.fetchone()
    if row is None:
        raise UnknownPurpose(purpose)
    mechanism, jurisdictions, subject_jurisdiction, status, permitted, since, notice = row
    if status is None or status == NO_RECORD:
        return _default_answer(purpose, mechanism, jurisdictions, subject_jurisdiction)
    return ConsentAnswer(purpose, bool(permitted), status, _aware(since), notice)


def consent_at(session: Transaction, subject_id: str, purpose: str, at: datetime) -> ConsentAnswer:
    """What ``subject_id`` had permitted for ``purpose`` at ``at``, from the ledger itself.

    Only entries whose action happened at or before ``at`` count, folded in the same
    order as the kept projection.
    """
    connection = connection_of(session)
    head = connection.execute(_PURPOSE_AND_SUBJECT, {"sid": subject_id, "purpose": purpose})
    row = head.first()
    if row is None:
        raise UnknownPurpose(purpose)
    state = folded_state_at(connection, subject_id, purpose, at)
    if state is None or state.status == NO_RECORD:
        return _default_answer(purpose, row.mechanism, row.jurisdictions, row.jurisdiction)
    return ConsentAnswer(purpose, state.permitted, state.status, state.since, state.notice_sha256)


def folded_state_at(
    connection: Connection, subject_id: str, purpose: str, at: datetime
) -> projection.StateValue | None:
    """The pair's entries whose action happened at or before ``at``, folded (``None``:
    there were none). What :func:`consent_at` answers from, without the defaults."""
    params = {"sid": subject_id, "purpose": purpose, "at": at}
    facts = [projection.ConsentFact(*r) for r in connection.execute(_FACTS_UNTIL, params)]
    return projection.fold(facts)


def iter_folded_pairs(
    connection: Connection,
) -> Iterator[tuple[str, str, projection.StateValue]]:
    """Replay the ledger pair by pair, in (subject, purpose) order, in constant memory."""
    stmt = (
        select(
            _ev.c.subject_id,
            _ev.c.purpose_key,
            _ev.c.seq,
            _ev.c.action,
            _ev.c.confirmation_required,
            _ev.c.notice_sha256,
            _ev.c.occurred_at,
        )
        .order_by(_ev.c.subject_id, _ev.c.purpose_key, _ev.c.occurred_at, _ev.c.seq)
        .execution_options(stream_results=True, yield_per=REBUILD_BATCH)
    )
    with connection.execute(stmt) as rows:
        for (subject_id, purpose), group in groupby(rows, key=lambda r: (r[0], r[1])):
            facts = [projection.ConsentFact(r[2], r[3], r[4], r[5], r[6]) for r in group]
            state = projection.fold(facts)
            assert state is not None
            yield subject_id, purpose, state


def rebuild_projection(session: Session) -> int:
    """Throw the kept projection away and rebuild it from the ledger; returns its rows.

    Run in a write transaction: appends wait for it, and readers see the old projection
    until it commits.
    """
    connection = session.connection()
    lock_head(connection)  # appends wait until the rebuilt projection commits
    connection.execute(delete(_cs))
    batch: list[dict[str, object]] = []
    count = 0
    # A second connection streams the ledger while this one writes the projection. It
    # only reads: begun IMMEDIATE (the write engine's option) it would wait on SQLite
    # for the lock this very transaction holds.
    reader_engine = connection.engine.execution_options(**{WRITE_OPTION: False})
    with reader_engine.connect() as reader:
        for subject_id, purpose, state in iter_folded_pairs(reader):
            batch.append(
                {
                    "subject_id": subject_id,
                    "purpose_key": purpose,
                    "status": state.status,
                    "permitted": state.permitted,
                    "since": state.since,
                    "notice_sha256": state.notice_sha256,
                    "last_seq": state.last_seq,
                    "last_occurred_at": state.last_occurred_at,
                }
            )
            if len(batch) >= REBUILD_BATCH:
                connection.execute(insert(_cs), batch)
                count += len(batch)
                batch.clear()
    if batch:
        connection.execute(insert(_cs), batch)
        count += len(batch)
    return count
