"""Material and editorial notice changes (issue 16), with a controlled clock.

A material change (the default for a changed text) makes earlier grants of the purpose
stale: the lifecycle job appends one ``expired`` entry per lead (batched, resumable,
idempotent), the lead is no longer permitted (the API and point-in-time answers read
the ledger), and a re-permission mail goes out through the outbox. An editorial change
keeps consent and says so in the version history. A change flag anywhere but on a
notice is refused by ``site load`` with its key path, and nothing is loaded.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from starlette.testclient import TestClient

from consent_ledger import lifecycle
from consent_ledger.actions import ConsentMethod
from consent_ledger.api import ConsentLedger
from consent_ledger.models import ConsentEvent
from consent_ledger.subjects import find_subject_id
from consent_ledger.verify import verify_ledger
from tests.factories import notice_hash, record
from tests.fixtures.mail import SmtpServer
from zeroparty.cli import main
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database
from zeroparty.mail import deliver_pending, transport_for
from zeroparty.settings import Settings
from zeroparty.site import load_site
from zeroparty.wiring import build_ledger

OLD_TEXT = "Yes, send me the Northwind newsletter by email, about once a month."
NEW_TEXT = "Yes, send me the Northwind newsletter by email, twice a month, with partner offers."
SUMMARY = "Twice a month instead of monthly, and it now includes partner offers."
NOTICE_TABLE = "[purposes.newsletter.notice]\n"
# The controlled clock: grants ten days ago, the job's run five days ago.
NOW = datetime.now(UTC).replace(microsecond=0)
GRANTED_AT = NOW - timedelta(days=10)
RUN_AT = NOW - timedelta(days=5)
LEADS = ("a@example.com", "b@example.com", "c@example.com")


def site_file(tmp_path: Path, *, old: str = OLD_TEXT, new: str = NEW_TEXT, extra: str = "") -> Path:
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")
    assert old in demo
    assert NOTICE_TABLE in demo
    path = tmp_path / "site.toml"
    path.write_text(demo.replace(old, new).replace(NOTICE_TABLE, NOTICE_TABLE + extra), "utf-8")
    return path


@pytest.fixture
def subscribed(database: Database) -> Database:
    """Three leads with a confirmed newsletter and profiling, granted ten days ago."""
    for email in LEADS:
        record(database, email, "newsletter", occurred_at=GRANTED_AT,
               method=ConsentMethod.DOUBLE_OPT_IN)  # fmt: skip
        record(database, email, "profiling", occurred_at=GRANTED_AT)
    return database


def consent(api: TestClient, email: str, purpose: str = "newsletter") -> dict[str, object]:
    response = api.get("/api/consent", params={"email": email, "purpose": purpose})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def expired_entries(database: Database) -> list[ConsentEvent]:
    with database.read() as session:
        stmt = select(ConsentEvent).where(ConsentEvent.action == "expired")
        return list(session.execute(stmt.order_by(ConsentEvent.seq)).scalars())


def outbox_count(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(text("SELECT count(*) FROM mail_outbox")).scalar_one())


def run(ledger: ConsentLedger, database: Database, **kwargs: object) -> int:
    return lifecycle.expire_stale_grants(
        database,
        ledger,
        lead_links=None,
        now=RUN_AT,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_material_change_expires_earlier_grants_in_resumable_batches(
    subscribed: Database, api: TestClient, tmp_path: Path
) -> None:
    database = subscribed
    v1 = notice_hash(database, "newsletter")
    changes = load_site(database, site_file(tmp_path, extra=f'summary = "{SUMMARY}"\n')).changes
    assert any("newsletter/en: version 2" in c and "material change" in c for c in changes)
    v2 = notice_hash(database, "newsletter")
    # Until the job runs, nothing changed in the ledger.
    assert consent(api, LEADS[0])["permitted"] is True
    ledger = build_ledger(database)

    # One batch of two, then stopped (a deploy): the rest is found by the next run.
    assert run(ledger, database, batch_size=2, max_batches=1) == 2
    assert run(ledger, database, batch_size=2) == 1
    assert run(ledger, database) == 0  # nothing twice
    entries = expired_entries(database)
    assert len(entries) == 3
    for entry in entries:
        assert (entry.purpose_key, entry.source, entry.method) == ("newsletter", "system", "system")
        assert entry.notice_sha256 == v1
        assert entry.source_ref == "notice:newsletter/en/v2"
        assert entry.occurred_at == RUN_AT
    for email in LEADS:
        answer = consent(api, email)
        assert (answer["permitted"], answer["notice_sha256"]) == (False, v1)
        assert consent(api, email, "profiling")["permitted"] is True  # other purposes kept
    # Point in time: permitted until the run, not from it on.
    with database.read() as session:
        lead = find_subject_id(session, LEADS[0])
        assert lead is not None
        assert ledger.consent_at(
            session, lead, "newsletter", RUN_AT - timedelta(seconds=1)
        ).permitted
        after = ledger.consent_at(session, lead, "newsletter", RUN_AT)
        assert (after.permitted, after.status) == (False, "expired")
    # Each lead got one re-permission mail, queued with its expiry.
    assert outbox_count(database) == 3
    with database.connect() as connection:
        assert verify_ledger(connection).ok
    assert v2 != v1


def test_the_repermission_mail_on_the_wire(
    subscribed: Database,
    cli_env: Settings,
    smtp_server: SmtpServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database, settings = subscribed, cli_env
    load_site(database, site_file(tmp_path, extra=f'summary = "{SUMMARY}"\n'))
    # Once from the CLI (as after a site load), with the app's links.
    assert main(["lifecycle", "run", "--batch-size", "2"]) == 0
    assert "expired 3 grant(s)" in capsys.readouterr().out
    live = dataclasses.replace(settings, smtp_url=smtp_server.url)
    assert deliver_pending(database, transport_for(live.smtp_url, live.outbox_dir)) == 3
    raw = smtp_server.raw[0].replace(b"=\r\n", b"")
    assert b"Subject: Please agree again: Newsletter" in raw
    assert SUMMARY.encode() in raw
    assert NEW_TEXT.encode() in raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    assert (settings.base_url + "/p/").encode() in raw
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(LEADS)


def test_an_editorial_change_keeps_consent_and_says_so(
    subscribed: Database, api: TestClient, tmp_path: Path
) -> None:
    database = subscribed
    path = site_file(
        tmp_path, new=OLD_TEXT.replace("by email", "by e-mail"), extra='change = "editorial"\n'
    )
    changes = load_site(database, path).changes
    assert any("version 2" in c and "editorial change, consent kept" in c for c in changes)
    ledger = build_ledger(database)
    assert run(ledger, database) == 0
    assert expired_entries(database) == []
    assert outbox_count(database) == 0
    assert consent(api, LEADS[0])["permitted"] is True
    with database.read() as session:
        history = [
            (r.version, r.change)
            for r in ledger.notice_versions(session)
            if (r.purpose_key, r.locale) == ("newsletter", "en")
        ]
    assert history == [(1, "initial"), (2, "editorial")]


def test_a_later_material_change_still_expires_grants_under_an_editorial_version(
    subscribed: Database, api: TestClient, tmp_path: Path
) -> None:
    database = subscribed
    edited = OLD_TEXT.replace("by email", "by e-mail")
    load_site(database, site_file(tmp_path, new=edited, extra='change = "editorial"\n'))
    load_site(database, site_file(tmp_path, new=NEW_TEXT))
    assert run(build_ledger(database), database) == 3
    assert consent(api, LEADS[0])["permitted"] is False


@pytest.mark.parametrize(
    ("extra_at", "extra", "path", "reason"),
    [
        ("[purposes.newsletter]\n", 'change = "material"\n', "purposes.newsletter.change",
         "purposes.newsletter.notice.change"),
        (NOTICE_TABLE, 'change = "big"\n', "purposes.newsletter.notice.change",
         "must be one of material, editorial"),
        (NOTICE_TABLE, "change = true\n", "purposes.newsletter.notice.change", "must be one of"),
        (NOTICE_TABLE, 'summary = ""\n', "purposes.newsletter.notice.summary", "non-empty"),
        ("[topics.monthly_digest]\n", 'change = "editorial"\n', "topics.monthly_digest.change",
         "only a purpose's notice"),
    ],
)  # fmt: skip
def test_a_change_flag_on_something_else_is_refused_with_its_key_path(
    subscribed: Database, tmp_path: Path, extra_at: str, extra: str, path: str, reason: str
) -> None:
    database = subscribed
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")
    assert extra_at in demo
    site = tmp_path / "site.toml"
    site.write_text(demo.replace(OLD_TEXT, NEW_TEXT).replace(extra_at, extra_at + extra), "utf-8")
    before = notice_hash(database, "newsletter")
    with pytest.raises(SiteConfigError) as refused:
        load_site(database, site)
    message = str(refused.value)
    assert path in message
    assert reason in message
    assert notice_hash(database, "newsletter") == before  # nothing loaded
    with database.read() as session:
        assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 6


def test_a_grant_under_a_replaced_version_is_refused(subscribed: Database, tmp_path: Path) -> None:
    """A page rendered before the change still names the old text: it permits nothing."""
    from consent_ledger.actions import ConsentAction, ConsentSource
    from consent_ledger.api import ConsentChange
    from zeroparty.errors import InvalidInput

    database = subscribed
    v1 = notice_hash(database, "newsletter")
    load_site(database, site_file(tmp_path))
    ledger = build_ledger(database)
    with database.read() as session:
        lead = find_subject_id(session, LEADS[0])
    assert lead is not None
    with pytest.raises(InvalidInput) as refused, database.write() as session:
        ledger.record(
            session,
            [
                ConsentChange(
                    subject_id=lead,
                    purpose="newsletter",
                    action=ConsentAction.GRANTED,
                    source=ConsentSource.FORM,
                    method=ConsentMethod.CHECKBOX,
                    notice_sha256=v1,
                    confirmed=True,
                )
            ],
        )
    assert "replaced by a material change" in refused.value.fields["notice_sha256"]
    with database.read() as session:
        assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 6


def test_the_api_refuses_a_grant_under_a_replaced_version(
    subscribed: Database, api: TestClient, tmp_path: Path
) -> None:
    database = subscribed
    v1 = notice_hash(database, "newsletter")
    load_site(database, site_file(tmp_path))
    body = {"email": "late@example.com", "purpose": "newsletter", "action": "granted",
            "notice_sha256": v1, "source": "old-form", "method": "double-opt-in",
            "evidence": {"ip": "203.0.113.7"}}  # fmt: skip
    response = api.post("/api/consent", json=body)
    assert response.status_code == 422
    assert "replaced by a material change" in response.json()["error"]["fields"]["notice_sha256"]
    with database.read() as session:
        assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 6
    body["notice_sha256"] = notice_hash(database, "newsletter")
    assert api.post("/api/consent", json=body).status_code == 201


def test_scoring_follows_a_material_change_at_once(
    subscribed: Database, api: TestClient, tmp_path: Path
) -> None:
    """The expiry goes through the wired ledger: scoring's listener forgets the lead in
    the job's transaction, as after a withdrawal (nothing reaches scoring, rule 3)."""
    import uuid

    from tests.scoring.conftest import ts
    from zeroparty.db import utcnow

    database, email = subscribed, LEADS[0]
    event_body = {"id": uuid.uuid4().hex, "email": email, "type": "webinar_attended",
                  "occurred_at": ts(utcnow())}  # fmt: skip
    assert api.post("/api/events", json={"events": [event_body]}).json()["accepted"] == 1
    assert api.get("/api/leads/score", params={"email": email}).status_code == 200
    old = "Yes, Northwind may use my answers and my activity on northwind.example"
    load_site(database, site_file(tmp_path, old=old, new=old.replace("activity", "visits")))
    assert run(build_ledger(database), database) == 3
    assert consent(api, email, "profiling")["permitted"] is False
    assert consent(api, email)["permitted"] is True  # the newsletter's text is unchanged
    after = api.get("/api/leads/score", params={"email": email}).json()
    assert (after["permitted"], after["score"], after["status"]) == (False, None, "consent_ended")
    assert after["reason"].startswith("consent for profiling expired")
    event_body["id"] = uuid.uuid4().hex
    assert api.post("/api/events", json={"events": [event_body]}).json()["dropped"] == 1
