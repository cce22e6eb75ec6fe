"""What ``zeroparty score`` and ``zeroparty dispatch`` print (called by zeroparty.cli)."""

from __future__ import annotations

import sys

from consent_ledger.api import normalise_email
from consent_ledger.entries import format_timestamp
from scoring import rescore, services, webhooks
from scoring.jobs import dispatch_config
from zeroparty.db import Database
from zeroparty.settings import Settings


def rescore_with_progress(database: Database, *, quiet: bool = False) -> int:
    def progress(done: int, total: int) -> None:
        if not quiet:
            print(f"\rrescored {done:,}/{total:,} leads", end="", file=sys.stderr, flush=True)

    report = rescore.rescore_all(database, progress)
    if not quiet:
        print("", file=sys.stderr)
    print(
        f"model version {report.model_id}: {report.leads:,} permissioned leads rescored, "
        f"{report.points:,} points, {report.moved:,} moved forward, "
        f"{report.purged:,} without consent cleared"
    )
    return 0


def print_explanation(database: Database, subject_id: str, email: str) -> int:
    email = normalise_email(email)
    with database.read() as session:
        explanation = services.explain(session.connection(), subject_id)
    if explanation.score is None:
        print(f"{email}: not scored, stage {explanation.stage}: {explanation.reason}")
    else:
        print(
            f"{email}: {explanation.score:g} points, stage {explanation.stage} "
            f"(model version {explanation.model_id})"
        )
    for p in explanation.points:
        print(
            f"  {p.points:+g}  {p.rule:<20} {p.kind:<9} from {p.source} at "
            f"{format_timestamp(p.occurred_at)}, under ledger entry {p.consent_seq}"
        )
    intent = explanation.intent
    if intent.tags or intent.quiz_scores:
        scores = ", ".join(f"{quiz} {score:g}" for quiz, score in intent.scores().items())
        print(f"  intent: tags {', '.join(intent.tag_names()) or 'none'}; quiz scores {scores}")
    if explanation.lead_types:
        print(f"  lead types: {', '.join(explanation.lead_types)}")
    if explanation.temperature is not None:
        print(f"  temperature: {explanation.temperature}")
    if explanation.next_action is not None:
        action = explanation.next_action
        print(f"  next best action: {action['action']} (rule {action['rule']})")
    for change in explanation.changes:
        print(f"  stage {change['from']} → {change['to']} by {change['actor']}: {change['reason']}")
    if explanation.outcome is not None:
        print(
            f"  outcome {explanation.outcome.outcome}, decided at "
            f"{format_timestamp(explanation.outcome.decided_at)}, recorded by "
            f"{explanation.outcome.recorded_by}"
        )
    return 0


def dispatch_once(database: Database, settings: Settings, *, dead: bool = False) -> int:
    if dead:
        with database.read() as session:
            rows = webhooks.dead_letters(session.connection())
        for row in rows:
            print(
                f"{row.id} lead {row.subject_id} stage {row.stage}: {row.attempts} attempts, "
                f"last error {row.last_error}"
            )
        print(f"{len(rows)} dead-lettered webhook(s)", file=sys.stderr)
        return 0
    config = dispatch_config(settings)
    if config is None:
        print("no ZEROPARTY_CRM_WEBHOOK_URL: webhooks wait in the outbox", file=sys.stderr)
        return 2
    report = webhooks.dispatch_pending(database, config, limit=10_000)
    print(
        f"delivered {report.delivered}, retry later {report.retried}, "
        f"dead-lettered {report.dead_lettered}, cancelled (no consent) {report.cancelled}"
    )
    return 0
