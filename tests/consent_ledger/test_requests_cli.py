"""``zeroparty requests``: the queue on the command line, flags included; ``--check``
exits 1 while a request is past its deadline (for monitoring)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from consent_ledger.requests import RequestChannel, RequestKind, record_request
from consent_ledger.subjects import find_subject_id
from tests.factories import record
from zeroparty import cli
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["requests", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lists_and_flags(
    cli_env: Settings, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    record(database, "eu@example.com", "profiling", jurisdiction="DE")
    record(database, "ca@example.com", "profiling", jurisdiction="US-CA")
    now = utcnow()
    with database.write() as session:
        eu = find_subject_id(session, "eu@example.com")
        ca = find_subject_id(session, "ca@example.com")
        record_request(session, eu, RequestKind.ERASURE, RequestChannel.STAFF,
                       received_at=now - timedelta(days=40))  # fmt: skip
        record_request(session, ca, RequestKind.OPT_OUT_SALE, RequestChannel.STAFF,
                       received_at=now - timedelta(days=40))  # fmt: skip
        record_request(session, None, RequestKind.ACCESS, RequestChannel.STAFF,
                       email="nobody@example.com")  # fmt: skip
    code, out, _err = _run(capsys)
    assert code == 0
    assert "#1 erasure open" in out
    assert "OVERDUE staff" in out
    assert "#2 opt_out_sale open" in out
    assert "DUE SOON" in out
    assert "#3" not in out  # closed (nothing held): only with --all
    assert "2 request(s) listed; 1 overdue, 1 due within 7 days" in out
    code, out, _err = _run(capsys, "--all")
    assert "#3 access nothing_held" in out
    assert "(nothing held)" in out
    assert _run(capsys, "--check")[0] == 1


def test_check_passes_with_nothing_overdue(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = _run(capsys, "--check")
    assert code == 0
    assert "0 request(s) listed; 0 overdue" in out


@pytest.mark.parametrize("limit", ["0", "-1", "x", "10001"])
def test_bad_limit(cli_env: Settings, capsys: pytest.CaptureFixture[str], limit: str) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["requests", "--limit", limit])
    assert exited.value.code == 2
    assert "a whole number from 1 to 10000" in capsys.readouterr().err
