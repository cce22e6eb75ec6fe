"""Typed settings, read once from the environment (12-factor, prefix ``ZEROPARTY_``).

No other module reads ``os.environ``: the app factory and the CLI build one
:class:`Settings` and pass it down, so a test can build as many as it likes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zeroparty.mail import SmtpUrlError, parse_smtp_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "sqlite:///./zeroparty.db"
DEFAULT_SITE_FILE = PROJECT_ROOT / "site.toml"
PREFIX = "ZEROPARTY_"


class SettingsError(ValueError):
    """An environment variable holds a value zeroparty cannot use."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


STAFF_ROLES = ("admin", "compliance", "marketer")


def _roles(value: str) -> tuple[str, ...]:
    """Staff roles named in a setting (``admin,compliance``); an unknown one is refused."""
    roles = _split(value.lower())
    unknown = [role for role in roles if role not in STAFF_ROLES]
    if unknown:
        raise SettingsError(
            f"{PREFIX}CONSOLE_REQUIRE_TWO_FACTOR: unknown role {unknown[0]!r} "
            f"(roles are {', '.join(STAFF_ROLES)})"
        )
    return roles


def _above_zero(name: str, value: float) -> float:
    if value <= 0:
        raise SettingsError(f"{PREFIX}{name} must be above zero")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one running zeroparty.

    ``secret_keys``: the first key signs, every key verifies (rotation: prepend the new
    key, drop the old one once its links may expire). Empty when the environment sets
    none: :func:`zeroparty.secret_keys.resolve_secret_keys` then supplies a generated key
    on the embedded default, or refuses; nothing ships a built-in key.
    ``checkpoint_key``: the checkpoint signing key itself (signer key text or PEM), which
    takes precedence over ``checkpoint_key_file``.
    """

    database_url: str = DEFAULT_DATABASE_URL
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    base_url: str = "http://127.0.0.1:8000"
    smtp_url: str | None = None
    allowed_embed_origins: tuple[str, ...] = ()
    outbox_dir: Path = Path("./outbox")
    site_file: Path = DEFAULT_SITE_FILE
    api_key_cache_seconds: float = 10.0
    checkpoint_key_file: Path = Path("./zeroparty-checkpoint.key")
    checkpoint_key: str | None = field(default=None, repr=False)
    checkpoint_origin: str | None = None
    checkpoint_every_entries: int = 1000
    checkpoint_every_minutes: float = 10.0
    checkpoint_mirror_file: Path | None = None
    checkpoint_retired_keys: tuple[str, ...] = ()
    mail_receipts: bool = True
    crm_webhook_url: str | None = None
    crm_webhook_secret: str | None = None
    webhook_max_attempts: int = 8
    webhook_timeout_seconds: float = 5.0
    console_session_minutes: float = 480.0
    console_idle_minutes: float = 30.0
    console_require_two_factor: tuple[str, ...] = ()
    erasure_scrub_minutes: float = 60.0
    """PostgreSQL: the scrub after erasure rewrites the tables at most this often."""

    @property
    def ledger_origin(self) -> str:
        """The log's name in its checkpoints: ``<host>/consent-ledger`` unless set."""
        if self.checkpoint_origin:
            return self.checkpoint_origin
        host = self.base_url.split("://", 1)[-1].split("/", 1)[0]
        return f"{host}/consent-ledger"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: the process environment).

        Without ``ZEROPARTY_SECRET_KEYS`` ``secret_keys`` is empty: no key is built in
        (see :mod:`zeroparty.secret_keys` for what the CLI and ``serve`` do then).
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name)
            return value if value not in (None, "") else None

        secret_keys = _split(get("SECRET_KEYS") or "")
        if any(len(key) < 16 for key in secret_keys):
            raise SettingsError("ZEROPARTY_SECRET_KEYS: each key must be at least 16 characters")
        base_url = (get("BASE_URL") or cls.base_url).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise SettingsError("ZEROPARTY_BASE_URL must start with http:// or https://")

        def number(name: str, default: float) -> float:
            raw = get(name)
            try:
                value = float(raw) if raw is not None else default
            except ValueError as exc:
                raise SettingsError(f"{PREFIX}{name} must be a number") from exc
            if value < 0:
                raise SettingsError(f"{PREFIX}{name} must not be negative")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"{PREFIX}{name} must be 1 or 0")

        smtp_url = get("SMTP_URL")
        if smtp_url:
            try:  # read as the transport reads it: a typo refuses to start, not to send
                parse_smtp_url(smtp_url)
            except SmtpUrlError as exc:
                raise SettingsError(str(exc)) from None
        mirror = get("CHECKPOINT_MIRROR_FILE")
        webhook_url, webhook_secret = get("CRM_WEBHOOK_URL"), get("CRM_WEBHOOK_SECRET")
        if webhook_url and not webhook_url.startswith(("http://", "https://")):
            raise SettingsError("ZEROPARTY_CRM_WEBHOOK_URL must start with http:// or https://")
        if webhook_url and not (webhook_secret or "").startswith("whsec_"):
            raise SettingsError(
                "ZEROPARTY_CRM_WEBHOOK_SECRET (whsec_ and base64) is required with a webhook URL"
            )
        return cls(
            database_url=get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            secret_keys=secret_keys,
            base_url=base_url,
            smtp_url=smtp_url,
            allowed_embed_origins=_split(get("ALLOWED_EMBED_ORIGINS") or ""),
            outbox_dir=Path(get("OUTBOX_DIR") or "./outbox"),
            site_file=Path(get("SITE_FILE") or DEFAULT_SITE_FILE),
            api_key_cache_seconds=number("API_KEY_CACHE_SECONDS", cls.api_key_cache_seconds),
            checkpoint_key_file=Path(get("CHECKPOINT_KEY_FILE") or "./zeroparty-checkpoint.key"),
            checkpoint_key=(get("CHECKPOINT_KEY") or "").strip() or None,
            checkpoint_origin=get("CHECKPOINT_ORIGIN"),
            checkpoint_every_entries=int(
                number("CHECKPOINT_EVERY_ENTRIES", cls.checkpoint_every_entries)
            ),
            checkpoint_every_minutes=number(
                "CHECKPOINT_EVERY_MINUTES", cls.checkpoint_every_minutes
            ),
            checkpoint_mirror_file=Path(mirror) if mirror else None,
            mail_receipts=flag("MAIL_RECEIPTS", cls.mail_receipts),
            console_session_minutes=number("CONSOLE_SESSION_MINUTES", cls.console_session_minutes)
            or cls.console_session_minutes,
            console_idle_minutes=number("CONSOLE_IDLE_MINUTES", cls.console_idle_minutes)
            or cls.console_idle_minutes,
            console_require_two_factor=_roles(get("CONSOLE_REQUIRE_TWO_FACTOR") or ""),
            checkpoint_retired_keys=tuple(
                key.strip()
                for key in (get("CHECKPOINT_RETIRED_KEYS") or "").split(";")
                if key.strip()
            ),
            crm_webhook_url=webhook_url,
            crm_webhook_secret=webhook_secret,
            webhook_max_attempts=max(1, int(number("WEBHOOK_MAX_ATTEMPTS", 8))),
            webhook_timeout_seconds=number("WEBHOOK_TIMEOUT_SECONDS", 5.0),
            erasure_scrub_minutes=_above_zero(
                "ERASURE_SCRUB_MINUTES", number("ERASURE_SCRUB_MINUTES", 60.0)
            ),
        )
