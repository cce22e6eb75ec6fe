"""Topics picked on a form or quiz become the lead's topic subscriptions.

Capture records the topics a visitor picked in the grant's evidence (``topics``: keys,
comma-separated), as the preference center does for its own topic changes; this
listener, told of every ledger append in its transaction, brings ``topic_subscriptions``
to exactly that set for the granted purpose (picked on, its other topics off), each row
naming the grant. A grant without ``topics`` evidence changes no subscription: the
topics follow the purpose (every one of them, unless the lead chose otherwise before).
Neither package imports the other; the ledger's listener registry connects them.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from sqlalchemy import bindparam, select

from consent_ledger.actions import ConsentAction, ConsentSource
from consent_ledger.api import ConsentLedger
from consent_ledger.entries import LedgerEntry
from consent_ledger.read_model import topics as topic_rows
from preference_center.services import record_topics
from zeroparty.db import Transaction, connection_of

LISTENER = "preference_center.form_topics"
_SOURCES = frozenset({ConsentSource.FORM.value, ConsentSource.QUIZ.value})
_TOPICS = select(topic_rows.c.key, topic_rows.c.purpose_key).where(
    topic_rows.c.purpose_key.in_(bindparam("purposes", expanding=True))
)


def on_append(tx: Transaction, entries: Sequence[LedgerEntry]) -> None:
    grants = [
        e
        for e in entries
        if e.action == ConsentAction.GRANTED.value
        and e.source in _SOURCES
        and e.evidence_sha256 is not None
    ]
    if not grants:
        return
    bodies = ConsentLedger.evidence_of(tx, [e.seq for e in grants])
    picked = {
        e.seq: str(body["topics"])
        for e in grants
        if (body := orjson.loads(bodies.get(e.seq, "{}"))).get("topics")
    }
    if not picked:
        return
    purposes = {e.purpose for e in grants if e.seq in picked}
    topics: dict[str, list[str]] = {}
    connection = connection_of(tx)
    for key, purpose in connection.execute(_TOPICS, {"purposes": sorted(purposes)}):
        topics.setdefault(purpose, []).append(key)
    for entry in grants:
        if entry.seq not in picked:
            continue
        chosen = set(picked[entry.seq].split(","))
        changes = {key: key in chosen for key in topics.get(entry.purpose, [])}
        record_topics(connection, entry.subject_id, changes, entry.seq, entry.occurred_at)
