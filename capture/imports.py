"""Importing contacts from CSV: permission only where a row carries consent evidence.

A row is a contact (``email``, ``name``, ``country``, ``locale``, ``company``,
``job_title``). It becomes a lead *with permission* for a purpose only when it also
carries the evidence of that consent: ``purpose``, ``consent_source`` (where it was
gathered), ``consent_at`` (RFC 3339, not in the future), and the notice version shown,
as ``notice_sha256`` (or ``notice_version``, the purpose's version number) of that
purpose. Optional: ``method`` (default ``electronic``), ``ip``, ``user_agent`` and
``evidence_ref`` (a reference to the original record: a form id, a call id). Such a row
is appended to the ledger as a ``granted`` entry with source ``import``; a double
opt-in purpose stays pending unless ``method`` is ``double-opt-in``. A row with every
evidence column empty becomes a contact with no permission (a subject and its profile,
no ledger entry) and is reported by line. Bought lists carry no evidence, so they never
gain permission and never reach scoring (which needs a live profiling grant).

All or nothing: one bad row (see :class:`RowProblem`) and nothing is written; every
problem is reported with its line number. The whole import is one write transaction,
so it holds the ledger's append lock from its first grant to its commit: other consent
writes wait meanwhile (see BENCHMARKS.md for how long a file of a given size takes).

Idempotent: a row whose lead already has an ``import`` grant for the purpose with the
same ``consent_at`` and notice version is not recorded again, whichever file it came
from. Each new entry's ``source_ref`` is ``import:<SHA-256 of the file>:<line>``, so
the file kept by whoever imported it proves where every entry came from.

The file's delimiter (``,``, ``;`` or tab) is detected from its header row, and its
columns may be mapped to fields or left out when asked (:mod:`capture.import_columns`);
a mapping that names a column the file does not have refuses the file before anything
is read from its rows. ``progress`` is called every ``progress_rows`` rows and at the
end, with the rows and bytes read so far.

Memory stays bounded for large files: rows are parsed as a stream and written in
chunks (their attributes are handed to scoring with their chunk, then dropped); what
is kept per distinct email is two integers (for duplicate checks).

``company`` and ``job_title`` are checked (a repeated email must not contradict
itself) but not kept in the ledger, which holds only what consent needs (email, name,
jurisdiction, locale). They are fit attributes, so they reach scoring as form answers
do, under the same rule: an answer is kept only for purposes the lead permits. Each
row with a grant publishes its non-empty values as a ``LeadSignal``
(:mod:`zeroparty.lead_signals`) in the import's transaction: collected for the row's
purpose, given at its ``consent_at``, from ``import:<sha>:<line>``. Scoring keeps them
only if its gating consent is live now and was at ``consent_at``, and forgets them
when the row's purpose is withdrawn. A row without evidence grants nothing, so it
passes nothing on, not even for a lead another row grants: values go with the consent
they came with. Rows whose grant an earlier import recorded are passed on again (so a
file imported before scoring took attributes can simply be imported again); scoring
leaves an unchanged value as it is and never lets an older value replace a newer one.
The report names these columns in ``columns_for_scoring``, or in ``columns_not_kept``
when nothing listens (scoring not loaded in the process).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from capture.import_columns import (
    AS_NAMED,
    DELIMITER_NAMES,
    FIELDS,
    ColumnOptions,
    Header,
    detect_delimiter,
    resolve_header,
    undetected_hint,
)
from consent_ledger import read_model
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentChange, ConsentLedger, InvalidEmail, LeadRef, normalise_email
from consent_ledger.entries import format_timestamp, parse_timestamp
from consent_ledger.evidence import MAX_VALUE_LENGTH, EvidenceError, EvidenceValue, clean_evidence
from consent_ledger.schemas import API_METHODS, SHA256_RE
from consent_ledger.site import JURISDICTION_RE, LOCALE_RE
from zeroparty import lead_signals
from zeroparty.db import utcnow
from zeroparty.free_text import has_control_characters

PROFILE_COLUMNS = ("name", "country", "locale")
ATTRIBUTE_COLUMNS = ("company", "job_title")
EVIDENCE_COLUMNS = (
    "purpose",
    "consent_source",
    "consent_at",
    "notice_sha256",
    "notice_version",
    "method",
)
EXTRA_EVIDENCE_COLUMNS = ("ip", "user_agent", "evidence_ref")
# Free text kept or passed on as given: one line, as a form's text inputs send it.
TEXT_COLUMNS = ("name", *ATTRIBUTE_COLUMNS, "consent_source", "user_agent", "evidence_ref")
KNOWN_COLUMNS = frozenset(
    ("email", *PROFILE_COLUMNS, *ATTRIBUTE_COLUMNS, *EVIDENCE_COLUMNS, *EXTRA_EVIDENCE_COLUMNS)
)
assert frozenset(FIELDS) == KNOWN_COLUMNS, "the template lists every field"
CHUNK_ROWS = 1000
PROGRESS_ROWS = 10_000
MAX_REPORTED = 1000  # problems and unpermitted lines listed; all are counted


@dataclass(frozen=True, slots=True)
class ImportLimits:
    max_bytes: int = 512 * 1024 * 1024
    max_line_bytes: int = 64 * 1024
    max_rows: int = 1_000_000
    max_field_chars: int = MAX_VALUE_LENGTH


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why a row (``line`` ≥ 1, physical line where it starts) or the file (``line`` 0)
    cannot be imported; ``column`` names the field (or ``file``, ``csv``, ``encoding``)."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = "file" if self.line == 0 else f"line {self.line}"
        return f"{where}: {self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    values: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Grant:
    purpose: str
    notice_sha256: str
    notice_locale: str
    occurred_at: datetime
    method: ConsentMethod
    evidence: Mapping[str, EvidenceValue]


@dataclass(frozen=True, slots=True)
class ContactRow:
    """A valid row: a contact, with a grant only when it carried evidence."""

    line: int
    email: str
    name: str | None
    jurisdiction: str | None
    locale: str | None
    attributes: tuple[tuple[str, str], ...]
    grant: Grant | None


@dataclass(slots=True)
class ImportReport:
    file_sha256: str
    dry_run: bool
    rows: int = 0
    with_evidence: int = 0
    without_evidence: int = 0
    duplicate_rows: int = 0
    leads_created: int = 0
    leads_existing: int = 0
    grants_recorded: int = 0
    grants_already_recorded: int = 0
    pending_confirmation: int = 0
    unpermitted_lines: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    problem_count: int = 0
    written: bool = False
    columns_not_kept: tuple[str, ...] = ()
    columns_for_scoring: tuple[str, ...] = ()
    rows_for_scoring: int = 0
    delimiter: str = ","
    columns_mapped: tuple[tuple[str, str], ...] = ()
    columns_ignored: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add_problem(self, problem: RowProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(problem)


# --- the CSV ----------------------------------------------------------------------------------


def parse_contacts(
    stream: BinaryIO,
    limits: ImportLimits = ImportLimits(),
    columns_as: ColumnOptions = AS_NAMED,
    on_header: Callable[[Header], None] | None = None,
) -> Iterator[CsvRow | RowProblem]:
    """The rows of a UTF-8 CSV file with a header row, as a stream.

    Yields each row as a :class:`CsvRow` keyed by field (the lower-cased header names,
    as ``columns_as`` maps them; left-out columns dropped), or a :class:`RowProblem` for
    what cannot be read (bad UTF-8, a ragged row, a line, field or file too large, a bad
    header or mapping). ``on_header`` hears how the header was understood. Memory is
    bounded by ``limits.max_line_bytes``.
    """
    pending: list[RowProblem] = []
    lines = _decoded_lines(stream, limits, pending)
    first = next(lines, None)
    detected = None
    if first is not None and not pending:
        detected = detect_delimiter(first, columns_as, KNOWN_COLUMNS)
    delimiter = detected or ","
    reader = csv.reader(
        itertools.chain([first] if first is not None else [], lines),
        delimiter=delimiter,
        strict=True,
    )
    try:
        header = next(reader)
    except StopIteration:
        header = []
    except csv.Error as exc:
        pending.append(RowProblem(1, "csv", f"the header row cannot be read: {exc}"))
        header = []
    yield from pending
    if pending:
        return
    columns = [name.strip().lower() for name in header]
    if not any(columns):
        yield RowProblem(1, "header", "the file is empty: expected a header row")
        return
    understood = resolve_header(columns, delimiter, columns_as, KNOWN_COLUMNS)
    if isinstance(understood, str):
        mapping_problem = understood.startswith("--map")
        hint = understood if detected or mapping_problem else undetected_hint(first or "")
        yield RowProblem(1, "header", hint)
        return
    if on_header is not None:
        on_header(understood)
    fields = understood.fields
    line, rows = reader.line_num + 1, 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            values = None
            pending.append(RowProblem(line, "csv", str(exc)))
        yield from pending
        stop = any(p.column == "file" for p in pending)
        pending.clear()
        if stop:
            return
        if values is not None and any(v.strip() for v in values):
            rows += 1
            if rows > limits.max_rows:
                yield RowProblem(line, "file", f"more than {limits.max_rows:,} rows")
                return
            yield _row(line, fields, values, limits)
        line = reader.line_num + 1
    yield from pending  # the input stopped mid-row (too large)


def _decoded_lines(
    stream: BinaryIO, limits: ImportLimits, problems: list[RowProblem]
) -> Iterator[str]:
    """Physical lines as text, each checked for UTF-8 and length on its own (so a
    problem names its line); an over-long line is cut, never held whole in memory."""
    total, number = 0, 0
    while raw := stream.readline(limits.max_line_bytes + 1):
        number += 1
        total += len(raw)
        if total > limits.max_bytes:
            problems.append(RowProblem(number, "file", f"larger than {limits.max_bytes:,} bytes"))
            return
        if len(raw) > limits.max_line_bytes and not raw.endswith(b"\n"):
            problems.append(
                RowProblem(number, "file", f"line longer than {limits.max_line_bytes:,} bytes")
            )
            while (rest := stream.readline(limits.max_line_bytes)) and not rest.endswith(b"\n"):
                total += len(rest)
            total += len(rest)
            yield "\n"
            continue
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a byte-order mark, as spreadsheet programs write
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(
                RowProblem(number, "encoding", f"not UTF-8 (byte {exc.start + 1} of the line)")
            )
            yield raw.decode("utf-8", errors="replace")


def _row(
    line: int, fields: Sequence[str | None], values: list[str], limits: ImportLimits
) -> CsvRow | RowProblem:
    if len(values) != len(fields):
        return RowProblem(line, "csv", f"{len(values)} fields where the header has {len(fields)}")
    kept = [(name, value) for name, value in zip(fields, values, strict=True) if name is not None]
    for name, value in kept:
        if len(value) > limits.max_field_chars:
            return RowProblem(line, name, f"longer than {limits.max_field_chars:,} characters")
    return CsvRow(line, {name: value.strip() for name, value in kept})


ProblemSink = Callable[[str, str], None]

# --- validation -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoticeCatalog:
    """The site's purposes and notice versions, read once per import."""

    double_opt_in: Mapping[str, bool]
    by_hash: Mapping[tuple[str, str], str]  # (purpose, sha256) -> locale
    by_version: Mapping[tuple[str, int], tuple[tuple[str, str], ...]]  # -> ((locale, sha256), …)


