"""No shared secret ever ships: the signing keys come from ``ZEROPARTY_SECRET_KEYS``, or
on the embedded default from a random key made beside the database; anywhere else the
CLI refuses to start. Driven as an operator drives it: the real CLI in a subprocess."""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import dataclasses
import re
import stat
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.testclient import TestClient

from preference_center.links import manage_link
from preference_center.tokens import LinkPurpose
from tests.conftest import TEST_SECRET
from tests.fixtures.hosts import Host
from tests.reliability.live import free_port
from zeroparty.apikeys import create_api_key
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.secret_keys import GENERATE_HINT, resolve_secret_keys, secret_key_file
from zeroparty.settings import PROJECT_ROOT, Settings, SettingsError
from zeroparty.tokens import TokenService

HINT = f"generate one with: {GENERATE_HINT}"
PACKAGES = ("zeroparty", "consent_ledger", "capture", "preference_center", "scoring", "console")


# --- start-up refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "why"),
    [
        (
            {"ZEROPARTY_DATABASE_URL": "postgresql+psycopg://zp@127.0.0.1:5432/zp"},
            "with PostgreSQL",
        ),
        (
            {"ZEROPARTY_BASE_URL": "https://consent.example.com"},
            "with a public or https base URL (https://consent.example.com)",
        ),
        (
            {"ZEROPARTY_BASE_URL": "https://127.0.0.1:8000"},
            "with a public or https base URL (https://127.0.0.1:8000)",
        ),
        (
            {"ZEROPARTY_BASE_URL": "http://consent.example.com"},
            "with a public or https base URL (http://consent.example.com)",
        ),
        (
            {"ZEROPARTY_BASE_URL": "http://10.0.0.5:8000"},
            "with a public or https base URL (http://10.0.0.5:8000)",
        ),
    ],
)
@pytest.mark.parametrize("command", [("serve",), ("link", "ann@example.com")])
def test_refuses_to_start_without_secret_keys_outside_the_embedded_default(
    tmp_path: Path, env: dict[str, str], why: str, command: tuple[str, ...]
) -> None:
    host = Host(tmp_path / "host", **env)
    result = host.run(*command)
    assert result.returncode == 2
    assert result.stderr == f"zeroparty: ZEROPARTY_SECRET_KEYS is required {why}; {HINT}\n"
    assert result.stdout == ""
    assert sorted(p.name for p in host.folder.iterdir()) == []  # no database, no key made


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    host = Host(tmp_path / "host")
    key_file = host.folder / "zeroparty-secret.key"
    key_file.write_text("a-key-that-leaked-to-the-group-0123456789\n")
    key_file.chmod(0o640)
    result = host.run("link", "ann@example.com")
    assert result.returncode == 2
    assert result.stderr == (
        f"zeroparty: the secret key file {Path('zeroparty-secret.key')} is readable by others "
        "(mode 0640); run: chmod 600 zeroparty-secret.key\n"
    )


def test_create_app_refuses_empty_secret_keys(database: Database, settings: Settings) -> None:
    with pytest.raises(SettingsError, match="secret_keys is empty"):
        create_app(dataclasses.replace(settings, secret_keys=()), database)


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("sqlite:///./zeroparty.db", "http://127.0.0.1:8000", "zeroparty-secret.key"),
        ("sqlite:////var/lib/zp/main.db", "http://localhost:8000", "/var/lib/zp/main-secret.key"),
        ("sqlite:///data/zp.sqlite3", "http://[::1]:8000", "data/zp-secret.key"),
        ("sqlite://", "http://127.0.0.1:8000", None),
        ("sqlite:///./zeroparty.db", "https://127.0.0.1", None),
        ("sqlite:///./zeroparty.db", "http://192.168.1.2", None),
        ("postgresql+psycopg://zp@127.0.0.1/zp", "http://127.0.0.1:8000", None),
    ],
)
def test_where_the_generated_key_lives(url: str, base: str, expected: str | None) -> None:
    path = secret_key_file(Settings(database_url=url, base_url=base))
    assert (str(path) if path else None) == expected


