"""Texts escaped once per process (:mod:`preference_center.escaped`): the preference page
prints the catalogue's and the site file's texts escaped exactly once (the purposes with
autoescape off), the lead's address escaped by the template, and a site load's new
texts at the next request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from markupsafe import Markup, escape
from starlette.testclient import TestClient

from consent_ledger import lifecycle
from consent_ledger.actions import ConsentMethod
from consent_ledger.subjects import find_subject_id
from preference_center.escaped import page_texts
from preference_center.locale import TEXTS, strings
from tests.factories import record
from tests.preference_center.conftest import issue, open_session
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.site import load_site
from zeroparty.wiring import build_ledger

# Every character HTML gives a meaning to; escaped twice, "&" would show as "&amp;amp;".
RAW = 'Tom & Jerry\'s <b>"news"</b>'
ONCE = "Tom &amp; Jerry&#39;s &lt;b&gt;&#34;news&#34;&lt;/b&gt;"
TOML_RAW = RAW.replace('"', '\\"')
ADDRESS = "o'brien+<x>&y@example.com"
NOTICE = "Yes, send me the Northwind newsletter by email, about once a month."
GRANTED_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)


def _site(tmp_path: Path) -> Path:
    """The demo site with markup characters in every kind of text the page prints."""
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")
    edits = [
        ('title = { en = "Newsletter"', f'title = {{ en = "Newsletter: {TOML_RAW}"'),
        (NOTICE, f"Newsletter: {TOML_RAW}"),
        (
            "[purposes.newsletter.notice]\n",
            f'[purposes.newsletter.notice]\nsummary = "{TOML_RAW}"\n',
        ),
        ("double_opt_in = false\n", "double_opt_in = false\nexpires_after_days = 400\n"),
        ('title = { en = "Monthly digest"', f'title = {{ en = "Digest: {TOML_RAW}"'),
        (
            'description = { en = "The best of the month in one email."',
            f'description = {{ en = "Best of: {TOML_RAW}"',
        ),
    ]
    for old, new in edits:
        assert demo.count(old) == 1, old
        demo = demo.replace(old, new)
    path = tmp_path / "site.toml"
    path.write_text(demo, encoding="utf-8")
    return path


@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_page_texts_are_the_catalogue_escaped_once(language: str) -> None:
    texts = page_texts(language)
    assert set(vars(texts)) == set(TEXTS)
    for key, text in strings(language).items():
        assert isinstance(texts[key], Markup)
        assert texts[key] == escape(text)
        assert getattr(texts, key) is texts[key], "t.key and t[key] are one text"
    assert page_texts(f"{language}-XX") is texts, "built once per language"


def test_the_page_prints_site_texts_escaped_once_and_a_new_site_at_once(
    app_client: TestClient, settings: Settings, database: Database, tmp_path: Path
) -> None:
    record(database, ADDRESS, "newsletter", occurred_at=GRANTED_AT,
           method=ConsentMethod.DOUBLE_OPT_IN)  # fmt: skip
    record(database, ADDRESS, "profiling", occurred_at=GRANTED_AT)
    with database.read() as session:
        subject_id = find_subject_id(session, ADDRESS)
    assert subject_id is not None
    open_session(app_client, issue(settings, database, subject_id))
    before = app_client.get("/p/").text
    assert "<legend>Newsletter</legend>" in before
    assert "data-ends=" not in before

    # A material change (with its summary) expires the newsletter grant, so the page
    # says what changed; profiling now lapses, so the page says when.
    load_site(database, _site(tmp_path))
    now = datetime.now(UTC)
    assert lifecycle.expire_stale_grants(
        database, build_ledger(database), lead_links=None, now=now - timedelta(days=1)
    ) == 1  # fmt: skip
    page = app_client.get("/p/").text

    assert f"<legend>Newsletter: {ONCE}</legend>" in page
    assert f'lang="en">Newsletter: {ONCE} I can unsubscribe' in page
    assert f"What changed: {ONCE}</p>" in page
    assert f'<label for="t-monthly_digest">Digest: {ONCE}</label>' in page
    assert f'<span class="muted"> · Best of: {ONCE}</span>' in page
    ends = (GRANTED_AT + timedelta(days=400)).date().isoformat()
    assert f'data-ends="{ends}">This consent ends on {ends}.' in page
    # The lead's own address: the template escapes it, once.
    assert "<strong>o&#39;brien+&lt;x&gt;&amp;y@example.com</strong>" in page
    assert "<b>" not in page
    assert "&amp;amp;" not in page
    assert "&amp;lt;" not in page
    assert "&amp;#" not in page
