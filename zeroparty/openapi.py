"""``GET /openapi.json``: the JSON API's schema, assembled from each package's part."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from zeroparty.db import Database
from zeroparty.http import JSONResponse

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def build_openapi(parts: Iterable[ModuleType], version: str) -> dict[str, Any]:
    """Merge the ``PATHS`` and ``SCHEMAS`` of each part into one OpenAPI 3.1 document."""
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "summary": "Liveness and database reachability",
                "responses": {
                    "200": {
                        "description": "up",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "503": _error("the database cannot be reached"),
                },
            }
        }
    }
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    security_schemes: dict[str, Any] = {"apiKey": {"type": "http", "scheme": "bearer"}}
    for part in parts:
        paths.update(part.PATHS)
        schemas.update(part.SCHEMAS)
        # Endpoints signed by other systems (webhooks they send) name their own scheme.
        security_schemes.update(getattr(part, "SECURITY_SCHEMES", {}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "zeroparty",
            "version": version,
            "description": "Consent-first lead capture: consent ledger and JSON API.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": security_schemes,
            "responses": {
                "Unauthorized": _error("missing or wrong API key"),
                "Forbidden": _error("the API key lacks the scope this route needs"),
                "InvalidInput": _error("the request was refused; nothing was changed"),
                "NotFound": _error("no such thing"),
            },
        },
    }


def openapi_endpoint(
    document: Mapping[str, Any], live: Iterable[Callable[[Session], dict[str, Any]]] = ()
) -> Any:
    """``GET /openapi.json``: ``document``, with the schemas each of ``live`` reads from
    the database (a part's ``live_schemas``: what follows the site file, such as the
    stage names of the lifecycle in force) put in place on every request."""
    readers = list(live)

    def current(database: Database) -> Mapping[str, Any]:
        with database.read() as session:
            found: dict[str, Any] = {}
            for read in readers:
                found.update(read(session))
        components = {**document["components"]}
        components["schemas"] = {**components["schemas"], **found}
        return {**document, "components": components}

    async def endpoint(request: Request) -> JSONResponse:
        if not readers:
            return JSONResponse(document)
        return JSONResponse(await run_in_threadpool(current, request.app.state.database))

    return endpoint
