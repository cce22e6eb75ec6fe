"""Evidence attached to a ledger entry: validated, minimised, committed to.

Evidence is personal data (an IP address, a user agent, a page URL with a name in it),
so its body never enters the hashed entry; the entry carries a salted commitment and
the body sits in ``consent_evidence``, where erasure can delete it (GDPR Art. 5(1)(c),
data minimisation: IPv4 addresses keep their /24, IPv6 their /48).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import orjson

from consent_ledger.entries import evidence_commitment
from zeroparty.errors import InvalidInput

MAX_KEYS = 32
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 2000
USER_AGENT_LENGTH = 256

# Spellings under which an address or user agent may arrive; all are minimised.
IP_KEYS = frozenset({"ip", "ip_address", "client_ip", "remote_addr"})
USER_AGENT_KEYS = frozenset({"user_agent", "user-agent", "useragent", "ua"})

EvidenceValue = str | int | bool | None


class EvidenceError(InvalidInput):
    """Evidence that cannot be recorded as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(f"evidence: {message}", fields={"evidence": message})


@lru_cache(maxsize=4096)
def minimise_ip(address: str) -> str:
    """The network an address belongs to, not the address: ``203.0.113.7`` → ``203.0.113.0/24``.

    Memoised: pure, about 8 µs of ``ipaddress`` work, and evidence that arrives already
    minimised (a form's, then the ledger's own check) asks for the same network again.
    """
    try:
        network = ipaddress.ip_network(address.strip(), strict=False)
    except ValueError as exc:
        raise EvidenceError(f"ip: {address[:60]!r} is not an IP address") from exc
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:198.51.100.23 is an IPv4 address
            network = ipaddress.ip_network(f"{mapped}/32")
    # Already-minimised networks pass through unchanged; anything narrower is widened.
    prefix = min(network.prefixlen, 24 if network.version == 4 else 48)
    return str(network.supernet(new_prefix=prefix))


def clean_evidence(raw: Mapping[str, object]) -> dict[str, EvidenceValue]:
    """Validate and minimise an evidence mapping; raise :class:`EvidenceError` if unfit."""
    if len(raw) > MAX_KEYS:
        raise EvidenceError(f"at most {MAX_KEYS} evidence keys")
    cleaned: dict[str, EvidenceValue] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
            raise EvidenceError(f"evidence keys are strings of 1 to {MAX_KEY_LENGTH} characters")
        if value is not None and not isinstance(value, str | int | bool):
            raise EvidenceError(f"{key}: evidence values are strings, numbers or booleans")
        if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
            raise EvidenceError(f"{key}: at most {MAX_VALUE_LENGTH} characters")
        name = key.lower()
        if name in IP_KEYS:
            if not isinstance(value, str):
                raise EvidenceError(f"{key}: an IP address is written as a string")
            value = minimise_ip(value)
        elif name in USER_AGENT_KEYS and isinstance(value, str):
            value = value[:USER_AGENT_LENGTH]
        cleaned[key] = value
    return cleaned


@dataclass(frozen=True, slots=True)
class SealedEvidence:
    body: str
    salt: str
    commitment: str


def seal_evidence(evidence: Mapping[str, EvidenceValue]) -> SealedEvidence:
    body = orjson.dumps(dict(evidence), option=orjson.OPT_SORT_KEYS).decode()
    salt = secrets.token_hex(16)
    return SealedEvidence(body=body, salt=salt, commitment=evidence_commitment(salt, body))
