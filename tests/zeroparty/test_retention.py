"""Retention: periods per kind of record from site.toml (lawful defaults, a minimum for
request records, bad values refused with their key path), and the purges every package
names in its wiring, run on a controlled clock by ``zeroparty retention run`` and the job
in ``serve``. The ledger is never purged."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from capture.models import Answer, DefinitionVersion, ErasedSubmissions, RateCounter, Submission
from consent_ledger.actions import ConsentAction, ConsentMethod
from consent_ledger.api import ConsentLedger
from consent_ledger.models import ConsentEvent, Subject, SubjectProfile
from consent_ledger.requests import (
    DataSubjectRequest,
    RequestChannel,
    RequestKind,
    RequestStatus,
    record_request,
)
from consent_ledger.subjects import find_subject_id
from consent_ledger.verify import verify_database
from preference_center.models import LinkRequest
from tests.factories import record
from zeroparty import cli
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database, utcnow
from zeroparty.mail import OutboxMail
from zeroparty.retention import (
    DEFAULT_DAYS,
    RetentionKind,
    all_purges,
    current_periods,
    run_retention,
)
from zeroparty.settings import DEFAULT_SITE_FILE, Settings
from zeroparty.site import load_site

DEMO = DEFAULT_SITE_FILE.read_text("utf-8")
DAY = timedelta(days=1)


def _site(tmp_path: Path, retention: str) -> Path:
    text = DEMO.split("[retention]")[0] + "[retention]\n" + retention
    path = tmp_path / "site.toml"
    path.write_text(text, "utf-8")
    return path


def test_defaults_are_lawful() -> None:
    assert DEFAULT_DAYS[RetentionKind.CLOSED_REQUESTS] >= 731  # 24 months
    assert set(DEFAULT_DAYS) == set(RetentionKind)


def test_periods_come_from_the_site_file(database: Database, tmp_path: Path) -> None:
    changes = load_site(
        database, _site(tmp_path, "submissions_days = 400\nclosed_requests_days = 1000\n")
    ).changes
    assert "retention: submissions kept 400 days (was 730)" in changes
    assert "retention: closed_requests kept 1000 days (was 731)" in changes
    with database.read() as session:
        periods = current_periods(session)
    assert periods[RetentionKind.SUBMISSIONS] == 400
    assert periods[RetentionKind.CLOSED_REQUESTS] == 1000
    assert periods[RetentionKind.SENT_MAILS] == DEFAULT_DAYS[RetentionKind.SENT_MAILS]


@pytest.mark.parametrize(
    ("body", "where", "reason"),
    [
        ("closed_requests_days = 365\n", "retention.closed_requests_days", "24 months"),
        ("submissions_days = 0\n", "retention.submissions_days", "above zero"),
        ("sent_mails_days = -5\n", "retention.sent_mails_days", "above zero"),
        ('sent_mails_days = "90"\n', "retention.sent_mails_days", "whole number"),
        ("sent_mails_days = 1.5\n", "retention.sent_mails_days", "whole number"),
        ("outbox_rows_days = true\n", "retention.outbox_rows_days", "whole number"),
        ("rate_counters_days = 1\n", "retention.rate_counters_days", "at least 2 days"),
        ("forever_days = 3\n", "retention.forever_days", "unknown key"),
        ("submissions_days = 99999999\n", "retention.submissions_days", "at most"),
    ],
)
def test_bad_periods_are_refused_as_a_whole(
    database: Database, tmp_path: Path, body: str, where: str, reason: str
) -> None:
    path = _site(tmp_path, "contacts_without_permission_days = 200\n" + body)
    with pytest.raises(SiteConfigError) as refused:
        load_site(database, path)
    problems = str(refused.value)
    assert where in problems
    assert reason in problems
    with database.read() as session:  # nothing applied, not even the valid key
        assert current_periods(session)[RetentionKind.CONTACTS_WITHOUT_PERMISSION] == 365


def _age(database: Database, model: Any, column: str, moment: datetime, *where: Any) -> None:
    with database.write() as session:
        session.execute(update(model).where(*where).values({column: moment}))


def _lead(database: Database, email: str, created: datetime, **kwargs: Any) -> str:
    record(database, email, "newsletter", occurred_at=created, **kwargs)
    with database.write() as session:
        subject_id = find_subject_id(session, email)
        assert subject_id is not None
        session.execute(update(Subject).where(Subject.id == subject_id).values(created_at=created))
    return subject_id


def _count(database: Database, model: Any, *where: Any) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _world(database: Database) -> dict[str, Any]:
    """A bit of everything, some of it old; the test's clock is ``now``."""
    now = utcnow()
    old = now - 800 * DAY
    gone = _lead(database, "gone@example.com", old)
    record(
        database, "gone@example.com", "newsletter", ConsentAction.WITHDRAWN, occurred_at=old + DAY
    )
    kept = _lead(database, "kept@example.com", old, method=ConsentMethod.DOUBLE_OPT_IN)
    asked = _lead(database, "asked@example.com", old)
    record(
        database, "asked@example.com", "newsletter", ConsentAction.WITHDRAWN, occurred_at=old + DAY
    )
    recent = _lead(database, "recent@example.com", now - 10 * DAY)
    record(
        database, "recent@example.com", "newsletter", ConsentAction.WITHDRAWN,
        occurred_at=now - 9 * DAY,
    )  # fmt: skip
    with database.write() as session:
        definition = session.scalars(
            select(DefinitionVersion).where(DefinitionVersion.slug == "contact")
        ).first()
        assert definition is not None
        for sid, created in (("o" * 32, old), ("n" * 32, now - DAY)):
            session.add(
                Submission(
                    id=sid, definition_id=definition.id, subject_id=kept, locale="en",
                    created_at=created,
                )
            )  # fmt: skip
            session.flush()
            session.add(Answer(submission_id=sid, subject_id=kept, field="message", value="hi"))
        # Open, about a lead who permits nothing: kept, and it keeps the lead.
        record_request(session, asked, RequestKind.ACCESS, RequestChannel.STAFF)
        for age in (800, 100):
            closed = record_request(
                session, kept, RequestKind.ACCESS, RequestChannel.STAFF, completed=True,
                handled_by="x",
            )  # fmt: skip
            closed.handled_at = now - age * DAY
        for sent, failed, created in (
            (now - 100 * DAY, None, now - 100 * DAY),  # sent long ago: goes
            (now - 10 * DAY, None, now - 10 * DAY),  # sent lately: stays
            (None, now - 40 * DAY, now - 41 * DAY),  # given up long ago: goes
            (None, None, old),  # still to send: never purged
        ):
            session.add(
                OutboxMail(
                    id=uuid.uuid4().hex, to_address="a@b.example",
                    subject="s", body_text="t", headers="{}", created_at=created, attempts=0,
                    next_attempt_at=created, sent_at=sent, failed_at=failed,
                )
            )  # fmt: skip
        session.add(LinkRequest(address_key="k" * 64, requested_at=now - 3 * DAY))
        session.add(LinkRequest(address_key="k" * 64, requested_at=now))
        session.add(
            RateCounter(bucket="b" * 64, window_start=int((now - 3 * DAY).timestamp()), count=1)
        )
        session.add(RateCounter(bucket="b" * 64, window_start=int(now.timestamp()), count=1))
    return {"now": now, "gone": gone, "kept": kept, "asked": asked, "recent": recent}