def load_catalog(session: Session) -> NoticeCatalog:
    purposes, notice_versions = read_model.purposes.c, read_model.notice_versions.c
    double_opt_in = {
        k: bool(d) for k, d in session.execute(select(purposes.key, purposes.double_opt_in))
    }
    by_hash: dict[tuple[str, str], str] = {}
    by_version: dict[tuple[str, int], tuple[tuple[str, str], ...]] = {}
    notices = select(
        notice_versions.purpose_key,
        notice_versions.locale,
        notice_versions.version,
        notice_versions.sha256,
    )
    for purpose, locale, version, sha in session.execute(notices):
        by_hash.setdefault((purpose, sha), locale)
        by_version[(purpose, version)] = (*by_version.get((purpose, version), ()), (locale, sha))
    return NoticeCatalog(double_opt_in, by_hash, by_version)


def validate_row(
    row: CsvRow, catalog: NoticeCatalog, now: datetime
) -> ContactRow | list[RowProblem]:
    """A contact, with a grant if the row carries complete evidence; or its problems.

    Evidence is all or nothing per row: some evidence columns filled and others empty is
    a problem, not a contact without permission (the row meant to say something)."""
    values, problems = row.values, []

    def problem(column: str, message: str) -> None:
        problems.append(RowProblem(row.line, column, message))

    email = None
    try:
        email = normalise_email(values.get("email", ""))
    except InvalidEmail as exc:
        problem("email", exc.fields["email"])
    country = values.get("country") or None
    if country is not None and not JURISDICTION_RE.match(country.upper()):
        problem("country", "must be an ISO 3166 code such as DE or US-CA")
    locale = values.get("locale") or None
    if locale is not None and not LOCALE_RE.match(locale):
        problem("locale", "must be a locale such as en or de")
    for column in TEXT_COLUMNS:
        if has_control_characters(values.get(column, "")):
            problem(column, "must be one line of text without control characters")
    grant = _grant(row, catalog, now, problem)
    if problems or email is None:
        return problems
    attributes = tuple((c, values[c]) for c in ATTRIBUTE_COLUMNS if values.get(c))
    jurisdiction = country.upper() if country else None
    name = values.get("name") or None
    return ContactRow(row.line, email, name, jurisdiction, locale, attributes, grant)


