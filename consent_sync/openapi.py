"""Consent sync's part of ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from consent_sync import inbound_openapi


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

AUDIENCES: dict[str, Any] = {
    "/api/audiences/{purpose}": {
        "get": {
            "summary": "Who may receive a purpose (and topic) now, as one snapshot",
            "description": (
                "Pages of the leads permitted for `purpose` (and wanting `topic`), each "
                "with the links a sending tool merges into its mail: the signed "
                "preference-center URL, the one-click unsubscribe URL and the ready "
                "`List-Unsubscribe` / `List-Unsubscribe-Post` header values (RFC 8058). "
                "The first page names the ledger entry the export is as of "
                "(`as_of_seq`); pass `next_cursor` as `cursor` for the next page: every "
                "page answers as of that entry, so later changes never mix in. A cursor "
                "is signed and valid for a day. Erased leads are never exported. Every "
                "page read is noted in the staff log. Scope: `audiences`."
            ),
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "purpose", "in": "path", "required": True, "schema": {"type": "string"}},
                {
                    "name": "topic",
                    "in": "query",
                    "description": "only leads who want this topic of the purpose",
                    "schema": {"type": "string"},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "`next_cursor` of the previous page",
                    "schema": {"type": "string"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "description": "leads walked per page (a page may hold fewer members)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 500},
                },
            ],
            "responses": {
                "200": {
                    "description": "one page of the audience",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/AudiencePage"}
                        }
                    },
                },
                "400": _error("the cursor was changed, or belongs to another purpose or topic"),
                "404": _error("no such purpose"),
                "410": _error("the cursor is more than a day old: start the export again"),
                **_scoped("audiences"),
            },
        }
    }
}

AUDIENCE_SCHEMAS: dict[str, Any] = {
    "AudienceMember": {
        "type": "object",
        "required": [
            "lead_id",
            "email",
            "topics",
            "preference_url",
            "unsubscribe_url",
            "headers",
        ],
        "properties": {
            "lead_id": {"type": "string"},
            "email": {"type": "string"},
            "name": {"type": ["string", "null"]},
            "locale": {"type": ["string", "null"]},
            "topics": {"type": "array", "items": {"type": "string"}},
            "permitted_since": {"type": ["string", "null"], "format": "date-time"},
            "notice_sha256": _NULLABLE_HASH,
            "notice_version": {"type": ["integer", "null"]},
            "preference_url": {"type": "string", "format": "uri"},
            "unsubscribe_url": {"type": "string", "format": "uri"},
            "headers": {
                "type": "object",
                "required": ["List-Unsubscribe", "List-Unsubscribe-Post"],
                "properties": {
                    "List-Unsubscribe": {"type": "string"},
                    "List-Unsubscribe-Post": {
                        "type": "string",
                        "const": "List-Unsubscribe=One-Click",
                    },
                },
            },
        },
    },
    "AudiencePage": {
        "type": "object",
        "required": ["purpose", "topic", "as_of_seq", "as_of", "members", "next_cursor"],
        "properties": {
            "purpose": {"type": "string"},
            "topic": {"type": ["string", "null"]},
            "as_of_seq": {"type": "integer", "description": "the ledger entry it is as of"},
            "as_of": {"type": "string", "format": "date-time"},
            "members": {"type": "array", "items": {"$ref": "#/components/schemas/AudienceMember"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
}

SUPPRESSION: dict[str, Any] = {
    "/api/suppression": {
        "get": {
            "summary": "The SHA-256 of every address that withdrew or was erased",
            "description": (
                "For sending tools that must never (re-)add these addresses: compare the "
                "SHA-256 hex of the normalised address (lower-case, trimmed) with "
                "`email_sha256`. A live lead is listed while its last word on a purpose is "
                "a no (withdrawn, refused, GPC opt-out); an erased one for good. Pages in "
                "lead order: pass `next_after` as `after`. Noted in the staff log. Scope: "
                "`audiences`."
            ),
            "security": [{"apiKey": []}],
            "parameters": [
                {
                    "name": "purpose",
                    "in": "query",
                    "description": "only withdrawals of this purpose (erasures always)",
                    "schema": {"type": "string"},
                },
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
                },
            ],
            "responses": {
                "200": {
                    "description": "one page of the list",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/SuppressionPage"}
                        }
                    },
                },
                "404": _error("no such purpose"),
                **_scoped("audiences"),
            },
        }
    }
}

SUPPRESSION_SCHEMAS: dict[str, Any] = {
    "SuppressionPage": {
        "type": "object",
        "required": ["purpose", "suppressed", "next_after"],
        "properties": {
            "purpose": {"type": ["string", "null"]},
            "suppressed": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["email_sha256", "reason", "purposes", "since"],
                    "properties": {
                        "email_sha256": _HASH,
                        "reason": {"type": "string", "enum": ["withdrawn", "erased"]},
                        "purposes": {"type": "array", "items": {"type": "string"}},
                        "since": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
            "next_after": {"type": ["string", "null"]},
        },
    }
}

PATHS: dict[str, Any] = {**CHANGES, **AUDIENCES, **SUPPRESSION, **inbound_openapi.PATHS}

SCHEMAS: dict[str, Any] = {
    **CHANGE_SCHEMAS,
    **AUDIENCE_SCHEMAS,
    **SUPPRESSION_SCHEMAS,
    **inbound_openapi.SCHEMAS,
}

SECURITY_SCHEMES: dict[str, Any] = inbound_openapi.SECURITY_SCHEMES