def test_retention_run_removes_what_is_too_old(
    database: Database, ledger: ConsentLedger, settings: Settings
) -> None:
    world = _world(database)
    with database.read() as session:
        entries_before = session.scalar(select(func.count()).select_from(ConsentEvent))
    purges = all_purges()
    preview = run_retention(database, ledger, purges, dry_run=True, now=world["now"])
    removed = {(r.kind, r.label): r.count for r in preview}
    expected = {
        (RetentionKind.CONTACTS_WITHOUT_PERMISSION, "contacts without any permission (erased)"): 1,
        (RetentionKind.SUBMISSIONS, "form and quiz submissions"): 1,
        (RetentionKind.SENT_MAILS, "sent mails"): 1,
        (RetentionKind.OUTBOX_ROWS, "undeliverable mails"): 1,
        (RetentionKind.RATE_COUNTERS, "link request counters"): 1,
        (RetentionKind.RATE_COUNTERS, "form rate counters"): 1,
        (RetentionKind.CLOSED_REQUESTS, "closed data-subject requests"): 1,
        (RetentionKind.CLOSED_REQUESTS, "unconfirmed request-page requests"): 0,
    }
    assert {key: removed.get(key) for key in expected} == expected
    # A dry run removes nothing.
    assert _count(database, Submission) == 2
    assert _count(database, OutboxMail) == 4
    assert _count(database, SubjectProfile) == 4

    done = run_retention(database, ledger, purges, now=world["now"])
    assert {(r.kind, r.label): r.count for r in done} == removed
    assert _count(database, Submission) == 1
    assert _count(database, Answer) == 1
    assert _count(database, ErasedSubmissions) == 1  # still counted in the opt-in rates
    assert _count(database, OutboxMail) == 2
    assert (
        _count(database, OutboxMail, OutboxMail.sent_at.is_(None), OutboxMail.failed_at.is_(None))
        == 1
    )
    assert _count(database, LinkRequest) == 1
    assert _count(database, RateCounter) == 1
    assert _count(database, DataSubjectRequest) == 2  # the open one and the recent closed one
    assert (
        _count(database, DataSubjectRequest, DataSubjectRequest.status == RequestStatus.OPEN) == 1
    )
    with database.read() as session:
        assert session.get(SubjectProfile, world["gone"]) is None
        assert session.get_one(Subject, world["gone"]).erased_at is not None
        for keep in ("kept", "asked", "recent"):
            assert session.get(SubjectProfile, world[keep]) is not None, keep
        # The ledger is never purged: erasure appended to it.
        assert session.scalar(select(func.count()).select_from(ConsentEvent)) > entries_before
    assert verify_database(settings.database_url).ok
    # Nothing left: a second run removes nothing.
    again = run_retention(database, ledger, purges, now=world["now"])
    assert sum(r.count for r in again) == 0


def test_the_command_reports(
    cli_env: Settings, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    world = _world(database)
    assert cli.main(["retention", "run", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sent_mails: would remove 1 sent mails (kept 90 days" in out
    assert "dry run: nothing was removed" in out
    assert _count(database, OutboxMail) == 4
    assert cli.main(["retention", "run"]) == 0
    out = capsys.readouterr().out
    assert "contacts_without_permission: removed 1 contacts without any permission" in out
    assert "closed_requests: removed 0 unconfirmed request-page requests (kept 24 hours" in out
    with database.read() as session:
        assert session.get(SubjectProfile, world["gone"]) is None


def test_serve_runs_retention_as_a_job(
    database: Database, ledger: ConsentLedger, settings: Settings
) -> None:
    from consent_ledger.proofs.transparency import SignerSource
    from zeroparty.wiring import JobContext, features

    context = JobContext(settings, database, ledger, SignerSource(settings, database))
    jobs = [job for part in features() if part.jobs for job in part.jobs(context)]
    assert "retention" in [job.name for job in jobs]
