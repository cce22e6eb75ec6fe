"""The brand's parts of a page, rendered once: the stylesheet link, the header and the
footer that ``templates/zeroparty/base.html`` prints around every page built on it.

They are the macros of ``templates/zeroparty/_brand.html``, and what they print depends
only on their arguments (the brand, a frozen :class:`~zeroparty.brand.Brand`, the
request's root path, the page's own privacy policy) and on the language the page is
rendered in (the footer's "Privacy policy"). So each is rendered once per brand,
language and arguments and kept: Jinja's macro calls were about a fifth of a short
page's render. A changed brand (a ``site load``) is another key, so the next page shows
it; the kept parts are bounded, so earlier brands do not pile up.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from zeroparty import i18n
from zeroparty.brand import Brand

# A site has one brand, a few languages, one root path: the bound only drops the parts
# of earlier brands (and of odd arguments) in a long-running process.
KEPT = 256


class BrandParts:
    """``branding`` in templates: ``branding.stylesheet(brand, root)``,
    ``branding.header(brand)``, ``branding.footer(brand, lang, policy)``, each the HTML
    its macro renders (``macros``: the template's module, built once)."""

    def __init__(self, macros: Any) -> None:
        self._macros = macros
        self._kept: dict[tuple[object, ...], Markup] = {}

    def stylesheet(self, brand: Brand | None, root: str) -> Markup:
        return self._part("stylesheet", (brand, root))

    def header(self, brand: Brand | None) -> Markup:
        return self._part("header", (brand,))

    def footer(self, brand: Brand | None, lang: str, policy: str | None) -> Markup:
        # "Privacy policy" is printed in the language the page is rendered in.
        return self._part("footer", (brand, lang, policy), i18n.current_language())

    def _part(self, macro: str, arguments: tuple[Any, ...], language: str = "") -> Markup:
        key = (macro, language, *arguments)
        html = self._kept.get(key)
        if html is None:
            # A macro of an autoescaped template returns Markup, escaped as it printed.
            html = getattr(self._macros, macro)(*arguments)
            if len(self._kept) >= KEPT:
                self._kept.clear()
            self._kept[key] = html
        return html
