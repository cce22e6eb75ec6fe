"""API keys for the site's backend and the CRM.

A key is shown once (``zeroparty apikey create NAME``) and stored as its SHA-256: keys
are 256-bit random strings, so a fast hash is enough (there is no password to stretch).
The key's public prefix finds the row; the comparison is constant-time.

A key carries scopes (:class:`Scope`): what it may do. A key made without naming any
(every key made before scopes existed) has them all, so it keeps working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from zeroparty.db import Base, Transaction, UTCDateTime, utcnow
from zeroparty.errors import Conflict, Forbidden, InvalidInput, Unauthorized

KEY_PREFIX = "zp"
PREFIX_BYTES = 6
SECRET_BYTES = 32
NAME_PATTERN = "letters, digits, '-', '_' and '.', 1 to 64 characters"


class Scope(StrEnum):
    """What an API key may do."""

    CONSENT_READ = "consent:read"
    """Look consent up (``GET /api/consent``, ``GET /api/notices``)."""
    CONSENT_WRITE = "consent:write"
    """Record consent (``POST /api/consent``)."""
    AUDIENCES = "audiences"
    """Export audiences and the suppression list."""
    EVENTS = "events"
    """Send behaviour events (``POST /api/events``)."""
    CHANGES = "changes"
    """Read the change feed (``GET /api/changes``)."""


ALL_SCOPES = frozenset(Scope)
SCOPE_CHOICES = ", ".join(s.value for s in Scope)


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """The scopes named (``InvalidInput`` for an unknown one); none named: every scope."""
    wanted = [name.strip() for name in names if name.strip()]
    unknown = sorted({name for name in wanted if name not in ALL_SCOPES})
    if unknown:
        reason = f"unknown scope {unknown[0]!r}; use {SCOPE_CHOICES}"
        raise InvalidInput(f"scope: {reason}", fields={"scope": reason})
    return frozenset(Scope(name) for name in wanted) if wanted else ALL_SCOPES


def _stored_scopes(text: str | None) -> frozenset[Scope]:
    # NULL: a key from before scopes, or made without naming any: every scope. A name
    # this version does not know (a newer one wrote it) grants nothing.
    if text is None:
        return ALL_SCOPES
    return frozenset(Scope(n) for n in text.split() if n in ALL_SCOPES)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Space-separated :class:`Scope` values; NULL: every scope.
    scopes: Mapped[str | None] = mapped_column(String(200))


@dataclass(frozen=True, slots=True)
class Caller:
    """Who an authenticated API request comes from."""

    key_id: int
    name: str
    scopes: frozenset[Scope] = ALL_SCOPES

    def require(self, scope: Scope) -> None:
        """Refuse (403) a key that was not given ``scope``."""
        if scope not in self.scopes:
            raise Forbidden(f"the API key {self.name!r} lacks the scope {scope.value!r}")


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isalnum() or c in "-_." for c in name)


def create_api_key(session: Session, name: str, scopes: Iterable[Scope] | None = None) -> str:
    """Create a key named ``name`` and return it; only its hash is kept. ``scopes``:
    what it may do (``None``: everything)."""
    if not _valid_name(name):
        raise InvalidInput(f"name: use {NAME_PATTERN}", fields={"name": NAME_PATTERN})
    if session.execute(select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
        raise Conflict(f"an API key named {name!r} exists already")
    prefix = secrets.token_hex(PREFIX_BYTES)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    kept = None if scopes is None else " ".join(sorted(set(scopes)))
    session.add(ApiKey(name=name, prefix=prefix, key_sha256=_digest(key), scopes=kept))
    session.flush()
    return key


def revoke_api_key(session: Session, name: str) -> None:
    key = session.execute(select(ApiKey).where(ApiKey.name == name)).scalar_one_or_none()
    if key is None:
        raise InvalidInput(f"no API key named {name!r}", fields={"name": "unknown"})
    key.revoked_at = utcnow()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _prefix_of(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != PREFIX_BYTES * 2:
        return None
    return parts[1]


def _bearer_key(authorization: str | None) -> str:
    scheme, _, key = (authorization or "").partition(" ")
    # RFC 9110 §11.1: the authentication scheme is case-insensitive.
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    return key.strip()


class ApiKeyVerifier:
    """Checks bearer keys, remembering good ones for ``cache_seconds``.

    The cache spares the database one query per API call; a revoked key stops working
    within ``cache_seconds`` on every process (each keeps its own cache).
    """

    def __init__(self, cache_seconds: float = 10.0) -> None:
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def cached(self, authorization: str | None) -> Caller | None:
        """The caller of a key checked within ``cache_seconds``, without the database;
        ``None``: the key must be checked by :meth:`verify`. A missing or malformed
        header is refused here already."""
        key = _bearer_key(authorization)
        cached = self._cache.get(_digest(key))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return None

    def verify(self, session: Transaction, authorization: str | None) -> Caller:
        """The caller of a good key (from the cache, or by one query through ``session``);
        :class:`Unauthorized` for anything else."""
        key = _bearer_key(authorization)
        digest = _digest(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        prefix = _prefix_of(key)
        row = None
        if prefix is not None:
            stmt = select(
                ApiKey.id, ApiKey.name, ApiKey.key_sha256, ApiKey.revoked_at, ApiKey.scopes
            ).where(ApiKey.prefix == prefix)
            row = session.execute(stmt).first()
        if (
            row is None
            or row.revoked_at is not None
            or not hmac.compare_digest(row.key_sha256, digest)
        ):
            raise Unauthorized("the API key is not valid")
        caller = Caller(key_id=row.id, name=row.name, scopes=_stored_scopes(row.scopes))
        if self._cache_seconds > 0:
            with self._lock:
                if len(self._cache) > 1000:
                    self._cache.clear()
                self._cache[digest] = (now + self._cache_seconds, caller)
        return caller
