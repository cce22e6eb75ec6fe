"""Signed links to the preference center, and the headers every outgoing mail carries.

:func:`mail_headers` is the helper for capture's mails and for customers' own mails:
``List-Unsubscribe`` with the one-click URL (and a mailto, if given),
``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058 section 3.1), and the
footer link to the preference center.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from preference_center.tokens import (
    LinkClaim,
    LinkPurpose,
    LinkTokens,
    current_version,
    current_versions,
)
from zeroparty.db import Transaction
from zeroparty.mail import LeadLinker, LeadLinkerMany, LeadLinks
from zeroparty.settings import Settings

ONE_CLICK = "List-Unsubscribe=One-Click"  # List-Unsubscribe-Post (RFC 8058 section 3.1)


@dataclass(frozen=True, slots=True)
class MailLinks:
    """What to put into a mail for one subject: headers plus the footer link."""

    headers: dict[str, str]
    preference_url: str
    unsubscribe_url: str

    def footer_text(self, intro: str = "Manage your preferences or unsubscribe:") -> str:
        return f"\n\n--\n{intro} {self.preference_url}\n"


def preference_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/p/{token}"


def unsubscribe_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/u/{token}"


def erase_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/p/erase/{token}"


def manage_link(settings: Settings, session: Session, subject_id: str) -> str:
    """The subject's signed preference-center URL, at their current link version."""
    version = current_version(session, subject_id)
    token = LinkTokens(settings).issue(LinkPurpose.MANAGE, LinkClaim(subject_id, version))
    return preference_url(settings, token)


def mail_headers(
    settings: Settings,
    subject_id: str,
    purpose: str | list[str] | tuple[str, ...],
    session: Transaction | None = None,
    *,
    mailto: str | None = None,
    link_version: int | None = None,
    tokens: LinkTokens | None = None,
) -> MailLinks:
    """Headers and footer link for a mail to ``subject_id`` sent for ``purpose``.

    The one-click link withdraws exactly the purpose(s) named. Pass the ``session`` the
    mail is queued in: the links then carry the subject's current link version. Without
    one (or an explicit ``link_version``) they carry version 0, which is right for every
    subject whose links were never revoked. ``mailto`` adds a ``mailto:`` alternative for
    mail clients without one-click support (RFC 2369). ``tokens``: the token services to
    sign with, when many mails are made at once (else built from ``settings``).
    """
    purposes = (purpose,) if isinstance(purpose, str) else tuple(purpose)
    if link_version is not None:
        version = link_version
    elif session is not None:
        version = current_version(session, subject_id)
    else:
        version = 0
    headers, manage, one_click = _links(
        settings, tokens or LinkTokens(settings), subject_id, version, purposes, mailto
    )
    return MailLinks(headers=headers, preference_url=manage, unsubscribe_url=one_click)


def _links(
    settings: Settings,
    tokens: LinkTokens,
    subject_id: str,
    version: int,
    purposes: Sequence[str],
    mailto: str | None = None,
) -> tuple[dict[str, str], str, str]:
    """The headers, preference URL and one-click URL of :func:`mail_headers`."""
    manage = preference_url(settings, tokens.mint(LinkPurpose.MANAGE, subject_id, version))
    one_click = unsubscribe_url(
        settings, tokens.mint(LinkPurpose.UNSUBSCRIBE, subject_id, version, purposes)
    )
    targets = f"<{one_click}>"
    if mailto:
        targets += f", <mailto:{mailto}?subject=unsubscribe>"
    headers = {"List-Unsubscribe": targets, "List-Unsubscribe-Post": ONE_CLICK}
    return headers, manage, one_click


def lead_linker(settings: Settings) -> LeadLinker:
    """The :data:`zeroparty.mail.LeadLinker` the app factory gives to mail senders (the
    token services built once, not for every mail)."""
    tokens = LinkTokens(settings)

    def links(session: Transaction, subject_id: str, purposes: Sequence[str]) -> LeadLinks:
        made = mail_headers(settings, subject_id, tuple(purposes), session, tokens=tokens)
        return LeadLinks(made.headers, made.preference_url, made.unsubscribe_url)

    return links


class _BulkLinker:
    """The :class:`zeroparty.mail.LeadLinkerMany` for bulk exports: one look-up of the
    leads' link versions, the token services built once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tokens = LinkTokens(settings)

    def __reduce__(self) -> tuple[Any, tuple[tuple[str, ...], str]]:
        # Rebuilt from what signing needs, the keys and the base URL: no database URL,
        # checkpoint key or webhook secret goes to the export's writer process.
        return (_signing_linker, (self.settings.secret_keys, self.settings.base_url))

    def __call__(
        self, session: Session, subject_ids: Sequence[str], purposes: Sequence[str]
    ) -> dict[str, LeadLinks]:
        versions = self.versions(session, subject_ids)
        withdrawn = tuple(purposes)
        return {sid: self.mint(sid, versions.get(sid, 0), withdrawn) for sid in subject_ids}

    def versions(self, session: Session, subject_ids: Sequence[str]) -> dict[str, int]:
        return current_versions(session, subject_ids)

    def mint(self, subject_id: str, version: int, purposes: Sequence[str]) -> LeadLinks:
        return LeadLinks(*_links(self.settings, self.tokens, subject_id, version, purposes))


def _signing_linker(secret_keys: tuple[str, ...], base_url: str) -> _BulkLinker:
    return _BulkLinker(Settings(secret_keys=secret_keys, base_url=base_url))


def lead_linker_many(settings: Settings) -> LeadLinkerMany:
    """:class:`_BulkLinker` of ``settings`` (the feature's ``extras["lead_linker_many"]``)."""
    return _BulkLinker(settings)
