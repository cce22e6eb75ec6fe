"""Languages: gettext catalogues, the language of a page, and translating texts.

Each package keeps its own catalogue, ``<package>/locale/<lang>/LC_MESSAGES/messages.po``
(English is the source language: it needs none). The catalogues are read and compiled in
memory once per process, on first use; fuzzy entries are left out (a translation that a
translator has not confirmed is not shown). ``make translations`` extracts the messages
from the Python code and the templates (``babel.cfg``) and updates the catalogues.

Pages render inside :func:`activated`: the templates' ``gettext``/``ngettext`` (Jinja's
``i18n`` extension, new-style: ``{{ _("Text %(n)s", n=1) }}``) read the language from a
context variable that holds for that rendering only, so concurrent requests in other
languages never see each other's. Python code passes the language explicitly
(:func:`gettext`), or raises with :func:`N_` texts, which stay English for machines
(JSON errors, logs) and are translated where they are shown to people (:func:`translate`).
"""

from __future__ import annotations

import contextvars
import functools
import io
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

# The checkout or installed tree the packages live in (as zeroparty.settings has it; not
# imported from there, which would make settings -> mail -> i18n a cycle).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCE_LANGUAGE = "en"
DOMAIN = "messages"
# The packages whose folder may hold a catalogue (named, not imported: the shell knows no
# feature package).
CATALOGUE_PACKAGES = (
    "zeroparty",
    "capture",
    "preference_center",
    "consent_ledger",
    "scoring",
    "console",
    "consent_sync",
)

_current: contextvars.ContextVar[str] = contextvars.ContextVar(
    "zeroparty_language", default=SOURCE_LANGUAGE
)


def locale_dirs(root: Path = PROJECT_ROOT) -> list[Path]:
    """Every package's ``locale`` folder that exists."""
    found = [root / name / "locale" for name in CATALOGUE_PACKAGES]
    return [directory for directory in found if directory.is_dir()]