def _grant(
    row: CsvRow, catalog: NoticeCatalog, now: datetime, problem: ProblemSink
) -> Grant | None:
    values = row.values
    given = {c: values[c] for c in (*EVIDENCE_COLUMNS, *EXTRA_EVIDENCE_COLUMNS) if values.get(c)}
    if not given:
        return None
    for column in ("purpose", "consent_source", "consent_at"):
        if column not in given:
            problem(column, "required with consent evidence (or leave every evidence column empty)")
    if "notice_sha256" not in given and "notice_version" not in given:
        problem("notice_sha256", "required with consent evidence: the notice version shown")
    purpose = given.get("purpose")
    if purpose is not None and purpose not in catalog.double_opt_in:
        problem("purpose", f"unknown purpose {purpose[:64]!r}")
        purpose = None
    occurred_at = None
    if "consent_at" in given:
        try:
            occurred_at = parse_timestamp(given["consent_at"])
        except (ValueError, OverflowError) as exc:  # year 1 or 9999 with an offset overflows
            problem("consent_at", str(exc))
        else:
            if occurred_at > now + ConsentLedger.CLOCK_SKEW:
                problem("consent_at", "lies in the future")
    method = ConsentMethod.ELECTRONIC
    if "method" in given:
        try:
            method = ConsentMethod(given["method"])
        except ValueError:
            method = ConsentMethod.SYSTEM  # not allowed below
        if method not in API_METHODS:
            problem("method", "must be one of " + ", ".join(sorted(m.value for m in API_METHODS)))
    notice = None
    if purpose is not None and ("notice_sha256" in given or "notice_version" in given):
        notice = _notice(given, purpose, values.get("locale"), catalog, problem)
    evidence: dict[str, EvidenceValue] = {"gathered_by": given.get("consent_source")}
    evidence |= {c: given[c] for c in EXTRA_EVIDENCE_COLUMNS if c in given}
    try:
        evidence = clean_evidence(evidence)
    except EvidenceError as exc:
        problem("evidence", exc.fields["evidence"])
    if purpose is None or notice is None or occurred_at is None:
        return None
    sha, locale = notice
    return Grant(purpose, sha, locale, occurred_at, method, evidence)


