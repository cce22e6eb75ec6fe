"""The ledger's part of ``/openapi.json``."""

from __future__ import annotations

from typing import Any

_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "422": {"$ref": "#/components/responses/InvalidInput"},
}

SCHEMAS: dict[str, Any] = {
    "ConsentAnswer": {
        "type": "object",
        "required": ["purpose", "permitted", "status", "since", "notice_sha256"],
        "properties": {
            "purpose": {"type": "string"},
            "permitted": {"type": "boolean"},
            "status": {
                "type": "string",
                "description": "last effective action: granted, confirmed, pending, withdrawn, "
                "refused, gpc-opt-out, expired, erased; `default` (opt-out purpose, nothing "
                "recorded) or `none` (nothing recorded)",
            },
            "since": {"type": ["string", "null"], "format": "date-time"},
            "notice_sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
            "at": {"type": "string", "format": "date-time"},
        },
    },
    "LedgerEntry": {
        "type": "object",
        "required": ["seq", "hash", "prev_hash", "subject_id", "purpose", "action"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "prev_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "subject_id": {"type": "string"},
            "purpose": {"type": "string"},
            "action": {"type": "string"},
            "confirmation_required": {"type": "boolean"},
            "notice_sha256": {"type": ["string", "null"]},
            "source": {"type": "string"},
            "source_ref": {"type": ["string", "null"]},
            "jurisdiction": {"type": ["string", "null"]},
            "method": {"type": "string"},
            "locale": {"type": ["string", "null"]},
            "occurred_at": {"type": "string", "format": "date-time"},
            "recorded_at": {"type": "string", "format": "date-time"},
            "evidence_sha256": {"type": ["string", "null"]},
            "consent": {"$ref": "#/components/schemas/ConsentAnswer"},
        },
    },
    "ConsentPost": {
        "type": "object",
        "additionalProperties": False,
        "required": ["email", "purpose", "action", "source"],
        "properties": {
            "email": {"type": "string", "format": "email", "maxLength": 320},
            "purpose": {"type": "string", "maxLength": 64},
            "action": {
                "type": "string",
                "enum": ["granted", "withdrawn", "refused", "confirmed", "gpc-opt-out"],
                "description": "gpc-opt-out: a Global Privacy Control signal (`Sec-GPC: 1`) "
                "the site received from this person, for a sale-or-sharing purpose; method "
                "gpc-signal (the default for it), no notice or evidence needed; recorded "
                "once: while the lead's state is a no already, the answer is 200 "
                '`{"recorded": false, "consent": {...}}` and nothing is appended',
            },
            "notice_sha256": {
                "type": "string",
                "pattern": "^[0-9a-f]{64}$",
                "description": "required for granted: SHA-256 hex of the exact notice text shown",
            },
            "occurred_at": {"type": "string", "format": "date-time"},
            "source": {
                "type": "string",
                "maxLength": 200,
                "description": "where it was gathered (one line, no control characters)",
            },
            "method": {
                "type": "string",
                "enum": [
                    "checkbox",
                    "double-opt-in",
                    "electronic",
                    "email-link",
                    "verbal",
                    "written",
                    "gpc-signal",
                ],
                "description": "gpc-signal only with action gpc-opt-out",
            },
            "evidence": {
                "type": "object",
                "description": "required for granted and confirmed; `ip` and `user_agent` are "
                "minimised; the body is kept erasably, the entry holds a salted commitment",
                "maxProperties": 32,
                "additionalProperties": {"type": ["string", "integer", "boolean", "null"]},
            },
            "jurisdiction": {"type": "string", "pattern": "^[A-Z]{2}(-[A-Z0-9]{1,3})?$"},
            "locale": {"type": "string"},
            "name": {
                "type": "string",
                "maxLength": 200,
                "description": "one line, no control characters (a tab may stay)",
            },
        },
    },
    "Notice": {
        "type": "object",
        "required": ["purpose", "locale", "notice_sha256", "text"],
        "properties": {
            "purpose": {"type": "string"},
            "title": {"type": "string"},
            "category": {"type": "string"},
            "mechanism": {"type": "string", "enum": ["opt-in", "opt-out"]},
            "locale": {"type": "string"},
            "version": {"type": "integer"},
            "notice_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "text": {"type": "string"},
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/consent": {
        "get": {
            "summary": "Is contacting this address for this purpose permitted (now, or at `at`)?",
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "email", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "purpose", "in": "query", "required": True, "schema": {"type": "string"}},
                {
                    "name": "at",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "format": "date-time"},
                    "description": "answer as of this moment, from the ledger",
                },
            ],
            "responses": {
                "200": {
                    "description": "the answer",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ConsentAnswer"}
                        }
                    },
                },
                "404": {"$ref": "#/components/responses/NotFound"},
                **_ERRORS,
            },
        },
        "post": {
            "summary": "Record consent gathered elsewhere (with its evidence)",
            "security": [{"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ConsentPost"}}
                },
            },
            "responses": {
                "201": {
                    "description": "the ledger entry written",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/LedgerEntry"}}
                    },
                },
                "200": {
                    "description": "gpc-opt-out only: the lead has said no already; nothing "
                    "appended",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["recorded", "consent"],
                                "properties": {
                                    "recorded": {"const": False},
                                    "consent": {"$ref": "#/components/schemas/ConsentAnswer"},
                                },
                            }
                        }
                    },
                },
                "404": {"$ref": "#/components/responses/NotFound"},
                "413": {"$ref": "#/components/responses/InvalidInput"},
                "415": {"$ref": "#/components/responses/InvalidInput"},
                **_ERRORS,
            },
        },
    },
    "/api/notices": {
        "get": {
            "summary": "Purposes and their current notice versions",
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "locale", "in": "query", "required": False, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {
                    "description": "current notices",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["notices"],
                                "properties": {
                                    "notices": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Notice"},
                                    }
                                },
                            }
                        }
                    },
                },
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "403": {"$ref": "#/components/responses/Forbidden"},
                "422": {"$ref": "#/components/responses/InvalidInput"},
            },
        }
    },
}

