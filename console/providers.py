"""What the console needs from packages it may not import (capture, scoring).

SPEC: dependencies point inward, so the console declares here, as protocols, the data it
wants; those packages return records of their own that have these attributes, and the
app factory hands their functions to the console (``app.state.console_providers``)
without either package importing the other. A provider left out shows as "no data" on
the pages that would use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlalchemy.orm import Session


class DefinitionVersionRecord(Protocol):
    """One published version of a form or quiz; ``definition`` as indented JSON text."""

    @property
    def slug(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def definition(self) -> str: ...


class SubmissionWeekRecord(Protocol):
    """Submissions of one form in one week (its Monday), with the purposes it offered."""

    @property
    def slug(self) -> str: ...
    @property
    def week(self) -> date: ...
    @property
    def purposes(self) -> tuple[str, ...]: ...
    @property
    def submissions(self) -> int: ...


class StageCountRecord(Protocol):
    """Leads in one lifecycle stage."""

    @property
    def stage(self) -> str: ...
    @property
    def leads(self) -> int: ...


class SlaWeekRecord(Protocol):
    """Hand-offs that entered a stage with a response-time SLA in one week (its Monday):
    answered in time, late or overdue, and still within their time."""

    @property
    def week(self) -> date: ...
    @property
    def met(self) -> int: ...
    @property
    def missed(self) -> int: ...
    @property
    def open(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ConsoleProviders:
    """``definition_versions(session)``: every form and quiz version (capture).
    ``submission_weeks(session, since)``: submissions per form and week (capture).
    ``stage_counts(session)``: leads per lifecycle stage, in funnel order (scoring).
    ``sla_weeks(session, since)``: hand-off SLA attainment per week (scoring)."""

    definition_versions: Callable[[Session], Sequence[DefinitionVersionRecord]] | None = None
    submission_weeks: Callable[[Session, datetime], Sequence[SubmissionWeekRecord]] | None = None
    stage_counts: Callable[[Session], Sequence[StageCountRecord]] | None = None
    sla_weeks: Callable[[Session, datetime], Sequence[SlaWeekRecord]] | None = None