def catalogue_files(root: Path = PROJECT_ROOT) -> dict[str, list[Path]]:
    """Language → its ``messages.po`` files, one per package that has one."""
    found: dict[str, list[Path]] = {}
    for directory in locale_dirs(root):
        for po in sorted(directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
            found.setdefault(po.parent.parent.name, []).append(po)
    return found


def _compile(files: Iterable[Path], language: str) -> NullTranslations:
    """The catalogues of one language merged and compiled in memory (no ``.mo`` file)."""
    merged = Translations()
    for path in files:
        with path.open("rb") as handle:
            catalogue = read_po(handle, locale=language, domain=DOMAIN)
        buffer = io.BytesIO()
        write_mo(buffer, catalogue, use_fuzzy=False)
        buffer.seek(0)
        merged.merge(Translations(buffer, domain=DOMAIN))
    return merged


@functools.cache
def _translations() -> Mapping[str, NullTranslations]:
    compiled: dict[str, NullTranslations] = {SOURCE_LANGUAGE: NullTranslations()}
    for language, files in catalogue_files().items():
        if language != SOURCE_LANGUAGE:
            compiled[language] = _compile(files, language)
    return compiled


@functools.cache
def languages() -> frozenset[str]:
    """The languages pages and mails can be shown in: English and every language with a
    catalogue."""
    return frozenset(_translations())


def translations(language: str) -> NullTranslations:
    table = _translations()
    return table.get(primary(language), table[SOURCE_LANGUAGE])


def gettext(language: str, message: str) -> str:
    return translations(language).gettext(message)


def ngettext(language: str, singular: str, plural: str, count: int) -> str:
    return translations(language).ngettext(singular, plural, count)


class Text(str):
    """A text for people that stays English where machines read it (``str(text)``, JSON
    errors) and is translated where it is shown (:func:`translate`): its message id and
    the values put into it travel with it."""

    msgid: str
    params: Mapping[str, object]

    def __new__(cls, msgid: str, **params: object) -> Text:
        value = super().__new__(cls, msgid % params if params else msgid)
        value.msgid = msgid
        value.params = params
        return value


def N_(msgid: str, **params: object) -> Text:
    """Mark a text for translation (extracted by ``make translations``) without
    translating it yet."""
    return Text(msgid, **params)


def translate(language: str, text: str) -> str:
    """``text`` in ``language``: a :class:`Text` by its message id (its values put in
    after), any other string looked up as it is (left as it is when not in a catalogue)."""
    if isinstance(text, Text):
        translated = gettext(language, text.msgid)
        return translated % text.params if text.params else translated
    return gettext(language, text)


def current_language() -> str:
    return _current.get()


@contextmanager
def activated(language: str) -> Iterator[None]:
    """Templates rendered inside this block speak ``language``."""
    token = _current.set(primary(language))
    try:
        yield
    finally:
        _current.reset(token)


def _template_gettext(message: str) -> str:
    return gettext(_current.get(), message)


def _template_ngettext(singular: str, plural: str, count: int) -> str:
    return ngettext(_current.get(), singular, plural, count)


def install(environment: Any) -> None:
    """Jinja's ``i18n`` extension on ``environment``, speaking the active language. The
    catalogues are read here, when the app is built, so no request pays for it."""
    languages()
    environment.add_extension("jinja2.ext.i18n")
    environment.install_gettext_callables(_template_gettext, _template_ngettext, newstyle=True)
    environment.globals["current_language"] = current_language


# --- Which language ---------------------------------------------------------------------


def primary(tag: str) -> str:
    """The primary language subtag, lower case (``de-AT`` → ``de``)."""
    return tag.strip().replace("_", "-").split("-")[0].lower()


def accepted_languages(header: str | None) -> list[str]:
    """The languages of an ``Accept-Language`` header (RFC 9110 12.5.4), best first
    (quality values, then the order given); ``q=0`` means "not this one"."""
    if not header:
        return []
    choices: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[:20]):
        tag, _, params = item.partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if quality > 0 and tag.strip() and tag.strip() != "*":
            choices.append((-quality, position, primary(tag)))
    return [language for _, _, language in sorted(choices)]


def choose_language(
    offered: Iterable[str],
    *,
    requested: str | None = None,
    recorded: str | None = None,
    accept_language: str | None = None,
    default: str | None = None,
) -> str:
    """The one rule for every visitor's page: the first of ``?lang=`` (``requested``),
    the lead's recorded locale (where a lead is known), the browser's
    ``Accept-Language``, and ``default`` that is ``offered`` (the site's or the form's
    locales) and has a catalogue; else English where offered, else the first offered
    language that has one."""
    speakable = languages()
    usable = [primary(language) for language in offered if primary(language) in speakable]
    wanted = [
        primary(requested[:16]) if requested else "",
        primary(recorded) if recorded else "",
        *accepted_languages(accept_language),
        primary(default) if default else "",
    ]
    fallback = SOURCE_LANGUAGE if SOURCE_LANGUAGE in usable or not usable else usable[0]
    return next((w for w in wanted if w and w in usable), fallback)


# --- Texts of the site file in several languages ------------------------------------------


@functools.lru_cache(maxsize=512)
def _site_texts(translations: str) -> Mapping[str, Mapping[str, str]]:
    loaded = orjson.loads(translations)
    return loaded if isinstance(loaded, dict) else {}


def site_text(default: str, translations: str | None, language: str, field: str = "title") -> str:
    """A text of the site file (a purpose's or topic's ``title`` or ``description``) in
    ``language``: ``translations`` is the JSON the site file stored beside ``default``
    (``{"de": {"title": "…"}}``, ``None`` for a text given once), read once per process;
    a language without its own text gets ``default``, the text in the site's first
    language."""
    if not translations or not language:
        return default
    texts = _site_texts(translations)
    own = texts.get(language) or texts.get(primary(language))
    return own.get(field, default) if own else default
