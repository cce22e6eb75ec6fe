"""Version history of notice texts and forms, and side-by-side differences.

Notice texts come from the ledger (``notice_versions``, immutable); forms and quizzes from
capture through the console's providers. A diff compares two versions line by line
(notice texts sentence by sentence, so a changed sentence stands out in a paragraph).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from consent_ledger.api import ConsentLedger
from console.providers import DefinitionVersionRecord
from zeroparty.errors import NotFound

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class VersionInfo:
    number: int
    sha256: str
    created_at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class History:
    """All versions of one thing: a notice (``purpose/locale``) or a form (slug)."""

    kind: str
    key: str
    label: str
    versions: list[VersionInfo]


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One row of a side-by-side diff; ``kind`` is equal, changed, added or removed."""

    kind: str
    left_number: int | None
    left: str
    right_number: int | None
    right: str


def notice_histories(ledger: ConsentLedger, session: Session) -> list[History]:
    grouped: dict[tuple[str, str], list[VersionInfo]] = {}
    for row in ledger.notice_versions(session):
        grouped.setdefault((row.purpose_key, row.locale), []).append(
            VersionInfo(row.version, row.sha256, row.created_at, row.text)
        )
    return [
        History("notice", f"{purpose}/{locale}", f"{purpose} ({locale})", versions)
        for (purpose, locale), versions in grouped.items()
    ]


def form_histories(records: Sequence[DefinitionVersionRecord]) -> list[History]:
    grouped: dict[tuple[str, str], list[VersionInfo]] = {}
    for record in records:
        grouped.setdefault((record.slug, record.kind), []).append(
            VersionInfo(record.version, record.sha256, record.created_at, record.definition)
        )
    return [
        History("form", slug, f"{slug} ({kind})", sorted(versions, key=lambda v: v.number))
        for (slug, kind), versions in grouped.items()
    ]


def find(histories: list[History], key: str) -> History:
    for history in histories:
        if history.key == key:
            return history
    raise NotFound("no such notice or form")


def version(history: History, number: int) -> VersionInfo:
    for item in history.versions:
        if item.number == number:
            return item
    raise NotFound(f"{history.label} has no version {number}")


def _lines(history: History, text: str) -> list[str]:
    if history.kind == "notice":
        return [part for line in text.splitlines() for part in SENTENCE_END.split(line)]
    return text.splitlines()


def side_by_side(history: History, old: VersionInfo, new: VersionInfo) -> list[DiffRow]:
    left, right = _lines(history, old.text), _lines(history, new.text)
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [
                DiffRow("equal", i + 1, left[i], j + 1, right[j])
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
            continue
        span = max(i2 - i1, j2 - j1)
        for k in range(span):
            i, j = i1 + k, j1 + k
            has_left, has_right = i < i2, j < j2
            kind = "changed" if has_left and has_right else ("removed" if has_left else "added")
            rows.append(
                DiffRow(
                    kind,
                    i + 1 if has_left else None,
                    left[i] if has_left else "",
                    j + 1 if has_right else None,
                    right[j] if has_right else "",
                )
            )
    return rows
