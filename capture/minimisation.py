"""Minimisation after intake (issue 16, GDPR Art. 5(1)(c) and (e)).

An answer is stored only for the purposes its field (or quiz question) serves, or
because the request itself needs it (``needed = true``). When the last of those
purposes is withdrawn, refused, opted out of by GPC or expires, the answer has nothing
left to serve: :func:`on_consent_change`, a ledger listener named in capture's wiring,
deletes it in the same transaction that records the change (as scoring's listener
deletes the scores), and with it the quiz results (outcome, tags, score) of the
submissions it belonged to, which derive from every answer on the quiz's path.

Grants cost no query; an erasure is left to erasure, which removes everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import cast

import orjson
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.engine import Connection, Dialect

from capture.definitions import Definition, from_json
from capture.models import Answer, DefinitionVersion, Submission
from consent_ledger.actions import Mechanism
from consent_ledger.api import is_negative
from consent_ledger.entries import LedgerEntry
from consent_ledger.read_model import consent_states, leads, purposes
from zeroparty.db import DriverStatement, Transaction, connection_of, driver_cursor

_answers = cast(Table, Answer.__table__)
_submissions = cast(Table, Submission.__table__)

_LEAD_ANSWERS = (
    select(Answer.id, Answer.submission_id, Answer.field, DefinitionVersion.definition)
    .join(Submission, Submission.id == Answer.submission_id)
    .join(DefinitionVersion, DefinitionVersion.id == Submission.definition_id)
    .where(Answer.subject_id == bindparam("sid"))
)
# The lead's permitted purposes: those with a live entry, and opt-out purposes without
# an entry where the lead's jurisdiction is one the purpose names (SPEC rule 8).
_PERMISSIONS = (
    select(
        purposes.c.key,
        purposes.c.mechanism,
        purposes.c.jurisdictions,
        consent_states.c.status,
        consent_states.c.permitted,
        leads.c.jurisdiction,
    )
    .select_from(purposes)
    .join(leads, leads.c.subject_id == bindparam("sid"))
    .outerjoin(
        consent_states,
        (consent_states.c.purpose_key == purposes.c.key)
        & (consent_states.c.subject_id == leads.c.subject_id),
    )
)


@cache
def _lead_answers(dialect: Dialect) -> DriverStatement:
    return DriverStatement.compile(_LEAD_ANSWERS, dialect)


def _permitted(connection: Connection, subject_id: str) -> set[str]:
    allowed: set[str] = set()
    for key, mechanism, jurisdictions, status, permitted, jurisdiction in connection.execute(
        _PERMISSIONS, {"sid": subject_id}
    ):
        if status is not None and status != "none":
            if permitted:
                allowed.add(key)
        elif mechanism == Mechanism.OPT_OUT and jurisdiction in orjson.loads(jurisdictions):
            allowed.add(key)
    return allowed


def answer_purposes(definition: Definition) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """Per stored answer name: (needed by the request itself, the purposes it serves)."""
    served: dict[str, tuple[bool, tuple[str, ...]]] = {
        spec.name: (spec.needed, spec.purposes) for spec in definition.fields
    }
    for question in definition.questions():
        served[question.key] = (False, definition.question_purposes(question))
    return served


def forget_unserved_answers(tx: Transaction, subject_ids: Iterable[str]) -> int:
    """Delete each lead's answers none of whose purposes is permitted any more (and not
    needed by the request), and the quiz results of their submissions; returns how many
    answers went."""
    removed = 0
    connection = connection_of(tx)
    # On the driver's cursor, compiled once: a withdrawal asks this of every lead, and
    # most have no answers kept.
    statement = _lead_answers(connection.dialect)
    for subject_id in sorted(set(subject_ids)):
        with driver_cursor(connection) as cursor:
            cursor.execute(statement.sql, statement.parameters({"sid": subject_id}))
            rows = cursor.fetchall()
        if not rows:
            continue
        allowed = _permitted(connection, subject_id)
        definitions: dict[str, dict[str, tuple[bool, tuple[str, ...]]]] = {}
        gone: list[int] = []
        touched: set[str] = set()
        for answer_id, submission_id, field_name, raw in rows:
            served = definitions.get(raw)
            if served is None:
                served = definitions[raw] = answer_purposes(from_json(raw))
            needed, serves = served.get(field_name, (False, ()))
            if needed or not serves or set(serves) & allowed:
                continue  # kept: needed, or a purpose it serves is still permitted
            gone.append(answer_id)
            touched.add(submission_id)
        if gone:
            connection.execute(delete(_answers).where(_answers.c.id.in_(gone)))
            # Quiz results derive from every answer on the path: none survives a gap.
            connection.execute(
                update(_submissions)
                .where(_submissions.c.id.in_(sorted(touched)))
                .values(outcome=None, tags=None, score=None)
            )
            removed += len(gone)
    return removed


def on_consent_change(tx: Transaction, entries: Sequence[LedgerEntry]) -> None:
    """Ledger listener: after a no (withdrawal, refusal, GPC opt-out, expiry) for a
    lead, forget the answers it leaves without a purpose. Grants cost no query."""
    leads_with_a_no = {
        e.subject_id for e in entries if is_negative(e.action) and e.action != "erased"
    }
    if leads_with_a_no:
        forget_unserved_answers(tx, leads_with_a_no)
