"""Property (issue 16): at any moment, a lead is permitted for a purpose only if the
ledger holds a live grant under a notice version that is still valid.

Hypothesis drives random histories through the real ledger (the wired
``ConsentLedger``, the database, the lifecycle job): grants from the preference page
(proven mailbox), from a form (double opt-in), from an import (confirmed), under the
current or an older notice version; confirmations; withdrawals; material and editorial
notice changes. A material change is published as operators do it: ``site load``, then
the lifecycle job (``serve`` runs it every minute; ``zeroparty lifecycle run`` at once).
After every step, for every purpose, the answer the API gives (``ConsentLedger.consent``)
is checked against a reading of the lead's raw entries: permitted only if the last
grant after the last no is live (needed no confirmation, or was confirmed) and its
notice version has not been replaced by a material change since.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentChange, ConsentLedger
from consent_ledger.lifecycle import run_lifecycle
from consent_ledger.models import ConsentEvent, NoticeVersion
from consent_ledger.site import notice_sha256
from zeroparty.db import Database
from zeroparty.errors import InvalidInput
from zeroparty.wiring import build_ledger

PURPOSES = ("newsletter", "profiling")  # double opt-in, and not
REPLACED = "replaced by a material change"
_leads = itertools.count()
_texts = itertools.count()


@dataclass(frozen=True)
class Step:
    kind: str
    purpose: str
    age: int  # which notice version: 0 the current one, 1 the one before, ...


steps = st.lists(
    st.builds(
        Step,
        st.sampled_from(["page", "form", "import", "confirm", "withdraw", "material", "editorial"]),
        st.sampled_from(PURPOSES),
        st.integers(min_value=0, max_value=2),
    ),
    min_size=1,
    max_size=10,
)


def versions(database: Database, purpose: str) -> list[tuple[int, str, str]]:
    """(version, sha256, change) of the purpose's English notice, newest first."""
    with database.read() as session:
        rows = session.execute(
            select(NoticeVersion.version, NoticeVersion.sha256, NoticeVersion.change)
            .where(NoticeVersion.purpose_key == purpose, NoticeVersion.locale == "en")
            .order_by(NoticeVersion.version.desc())
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def publish(database: Database, purpose: str, change: str) -> None:
    """A new English notice version (what site load writes for a changed text)."""
    latest = versions(database, purpose)[0][0]
    text = f"Notice {next(_texts)} for {purpose}."
    with database.write() as session:
        session.add(
            NoticeVersion(
                purpose_key=purpose,
                locale="en",
                version=latest + 1,
                text=text,
                sha256=notice_sha256(text),
                change=change,
            )
        )


def apply(database: Database, ledger: ConsentLedger, lead: str, step: Step) -> None:
    if step.kind in ("material", "editorial"):
        publish(database, step.purpose, step.kind)
        if step.kind == "material":
            run_lifecycle(database, ledger, lead_links=None)
        return
    known = versions(database, step.purpose)
    notice = known[min(step.age, len(known) - 1)][1]
    change: dict[str, Any] = {"notice_sha256": notice}
    if step.kind == "page":
        change |= {"action": ConsentAction.GRANTED, "source": ConsentSource.PREFERENCE_CENTER,
                   "method": ConsentMethod.EMAIL_LINK, "proven_mailbox": True}  # fmt: skip
    elif step.kind == "form":
        change |= {"action": ConsentAction.GRANTED, "source": ConsentSource.FORM,
                   "method": ConsentMethod.CHECKBOX}  # fmt: skip
    elif step.kind == "import":
        change |= {"action": ConsentAction.GRANTED, "source": ConsentSource.IMPORT,
                   "method": ConsentMethod.WRITTEN, "confirmed": True}  # fmt: skip
    elif step.kind == "confirm":
        with database.read() as session:
            state = ledger.lead_states(session, lead).get(step.purpose)
        if state is None or state[0] != "pending":
            return  # nothing to confirm: the link would record nothing
        change = {"action": ConsentAction.CONFIRMED, "source": ConsentSource.FORM,
                  "method": ConsentMethod.DOUBLE_OPT_IN, "notice_sha256": state[2],
                  "confirmed": True}  # fmt: skip
    else:
        change = {"action": ConsentAction.WITHDRAWN, "source": ConsentSource.PREFERENCE_CENTER,
                  "method": ConsentMethod.EMAIL_LINK}  # fmt: skip
    refused: dict[str, str] = {}
    try:
        with database.write() as session:
            ledger.record(session, [ConsentChange(subject_id=lead, purpose=step.purpose,
                                                  **change)])  # fmt: skip
    except InvalidInput as exc:
        refused = exc.fields
    # Only a grant under a version a material change replaced is refused.
    assert REPLACED in refused.get("notice_sha256", REPLACED)


def valid_live_grant(database: Database, lead: str, purpose: str) -> bool:
    """The reference reading of the raw entries (see the module's docstring)."""
    with database.read() as session:
        entries = (
            session.execute(
                select(ConsentEvent)
                .where(ConsentEvent.subject_id == lead, ConsentEvent.purpose_key == purpose)
                .order_by(ConsentEvent.occurred_at, ConsentEvent.seq)
            )
            .scalars()
            .all()
        )
    grant = None
    live = False
    for entry in entries:
        if entry.action == "granted":
            grant, live = entry, not entry.confirmation_required
        elif entry.action == "confirmed":
            live = live or grant is not None
        else:  # every other action is a no
            grant, live = None, False
    if grant is None or not live:
        return False
    known = {sha: (version, change) for version, sha, change in versions(database, purpose)}
    granted_version = known[grant.notice_sha256][0]
    return not any(
        version > granted_version and change == "material" for version, change in known.values()
    )


@given(history=steps)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_permitted_only_under_a_live_grant_of_a_valid_notice(
    database: Database, history: list[Step]
) -> None:
    ledger = build_ledger(database)
    email = f"p{next(_leads)}@example.com"
    with database.write() as session:
        lead = ledger.ensure_lead(session, email).id
    for step in history:
        apply(database, ledger, lead, step)
        for purpose in PURPOSES:
            with database.read() as session:
                permitted = ledger.consent(session, email, purpose).permitted
            if permitted:
                assert valid_live_grant(database, lead, purpose), (step, purpose)
