"""Loading ``site.toml``: new notice versions, never edits; all or nothing; clear errors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from consent_ledger.models import NoticeVersion, Purpose, Topic
from zeroparty import cli
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database
from zeroparty.settings import DEFAULT_SITE_FILE, Settings
from zeroparty.site import load_site

DEMO = DEFAULT_SITE_FILE.read_text("utf-8")
NEWSLETTER_EN = (
    "Yes, send me the Northwind newsletter by email, about once a month. "
    "I can unsubscribe at any time with one click."
)
NEWSLETTER_TITLE = 'title = { en = "Newsletter", de = "Newsletter" }'
UPDATES_TITLE = 'title = { en = "Product updates", de = "Produktneuigkeiten" }'
NEW_PURPOSE = """
[purposes.events]
title = "Event invitations"
category = "communication"
[purposes.events.notice]
en = "Yes, invite me to Northwind events by email."
"""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a site load may write, timestamps included (an edit would show)."""
    with database.read() as session:
        return {
            "purposes": [
                (
                    p.key,
                    p.title,
                    p.description,
                    p.category,
                    p.legal_basis,
                    p.mechanism,
                    p.double_opt_in,
                    p.jurisdictions,
                    p.updated_at,
                )
                for p in session.scalars(select(Purpose).order_by(Purpose.key))
            ],
            "notices": [
                (n.id, n.purpose_key, n.locale, n.version, n.text, n.sha256, n.created_at)
                for n in session.scalars(select(NoticeVersion).order_by(NoticeVersion.id))
            ],
            "topics": [
                (t.key, t.purpose_key, t.title, t.description, t.updated_at)
                for t in session.scalars(select(Topic).order_by(Topic.key))
            ],
        }


def notice_versions(database: Database, purpose: str, locale: str) -> list[tuple[int, str, str]]:
    with database.read() as session:
        rows = session.execute(
            select(NoticeVersion.version, NoticeVersion.text, NoticeVersion.sha256)
            .where(NoticeVersion.purpose_key == purpose, NoticeVersion.locale == locale)
            .order_by(NoticeVersion.version)
        )
        return [(r.version, r.text, r.sha256) for r in rows]


def write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"the demo file no longer contains {old!r}"
        return text.replace(old, new, 1)

    return edit


def append(extra: str) -> Callable[[str], str]:
    return lambda text: text + extra


def whole(content: str) -> Callable[[str], str]:
    return lambda _text: content


# --- versions ---------------------------------------------------------------------------


def test_loading_the_demo_again_changes_nothing(database: Database) -> None:
    before = snapshot(database)
    assert load_site(database, DEFAULT_SITE_FILE).changes == []
    assert load_site(database, DEFAULT_SITE_FILE).changes == []
    assert snapshot(database) == before


def test_demo_is_loaded_as_first_versions(database: Database) -> None:
    assert notice_versions(database, "newsletter", "en") == [
        (1, NEWSLETTER_EN, sha256(NEWSLETTER_EN))
    ]


def test_changed_notice_becomes_a_new_version(database: Database, tmp_path: Path) -> None:
    new_text = "Yes, send me the Northwind newsletter every week."
    path = write(tmp_path, DEMO.replace(NEWSLETTER_EN, new_text))
    changes = load_site(database, path).changes
    assert len(changes) == 1
    assert changes[0].startswith("notice newsletter/en: version 2")
    assert notice_versions(database, "newsletter", "en") == [
        (1, NEWSLETTER_EN, sha256(NEWSLETTER_EN)),
        (2, new_text, sha256(new_text)),
    ]
    # The other locale and every other purpose keep their single version.
    assert [v for v, _, _ in notice_versions(database, "newsletter", "de")] == [1]
    assert [v for v, _, _ in notice_versions(database, "profiling", "en")] == [1]
    # Loading the same file again changes nothing.
    assert load_site(database, path).changes == []


def test_reverting_a_notice_is_a_further_version(database: Database, tmp_path: Path) -> None:
    new_text = "Yes, send me the Northwind newsletter every week."
    load_site(database, write(tmp_path, DEMO.replace(NEWSLETTER_EN, new_text)))
    changes = load_site(database, DEFAULT_SITE_FILE).changes
    assert [c.split(" (")[0] for c in changes] == ["notice newsletter/en: version 3"]
    versions = notice_versions(database, "newsletter", "en")
    assert [v for v, _, _ in versions] == [1, 2, 3]
    assert versions[0] == (1, NEWSLETTER_EN, sha256(NEWSLETTER_EN))
    assert versions[2] == (3, NEWSLETTER_EN, sha256(NEWSLETTER_EN))


