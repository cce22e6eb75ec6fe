"""CSV with ``\\n`` line ends (the audience and suppression exports): every field holding
a carriage return or a line feed is quoted, so any reader gets each row back intact."""

from __future__ import annotations

import csv
import io

from consent_sync.csv_lines import LineFeedCsvWriter
from tests.consent_sync.test_audiences_export import NAMES, read_back, split_records

ROWS = [["email", "name", "purposes"]] + [
    [f"lead{n}@example.com", name, "newsletter webinars"] for n, name in enumerate(NAMES)
]


def test_rows_with_line_breaks_quotes_and_commas_read_back_intact() -> None:
    out = io.StringIO()
    LineFeedCsvWriter(out).writerows(ROWS)
    data = out.getvalue()
    assert data.endswith("\n")
    assert not data.endswith("\r\n")
    assert len(split_records(data)) == len(ROWS)
    assert read_back(data) == ROWS
    assert '"Ann\rSmith"' in data
    assert '"Ann ""Annie"" Smith"' in data


def test_a_row_without_a_carriage_return_is_what_csv_writer_writes() -> None:
    rows = [["a", "b,c", 'd"e', "f\ng", "", " h "]]
    ours, theirs = io.StringIO(), io.StringIO()
    LineFeedCsvWriter(ours).writerows(rows)
    csv.writer(theirs, lineterminator="\n").writerows(rows)
    assert ours.getvalue() == theirs.getvalue()
