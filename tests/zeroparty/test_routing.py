"""FirstSegmentRouter picks the route Starlette's own loop would pick, for every route of
the app and for paths no route matches."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Host, Match, Mount, Route, Router
from starlette.testclient import TestClient

from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.routing import FirstSegmentRouter, first_segment
from zeroparty.settings import Settings

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
SAMPLES = {"str": "abc.DEF-1", "int": "7", "path": "a/b.css", "float": "1.5", "uuid": None}
PARAM = re.compile(r"{(\w+)(?::(\w+))?}")


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def _linear(routes: list[BaseRoute], scope: dict[str, Any]) -> tuple[BaseRoute, Any] | None:
    """What Starlette's loop finds: the first route that matches in full."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child
    return None


def _indexed(router: FirstSegmentRouter, scope: dict[str, Any]) -> tuple[BaseRoute, Any] | None:
    return _linear(router.candidates(scope["path"]), scope)


def _probes(routes: list[BaseRoute]) -> set[str]:
    paths = {"/", "", "/nope", "/p", "/p/", "/u/", "/api", "/api/", "/static", "/static/"}
    paths |= {"//", "//x", "/%7Bx%7D", "/healthz/", "/api/consent/", "/f/bench/extra"}
    for route in routes:
        path = getattr(route, "path", "")
        filled = PARAM.sub(lambda m: SAMPLES.get(m.group(2) or "str") or "x", path)
        paths |= {filled, filled + "/", filled.rstrip("/") or "/", filled + "/more"}
        if isinstance(route, Mount):
            paths |= {path + "/x.css", path + "/a/b"}
    return paths


def test_the_apps_routes_are_found_as_starlette_finds_them(
    settings: Settings, database: Database
) -> None:
    app = create_app(settings, database)
    router = app.router
    assert isinstance(router, FirstSegmentRouter)
    routes = router.routes
    assert len(routes) > 50
    # A path of one package is matched against a few routes, not all of them.
    assert len(router.candidates("/u/abc")) < 5
    assert len(router.candidates("/api/events")) < len(routes) / 3
    for path in sorted(_probes(routes)):
        for method in METHODS:
            scope = _scope(method, path)
            expected = _linear(routes, scope)
            assert _indexed(router, scope) == expected, (method, path, expected)


def _endpoint(name: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(f"{name} {sorted(request.path_params.items())}")

    return endpoint


def _tricky_routes() -> list[BaseRoute]:
    """Routes whose order matters: a parameter first segment before and after literal
    ones, a mount of everything, a host route, methods and slashes."""
    return [
        Route("/a/fixed", _endpoint("a-fixed"), methods=["GET"]),
        Route("/{slug}", _endpoint("slug"), methods=["GET"]),
        Route("/a", _endpoint("a"), methods=["GET", "POST"]),
        Route("/a/{x}", _endpoint("a-x"), methods=["POST"]),
        Route("/b/{rest:path}", _endpoint("b-rest")),
        Route("/", _endpoint("root")),
        Host("api.example.com", app=Router([Route("/h", _endpoint("host"))])),
        Route("/c/", _endpoint("c-slash")),
        Mount("/m", routes=[Route("/{x}", _endpoint("mounted"))]),
        Mount("", routes=[Route("/z/{y}", _endpoint("catch-all"))]),
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (method, path)
        for method in ("GET", "POST", "PUT")
        for path in (
            "/", "/a", "/a/", "/a/fixed", "/a/other", "/b/x/y", "/b", "/c", "/c/",
            "/h", "/m/1", "/m", "/z/1", "/z", "/q", "/q/r", "/nope/deeper",
        )
    ],
)  # fmt: skip
def test_answers_match_starlettes_router(method: str, path: str) -> None:
    plain = Starlette(routes=_tricky_routes())
    indexed = Starlette(routes=_tricky_routes())
    indexed.router = FirstSegmentRouter(_tricky_routes())
    answers = []
    for app in (plain, indexed):
        with TestClient(app, base_url="http://testserver") as client:
            response = client.request(method, path, follow_redirects=False)
            answers.append((response.status_code, response.text, response.headers.get("location")))
    assert answers[1] == answers[0]


def test_routes_added_later_are_found() -> None:
    router = FirstSegmentRouter([Route("/a/{x}", _endpoint("a-x"), methods=["POST"])])
    app = Starlette()
    app.router = router
    with TestClient(app) as client:
        assert client.get("/a/other").status_code == 405  # only POST /a/{x}
        router.routes.insert(0, Route("/a/other", _endpoint("added"), methods=["GET"]))
        assert client.get("/a/other").text == "added []"


def test_first_segment() -> None:
    assert first_segment("/u/{token}") == "u"
    assert first_segment("/") == ""
    assert first_segment("/brand.css") == "brand.css"
    assert first_segment("/{slug}") is None
    assert first_segment("/x{y}/z") is None
