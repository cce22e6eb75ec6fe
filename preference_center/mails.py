"""Mails the preference center sends: a fresh link, and the erasure confirmation.

Both are queued in the caller's transaction (:func:`zeroparty.mail.queue_mail`) with the
subject id, so erasure deletes them with the rest of the subject's personal data, and
sent by the view right after that transaction commits.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from consent_ledger.actions import PurposeCategory
from consent_ledger.api import ConsentLedger
from consent_ledger.read_model import leads, purposes
from preference_center.links import erase_url, mail_headers
from preference_center.locale import LanguageWish, strings
from preference_center.models import LinkRequest
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens, current_version
from zeroparty.db import utcnow
from zeroparty.errors import ZeropartyError
from zeroparty.mail import Mail, in_language, queue_mail
from zeroparty.settings import Settings

LINK_REQUESTS_PER_HOUR = 3
RATE_WINDOW = timedelta(hours=1)


class TooManyRequests(ZeropartyError):
    status_code = 429
    code = "too_many_requests"


def address_key(settings: Settings, email: str) -> str:
    """A keyed hash of the address for rate limiting: not reversible without the key."""
    key = hashlib.sha256(b"zeroparty.link-requests|" + settings.secret_keys[0].encode()).digest()
    return hmac.new(key, email.encode(), hashlib.sha256).hexdigest()


_SUBJECT_LOCALE = select(leads.c.locale).where(leads.c.subject_id == bindparam("subject_id"))


def subject_locale(session: Session, subject_id: str) -> str | None:
    """The lead's own locale, if any (an erased lead's row keeps none of its data)."""
    locale: str | None = session.execute(_SUBJECT_LOCALE, {"subject_id": subject_id}).scalar()
    return locale


def _locale(session: Session, subject_id: str, wish: LanguageWish) -> str:
    return wish.choose(subject_locale(session, subject_id))


def note_link_request(session: Session, settings: Settings, email: str) -> None:
    """Count a link request for ``email`` against its hourly limit, known or not.

    The only work ``POST /p/request-link`` does before it answers: it never looks the
    address up, so the answer and the time it takes are the same for a stranger's
    address and a lead's. Raises :class:`TooManyRequests` past the limit.
    """
    now = utcnow()
    session.execute(delete(LinkRequest).where(LinkRequest.requested_at < now - RATE_WINDOW))
    key = address_key(settings, email)
    recent = session.execute(
        select(func.count()).select_from(LinkRequest).where(LinkRequest.address_key == key)
    ).scalar_one()
    if recent >= LINK_REQUESTS_PER_HOUR:
        raise TooManyRequests(
            "too many links were requested for this address; try again in an hour"
        )
    session.add(LinkRequest(address_key=key, requested_at=now))


def queue_link_mail(
    ledger: ConsentLedger,
    session: Session,
    settings: Settings,
    email: str,
    wish: LanguageWish | None = None,
) -> str | None:
    """Queue a fresh preference link to ``email`` if it belongs to a lead; returns the
    mail's id, or ``None`` for an unknown address. Runs after the answer was sent."""
    subject_id = ledger.find_lead(session, email)
    if subject_id is None:
        return None
    locale = _locale(session, subject_id, wish or LanguageWish())
    text = strings(locale)
    links = mail_headers(settings, subject_id, _communication_purposes(session), session)
    body = f"{text['mail_link_text']}\n\n{links.preference_url}\n\n{text['mail_ignore']}\n"
    headers = {**links.headers, **in_language(locale)}
    return queue_mail(
        session,
        Mail(to=email, subject=text["mail_link_subject"], text=body, headers=headers),
        subject_id=subject_id,
    )


def _communication_purposes(session: Session) -> list[str]:
    p = purposes.c
    stmt = select(p.key).where(p.category == PurposeCategory.COMMUNICATION.value)
    return list(session.execute(stmt.order_by(p.key)).scalars())


def request_erasure(
    session: Session, settings: Settings, subject_id: str, email: str, locale: str
) -> None:
    """Mail a link that confirms the erasure (valid 24 hours); erases nothing yet."""
    token = LinkTokens(settings).issue(
        LinkPurpose.ERASE, LinkClaim(subject_id, current_version(session, subject_id))
    )
    text = strings(locale)
    body = f"{text['mail_erase_text']}\n\n{erase_url(settings, token)}\n\n{text['mail_ignore']}\n"
    # Like every mail: one-click unsubscribe (RFC 8058) from what this address receives.
    links = mail_headers(settings, subject_id, _communication_purposes(session), session)
    headers = {**links.headers, **in_language(locale)}
    queue_mail(
        session,
        Mail(to=email, subject=text["mail_erase_subject"], text=body, headers=headers),
        subject_id=subject_id,
    )


def queue_grant_confirmation(
    session: Session,
    settings: Settings,
    subject_id: str,
    email: str,
    locale: str,
    purposes: Sequence[tuple[str, str]],
) -> str:
    """Mail the link that confirms grants made on the preference page under a notice
    version the lead had not confirmed: ``purposes`` as ``(key, title)``. Confirms
    nothing yet (the link opens a page with a button: mail scanners follow links)."""
    token = LinkTokens(settings).issue(
        LinkPurpose.CONFIRM_GRANT,
        LinkClaim(subject_id, current_version(session, subject_id), tuple(k for k, _ in purposes)),
    )
    text = strings(locale)
    titles = ", ".join(title for _, title in purposes)
    link = f"{settings.base_url}/p/confirm/{token}"
    body = f"{text['mail_confirm_grant_text']} {titles}.\n\n{link}\n\n{text['mail_ignore']}\n"
    links = mail_headers(settings, subject_id, [k for k, _ in purposes], session)
    return queue_mail(
        session,
        Mail(
            to=email,
            subject=text["mail_confirm_grant_subject"],
            text=body,
            headers={**links.headers, **in_language(locale)},
        ),
        subject_id=subject_id,
    )
