"""``POST /api/inbound/{provider}`` in ``/openapi.json`` (merged by
:mod:`consent_sync.openapi`)."""

from __future__ import annotations

from typing import Any

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

PATHS: dict[str, Any] = {
    "/api/inbound/{provider}": {
        "post": {
            "summary": "A sending tool's unsubscribes, complaints and hard bounces",
            "description": (
                "Each unsubscribe, spam complaint or hard bounce becomes a withdrawal in the "
                "ledger (source `api`, source_ref `inbound:<provider>`, evidence naming the "
                "provider's event): of the purpose the event names, else of every "
                "communication purpose the lead permits. `generic` takes `InboundEvents`, "
                "signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
                "`webhook-signature`) with the secret `zeroparty inbound set generic` "
                "prints. `mailgun` takes Mailgun's signed webhook (`signature`, "
                "`event-data`); `sendgrid` SendGrid's signed Event Webhook (a JSON array, "
                "`X-Twilio-Email-Event-Webhook-Signature` and `-Timestamp`). Replays change "
                "nothing."
            ),
            "security": [{"webhookSignature": []}],
            "parameters": [
                {
                    "name": "provider",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": ["generic", "mailgun", "sendgrid"]},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/InboundEvents"},
                                {"type": "object", "description": "Mailgun's webhook"},
                                {"type": "array", "description": "SendGrid's events"},
                            ]
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "recorded",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/InboundReport"}
                        }
                    },
                },
                "401": {"description": "the signature does not verify", "content": _ERROR},
                "404": {"description": "no such provider is set up", "content": _ERROR},
                "413": {"description": "body over 1 MB", "content": _ERROR},
                "422": {"$ref": "#/components/responses/InvalidInput"},
            },
        }
    }
}

SECURITY_SCHEMES: dict[str, Any] = {
    "webhookSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-signature",
        "description": "Standard Webhooks signature (generic); Mailgun signs in the body, "
        "SendGrid in X-Twilio-Email-Event-Webhook-Signature",
    }
}

SCHEMAS: dict[str, Any] = {
    "InboundEvents": {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {
                    "type": "object",
                    "required": ["id", "type", "email"],
                    "properties": {
                        "id": {"type": "string", "maxLength": 200},
                        "type": {
                            "type": "string",
                            "enum": ["unsubscribe", "complaint", "hard_bounce"],
                        },
                        "email": {"type": "string", "format": "email"},
                        "purpose": {"type": "string"},
                        "occurred_at": {"type": "string", "format": "date-time"},
                    },
                },
            }
        },
    },
    "InboundReport": {
        "type": "object",
        "required": ["withdrawn", "unchanged", "unknown_leads", "ignored"],
        "properties": {
            "withdrawn": {"type": "integer", "description": "events that withdrew consent"},
            "unchanged": {"type": "integer", "description": "already withdrawn, or stale"},
            "unknown_leads": {"type": "integer"},
            "ignored": {"type": "integer", "description": "addresses that are not valid"},
        },
    },
}
