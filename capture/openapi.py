"""Capture's part of ``/openapi.json``: JSON submissions for custom front-ends."""

from __future__ import annotations

from typing import Any

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

SCHEMAS: dict[str, Any] = {
    "FormSubmission": {
        "type": "object",
        "required": ["render_token"],
        "additionalProperties": False,
        "properties": {
            "fields": {
                "type": "object",
                "description": "values by declared field (and quiz question) name",
                "additionalProperties": {
                    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
                },
            },
            "consent": {
                "type": "array",
                "items": {"type": "string"},
                "description": "purpose keys of the boxes ticked (unticked: left out)",
            },
            "render_token": {
                "type": "string",
                "description": "`render_token` from `GET /f/{slug}` (Accept: application/json)",
            },
            "page_url": {"type": "string", "description": "the page the form was shown on"},
        },
    },
    "SubmissionResult": {
        "type": "object",
        "description": (
            "The same for every address, whether unknown, known, or known with consent: "
            "only what was sent and a generic next step. A submission under the address "
            "of an existing lead is held until the link mailed to that address is "
            "followed (`/confirm/held/{token}`); nothing of it reaches the lead before."
        ),
        "required": ["submission", "stored", "consent", "gpc_opt_out", "next_step"],
        "properties": {
            "submission": {"type": "string"},
            "stored": {"type": "boolean", "description": "false: a quiz answered without email"},
            "consent": {
                "type": "array",
                "items": {"type": "string"},
                "description": "purposes ticked (less sale/sharing under Sec-GPC: 1)",
            },
            "gpc_opt_out": {
                "type": "array",
                "items": {"type": "string"},
                "description": "sale/sharing purposes the Sec-GPC: 1 signal opts out of",
            },
            "outcome": {"type": ["string", "null"]},
            "next_step": {"type": ["string", "null"]},
            "message": {"type": "string"},
            "redirect": {"type": ["string", "null"]},
            "result": {"type": ["object", "null"]},
        },
    },
}

PATHS: dict[str, Any] = {
    "/f/{slug}": {
        "parameters": [
            {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "get": {
            "summary": "A form or quiz definition with its notices and a render token",
            "description": (
                "JSON with `Accept: application/json`; otherwise the hosted page. A form "
                "offered in several languages answers in the one `lang` names, else the "
                "best of `Accept-Language`, else its own (`locale` in the answer); its "
                "notices and the render token are in that language."
            ),
            "parameters": [
                {
                    "name": "lang",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "a language of the form (`de`); any other is ignored",
                }
            ],
            "responses": {
                "200": {
                    "description": "the published version",
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                "404": {
                    "description": "no such form",
                    "content": {**_ERROR["content"], "text/html": {"schema": {"type": "string"}}},
                },
            },
        },
        "post": {
            "summary": "Submit a form or quiz (also urlencoded or multipart)",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "Sec-GPC",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/FormSubmission"}}
                },
            },
            "responses": {
                "201": {
                    "description": "stored",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/SubmissionResult"}
                        }
                    },
                },
                "200": {
                    "description": "a retry answered as before, or a quiz result not stored",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/SubmissionResult"}
                        }
                    },
                },
                "400": {"description": "render token not valid", **_ERROR},
                "403": {"description": "origin not allowed", **_ERROR},
                "409": {"description": "idempotency key used for another body", **_ERROR},
                "410": {"description": "render token expired", **_ERROR},
                "413": {"description": "body too large", **_ERROR},
                "415": {"description": "wrong content type", **_ERROR},
                "422": {"description": "invalid or unknown fields, too fast, honeypot", **_ERROR},
                "429": {"description": "rate limited", **_ERROR},
            },
        },
    },
}
