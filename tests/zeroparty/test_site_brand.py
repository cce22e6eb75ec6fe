"""``[site.brand]`` loaded by ``site load``: kept in ``site_info``, applied to the visitor's
pages through ``/brand.css`` (the colours) and the base templates (logo and name in a
header, address and privacy policy in a footer); a bad brand is refused with its key
path and nothing changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from tests.fixtures.browser import LiveServer, axe_violations, screenshot
from zeroparty.app import create_app
from zeroparty.brand import read_brand
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database
from zeroparty.settings import DEFAULT_SITE_FILE, Settings
from zeroparty.site import load_site
from zeroparty.site_info import SiteInfo

DEMO = DEFAULT_SITE_FILE.read_text("utf-8")
DEMO_PRIMARY = 'primary = "#0b5cad"'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my-site.toml"
    path.write_text(text, "utf-8")
    return path


def site_rows(database: Database) -> list[tuple[Any, ...]]:
    with database.read() as session:
        return [tuple(row) for row in session.execute(select(SiteInfo.__table__)).all()]


def test_demo_brand_is_stored_and_loading_again_changes_nothing(database: Database) -> None:
    with database.read() as session:
        brand = read_brand(session)
    assert brand is not None
    assert brand.name == "Northwind Analytics"
    assert brand.primary == "#0b5cad"
    assert brand.logo_svg.startswith("<svg")
    assert load_site(database, DEFAULT_SITE_FILE).changes == []


def test_changed_brand_is_applied_to_pages(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    app = create_app(settings, database)
    with TestClient(app) as client:
        before = client.get("/f/contact").text
        assert "/brand.css?v=" in before
        path = write(tmp_path, DEMO.replace(DEMO_PRIMARY, 'primary = "#7a1fa2"'))
        assert load_site(database, path).changes == ["site.brand: updated"]
        # The same process sees the new brand at once (its copy was forgotten).
        for page_path in ("/f/contact", "/p/request-link", "/nothing-here"):
            page = client.get(page_path).text
            assert 'class="brand-header"' in page, page_path
            assert "Northwind Analytics GmbH, Example Street 1, 10115 Berlin" in page, page_path
            assert "<svg" in page, page_path
            href = page.split('href="/brand.css')[1].split('"')[0]
            css = client.get("/brand.css" + href)
            assert css.headers["content-type"].startswith("text/css")
            assert "--accent: #7a1fa2;" in css.text
            assert "max-age" in css.headers["cache-control"]
        assert client.get("/f/contact").text != before
        assert 'href="https://northwind.example/privacy"' in client.get("/f/contact").text


def test_without_brand_pages_have_no_brand(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    start = DEMO.index("[site.brand]")
    end = DEMO.index("[purposes.")
    load_site(database, write(tmp_path, DEMO[:start] + DEMO[end:]))
    with TestClient(create_app(settings, database)) as client:
        page = client.get("/f/contact").text
        assert "brand.css" not in page
        assert "brand-header" not in page
        assert client.get("/brand.css").text == ""


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        ((DEMO_PRIMARY, 'primary = "blue"'), "site.brand.colours.primary"),
        ((DEMO_PRIMARY, 'primary = "#7fb2e5"'), "site.brand.colours.primary"),
        (('logo = \'<svg', 'logo = \'<svg onload="x()"'), "site.brand.logo"),
        (("[site.brand.footer]", '[site.brand.footer]\ncolour = "x"'), "site.brand.footer.colour"),
        (
            ('privacy_policy = "https://northwind.example/privacy"\n\n',
             'privacy_policy = "http://northwind.example/privacy"\n\n'),
            "site.brand.footer.privacy_policy",
        ),
    ],
)  # fmt: skip
def test_bad_brand_is_refused_with_key_path_and_nothing_changes(
    database: Database, tmp_path: Path, edit: tuple[str, str], key: str
) -> None:
    old, new = edit
    assert old in DEMO
    before = site_rows(database)
    with pytest.raises(SiteConfigError) as caught:
        load_site(database, write(tmp_path, DEMO.replace(old, new, 1)))
    wheres = [where for where, _ in caught.value.problems]
    assert f"my-site.toml: {key}" in wheres, caught.value.problems
    assert site_rows(database) == before


def test_low_contrast_names_the_ratio(database: Database, tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError) as caught:
        load_site(database, write(tmp_path, DEMO.replace(DEMO_PRIMARY, 'primary = "#7fb2e5"')))
    assert "2.23:1" in caught.value.message


def test_branded_form_in_browser(
    settings: Settings,
    database: Database,
    tmp_path: Path,
    serve: Callable[..., LiveServer],
    browser: Any,
) -> None:
    load_site(database, write(tmp_path, DEMO.replace(DEMO_PRIMARY, 'primary = "#7a1fa2"')))
    server = serve(create_app(settings, database))
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    answer = page.goto(server.url + "/f/contact")
    assert answer is not None
    assert answer.status == 200
    button = page.locator("main button[type=submit]").first
    assert button.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(122, 31, 162)"
    assert page.locator(".brand-header").is_visible()
    assert page.locator(".brand-footer").inner_text().startswith("Northwind Analytics GmbH")
    assert axe_violations(page) == []
    screenshot(page, "brand-form")
    page.goto(server.url + "/p/request-link")
    assert page.locator(".brand-header").is_visible()
    assert axe_violations(page) == []
    context.close()
