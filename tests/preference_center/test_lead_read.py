"""The one statement that reads a lead (``services.load_lead``): rows of four kinds in no
order, put back together as the joined read gave them: purposes and topics in the
order the database sorts their keys, each purpose's current notice per language, the
lead's states and topic choices; nothing for an erased or unknown lead."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from consent_ledger.models import NoticeVersion, Purpose, Topic
from preference_center import services
from preference_center.tokens import TokenRevoked
from zeroparty.db import Database, utcnow

# Keys a byte-wise sort and a language-aware collation may order differently ('_').
EXTRA_PURPOSES = ("a_z", "ab", "zz")
EXTRA_TOPICS = ("news_z", "newsa", "aa_first")


@pytest.fixture
def site(database: Database) -> None:
    """More purposes and newsletter topics than the demo's, made out of key order, and
    a second English version of the newsletter's notice."""
    with database.write() as session:
        for key in EXTRA_PURPOSES:
            session.add(
                Purpose(
                    key=key,
                    title=f"Title {key}",
                    description=f"About {key}",
                    legal_basis="consent",
                    category="communication",
                    mechanism="opt-in",
                )
            )
            session.flush()
            session.add(
                NoticeVersion(
                    purpose_key=key, locale="en", version=1, text=f"Yes to {key}", sha256=key
                )
            )
        for key in EXTRA_TOPICS:
            session.add(Topic(key=key, purpose_key="newsletter", title=f"Topic {key}"))
        session.add(
            NoticeVersion(
                purpose_key="newsletter",
                locale="en",
                version=2,
                text="Yes, the newsletter, now weekly.",
                sha256="b" * 64,
                change="material",
                change_summary="Weekly now.",
            )
        )


def _database_order(database: Database, column: object) -> list[str]:
    with database.read() as session:
        return list(session.execute(select(column).order_by(column)).scalars())  # type: ignore[call-overload]


def _current_notices(database: Database, purpose: str) -> dict[str, tuple[str, str]]:
    with database.read() as session:
        rows = session.execute(
            select(
                NoticeVersion.locale,
                NoticeVersion.text,
                NoticeVersion.sha256,
                NoticeVersion.version,
            )
            .where(NoticeVersion.purpose_key == purpose)
            .order_by(NoticeVersion.version)
        )
        return {locale: (text, sha) for locale, text, sha, _version in rows}


def test_purposes_topics_notices_and_states(database: Database, lead: str, site: None) -> None:
    with database.write_connection() as connection:
        services.record_topics(connection, lead, {"webinars": False, "newsa": True}, None, utcnow())
    with database.lookup() as connection:
        read = services.load_lead(connection, lead, 0, notices=True)
        bare = services.load_lead(connection, lead, 0)
    assert read is not None
    assert bare is not None
    assert read.email == bare.email == "ann@example.com"
    keys = [p.key for p in read.purposes]
    assert keys == _database_order(database, Purpose.key)
    assert [p.key for p in bare.purposes] == keys
    with database.read() as session:
        newsletter_topics = list(
            session.execute(
                select(Topic.key).where(Topic.purpose_key == "newsletter").order_by(Topic.key)
            ).scalars()
        )
    by_key = {p.key: p for p in read.purposes}
    newsletter = by_key["newsletter"]
    assert [t.key for t in newsletter.topics] == newsletter_topics
    choices = {t.key: t.choice for t in newsletter.topics}
    assert choices["webinars"] is False
    assert choices["newsa"] is True
    assert choices["monthly_digest"] is None
    assert [t.key for t in by_key["product_updates"].topics] == ["release_notes"]
    assert by_key["profiling"].topics == []
    assert by_key["ab"].topics == []
    # The latest version of each language's notice, with its change summary.
    for key in keys:
        assert by_key[key].notices == _current_notices(database, key)
    assert newsletter.notices["en"] == ("Yes, the newsletter, now weekly.", "b" * 64)
    assert newsletter.change_summaries == {"en": "Weekly now.", "de": None}
    # States: granted where the lead said yes, none elsewhere.
    assert newsletter.status == "granted"
    assert newsletter.state_permitted
    assert by_key["profiling"].status == "granted"
    assert by_key["profiling"].since is not None
    assert by_key["ab"].status is None
    assert not by_key["ab"].state_permitted
    # Without notices: the same lead, no notices.
    for with_notices, without in zip(read.purposes, bare.purposes, strict=True):
        assert without.notices == {}
        assert without.change_summaries == {}
        assert without.topics == with_notices.topics
        assert (without.status, without.since) == (with_notices.status, with_notices.since)


def test_unknown_and_revoked(database: Database, lead: str) -> None:
    with database.lookup() as connection:
        assert services.load_lead(connection, "0" * 32, 0, notices=True) is None
        with pytest.raises(TokenRevoked):
            services.load_lead(connection, "0" * 32, 1)
        with pytest.raises(TokenRevoked):
            services.load_lead(connection, lead, 1, notices=True)


def test_every_purpose_once(database: Database, lead: str, site: None) -> None:
    with database.read() as session:
        purposes = session.execute(select(func.count()).select_from(Purpose)).scalar_one()
    with database.lookup() as connection:
        read = services.load_lead(connection, lead, 0, notices=True)
    assert read is not None
    assert len(read.purposes) == purposes == len({p.key for p in read.purposes})
