"""Who runs this site: the ``[site]`` table of ``site.toml``, kept for receipts, pages
and mail (the sender of ``[site.mail]``, see :func:`mail_sender`)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

import orjson
from sqlalchemy import Connection, Engine, Integer, Row, String, Text, event, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from zeroparty.db import Base, Transaction

SITE_INFO_ID = 1
# How long a process sends mail as the sender it read last: a change by ``site load`` in
# another process reaches this one's mail within this time (at once in the same process).
SENDER_CACHE_SECONDS = 5.0


class SiteInfo(Base):
    __tablename__ = "site_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    controller: Mapped[str] = mapped_column(Text, default="")
    policy_url: Mapped[str] = mapped_column(String(500), default="")
    default_locale: Mapped[str] = mapped_column(String(16), default="en")
    locales: Mapped[str] = mapped_column(Text, default='["en"]')
    # [site.mail]; "" means "not configured" (defaults in mail_sender).
    mail_from_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    mail_from_address: Mapped[str] = mapped_column(String(320), default="", server_default="")
    mail_reply_to: Mapped[str] = mapped_column(String(320), default="", server_default="")
    mail_company: Mapped[str] = mapped_column(String(500), default="", server_default="")
    # [site.brand] as checked by zeroparty.brand (JSON); NULL: the stylesheet's defaults.
    brand: Mapped[str | None] = mapped_column(Text, nullable=True)


_SITE_ROW = select(SiteInfo.__table__).where(SiteInfo.__table__.c.id == SITE_INFO_ID)


@dataclass(frozen=True, slots=True)
class SiteIdentity:
    name: str
    controller: str
    policy_url: str
    default_locale: str
    locales: tuple[str, ...]
    mail_from_name: str = ""
    mail_from_address: str = ""
    mail_reply_to: str = ""
    mail_company: str = ""


UNNAMED = SiteIdentity("zeroparty", "", "", "en", ("en",))


COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True, slots=True)
class MailColours:
    """The brand's name and colours for a mail's HTML part (``#rrggbb`` each)."""

    name: str
    primary: str
    text: str
    background: str


@dataclass(frozen=True, slots=True)
class MailSender:
    """Who every outgoing mail is from, and what its footer says: the company, the
    postal address and privacy policy of ``[site.brand]``'s footer ("" when not set);
    ``colours``: the brand's, for an HTML part (``None``: no brand, text only)."""

    from_name: str
    from_address: str
    reply_to: str
    company: str
    postal_address: str = ""
    privacy_policy: str = ""
    colours: MailColours | None = None

    @property
    def domain(self) -> str:
        """The sender's domain: the right-hand side of ``Message-ID`` (RFC 5322 3.6.4)."""
        return self.from_address.rpartition("@")[2]


def default_from_address(base_url: str) -> str:
    """``no-reply@<host of the base URL>`` (an IP address as a domain literal)."""
    host = urlsplit(base_url).hostname or "localhost"
    if host.replace(".", "").isdigit() or ":" in host:
        host = f"[{host}]"
    return f"no-reply@{host}"


def sender_of(identity: SiteIdentity, base_url: str, brand: str | None = None) -> MailSender:
    """The configured sender, or the site's name at ``no-reply@`` the base URL's host;
    the company named is ``company``, else the controller, else the site's name. From
    the stored ``[site.brand]`` (``brand``, the JSON :func:`zeroparty.brand.brand_json`
    writes; that module imports this one): the footer's address and privacy policy (the
    policy else ``[site]``'s ``policy_url``) and the name and colours."""
    company = identity.mail_company or identity.controller or identity.name
    stored = orjson.loads(brand) if brand else {}
    colours = MailColours(
        str(stored.get("name") or identity.name),
        str(stored.get("primary", "")),
        str(stored.get("text", "")),
        str(stored.get("background", "")),
    )
    # Checked by site load; checked again because they go into an HTML style attribute.
    checked = all(COLOUR.fullmatch(c) for c in (colours.primary, colours.text, colours.background))
    return MailSender(
        from_name=identity.mail_from_name or identity.name,
        from_address=identity.mail_from_address or default_from_address(base_url),
        reply_to=identity.mail_reply_to,
        company=" ".join(company.split()),
        postal_address=" ".join(str(stored.get("footer_address") or "").split()),
        privacy_policy=str(stored.get("privacy_policy") or "") or identity.policy_url,
        colours=colours if stored and checked else None,
    )


def _site_row(tx: Transaction) -> SiteInfo | Row[Any] | None:
    """The site's row: the mapped object in an ORM session (which flushes pending changes
    first), the same columns as a row on a plain connection."""
    if isinstance(tx, Session):
        return tx.execute(select(SiteInfo).where(SiteInfo.id == SITE_INFO_ID)).scalar_one_or_none()
    return tx.execute(_SITE_ROW).first()


def site_identity(session: Session) -> SiteIdentity:
    return _identity_of(_site_row(session))


def _identity_of(row: SiteInfo | Row[Any] | None) -> SiteIdentity:
    if row is None:
        return UNNAMED
    return SiteIdentity(
        row.name,
        row.controller,
        row.policy_url,
        row.default_locale,
        tuple(orjson.loads(row.locales)),
        row.mail_from_name,
        row.mail_from_address,
        row.mail_reply_to,
        row.mail_company,
    )


def mail_sender(tx: Transaction, base_url: str) -> MailSender:
    """The sender as stored now, with the brand's footer (one statement)."""
    row = _site_row(tx)
    return sender_of(_identity_of(row), base_url, row.brand if row else None)


class _SenderCache:
    """The sender each database's mail went out as last, per base URL, for
    :data:`SENDER_CACHE_SECONDS`; forgotten at once when this process stores a changed
    ``[site]`` (:func:`store_site_identity`, when its transaction commits)."""

    def __init__(self) -> None:
        self.generation = 0
        self._lock = threading.Lock()
        self._senders: WeakKeyDictionary[Engine, dict[str, tuple[int, float, MailSender]]] = (
            WeakKeyDictionary()
        )

    def forget(self, *_args: object) -> None:
        with self._lock:
            self.generation += 1
            self._senders.clear()

    def sender(self, tx: Transaction, base_url: str) -> MailSender:
        bind = tx.get_bind() if isinstance(tx, Session) else tx
        engine = bind.engine if isinstance(bind, Connection) else bind
        now = time.monotonic()
        cached = self._senders.get(engine, {}).get(base_url)
        if cached is not None and cached[0] == self.generation and cached[1] > now:
            return cached[2]
        generation = self.generation
        sender = mail_sender(tx, base_url)
        with self._lock:
            if generation == self.generation:
                entries = self._senders.setdefault(engine, {})
                entries[base_url] = (generation, now + SENDER_CACHE_SECONDS, sender)
        return sender


_SENDERS = _SenderCache()


def cached_mail_sender(tx: Transaction, base_url: str) -> MailSender:
    """:func:`mail_sender`, read from the database at most every
    :data:`SENDER_CACHE_SECONDS` per process (the hot path of the double opt-in mail)."""
    return _SENDERS.sender(tx, base_url)


def store_site_identity(session: Session, identity: SiteIdentity) -> list[str]:
    row = session.get(SiteInfo, SITE_INFO_ID)
    values = {
        "name": identity.name,
        "controller": identity.controller,
        "policy_url": identity.policy_url,
        "default_locale": identity.default_locale,
        "locales": orjson.dumps(list(identity.locales)).decode(),
        "mail_from_name": identity.mail_from_name,
        "mail_from_address": identity.mail_from_address,
        "mail_reply_to": identity.mail_reply_to,
        "mail_company": identity.mail_company,
    }
    if row is None:
        session.add(SiteInfo(id=SITE_INFO_ID, **values))
        forget_mail_senders(session)
        return ["site: created"]
    if any(getattr(row, key) != value for key, value in values.items()):
        for key, value in values.items():
            setattr(row, key, value)
        forget_mail_senders(session)
        return ["site: updated"]
    return []


def forget_mail_senders(session: Session) -> None:
    """This process's cached senders are stale (``[site]`` or the brand's footer
    changed): now, and again once ``session`` commits (a sender read meanwhile is the
    old one)."""
    _SENDERS.forget()
    event.listen(session, "after_commit", _SENDERS.forget, once=True)
