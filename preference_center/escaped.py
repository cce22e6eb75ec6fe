"""The preference center's page texts, HTML-escaped once per process, not at every render.

Jinja escapes every value a template prints, at every render; most of what the
preference page prints does not change between requests: the page texts of a language
(from the catalogue) and the purposes' and topics' texts (from the site file). They are
escaped here, once, into :class:`~markupsafe.Markup`, which Jinja's escaping leaves as it
is. The page (``templates/preference_center/page.html``) prints its purposes with
autoescape off: every value printed there is one of these, or a lead's end date that
:func:`~preference_center.services.preference_page` escaped. Escaped exactly once either
way.

Only texts the project or the site's operator wrote are kept: a visitor's input (the
lead's address, the CSRF nonce, the language query) is never cached here, and the
templates escape it as usual. The site texts are kept by their own value, so a site load
that changes one is seen by the next request.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from markupsafe import Markup, escape

from preference_center.locale import strings, text_language
from zeroparty import i18n

# A site has a handful of purposes and topics in a few languages: the bound only keeps
# the texts of earlier site loads from piling up in a long-running process.
CACHE_SIZE = 1024


class PageTexts:
    """The page texts (:data:`~preference_center.locale.TEXTS`) of one language, escaped:
    ``t.title`` or ``t[key]`` in a template. Attributes rather than a mapping's keys:
    Jinja looks ``t.title`` up as an attribute first, and on a mapping that look-up
    fails (an exception caught) before the key is tried, for every text printed."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        for key, text in texts.items():
            setattr(self, key, escape(text))

    def __getitem__(self, key: str) -> Markup:
        text: Markup = vars(self)[key]
        return text


def page_texts(locale: str) -> PageTexts:
    """The page texts in ``locale`` (English where it has no catalogue), built once."""
    return _page_texts(text_language(locale))


@functools.cache
def _page_texts(language: str) -> PageTexts:
    return PageTexts(strings(language))


@functools.lru_cache(maxsize=CACHE_SIZE)
def site_html(text: str) -> Markup:
    """A text of the site file as it stands (a key, a notice, its hash, its language
    tag, a change summary), escaped."""
    return escape(text)


@functools.lru_cache(maxsize=CACHE_SIZE)
def site_text_html(default: str, translations: str | None, language: str, field: str) -> Markup:
    """A purpose's or topic's ``title`` or ``description`` (``field``) in ``language``
    (:func:`zeroparty.i18n.site_text`), escaped."""
    return escape(i18n.site_text(default, translations, language, field))