def _notice(
    given: Mapping[str, str],
    purpose: str,
    wanted: str | None,
    catalog: NoticeCatalog,
    problem: ProblemSink,
) -> tuple[str, str] | None:
    """The notice version (sha256, locale) the row names, if it is one of ``purpose``."""
    if "notice_sha256" in given:
        sha = given["notice_sha256"].lower()
        if not SHA256_RE.match(sha):
            problem("notice_sha256", "must be the 64 hex digits of the notice text's SHA-256")
            return None
        locale = catalog.by_hash.get((purpose, sha))
        if locale is None:
            problem("notice_sha256", f"is not a notice version of purpose {purpose!r}")
            return None
        return sha, locale
    text = given["notice_version"]
    if not (text.isascii() and text.isdigit()):
        problem("notice_version", "must be a version number such as 1")
        return None
    versions = catalog.by_version.get((purpose, int(text)), ())
    if wanted:
        versions = tuple(v for v in versions if v[0] == wanted)
    if len(versions) != 1:
        if versions:
            problem(
                "notice_version", f"{text} of {purpose!r} exists in several locales: give locale"
            )
        else:
            problem("notice_version", f"purpose {purpose!r} has no notice version {text}")
        return None
    locale, sha = versions[0]
    return sha, locale


def template_example(session: Session) -> tuple[str | None, int | None]:
    """A purpose of the site and its latest notice version, for the template's example
    row (``None`` when the site has none yet)."""
    catalog = load_catalog(session)
    versions = sorted(catalog.by_version)
    if not versions:
        return None, None
    purpose = versions[0][0]
    return purpose, max(version for key, version in versions if key == purpose)


