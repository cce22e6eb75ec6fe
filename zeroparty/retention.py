"""Retention: how long each kind of record is kept, and the purges that apply it.

``site.toml``'s ``[retention]`` table sets a period in days per kind of record
(:class:`RetentionKind`); a kind left out keeps its lawful default (:data:`DEFAULT_DAYS`).
Records of data-subject requests are kept at least 24 months (CCPA regulations
§ 7101(a)): a shorter period is refused with its key path, like every other bad value,
and nothing of the file is applied.

Each package names its purges in its wiring (:attr:`zeroparty.wiring.Feature.purges`):
a :class:`Purge` deletes (or, ``dry_run``, counts) that package's records of one kind
older than the cutoff it is given. :func:`run_retention` runs them all, one transaction
each, and reports what they removed; ``serve`` runs it hourly and ``zeroparty retention
run [--dry-run]`` on demand. The ledger itself is never purged: it is append-only (SPEC
rule 4); a lead removed for retention is erased, which appends ``erased`` entries.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from zeroparty.background import PeriodicJob
from zeroparty.config_errors import ConfigProblems
from zeroparty.db import Base, Database, utcnow
from zeroparty.mail import OutboxMail
from zeroparty.settings import Settings
from zeroparty.site import SiteSection
from zeroparty.wiring import Feature, JobContext

if TYPE_CHECKING:
    from consent_ledger.api import ConsentLedger
    from zeroparty.cli_support import Commands

log = logging.getLogger("zeroparty.retention")

RUN_EVERY_SECONDS = 3600.0


class RetentionKind(StrEnum):
    SUBMISSIONS = "submissions"
    """Form and quiz submissions with their answers (capture)."""
    CONTACTS_WITHOUT_PERMISSION = "contacts_without_permission"
    """Leads who permit nothing, have nothing pending and did nothing since: erased."""
    SENT_MAILS = "sent_mails"
    """Mails delivered (the outbox row: address, text)."""
    OUTBOX_ROWS = "outbox_rows"
    """Mails given up as undeliverable. Mails still to send are never purged."""
    RATE_COUNTERS = "rate_counters"
    """Counters of rate limits (form submissions, link requests)."""
    CLOSED_REQUESTS = "closed_requests"
    """Data-subject requests closed (completed, refused, nothing held)."""


DEFAULT_DAYS: Mapping[RetentionKind, int] = {
    # Storage limitation (GDPR Art. 5(1)(e)); each a default the site file may change.
    RetentionKind.SUBMISSIONS: 730,
    RetentionKind.CONTACTS_WITHOUT_PERMISSION: 365,
    RetentionKind.SENT_MAILS: 90,
    RetentionKind.OUTBOX_ROWS: 30,
    RetentionKind.RATE_COUNTERS: 2,
    RetentionKind.CLOSED_REQUESTS: 731,
}
MINIMUM_DAYS: Mapping[RetentionKind, tuple[int, str]] = {
    # 24 months, a leap day included.
    RetentionKind.CLOSED_REQUESTS: (731, "at least 24 months (731 days), CCPA regs § 7101(a)"),
    # A rate counter must outlive the longest window it limits (a day).
    RetentionKind.RATE_COUNTERS: (2, "at least 2 days, the longest rate-limit window and one"),
}
MAXIMUM_DAYS = 36_500


class RetentionPeriod(Base):
    """The periods the site file set; a kind without a row keeps its default."""

    __tablename__ = "retention_periods"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    days: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True, slots=True)
class PurgeContext:
    """What a purge is given: records older than ``cutoff`` go (``dry_run``: counted)."""

    session: Session
    cutoff: datetime
    now: datetime
    dry_run: bool
    ledger: ConsentLedger


@dataclass(frozen=True, slots=True)
class Purge:
    """One package's purge of one kind of record; ``run`` returns how many it removed
    (or would remove)."""

    kind: RetentionKind
    label: str
    run: Callable[[PurgeContext], int]
    fixed_period: str | None = None
    """Set where the purge keeps its own, shorter period (said in the report)."""
    after: Callable[[Database], object] | None = None
    """Run after the purge's transaction committed, when it removed something (an
    erasure's scrub of the database files)."""


@dataclass(frozen=True, slots=True)
class PurgeReport:
    kind: RetentionKind
    label: str
    days: int
    cutoff: datetime
    count: int
    fixed_period: str | None = None


# ---------------------------------------------------------------- site.toml


def parse(
    raw: Mapping[str, object], _locales: tuple[str, ...], problems: ConfigProblems
) -> dict[RetentionKind, int]:
    """The ``[retention]`` table: ``<kind>_days = N`` per kind; problems by key path."""
    table = raw.get("retention", {})
    periods = dict(DEFAULT_DAYS)
    if not isinstance(table, dict):
        problems.add("retention", "must be a table")
        return periods
    known = {f"{kind.value}_days": kind for kind in RetentionKind}
    for key, value in table.items():
        where = f"retention.{key}"
        kind = known.get(key)
        if kind is None:
            problems.add(where, f"unknown key (known: {', '.join(sorted(known))})")
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.add(where, "must be a whole number of days, above zero")
            continue
        if value > MAXIMUM_DAYS:
            problems.add(where, f"at most {MAXIMUM_DAYS} days")
            continue
        minimum = MINIMUM_DAYS.get(kind)
        if minimum is not None and value < minimum[0]:
            problems.add(where, f"{value} days is too short: {minimum[1]}")
            continue
        periods[kind] = value
    return periods


