"""Settings from the environment: defaults, validation, and that each one is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zeroparty.db import make_engine, normalise_url
from zeroparty.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_SITE_FILE,
    PROJECT_ROOT,
    Settings,
    SettingsError,
)

KEY_A = "first-secret-key-0123456789"
KEY_B = "second-secret-key-0123456789"


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///./zeroparty.db"
    assert settings.is_sqlite
    # No key is built in: the CLI resolves one (zeroparty.secret_keys) or refuses.
    assert settings.secret_keys == ()
    assert settings.checkpoint_key is None
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.smtp_url is None
    assert settings.allowed_embed_origins == ()
    assert settings.outbox_dir == Path("./outbox")
    assert settings.site_file == DEFAULT_SITE_FILE
    assert settings.api_key_cache_seconds == 10.0


def test_empty_values_count_as_unset() -> None:
    names = ("DATABASE_URL", "SECRET_KEYS", "BASE_URL", "SMTP_URL", "API_KEY_CACHE_SECONDS")
    settings = Settings.from_env({f"ZEROPARTY_{name}": "" for name in names})
    assert settings == Settings.from_env({})


def test_a_given_mapping_is_the_only_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZEROPARTY_BASE_URL", "ftp://not-used.example")
    monkeypatch.setenv("ZEROPARTY_DATABASE_URL", "sqlite:///./elsewhere.db")
    settings = Settings.from_env({})
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.database_url == DEFAULT_DATABASE_URL
    with pytest.raises(SettingsError):
        Settings.from_env()  # the process environment, here with a bad BASE_URL


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "ZEROPARTY_DATABASE_URL": "postgresql+psycopg://zp@db.internal/zp",
            "ZEROPARTY_SMTP_URL": "smtp://mail.internal:25",
            "ZEROPARTY_OUTBOX_DIR": "/var/spool/zp",
            "ZEROPARTY_SITE_FILE": "/etc/zp/site.toml",
            "ZEROPARTY_API_KEY_CACHE_SECONDS": "0",
            "ZEROPARTY_ALLOWED_EMBED_ORIGINS": " https://a.example ,https://b.example,, ",
            "UNRELATED": "ignored",
        }
    )
    assert settings.database_url == "postgresql+psycopg://zp@db.internal/zp"
    assert not settings.is_sqlite
    assert settings.smtp_url == "smtp://mail.internal:25"
    assert settings.outbox_dir == Path("/var/spool/zp")
    assert settings.site_file == Path("/etc/zp/site.toml")
    assert settings.api_key_cache_seconds == 0.0
    assert settings.allowed_embed_origins == ("https://a.example", "https://b.example")


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        (KEY_A, (KEY_A,)),
        (f"{KEY_A},{KEY_B}", (KEY_A, KEY_B)),
        (f" {KEY_B} , {KEY_A} ,", (KEY_B, KEY_A)),  # order kept: the first one signs
    ],
)
def test_secret_keys_are_split(value: str, keys: tuple[str, ...]) -> None:
    assert Settings.from_env({"ZEROPARTY_SECRET_KEYS": value}).secret_keys == keys


@pytest.mark.parametrize("value", ["short", "x" * 15, f"{KEY_A},too-short", f"tiny,{KEY_B}"])
def test_too_short_secret_key_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="ZEROPARTY_SECRET_KEYS"):
        Settings.from_env({"ZEROPARTY_SECRET_KEYS": value})


def test_sixteen_characters_is_enough() -> None:
    key = "k" * 16
    assert Settings.from_env({"ZEROPARTY_SECRET_KEYS": key}).secret_keys == (key,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://consent.example.com", "https://consent.example.com"),
        ("https://consent.example.com/", "https://consent.example.com"),
        ("http://localhost:8000/zp/", "http://localhost:8000/zp"),
    ],
)
def test_base_url_is_kept_without_trailing_slash(value: str, expected: str) -> None:
    assert Settings.from_env({"ZEROPARTY_BASE_URL": value}).base_url == expected


@pytest.mark.parametrize(
    "value", ["consent.example.com", "ftp://consent.example.com", "//consent.example.com", "https"]
)
def test_bad_base_url_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="ZEROPARTY_BASE_URL"):
        Settings.from_env({"ZEROPARTY_BASE_URL": value})


@pytest.mark.parametrize("value", ["ten", "1s", "-1"])
def test_bad_api_key_cache_seconds_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="ZEROPARTY_API_KEY_CACHE_SECONDS"):
        Settings.from_env({"ZEROPARTY_API_KEY_CACHE_SECONDS": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("1", True), ("true", True), ("0", False), ("off", False), ("FALSE", False)],
)
def test_mail_receipts_is_read(value: str | None, expected: bool) -> None:
    environ = {} if value is None else {"ZEROPARTY_MAIL_RECEIPTS": value}
    assert Settings.from_env(environ).mail_receipts is expected


def test_bad_mail_receipts_is_refused() -> None:
    with pytest.raises(SettingsError, match="ZEROPARTY_MAIL_RECEIPTS"):
        Settings.from_env({"ZEROPARTY_MAIL_RECEIPTS": "maybe"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://zp:pw@db.internal:5432/zp", "postgresql+psycopg://zp:pw@db.internal:5432/zp"),
        ("postgresql://zp@db.internal/zp", "postgresql+psycopg://zp@db.internal/zp"),
        ("postgresql+psycopg://zp@db.internal/zp", "postgresql+psycopg://zp@db.internal/zp"),
        ("sqlite:///./zeroparty.db", "sqlite:///./zeroparty.db"),
        ("sqlite:////var/lib/zp.db", "sqlite:////var/lib/zp.db"),
    ],
)
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected
    assert normalise_url(expected) == expected  # idempotent


@pytest.mark.parametrize("url", ["postgres://zp@db.invalid/zp", "postgresql://zp@db.invalid/zp"])
def test_engine_for_a_short_postgres_url_uses_psycopg(url: str) -> None:
    engine = make_engine(url)  # no connection is made until first use
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


# --- documentation ----------------------------------------------------------------------

SETTINGS_SOURCE = (PROJECT_ROOT / "zeroparty" / "settings.py").read_text("utf-8")
README = (PROJECT_ROOT / "README.md").read_text("utf-8")


def _variables_read() -> list[str]:
    """Every ``ZEROPARTY_`` variable ``settings.py`` reads, by the names it passes."""
    plain = set(re.findall(r'get\("([A-Z_]+)"\)', SETTINGS_SOURCE))
    # Any helper called with an upper-case name (``number("API_KEY_CACHE_SECONDS", …)``).
    helpers = set(re.findall(r'\b\w+\(\s*"([A-Z][A-Z0-9_]+)"', SETTINGS_SOURCE))
    return sorted(plain | helpers)


def test_the_variable_scan_finds_the_known_ones() -> None:
    names = _variables_read()
    assert {"DATABASE_URL", "SECRET_KEYS", "BASE_URL", "SMTP_URL", "ALLOWED_EMBED_ORIGINS"} <= set(
        names
    )


@pytest.mark.parametrize("name", _variables_read())
def test_every_variable_read_is_documented_in_the_readme(name: str) -> None:
    documented = re.search(rf"\bZEROPARTY_{name}\b", README) is not None
    assert documented, f"ZEROPARTY_{name} is read by settings.py but not documented in README.md"