# --- rows that repeat an email ----------------------------------------------------------------


class DuplicateCheck:
    """Finds rows that repeat an email with other data, in bounded memory.

    Per email it keeps one integer: the line that first named it and a 24-bit hash of
    each contact field, with a bit per field saying whether it was given (empty fields
    say nothing, so a row per purpose need not repeat the name); per (email, purpose)
    one integer too: the line and a 40-bit hash of the evidence. About 250 bytes per
    distinct email with a grant (measured): 250 MB at the million-row limit. Python's
    ``hash`` is per process, which is all one import needs. Equal data always has equal
    hashes, so a hash never invents a conflict; two different values share a field
    hash with odds of 1 in 16 million, and then the later one passes as a repeat (the
    first row's data is kept).
    """

    FIELDS = ("name", "country", "locale", *ATTRIBUTE_COLUMNS)
    LINE_BITS = 21  # lines up to 2 million; more are refused by ImportLimits.max_rows anyway
    FIELD_BITS = 24

    def __init__(self) -> None:
        self._contacts: dict[int, int] = {}
        self._grants: dict[int, int] = {}

    def check(self, row: ContactRow) -> RowProblem | bool:
        """A problem if ``row`` contradicts an earlier row of its email; ``True`` if it
        repeats earlier rows exactly (nothing new); ``False`` if it adds something."""
        attributes = dict(row.attributes)
        values = (row.name, row.jurisdiction, row.locale, *map(attributes.get, ATTRIBUTE_COLUMNS))
        line_mask, field_mask = (1 << self.LINE_BITS) - 1, (1 << self.FIELD_BITS) - 1
        key = hash(row.email)
        packed = self._contacts.get(key)
        repeated = packed is not None
        first_line = row.line if packed is None else packed & line_mask
        known = 0 if packed is None else packed >> self.LINE_BITS
        for index, value in enumerate(values):
            if value is None:
                continue
            shift = len(values) + index * self.FIELD_BITS
            new = hash(value) & field_mask
            if known >> index & 1:
                if (known >> shift) & field_mask != new:
                    return RowProblem(
                        row.line, self.FIELDS[index], f"differs from line {first_line}, same email"
                    )
            else:
                known |= 1 << index | new << shift
                repeated = False
        self._contacts[key] = known << self.LINE_BITS | (first_line & line_mask)
        if row.grant is None:
            return repeated
        grant = row.grant
        grant_key = hash((row.email, grant.purpose))
        evidence = (
            grant.notice_sha256,
            grant.occurred_at,
            grant.method,
            *sorted(grant.evidence.items()),
        )
        fingerprint = hash(evidence) & ((1 << 40) - 1)
        seen = self._grants.get(grant_key)
        if seen is None:
            self._grants[grant_key] = fingerprint << self.LINE_BITS | (row.line & line_mask)
            return False
        if seen >> self.LINE_BITS != fingerprint:
            line = seen & line_mask
            return RowProblem(
                row.line,
                "purpose",
                f"other consent evidence for {grant.purpose!r} on line {line}, same email",
            )
        return True


# --- the import -------------------------------------------------------------------------------


class _Rejected(Exception):
    """Raised inside the write transaction so that it rolls back."""


_events = read_model.ledger_entries.c
_profiles = read_model.lead_profiles.c
_leads = read_model.leads.c


