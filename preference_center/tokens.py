"""The preference center's link tokens: one :class:`TokenService` per link purpose.

Every token's payload is ``{"s": subject id, "v": link version}`` (plus, for one-click
unsubscribe, ``"p"``: the purposes it withdraws): no email, nothing personal. A token is
revoked when the subject's link version (``preference_link_versions``) moves past it.
``capture`` owns its own "confirm" purpose for double opt-in; it is listed among the
others here only so a confirm link pasted into the wrong place is named as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from preference_center.models import LinkVersion
from zeroparty.db import Prepared, Transaction, connection_of, utcnow
from zeroparty.settings import Settings
from zeroparty.tokens import TokenError, TokenInvalid, TokenService


class LinkPurpose(StrEnum):
    """What a token opens; the value is the signing salt."""

    MANAGE = "preference-center.manage"
    UNSUBSCRIBE = "preference-center.one-click-unsubscribe"
    ERASE = "preference-center.confirm-erasure"
    SESSION = "preference-center.session"
    CONFIRM = "capture.confirm"
    CONFIRM_GRANT = "preference-center.confirm-grant"


MAX_AGE = {
    # A preference link in an old mail should still work for a while; a month is the
    # usual newsletter cadence, so the next mail always carries a live one.
    LinkPurpose.MANAGE: int(timedelta(days=60).total_seconds()),
    # Mail clients show List-Unsubscribe on old mails too (RFC 8058 section 3 asks that
    # the URI keep working "for a reasonable time"): a year.
    LinkPurpose.UNSUBSCRIBE: int(timedelta(days=365).total_seconds()),
    LinkPurpose.ERASE: int(timedelta(hours=24).total_seconds()),
    LinkPurpose.SESSION: int(timedelta(minutes=30).total_seconds()),
    LinkPurpose.CONFIRM: int(timedelta(days=7).total_seconds()),
    # A grant made on the preference page under a notice version not yet confirmed.
    LinkPurpose.CONFIRM_GRANT: int(timedelta(days=7).total_seconds()),
}


class TokenRevoked(TokenError):
    status_code = 410
    code = "token_revoked"


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid token says: whose link it is, and (one-click) which purposes."""

    subject_id: str
    version: int
    purposes: tuple[str, ...] = ()
    nonce: str | None = None


class LinkTokens:
    """The token services of one app (or CLI run), built from its secret keys."""

    def __init__(self, settings: Settings) -> None:
        self.services = {
            purpose: TokenService(settings.secret_keys, purpose.value, MAX_AGE[purpose])
            for purpose in LinkPurpose
        }

    def issue(self, purpose: LinkPurpose, claim: LinkClaim) -> str:
        return self.mint(purpose, claim.subject_id, claim.version, claim.purposes, claim.nonce)

    def mint(
        self,
        purpose: LinkPurpose,
        subject_id: str,
        version: int,
        purposes: Sequence[str] = (),
        nonce: str | None = None,
    ) -> str:
        """:meth:`issue` of the claim of these fields, without building it (bulk links)."""
        payload: dict[str, Any] = {"s": subject_id, "v": version}
        if purposes:
            payload["p"] = list(purposes)
        if nonce:
            payload["n"] = nonce
        return self.services[purpose].issue(payload)

    def read(self, purpose: LinkPurpose, token: str) -> LinkClaim:
        """The claim of a valid token of ``purpose``; signature and age only.

        Raises ``TokenExpired``, ``TokenWrongPurpose`` or ``TokenInvalid``; the caller
        checks revocation with :func:`check_not_revoked` inside its transaction.
        """
        others = [service for key, service in self.services.items() if key is not purpose]
        payload = self.services[purpose].read(token, others=others)
        subject_id, version = payload.get("s"), payload.get("v")
        purposes = payload.get("p", [])
        nonce = payload.get("n")
        if (
            not isinstance(subject_id, str)
            or not isinstance(version, int)
            or not isinstance(purposes, list)
            or not all(isinstance(p, str) for p in purposes)
            or not (nonce is None or isinstance(nonce, str))
        ):
            raise TokenInvalid("this link is not valid")
        return LinkClaim(subject_id, version, tuple(purposes), nonce)


_VERSION = Prepared(
    select(LinkVersion.version).where(LinkVersion.subject_id == bindparam("subject_id"))
)


def current_version(session: Transaction, subject_id: str) -> int:
    """The subject's link version (0: its links were never revoked)."""
    connection = connection_of(session)
    rows = _VERSION.execute(connection, {"subject_id": subject_id})
    return int(rows[0].version or 0) if rows else 0


_VERSIONS_BETWEEN = select(LinkVersion.subject_id, LinkVersion.version).where(
    LinkVersion.subject_id >= bindparam("first"), LinkVersion.subject_id <= bindparam("last")
)


def current_versions(session: Session, subject_ids: Sequence[str]) -> dict[str, int]:
    """:func:`current_version` of many subjects in one statement (absent: version 0).

    Read by the range of the ids, one statement compiled once: bulk callers pass a page
    of ids in order, and only revoked links have a row at all."""
    if not subject_ids:
        return {}
    wanted = set(subject_ids)
    rows = session.connection().execute(
        _VERSIONS_BETWEEN, {"first": min(wanted), "last": max(wanted)}
    )
    return {str(sid): int(version) for sid, version in rows if sid in wanted}


def check_not_revoked(session: Session, claim: LinkClaim) -> None:
    """Raise :class:`TokenRevoked` unless ``claim`` carries the subject's current version."""
    if claim.version != current_version(session, claim.subject_id):
        raise TokenRevoked("this link has been withdrawn; a newer one may have been mailed")


def revoke_links(session: Session, subject_id: str) -> int:
    """Kill every link issued to ``subject_id`` so far; returns the new version."""
    now = utcnow()
    row = session.get(LinkVersion, subject_id, with_for_update=True)
    if row is None:
        session.add(LinkVersion(subject_id=subject_id, version=1, revoked_at=now))
        session.flush()
        return 1
    session.execute(
        update(LinkVersion)
        .where(LinkVersion.subject_id == subject_id)
        .values(version=LinkVersion.version + 1, revoked_at=now)
    )
    session.refresh(row)
    return row.version
