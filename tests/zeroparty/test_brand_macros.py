"""The brand's macros (``templates/zeroparty/_brand.html``) as the shared layout calls
them: one module built when the app starts, given the root path and the page's own
privacy policy explicitly, printing what they printed when imported with context."""

from __future__ import annotations

from starlette.testclient import TestClient

from zeroparty.app import TEMPLATES_DIR, create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

POLICY = 'href="https://northwind.example/privacy"'


def test_the_layout_calls_one_module_built_at_start(settings: Settings, database: Database) -> None:
    """An import in the layout would look the module up, or (``with context``) build it
    again, at every render."""
    app = create_app(settings, database)
    templates = app.state.templates
    module = templates.env.globals["branding"]
    assert module is templates.env.get_template("zeroparty/_brand.html").module
    assert "import" not in (TEMPLATES_DIR / "zeroparty" / "base.html").read_text(encoding="utf-8")
    with TestClient(app) as client:
        for _ in range(2):
            assert client.get("/p/request-link").status_code == 200
    assert templates.env.globals["branding"] is module


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