def apply(session: Session, periods: dict[RetentionKind, int]) -> list[str]:
    """Store the periods; the changes, one line each."""
    stored = current_periods(session)
    changes: list[str] = []
    for kind, days in periods.items():
        if stored[kind] == days and session.get(RetentionPeriod, kind.value) is not None:
            continue
        row = session.get(RetentionPeriod, kind.value)
        if row is None:
            session.add(RetentionPeriod(kind=kind.value, days=days))
        else:
            row.days = days
        if stored[kind] != days:
            changes.append(f"retention: {kind.value} kept {days} days (was {stored[kind]})")
    return changes


def current_periods(session: Session) -> dict[RetentionKind, int]:
    periods = dict(DEFAULT_DAYS)
    for kind, days in session.execute(select(RetentionPeriod.kind, RetentionPeriod.days)):
        if kind in RetentionKind.__members__.values():
            periods[RetentionKind(kind)] = int(days)
    return periods


# ---------------------------------------------------------------- running


class _DryRun(Exception):
    """Raised out of a dry run's write transaction to roll it back."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


def run_retention(
    database: Database,
    ledger: ConsentLedger,
    purges: Sequence[Purge],
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[PurgeReport]:
    """Every purge, each in its own transaction (a dry run rolls each back); what each
    removed or would remove."""
    moment = now or utcnow()
    with database.read() as session:
        periods = current_periods(session)
    reports: list[PurgeReport] = []
    for purge in purges:
        days = periods[purge.kind]
        cutoff = moment - timedelta(days=days)
        try:
            with database.write() as session:
                count = purge.run(PurgeContext(session, cutoff, moment, dry_run, ledger))
                if dry_run:
                    raise _DryRun(count)  # rolls the transaction back
        except _DryRun as dry:
            count = dry.count
        if purge.after is not None and count and not dry_run:
            purge.after(database)
        reports.append(
            PurgeReport(purge.kind, purge.label, days, cutoff, count, purge.fixed_period)
        )
    removed = sum(report.count for report in reports)
    if removed and not dry_run:
        log.info(
            "retention removed %s",
            ", ".join(f"{r.count} {r.label}" for r in reports if r.count),
        )
    return reports


def format_report(reports: Sequence[PurgeReport], *, dry_run: bool) -> list[str]:
    verb = "would remove" if dry_run else "removed"
    return [
        f"{r.kind.value}: {verb} {r.count} {r.label} "
        + (
            f"({r.fixed_period})"
            if r.fixed_period
            else f"(kept {r.days} days: older than {r.cutoff:%Y-%m-%d %H:%M} UTC)"
        )
        for r in reports
    ]


# ---------------------------------------------------------------- the shell's own records


def _count_or_delete(context: PurgeContext, model: Any, *where: Any) -> int:
    if context.dry_run:
        return int(
            context.session.scalar(select(func.count()).select_from(model).where(*where)) or 0
        )
    result = context.session.execute(delete(model).where(*where))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def purge_sent_mails(context: PurgeContext) -> int:
    return _count_or_delete(context, OutboxMail, OutboxMail.sent_at < context.cutoff)


def purge_undeliverable_mails(context: PurgeContext) -> int:
    return _count_or_delete(
        context, OutboxMail, OutboxMail.sent_at.is_(None), OutboxMail.failed_at < context.cutoff
    )


MAIL_PURGES = (
    Purge(RetentionKind.SENT_MAILS, "sent mails", purge_sent_mails),
    Purge(RetentionKind.OUTBOX_ROWS, "undeliverable mails", purge_undeliverable_mails),
)


# ---------------------------------------------------------------- wiring


def all_purges(parts: Sequence[Feature] | None = None) -> list[Purge]:
    """Every package's purges, as the wiring names them."""
    from zeroparty.wiring import features

    return [purge for part in (features() if parts is None else parts) for purge in part.purges]


def cmd_retention_run(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.cli_support import opened_ledger

    with opened_ledger(settings) as ledger:
        reports = run_retention(ledger.database, ledger, all_purges(), dry_run=args.dry_run)
    for line in format_report(reports, dry_run=args.dry_run):
        print(line)
    if args.dry_run:
        print("dry run: nothing was removed")
    return 0


def _add_commands(commands: Commands) -> None:
    retention = commands.add_parser(
        "retention", help="the retention periods of site.toml"
    ).add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    run = retention.add_parser(
        "run", help="remove what is older than its retention period and report it"
    )
    run.add_argument("--dry-run", action="store_true", help="report only; remove nothing")
    run.set_defaults(handler=cmd_retention_run)


def _jobs(context: JobContext) -> list[PeriodicJob]:
    purges = all_purges()

    def run() -> None:
        run_retention(context.database, context.ledger, purges)

    return [PeriodicJob("retention", RUN_EVERY_SECONDS, run)]


def feature() -> Feature:
    return Feature(
        name="retention",
        commands=_add_commands,
        site_sections=[SiteSection(frozenset({"retention"}), parse, apply)],
        jobs=_jobs,
        purges=MAIL_PURGES,
    )