_B64_HASH = {"type": "string", "description": "base64 of a 32-byte SHA-256 hash"}
_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _size_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
        "description": description,
    }


SCHEMAS["Proof"] = {
    "type": "object",
    "properties": {
        "index": {"type": "integer"},
        "size": {"type": "integer"},
        "from": {"type": "integer"},
        "to": {"type": "integer"},
        "leaf_hash": _B64_HASH,
        "root": _B64_HASH,
        "old_root": _B64_HASH,
        "new_root": _B64_HASH,
        "proof": {"type": "array", "items": _B64_HASH},
    },
    "required": ["proof"],
}

PATHS.update(
    {
        "/ledger/checkpoint": {
            "get": {
                "summary": "The latest signed checkpoint (C2SP signed note)",
                "responses": {
                    "200": {"description": "the note", "content": _TEXT},
                    "404": {"$ref": "#/components/responses/NotFound"},
                },
            }
        },
        "/ledger/checkpoints": {
            "get": {
                "summary": "Checkpoint history, newest first",
                "parameters": [
                    {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                ],
                "responses": {
                    "200": {
                        "description": "checkpoints",
                        "content": _json(
                            {
                                "type": "object",
                                "required": ["checkpoints", "next_before"],
                                "properties": {
                                    "checkpoints": {"type": "array", "items": {"type": "object"}},
                                    "next_before": {"type": ["integer", "null"]},
                                },
                            }
                        ),
                    },
                    "422": {"$ref": "#/components/responses/InvalidInput"},
                },
            }
        },
        "/ledger/key": {
            "get": {
                "summary": "Public keys (signed-note verifier keys), current first",
                "responses": {"200": {"description": "one key per line", "content": _TEXT}},
            }
        },
        "/ledger/proof/inclusion": {
            "get": {
                "summary": "RFC 6962 audit path of leaf `index` in the tree of `size` entries",
                "parameters": [
                    _size_param("index", "leaf index (entry seq - 1)"),
                    _size_param("size", "tree size"),
                ],
                "responses": {
                    "200": {
                        "description": "the proof",
                        "content": _json({"$ref": "#/components/schemas/Proof"}),
                    },
                    "422": {"$ref": "#/components/responses/InvalidInput"},
                },
            }
        },
        "/ledger/proof/consistency": {
            "get": {
                "summary": "RFC 6962 consistency proof between two tree sizes",
                "parameters": [
                    _size_param("from", "older tree size"),
                    _size_param("to", "newer tree size"),
                ],
                "responses": {
                    "200": {
                        "description": "the proof",
                        "content": _json({"$ref": "#/components/schemas/Proof"}),
                    },
                    "422": {"$ref": "#/components/responses/InvalidInput"},
                },
            }
        },
    }
)
