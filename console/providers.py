"""What the console needs from packages it may not import (capture, scoring).

SPEC: dependencies point inward, so the console declares here, as protocols, the data it
wants; those packages return records of their own that have these attributes, and the
app factory hands their functions to the console (``app.state.console_providers``)
without either package importing the other. A provider left out shows as "no data" on
the pages that would use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement


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


class AccountRecord(Protocol):
    """Permissioned leads of one company e-mail domain: ``score`` the sum of theirs,
    ``stage`` the furthest reached, ``committee`` their job titles and BANT authorities."""

    @property
    def domain(self) -> str: ...
    @property
    def members(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def top_score(self) -> float: ...
    @property
    def stage(self) -> str: ...
    @property
    def committee(self) -> tuple[str, ...]: ...


class AccountMemberRecord(Protocol):
    """One permissioned lead of an account."""

    @property
    def subject_id(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def job_title(self) -> str | None: ...


class HandoffRecord(Protocol):
    """A hand-off whose SLA clock runs: ``state`` is ``"due_soon"``, ``"breached"`` or
    ``None`` (time enough left)."""

    @property
    def subject_id(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def entered_at(self) -> datetime: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def state(self) -> str | None: ...


class AcknowledgementRecord(Protocol):
    """Sales took a hand-off; ``created`` false: it was acknowledged before (by
    ``actor``), nothing changed."""

    @property
    def stage(self) -> str: ...
    @property
    def acked_at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def created(self) -> bool: ...


class LeadStageRecord(Protocol):
    """A lead's lifecycle stage and score (``None``: not scored)."""

    @property
    def stage(self) -> str: ...
    @property
    def score(self) -> float | None: ...


class SalesRecord(Protocol):
    """What sales recorded about a lead: its current BANT values (field -> value) and
    its outcome (``"won"``, ``"lost"`` or ``None``) with who recorded it."""

    @property
    def bant(self) -> Mapping[str, str]: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def outcome_by(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ConsoleProviders:
    """``definition_versions(session)``: every form and quiz version (capture).
    ``submission_weeks(session, since)``: submissions per form and week (capture).
    ``stage_counts(session)``: leads per lifecycle stage, in funnel order (scoring).
    ``sla_weeks(session, since)``: hand-off SLA attainment per week (scoring).
    ``accounts(session, stage, limit)``: accounts by domain, those at ``stage`` (a stage
    name, ``None``: all) only; unknown stage names raise ``InvalidInput`` (scoring).
    ``account(session, domain)``: one account with its members, or ``None`` (scoring).
    ``handoffs(session, now, limit)``: hand-offs breached, due soon and on time at
    ``now``, in that order; of each the ``limit`` due first (scoring).
    ``handoff_counts(session, now)``: how many hand-offs are ``breached``, ``due_soon``
    and ``on_time`` at ``now``, all of them (scoring).
    ``acknowledge(session, subject_id, actor, now)``: sales took the lead's current
    hand-off; raises ``Conflict`` without one or without live consent (scoring).
    ``stage_names(session)``: the stages of the lifecycle in force, in order; a lead
    without a scoring row is at the first (scoring).
    ``funnel(session)``: the stages from the first to the sales hand-off (scoring).
    ``sales_record(session, subject_id)``: the lead's BANT and outcome (scoring).
    ``record_bant(session, subject_id, values, actor, now)``: BANT values as typed in a
    form (empty ones left out), checked (``InvalidInput``) and recorded; ``Conflict``
    without live consent (scoring).
    ``record_outcome(session, subject_id, outcome, actor)``: ``"won"`` or ``"lost"``;
    true if recorded now, false if the same was recorded before; ``Conflict`` for a
    different one or without live consent (scoring).
    ``stage_condition(subject_id_column, stage, first)``: a SQL condition on a lead id
    column that holds for the leads at ``stage`` now (the lead list's stage filter, in
    its own statement), ``first`` being the lifecycle's first stage (scoring).
    ``lead_stages(session, subject_ids)``: stage and score of each lead given; a lead
    left out is at the first stage, unscored (scoring).
    ``accounts_after(session, stage, after, limit)``: the next ``limit`` accounts by
    domain after the domain ``after`` (``""``: from the first), at ``stage`` only if
    given (scoring).
    ``account_count(session, stage)``: how many accounts (at ``stage``) there are
    (scoring).
    The scoring providers give nothing (empty, ``None``) while no scoring model is
    loaded, except ``acknowledge``, which raises ``NotFound``."""

    definition_versions: Callable[[Session], Sequence[DefinitionVersionRecord]] | None = None
    submission_weeks: Callable[[Session, datetime], Sequence[SubmissionWeekRecord]] | None = None
    stage_counts: Callable[[Session], Sequence[StageCountRecord]] | None = None
    sla_weeks: Callable[[Session, datetime], Sequence[SlaWeekRecord]] | None = None
    accounts: Callable[[Session, str | None, int], Sequence[AccountRecord]] | None = None
    account: (
        Callable[[Session, str], tuple[AccountRecord, Sequence[AccountMemberRecord]] | None] | None
    ) = None
    handoffs: Callable[[Session, datetime, int], Sequence[HandoffRecord]] | None = None
    handoff_counts: Callable[[Session, datetime], Mapping[str, int]] | None = None
    acknowledge: Callable[[Session, str, str, datetime], AcknowledgementRecord] | None = None
    stage_names: Callable[[Session], tuple[str, ...]] | None = None
    funnel: Callable[[Session], tuple[str, ...]] | None = None
    sales_record: Callable[[Session, str], SalesRecord | None] | None = None
    record_bant: Callable[[Session, str, Mapping[str, str], str, datetime], None] | None = None
    record_outcome: Callable[[Session, str, str, str], bool] | None = None
    stage_condition: Callable[[ColumnElement[str], str, str], ColumnElement[bool]] | None = None
    lead_stages: Callable[[Session, Sequence[str]], Mapping[str, LeadStageRecord]] | None = None
    accounts_after: Callable[[Session, str | None, str, int], Sequence[AccountRecord]] | None = None
    account_count: Callable[[Session, str | None], int] | None = None