def file_digest(stream: BinaryIO) -> tuple[str, int]:
    """SHA-256 hex and size of the rest of ``stream``; it is rewound afterwards."""
    start, digest, size = stream.tell(), hashlib.sha256(), 0
    while block := stream.read(1 << 20):
        digest.update(block)
        size += len(block)
    stream.seek(start)
    return digest.hexdigest(), size


ImportProgress = Callable[[int, int, int], None]
"""Hears ``(rows read, bytes read, bytes in the file)`` while an import runs."""


@dataclass(frozen=True, slots=True)
class _Reading:
    """How the rows are read: the columns' options and who hears the progress."""

    limits: ImportLimits
    chunk_rows: int
    columns_as: ColumnOptions
    progress: ImportProgress | None
    progress_rows: int
    size: int


def import_contacts(
    ledger: ConsentLedger,
    stream: BinaryIO,
    *,
    dry_run: bool = False,
    limits: ImportLimits = ImportLimits(),
    chunk_rows: int = CHUNK_ROWS,
    columns_as: ColumnOptions = AS_NAMED,
    progress: ImportProgress | None = None,
    progress_rows: int = PROGRESS_ROWS,
) -> ImportReport:
    """Import the CSV in ``stream`` (seekable, binary); see the module docstring.

    Returns the report. ``report.written`` is true only when every row was valid and
    the import committed; with any problem (or ``dry_run``) nothing is written. Grants
    are recorded and answers handed on through ``ledger`` (the app's wiring: its
    listeners and lead-signal listeners), a chunk at a time.
    """
    database = ledger.database
    sha, size = file_digest(stream)
    report = ImportReport(file_sha256=sha, dry_run=dry_run)
    if size > limits.max_bytes:
        report.add_problem(RowProblem(0, "file", f"larger than {limits.max_bytes:,} bytes"))
        return report
    reading = _Reading(limits, chunk_rows, columns_as, progress, max(1, progress_rows), size)
    if dry_run:
        with database.read() as session:
            _run(session, ledger, stream, report, reading, write=False)
        return report
    try:
        with database.write() as session:
            _run(session, ledger, stream, report, reading, write=True)
            if not report.ok:
                raise _Rejected
    except _Rejected:
        report.written = False
        report.leads_created = report.leads_existing = 0
        report.grants_recorded = report.grants_already_recorded = 0
        report.rows_for_scoring = 0
        return report
    report.written = True
    return report


def _run(
    session: Session,
    ledger: ConsentLedger,
    stream: BinaryIO,
    report: ImportReport,
    reading: _Reading,
    *,
    write: bool,
) -> None:
    catalog = load_catalog(session)
    now = utcnow()
    duplicates = DuplicateCheck()
    chunk: list[ContactRow] = []
    chunk_rows, start = reading.chunk_rows, stream.tell()

    def heard(header: Header) -> None:
        report.delimiter = header.delimiter
        report.columns_ignored = header.ignored
        report.columns_mapped = tuple(reading.columns_as.mapping.items())

    def tell_progress() -> None:
        if reading.progress is not None:
            reading.progress(report.rows, stream.tell() - start, reading.size)

    for item in parse_contacts(stream, reading.limits, reading.columns_as, heard):
        if isinstance(item, RowProblem):
            report.add_problem(item)
            continue
        report.rows += 1
        if report.rows % reading.progress_rows == 0:
            tell_progress()
        if report.rows == 1:
            present = tuple(c for c in ATTRIBUTE_COLUMNS if c in item.values)
            if ledger.hears_lead_signals:
                report.columns_for_scoring = present
            else:
                report.columns_not_kept = present
        contact = validate_row(item, catalog, now)
        if isinstance(contact, list):
            for problem in contact:
                report.add_problem(problem)
            continue
        verdict = duplicates.check(contact)
        if isinstance(verdict, RowProblem):
            report.add_problem(verdict)
            continue
        if verdict:
            report.duplicate_rows += 1
            continue
        if contact.grant is None:
            report.without_evidence += 1
            if len(report.unpermitted_lines) < MAX_REPORTED:
                report.unpermitted_lines.append(contact.line)
        else:
            report.with_evidence += 1
            if (
                catalog.double_opt_in[contact.grant.purpose]
                and contact.grant.method is not ConsentMethod.DOUBLE_OPT_IN
            ):
                report.pending_confirmation += 1
        if write and report.ok:
            chunk.append(contact)
            if len(chunk) >= chunk_rows:
                _write_chunk(session, ledger, chunk, report)
                chunk.clear()
    if write and report.ok and chunk:
        _write_chunk(session, ledger, chunk, report)
    tell_progress()


