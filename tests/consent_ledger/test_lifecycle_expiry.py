"""Consent expiry (issue 16), with a controlled clock.

A purpose with ``expires_after_days`` lapses that many days after the grant began: the
lifecycle job appends ``expired`` at that very moment (point-in-time answers are exact),
reminds each lead once per grant ``remind_before_days`` before, and a save on the
preference page within that window renews the grant. Zero, negative or otherwise bad
periods are refused by ``site load`` with the key path, and nothing is loaded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentMethod
from consent_ledger.lifecycle import LifecycleReport, run_lifecycle
from consent_ledger.models import ConsentEvent, Purpose
from consent_ledger.subjects import find_subject_id
from tests.factories import notice_hash, record
from tests.preference_center.conftest import issue, open_session
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.site import load_site
from zeroparty.wiring import build_ledger

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
PERIOD = timedelta(days=30)
PURPOSE_TABLE = "[purposes.newsletter]\n"
EXPIRED, REMINDED, FRESH = "old@example.com", "soon@example.com", "new@example.com"


def load(database: Database, tmp_path: Path, extra: str, at: str = PURPOSE_TABLE) -> None:
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")
    assert at in demo
    path = tmp_path / "site.toml"
    path.write_text(demo.replace(at, at + extra), encoding="utf-8")
    load_site(database, path)


@pytest.fixture
def expiring(database: Database, tmp_path: Path) -> Database:
    """The newsletter lapses after 30 days, with a reminder 7 days before; three leads
    granted 40, 25 and 5 days ago."""
    load(database, tmp_path, "expires_after_days = 30\nremind_before_days = 7\n")
    for email, days in ((EXPIRED, 40), (REMINDED, 25), (FRESH, 5)):
        record(database, email, "newsletter", occurred_at=NOW - timedelta(days=days),
               method=ConsentMethod.DOUBLE_OPT_IN)  # fmt: skip
    return database


def lead(database: Database, email: str) -> str:
    with database.read() as session:
        found = find_subject_id(session, email)
    assert found is not None
    return found


def reminders(database: Database) -> list[str]:
    with database.read() as session:
        rows = session.execute(text("SELECT to_address, subject FROM mail_outbox")).all()
    return sorted(f"{to}: {subject}" for to, subject in rows)


def test_grants_expire_at_their_moment_and_leads_are_reminded_once(
    expiring: Database, api: TestClient
) -> None:
    database = expiring
    ledger = build_ledger(database)
    assert run_lifecycle(database, ledger, lead_links=None, now=NOW) == LifecycleReport(0, 1, 1)
    ends = NOW - timedelta(days=40) + PERIOD
    with database.read() as session:
        (entry,) = session.execute(
            select(ConsentEvent).where(ConsentEvent.action == "expired")
        ).scalars()
        assert entry.subject_id == lead(database, EXPIRED)
        assert entry.occurred_at == ends  # when it ran out, not when the job ran
        assert entry.source_ref == "expiry:newsletter:30d"
        sid = lead(database, EXPIRED)
        assert ledger.consent_at(session, sid, "newsletter", ends - timedelta(seconds=1)).permitted
        lapsed = ledger.consent_at(session, sid, "newsletter", ends)
        assert (lapsed.permitted, lapsed.status) == (False, "expired")
    body = api.get("/api/consent", params={"email": EXPIRED, "purpose": "newsletter"}).json()
    assert body["permitted"] is False
    for email in (REMINDED, FRESH):
        body = api.get("/api/consent", params={"email": email, "purpose": "newsletter"}).json()
        assert body["permitted"] is True
    day = (NOW - timedelta(days=25) + PERIOD).strftime("%d %B %Y")
    assert reminders(database) == [f"{REMINDED}: Your consent ends on {day}: Newsletter"]
    # A second run does nothing twice.
    assert run_lifecycle(database, ledger, lead_links=None, now=NOW) == LifecycleReport(0, 0, 0)
    assert len(reminders(database)) == 1


def test_resumable_in_batches(database: Database, tmp_path: Path) -> None:
    load(database, tmp_path, "expires_after_days = 30\n")
    for i in range(5):
        record(database, f"l{i}@example.com", "newsletter", occurred_at=NOW - timedelta(days=31),
               method=ConsentMethod.DOUBLE_OPT_IN)  # fmt: skip
    ledger = build_ledger(database)
    first = run_lifecycle(database, ledger, lead_links=None, now=NOW, batch_size=2, max_batches=1)
    assert first.expired == 2
    assert run_lifecycle(database, ledger, lead_links=None, now=NOW, batch_size=2).expired == 3


def test_a_save_within_the_reminder_window_renews_the_grant(
    expiring: Database, app_client: TestClient, settings: Settings
) -> None:
    database = expiring

    def save(email: str) -> list[tuple[str, bool]]:
        sid = lead(database, email)
        csrf = open_session(app_client, issue(settings, database, sid))
        with database.read() as session:
            before = session.execute(select(ConsentEvent.seq).order_by(ConsentEvent.seq.desc()))
            start = before.scalars().first()
        pairs = [("csrf", csrf), ("action", "save"), ("purpose", "newsletter")]
        pairs += [("topic", "monthly_digest"), ("topic", "webinars")]
        pairs += [("notice.newsletter", notice_hash(database, "newsletter"))]
        response = app_client.post(
            "/p/",
            content=urlencode(pairs),
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "Sec-Fetch-Site": "same-origin"},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        with database.read() as session:
            stmt = select(ConsentEvent.action, ConsentEvent.confirmation_required).where(
                ConsentEvent.seq > start
            )
            return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]

    assert save(FRESH) == []  # far from its end: nothing to renew
    assert save(REMINDED) == [("granted", False)]  # renewed, live at once
    shown = app_client.get("/p/").text
    renewed_end = datetime.now(UTC) + PERIOD
    assert f'data-ends="{renewed_end.date().isoformat()}"' in shown


@pytest.mark.parametrize(
    ("extra", "at", "path", "reason"),
    [
        ("expires_after_days = 0\n", PURPOSE_TABLE, "purposes.newsletter.expires_after_days",
         "whole number of days"),
        ("expires_after_days = -5\n", PURPOSE_TABLE, "purposes.newsletter.expires_after_days",
         "whole number of days"),
        ("expires_after_days = true\n", PURPOSE_TABLE, "purposes.newsletter.expires_after_days",
         "whole number of days"),
        ('expires_after_days = "30"\n', PURPOSE_TABLE, "purposes.newsletter.expires_after_days",
         "whole number of days"),
        ("expires_after_days = 30\nremind_before_days = 30\n", PURPOSE_TABLE,
         "purposes.newsletter.remind_before_days", "less than expires_after_days"),
        ("remind_before_days = 0\nexpires_after_days = 30\n", PURPOSE_TABLE,
         "purposes.newsletter.remind_before_days", "whole number of days"),
        ("remind_before_days = 3\n", PURPOSE_TABLE, "purposes.newsletter.remind_before_days",
         "needs expires_after_days"),
        ("expires_after_days = 30\n", "[purposes.sale_sharing]\n",
         "purposes.sale_sharing.expires_after_days", "opt-out purpose"),
    ],
)  # fmt: skip
def test_bad_periods_are_refused_with_their_key_path(
    database: Database, tmp_path: Path, extra: str, at: str, path: str, reason: str
) -> None:
    with pytest.raises(SiteConfigError) as refused:
        load(database, tmp_path, extra, at)
    assert path in str(refused.value)
    assert reason in str(refused.value)
    with database.read() as session:
        periods = session.execute(select(Purpose.expires_after_days, Purpose.remind_before_days))
        assert {tuple(row) for row in periods} == {(None, None)}


def test_serve_runs_the_lifecycle_as_a_job(database: Database, settings: Settings) -> None:
    from consent_ledger.proofs.transparency import SignerSource
    from zeroparty.wiring import JobContext, features

    ledger = build_ledger(database)
    context = JobContext(settings, database, ledger, SignerSource(settings, database))
    jobs = [job for part in features() if part.jobs for job in part.jobs(context)]
    (lifecycle,) = [job for job in jobs if job.name == "consent-lifecycle"]
    assert lifecycle.interval == 60.0


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--max-batches", "-1"],
                                  ["--batch-size", "many"]])  # fmt: skip
def test_the_command_refuses_bad_counts(
    expiring: Database, cli_env: Settings, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from zeroparty.cli import main

    with pytest.raises(SystemExit) as refused:
        main(["lifecycle", "run", *argv])
    assert refused.value.code == 2
    assert "--" in capsys.readouterr().err
    with expiring.read() as session:
        expired = session.execute(select(ConsentEvent).where(ConsentEvent.action == "expired"))
        assert expired.first() is None


def test_the_command_runs_the_job_once(
    expiring: Database, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from zeroparty.cli import main

    assert main(["lifecycle", "run"]) == 0
    out = capsys.readouterr().out
    assert "expired 1 grant(s) whose time ran out" in out
    assert "reminded 1 lead(s)" in out
