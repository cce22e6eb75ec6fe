"""Scoring's part of ``/openapi.json``: events, leads by stage, explanations, stage moves."""

from __future__ import annotations

from typing import Any

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


_STAGES = ["Visitor", "Lead", "MQL", "SQL", "Opportunity", "Customer"]
_POINT = {
    "type": "object",
    "required": ["rule", "kind", "points", "source", "occurred_at", "consent_entry"],
    "properties": {
        "rule": {"type": "string"},
        "kind": {"enum": ["fit", "behaviour", "quiz"]},
        "points": {"type": "number"},
        "source": {"type": "string", "description": "event:ID, field:NAME=VALUE or quiz:Q=A"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "consent_entry": {
            "type": "integer",
            "description": "seq of the ledger entry under which the input was collected",
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "EventBatch": {
        "type": "object",
        "required": ["events"],
        "additionalProperties": False,
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {
                    "type": "object",
                    "required": ["id", "email", "type", "occurred_at"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {
                            "type": "string",
                            "pattern": "^[A-Za-z0-9._:-]{1,100}$",
                            "description": "yours; a retried id is not counted twice",
                        },
                        "email": {"type": "string", "format": "email"},
                        "type": {
                            "type": "string",
                            "description": "an event type of the scoring model",
                        },
                        "occurred_at": {"type": "string", "format": "date-time"},
                        "properties": {"type": "object"},
                    },
                },
            }
        },
    },
    "EventResult": {
        "type": "object",
        "required": ["accepted", "duplicates", "dropped"],
        "properties": {
            "accepted": {"type": "integer"},
            "duplicates": {"type": "integer", "description": "ids seen before; ignored"},
            "dropped": {
                "type": "integer",
                "description": "not stored: no live consent when they happened",
            },
        },
    },
    "LeadPage": {
        "type": "object",
        "required": ["leads", "next_cursor"],
        "properties": {
            "leads": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "lead_id": {"type": "string"},
                        "email": {"type": "string"},
                        "stage": {"enum": _STAGES},
                        "score": {"type": "number"},
                        "stage_since": {"type": "string", "format": "date-time"},
                        "scored_at": {"type": "string", "format": "date-time"},
                    },
                },
            },
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "ScoreExplanation": {
        "type": "object",
        "properties": {
            "lead_id": {"type": "string"},
            "permitted": {"type": "boolean"},
            "stage": {"enum": _STAGES},
            "score": {"type": ["number", "null"]},
            "model_version": {"type": ["integer", "null"]},
            "points": {"type": "array", "items": _POINT},
            "stage_changes": {"type": "array", "items": {"type": "object"}},
        },
    },
    "StageMove": {
        "type": "object",
        "required": ["email", "stage"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "format": "email"},
            "stage": {"enum": _STAGES[1:]},
            "reason": {"type": "string", "maxLength": 500},
            "recycle": {
                "type": "boolean",
                "default": False,
                "description": "required (with a reason) for a backward move",
            },
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/events": {
        "post": {
            "summary": "Behaviour events; kept only where consent was live when they happened",
            "security": _SECURITY,
            "requestBody": {"required": True, "content": _json("EventBatch")},
            "responses": {
                "201": {"description": "some events stored", "content": _json("EventResult")},
                "200": {
                    "description": "nothing new stored (duplicates or no consent)",
                    "content": _json("EventResult"),
                },
                "401": {"description": "missing or wrong API key", **_ERROR},
                "404": {"description": "no scoring model loaded", **_ERROR},
                "413": {"description": "body too large", **_ERROR},
                "415": {"description": "not JSON", **_ERROR},
                "422": {
                    "description": "malformed batch, unknown event type or lead; nothing stored",
                    **_ERROR,
                },
            },
        }
    },
    "/api/leads": {
        "get": {
            "summary": "Permissioned leads at a stage, paginated by cursor",
            "security": _SECURITY,
            "parameters": [
                {"name": "stage", "in": "query", "required": True, "schema": {"enum": _STAGES[2:]}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "next_cursor of the previous page",
                },
            ],
            "responses": {
                "200": {"description": "a page", "content": _json("LeadPage")},
                "401": {"description": "missing or wrong API key", **_ERROR},
                "422": {"description": "bad parameters", **_ERROR},
            },
        }
    },
    "/api/leads/score": {
        "get": {
            "summary": "A lead's score with every point explained",
            "security": _SECURITY,
            "parameters": [
                {"name": "email", "in": "query", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "the explanation", "content": _json("ScoreExplanation")},
                "401": {"description": "missing or wrong API key", **_ERROR},
                "404": {"description": "no such lead", **_ERROR},
                "422": {"description": "bad parameters", **_ERROR},
            },
        }
    },
    "/api/leads/stage": {
        "post": {
            "summary": "Move a lead: forward by sales, backward only as a recycle with a reason",
            "security": _SECURITY,
            "requestBody": {"required": True, "content": _json("StageMove")},
            "responses": {
                "200": {
                    "description": "moved and recorded",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "401": {"description": "missing or wrong API key", **_ERROR},
                "404": {"description": "no such lead", **_ERROR},
                "409": {"description": "no live consent, or already at that stage", **_ERROR},
                "422": {"description": "bad input (a backward move without recycle)", **_ERROR},
            },
        }
    },
}
