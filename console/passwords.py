"""Staff passwords, hashed with scrypt (memory-hard, RFC 7914; ``hashlib``, no extra
dependency).

Stored as ``scrypt$N$r$p$salt$hash`` so the cost can be raised later and old hashes keep
verifying. N = 2**15, r = 8: 32 MiB and some tens of milliseconds per check, which makes
guessing offline expensive and costs a person logging in nothing they notice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from zeroparty.errors import InvalidInput

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
KEY_BYTES = 32
MIN_LENGTH = 12
MAX_LENGTH = 1024


class WeakPassword(InvalidInput):
    def __init__(self, reason: str) -> None:
        super().__init__(f"password: {reason}", fields={"password": reason})


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=KEY_BYTES
    )


def check_strength(password: str) -> None:
    """At least 12 characters (NIST SP 800-63B: length over composition rules)."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"use at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"use at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    derived = _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(derived)}"


# Checked against when the account does not exist, so that an unknown address costs
# the same time as a wrong password (no account enumeration by timing).
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored``; with no stored hash, spends the same
    time and answers ``False``."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        scheme, n, r, p, salt, expected = (stored or _DUMMY_HASH).split("$")
        derived = _derive(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return (
        scheme == "scrypt" and stored is not None and hmac.compare_digest(derived, _unb64(expected))
    )
