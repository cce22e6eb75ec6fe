"""``/openapi.json``: a well-formed OpenAPI 3.1 document that covers every ``/api`` route.

``openapi-spec-validator`` is not a dependency, so the structure is checked by hand: the
parts a client generator relies on, and that every ``$ref`` resolves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def document(app_client: TestClient) -> dict[str, Any]:
    response = app_client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def _refs(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    """Every ``$ref`` in ``node`` with the JSON pointer of where it sits."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield where, value
            else:
                yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _refs(value, f"{where}/{index}")


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are expected, got {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def _parameters(path_item: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    """An operation's parameters: its own plus those declared on its path item."""
    own = operation.get("parameters", [])
    named = {(p["name"], p["in"]) for p in own}
    shared = [p for p in path_item.get("parameters", []) if (p["name"], p["in"]) not in named]
    return [*own, *shared]


def _routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    """Every endpoint route with its full path, looking into mounted routers."""
    for route in routes:
        if isinstance(route, Route):
            yield prefix + route.path, route
        elif isinstance(route, Mount):
            yield from _routes(route.routes, prefix + route.path)


def _api_routes(client: TestClient) -> set[tuple[str, str]]:
    return {
        (path, method.lower())
        for path, route in _routes(client.app.routes)  # type: ignore[attr-defined]
        if path.startswith("/api/")
        for method in route.methods or ()
        if method != "HEAD"
    }


def test_top_level_is_openapi_3_1(document: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert isinstance(document["info"]["title"], str)
    assert document["info"]["title"]
    assert isinstance(document["info"]["version"], str)
    assert document["info"]["version"]
    assert isinstance(document["paths"], dict)
    assert document["paths"]
    assert set(document) <= {
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
        "externalDocs",
    }
    for path in document["paths"]:
        assert path.startswith("/"), path


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = list(_refs(document))
    assert refs
    for where, ref in refs:
        assert isinstance(ref, str), where
        _resolve(document, ref)


def test_every_component_is_used(document: dict[str, Any]) -> None:
    used = {ref for _, ref in _refs(document)}
    for kind in ("schemas", "responses"):
        for name in document["components"].get(kind, {}):
            assert f"#/components/{kind}/{name}" in used, f"{kind}/{name} is never referenced"


def test_every_operation_is_well_formed(document: dict[str, Any]) -> None:
    schemes = document["components"].get("securitySchemes", {})
    seen = 0
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        seen += 1
        assert operation.get("summary") or operation.get("description"), where
        responses = operation["responses"]
        assert responses, where
        assert any(code.startswith("2") for code in responses), f"{where}: no 2xx answer"
        for code, response in responses.items():
            assert re.fullmatch(r"[1-5](\d\d|XX)|default", code), f"{where}: {code}"
            if "$ref" in response:
                response = _resolve(document, response["$ref"])
            assert isinstance(response.get("description"), str), f"{where} {code}"
            for media in response.get("content", {}).values():
                assert "schema" in media, f"{where} {code}"
            # Machines get the one error shape (SPEC, wire essentials): always on /api,
            # and wherever an error answer is declared as JSON.
            json_error = response.get("content", {}).get("application/json")
            if code.startswith(("4", "5")) and (path.startswith("/api/") or json_error):
                assert json_error is not None, f"{where} {code}: no JSON error body"
                schema = json_error["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{where} {code}"
        for requirement in operation.get("security", []):
            for scheme in requirement:
                assert scheme in schemes, f"{where}: unknown security scheme {scheme}"
        for parameter in _parameters(document["paths"][path], operation):
            assert parameter["in"] in {"query", "header", "path", "cookie"}, where
            assert "schema" in parameter, where
            if parameter["in"] == "path":
                assert parameter.get("required") is True, where
                assert "{" + parameter["name"] + "}" in path, where
        body = operation.get("requestBody")
        if body is not None:
            if "$ref" in body:
                body = _resolve(document, body["$ref"])
            assert body["content"], where
    assert seen


def test_path_templates_declare_their_parameters(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        parameters = _parameters(document["paths"][path], operation)
        declared = {p["name"] for p in parameters if p["in"] == "path"}
        assert set(re.findall(r"\{(\w+)\}", path)) == declared, f"{method.upper()} {path}"


def test_error_schema_matches_the_wire_shape(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["Error"]
    assert schema["required"] == ["error"]
    inner = schema["properties"]["error"]
    assert set(inner["required"]) == {"code", "message", "fields"}


def test_every_api_route_is_documented(app_client: TestClient, document: dict[str, Any]) -> None:
    routes = _api_routes(app_client)
    assert ("/api/consent", "post") in routes
    documented = {(path, method) for path, method, _ in _operations(document)}
    missing = routes - documented
    assert not missing, f"routes missing from /openapi.json: {sorted(missing)}"


def test_every_documented_api_operation_exists(
    app_client: TestClient, document: dict[str, Any]
) -> None:
    routes = _api_routes(app_client)
    documented = {
        (path, method) for path, method, _ in _operations(document) if path.startswith("/api/")
    }
    phantom = documented - routes
    assert not phantom, f"/openapi.json documents routes the app lacks: {sorted(phantom)}"


def test_every_api_operation_needs_a_key_and_documents_401(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        if not path.startswith("/api/"):
            continue
        where = f"{method.upper()} {path}"
        assert operation.get("security"), f"{where}: no security requirement"
        assert "401" in operation["responses"], f"{where}: 401 not documented"


def test_documented_401_matches_the_app(app_client: TestClient, document: dict[str, Any]) -> None:
    """What the document promises for a missing key is what the app answers."""
    for path, method, operation in _operations(document):
        if not path.startswith("/api/") or "{" in path:
            continue
        response = app_client.request(method.upper(), path)
        assert response.status_code == 401, f"{method.upper()} {path}"
        assert set(response.json()["error"]) == {"code", "message", "fields"}
        assert "401" in operation["responses"]
