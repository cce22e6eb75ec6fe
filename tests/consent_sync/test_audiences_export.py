"""``zeroparty audience export``: the same snapshot as the API, streamed as CSV or JSON
lines, noted in the staff log; an unknown purpose or topic exits 2 and writes nothing."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction
from consent_ledger.api import ConsentLedger
from consent_sync import audience_commands, audiences
from consent_sync.audience_commands import CSV_COLUMNS
from tests.consent_sync.conftest import staff_log
from tests.consent_sync.test_audiences import export, grant
from tests.factories import record
from zeroparty import cli
from zeroparty.db import Database


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("cli_env")
def test_csv_export_has_every_member_with_its_links(
    api: TestClient,
    database: Database,
    ledger: ConsentLedger,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(audiences, "MAX_LIMIT", 2)  # several pages
    for n in range(5):
        grant(ledger, database, f"lead{n}@example.com", name=f"Lead, {n}")
    record(database, "gone@example.com", "newsletter", ConsentAction.WITHDRAWN)
    code, out, err = _run(capsys, "audience", "export", "newsletter")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == CSV_COLUMNS
    assert sorted(r["email"] for r in rows) == [f"lead{n}@example.com" for n in range(5)]
    by_api = {m["email"]: m for m in export(api)[0]["members"]}
    for row in rows:
        member = by_api[row["email"]]
        assert row["name"] == member["name"]
        assert row["topics"] == " ".join(member["topics"])
        assert row["list_unsubscribe"] == member["headers"]["List-Unsubscribe"]
        assert row["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
        assert row["unsubscribe_url"] == member["unsubscribe_url"]
        assert row["notice_version"] == "1"
    assert "5 leads may receive newsletter as of ledger entry" in err
    actions = [action for action, _ in staff_log(database)]
    assert actions[0] == "audience.export"


@pytest.mark.usefixtures("cli_env")
def test_jsonl_export_of_a_topic(
    database: Database, ledger: ConsentLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    grant(ledger, database, "webinars@example.com", topics="webinars")
    grant(ledger, database, "digest@example.com", topics="monthly_digest")
    code, out, _err = _run(
        capsys, "audience", "export", "newsletter", "--topic", "webinars", "--format", "jsonl"
    )
    assert code == 0
    (line,) = out.splitlines()
    member = json.loads(line)
    assert member["email"] == "webinars@example.com"
    assert member["topics"] == ["webinars"]
    assert member["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "no purpose 'nope'"),
        (["newsletter", "--topic", "release_notes"], "not a topic of 'newsletter'"),
    ],
)
def test_unknown_purpose_or_topic_exits_2(
    database: Database,
    ledger: ConsentLedger,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    grant(ledger, database, "ann@example.com")
    code, out, err = _run(capsys, "audience", "export", *argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert staff_log(database) == []


_fields = st.text(alphabet=st.sampled_from('ab,"\n\r\x00 é;\t'), max_size=12)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(_fields, min_size=len(CSV_COLUMNS), max_size=len(CSV_COLUMNS))))
def test_the_csv_is_what_the_csv_module_writes(
    rows: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows joined directly and rows the writer quotes: byte for byte ``csv.writer``."""
    members = [object() for _ in rows]
    by_member = dict(zip(map(id, members), rows, strict=True))
    monkeypatch.setattr(audience_commands, "csv_row", lambda member: by_member[id(member)])
    ours = io.StringIO()
    assert audience_commands.write_csv(members, ours) == len(rows)  # type: ignore[arg-type]
    theirs = io.StringIO()
    writer = csv.writer(theirs, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    assert ours.getvalue() == theirs.getvalue()
