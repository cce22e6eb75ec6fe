"""Languages: the catalogues, the one rule that chooses a page's language, texts that
stay English for machines, and no language leaking between concurrent renderings."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from jinja2 import DictLoader, Environment

from zeroparty import i18n
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database
from zeroparty.settings import DEFAULT_SITE_FILE
from zeroparty.site import load_site


def test_catalogues_are_found_per_package_and_german_is_spoken() -> None:
    files = i18n.catalogue_files()
    packages = {path.relative_to(i18n.PROJECT_ROOT).parts[0] for path in files["de"]}
    assert {"zeroparty", "capture", "preference_center"} <= packages
    assert {"en", "de"} <= i18n.languages()
    assert i18n.gettext("de", "Your choices") == "Ihre Auswahl"
    assert i18n.gettext("en", "Your choices") == "Your choices"
    # A text no catalogue knows stays as it is.
    assert i18n.gettext("de", "Not a message of ours") == "Not a message of ours"


def test_catalogues_are_compiled_once() -> None:
    assert i18n.translations("de") is i18n.translations("de-AT")
    assert i18n.translations("fr") is i18n.translations("en")  # no catalogue: English


def test_no_compiled_catalogue_is_kept_in_the_source_tree() -> None:
    assert not list(i18n.PROJECT_ROOT.glob("*/locale/**/*.mo"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, []),
        ("", []),
        ("de-DE,de;q=0.9,en;q=0.8", ["de", "de", "en"]),
        ("en;q=0.5, de", ["de", "en"]),
        ("fr;q=0, de;q=0.1", ["de"]),
        ("*", []),
        ("de;q=abc, en", ["en"]),
    ],
)
def test_accept_language_is_read_with_quality_values(
    header: str | None, expected: list[str]
) -> None:
    assert i18n.accepted_languages(header) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "en"),
        ({"default": "de"}, "de"),
        ({"accept_language": "de-CH, en;q=0.5"}, "de"),
        ({"accept_language": "fr, de;q=0.3"}, "de"),
        ({"accept_language": "fr"}, "en"),
        # ?lang= wins over the browser, the lead's recorded locale over the browser.
        ({"requested": "en", "accept_language": "de"}, "en"),
        ({"requested": "de", "recorded": "en"}, "de"),
        ({"recorded": "de", "accept_language": "en"}, "de"),
        # Only offered languages: ?lang=fr (no catalogue, not offered) is ignored.
        ({"requested": "fr", "accept_language": "de"}, "de"),
        ({"requested": "DE"}, "de"),
        ({"requested": "x" * 500}, "en"),
    ],
)
def test_one_rule_chooses_the_language(kwargs: dict[str, str], expected: str) -> None:
    assert i18n.choose_language(("en", "de"), **kwargs) == expected


def test_a_language_the_site_does_not_offer_is_never_chosen() -> None:
    assert i18n.choose_language(("en",), requested="de", accept_language="de") == "en"
    # Offered but without a catalogue: the first offered language that has one.
    assert i18n.choose_language(("fr", "de"), requested="fr") == "de"


def test_texts_stay_english_for_machines_and_are_translated_for_people() -> None:
    text = i18n.N_("Use at most %(count)s characters", count=20)
    assert text == "Use at most 20 characters"
    assert str(text) == "Use at most 20 characters"
    assert i18n.translate("de", text) == "Verwenden Sie höchstens 20 Zeichen"
    assert i18n.translate("de", "Your choices") == "Ihre Auswahl"
    assert i18n.translate("en", text) == "Use at most 20 characters"


def _environment() -> Environment:
    environment = Environment(
        loader=DictLoader({"page.html": "{{ _('Your choices') }}|{{ current_language() }}"}),
        autoescape=True,
    )
    i18n.install(environment)
    return environment


def test_templates_speak_the_activated_language_only_inside_the_block() -> None:
    template = _environment().get_template("page.html")
    assert template.render() == "Your choices|en"
    with i18n.activated("de"):
        assert template.render() == "Ihre Auswahl|de"
    assert template.render() == "Your choices|en"


def test_concurrent_renderings_in_two_languages_do_not_leak() -> None:
    template = _environment().get_template("page.html")

    async def render(language: str) -> list[str]:
        seen = []
        for _ in range(50):
            with i18n.activated(language):
                await asyncio.sleep(0)  # let the other language's task run in between
                seen.append(template.render())
        return seen

    async def both() -> tuple[list[str], list[str]]:
        return await asyncio.gather(render("de"), render("en"))

    results: list[tuple[list[str], list[str]]] = []
    # A thread of its own: its own event loop, whatever the test runner runs.
    worker = threading.Thread(target=lambda: results.append(asyncio.run(both())))
    worker.start()
    worker.join()
    german, english = results[0]
    assert set(german) == {"Ihre Auswahl|de"}
    assert set(english) == {"Your choices|en"}


def test_site_load_refuses_a_language_with_no_catalogue(database: Database, tmp_path: Path) -> None:
    text = DEFAULT_SITE_FILE.read_text().replace(
        'locales = ["en", "de"]', 'locales = ["en", "de", "fr"]'
    )
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(SiteConfigError) as caught:
        load_site(database, path)
    assert "site.locales: 'fr' has no catalogue" in str(caught.value)
