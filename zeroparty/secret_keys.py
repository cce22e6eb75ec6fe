"""The signing keys of one process: from the environment, or generated on the embedded
default, never built in.

Every token the app issues (console sessions, preference and unsubscribe links,
confirmation links, form tokens) is signed with ``Settings.secret_keys``. A key printed
in the public source would let anyone forge them, so there is none:

- ``ZEROPARTY_SECRET_KEYS`` set: those keys, as they are.
- the embedded default (SQLite in a file, and a loopback ``http://`` base URL): a random
  key created on first start in a 0600 file beside the database (``zeroparty.db`` ->
  ``zeroparty-secret.key``), logged once and reused by every later process, so
  ``zeroparty link`` makes links the running ``serve`` accepts.
- anywhere else (PostgreSQL, a public or ``https://`` base URL): refused with
  :class:`SecretKeysRequired`, whose message is the one line the CLI prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from zeroparty.settings import Settings, SettingsError

log = logging.getLogger("zeroparty.secret_keys")

GENERATE_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
MIN_KEY_LENGTH = 16


class SecretKeysRequired(SettingsError):
    """No usable signing key: the message says why and what to do, in one line."""


def is_loopback_http(base_url: str) -> bool:
    """Whether ``base_url`` is plain ``http://`` on this machine (127.0.0.0/8, ::1,
    localhost): reachable by nobody else, so a generated key cannot surprise anyone."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname is None:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def secret_key_file(settings: Settings) -> Path | None:
    """Where the embedded default keeps its generated key: beside the SQLite database
    file, or ``None`` when this is not the embedded default (or the database has no
    file: an in-memory SQLite database)."""
    if not settings.is_sqlite or not is_loopback_http(settings.base_url):
        return None
    database = make_url(settings.database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    return path.with_name(f"{path.stem}-secret.key")


def _required(why: str) -> SecretKeysRequired:
    return SecretKeysRequired(
        f"zeroparty: ZEROPARTY_SECRET_KEYS is required {why}; generate one with: {GENERATE_HINT}"
    )


def _read_key_file(path: Path) -> str:
    """The key in ``path``, refused when others may read it or it is no usable key."""
    mode = path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        raise SecretKeysRequired(
            f"zeroparty: the secret key file {path} is readable by others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    key = path.read_text(encoding="utf-8").strip()
    if len(key) < MIN_KEY_LENGTH or "," in key:
        raise SecretKeysRequired(
            f"zeroparty: the secret key file {path} holds no usable key; delete it to have "
            "a new one made (every signed link and console session ends)"
        )
    return key


def _create_key_file(path: Path) -> bool:
    """Write a new random key to ``path`` unless it exists; ``True`` if this call made it.

    The key is written to a 0600 temporary file (``mkstemp``: ``O_CREAT|O_EXCL``) and
    then hard-linked to ``path``, which fails if ``path`` exists: so two processes starting
    together agree on one key, and nobody ever reads a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def resolve_secret_keys(settings: Settings) -> Settings:
    """``settings`` with the signing keys this process must use (see the module
    docstring). Raises :class:`SecretKeysRequired` where no key may be made up."""
    if settings.secret_keys:
        return settings
    if not settings.is_sqlite:
        raise _required("with PostgreSQL")
    if not is_loopback_http(settings.base_url):
        raise _required(f"with a public or https base URL ({settings.base_url})")
    path = secret_key_file(settings)
    if path is None:
        raise _required("with an in-memory SQLite database")
    if not path.exists() and _create_key_file(path):
        log.warning("created a secret key in %s (keep it: it signs every link)", path)
    return dataclasses.replace(settings, secret_keys=(_read_key_file(path),))
