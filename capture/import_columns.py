"""The columns of an import file: its delimiter, the columns mapped or ignored, the template.

A file comes from whatever tool exported it. Spreadsheet programs in many locales save
"CSV" separated by ``;``, others by tab, and CRMs name their columns their own way
(``E-Mail``, ``Firma``) and add columns of their own. So, before any row is read:

- the delimiter is detected from the header row: the one of ``,``, ``;`` and tab that
  splits it into a row with an ``email`` column and the most columns this import knows
  (after mapping), ``,`` on a tie; a header that none of them splits into any known
  column is refused with a hint saying what was tried;
- ``--map COLUMN=FIELD`` reads the file's column ``COLUMN`` as the import's field
  ``FIELD`` (:data:`FIELDS`); a mapping that names a column the file does not have, a
  field that does not exist, or a field given twice is refused before anything is
  written;
- ``--ignore-extra`` leaves out the columns that are neither known nor mapped (named in
  the report); without it such a column is refused, as it always was, and the message
  names both options.

:func:`template_rows` is what ``zeroparty import --template`` writes: the header of
every field in the order people fill them, and one example row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

EMAIL = "email"
DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}

# Every field an import reads, in the template's order (``notice_version`` is the
# alternative to ``notice_sha256``: the purpose's version number).
FIELDS = (
    "email",
    "name",
    "country",
    "locale",
    "company",
    "job_title",
    "purpose",
    "consent_source",
    "consent_at",
    "notice_sha256",
    "notice_version",
    "method",
    "ip",
    "user_agent",
    "evidence_ref",
)


class MappingInvalid(ValueError):
    """A ``--map`` option that cannot be used as given (the CLI says so, exit 2)."""


@dataclass(frozen=True, slots=True)
class ColumnOptions:
    """How the file's columns become fields. ``mapping`` is keyed by the file's column
    name (compared lower-cased, trimmed); ``delimiter`` ``None`` means detect it."""

    mapping: Mapping[str, str] = field(default_factory=dict)
    ignore_extra: bool = False
    delimiter: str | None = None


AS_NAMED = ColumnOptions()
"""The default: columns read by their own names, the delimiter detected."""


def parse_mapping(options: Iterable[str], known: Iterable[str] = FIELDS) -> dict[str, str]:
    """``COLUMN=FIELD`` options as a mapping; raises :class:`MappingInvalid` naming the
    option for a missing ``=``, an unknown field, a column or a field given twice."""
    fields = frozenset(known)
    mapping: dict[str, str] = {}
    targets: dict[str, str] = {}
    for option in options:
        column, sep, target = option.partition("=")
        column, target = column.strip().lower(), target.strip().lower()
        if not sep or not column or not target:
            raise MappingInvalid(f"--map {option!r}: expected COLUMN=FIELD, such as E-Mail=email")
        if target not in fields:
            raise MappingInvalid(
                f"--map {option!r}: {target!r} is not a field (fields: {', '.join(FIELDS)})"
            )
        if column in mapping:
            raise MappingInvalid(f"--map {option!r}: column {column!r} is mapped twice")
        if target in targets:
            raise MappingInvalid(
                f"--map {option!r}: field {target!r} is already mapped from {targets[target]!r}"
            )
        mapping[column], targets[target] = target, column
    return mapping


@dataclass(frozen=True, slots=True)
class Header:
    """The header row understood: ``fields`` has, per column of the file, the field it
    is read as, or ``None`` for a column left out (``ignored`` names those)."""

    delimiter: str
    fields: tuple[str | None, ...]
    ignored: tuple[str, ...] = ()


def split_header(line: str, delimiter: str) -> list[str]:
    try:
        row = next(csv.reader([line], delimiter=delimiter, strict=True), [])
    except csv.Error:
        return []
    return [name.strip().lower() for name in row]


def detect_delimiter(line: str, options: ColumnOptions, known: frozenset[str]) -> str | None:
    """The delimiter splitting the header ``line`` best: into a row with an ``email``
    column first, then into the most known (or mapped) columns, ``,`` on a tie;
    ``None`` when none splits it into any known column."""
    if options.delimiter is not None:
        return options.delimiter
    best: tuple[tuple[bool, int], str] | None = None
    for delimiter in DELIMITERS:
        columns = [options.mapping.get(c, c) for c in split_header(line, delimiter)]
        score = (EMAIL in columns, sum(1 for c in columns if c in known))
        if best is None or score > best[0]:
            best = (score, delimiter)
    if best is None or best[0] == (False, 0):
        return None
    return best[1]


def undetected_hint(line: str) -> str:
    """Why no delimiter fits the header row ``line``, and what to do."""
    shown = line.strip()[:80]
    return (
        f"no known column in the header row {shown!r} when split at a comma, a semicolon "
        "or a tab: the file needs a header row naming its columns (email required), "
        "separated by one of those (or map its columns with --map COLUMN=FIELD, such as "
        "--map E-Mail=email)"
    )


def resolve_header(
    columns: Sequence[str], delimiter: str, options: ColumnOptions, known: frozenset[str]
) -> Header | str:
    """The fields each column is read as, or why the header cannot be used: a mapping
    naming a missing column, a field given twice, unknown columns (not ignored), no
    ``email``."""
    missing = [c for c in options.mapping if c not in columns]
    if missing:
        return (
            f"--map names column(s) the file does not have: {', '.join(missing)} "
            f"(its columns: {', '.join(c for c in columns if c) or 'none'})"
        )
    mapped = [options.mapping.get(c, c) for c in columns]
    unknown = [c for c, f in zip(columns, mapped, strict=True) if f not in known]
    if unknown and not options.ignore_extra:
        return (
            f"unknown columns: {', '.join(unknown)} (known: {', '.join(sorted(known))}); "
            "read one as a known field with --map COLUMN=FIELD, or leave them out with "
            "--ignore-extra"
        )
    fields = tuple(f if f in known else None for f in mapped)
    taken = [f for f in fields if f is not None]
    twice = sorted({f for f in taken if taken.count(f) > 1})
    if twice:
        return f"columns named twice: {', '.join(twice)}"
    if EMAIL not in taken:
        return "required column missing: email"
    return Header(delimiter, fields, tuple(unknown))


def template_rows(purpose: str | None, notice_version: int | None) -> list[list[str]]:
    """The template: every field, and an example row for ``purpose`` (the site's, with
    its current notice version) whose address is at ``.invalid``, so the template
    itself is never imported by mistake (RFC 2606: no such address can exist)."""
    example = {
        "email": "ada.lovelace@example.invalid",
        "name": "Ada Lovelace",
        "country": "GB",
        "locale": "en",
        "company": "Analytical Engines Ltd",
        "job_title": "Head of Data",
        "purpose": purpose or "newsletter",
        "consent_source": "sign-up sheet at the spring trade fair",
        "consent_at": "2026-03-01T09:30:00+00:00",
        "notice_sha256": "",
        "notice_version": str(notice_version or 1),
        "method": "written",
        "ip": "",
        "user_agent": "",
        "evidence_ref": "sheet 4, line 12",
    }
    return [list(FIELDS), [example[name] for name in FIELDS]]
