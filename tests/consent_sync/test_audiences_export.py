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
from consent_sync import audience_rows, audiences
from consent_sync.audience_rows import CSV_COLUMNS
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


NAMES = [
    "Ann\rSmith",
    "Ann\r\nSmith",
    "Ann\nSmith",
    'Ann "Annie" Smith',
    "Smith, Ann",
    "Ann\r",
    "\rAnn",
    '"\r\n,"',
]


def split_records(data: str) -> list[str]:
    """The records of RFC 4180 text ending in ``\\n``: split at each ``\\n`` outside
    quotes (a reader independent of :mod:`csv`); no bare ``\\r`` may be left outside."""
    records, quoted, start = [], False, 0
    for at, char in enumerate(data):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "\r":
            raise AssertionError(f"a bare carriage return at {at}: {data[start : at + 1]!r}")
        elif not quoted and char == "\n":
            records.append(data[start:at])
            start = at + 1
    assert not quoted, "the text ends inside a quoted field"
    assert start == len(data), "the last row has no line end"
    return records


def read_back(data: str) -> list[list[str]]:
    """The rows as a reader on the other side gets them."""
    return list(csv.reader(io.StringIO(data, newline="")))


@pytest.mark.usefixtures("cli_env")
def test_names_with_line_breaks_quotes_and_commas_come_back_intact(
    database: Database, ledger: ConsentLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    for n, name in enumerate(NAMES):
        grant(ledger, database, f"lead{n}@example.com", name=name)
    grant(ledger, database, "plain@example.com", name="Plain Lead")
    code, out, err = _run(capsys, "audience", "export", "newsletter")
    assert code == 0, err
    assert len(split_records(out)) == 1 + len(NAMES) + 1
    header, *rows = read_back(out)
    assert header == CSV_COLUMNS
    assert all(len(row) == len(CSV_COLUMNS) for row in rows)
    by_email = {row[0]: row for row in rows}
    for n, name in enumerate(NAMES):
        assert by_email[f"lead{n}@example.com"][1] == name
    assert by_email["plain@example.com"][1] == "Plain Lead"


def _reference_line(fields: list[str]) -> str:
    """RFC 4180 by hand: a field holding a comma, quote, CR or LF is quoted, its quotes
    doubled; rows end in ``\\n``."""
    return (
        ",".join(
            '"' + f.replace('"', '""') + '"' if any(c in f for c in ',"\r\n') else f for f in fields
        )
        + "\n"
    )


_fields = st.text(alphabet=st.sampled_from('ab,"\n\r\x00 é;\t'), max_size=12)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(_fields, min_size=len(CSV_COLUMNS), max_size=len(CSV_COLUMNS))))
def test_every_field_with_a_line_break_is_quoted_and_reads_back(
    rows: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows joined directly and rows the writer quotes: RFC 4180 with ``\\n`` line ends
    (every field holding ``\\r`` or ``\\n`` quoted), read back intact by ``csv.reader``
    and by a split outside quotes; a row without ``\\r`` is byte for byte what
    ``csv.writer(out, lineterminator="\\n")`` writes, as before."""
    members = [object() for _ in rows]
    by_member = dict(zip(map(id, members), rows, strict=True))
    monkeypatch.setattr(audience_rows, "csv_row", lambda member: by_member[id(member)])
    ours = io.StringIO()
    assert audience_rows.write_csv(members, ours) == len(rows)  # type: ignore[arg-type]
    data = ours.getvalue()
    assert data == "".join(map(_reference_line, [CSV_COLUMNS, *rows]))
    assert read_back(data) == [CSV_COLUMNS, *rows]
    assert len(split_records(data)) == 1 + len(rows)
    for fields in rows:
        if not any("\r" in field for field in fields):
            before = io.StringIO()
            csv.writer(before, lineterminator="\n").writerow(fields)
            assert _reference_line(fields) == before.getvalue()
