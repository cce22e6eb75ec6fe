"""Standard Webhooks: secrets, signatures and the POST that carries them.

What every outgoing webhook of the app shares (the CRM hand-off of :mod:`scoring`, the
subscriptions of :mod:`consent_sync`), and what the generic inbound endpoint checks.
Per the Standard Webhooks specification (https://www.standardwebhooks.com/):

- headers ``webhook-id`` (the message id, the same on every retry), ``webhook-timestamp``
  (Unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256>``; the signature
  header may hold several space-separated signatures (key rotation);
- the signed content is ``"{id}.{timestamp}.{body}"`` over the exact body bytes;
- the key is the base64 part of a ``whsec_<base64>`` secret;
- a receiver refuses timestamps too far from its clock (replays) and compares in
  constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
SECRET_BYTES = 32
TIMESTAMP_TOLERANCE_SECONDS = 300


class WebhookSecretError(ValueError):
    pass


def generate_secret() -> str:
    """A new ``whsec_`` secret of :data:`SECRET_BYTES` random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError as exc:
        raise WebhookSecretError("a webhook secret is whsec_ and base64") from exc
    if len(key) < 24:
        raise WebhookSecretError("a webhook secret needs at least 24 random bytes")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for this message."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, webhook_id: str, timestamp: int, body: bytes, user_agent: str
) -> dict[str, str]:
    """Every header of a signed JSON message."""
    return {
        "content-type": "application/json",
        "user-agent": user_agent,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = TIMESTAMP_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What a receiver does: recompute the signature, compare in constant time, and
    refuse timestamps further than ``tolerance`` seconds from ``now`` (replays)."""
    try:
        webhook_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        signatures = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if now is not None and abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, webhook_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str
    headers: dict[str, str]
    body: bytes


Sender = Callable[[Delivery, float], None]


def post(delivery: Delivery, timeout: float) -> None:
    """POST with the standard library; any non-2xx answer or network error raises."""
    request = urllib.request.Request(  # noqa: S310 (the URL is the operator's setting)
        delivery.url, data=delivery.body, headers=delivery.headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
        answer.read(65536)