def _write_chunk(
    session: Session, ledger: ConsentLedger, chunk: list[ContactRow], report: ImportReport
) -> None:
    connection = session.connection()
    subjects = _ensure_subjects(connection, ledger, chunk, report)
    granted = [row for row in chunk if row.grant is not None]
    if not granted:
        return
    ids = {subjects[row.email].id for row in granted}
    recorded = {
        (sid, purpose, format_timestamp(at), notice)
        for sid, purpose, at, notice in connection.execute(
            select(
                _events.subject_id,
                _events.purpose_key,
                _events.occurred_at,
                _events.notice_sha256,
            ).where(
                and_(
                    _events.subject_id.in_(ids),
                    _events.source == ConsentSource.IMPORT.value,
                    _events.action == ConsentAction.GRANTED.value,
                )
            )
        )
    }
    changes = []
    for row in granted:
        grant = row.grant
        assert grant is not None
        subject = subjects[row.email]
        key = (subject.id, grant.purpose, format_timestamp(grant.occurred_at), grant.notice_sha256)
        if key in recorded:
            report.grants_already_recorded += 1
            continue
        recorded.add(key)
        # A double opt-in purpose stays pending unless the method is double-opt-in
        # (the ledger's rule, decided by ledger.record for the whole chunk).
        changes.append(
            ConsentChange(
                subject_id=subject.id,
                purpose=grant.purpose,
                action=ConsentAction.GRANTED,
                source=ConsentSource.IMPORT,
                method=grant.method,
                occurred_at=grant.occurred_at,
                notice_sha256=grant.notice_sha256,
                source_ref=f"import:{report.file_sha256}:{row.line}",
                jurisdiction=row.jurisdiction or subject.jurisdiction,
                locale=grant.notice_locale,
                evidence=grant.evidence,
            )
        )
    ledger.record(session, changes)
    report.grants_recorded += len(changes)
    if ledger.hears_lead_signals:
        # After the chunk's grants, so each row's own grant already permits its values.
        # Rows whose grant an earlier import recorded are passed on too: scoring keeps
        # what their lead still permits, and an unchanged value changes nothing there.
        signals = [
            _lead_signal(row, subjects[row.email].id, report.file_sha256)
            for row in granted
            if row.attributes
        ]
        ledger.publish_signals(session, signals)
        report.rows_for_scoring += len(signals)


def _lead_signal(row: ContactRow, subject_id: str, file_sha256: str) -> lead_signals.LeadSignal:
    """The row's fit attributes as answers given when it granted its purpose, for that
    purpose only (as a form field is collected for the purposes it names), from the
    same place as its ledger entry."""
    assert row.grant is not None
    purposes = (row.grant.purpose,)
    return lead_signals.LeadSignal(
        subject_id,
        row.grant.occurred_at,
        f"import:{file_sha256}:{row.line}",
        tuple(
            lead_signals.LeadInput(lead_signals.InputKind.FIELD, name, (value,), purposes)
            for name, value in row.attributes
        ),
    )


