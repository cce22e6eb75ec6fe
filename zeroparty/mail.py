"""Outgoing mail through a transactional outbox.

A mail is queued (:func:`queue_mail`) in the same transaction as the change it is about,
so an acknowledged request never loses its mail and a rolled-back one never sends one.
:func:`deliver_pending` sends what is due: it claims rows in a short transaction, sends
outside any transaction, then marks them sent, or schedules a retry with exponential
backoff. Several processes may deliver at once: a claimed row is invisible to the others
until its claim lapses (PostgreSQL additionally skips locked rows). A mail a person is
waiting for leaves right after its transaction commits: the request hands exactly the ids
it queued (:func:`queued_mail_ids`) to :func:`deliver_queued`, which claims and marks them
the same way; the periodic :func:`deliver_pending` stays the retry path.

Cheaper still, a hot path queues its mail already claimed by its own process
(``queue_mail(..., claims=rows)``: ``claimed_until`` = now + the claim window, written in
the request's transaction) and takes the sender with it (:func:`claimed_mails`), so after
the answer only the send and one "sent" update remain (:func:`send_claimed`). Nothing
acknowledged is lost: the row committed with the request, and if this process never
sends it (a crash, a failed send), :func:`deliver_pending` retries it once the claim lapses.

On the wire (:data:`WIRE_POLICY`): CRLF line ends, no line over 998 octets, 7-bit clean
bodies, ``From``/``Reply-To`` from the site's sender (:mod:`zeroparty.site_info`),
``Message-ID`` in the sender's domain. ``List-Unsubscribe`` and ``List-Unsubscribe-Post``
are written exactly as RFC 2369 and RFC 8058 show them: folded at whitespace only, never
RFC 2047-encoded (mailbox providers do not decode them; Python's default policy would).
A mail with files (:class:`Attachment`, kept in the outbox row with the text) is
``multipart/mixed``: the text (or its text and HTML alternatives) first, then each file
base64-encoded, so a client saves exactly the bytes queued. A transport is handed the
bytes (:class:`WireMessage`): :func:`wire_message` writes those of a text mail (with or
without the brand's HTML alternative) from header lines the policy stored and folded
once, and the email package's own body encoding, without building an ``EmailMessage``;
any other mail is built by :func:`build_message`. The bytes are the same either way
(``tests/zeroparty/test_mail_build.py``).

Transports: SMTP (``ZEROPARTY_SMTP_URL``: ``smtp://user:pass@host:587?starttls=1`` or
``smtps://host:465``) or, without it, ``.eml`` files in the outbox folder plus a log line
(which names the recipient's domain only: no email addresses in logs).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import re
import smtplib
import ssl
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.contentmanager import _encode_text  # type: ignore[attr-defined]
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, getaddresses
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    Text,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from zeroparty import i18n
from zeroparty.db import Base, Database, Prepared, Transaction, UTCDateTime, connection_of, utcnow
from zeroparty.i18n import N_
from zeroparty.mail_html import mail_html
from zeroparty.site_info import MailSender, cached_mail_sender, mail_sender

if TYPE_CHECKING:  # settings imports this module (it checks the SMTP URL with it)
    from zeroparty.settings import Settings

log = logging.getLogger("zeroparty.mail")

MAX_ATTEMPTS = 8
CONTENT_LANGUAGE = "Content-Language"  # RFC 3282: the language a mail is written in
# The texts every mail to a lead adds, in the mail's language (the zeroparty catalogue).
MANAGE_LABEL = N_("Manage your preferences or unsubscribe")
SENT_BY = N_("This mail was sent by %(company)s.")
POLICY_LINE = N_("Privacy policy: %(url)s")
CLAIM_SECONDS = 120
MAX_LINE_OCTETS = 998  # RFC 5322 section 2.1.1, CRLF excluded
SOFT_LINE_OCTETS = 78  # RFC 5322 section 2.1.1: SHOULD
RAW_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
QUEUED_IDS = "zeroparty.mail.queued"  # Session.info key: ids queued in this session
SMTP_URL_OPTIONS = frozenset({"starttls"})
MAX_ATTACHMENT_BYTES = 1_000_000  # all of a mail's files together, before base64
ATTACHMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
ATTACHMENT_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}/[a-z0-9][a-z0-9.+-]{0,63}")


class OutboxMail(Base):
    """A mail waiting to go out, or sent. Personal data: erasure deletes a subject's rows."""

    __tablename__ = "mail_outbox"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject_id: Mapped[str | None] = mapped_column(String(32), index=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # The mail's files (:func:`attachments_json`): JSON, each file's bytes in base64;
    # NULL: none. Written with the row, so a queued mail never loses a file.
    attachments: Mapped[str | None] = mapped_column(Text)


class AttachmentError(ValueError):
    """An attachment that cannot be sent; the message names the problem. Raised by
    :func:`queue_mail` before anything is written."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a mail: its name, MIME type and exact bytes. It travels base64
    encoded (RFC 2045 section 6.8), so the file a mail client saves is these bytes."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class LeadLinks:
    """What every mail to a lead carries: RFC 8058 one-click unsubscribe headers and a
    signed link to the preference center."""

    headers: Mapping[str, str]
    preference_url: str
    unsubscribe_url: str = ""
    """The one-click unsubscribe URL the ``List-Unsubscribe`` header names."""


LeadLinker = Callable[[Transaction, str, Sequence[str]], LeadLinks]
"""``linker(session, subject_id, purposes)``: links for a mail about ``purposes``.
The preference center provides it; the app factory hands it to packages that send mail."""


class LeadLinkerMany(Protocol):
    """``linker(session, subject_ids, purposes)``: :data:`LeadLinker` for many leads at
    once (their link versions read in one statement), for bulk exports (consent sync's
    audiences). The preference center provides it too (its feature's
    ``extras["lead_linker_many"]``).

    In two steps, for an export that signs in a second process: ``versions`` reads the
    leads' link versions, ``mint`` signs one lead's links at its version and needs no
    database. A linker pickles as what rebuilds it from the settings, so the second
    process can have its own."""

    def __call__(
        self, session: Session, subject_ids: Sequence[str], purposes: Sequence[str]
    ) -> dict[str, LeadLinks]: ...

    def versions(self, session: Session, subject_ids: Sequence[str]) -> Mapping[str, int]: ...

    def mint(self, subject_id: str, version: int, purposes: Sequence[str]) -> LeadLinks: ...


def mail_language(headers: Mapping[str, str]) -> str:
    """The language a mail is written in: its ``Content-Language`` header (RFC 3282),
    set where a mail is not in English; English otherwise."""
    return headers.get(CONTENT_LANGUAGE, i18n.SOURCE_LANGUAGE)


def in_language(language: str) -> dict[str, str]:
    """The headers of a mail written in ``language``: none for English, the default, nor
    for a language without a catalogue, whose mail is written in English."""
    language = i18n.primary(language)
    if language == i18n.SOURCE_LANGUAGE or language not in i18n.languages():
        return {}
    return {CONTENT_LANGUAGE: language}


def with_lead_links(mail: Mail, links: LeadLinks) -> Mail:
    """``mail`` with the unsubscribe headers and a preference-center footer added (in
    the mail's language)."""
    label = i18n.gettext(mail_language(mail.headers), MANAGE_LABEL)
    html = mail.html
    if html is not None:
        html += f'<hr><p><a href="{escape(links.preference_url)}">{label}</a></p>'
    return replace(
        mail,
        text=f"{mail.text.rstrip()}\n\n--\n{label}: {links.preference_url}\n",
        html=html,
        headers={**mail.headers, **links.headers},
    )


def _fold_raw(name: str, value: str, linesep: str) -> str:
    """``name: value`` as written, folded only after the commas between list elements
    (RFC 2369 section 2: whitespace may appear between them); never encoded."""
    if not value.isascii() or "\r" in value or "\n" in value:
        raise ValueError(f"{name} must be one line of ASCII")
    parts = [part.strip() for part in value.split(",")]
    lines = [f"{name}: {parts[0]}"]
    for part in parts[1:]:
        lines[-1] += ","
        if len(lines[-1]) + 1 + len(part) > SOFT_LINE_OCTETS:
            lines.append(f" {part}")
        else:
            lines[-1] += f" {part}"
    if any(len(line) > MAX_LINE_OCTETS for line in lines):
        raise ValueError(f"{name}: an element is longer than {MAX_LINE_OCTETS} octets")
    return linesep.join(lines) + linesep


FOLDED = "_zeroparty_folded"  # a header object's attribute: its folded lines, per policy
# Headers that differ in every mail: parsed anew (no recipient address stays in memory).
PER_MAIL_HEADERS = frozenset({"to", "date", "message-id", "list-unsubscribe"})


@lru_cache(maxsize=512)
def _stored_header(policy: EmailPolicy, name: str, value: str) -> Any:
    """The header object the email package builds for ``name: value``, built once per
    distinct pair (parsing a header is most of a message's build): the same class from
    the same text, so the same header. Header objects are never changed once built."""
    return EmailPolicy.header_store_parse(policy, name, value)[1]


class WirePolicy(EmailPolicy):
    """``email.policy.SMTP`` with 998-octet lines and 7-bit bodies, writing the
    ``List-*`` headers raw (see the module docstring).

    Cheaper, same bytes: a header given as text is parsed once per distinct name and
    text (the sender, subject, MIME headers repeat in every mail; those of
    :data:`PER_MAIL_HEADERS` are parsed each time), and a header object
    is folded once per line settings (the result is kept on the object)."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if (
            type(value) is str
            and name.lower() not in PER_MAIL_HEADERS
            and "boundary=" not in value  # a multipart's boundary differs in every mail
        ):
            return (name, _stored_header(self, name, value))
        return super().header_store_parse(name, value)

    def _folded(self, name: str, value: Any) -> str:
        if not hasattr(value, "name"):
            return str(super().fold(name, value))
        key = (self.linesep, self.max_line_length, self.utf8)
        cached = value.__dict__.get(FOLDED)
        if cached is not None and cached[0] == key:
            return cast(str, cached[1])
        folded = str(value.fold(policy=self))
        value.__dict__[FOLDED] = (key, folded)
        return folded

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in RAW_HEADERS:
            return _fold_raw(name, str(value), self.linesep)
        return self._folded(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in RAW_HEADERS:
            return _fold_raw(name, str(value), self.linesep).encode("ascii")
        if not hasattr(value, "name"):
            return bytes(super().fold_binary(name, value))
        return self._folded(name, value).encode("utf8" if self.utf8 else "ascii", "surrogateescape")


class _HeaderClasses(HeaderRegistry):
    """The email package's header registry, building each header class once: CPython's
    builds a new class (``type(...)``) for every header it parses: most of the
    CPU a message took to build (3.0 ms -> 0.9 ms). Same classes, so the same messages."""

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = super().__getitem__(name)
        return built


WIRE_POLICY = WirePolicy(
    linesep="\r\n",
    max_line_length=MAX_LINE_OCTETS,
    cte_type="7bit",
    header_factory=_HeaderClasses(),
)


class Transport(Protocol):
    def send(self, message: WireMessage) -> None: ...


class SmtpUrlError(ValueError):
    """``ZEROPARTY_SMTP_URL`` cannot be used; the message is one line naming what to fix
    (never the URL itself, which may hold a password)."""


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """What ``ZEROPARTY_SMTP_URL`` says: where to connect, how, and who to log in as."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)


_HOST_NAME = re.compile(
    r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?"
)
_FLAG_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
_SMTP_URL_SHAPE = (
    "smtp://[user:password@]host[:port][?starttls=1] or smtps://[user:password@]host[:port]"
)


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host.rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_smtp_url(url: str) -> SmtpEndpoint:
    """Read ``ZEROPARTY_SMTP_URL`` completely, or raise :class:`SmtpUrlError`.

    The settings call it at start (so ``serve`` refuses a typo instead of starting without
    mail) and :class:`SmtpTransport` builds from it: one reading of the URL. Refused: any
    other scheme, no host or a malformed one, a bad port, a path or fragment, a parameter
    other than ``starttls`` (and ``?from=``, whose sender now lives in ``site.toml``), a
    ``starttls`` that is not 1/0 or is given twice or with ``smtps``, a user without a
    password or the reverse, and a login over plain ``smtp://`` without ``starttls=1``
    to a host that is not loopback (the password would cross the network in clear).
    """
    name = "ZEROPARTY_SMTP_URL"
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("smtp", "smtps") or not parts.netloc:
        raise SmtpUrlError(f"{name} must look like {_SMTP_URL_SHAPE}")
    implicit_tls = parts.scheme.lower() == "smtps"
    host = parts.hostname or ""
    try:
        is_ip = bool(ipaddress.ip_address(host))
    except ValueError:
        is_ip = False
    if not host or not (is_ip or _HOST_NAME.fullmatch(host)):
        raise SmtpUrlError(
            f"{name}: the host is missing or not a valid host name (IDNA hosts as xn--)"
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise SmtpUrlError(f"{name}: the port must be a number from 1 to 65535")
    port = port or (465 if implicit_tls else 25)
    if parts.path not in ("", "/") or parts.fragment:
        raise SmtpUrlError(f"{name}: no path or #fragment is allowed after the host and port")
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [key for key, _ in query]
    if "from" in names:
        raise SmtpUrlError(
            f"{name}: ?from= is not supported; set the sender in site.toml, "
            "table [site.mail] (from_name, from_address, reply_to)"
        )
    unknown = sorted(set(names) - SMTP_URL_OPTIONS)
    if unknown:
        raise SmtpUrlError(
            f"{name}: unknown parameter(s) {', '.join(unknown)} (the only one is starttls=1)"
        )
    if names.count("starttls") > 1:
        raise SmtpUrlError(f"{name}: starttls is given more than once")
    raw = dict(query).get("starttls")
    starttls = False
    if raw is not None:
        if raw.lower() not in _FLAG_VALUES:
            raise SmtpUrlError(f"{name}: starttls must be 1 or 0")
        starttls = _FLAG_VALUES[raw.lower()]
    if starttls and implicit_tls:
        raise SmtpUrlError(f"{name}: smtps:// is TLS from the start; drop ?starttls=1")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if (username is None) != (password is None):
        raise SmtpUrlError(
            f"{name}: give both a user and a password (user:password@host) or neither"
        )
    if username and not (implicit_tls or starttls or is_loopback_host(host)):
        raise SmtpUrlError(
            f"{name}: refusing to send the SMTP password in clear text to {host}; "
            "use ?starttls=1 or smtps:// (plain smtp:// with a login is allowed only to loopback)"
        )
    return SmtpEndpoint(host, port, implicit_tls, starttls, username, password)


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The TLS settings of every SMTP connection (``ssl.create_default_context()``:
    certificates checked against the system's CAs), made once per process and shared
    by all threads (an ``SSLContext`` may be): making one reads the whole CA store,
    about 18 ms of CPU, which every mail used to pay, TLS or not. A changed CA store
    is read at the next start."""
    return ssl.create_default_context()


class SmtpTransport:
    """Sends through an SMTP server named by a URL (read by :func:`parse_smtp_url`)."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        endpoint = parse_smtp_url(url)
        self.implicit_tls = endpoint.implicit_tls
        self.host = endpoint.host
        self.port = endpoint.port
        self.username = endpoint.username
        self.password = endpoint.password
        self.starttls = endpoint.starttls
        self.timeout = timeout

    def send(self, message: WireMessage) -> None:
        client: smtplib.SMTP
        if self.implicit_tls:
            client = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=tls_context()
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.starttls:
                client.starttls(context=tls_context())
            if self.username and self.password:
                client.login(self.username, self.password)
            # What ``send_message`` would send: its envelope and its flattening.
            client.sendmail(message.envelope_from, list(message.envelope_to), message.smtp_data())


class FolderTransport:
    """Writes each mail as an ``.eml`` file: for development and for sites without SMTP.

    The folder is made when a file cannot be written for want of it (not looked up
    before every mail)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._folder = os.fspath(directory)

    def send(self, message: WireMessage) -> None:
        name = f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.eml"
        path = os.path.join(self._folder, name)
        try:
            file = open(path, "wb")  # noqa: SIM115 (closed below; opened again after mkdir)
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            file = open(path, "wb")  # noqa: SIM115
        with file:
            file.write(message.data)
        domain = message.envelope_to[0].rpartition("@")[2] if message.envelope_to else ""
        log.warning("mail written to %s (recipient at %s): %s", name, domain, message.subject)


def transport_for(smtp_url: str | None, outbox_dir: Path) -> Transport:
    return SmtpTransport(smtp_url) if smtp_url else FolderTransport(outbox_dir)


_outbox = cast(Table, OutboxMail.__table__)
_INSERT_OUTBOX = Prepared(insert(_outbox))
_MARK_SENT = Prepared(
    update(_outbox)
    .where(_outbox.c.id == bindparam("mail_id"))
    .values(sent_at=bindparam("sent_at"), claimed_until=None, attempts=bindparam("attempts"))
)


@dataclass(frozen=True, slots=True)
class QueuedMail:
    """A mail as :func:`queue_mail` wrote its ``mail_outbox`` row: the columns a
    message is made from (:func:`build_message`), without an ORM object."""

    id: str
    to_address: str
    subject: str
    body_text: str
    body_html: str | None
    headers: str
    created_at: datetime
    attempts: int
    attachments: str | None


MailRow = OutboxMail | QueuedMail
"""What a message is made from: a loaded outbox row, or one just queued."""


def attachments_json(attachments: Sequence[Attachment]) -> str | None:
    """How ``mail_outbox.attachments`` keeps ``attachments`` (``None`` for none), or
    :class:`AttachmentError`: a file name that is not 1 to 100 ASCII letters, digits,
    dots, hyphens or underscores (so ``Content-Disposition`` needs no encoding, RFC
    2183), a content type that is not a lower-case ``type/subtype``, more than
    :data:`MAX_ATTACHMENT_BYTES` in all, or one name twice."""
    if not attachments:
        return None
    names: set[str] = set()
    for attachment in attachments:
        if not ATTACHMENT_NAME.fullmatch(attachment.filename):
            raise AttachmentError(
                f"attachment name {attachment.filename!r}: use 1 to 100 ASCII letters, "
                "digits, dots, hyphens or underscores"
            )
        if attachment.filename in names:
            raise AttachmentError(f"attachment name {attachment.filename!r} is given twice")
        names.add(attachment.filename)
        if not ATTACHMENT_TYPE.fullmatch(attachment.content_type):
            raise AttachmentError(
                f"attachment {attachment.filename}: content type "
                f"{attachment.content_type!r} is not a lower-case type/subtype"
            )
    size = sum(len(attachment.data) for attachment in attachments)
    if size > MAX_ATTACHMENT_BYTES:
        raise AttachmentError(
            f"attachments of {size:,} bytes; a mail carries at most {MAX_ATTACHMENT_BYTES:,}"
        )
    return orjson.dumps(
        [
            {
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "data": base64.b64encode(attachment.data).decode("ascii"),
            }
            for attachment in attachments
        ]
    ).decode()


def attachments_of(row: MailRow) -> tuple[Attachment, ...]:
    """The files ``row`` keeps (see :func:`attachments_json`), in order."""
    if not row.attachments:
        return ()
    return tuple(
        Attachment(item["filename"], item["content_type"], base64.b64decode(item["data"]))
        for item in orjson.loads(row.attachments)
    )


def queue_mail(
    tx: Transaction,
    mail: Mail,
    *,
    subject_id: str | None = None,
    claims: list[QueuedMail] | None = None,
) -> str:
    """Queue ``mail`` in the caller's transaction; returns its id (in an ORM session also
    listed by :func:`queued_mail_ids`, to send once the transaction commits).

    ``claims``: the caller sends it itself right after the commit (:func:`claimed_mails`,
    :func:`send_claimed`): the row is written claimed by this process for
    :data:`CLAIM_SECONDS`, so no deliverer takes it meanwhile, and the periodic delivery
    sends it once the claim lapses if this process never does. The row, as written, is
    added to ``claims`` (the caller's own list, dropped with it if the transaction fails).

    Raises :class:`AttachmentError` (nothing written) for a file it cannot send."""
    attachments = attachments_json(mail.attachments)
    mail_id = uuid.uuid4().hex
    now = utcnow()
    row = QueuedMail(
        id=mail_id,
        to_address=mail.to,
        subject=mail.subject,
        body_text=mail.text,
        body_html=mail.html,
        headers=orjson.dumps(dict(mail.headers)).decode(),
        created_at=now,
        attempts=0,
        attachments=attachments,
    )
    # On the driver's cursor (zeroparty.db.Prepared): the same INSERT, in the session's
    # transaction, without the ORM's per-execution work.
    _INSERT_OUTBOX.execute(
        connection_of(tx),
        {
            "id": mail_id,
            "subject_id": subject_id,
            "to_address": mail.to,
            "subject": mail.subject,
            "body_text": mail.text,
            "body_html": mail.html,
            "headers": row.headers,
            "created_at": now,
            "attempts": 0,
            "next_attempt_at": now,
            "claimed_until": None if claims is None else now + timedelta(seconds=CLAIM_SECONDS),
            "sent_at": None,
            "failed_at": None,
            "last_error": None,
            "attachments": attachments,
        },
    )
    if claims is not None:
        claims.append(row)
    elif isinstance(tx, Session):
        tx.info.setdefault(QUEUED_IDS, []).append(mail_id)
    return mail_id


def queued_mail_ids(session: Session) -> tuple[str, ...]:
    """The ids of the mails :func:`queue_mail` queued in ``session`` so far. Read them
    inside the transaction, deliver them after it committed (:func:`deliver_queued`)."""
    return tuple(session.info.get(QUEUED_IDS, ()))


@dataclass(frozen=True, slots=True)
class ClaimedMails:
    """The mails a transaction queued claimed (``queue_mail(..., claims=rows)``), as
    written, with the sender to send them as: what :func:`send_claimed` sends once the
    transaction committed."""

    rows: tuple[QueuedMail, ...] = ()
    sender: MailSender | None = None

    def __bool__(self) -> bool:
        return bool(self.rows)


def claimed_mails(tx: Transaction, claims: Sequence[QueuedMail], base_url: str) -> ClaimedMails:
    """The mails ``tx`` queued claimed (``claims``), and (if there are any) the site's
    sender (read in the same transaction, or this process's copy of it: at most
    :data:`zeroparty.site_info.SENDER_CACHE_SECONDS` old). Call it inside the transaction,
    just before it commits; send what it returns after the commit (:func:`send_claimed`)."""
    if not claims:
        return ClaimedMails()
    return ClaimedMails(tuple(claims), cached_mail_sender(tx, base_url))


def wire_address(address: str) -> str:
    """``address`` as written on the wire: ASCII, an internationalized domain in its
    IDNA form (``xn--``). Never an RFC 2047 encoded-word, which is not allowed inside an
    address (Python writes one for any non-ASCII character). zeroparty does not send
    SMTPUTF8, so a non-ASCII local part (refused at input since, see
    :func:`consent_ledger.subjects.normalise_email`) is a ``ValueError``: that mail fails
    alone, it is never sent to a mangled address."""
    if address.isascii():
        return address
    try:
        return (
            validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email
            or ""
        )
    except EmailNotValidError as exc:
        raise ValueError(f"cannot write the address on the wire without SMTPUTF8: {exc}") from exc


@lru_cache(maxsize=64)
def _from_header(name: str, address: str) -> Any:
    """The ``From`` header object of a sender, built once (see :class:`WirePolicy`)."""
    return WIRE_POLICY.header_factory("From", Address(name, addr_spec=address))


def mail_footer(sender: MailSender, language: str = i18n.SOURCE_LANGUAGE) -> str:
    """The lines every mail ends with, in the mail's language: who sent it
    (``[site.mail]``), the postal address and privacy policy of ``[site.brand]``'s footer
    (the policy else ``[site]``'s); an address the company's name already spells out is
    not repeated."""
    lines = [i18n.gettext(language, SENT_BY) % {"company": sender.company}]
    if sender.postal_address and sender.postal_address not in sender.company:
        lines.append(sender.postal_address)
    if sender.privacy_policy:
        lines.append(i18n.gettext(language, POLICY_LINE) % {"url": sender.privacy_policy})
    return "\n".join(lines)


def build_message(row: MailRow, sender: MailSender) -> EmailMessage:
    """The message for ``row`` as ``sender`` sends it, with the footer
    (:func:`mail_footer`); with a brand, also as HTML in its colours
    (:func:`zeroparty.mail_html.mail_html`, made from the text), then the files. Its
    ``Message-ID`` is the row's id, so a retry keeps it."""
    message = EmailMessage(policy=WIRE_POLICY)
    from_address = wire_address(sender.from_address)
    message["From"] = _from_header(sender.from_name, from_address)
    if sender.reply_to:
        message["Reply-To"] = wire_address(sender.reply_to)
    message["To"] = wire_address(row.to_address)
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    message["Message-ID"] = f"<{row.id}@{from_address.rpartition('@')[2]}>"
    headers = orjson.loads(row.headers)
    for name, value in headers.items():
        message[name] = value
    language = mail_language(headers)
    footer = mail_footer(sender, language)
    text = f"{row.body_text.rstrip()}\n\n{footer}\n"
    message.set_content(text)
    if row.body_html:
        lines = "<br>".join(escape(line) for line in footer.splitlines())
        message.add_alternative(f"{row.body_html}<p>{lines}</p>", subtype="html")
    elif sender.colours is not None:  # the same words in the brand's colours
        # Boundaries named after the row's id (random, made after the text was written,
        # so no part can contain them; RFC 2046 5.1.1): a retry writes the same bytes,
        # and the email package need not search the text for a boundary of its own.
        message.make_alternative(boundary=f"=_alt_{row.id}")
        message.add_alternative(mail_html(text, sender.colours), subtype="html")
    attachments = attachments_of(row)
    if attachments:
        # The text (or its alternatives) first, then each file: multipart/mixed.
        message.make_mixed(boundary=f"=_mixed_{row.id}")
        for attachment in attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            part = EmailMessage(policy=WIRE_POLICY)
            part.set_content(
                attachment.data,
                maintype=maintype,
                subtype=subtype,
                disposition="attachment",
                filename=attachment.filename,
            )
            message.attach(part)
    for child in message.iter_parts():
        # EmailMessage gives each part it makes a MIME-Version header of its own: it is
        # the message's header only (RFC 2045 section 4).
        for inner in child.walk():
            del inner["MIME-Version"]
    if language != i18n.SOURCE_LANGUAGE:
        # Set last: set_content and make_* take Content-* headers off the message.
        del message[CONTENT_LANGUAGE]
        message[CONTENT_LANGUAGE] = language
    return message


@dataclass(frozen=True, slots=True)
class WireMessage:
    """A mail as it goes out: the envelope, the subject (for the log line), and the
    message's bytes as the email package writes :func:`build_message`'s message, split
    into the header block (blank line included) and the body."""

    envelope_from: str
    envelope_to: tuple[str, ...]
    subject: str
    head: bytes
    body: bytes

    @property
    def data(self) -> bytes:
        """The bytes ``EmailMessage.as_bytes()`` writes (the ``.eml`` file)."""
        return self.head + self.body

    def smtp_data(self) -> bytes:
        """The bytes ``smtplib.SMTP.send_message`` writes: its generator has no policy
        of its own, so it puts ``>`` before each body line that begins with ``From ``
        (``mangle_from_``); headers and multipart boundaries never begin so."""
        return self.head + _FROM_LINE.sub(b">From ", self.body)

    @classmethod
    def of(cls, message: EmailMessage) -> WireMessage:
        """``message`` written by the email package, its envelope found as
        ``send_message`` finds it (``From``, ``To``)."""
        head, blank, body = message.as_bytes().partition(b"\r\n\r\n")
        to = message["To"]
        return cls(
            envelope_from=getaddresses([str(message["From"])])[0][1],
            envelope_to=tuple(address for _, address in getaddresses([str(to)])) if to else (),
            subject=str(message["Subject"]),
            head=head + blank,
            body=body,
        )


_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)  # email.generator's fcre, on bytes
_LINE_ENDS = re.compile(r"\r\n|\r|\n")  # email.generator.NLCRE: each becomes CRLF
_MAIL_ID = re.compile(r"[0-9a-f]{32}")  # the outbox's ids (uuid4().hex)
_PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_%+-]+(\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*"
)
# The headers a queued mail may carry that :func:`wire_message` writes itself.
_WRITTEN_HEADERS = frozenset({"List-Unsubscribe", "List-Unsubscribe-Post", CONTENT_LANGUAGE})
_ID_MARK = "0" * 32


def _header_line(name: str, value: Any) -> bytes:
    """``name: value`` as the email package writes it into a message: stored by the
    policy (:meth:`WirePolicy.header_store_parse`, as ``message[name] = value`` does),
    then folded (:meth:`WirePolicy.fold_binary`, as the generator does)."""
    return WIRE_POLICY.fold_binary(name, WIRE_POLICY.header_store_parse(name, value)[1])


@lru_cache(maxsize=64)
def _sender_lines(name: str, address: str, reply_to: str) -> tuple[bytes, str]:
    """The ``From`` (and ``Reply-To``) lines of a sender and its envelope address."""
    from_header = _from_header(name, address)
    lines = _header_line("From", from_header)
    if reply_to:
        lines += _header_line("Reply-To", reply_to)
    return lines, getaddresses([str(from_header)])[0][1]


@lru_cache(maxsize=16)
def _part_head(subtype: str, cte: str) -> bytes:
    """The header block of a ``text/SUBTYPE`` part (``set_content`` of a str)."""
    return (
        _header_line("Content-Type", f'text/{subtype}; charset="utf-8"')
        + _header_line("Content-Transfer-Encoding", cte)
        + b"\r\n"
    )


@lru_cache(maxsize=1)
def _alternative_head() -> tuple[bytes, bytes]:
    """``MIME-Version`` and the ``multipart/alternative`` type of :func:`build_message`,
    for an id of :data:`_MAIL_ID`'s shape, split where the id goes (every such id is
    quoted and folded alike)."""
    line = _header_line("MIME-Version", "1.0") + _header_line(
        "Content-Type", f'multipart/alternative; boundary="=_alt_{_ID_MARK}"'
    )
    before, mark, after = line.partition(_ID_MARK.encode())
    assert mark
    assert _ID_MARK.encode() not in after
    return before, after


def _text_part(text: str, subtype: str) -> tuple[bytes, bytes]:
    """The header block and body of ``set_content(text)``'s part, as written."""
    cte, payload = _encode_text(text, "utf-8", None, WIRE_POLICY)
    body = _LINE_ENDS.sub("\r\n", payload).encode("ascii", "surrogateescape")
    return _part_head(subtype, cte), body


def _raw_value(value: str) -> bool:
    """A ``List-*`` value :func:`_fold_raw` may be given directly: the email package's
    header object would hold the same text (no line break, control character or
    encoded-word, nothing to strip)."""
    return value.isascii() and value.isprintable() and "=?" not in value and value == value.strip()


def wire_message(row: MailRow, sender: MailSender) -> WireMessage:
    """:func:`build_message`'s message for ``row``, as the bytes the email package would
    write, without building it: the mails sent right after a request (text, with the
    brand's HTML alternative or without) are written here from the same pieces (header
    lines stored and folded by :data:`WIRE_POLICY`, cached per text; the body encoded by
    the email package's own ``_encode_text``); any other mail (files, HTML of its own,
    other headers) is built by :func:`build_message`. ``tests/zeroparty/test_mail_build.py``
    compares both byte for byte."""
    headers: dict[str, str] = orjson.loads(row.headers)
    if (
        row.body_html
        or row.attachments
        or not headers.keys() <= _WRITTEN_HEADERS
        or not _MAIL_ID.fullmatch(row.id)
    ):
        return WireMessage.of(build_message(row, sender))
    from_address = wire_address(sender.from_address)
    head, envelope_from = _sender_lines(
        sender.from_name, from_address, wire_address(sender.reply_to) if sender.reply_to else ""
    )
    to = wire_address(row.to_address)
    if len(to) < SOFT_LINE_OCTETS and _PLAIN_ADDRESS.fullmatch(to):
        head += b"To: " + to.encode("ascii") + b"\r\n"
        envelope_to: tuple[str, ...] = (to,)
    else:
        to_header = WIRE_POLICY.header_store_parse("To", to)[1]
        head += WIRE_POLICY.fold_binary("To", to_header)
        envelope_to = tuple(address for _, address in getaddresses([str(to_header)]))
    subject = WIRE_POLICY.header_store_parse("Subject", row.subject)[1]
    head += WIRE_POLICY.fold_binary("Subject", subject)
    date = format_datetime(row.created_at)
    if row.created_at.utcoffset() == timedelta(0):  # read back and written the same
        head += b"Date: " + date.encode("ascii") + b"\r\n"
    else:
        head += _header_line("Date", date)
    domain = from_address.rpartition("@")[2]
    message_id = f"<{row.id}@{domain}>"
    if len(domain) < SOFT_LINE_OCTETS and _PLAIN_DOMAIN.fullmatch(domain):
        head += b"Message-ID: " + message_id.encode("ascii") + b"\r\n"
    else:
        head += _header_line("Message-ID", message_id)
    for name, value in headers.items():
        if name == CONTENT_LANGUAGE:
            continue  # set_content takes it off; written last (see build_message)
        if _raw_value(value):
            head += _fold_raw(name, value, "\r\n").encode("ascii")
        else:
            head += _header_line(name, value)
    language = mail_language(headers)
    text = f"{row.body_text.rstrip()}\n\n{mail_footer(sender, language)}\n"
    text_head, text_body = _text_part(text, "plain")
    if sender.colours is None:
        head += text_head[:-2] + _header_line("MIME-Version", "1.0")
        body = text_body
    else:
        before, after = _alternative_head()
        head += before + row.id.encode("ascii") + after
        html_head, html_body = _text_part(mail_html(text, sender.colours), "html")
        boundary = b"--=_alt_" + row.id.encode("ascii")
        body = b"".join(
            (
                boundary + b"\r\n",
                text_head,
                text_body,
                b"\r\n" + boundary + b"\r\n",
                html_head,
                html_body,
                b"\r\n" + boundary + b"--\r\n",
            )
        )
    if language != i18n.SOURCE_LANGUAGE:
        head += _header_line(CONTENT_LANGUAGE, language)
    return WireMessage(envelope_from, envelope_to, str(subject), head + b"\r\n", body)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** (attempts - 1), 6 * 3600))


def deliver_pending(
    database: Database, transport: Transport, *, limit: int = 50, base_url: str = ""
) -> int:
    """Send the mails that are due; returns how many were sent. ``base_url`` names the
    host of the default sender (``no-reply@host``) when the site configures none."""
    return _deliver(database, transport, base_url, _CLAIM_DUE, {"limit": limit})


def deliver_queued(
    database: Database, transport: Transport, mail_ids: Collection[str], *, base_url: str = ""
) -> int:
    """Send exactly the mails ``mail_ids`` (queued by one request, now committed) if they
    are still unsent and unclaimed; returns how many were sent. Never touches other
    mails; one that fails waits for :func:`deliver_pending`'s retry like any other."""
    if not mail_ids:
        return 0
    return _deliver(database, transport, base_url, _CLAIM_QUEUED, {"mail_ids": list(mail_ids)})


def send_after_commit(database: Database, settings: Settings, mail_ids: Collection[str]) -> int:
    """What a request runs after its answer: :func:`deliver_queued` of the mails it
    queued, through the transport ``settings`` name."""
    transport = transport_for(settings.smtp_url, settings.outbox_dir)
    return deliver_queued(database, transport, mail_ids, base_url=settings.base_url)


def send_claimed(database: Database, settings: Settings, mails: ClaimedMails) -> int:
    """What a request runs after its answer when it queued its mails claimed: send each
    through the transport ``settings`` name, then mark it sent (one update); returns
    how many were sent. A mail that fails gets its retry scheduled like any other; a
    mail never sent (the process stopped) is delivered by :func:`deliver_pending` once
    its claim lapses."""
    if not mails.rows:
        return 0
    assert mails.sender is not None
    transport = transport_for(settings.smtp_url, settings.outbox_dir)
    sent = 0
    for row in mails.rows:
        if _send(database, transport, row, mails.sender):
            with database.write_connection() as connection:
                _MARK_SENT.execute(
                    connection, {"mail_id": row.id, "sent_at": utcnow(), "attempts": 1}
                )
            sent += 1
    return sent


def _send(database: Database, transport: Transport, row: MailRow, sender: MailSender) -> bool:
    """Send ``row``; on failure schedule its retry (or give it up) and return False."""
    try:
        transport.send(wire_message(row, sender))
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        # ValueError: a header that cannot be written (retried, then given up).
        _failed(database, row.id, row.attempts + 1, exc)
        return False
    return True


def _claimable(*which: ColumnElement[bool]) -> Select[Any]:
    """Unsent, not given up, unclaimed (or the claim lapsed) rows meeting ``which``,
    locked (PostgreSQL skips rows another deliverer holds), as :class:`QueuedMail`'s
    columns."""
    c = _outbox.c
    return (
        select(*(c[name] for name in QueuedMail.__dataclass_fields__))
        .where(
            *which,
            c.sent_at.is_(None),
            c.failed_at.is_(None),
            or_(c.claimed_until.is_(None), c.claimed_until < bindparam("now")),
        )
        .order_by(c.next_attempt_at)
        .with_for_update(skip_locked=True)
    )


_CLAIM_DUE = Prepared(
    _claimable(_outbox.c.next_attempt_at <= bindparam("now")).limit(bindparam("limit"))
)
_CLAIM_QUEUED = Prepared(_claimable(_outbox.c.id.in_(bindparam("mail_ids", expanding=True))))
_SET_CLAIM = Prepared(
    update(_outbox)
    .where(_outbox.c.id == bindparam("mail_id"))
    .values(claimed_until=bindparam("claimed_until"))
)


def _deliver(
    database: Database,
    transport: Transport,
    base_url: str,
    claimable: Prepared,
    values: dict[str, object],
) -> int:
    now = utcnow()
    with database.write_connection() as connection:
        rows = [QueuedMail(*row) for row in claimable.execute(connection, {**values, "now": now})]
        if not rows:
            return 0
        claims = [
            {"mail_id": row.id, "claimed_until": now + timedelta(seconds=CLAIM_SECONDS)}
            for row in rows
        ]
        if len(claims) == 1:
            _SET_CLAIM.execute(connection, claims[0])
        else:
            _SET_CLAIM.executemany(connection, claims)
        sender = mail_sender(connection, base_url)
    sent = 0
    for row in rows:  # loaded, claimed and committed: no transaction held while sending
        mail_id, attempts = row.id, row.attempts
        if not _send(database, transport, row, sender):
            continue
        with database.write_connection() as connection:
            _MARK_SENT.execute(
                connection, {"mail_id": mail_id, "sent_at": utcnow(), "attempts": attempts + 1}
            )
        sent += 1
    return sent


def _failed(database: Database, mail_id: str, attempts: int, exc: Exception) -> None:
    reason = f"{type(exc).__name__}: {exc}"[:500]
    log.warning("mail %s not sent (attempt %d): %s", mail_id, attempts, type(exc).__name__)
    values: dict[str, object] = {"attempts": attempts, "claimed_until": None, "last_error": reason}
    if attempts >= MAX_ATTEMPTS:
        values["failed_at"] = utcnow()
    else:
        values["next_attempt_at"] = utcnow() + _backoff(attempts)
    with database.write() as session:
        session.execute(update(OutboxMail).where(OutboxMail.id == mail_id).values(**values))
