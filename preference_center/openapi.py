"""The preference center's part of ``/openapi.json``: the machine-facing one-click URL."""

from __future__ import annotations

from typing import Any

PATHS: dict[str, Any] = {
    "/u/{token}": {
        "post": {
            "summary": "RFC 8058 one-click unsubscribe (sent by mail providers)",
            "description": (
                "Withdraws the purposes the signed token names. No cookie or API key: the "
                "token is the credential. Idempotent: a repeated call records nothing new."
            ),
            "parameters": [
                {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": {
                "required": True,
                "content": {
                    media: {"schema": {"$ref": "#/components/schemas/OneClickUnsubscribe"}}
                    for media in ("application/x-www-form-urlencoded", "multipart/form-data")
                },
            },
            "responses": {
                "200": {"description": "unsubscribed (or already unsubscribed)"},
                "400": {"description": "the token is not valid or meant for something else"},
                "410": {"description": "the token has expired or was revoked"},
                "415": {"description": "the body is not a form"},
                "422": {"description": "the body does not say List-Unsubscribe=One-Click"},
            },
        }
    }
}

SCHEMAS: dict[str, Any] = {
    "OneClickUnsubscribe": {
        "type": "object",
        "required": ["List-Unsubscribe"],
        "properties": {"List-Unsubscribe": {"type": "string", "const": "One-Click"}},
    }
}