def test_new_purpose_and_topic_are_created(database: Database, tmp_path: Path) -> None:
    extra = NEW_PURPOSE + '\n[topics.meetups]\npurpose = "events"\ntitle = "Meetups"\n'
    changes = load_site(database, write(tmp_path, DEMO + extra)).changes
    assert "purpose events: created" in changes
    assert "topic meetups: created" in changes
    with database.read() as session:
        purpose = session.get_one(Purpose, "events")
        # Communication purposes are opt-in with double opt-in unless the file says so.
        assert purpose.mechanism == "opt-in"
        assert purpose.double_opt_in is True
    text = "Yes, invite me to Northwind events by email."
    assert notice_versions(database, "events", "en") == [(1, text, sha256(text))]


def test_purpose_missing_from_the_file_is_kept(database: Database, tmp_path: Path) -> None:
    """Purposes are never deleted: ledger entries point at them."""
    content = (
        '[purposes.profiling]\ntitle = "Personalised follow-up"\ncategory = "profiling"\n'
        '[purposes.profiling.notice]\nen = "Yes."\n'
    )
    load_site(database, write(tmp_path, content))
    with database.read() as session:
        keys = set(session.scalars(select(Purpose.key)))
    assert {"newsletter", "product_updates", "profiling", "sale_sharing"} <= keys


def test_changed_purpose_title_is_updated_without_a_notice_version(
    database: Database, tmp_path: Path
) -> None:
    path = write(tmp_path, DEMO.replace(NEWSLETTER_TITLE, 'title = "Monthly newsletter"'))
    assert load_site(database, path).changes == ["purpose newsletter: updated"]
    with database.read() as session:
        assert session.get_one(Purpose, "newsletter").title == "Monthly newsletter"
    assert [v for v, _, _ in notice_versions(database, "newsletter", "en")] == [1]


def test_titles_in_each_site_language_are_stored_beside_the_first(
    database: Database, tmp_path: Path
) -> None:
    """A title table names every language of site.locales: the first language's text is
    the stored title (the console's), the others are kept beside it for visitors."""
    load_site(database, write(tmp_path, DEMO))
    with database.read() as session:
        updates = session.get_one(Purpose, "product_updates")
        digest = session.get_one(Topic, "monthly_digest")
    assert updates.title == "Product updates"
    assert orjson.loads(updates.translations or "{}")["de"]["title"] == "Produktneuigkeiten"
    assert digest.title == "Monthly digest"
    assert orjson.loads(digest.translations or "{}")["de"] == {
        "title": "Monatsrückblick",
        "description": "Das Beste des Monats in einer E-Mail.",
    }
    # A changed translation alone is a change of the purpose, never a notice version.
    path = write(tmp_path, DEMO.replace('"Produktneuigkeiten"', '"Produkt-Updates"'))
    assert load_site(database, path).changes == ["purpose product_updates: updated"]
    with database.read() as session:
        assert "Produkt-Updates" in (session.get_one(Purpose, "product_updates").translations or "")
    # Plain strings again: one text for every language, nothing kept beside it.
    plain = DEMO.replace(UPDATES_TITLE, 'title = "Product updates"').replace(
        'description = { en = "Emails when a product I use changes in a way that matters to '
        'me.", de = "E-Mails, wenn sich ein Produkt, das ich nutze, auf eine für mich wichtige '
        'Weise ändert." }',
        'description = "Emails when a product I use changes."',
    )
    load_site(database, write(tmp_path, plain))
    with database.read() as session:
        assert session.get_one(Purpose, "product_updates").translations is None


# --- invalid files ----------------------------------------------------------------------

