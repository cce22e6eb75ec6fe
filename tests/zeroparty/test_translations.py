"""Every text a visitor or lead sees has a German translation: the messages are extracted
from the visitor-facing packages' Python code and templates with Babel's own extractor
(what ``make translations`` runs), and each must have a confirmed, non-empty German
entry whose placeholders match. Text written into a visitor template without going
through the catalogue fails too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from zeroparty import i18n
from zeroparty.settings import PROJECT_ROOT

# The packages a visitor or lead meets, with their templates (as in the Makefile).
VISITOR_PACKAGES: dict[str, str | None] = {
    "zeroparty": "templates/zeroparty",
    "capture": "templates/capture",
    "preference_center": "templates/preference_center",
    "consent_ledger": None,  # the lifecycle's mails (re-permission, expiry reminder)
}
# Pages people outside the site's audience open: the first-run page lists what an
# operator opens next (staff, developers); it is not shown to visitors.
NOT_FOR_VISITORS = {"templates/zeroparty/home.html"}
LANGUAGES = ("de",)
METHODS = [("**.py", "python"), ("**.html", "jinja2")]
KEYWORDS = {**DEFAULT_KEYWORDS, "N_": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def _extracted(package: str) -> Iterator[tuple[str, str]]:
    """(message id, where) for every message marked for translation in the package."""
    templates = VISITOR_PACKAGES[package]
    for folder in (package, *([templates] if templates else [])):
        for filename, line, message, _comments, _context in extract_from_dir(
            PROJECT_ROOT / folder, METHODS, keywords=KEYWORDS
        ):
            msgid = message[0] if isinstance(message, tuple) else message
            if msgid:
                yield msgid, f"{folder}/{filename}:{line}"


def _catalogue(package: str, language: str) -> Catalog:
    path = PROJECT_ROOT / package / "locale" / language / "LC_MESSAGES" / "messages.po"
    assert path.is_file(), f"{path} is missing: run make translations LANGUAGES={language}"
    with path.open("rb") as handle:
        return read_po(handle, locale=language)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("package", sorted(VISITOR_PACKAGES))
def test_every_visitor_message_has_a_translation(package: str, language: str) -> None:
    catalogue = _catalogue(package, language)
    extracted = dict(_extracted(package))
    assert extracted, f"no messages found in {package}"
    problems = []
    for msgid, where in sorted(extracted.items()):
        entry = catalogue.get(msgid)
        if entry is None or not entry.string:
            problems.append(f"{where}: no {language} translation of {msgid!r}")
        elif entry.fuzzy:
            problems.append(f"{where}: the {language} translation of {msgid!r} is fuzzy")
        elif set(PLACEHOLDER.findall(msgid)) != set(PLACEHOLDER.findall(str(entry.string))):
            problems.append(f"{where}: placeholders differ in {language} for {msgid!r}")
        elif i18n.gettext(language, msgid) != entry.string:
            problems.append(f"{where}: {msgid!r} translated differently by another package")
    assert not problems, "run make translations and translate:\n" + "\n".join(problems)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("package", sorted(VISITOR_PACKAGES))
def test_catalogues_hold_no_fuzzy_entries(package: str, language: str) -> None:
    fuzzy = [m.id for m in _catalogue(package, language) if m.id and m.fuzzy]
    assert fuzzy == [], f"{package}: confirm or correct these translations: {fuzzy}"


def _templates() -> list[Path]:
    found = [
        path
        for folder in VISITOR_PACKAGES.values()
        if folder is not None
        for path in sorted((PROJECT_ROOT / folder).glob("*.html"))
    ]
    return [p for p in found if str(p.relative_to(PROJECT_ROOT)) not in NOT_FOR_VISITORS]


COMMENT = re.compile(r"\{#.*?#\}", re.S)
EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
STATEMENT = re.compile(r"\{%.*?%\}", re.S)
SCRIPT = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
TAG = re.compile(r"<[^>]*>", re.S)
TEXT_ATTRIBUTE = re.compile(r'\b(?:aria-label|alt|title|placeholder)="([^"]*)"')
WORD = re.compile(r"[^\W\d_]{2,}")
ATTRIBUTE = re.compile(r'[\w-]+="[^"]*"')  # a tag's attribute cut off by a {% if %}
NAMES = frozenset({"zeroparty"})  # the product's name: the same in every language


def loose_text(source: str) -> list[str]:
    """Text a template writes itself, outside ``{{ ... }}``: what no catalogue holds."""
    text = COMMENT.sub("", source)
    text = EXPRESSION.sub("\x00", text)  # a value: translated (or data) where it is made
    text = SCRIPT.sub(" ", STATEMENT.sub(" ", text))
    found = [f"attribute {v!r}" for v in TEXT_ATTRIBUTE.findall(text) if WORD.search(v)]
    for chunk in TAG.sub("\n", text).splitlines():
        words = set(WORD.findall(ATTRIBUTE.sub(" ", chunk).replace("&nbsp;", " ")))
        if words - NAMES:
            found.append(chunk.strip())
    return found


def test_loose_text_is_found() -> None:
    assert loose_text('<p>Hello {{ _("World") }}</p>') == ["Hello \x00"]
    assert loose_text('<a aria-label="Close" href="{{ x }}">{{ _("Hi") }}</a>') == [
        "attribute 'Close'"
    ]
    assert loose_text('<p class="a">{{ _("Fine") }}</p>{# note #}{% if x %}{% endif %}') == []


@pytest.mark.parametrize(
    "path", _templates(), ids=lambda p: str(p.relative_to(PROJECT_ROOT / "templates"))
)
def test_visitor_templates_write_no_text_outside_the_catalogue(path: Path) -> None:
    loose = loose_text(path.read_text(encoding="utf-8"))
    assert loose == [], f"{path.name}: wrap these in {{{{ _('…') }}}}: {loose}"
