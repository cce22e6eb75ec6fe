"""The brand's macros (``templates/zeroparty/_brand.html``) as the shared layout calls
them (:mod:`zeroparty.brand_parts`): rendered once per brand, language and arguments,
given the root path and the page's own privacy policy explicitly, printing what they
printed when imported with context."""

from __future__ import annotations

import dataclasses

from starlette.testclient import TestClient

from zeroparty import i18n
from zeroparty.app import TEMPLATES_DIR, create_app
from zeroparty.brand import current_brand
from zeroparty.brand_parts import BrandParts
from zeroparty.db import Database
from zeroparty.settings import Settings

POLICY = 'href="https://northwind.example/privacy"'


def test_the_layout_prints_parts_rendered_once(settings: Settings, database: Database) -> None:
    """An import in the layout would look the module up, or (``with context``) build it
    again, at every render; the parts are rendered once per brand and language."""
    app = create_app(settings, database)
    parts = app.state.templates.env.globals["branding"]
    assert isinstance(parts, BrandParts)
    assert "import" not in (TEMPLATES_DIR / "zeroparty" / "base.html").read_text(encoding="utf-8")
    with TestClient(app) as client:
        english = client.get("/p/request-link").text
        kept = dict(parts._kept)
        assert client.get("/p/request-link").text == english
        assert parts._kept == kept  # nothing rendered again
        german = client.get("/p/request-link?lang=de").text
    assert '<a href="https://northwind.example/privacy">Privacy policy</a>' in english
    assert '<a href="https://northwind.example/privacy">Datenschutzerklärung</a>' in german
    assert len(parts._kept) == len(kept) + 1  # the footer, in German


def test_a_new_brand_is_shown_at_once(settings: Settings, database: Database) -> None:
    """Parts are kept by the brand's value: another brand renders its own."""
    app = create_app(settings, database)
    parts = app.state.templates.env.globals["branding"]
    with TestClient(app) as client:
        client.get("/p/request-link")
    brand = current_brand(database)
    assert brand is not None
    renamed = dataclasses.replace(brand, name="Southwind", logo_svg="", logo_url="")
    with i18n.activated("en"):
        header = parts.header(renamed)
        assert "Southwind" in header
        assert "Northwind" not in header
        assert parts.header(brand) != header
        assert parts.header(None) == ""


def test_brand_stylesheet_behind_a_proxy_prefix(settings: Settings, database: Database) -> None:
    app = create_app(settings, database)
    with TestClient(app) as client:
        plain = client.get("/p/request-link").text
    with TestClient(app, root_path="/zp") as client:
        prefixed = client.get("/p/request-link").text
    assert '<link rel="stylesheet" href="/brand.css?v=' in plain
    assert '<link rel="stylesheet" href="/zp/brand.css?v=' in prefixed
    # The macros' header and footer are the same either way.
    assert plain.count('class="brand-header"') == prefixed.count('class="brand-header"') == 1
    assert plain.count('class="brand-footer"') == prefixed.count('class="brand-footer"') == 1


def test_the_footer_names_the_policy_once(settings: Settings, database: Database) -> None:
    """A page names the brand's privacy policy in the brand's footer; an error page,
    which names the site's policy in its own footer, does not get it twice."""
    app = create_app(settings, database)
    with TestClient(app) as client:
        page = client.get("/p/request-link").text
        error = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert error.status_code == 404
    assert page.count(POLICY) == 1
    assert 'class="brand-footer"' in page
    assert error.text.count(POLICY) == 1
    assert 'class="brand-address"' in error.text  # the rest of the brand's footer stays


def test_no_page_imports_the_brand_macros_at_render() -> None:
    """Every page (the shared layout's, capture's) prints the kept parts of the global
    ``branding``; an import of the macros would build or look them up at every render."""
    importing = [
        path.relative_to(TEMPLATES_DIR).as_posix()
        for path in TEMPLATES_DIR.rglob("*.html")
        if 'import "zeroparty/_brand.html"' in path.read_text(encoding="utf-8")
    ]
    assert importing == []