INVALID: list[tuple[str, Callable[[str], str], str]] = [
    (
        "unknown-purpose-key",
        replace(NEWSLETTER_TITLE, NEWSLETTER_TITLE + '\ncolour = "blue"'),
        "purposes.newsletter.colour",
    ),
    ("missing-title", replace(UPDATES_TITLE + "\n", ""), "purposes.product_updates.title"),
    (
        "empty-title",
        replace(UPDATES_TITLE, 'title = "  "'),
        "purposes.product_updates.title",
    ),
    (
        "title-table-missing-a-site-language",
        replace(UPDATES_TITLE, 'title = { en = "Product updates" }'),
        "purposes.product_updates.title",
    ),
    (
        "title-table-language-not-in-site-locales",
        replace(UPDATES_TITLE, UPDATES_TITLE.replace(" }", ', fr = "Nouveautés" }')),
        "purposes.product_updates.title.fr",
    ),
    (
        "title-table-empty-text",
        replace(UPDATES_TITLE, UPDATES_TITLE.replace('"Produktneuigkeiten"', '"  "')),
        "purposes.product_updates.title",
    ),
    (
        "topic-description-table-missing-a-site-language",
        replace(
            'description = { en = "The best of the month in one email.", de = "Das Beste des '
            'Monats in einer E-Mail." }',
            'description = { en = "The best of the month in one email." }',
        ),
        "topics.monthly_digest.description",
    ),
    (
        "bad-category",
        replace('category = "profiling"', 'category = "spying"'),
        "purposes.profiling.category",
    ),
    (
        "bad-mechanism",
        replace('mechanism = "opt-out"', 'mechanism = "maybe"'),
        "purposes.sale_sharing.mechanism",
    ),
    (
        "bad-legal-basis",
        replace('legal_basis = "consent"', 'legal_basis = "because"'),
        "purposes.newsletter.legal_basis",
    ),
    (
        "double-opt-in-not-bool",
        replace("double_opt_in = false", 'double_opt_in = "no"'),
        "purposes.profiling.double_opt_in",
    ),
    (
        "opt-out-without-jurisdictions",
        replace('jurisdictions = ["US-CA"]\n', ""),
        "purposes.sale_sharing.jurisdictions",
    ),
    (
        "bad-jurisdiction",
        replace('jurisdictions = ["US-CA"]', 'jurisdictions = ["california"]'),
        "purposes.sale_sharing.jurisdictions",
    ),
    (
        "bad-locale",
        replace('de = "Ja, schickt', 'DE_x = "Ja, schickt'),
        "purposes.newsletter.notice.DE_x",
    ),
    (
        "locale-not-in-site-locales",
        replace('de = "Ja, schickt', 'fr = "Ja, schickt'),
        "purposes.newsletter.notice.fr",
    ),
    ("empty-notice", replace(NEWSLETTER_EN, "   "), "purposes.newsletter.notice.en"),
    ("notice-too-long", replace(NEWSLETTER_EN, "x" * 5001), "purposes.newsletter.notice.en"),
    (
        "missing-notice",
        replace(
            '[purposes.sale_sharing.notice]\nen = "Northwind may share my contact details with '
            "selected partners. I can opt out at any time (Do Not Sell or Share My Personal "
            'Information)."\n',
            "",
        ),
        "purposes.sale_sharing.notice",
    ),
    (
        "bad-purpose-key",
        append(NEW_PURPOSE.replace("[purposes.events", '[purposes."Big Events"')),
        "purposes.Big Events",
    ),
    (
        "topic-unknown-purpose",
        replace('purpose = "product_updates"', 'purpose = "no_such_purpose"'),
        "topics.release_notes.purpose",
    ),
    (
        "topic-unknown-key",
        append('\n[topics.extra]\npurpose = "newsletter"\ntitle = "X"\nsize = 3\n'),
        "topics.extra.size",
    ),
    (
        "topic-missing-title",
        append('\n[topics.extra]\npurpose = "newsletter"\n'),
        "topics.extra.title",
    ),
    ("unknown-site-key", replace("[site]\n", '[site]\ntheme = "dark"\n'), "site.theme"),
    ("bad-site-locales", replace('locales = ["en", "de"]', 'locales = "en"'), "site.locales"),
    ("unknown-section", append('\n[spaceships.enterprise]\ntitle = "NCC-1701"\n'), "spaceships"),
    ("missing-purposes", whole('[site]\nname = "Empty"\n'), "purposes"),
    ("empty-purposes", whole('[site]\nname = "Empty"\n[purposes]\n'), "purposes"),
    ("purposes-not-a-table", whole('purposes = "all of them"\n'), "purposes"),
    ("purpose-not-a-table", whole('[purposes]\nnewsletter = "yes"\n'), "purposes.newsletter"),
    (
        "notice-not-a-table",
        replace("[purposes.product_updates.notice]\nen = ", "notice = "),
        "purposes.product_updates.notice",
    ),
    (
        "site-not-a-table",
        lambda text: (
            'site = "demo"\n'
            + text.replace("[site]\n", "[site_old]\n")
            .replace("[site.mail]", "[site_old.mail]")
            .replace("[site.brand", "[site_old.brand")
        ),
        "site",
    ),
    ("topics-not-a-table", lambda text: "topics = 3\n" + text.split("[topics.")[0], "topics"),
]


