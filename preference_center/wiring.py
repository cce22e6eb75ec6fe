"""What the preference center brings to the app and the CLI (see :mod:`zeroparty.wiring`)."""

from __future__ import annotations

import preference_center.commands
import preference_center.form_topics
import preference_center.links
import preference_center.openapi
import preference_center.personal_data
import preference_center.request_views
import preference_center.retention
import preference_center.views
from zeroparty.db import Database
from zeroparty.wiring import EntryPoint, Feature


def _entry_points(_database: Database) -> list[EntryPoint]:
    return [
        EntryPoint(
            "leads",
            "Preference center",
            "/p/request-link",
            "a signed link to your subscriptions, by mail",
        ),
        EntryPoint(
            "leads",
            "Privacy requests",
            "/request",
            "access, erasure and every other right, confirmed by mail",
        ),
    ]


def feature() -> Feature:
    return Feature(
        name="preference_center",
        commands=preference_center.commands.add_commands,
        # The public request page (every data-subject right) beside the link pages.
        routes=[*preference_center.views.routes, *preference_center.request_views.routes],
        openapi=preference_center.openapi,
        # Topics picked on a form follow the grant they were picked with.
        consent_listeners=[preference_center.form_topics.on_append],
        personal_data=[preference_center.personal_data.PERSONAL_DATA],
        purges=preference_center.retention.PURGES,
        # The links every mail to a lead carries, for mails other packages' jobs send
        # (the ledger's re-permission mail): a factory taking the settings.
        extras={
            "lead_linker": preference_center.links.lead_linker,
            # The same links for many leads at once (consent sync's audience exports).
            "lead_linker_many": preference_center.links.lead_linker_many,
        },
        entry_points=_entry_points,
    )
