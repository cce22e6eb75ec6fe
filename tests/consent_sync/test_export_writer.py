"""``zeroparty audience export`` into a file or a pipe: the walk in the command's
process, the links and rows in a writer process (:mod:`consent_sync.export_writer`).
The rows are those the one-process export writes, in its order, with links that open
the lead's preference page and unsubscribe it; a writer that fails makes the command
fail; a reader that goes away ends it as in one process."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from consent_ledger.api import ConsentLedger
from consent_ledger.subjects import find_subject_id
from consent_sync import audiences, export_writer
from consent_sync.audience_rows import CSV_COLUMNS
from preference_center.links import lead_linker_many
from preference_center.tokens import LinkPurpose, LinkTokens, revoke_links
from tests.consent_sync.test_audiences import grant
from zeroparty import cli
from zeroparty.db import Database
from zeroparty.mail import LeadLinks
from zeroparty.settings import Settings
from zeroparty.wiring import lead_linker_many as wired_linker

LINKS = ("preference_url", "unsubscribe_url", "list_unsubscribe")
LEADS = 12


@pytest.fixture
def audience(ledger: ConsentLedger, database: Database) -> list[str]:
    emails = [f"lead{n:02d}@example.com" for n in range(LEADS)]
    for n, email in enumerate(emails):
        grant(ledger, database, email, name=f"Lead, {n}" if n % 3 else None)
    return emails


def _spied(monkeypatch: pytest.MonkeyPatch) -> list[export_writer.Writer]:
    started: list[export_writer.Writer] = []
    real = export_writer.Writer

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(export_writer, "Writer", Spy)
    return started


def _export_into_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *argv: str
) -> tuple[int, bytes]:
    target = tmp_path / "audience.out"
    with target.open("w", encoding="utf-8", newline="") as out, monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        code = cli.main(["audience", "export", *argv])
    return code, target.read_bytes()


def _in_one_process(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(["audience", "export", *argv]) == 0
    return capsys.readouterr().out


def _check_links(settings: Settings, lead_id: str, row: dict[str, str], version: int = 0) -> None:
    tokens = LinkTokens(settings)
    manage = tokens.read(LinkPurpose.MANAGE, row["preference_url"].rsplit("/p/", 1)[1])
    one_click = tokens.read(LinkPurpose.UNSUBSCRIBE, row["unsubscribe_url"].rsplit("/u/", 1)[1])
    assert (manage.subject_id, one_click.subject_id) == (lead_id, lead_id)
    assert (manage.version, one_click.version) == (version, version)  # not revoked
    assert one_click.purposes == ("newsletter",)
    assert row["list_unsubscribe"] == f"<{row['unsubscribe_url']}>"


@pytest.mark.usefixtures("cli_env")
def test_a_csv_export_into_a_file_is_the_one_process_export(
    settings: Settings,
    database: Database,
    audience: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(audiences, "MAX_LIMIT", 5)  # several pages, one frame each
    with database.write() as session:  # one lead's earlier links revoked: version 1
        revoked = find_subject_id(session, audience[3])
        assert revoked is not None
        revoke_links(session, revoked)
    started = _spied(monkeypatch)
    code, data = _export_into_file(tmp_path, monkeypatch, "newsletter")
    assert code == 0
    assert len(started) == 1
    assert started[0].rows == LEADS  # the writer process wrote
    assert f"{LEADS} leads may receive newsletter" in capsys.readouterr().err
    one = _in_one_process(capsys, "newsletter").encode()
    # Byte for byte the same rows but for the links (signed at another second).
    ours = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    theirs = list(csv.DictReader(io.StringIO(one.decode(), newline="")))
    assert data.count(b"\n") == one.count(b"\n") == LEADS + 1
    assert b"\r" not in data
    assert data.split(b"\n", 1)[0].decode() == ",".join(CSV_COLUMNS)
    assert [r["email"] for r in ours] == [r["email"] for r in theirs]
    for row, same in zip(ours, theirs, strict=True):
        assert {k: v for k, v in row.items() if k not in LINKS} == {
            k: v for k, v in same.items() if k not in LINKS
        }
        _check_links(settings, row["lead_id"], row, 1 if row["lead_id"] == revoked else 0)


@pytest.mark.usefixtures("cli_env")
def test_a_jsonl_export_into_a_file_is_written_by_the_writer(
    settings: Settings,
    audience: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    started = _spied(monkeypatch)
    code, data = _export_into_file(tmp_path, monkeypatch, "newsletter", "--format", "jsonl")
    assert code == 0
    assert len(started) == 1
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert sorted(m["email"] for m in lines) == audience
    for member in lines:
        assert member["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        _check_links(
            settings,
            member["lead_id"],
            {**member, "list_unsubscribe": member["headers"]["List-Unsubscribe"]},
        )


class _FailingLinker:
    """A linker whose signing fails in the writer process (rebuilt there from nothing)."""

    def __reduce__(self) -> tuple[type[_FailingLinker], tuple[()]]:
        return (_FailingLinker, ())

    def versions(self, _session: Any, subject_ids: Sequence[str]) -> dict[str, int]:
        return {}

    def mint(self, subject_id: str, version: int, purposes: Sequence[str]) -> LeadLinks:
        raise RuntimeError("no key to sign with")


@pytest.mark.usefixtures("cli_env")
def test_a_writer_that_fails_fails_the_export(
    audience: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(
        "consent_sync.audience_commands.lead_linker_many", lambda _settings: _FailingLinker()
    )
    code, data = _export_into_file(tmp_path, monkeypatch, "newsletter")
    assert code == 2
    err = capfd.readouterr().err
    assert "error: the export's writer process stopped (exit status 1)" in err
    assert "leads may receive" not in err  # no count of an export that did not finish
    assert data.count(b"\n") <= 1  # at most the header


def test_a_reader_that_goes_away_ends_the_export_quietly(
    settings: Settings, audience: list[str], tmp_path: Path
) -> None:
    """``zeroparty audience export … | head -n 3``: the writer process meets the
    closed pipe, the command ends as it does in one process (status 0, no trace)."""
    env = {
        **os.environ,
        "ZEROPARTY_DATABASE_URL": settings.database_url,
        "ZEROPARTY_SECRET_KEYS": ",".join(settings.secret_keys),
        "ZEROPARTY_BASE_URL": settings.base_url,
        "ZEROPARTY_CHECKPOINT_KEY_FILE": str(settings.checkpoint_key_file),
    }
    command = [sys.executable, "-m", "zeroparty.cli", "audience", "export", "newsletter"]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path.cwd()
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()  # the reader is gone after one line
        err = process.stderr.read().decode()
        code = process.wait(timeout=60)
    assert first.decode().rstrip("\n") == ",".join(CSV_COLUMNS)
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.usefixtures("cli_env")
def test_a_linker_without_two_steps_exports_in_one_process(
    audience: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A linker that only links whole pages (a plain callable) cannot sign in the
    writer: the export into a file is made in one process, as before."""

    def plain(settings: Settings) -> Any:
        linker = wired_linker(settings)
        assert linker is not None
        return lambda session, ids, purposes: linker(session, ids, purposes)

    monkeypatch.setattr("consent_sync.audience_commands.lead_linker_many", plain)
    started = _spied(monkeypatch)
    code, data = _export_into_file(tmp_path, monkeypatch, "newsletter")
    assert code == 0
    assert started == []
    assert data.count(b"\n") == LEADS + 1