# --- the generated key on the embedded default ----------------------------------------------


def _grant(base_url: str, api_key: str, email: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    notices = httpx2.get(f"{base_url}/api/notices?locale=en", headers=headers).json()["notices"]
    notice = next(n for n in notices if n["purpose"] == "profiling")
    answer = httpx2.post(
        f"{base_url}/api/consent",
        headers=headers,
        json={
            "email": email,
            "purpose": "profiling",
            "action": "granted",
            "notice_sha256": notice["notice_sha256"],
            "source": "test",
            "evidence": {"note": "secret keys test"},
        },
    )
    assert answer.status_code == 201, answer.text


def test_embedded_default_makes_one_private_key_and_links_work_across_processes(
    tmp_path: Path,
) -> None:
    port = free_port()
    host = Host(tmp_path / "host", ZEROPARTY_BASE_URL=f"http://127.0.0.1:{port}")
    key_file = host.folder / "zeroparty-secret.key"
    with host.serve(port) as (url, log):
        first_log = log.read_text()
        assert key_file.exists()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert len(key) >= 40  # token_urlsafe(32)
        assert first_log.count("created a secret key in zeroparty-secret.key") == 1
    with host.serve(port) as (url, log):
        assert key_file.read_text().strip() == key  # reused, not replaced
        assert "created a secret key" not in log.read_text()
        made = host.run("apikey", "create", "site")
        assert made.returncode == 0, made.stderr
        _grant(url, made.stdout.strip(), "ann@example.com")
        link = host.run("link", "ann@example.com")
        assert link.returncode == 0, link.stderr
        assert "created a secret key" not in link.stderr
        page = httpx2.get(link.stdout.strip())
        assert page.status_code == 200  # the CLI's link, accepted by the served app
        token = link.stdout.strip().rsplit("/", 1)[1]
        forged = _resign(token, LinkPurpose.MANAGE.value, key, TEST_SECRET)
        assert httpx2.get(f"{url}/p/{forged}").status_code in (400, 403, 404)
    assert key_file.read_text().strip() == key


def _resign(token: str, purpose: str, real_key: str, other_key: str) -> str:
    payload = TokenService((real_key,), purpose, 3600).read(token)
    return TokenService((other_key,), purpose, 3600).issue(payload)


# --- no constant in the source can sign anything the app accepts -------------------------


def _repository_sources() -> list[Path]:
    """Every ``*.py`` of the repository: the packages, tests, bench, scripts, alembic
    and the rest; not the virtualenv, caches or other hidden folders."""
    return sorted(
        path
        for path in PROJECT_ROOT.rglob("*.py")
        if not any(
            part.startswith(".") or part in ("__pycache__", "node_modules", "build", "dist")
            for part in path.relative_to(PROJECT_ROOT).parts[:-1]
        )
    )


def _literals() -> list[str]:
    """Every string literal of 16 characters or more in every ``*.py`` of the repository
    (docstrings too)."""
    found: set[str] = set()
    for path in _repository_sources():
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and len(node.value) >= 16
            ):
                found.add(node.value)
    return sorted(found)


def _purposes() -> set[str]:
    """Every token purpose the app signs with: the literal purpose of each
    ``TokenService(keys, "purpose", …)`` call, and the preference center's link purposes."""
    purposes = {purpose.value for purpose in LinkPurpose}
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) == "TokenService"
                    and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)
                ):
                    purposes.add(node.args[1].value)
    return purposes


@pytest.fixture
def embedded_settings(tmp_path: Path, database_url: str) -> Settings:
    """The settings ``serve`` builds for itself on the embedded default (no
    ``ZEROPARTY_SECRET_KEYS``: a generated key), on the test's database."""
    (tmp_path / "site").mkdir()
    resolved = resolve_secret_keys(
        Settings.from_env(
            {
                "ZEROPARTY_DATABASE_URL": f"sqlite:///{tmp_path / 'site' / 'zeroparty.db'}",
                "ZEROPARTY_BASE_URL": "http://127.0.0.1:8000",
            }
        )
    )
    return dataclasses.replace(
        resolved,
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        checkpoint_key_file=tmp_path / "checkpoint.key",
        api_key_cache_seconds=0,
    )


