"""Consent sync's part of ``/openapi.json``."""

from __future__ import annotations

from typing import Any


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _scoped(scope: str) -> dict[str, Any]:
    return {
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "403": _error(f"the API key lacks the scope `{scope}`"),
        "422": {"$ref": "#/components/responses/InvalidInput"},
    }


_HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_NULLABLE_HASH = {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"}

CHANGES: dict[str, Any] = {
    "/api/changes": {
        "get": {
            "summary": "Every consent change in ledger order (the change feed)",
            "description": (
                "Keep `next_after` and ask again with it: the ledger's `seq` has no gaps "
                "and entries never change, so a consumer that was down catches up exactly. "
                "An erased lead's changes (also those from before its erasure) carry no "
                "address: only `lead_id` and `email_sha256`, the SHA-256 of its normalised "
                "email, so downstream copies can be found and deleted (GDPR Art. 17(2), "
                "19). Every read is noted in the staff log. Scope: `changes`."
            ),
            "security": [{"apiKey": []}],
            "parameters": [
                {
                    "name": "after",
                    "in": "query",
                    "description": "the last `seq` already applied (0: from the start); "
                    "beyond the ledger's head is refused",
                    "schema": {"type": "integer", "minimum": 0, "default": 0},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
            ],
            "responses": {
                "200": {
                    "description": "the changes after `after`, oldest first",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ChangePage"}}
                    },
                },
                **_scoped("changes"),
            },
        }
    }
}

CHANGE_SCHEMAS: dict[str, Any] = {
    "Change": {
        "type": "object",
        "required": ["seq", "type", "lead_id", "purpose", "occurred_at", "erased"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "type": {
                "type": "string",
                "enum": [
                    "granted",
                    "pending",
                    "confirmed",
                    "withdrawn",
                    "refused",
                    "expired",
                    "gpc-opt-out",
                    "topic-change",
                    "erased",
                ],
                "description": "`pending`: a grant awaiting its double opt-in confirmation "
                "(nothing permitted yet); `topic-change`: a grant re-affirmed with a new "
                "topic set while the purpose stayed permitted",
            },
            "lead_id": {"type": "string", "description": "pseudonymous, stable"},
            "purpose": {"type": "string"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "recorded_at": {"type": "string", "format": "date-time"},
            "source": {"type": "string"},
            "method": {"type": "string"},
            "notice_sha256": _NULLABLE_HASH,
            "topics": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "the topic set a grant names, where it names one",
            },
            "email": {
                "type": ["string", "null"],
                "description": "the normalised address; null once the lead is erased",
            },
            "email_sha256": _NULLABLE_HASH,
            "erased": {"type": "boolean"},
        },
    },
    "ChangePage": {
        "type": "object",
        "required": ["changes", "after", "next_after", "head", "has_more"],
        "properties": {
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}},
            "after": {"type": "integer"},
            "next_after": {"type": "integer", "description": "`after` of the next request"},
            "head": {"type": "integer", "description": "the ledger's last seq when read"},
            "has_more": {"type": "boolean"},
        },
    },
}

PATHS: dict[str, Any] = {**CHANGES}

SCHEMAS: dict[str, Any] = {**CHANGE_SCHEMAS}