def test_the_writer_gets_the_signing_keys_only(settings: Settings) -> None:
    """What goes down the pipe to the writer rebuilds the linker from the secret keys
    and the base URL; the database URL and the other secrets stay in the command."""
    secret = "postgresql://zp:hunter2@db.internal/zp"
    linker = lead_linker_many(
        dataclasses.replace(
            settings, database_url=secret, crm_webhook_secret="whsec-0123", checkpoint_key="ck"
        )
    )
    data = pickle.dumps(linker)
    assert b"hunter2" not in data
    assert b"whsec-0123" not in data
    again = pickle.loads(data)  # noqa: S301 (made just above)
    lead = "ab" * 16
    made = again.mint(lead, 2, ["newsletter"])
    _check_links(
        settings,
        lead,
        {
            "preference_url": made.preference_url,
            "unsubscribe_url": made.unsubscribe_url,
            "list_unsubscribe": made.headers["List-Unsubscribe"],
        },
        version=2,
    )


def test_the_writer_does_not_import_from_the_working_directory(
    settings: Settings, audience: list[str], tmp_path: Path
) -> None:
    """Run from a folder holding a module named like one the writer imports (orjson),
    the export still uses the installed one: the writer starts with ``-P``."""
    (tmp_path / "orjson.py").write_text("raise SystemExit(9)\n")
    script = Path(sys.executable).parent / "zeroparty"
    env = {
        **os.environ,
        "ZEROPARTY_DATABASE_URL": settings.database_url,
        "ZEROPARTY_SECRET_KEYS": ",".join(settings.secret_keys),
        "ZEROPARTY_BASE_URL": settings.base_url,
        "ZEROPARTY_CHECKPOINT_KEY_FILE": str(settings.checkpoint_key_file),
    }
    out = tmp_path / "audience.csv"
    with out.open("wb") as target:
        done = subprocess.run(
            [str(script), "audience", "export", "newsletter"],
            env=env,
            cwd=tmp_path,
            stdout=target,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_bytes().count(b"\n") == LEADS + 1
