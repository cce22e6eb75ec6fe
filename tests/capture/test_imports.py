"""``zeroparty import FILE``: contacts from CSV, permission only with consent evidence.

Every bad row kind is reported with its line number, and one bad row means nothing is
written (SPEC rule 6); re-importing records nothing twice; the ledger still verifies.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from capture.import_columns import FIELDS, ColumnOptions, MappingInvalid, parse_mapping
from capture.imports import (
    KNOWN_COLUMNS,
    ContactRow,
    CsvRow,
    DuplicateCheck,
    ImportLimits,
    ImportReport,
    NoticeCatalog,
    RowProblem,
    format_report,
    import_contacts,
    parse_contacts,
    validate_row,
)
from consent_ledger.models import (
    ConsentEvent,
    ConsentEvidence,
    ConsentState,
    NoticeVersion,
    Subject,
    SubjectProfile,
)
from consent_ledger.verify import verify_database
from tests.factories import notice_hash, record
from zeroparty.cli import main
from zeroparty.db import Database
from zeroparty.wiring import build_ledger

HEADER = (
    "email,name,company,job_title,country,purpose,consent_source,consent_at,notice_sha256,method"
)
COUNTED = (ConsentEvent, ConsentEvidence, ConsentState, Subject, SubjectProfile)
AT = "2026-03-01T09:30:00Z"


def row_counts(database: Database) -> dict[str, int]:
    with database.read() as session:
        return {
            model.__tablename__: session.execute(
                select(func.count()).select_from(model)
            ).scalar_one()
            for model in COUNTED
        }


def run(database: Database, text: str | bytes, **options: object) -> ImportReport:
    data = text.encode() if isinstance(text, str) else text
    return import_contacts(build_ledger(database), io.BytesIO(data), **options)  # type: ignore[arg-type]


@pytest.fixture
def profiling(database: Database) -> str:
    return notice_hash(database, "profiling")


@pytest.fixture
def csv_text(database: Database, profiling: str) -> str:
    newsletter = notice_hash(database, "newsletter")
    return "\n".join(
        [
            HEADER,
            f"Ann@Example.com,Ann Lee,Acme,CTO,DE,profiling,trade fair,{AT},{profiling},written",
            f"bob@example.com,Bob,,,US-CA,newsletter,webinar signup,{AT},{newsletter},",
            "cat@example.com,Cat,Bought Ltd,Buyer,,,,,,",
            "",
        ]
    )


def events(database: Database) -> list[ConsentEvent]:
    with database.read() as session:
        return list(session.scalars(select(ConsentEvent).order_by(ConsentEvent.seq)))


def states(database: Database) -> dict[tuple[str, str], ConsentState]:
    with database.read() as session:
        pairs = session.execute(select(SubjectProfile.subject_id, SubjectProfile.email))
        emails = dict(pairs.all())
        return {
            (emails[s.subject_id], s.purpose_key): s for s in session.scalars(select(ConsentState))
        }


# --- with and without evidence --------------------------------------------------------------


def test_rows_with_evidence_gain_permission_and_the_others_none(
    database: Database, csv_text: str, profiling: str
) -> None:
    report = run(database, csv_text)
    assert report.ok, report.problems
    assert report.written
    assert (report.rows, report.with_evidence, report.without_evidence) == (3, 2, 1)
    assert (report.leads_created, report.grants_recorded) == (3, 2)
    assert report.unpermitted_lines == [4]
    assert report.pending_confirmation == 1  # newsletter is double opt-in, method not
    entries = events(database)
    assert [(e.purpose_key, e.action, e.source) for e in entries] == [
        ("profiling", "granted", "import"),
        ("newsletter", "granted", "import"),
    ]
    assert entries[0].source_ref == f"import:{report.file_sha256}:2"
    assert entries[0].method == "written"
    assert entries[0].notice_sha256 == profiling
    assert entries[0].occurred_at == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert entries[0].evidence_sha256 is not None
    assert entries[1].method == "electronic"  # the default
    assert entries[1].confirmation_required
    now = states(database)
    assert now[("ann@example.com", "profiling")].permitted
    assert not now[("bob@example.com", "newsletter")].permitted  # pending confirmation
    assert all(email != "cat@example.com" for email, _ in now), "no permission, no state"
    with database.read() as session:
        cat = session.scalars(
            select(SubjectProfile).where(SubjectProfile.email == "cat@example.com")
        ).one()
        assert cat.name == "Cat"
        bob = session.get_one(Subject, session.scalars(
            select(SubjectProfile.subject_id).where(SubjectProfile.email == "bob@example.com")
        ).one())  # fmt: skip
        assert bob.jurisdiction == "US-CA"
    with database.read() as session:
        body = session.get_one(ConsentEvidence, entries[0].seq).body
    assert "trade fair" in body


def test_notice_version_number_names_the_notice(database: Database) -> None:
    with database.read() as session:
        version, sha = session.execute(
            select(NoticeVersion.version, NoticeVersion.sha256).where(
                NoticeVersion.purpose_key == "profiling", NoticeVersion.locale == "de"
            )
        ).one()
    text = (
        "email,locale,purpose,consent_source,consent_at,notice_version\n"
        f"dora@example.com,de,profiling,phone call,{AT},{version}\n"
    )
    report = run(database, text)
    assert report.written, report.problems
    assert events(database)[0].notice_sha256 == sha
    assert events(database)[0].locale == "de"


def test_attribute_columns_are_named_in_the_report(database: Database, csv_text: str) -> None:
    """Handed to scoring (tests/scoring/test_imported_answers.py), never in the ledger."""
    report = run(database, csv_text)
    assert report.columns_for_scoring == ("company", "job_title")
    assert report.columns_not_kept == ()
    assert report.rows_for_scoring == 1  # ann's row; bob's has no values, cat's no evidence
    text = "\n".join(format_report(report, "x.csv"))
    assert "for scoring: company, job_title of 1 row(s) with consent evidence handed on" in text
    assert "rows without evidence pass nothing on" in text


def test_rows_of_one_email_complete_each_other(database: Database, profiling: str) -> None:
    newsletter = notice_hash(database, "newsletter")
    text = "\n".join(
        [
            HEADER,
            f"gil@example.com,,,,,profiling,fair,{AT},{profiling},",
            f"gil@example.com,Gil,,,FR,newsletter,fair,{AT},{newsletter},double-opt-in",
        ]
    )
    report = run(database, text)
    assert (report.leads_created, report.grants_recorded, report.duplicate_rows) == (1, 2, 0)
    with database.read() as session:
        profile = session.scalars(select(SubjectProfile)).one()
        assert profile.name == "Gil"
        assert session.get_one(Subject, profile.subject_id).jurisdiction == "FR"
    assert states(database)[("gil@example.com", "newsletter")].permitted


def test_dry_run_validates_and_writes_nothing(database: Database, csv_text: str) -> None:
    before = row_counts(database)
    report = run(database, csv_text, dry_run=True)
    assert report.ok
    assert not report.written
    assert (report.with_evidence, report.without_evidence) == (2, 1)
    assert row_counts(database) == before
    assert "dry run" in "\n".join(format_report(report, "x.csv"))


def test_a_late_imported_grant_does_not_undo_a_later_withdrawal(
    database: Database, profiling: str
) -> None:
    record(database, "eve@example.com", "profiling", occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    from consent_ledger.actions import ConsentAction

    record(
        database,
        "eve@example.com",
        "profiling",
        ConsentAction.WITHDRAWN,
        occurred_at=datetime(2026, 2, 1, tzinfo=UTC),
    )
    text = f"{HEADER}\neve@example.com,,,,,profiling,old CRM,2026-01-15T00:00:00Z,{profiling},\n"
    report = run(database, text)
    assert report.written
    assert (report.leads_existing, report.grants_recorded) == (1, 1)
    assert not states(database)[("eve@example.com", "profiling")].permitted


# --- bad rows -------------------------------------------------------------------------------

Builder = Callable[[str, str], str]  # (profiling hash, newsletter hash) -> CSV text
GOOD = "ok@example.com,Ok,,,,profiling,fair,{at},{p},"


def _rows(*lines: str) -> Builder:
    def build(p: str, n: str) -> str:
        body = [line.format(p=p, n=n, at=AT) for line in lines]
        return "\n".join([HEADER, GOOD.format(p=p, at=AT), *body]) + "\n"

    return build


FUTURE = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
BAD_ROWS: list[tuple[str, Builder, int, str]] = [
    ("invalid email", _rows("not-an-email,,,,,,,,,"), 3, "email"),
    ("empty email", _rows(",Nobody,,,,,,,,"), 3, "email"),
    ("unknown purpose", _rows("a@example.com,,,,,telepathy,fair,{at},{p},"), 3, "purpose"),
    (
        "notice hash of another purpose",
        _rows("a@example.com,,,,,profiling,fair,{at},{n},"),
        3,
        "notice_sha256",
    ),
    (
        "notice hash unknown",
        _rows("a@example.com,,,,,profiling,fair,{at}," + "0" * 64 + ","),
        3,
        "notice_sha256",
    ),
    (
        "consent time in the future",
        _rows("a@example.com,,,,,profiling,fair," + FUTURE + ",{p},"),
        3,
        "consent_at",
    ),
    (
        "consent time unparsable",
        _rows("a@example.com,,,,,profiling,fair,yesterday,{p},"),
        3,
        "consent_at",
    ),
    (
        "consent time without offset",
        _rows("a@example.com,,,,,profiling,fair,2026-01-01T10:00:00,{p},"),
        3,
        "consent_at",
    ),
    ("incomplete evidence", _rows("a@example.com,,,,,profiling,,{at},{p},"), 3, "consent_source"),
    (
        "evidence without notice",
        _rows("a@example.com,,,,,profiling,fair,{at},,"),
        3,
        "notice_sha256",
    ),
    ("unknown method", _rows("a@example.com,,,,,profiling,fair,{at},{p},telepathic"), 3, "method"),
    ("bad country", _rows("a@example.com,,,,Germany,,,,,"), 3, "country"),
    # Free text is one line, as a form's text inputs send it: no control character.
    ("carriage return in name", _rows('a@example.com,"Ann\rSmith",,,,,,,,'), 3, "name"),
    ("line feed in job title", _rows('a@example.com,,,"Head\nof Data",,,,,,'), 3, "job_title"),
    ("escape in company", _rows("a@example.com,,ACME\x1b[2J,,,,,,,"), 3, "company"),
    (
        "control character in consent source",
        _rows("a@example.com,,,,,profiling,fa\x07ir,{at},{p},"),
        3,
        "consent_source",
    ),
    (
        "duplicate email, conflicting name",
        _rows("a@example.com,Ann,,,,,,,,", "x@example.com,,,,,,,,,", "A@example.com,Anne,,,,,,,,"),
        5,
        "name",
    ),
    (
        "duplicate email and purpose, conflicting evidence",
        _rows("OK@example.com,Ok,,,,profiling,phone,{at},{p},"),
        3,
        "purpose",
    ),
    ("ragged row", _rows("a@example.com,,,"), 3, "csv"),
    ("unterminated quote", _rows('a@example.com,"Ann,,,,,,,,'), 3, "csv"),
]


@pytest.mark.parametrize(
    ("build", "line", "column"),
    [pytest.param(b, n, c, id=name) for name, b, n, c in BAD_ROWS],
)
def test_a_bad_row_is_reported_by_line_and_nothing_is_written(
    database: Database, profiling: str, build: Builder, line: int, column: str
) -> None:
    before = row_counts(database)
    report = run(database, build(profiling, notice_hash(database, "newsletter")))
    assert not report.ok
    assert not report.written
    assert (line, column) in {(p.line, p.column) for p in report.problems}, report.problems
    assert row_counts(database) == before


@pytest.mark.parametrize(
    ("data", "limits", "line", "column"),
    [
        pytest.param(
            b"email,name\nok@example.com,Ann\nb@example.com,J\xfcrgen\n",
            None,
            3,
            "encoding",
            id="not-utf8",
        ),
        pytest.param(b"name,company\nAnn,Acme\n", None, 1, "header", id="missing-email-column"),
        pytest.param(
            b"email,shoe_size\na@example.com,42\n", None, 1, "header", id="unknown-column"
        ),
        pytest.param(
            b"email,email\na@example.com,a@example.com\n", None, 1, "header", id="column-twice"
        ),
        pytest.param(b"", None, 1, "header", id="empty-file"),
        pytest.param(
            b"email\n" + b"a@example.com\n" * 3,
            ImportLimits(max_bytes=20),
            0,
            "file",
            id="file-too-large",
        ),
        pytest.param(
            b"email,name\na@example.com," + b"x" * 200 + b"\n",
            ImportLimits(max_line_bytes=100),
            2,
            "file",
            id="line-too-long",
        ),
        pytest.param(
            b"email,name\na@example.com," + b"x" * 200 + b"\n",
            ImportLimits(max_field_chars=100),
            2,
            "name",
            id="field-too-long",
        ),
        pytest.param(
            b"email\na@example.com\nb@example.com\nc@example.com\n",
            ImportLimits(max_rows=2),
            4,
            "file",
            id="too-many-rows",
        ),
    ],
)
def test_a_bad_file_is_reported_by_line_and_nothing_is_written(
    database: Database, data: bytes, limits: ImportLimits | None, line: int, column: str
) -> None:
    before = row_counts(database)
    report = run(database, data, limits=limits or ImportLimits())
    assert not report.written
    assert (line, column) in {(p.line, p.column) for p in report.problems}, report.problems
    assert row_counts(database) == before


def test_every_problem_is_listed_not_only_the_first(database: Database, profiling: str) -> None:
    text = "\n".join([HEADER, "bad1,,,,,,,,,", GOOD.format(p=profiling, at=AT), "bad2,,,,,,,,,"])
    report = run(database, text)
    assert [(p.line, p.column) for p in report.problems] == [(2, "email"), (4, "email")]
    out = "\n".join(format_report(report, "leads.csv"))
    assert "NOT IMPORTED: 2 problem(s)" in out
    assert "line 2: email:" in out
    assert "line 4: email:" in out


def test_a_bad_row_after_written_chunks_leaves_nothing_half_imported(
    database: Database, profiling: str
) -> None:
    good = [f"lead{i}@example.com,,,,,profiling,fair,{AT},{profiling}," for i in range(40)]
    text = "\n".join([HEADER, *good, "broken,,,,,,,,,"]) + "\n"
    before = row_counts(database)
    report = run(database, text, chunk_rows=7)  # five chunks written before the bad row
    assert [(p.line, p.column) for p in report.problems] == [(42, "email")]
    assert row_counts(database) == before
    assert report.grants_recorded == 0


def test_duplicate_check_fills_repeats_and_conflicts() -> None:
    check = DuplicateCheck()

    def contact(line: int, name: str | None, country: str | None = None) -> ContactRow:
        return ContactRow(line, "x@example.com", name, country, None, (), None)

    assert check.check(contact(2, None)) is False  # first sight
    assert check.check(contact(3, "Xi")) is False  # fills the name
    assert check.check(contact(4, "Xi")) is True  # says nothing new
    assert check.check(contact(5, None, "DE")) is False  # fills the country
    conflict = check.check(contact(6, "Xu"))
    assert isinstance(conflict, RowProblem)
    assert (conflict.line, conflict.column) == (6, "name")
    assert "line 2" in conflict.message
    conflict = check.check(contact(7, "Xi", "FR"))
    assert isinstance(conflict, RowProblem)
    assert conflict.column == "country"


def test_lines_count_physical_lines_across_quoted_newlines(database: Database) -> None:
    text = 'email,name\na@example.com,"two\nlines"\nnope,x\n'
    report = run(database, text)
    assert [(p.line, p.column) for p in report.problems] == [(2, "name"), (4, "email")]


# --- idempotence and the ledger -------------------------------------------------------------


def test_reimporting_records_nothing_twice(
    database: Database, csv_text: str, profiling: str
) -> None:
    first = run(database, csv_text)
    counts = row_counts(database)
    second = run(database, csv_text)
    assert second.written
    assert (second.grants_recorded, second.grants_already_recorded) == (0, 2)
    assert (second.leads_created, second.leads_existing) == (0, 3)
    assert row_counts(database) == counts
    # The same rows in another file, reordered, with one new row: only that one is new.
    lines = csv_text.strip().split("\n")
    extra = f"fay@example.com,,,,,profiling,fair,{AT},{profiling},"
    third = run(database, "\n".join([lines[0], extra, *reversed(lines[1:])]) + "\n")
    assert third.file_sha256 != first.file_sha256
    assert (third.grants_recorded, third.grants_already_recorded) == (1, 2)
    assert len(events(database)) == 3
    # A repeated row within one file is skipped, not an error.
    fourth = run(database, "\n".join([lines[0], lines[1], lines[1]]) + "\n")
    assert fourth.duplicate_rows == 1


def test_a_lead_created_by_another_writer_meanwhile_is_used(
    database: Database, profiling: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a form submission creates the lead between the import's look-up and
    its bulk insert; the import yields and records its grant for that lead."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite's IMMEDIATE write transaction keeps every other writer out")
    from consent_ledger import subjects

    real_new_id = subjects.new_subject_id
    raced: list[str] = []

    def new_id_after_a_race() -> str:
        if not raced:  # the first id the import's bulk insert takes: another writer wins
            raced.append("")
            raced[0] = record(database, "hal@example.com", "newsletter").subject_id
        return real_new_id()

    monkeypatch.setattr(subjects, "new_subject_id", new_id_after_a_race)
    text = f"{HEADER}\nhal@example.com,Hal,,,,profiling,fair,{AT},{profiling},\n"
    report = run(database, text)
    assert report.written, report.problems
    assert (report.leads_created, report.leads_existing) == (0, 1)
    with database.read() as session:
        assert session.execute(select(func.count()).select_from(Subject)).scalar_one() == 1
    assert {e.subject_id for e in events(database)} == set(raced)


def test_ledger_verifies_after_an_import(
    database: Database, database_url: str, csv_text: str
) -> None:
    record(database, "before@example.com", "profiling")
    assert run(database, csv_text).written
    record(database, "after@example.com", "profiling")
    report = verify_database(database_url)
    assert report.problem is None
    assert report.entries == 4


# --- the command ----------------------------------------------------------------------------


def test_cli_imports_and_reports(
    cli_env: object, tmp_path: Path, csv_text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(csv_text, encoding="utf-8")
    assert main(["import", str(path), "--dry-run"]) == 0
    assert "valid (dry run, nothing written)" in capsys.readouterr().out
    assert main(["import", str(path)]) == 0
    out = capsys.readouterr().out
    assert "imported: 2 row(s) with consent evidence, 1 contact(s) without permission" in out
    assert "without permission (no evidence), lines: 4" in out
    assert main(["ledger", "verify", "--quiet"]) == 0
    assert "ledger intact: 2 entries" in capsys.readouterr().out


def test_cli_refuses_a_bad_file_with_exit_2(
    cli_env: object, database: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bought.csv"
    path.write_bytes(b"email,name\nok@example.com,Ok\nbad@,Bad\n")
    before = row_counts(database)
    assert main(["import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "NOT IMPORTED" in err
    assert "line 3: email:" in err
    assert row_counts(database) == before
    assert main(["import", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # so opening it to read does not block
    try:
        assert main(["import", str(fifo)]) == 2
    finally:
        os.close(writer)
    assert "not a regular file" in capsys.readouterr().err


def test_the_parser_stops_at_the_size_limit_and_says_where() -> None:
    data = b"email,name\n" + b"a@example.com,Ann\n" * 10
    items = list(parse_contacts(io.BytesIO(data), ImportLimits(max_bytes=60)))
    assert isinstance(items[-1], RowProblem)
    assert (items[-1].line, items[-1].column) == (4, "file")
    assert all(isinstance(item, RowProblem) or item.line < 4 for item in items)


def test_cli_help_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["import", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "--dry-run" in out
    assert "consent evidence" in out or "UTF-8 CSV" in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "consent evidence" in capsys.readouterr().out


# --- the parser alone -----------------------------------------------------------------------


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=400))
def test_the_parser_never_raises_and_names_real_lines(data: bytes) -> None:
    lines = data.count(b"\n") + 1
    for item in parse_contacts(io.BytesIO(b"email,name\n" + data), ImportLimits(max_line_bytes=64)):
        if isinstance(item, RowProblem):
            assert 0 <= item.line <= lines + 1
        else:
            assert 2 <= item.line <= lines + 1
            assert set(item.values) == {"email", "name"}


CATALOG = NoticeCatalog(
    {"profiling": False, "newsletter": True},
    {("profiling", "a" * 64): "en"},
    {
        ("profiling", 1): (("en", "a" * 64),),
        ("newsletter", 1): (("en", "b" * 64), ("de", "c" * 64)),
    },
)
FIELD_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["profiling", "newsletter", "a" * 64, "1", "²", AT, "0001-01-01T00:00:00+01:00",
                     "9999-12-31T23:59:59-01:00", "DE", "us-ca", "en", "written", "x@example.com"]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(KNOWN_COLUMNS)), FIELD_TEXT))
def test_row_validation_never_raises(values: dict[str, str]) -> None:
    result = validate_row(CsvRow(7, values), CATALOG, datetime.now(UTC))
    if isinstance(result, list):
        assert result, "no contact means at least one problem"
        assert all(p.line == 7 for p in result)
    elif result.grant is not None:
        assert result.grant.notice_sha256 in {"a" * 64, "b" * 64, "c" * 64}


# --- delimiters, mapped and left-out columns, progress, the template --------------------------


def _as(text: str, delimiter: str) -> str:
    """``text`` (comma-separated, no quoted commas) as another tool would save it."""
    return text.replace(",", delimiter)


@pytest.mark.parametrize(("delimiter", "named"), [(";", "semicolons"), ("\t", "tabs")])
def test_semicolon_and_tab_files_are_detected(
    database: Database, csv_text: str, delimiter: str, named: str
) -> None:
    report = run(database, _as(csv_text, delimiter))
    assert report.ok, report.problems
    assert report.written
    assert report.delimiter == delimiter
    assert (report.rows, report.with_evidence, report.without_evidence) == (3, 2, 1)
    assert f"columns separated by {named} (detected)" in format_report(report, "x.csv")
    assert [(e.purpose_key, e.source) for e in events(database)] == [
        ("profiling", "import"),
        ("newsletter", "import"),
    ]


def test_a_comma_inside_a_semicolon_file_stays_in_its_field(database: Database) -> None:
    report = run(database, 'email;name;company\nann@example.com;"Lee, Ann";Acme, Inc.\n')
    assert report.ok, report.problems
    with database.read() as session:
        assert session.scalars(select(SubjectProfile.name)).one() == "Lee, Ann"


@pytest.mark.parametrize(
    "data",
    [
        b"email|name\na@example.com|Ann\n",
        b"mail\ta\nx@example.com\tb\n",
        b"E-Mail;Vorname\na@example.com;Ann\n",
    ],
)
def test_a_header_no_delimiter_fits_gets_a_hint(database: Database, data: bytes) -> None:
    before = row_counts(database)
    report = run(database, data)
    assert not report.written
    [problem] = report.problems
    assert (problem.line, problem.column) == (1, "header")
    assert "split at a comma, a semicolon or a tab" in problem.message
    assert "--map COLUMN=FIELD" in problem.message
    assert row_counts(database) == before


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("email,shoe_size\na@example.com,42\n", "shoe_size"),
        ("E-Mail;name\na@example.com;Ann\n", "e-mail"),  # split where a column is known
    ],
)
def test_an_unknown_column_is_refused_naming_both_options(
    database: Database, text: str, unknown: str
) -> None:
    report = run(database, text)
    [problem] = report.problems
    assert f"unknown columns: {unknown} " in problem.message
    assert "--map COLUMN=FIELD" in problem.message
    assert "--ignore-extra" in problem.message
    assert not report.written


def test_extra_columns_are_left_out_when_asked(database: Database, profiling: str) -> None:
    text = (
        "Email;Shoe size;Name;Lead owner\n"
        f"ann@example.com;42;Ann;{'x' * 5000}\n"  # a left-out column is not even measured
    )
    report = run(
        database, text, columns_as=ColumnOptions(ignore_extra=True), limits=ImportLimits(
            max_field_chars=100)
    )  # fmt: skip
    assert report.ok, report.problems
    assert report.columns_ignored == ("shoe size", "lead owner")
    assert "columns left out (--ignore-extra): shoe size, lead owner" in format_report(
        report, "x.csv"
    )
    with database.read() as session:
        assert session.scalars(select(SubjectProfile.name)).one() == "Ann"


def test_mapped_columns_are_read_as_their_fields(database: Database, profiling: str) -> None:
    text = (
        "E-Mail;Firma;Zweck;Quelle;Zeitpunkt;Hinweis;Notizen\n"
        f"ann@example.com;Acme;profiling;Messe;{AT};{profiling};ruft gern an\n"
    )
    mapping = parse_mapping(
        ["E-Mail=email", "firma=company", "Zweck=purpose", "Quelle=consent_source",
         "Zeitpunkt=consent_at", "Hinweis=notice_sha256"]
    )  # fmt: skip
    report = run(database, text, columns_as=ColumnOptions(mapping, ignore_extra=True))
    assert report.ok, report.problems
    assert report.grants_recorded == 1
    assert report.columns_ignored == ("notizen",)
    assert "columns mapped (--map): e-mail as email, firma as company" in "\n".join(
        format_report(report, "x.csv")
    )
    [entry] = events(database)
    assert (entry.purpose_key, entry.notice_sha256) == ("profiling", profiling)


@pytest.mark.parametrize(
    ("data", "mapping", "message"),
    [
        pytest.param(
            b"email,name\na@example.com,Ann\n",
            {"firma": "company"},
            "--map names column(s) the file does not have: firma (its columns: email, name)",
            id="missing-column",
        ),
        pytest.param(
            b"email,mail\na@example.com,b@example.com\n",
            {"mail": "email"},
            "columns named twice: email",
            id="field-given-twice",
        ),
        pytest.param(
            b"email;name\na@example.com;Ann\nb@example.com;Bo\n",
            {"e-mail": "email"},
            "--map names column(s) the file does not have: e-mail",
            id="missing-column-semicolons",
        ),
    ],
)
def test_a_mapping_the_file_does_not_fit_is_refused_before_anything_is_written(
    database: Database, data: bytes, mapping: dict[str, str], message: str
) -> None:
    before = row_counts(database)
    report = run(database, data, columns_as=ColumnOptions(mapping))
    assert not report.written
    [problem] = report.problems
    assert (problem.line, problem.column) == (1, "header")
    assert message in problem.message
    assert report.rows == 0, "no row was read"
    assert row_counts(database) == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["email"], "expected COLUMN=FIELD"),
        (["=email"], "expected COLUMN=FIELD"),
        (["E-Mail="], "expected COLUMN=FIELD"),
        (["Size=shoe_size"], "'shoe_size' is not a field"),
        (["a=email", "A=name"], "column 'a' is mapped twice"),
        (["a=email", "b=email"], "field 'email' is already mapped from 'a'"),
    ],
)
def test_bad_map_options_are_refused(options: list[str], message: str) -> None:
    with pytest.raises(MappingInvalid, match=message):
        parse_mapping(options)


def test_all_or_nothing_holds_for_a_mapped_semicolon_file(
    database: Database, profiling: str
) -> None:
    rows = [f"a{n}@example.com;profiling;fair;{AT};{profiling}" for n in range(5)]
    rows.insert(3, f"bad@;profiling;fair;{AT};{profiling}")
    text = "\n".join(["Mail;purpose;consent_source;consent_at;notice_sha256", *rows])
    before = row_counts(database)
    report = run(database, text, columns_as=ColumnOptions({"mail": "email"}), chunk_rows=2)
    assert [(p.line, p.column) for p in report.problems] == [(5, "email")]
    assert not report.written
    assert row_counts(database) == before


def test_progress_is_told_every_n_rows_and_at_the_end(database: Database) -> None:
    text = "email\n" + "".join(f"p{n}@example.com\n" for n in range(5))
    heard: list[tuple[int, int, int]] = []
    report = run(database, text, progress=lambda *a: heard.append(a), progress_rows=2)
    assert report.ok
    size = len(text.encode())
    assert [rows for rows, _, _ in heard] == [2, 4, 5]
    assert all(total == size for _, _, total in heard)
    assert heard[-1][1] == size
    assert heard[0][1] < heard[1][1] < size


def test_cli_maps_ignores_and_shows_progress_unless_quiet(
    cli_env: object,
    database: Database,
    tmp_path: Path,
    profiling: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "crm-export.csv"
    path.write_text(
        "E-Mail;Owner;consent_at;purpose;consent_source;notice_sha256\n"
        f"ann@example.com;Bo;{AT};profiling;fair;{profiling}\n",
        encoding="utf-8",
    )
    before = row_counts(database)
    assert main(["import", str(path)]) == 2
    err = capsys.readouterr().err
    assert "--map COLUMN=FIELD" in err
    assert "--ignore-extra" in err
    assert main(["import", str(path), "--map", "E-Mail=email", "--map", "Owner=purpose"]) == 2
    assert "columns named twice: purpose" in capsys.readouterr().err
    assert main(["import", str(path), "--map", "Ownr=name", "--ignore-extra"]) == 2
    assert "the file does not have: ownr" in capsys.readouterr().err
    assert main(["import", str(path), "--map", "E-Mail=mail"]) == 2
    assert "'mail' is not a field" in capsys.readouterr().err
    assert row_counts(database) == before, "nothing written by a refused mapping"

    args = ["import", str(path), "--map", "E-Mail=email", "--ignore-extra"]
    assert main([*args, "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "read 1 rows, 100% of the file" in captured.err
    assert "columns left out (--ignore-extra): owner" in captured.out
    assert main([*args, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "imported: 1 row(s) with consent evidence" in captured.out
    assert states(database)[("ann@example.com", "profiling")].permitted


def test_the_template_lists_every_field_with_a_row_that_is_never_imported_as_is(
    cli_env: object,
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["import", "--template"]) == 0
    template = capsys.readouterr().out
    header, example = list(csv.reader(io.StringIO(template)))
    assert header == list(FIELDS)
    assert set(header) == KNOWN_COLUMNS
    row = dict(zip(header, example, strict=True))
    with database.read() as session:
        latest = session.execute(
            select(func.max(NoticeVersion.version)).where(
                NoticeVersion.purpose_key == row["purpose"]
            )
        ).scalar_one()
    assert latest is not None, "the example names a purpose of the site"
    assert row["notice_version"] == str(latest)
    path = tmp_path / "template.csv"
    path.write_text(template, encoding="utf-8")
    before = row_counts(database)
    assert main(["import", str(path)]) == 2  # the example address is at .invalid
    assert "line 2: email:" in capsys.readouterr().err
    assert row_counts(database) == before
    path.write_text(template.replace("example.invalid", "example.com"), encoding="utf-8")
    assert main(["import", str(path), "--dry-run", "--quiet"]) == 0, capsys.readouterr().err
    assert "valid (dry run, nothing written): 1 row(s) with consent evidence" in (
        capsys.readouterr().out
    )
    assert main(["import", str(path), "--template"]) == 2
    assert "either FILE or --template" in capsys.readouterr().err
    assert main(["import"]) == 2
    assert "the file to import is missing" in capsys.readouterr().err
