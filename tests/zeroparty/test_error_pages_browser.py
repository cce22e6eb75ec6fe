"""Error pages in headless Chromium: each status in English and German, its way forward
clickable, axe-core finds no WCAG A/AA violation; screenshots in ``test-artifacts/``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capture.errors import OriginRefused, RateLimited
from tests.fixtures.browser import LiveServer, axe_violations, screenshot
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.tokens import TokenExpired

ERRORS: dict[int, Exception] = {
    403: OriginRefused("this form may not be used here"),
    410: TokenExpired("this link has expired"),
    429: RateLimited("too many submissions; wait a minute"),
    500: RuntimeError("boom"),
}


def failing(request: Request) -> Response:
    raise ERRORS[int(request.path_params["status"])]


def test_error_pages_in_browser(
    settings: Settings,
    database: Database,
    serve: Callable[..., LiveServer],
    browser: Any,
) -> None:
    app = create_app(settings, database)
    app.router.routes.insert(0, Route("/p/fail/{status:int}", failing, methods=["GET"]))
    server = serve(app)
    headings = {
        "en": {
            404: "Page not found",
            410: "This link no longer works",
            500: "Something went wrong on our side",
        },
        "de": {
            404: "Seite nicht gefunden",
            410: "Dieser Link gilt nicht mehr",
            500: "Bei uns ist etwas schiefgegangen",
        },
    }
    for lang, locale in (("en", "en-GB"), ("de", "de-DE")):
        context = browser.new_context(locale=locale, viewport={"width": 390, "height": 844})
        page = context.new_page()
        for status in (404, 403, 410, 429, 500):
            path = "/nothing-here" if status == 404 else f"/p/fail/{status}"
            answer = page.goto(server.url + path)
            assert answer is not None
            assert answer.status == status
            assert page.locator("html").get_attribute("lang") == lang
            if status in headings[lang]:
                assert page.locator("h1").inner_text() == headings[lang][status]
            assert axe_violations(page) == [], (lang, status)
            # Styled, not the browser's grey: the way forward is a filled button.
            first = page.locator(".actions a").first
            assert first.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(11, 92, 173)"
            screenshot(page, f"error-{status}-{lang}", docs=status == 404)
        # The way forward works: an expired link leads to the page that mails a new one.
        page.goto(server.url + "/p/fail/410")
        page.get_by_role(
            "link", name={"en": "Get a new link", "de": "Neuen Link anfordern"}[lang]
        ).click()
        assert page.url == server.url + "/p/request-link"
        assert page.locator("input[type=email]").count() == 1
        # The shared stylesheet styles the preference center's buttons too.
        button = page.locator("main button[type=submit]").first
        assert button.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(11, 92, 173)"
        assert button.evaluate("e => getComputedStyle(e).color") == "rgb(255, 255, 255)"
        assert axe_violations(page) == []
        context.close()
