"""Scoring's part of ``/openapi.json``: events, leads by stage, explanations, stage moves,
outcomes, and the conversion probability of the published predictive model."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from scoring import services
from scoring.lifecycle import DEFAULT, Lifecycle

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def stage_schemas(lifecycle: Lifecycle) -> dict[str, Any]:
    """The stage enums of ``lifecycle``: ``Stage`` (any, with the anonymous one of the
    default chain), ``LeadStage`` (where a known lead can be) and ``HandoffStage``
    (after the first). ``/openapi.json`` serves those of the lifecycle in force."""
    anonymous = [lifecycle.anonymous] if lifecycle.anonymous else []
    return {
        "Stage": {"enum": [*anonymous, *lifecycle.stages]},
        "LeadStage": {"enum": list(lifecycle.stages)},
        "HandoffStage": {"enum": list(lifecycle.beyond_start)},
    }


def live_schemas(session: Session) -> dict[str, Any]:
    """The schemas that follow site.toml: the stages of the lifecycle in force."""
    return stage_schemas(services.lifecycle_in_force(session))


_POINT = {
    "type": "object",
    "required": ["rule", "kind", "points", "source", "occurred_at", "consent_entry"],
    "properties": {
        "rule": {"type": "string"},
        "kind": {"enum": ["fit", "behaviour", "quiz", "tag", "quiz-score"]},
        "points": {"type": "number"},
        "source": {"type": "string", "description": "event:ID, field:NAME=VALUE or quiz:Q=A"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "consent_entry": {
            "type": "integer",
            "description": "seq of the ledger entry under which the input was collected",
        },
    },
}

_CONVERSION = {
    "oneOf": [{"$ref": "#/components/schemas/Conversion"}, {"type": "null"}],
    "description": "the published predictive model's view; null when no model is published "
    "or the lead has no live consent for the purpose it was trained under",
}

_INTENT: dict[str, Any] = {
    "type": "object",
    "description": "tags and quiz scores of the lead's quiz answers kept under live consent",
    "required": ["tags", "quiz_scores"],
    "properties": {
        "tags": {"type": "array", "items": {"type": "string"}},
        "quiz_scores": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}
_TEMPERATURE = {
    "type": ["string", "null"],
    "description": "the model's temperature band of the score ([scoring.temperature])",
}
_NEXT_ACTION = {
    "type": ["object", "null"],
    "description": "the first matching [[scoring.next_action]] rule (null: none matches)",
    "properties": {"rule": {"type": "string"}, "action": {"type": "string"}},
}
_HELD_TYPE = {
    "type": "object",
    "required": ["type", "at", "by", "reason"],
    "properties": {
        "type": {"type": "string"},
        "at": {"type": "string", "format": "date-time"},
        "by": {"type": "string"},
        "reason": {"type": "string"},
    },
}
SCHEMAS: dict[str, Any] = {
    "Conversion": {
        "type": "object",
        "required": ["probability", "model_version", "top_features"],
        "properties": {
            "probability": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "chance the lead's opportunity is won, from the published model",
            },
            "model_version": {"type": "integer", "description": "the published training's id"},
            "top_features": {
                "type": "array",
                "description": "the features that moved the log-odds most, strongest first",
                "items": {
                    "type": "object",
                    "required": ["feature", "contribution"],
                    "properties": {
                        "feature": {
                            "type": "string",
                            "description": "events:TYPE (a count), field:NAME=VALUE or "
                            "quiz:QUESTION=ANSWER",
                        },
                        "contribution": {
                            "type": "number",
                            "description": "added to the log-odds (negative: lowers it)",
                        },
                    },
                },
            },
        },
    },
    "OutcomeIn": {
        "type": "object",
        "required": ["email", "outcome"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "format": "email"},
            "outcome": {"enum": ["won", "lost"]},
            "decided_at": {
                "type": "string",
                "format": "date-time",
                "description": "when the opportunity was decided (default: now; not in "
                "the future); the model learns only from what happened before it",
            },
        },
    },
    "OutcomeRecorded": {
        "type": "object",
        "required": ["lead_id", "outcome", "decided_at", "recorded_by", "recorded_at", "created"],
        "properties": {
            "lead_id": {"type": "string"},
            "outcome": {"enum": ["won", "lost"]},
            "decided_at": {"type": "string", "format": "date-time"},
            "recorded_by": {"type": "string", "description": "api:KEYNAME"},
            "recorded_at": {"type": "string", "format": "date-time"},
            "created": {
                "type": "boolean",
                "description": "false: this outcome was recorded before; nothing changed",
            },
        },
    },
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
                        "stage": _ref("Stage"),
                        "score": {"type": "number"},
                        "stage_since": {"type": "string", "format": "date-time"},
                        "scored_at": {"type": "string", "format": "date-time"},
                        "conversion": _CONVERSION,
                        "intent": _INTENT,
                        "lead_types": {"type": "array", "items": {"type": "string"}},
                        "temperature": _TEMPERATURE,
                        "next_action": _NEXT_ACTION,
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
            "stage": _ref("Stage"),
            "score": {"type": ["number", "null"]},
            "model_version": {"type": ["integer", "null"]},
            "points": {"type": "array", "items": _POINT},
            "stage_changes": {"type": "array", "items": {"type": "object"}},
            "status": {
                "enum": [
                    "scored",
                    "not_scored",
                    "no_consent",
                    "pending",
                    "consent_ended",
                    "no_model",
                ],
                "description": "not_scored: consent live, no score yet (score is null)",
            },
            "reason": {"type": "string", "description": "why, in one sentence"},
            "intent": _INTENT,
            "lead_types": {"type": "array", "items": _HELD_TYPE},
            "temperature": _TEMPERATURE,
            "next_action": _NEXT_ACTION,
            "outcome": {
                "type": ["object", "null"],
                "properties": {
                    "outcome": {"enum": ["won", "lost"]},
                    "decided_at": {"type": "string", "format": "date-time"},
                    "recorded_by": {"type": "string"},
                },
            },
            "conversion": _CONVERSION,
        },
    },
    "StageMove": {
        "type": "object",
        "required": ["email", "stage"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "format": "email"},
            "stage": _ref("LeadStage"),
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
                "403": {"$ref": "#/components/responses/Forbidden"},
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
                {"name": "stage", "in": "query", "required": True, "schema": _ref("HandoffStage")},
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
    "/api/leads/outcome": {
        "post": {
            "summary": "Record how a lead's opportunity ended (won or lost), for the predictive "
            "score; only with live consent for the gating purpose",
            "security": _SECURITY,
            "requestBody": {"required": True, "content": _json("OutcomeIn")},
            "responses": {
                "201": {"description": "recorded", "content": _json("OutcomeRecorded")},
                "200": {
                    "description": "the same outcome was recorded before; nothing changed",
                    "content": _json("OutcomeRecorded"),
                },
                "401": {"description": "missing or wrong API key", **_ERROR},
                "404": {"description": "no such lead, or no scoring model loaded", **_ERROR},
                "409": {
                    "description": "no live consent (nothing stored), or a different outcome "
                    "is recorded already",
                    **_ERROR,
                },
                "413": {"description": "body too large", **_ERROR},
                "415": {"description": "not JSON", **_ERROR},
                "422": {"description": "bad input; nothing stored", **_ERROR},
            },
        }
    },
    "/api/leads/type": {
        "post": {
            "summary": "Give a lead a declared lead type by hand (e.g. SQL-from-service), "
            "with a reason; only with live consent for the gating purpose",
            "security": _SECURITY,
            "requestBody": {"required": True, "content": _json("LeadTypeIn")},
            "responses": {
                "201": {"description": "given", "content": _json("LeadTypes")},
                "200": {
                    "description": "held already; nothing changed",
                    "content": _json("LeadTypes"),
                },
                "401": {"description": "missing or wrong API key", **_ERROR},
                "404": {"description": "no such lead, or no scoring model loaded", **_ERROR},
                "409": {"description": "no live consent; nothing stored", **_ERROR},
                "413": {"description": "body too large", **_ERROR},
                "415": {"description": "not JSON", **_ERROR},
                "422": {"description": "bad input or unknown type; nothing stored", **_ERROR},
            },
        }
    },
}
SCHEMAS["LeadTypeIn"] = {
    "type": "object",
    "required": ["email", "type", "reason"],
    "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "format": "email"},
        "type": {"type": "string", "description": "a name of [[scoring.lead_type]]"},
        "reason": {"type": "string", "maxLength": 500},
    },
}
SCHEMAS["LeadTypes"] = {
    "type": "object",
    "properties": {
        "lead_id": {"type": "string"},
        "lead_types": {"type": "array", "items": _HELD_TYPE},
    },
}


# --- accounts, qualification, hand-off SLA -------------------------------------------------

_PAGE_PARAMS: list[dict[str, Any]] = [
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
]
_BANT_FIELDS = ("budget", "authority", "need", "timeline")
_BANT_VALUE = {
    "type": ["object", "null"],
    "properties": {
        "value": {"type": "string"},
        "recorded_by": {"type": "string"},
        "recorded_at": {"type": "string", "format": "date-time"},
    },
}
_ACCOUNT_PROPERTIES: dict[str, Any] = {
    "domain": {"type": "string"},
    "members": {"type": "integer", "description": "permissioned, scored leads"},
    "score": {"type": "number", "description": "sum of the members' scores"},
    "top_score": {"type": "number"},
    "stage": {**_ref("LeadStage"), "description": "the furthest stage of a member"},
    "buying_committee": {
        "type": "array",
        "items": {"type": "string"},
        "description": "job titles and BANT authorities seen among the members",
    },
}

SCHEMAS.update(
    {
        "AccountPage": {
            "type": "object",
            "required": ["accounts", "next_cursor"],
            "properties": {
                "accounts": {
                    "type": "array",
                    "items": {"type": "object", "properties": _ACCOUNT_PROPERTIES},
                },
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "Account": {
            "type": "object",
            "properties": {
                **_ACCOUNT_PROPERTIES,
                "leads": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "lead_id": {"type": "string"},
                            "email": {"type": "string"},
                            "stage": _ref("LeadStage"),
                            "score": {"type": "number"},
                            "job_title": {"type": ["string", "null"]},
                        },
                    },
                },
            },
        },
        "QualificationIn": {
            "type": "object",
            "required": ["email"],
            "minProperties": 2,
            "additionalProperties": False,
            "properties": {
                "email": {"type": "string", "format": "email"},
                "budget": {"type": ["number", "null"], "minimum": 0, "maximum": 1e12},
                "authority": {
                    "enum": ["decision_maker", "influencer", "user", "none", None],
                },
                "need": {"type": ["string", "null"], "minLength": 1, "maxLength": 500},
                "timeline": {
                    "enum": ["immediate", "quarter", "half_year", "year", "later", "none", None],
                },
            },
            "description": "null clears a field; every value is kept as history",
        },
        "Qualification": {
            "type": "object",
            "properties": {
                "lead_id": {"type": "string"},
                "qualification": {
                    "type": "object",
                    "properties": dict.fromkeys(_BANT_FIELDS, _BANT_VALUE),
                },
            },
        },
        "Ack": {
            "type": "object",
            "required": ["email"],
            "additionalProperties": False,
            "properties": {"email": {"type": "string", "format": "email"}},
        },
        "AckResult": {
            "type": "object",
            "properties": {
                "lead_id": {"type": "string"},
                "stage": _ref("HandoffStage"),
                "entered_at": {"type": "string", "format": "date-time"},
                "acknowledged_at": {"type": "string", "format": "date-time"},
                "acknowledged_by": {"type": "string"},
                "due_at": {"type": ["string", "null"], "format": "date-time"},
                "within_sla": {"type": ["boolean", "null"]},
            },
        },
        "SlaPage": {
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
                            "stage": _ref("HandoffStage"),
                            "score": {"type": "number"},
                            "entered_at": {"type": "string", "format": "date-time"},
                            "due_at": {"type": "string", "format": "date-time"},
                            "state": {"enum": ["open", "due_soon", "breached"]},
                        },
                    },
                },
                "next_cursor": {"type": ["string", "null"]},
            },
        },
    }
)

PATHS.update(
    {
        "/api/accounts": {
            "get": {
                "summary": "Accounts (company domains) of permissioned leads, by cursor",
                "security": _SECURITY,
                "parameters": [
                    {"name": "stage", "in": "query", "schema": _ref("LeadStage")},
                    *_PAGE_PARAMS,
                ],
                "responses": {
                    "200": {"description": "a page", "content": _json("AccountPage")},
                    "401": {"description": "missing or wrong API key", **_ERROR},
                    "422": {"description": "bad parameters", **_ERROR},
                },
            }
        },
        "/api/accounts/{domain}": {
            "get": {
                "summary": "One account with its permissioned members",
                "security": _SECURITY,
                "parameters": [
                    {"name": "domain", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "the account", "content": _json("Account")},
                    "401": {"description": "missing or wrong API key", **_ERROR},
                    "404": {"description": "no account (or a free-mail domain)", **_ERROR},
                    "422": {"description": "not a domain", **_ERROR},
                },
            }
        },
        "/api/leads/qualification": {
            "post": {
                "summary": "Record BANT (budget, authority, need, timeline) for a lead",
                "security": _SECURITY,
                "requestBody": {"required": True, "content": _json("QualificationIn")},
                "responses": {
                    "201": {"description": "recorded", "content": _json("Qualification")},
                    "401": {"description": "missing or wrong API key", **_ERROR},
                    "404": {"description": "no such lead", **_ERROR},
                    "409": {"description": "no live consent; nothing recorded", **_ERROR},
                    "422": {"description": "bad input; nothing recorded", **_ERROR},
                },
            }
        },
        "/api/leads/ack": {
            "post": {
                "summary": "Acknowledge a lead's hand-off (stops its SLA clock)",
                "security": _SECURITY,
                "requestBody": {"required": True, "content": _json("Ack")},
                "responses": {
                    "201": {"description": "acknowledged", "content": _json("AckResult")},
                    "200": {"description": "acknowledged before", "content": _json("AckResult")},
                    "401": {"description": "missing or wrong API key", **_ERROR},
                    "404": {"description": "no such lead", **_ERROR},
                    "409": {"description": "no live consent, or nothing handed off", **_ERROR},
                    "422": {"description": "bad input", **_ERROR},
                },
            }
        },
        "/api/leads/sla": {
            "get": {
                "summary": "Hand-offs awaiting acknowledgement: due soon or breached",
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {"enum": ["due_soon", "breached"]},
                        "description": "absent: every running clock",
                    },
                    *_PAGE_PARAMS,
                ],
                "responses": {
                    "200": {"description": "a page", "content": _json("SlaPage")},
                    "401": {"description": "missing or wrong API key", **_ERROR},
                    "422": {"description": "bad parameters", **_ERROR},
                },
            }
        },
    }
)

SCHEMAS["ScoreExplanation"]["properties"]["qualification"] = {
    "type": "object",
    "description": "current BANT (null per field not recorded); empty without live consent",
    "properties": dict.fromkeys(_BANT_FIELDS, _BANT_VALUE),
}
SCHEMAS.update(stage_schemas(DEFAULT))