@pytest.mark.parametrize(("edit", "key"), [pytest.param(e, k, id=i) for i, e, k in INVALID])
def test_invalid_file_is_rejected_naming_file_and_key(
    database: Database, tmp_path: Path, edit: Callable[[str], str], key: str
) -> None:
    path = write(tmp_path, edit(DEMO), "my-site.toml")
    before = snapshot(database)
    with pytest.raises(SiteConfigError) as caught:
        load_site(database, path)
    wheres = [where for where, _ in caught.value.problems]
    assert f"my-site.toml: {key}" in wheres, caught.value.problems
    assert all(what for _, what in caught.value.problems)
    assert "my-site.toml" in caught.value.message
    assert snapshot(database) == before


@pytest.mark.parametrize(
    ("content", "line"),
    [
        pytest.param('[purposes.a]\ntitle = "unterminated\n', 2, id="unterminated-string"),
        pytest.param("[purposes.a]\ntitle = \n", 2, id="missing-value"),
        pytest.param("[purposes.a]\n\n[site]\n", 3, id="duplicate-table"),
        pytest.param("[purposes.a]\ntitle = 'x'\ntitle = 'y'\n", 3, id="duplicate-key"),
    ],
)
def test_toml_syntax_error_names_file_line_and_column(
    database: Database, tmp_path: Path, content: str, line: int
) -> None:
    path = write(tmp_path, DEMO + "\n" + content)
    demo_lines = DEMO.count("\n") + 1
    before = snapshot(database)
    with pytest.raises(SiteConfigError) as caught:
        load_site(database, path)
    [(where, what)] = caught.value.problems
    filename, at_line, at_column = where.rsplit(":", 2)
    assert filename == str(path)
    assert int(at_line) == demo_lines + line
    assert int(at_column) >= 1
    assert what.startswith("TOML syntax")
    assert snapshot(database) == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(b"\xff\xfe[site]\n", "UTF-8", id="not-utf8"),
        pytest.param(None, "cannot read", id="missing-file"),
    ],
)
def test_unreadable_file_is_rejected(
    database: Database, tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "site.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SiteConfigError) as caught:
        load_site(database, path)
    [(where, what)] = caught.value.problems
    assert where == str(path)
    assert problem in what


def test_every_problem_is_reported_at_once(database: Database, tmp_path: Path) -> None:
    text = DEMO.replace('category = "profiling"', 'category = "spying"').replace(
        UPDATES_TITLE + "\n", ""
    )
    with pytest.raises(SiteConfigError) as caught:
        load_site(database, write(tmp_path, text))
    wheres = {where for where, _ in caught.value.problems}
    assert {
        "site.toml: purposes.profiling.category",
        "site.toml: purposes.product_updates.title",
    } <= wheres


def test_all_or_nothing_valid_and_invalid_purpose(database: Database, tmp_path: Path) -> None:
    invalid = '\n[purposes.broken]\ncategory = "profiling"\n[purposes.broken.notice]\nen = "x"\n'
    changed = DEMO.replace(NEWSLETTER_EN, "A changed newsletter notice.")
    before = snapshot(database)
    with pytest.raises(SiteConfigError) as caught:
        load_site(database, write(tmp_path, changed + NEW_PURPOSE + invalid))
    assert [w for w, _ in caught.value.problems] == ["site.toml: purposes.broken.title"]
    assert snapshot(database) == before
    with database.read() as session:
        assert session.get(Purpose, "events") is None
        assert session.get(Purpose, "broken") is None
    assert len(notice_versions(database, "newsletter", "en")) == 1


# --- dry run ----------------------------------------------------------------------------


def test_check_dry_run_changes_nothing(
    database: Database, tmp_path: Path, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, DEMO.replace(NEWSLETTER_EN, "A changed notice.") + NEW_PURPOSE)
    before = snapshot(database)
    assert load_site(database, path, dry_run=True).changes != []
    assert snapshot(database) == before

    assert cli.main(["site", "load", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "would change: purpose events: created" in out
    assert "would change: notice newsletter/en: version 2" in out
    assert snapshot(database) == before

    assert cli.main(["site", "load", str(path)]) == 0
    out = capsys.readouterr().out
    assert "changed: purpose events: created" in out
    assert snapshot(database) != before
    assert len(notice_versions(database, "newsletter", "en")) == 2


def test_check_of_an_invalid_file_fails_and_changes_nothing(
    database: Database, tmp_path: Path, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, DEMO.replace('category = "profiling"', 'category = "spying"'))
    before = snapshot(database)
    assert cli.main(["site", "load", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "site.toml: purposes.profiling.category" in err
    assert snapshot(database) == before