def test_the_literal_scan_finds_what_it_should() -> None:
    folders = {path.relative_to(PROJECT_ROOT).parts[0] for path in _repository_sources()}
    assert {*PACKAGES, "tests", "bench", "scripts", "alembic"} <= folders
    literals = _literals()
    assert len(literals) > 500
    assert any("ZEROPARTY_SECRET_KEYS" in literal for literal in literals)
    assert TEST_SECRET in literals  # tests/conftest.py: the tests' own key is scanned too
    purposes = _purposes()
    assert {"console-login", "confirm", "form-render", LinkPurpose.MANAGE.value} <= purposes


def test_no_string_literal_in_the_source_signs_a_token_the_app_accepts(
    embedded_settings: Settings, database: Database
) -> None:
    literals = _literals()
    purposes = sorted(_purposes())
    app_keys = embedded_settings.secret_keys
    assert len(app_keys) == 1
    assert not set(app_keys) & set(literals)
    app = create_app(embedded_settings, database)
    assert app.state.settings.secret_keys == app_keys
    # Nor is the checkpoint key it signs receipts with, in either of its spellings.
    signer = app.state.checkpoint_signer.get()
    assert not {signer.to_signer_key(), signer.to_pem().decode()} & set(literals)
    with database.write() as session:
        api_key = create_api_key(session, "literal-scan")
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {api_key}"
        _grant_in_process(client, "ann@example.com")
        with database.read() as session:
            subject = session.execute(
                text("SELECT subject_id FROM consent_state ORDER BY subject_id LIMIT 1")
            ).scalar_one()
            real_link = manage_link(embedded_settings, session, subject)
        real_token = real_link.rsplit("/", 1)[1]
        assert client.get(f"/p/{real_token}").status_code == 200  # the control
        payload = TokenService(app_keys, LinkPurpose.MANAGE.value, 3600).read(real_token)
    for literal in literals:
        # Every purpose the app signs: the app's own verifier refuses the literal's token.
        for purpose in purposes:
            forged = TokenService((literal,), purpose, 3600).issue({"s": subject, "v": 0})
            assert not TokenService(app_keys, purpose, 3600).accepts(forged), literal
    # And over HTTP, for every literal: a preference link and a console cookie. On a
    # thread of its own: a browser test earlier in the session (Playwright's sync API)
    # may leave an event loop running on this one, where asyncio.run() refuses to start.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _forged_requests_refused(app, literals, payload)).result()


async def _forged_requests_refused(
    app: Starlette, literals: list[str], payload: dict[str, object]
) -> None:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        refused = await client.get("/console/")
        assert refused.status_code != 200
        for literal in literals:
            link = TokenService((literal,), LinkPurpose.MANAGE.value, 3600).issue(payload)
            answer = await client.get(f"/p/{link}")
            assert answer.status_code in (400, 403, 404), (literal, answer.status_code)
            cookie = TokenService((literal,), "console-session", 3600).issue({"u": 1, "g": 0})
            console = await client.get("/console/", headers={"Cookie": f"zp_console={cookie}"})
            assert console.status_code == refused.status_code, literal
            assert console.headers.get("location") == refused.headers.get("location")


def _grant_in_process(client: TestClient, email: str) -> None:
    notices = client.get("/api/notices?locale=en").json()["notices"]
    notice = next(n for n in notices if n["purpose"] == "profiling")
    answer = client.post(
        "/api/consent",
        json={
            "email": email,
            "purpose": "profiling",
            "action": "granted",
            "notice_sha256": notice["notice_sha256"],
            "source": "test",
            "evidence": {"note": "literal scan"},
        },
    )
    assert answer.status_code == 201, answer.text


def test_the_readme_documents_the_generated_key() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text("utf-8")
    assert re.search(r"ZEROPARTY_SECRET_KEYS` \| none built in", readme)
    assert "zeroparty-secret.key" in readme