def _ensure_subjects(
    connection: Connection, ledger: ConsentLedger, chunk: list[ContactRow], report: ImportReport
) -> dict[str, LeadRef]:
    """The lead of every email in ``chunk``, new ones created in bulk.

    Known leads take a jurisdiction given and a locale they lacked, as
    :meth:`ConsentLedger.ensure_lead` does (which handles them and any email another
    transaction adds meanwhile on PostgreSQL, where the bulk insert yields to it)."""
    emails = {row.email for row in chunk}
    found = (
        select(_profiles.email, _leads.subject_id, _leads.locale, _leads.jurisdiction)
        .join_from(
            read_model.lead_profiles, read_model.leads, _leads.subject_id == _profiles.subject_id
        )
        .where(_profiles.email.in_(emails))
    )
    subjects = {
        r.email: LeadRef(r.subject_id, r.locale, r.jurisdiction) for r in connection.execute(found)
    }
    report.leads_existing += len(subjects)
    new: dict[str, ContactRow] = {}
    for row in chunk:
        known = subjects.get(row.email)
        if known is None:
            first = new.setdefault(row.email, row)
            if first is not row:  # a later row of the email may fill what the first left empty
                new[row.email] = dataclasses.replace(
                    first,
                    name=first.name or row.name,
                    locale=first.locale or row.locale,
                    jurisdiction=first.jurisdiction or row.jurisdiction,
                )
        elif (row.jurisdiction and row.jurisdiction != known.jurisdiction) or (
            row.locale and known.locale is None
        ):
            subjects[row.email] = ledger.ensure_lead(
                connection, row.email, locale=row.locale, jurisdiction=row.jurisdiction
            )
    created = ledger.create_leads_if_new(
        connection, {email: (r.name, r.locale, r.jurisdiction) for email, r in new.items()}
    )
    taken = [email for email in new if email not in created]
    for email in taken:  # another transaction created the lead meanwhile: use that one
        row = new[email]
        created[email] = ledger.ensure_lead(
            connection, email, locale=row.locale, jurisdiction=row.jurisdiction
        )
    report.leads_created += len(new) - len(taken)
    report.leads_existing += len(taken)
    subjects.update(created)
    return subjects


def _column_lines(report: ImportReport) -> list[str]:
    """How the file's columns were read, when that was not the plain default."""
    lines = []
    if report.delimiter != ",":
        lines.append(f"columns separated by {DELIMITER_NAMES[report.delimiter]}s (detected)")
    if report.columns_mapped:
        mapped = ", ".join(f"{column} as {target}" for column, target in report.columns_mapped)
        lines.append(f"columns mapped (--map): {mapped}")
    if report.columns_ignored:
        lines.append(f"columns left out (--ignore-extra): {', '.join(report.columns_ignored)}")
    return lines


def format_report(report: ImportReport, name: str, *, shown: int = 50) -> list[str]:
    """The report as lines for people (the CLI prints them)."""
    lines = [f"{name}: SHA-256 {report.file_sha256}, {report.rows:,} rows"]
    lines += _column_lines(report)
    if not report.ok:
        lines.append(f"NOT IMPORTED: {report.problem_count:,} problem(s); nothing was written")
        lines += [f"  {problem}" for problem in report.problems[:shown]]
        if report.problem_count > shown:
            lines.append(f"  … and {report.problem_count - shown:,} more")
        lines.append("fix or remove those lines and run again (--dry-run checks without writing)")
        return lines
    verb = "valid (dry run, nothing written)" if report.dry_run else "imported"
    lines.append(
        f"{verb}: {report.with_evidence:,} row(s) with consent evidence, "
        f"{report.without_evidence:,} contact(s) without permission, "
        f"{report.duplicate_rows:,} repeated row(s) skipped"
    )
    if not report.dry_run:
        lines.append(
            f"leads: {report.leads_created:,} new, {report.leads_existing:,} already known; "
            f"grants: {report.grants_recorded:,} recorded (source import), "
            f"{report.grants_already_recorded:,} already recorded by an earlier import"
        )
    if report.pending_confirmation:
        lines.append(
            f"{report.pending_confirmation:,} grant(s) of double opt-in purposes stay pending "
            "until confirmed (method is not double-opt-in)"
        )
    if report.columns_for_scoring:
        columns = ", ".join(report.columns_for_scoring)
        rule = (
            "kept only while the lead's scoring consent is live and the purpose their row "
            "granted is permitted; rows without evidence pass nothing on"
        )
        if report.dry_run:
            lines.append(f"for scoring: {columns} of rows with consent evidence, on import; {rule}")
        else:
            lines.append(
                f"for scoring: {columns} of {report.rows_for_scoring:,} row(s) with consent "
                f"evidence handed on; {rule}"
            )
    if report.columns_not_kept:
        lines.append(
            f"not kept: {', '.join(report.columns_not_kept)} (checked only: the ledger keeps "
            "email, name, country as jurisdiction and locale, and scoring is not loaded)"
        )
    if report.unpermitted_lines:
        listed = ", ".join(str(n) for n in report.unpermitted_lines[:shown])
        more = " …" if report.without_evidence > shown else ""
        lines.append(f"without permission (no evidence), lines: {listed}{more}")
    return lines
