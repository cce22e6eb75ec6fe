"""Error pages for people: each status in English and German, with a way forward and
the site's name and privacy policy; machines keep the JSON shape, unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from capture.errors import OriginRefused, RateLimited
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.errors import InvalidInput
from zeroparty.settings import Settings
from zeroparty.site_info import SiteInfo
from zeroparty.tokens import TokenExpired

HTML = "text/html,application/xhtml+xml"


def _raise(status: int) -> Response:
    if status == 403:
        raise OriginRefused("this form may not be used on https://elsewhere.example")
    if status == 410:
        raise TokenExpired("this link has expired")
    if status == 422:
        raise InvalidInput("the form has errors", fields={"email": "not an email address"})
    if status == 429:
        raise RateLimited("too many submissions from this address; wait a minute")
    raise RuntimeError("boom")


def failing(request: Request) -> Response:
    return _raise(int(request.path_params["status"]))


@pytest.fixture
def client(settings: Settings, database: Database) -> Iterator[TestClient]:
    app = create_app(settings, database)
    app.router.routes.insert(0, Route("/p/fail/{status:int}", failing, methods=["GET", "POST"]))
    app.router.routes.insert(0, Route("/fail/{status:int}", failing, methods=["GET", "POST"]))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


PATHS = {
    404: "/no-such-page",
    403: "/fail/403",
    410: "/fail/410",
    429: "/fail/429",
    500: "/fail/500",
}
TITLES = {
    ("en", 404): "Page not found",
    ("de", 404): "Seite nicht gefunden",
    ("en", 403): "You cannot open this page",
    ("de", 403): "Sie können diese Seite nicht öffnen",
    ("en", 410): "This link no longer works",
    ("de", 410): "Dieser Link gilt nicht mehr",
    ("en", 429): "Too many attempts",
    ("de", 429): "Zu viele Versuche",
    ("en", 500): "Something went wrong on our side",
    ("de", 500): "Bei uns ist etwas schiefgegangen",
}


@pytest.mark.parametrize(("lang", "status"), sorted(TITLES))
def test_each_status_in_the_visitors_language(client: TestClient, lang: str, status: int) -> None:
    accept_language = {"en": "en-GB,en;q=0.9", "de": "de-DE,de;q=0.9,en;q=0.5"}[lang]
    answer = client.get(PATHS[status], headers={"Accept": HTML, "Accept-Language": accept_language})
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert f'<html lang="{lang}">' in page
    assert f"<h1>{TITLES[(lang, status)]}</h1>" in page
    home = {"en": "Go to the start page", "de": "Zur Startseite"}[lang]
    assert f'href="/">{home}</a>' in page
    # The raw machine wording is gone; nothing English leaks into the German page.
    for machine in ("Not Found", "Error code", "not_found", "internal_error", "rate_limited"):
        assert machine not in page
    if status < 500:  # the site is read (never for a 5xx: the database may be why)
        assert "Northwind Analytics (demo)" in page
        policy = {"en": "Privacy policy", "de": "Datenschutzerklärung"}[lang]
        assert f'<a href="https://northwind.example/privacy">{policy}</a>' in page


def test_ways_forward(client: TestClient) -> None:
    expired = client.get("/fail/410", headers={"Accept": HTML}).text
    assert 'class="button" href="/p/request-link">Get a new link</a>' in expired
    assert 'class="button secondary" href="/">Go to the start page</a>' in expired
    # A refused preference link offers a new one; a refused form does not.
    assert 'href="/p/request-link"' in client.get("/p/fail/403", headers={"Accept": HTML}).text
    assert 'href="/p/request-link"' not in client.get("/fail/403", headers={"Accept": HTML}).text
    # Waiting helps: a GET is offered again (with its query); a POST is never resent.
    again = client.get("/fail/429?x=1", headers={"Accept": HTML}).text
    assert 'class="button" href="/fail/429?x=1">Try again</a>' in again
    posted = client.post("/fail/429", headers={"Accept": HTML}).text
    assert "Try again" not in posted
    assert 'class="button" href="/">Go to the start page</a>' in posted
    # Nothing else to do: the start page is the one (primary) way forward.
    missing = client.get("/no-such-page", headers={"Accept": HTML}).text
    assert 'class="button" href="/">Go to the start page</a>' in missing


def test_language_choice(client: TestClient, database: Database) -> None:
    def title(path: str, **headers: str) -> str:
        page = client.get(path, headers={"Accept": HTML, **headers}).text
        return page.split("<h1>")[1].split("</h1>")[0]

    # ?lang= wins over the browser; q-values are honoured; unknown languages fall through.
    assert title("/no-such-page?lang=de", **{"Accept-Language": "en"}) == "Seite nicht gefunden"
    assert title("/no-such-page", **{"Accept-Language": "en;q=0.4, de;q=0.8"}) == (
        "Seite nicht gefunden"
    )
    assert title("/no-such-page", **{"Accept-Language": "fr-FR, de;q=0.1"}) == (
        "Seite nicht gefunden"
    )
    assert title("/no-such-page", **{"Accept-Language": "de;q=0, fr"}) == "Page not found"
    assert title("/no-such-page?lang=xx") == "Page not found"
    # Only the site's languages: an English-only site answers in English, and a site
    # whose default is German answers a browser without a preference in German.
    with database.write() as session:
        row = session.get(SiteInfo, 1)
        assert row is not None
        row.locales = '["en"]'
    assert title("/no-such-page", **{"Accept-Language": "de"}) == "Page not found"
    with database.write() as session:
        row = session.get(SiteInfo, 1)
        assert row is not None
        row.locales, row.default_locale = '["de", "en"]', "de"
    assert title("/no-such-page") == "Seite nicht gefunden"
    assert title("/no-such-page", **{"Accept-Language": "en-US"}) == "Page not found"


def test_refused_input_still_says_what_was_refused(client: TestClient) -> None:
    page = client.post("/fail/422", headers={"Accept": HTML, "Accept-Language": "de"}).text
    assert "<h1>Das hat nicht geklappt</h1>" in page
    assert "the form has errors" in page
    assert "<strong>email</strong>: not an email address" in page


@pytest.mark.parametrize(
    ("path", "status", "code", "message"),
    [
        ("/api/no-such-thing", 404, "not_found", "Not Found"),
        (
            "/fail/403",
            403,
            "origin_refused",
            "this form may not be used on https://elsewhere.example",
        ),
        ("/fail/410", 410, "token_expired", "this link has expired"),
        ("/fail/429", 429, "rate_limited", "too many submissions from this address; wait a minute"),
        (
            "/fail/500",
            500,
            "internal_error",
            "something went wrong on our side; nothing was changed",
        ),
    ],
)
def test_json_clients_keep_the_json_shape(
    client: TestClient, path: str, status: int, code: str, message: str
) -> None:
    answer = client.get(path, headers={"Accept": "application/json", "Accept-Language": "de"})
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": {"code": code, "message": message, "fields": {}}}


def test_the_reason_for_english_readers_and_nothing_changed_after_a_post(
    client: TestClient,
) -> None:
    reason = "this form may not be used on https://elsewhere.example"
    english = client.post("/fail/403", headers={"Accept": HTML, "Accept-Language": "en"}).text
    assert f'<p class="muted">{reason}</p>' in english
    assert "<p>Nothing was changed.</p>" in english
    german = client.post("/fail/403", headers={"Accept": HTML, "Accept-Language": "de"}).text
    assert reason not in german
    assert "<p>Es wurde nichts geändert.</p>" in german
    # A page that was only looked at says nothing about changes.
    assert "Nothing was changed" not in client.get("/fail/403", headers={"Accept": HTML}).text
