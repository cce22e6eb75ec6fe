"""Signed, expiring tokens for links: one :class:`TokenService` per link purpose.

Built on itsdangerous. The purpose is the salt, so a token minted for one purpose
(confirming a grant) never opens another (erasing a lead). ``ZEROPARTY_SECRET_KEYS``
rotation: the first key signs, every key verifies, so links signed with a retired key
keep working until that key is removed from the list. Payloads hold no personal data
(ids and versions, never an email): tokens travel in URLs, logs and mail archives.
"""

from __future__ import annotations

import hmac
import json
import time
from binascii import b2a_base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from itsdangerous import BadData, BadSignature, Serializer, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode
from itsdangerous.signer import HMACAlgorithm
from itsdangerous.timed import TimestampSigner

from zeroparty.errors import ZeropartyError

MAX_TOKEN_LENGTH = 2048


class TokenError(ZeropartyError):
    """A token that cannot be used; the page should offer a fresh link."""

    status_code = 400
    code = "token_invalid"


class TokenExpired(TokenError):
    status_code = 410
    code = "token_expired"


class TokenInvalid(TokenError):
    code = "token_invalid"


class TokenWrongPurpose(TokenError):
    code = "token_wrong_purpose"


class TokenService:
    """Issues and reads tokens for one ``purpose`` that live at most ``max_age`` seconds."""

    def __init__(self, secret_keys: Sequence[str], purpose: str, max_age: int) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is required")
        self.purpose = purpose
        self.max_age = max_age
        # itsdangerous signs with the *last* key of the list; ours signs with the first.
        self._serializer = URLSafeTimedSerializer(list(reversed(secret_keys)), salt=purpose)
        self._minter = _Minter.for_serializer(self._serializer)

    def issue(self, payload: Mapping[str, Any]) -> str:
        if self._minter is not None:
            return self._minter.dumps(payload, int(time.time()))
        return str(self._serializer.dumps(dict(payload)))

    def read(self, token: str, *, others: Iterable[TokenService] = ()) -> dict[str, Any]:
        """The payload of a valid, unexpired token of this purpose.

        Raises :class:`TokenExpired`, :class:`TokenWrongPurpose` (when one of ``others``
        would accept it) or :class:`TokenInvalid`.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid("this link is not valid")
        if self._minter is not None:
            fast = self._minter.read(token, self.max_age, int(time.time()))
            if fast is not None:
                return fast
        try:
            payload = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired as exc:
            raise TokenExpired("this link has expired") from exc
        except BadSignature as exc:
            for other in others:
                if other.purpose != self.purpose and other.accepts(token):
                    raise TokenWrongPurpose("this link is meant for something else") from exc
            raise TokenInvalid("this link is not valid") from exc
        if not isinstance(payload, dict):
            raise TokenInvalid("this link is not valid")
        return payload

    def accepts(self, token: str) -> bool:
        """Whether the signature is this purpose's (expired or not)."""
        try:
            self._serializer.loads(token)
        except BadSignature:
            return False
        return True


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_PROBE = {"s": 'probe-\u00e9\u2028\x1f\\"', "v": 7, "p": ["a" * 40, "a" * 40]}
_PROBE_TIME = 1_700_000_000


def _b64(data: bytes) -> bytes:
    """itsdangerous's ``base64_encode``: URL-safe alphabet, no padding."""
    return b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE)


def _plain(payload: Mapping[str, Any]) -> bool:
    """A dict of str, int and list-of-str values: what link payloads hold."""
    if type(payload) is not dict:
        return False
    for value in payload.values():
        kind = type(value)
        if kind is list:
            for item in value:
                if type(item) is not str:
                    return False
        elif kind is not str and kind is not int:
            return False
    return True


def _compact_json(payload: Mapping[str, Any]) -> bytes:
    """What ``json.dumps(payload, ensure_ascii=False, separators=(",", ":"))`` gives, as
    UTF-8. orjson writes the same bytes for a :func:`_plain` payload; anything else
    (floats, nesting, a huge int) goes through the stdlib."""
    if _plain(payload):
        try:
            return orjson.dumps(payload)
        except orjson.JSONEncodeError:  # an int beyond 64 bits
            pass
    return _COMPACT.encode(dict(payload)).encode()


class _Minter:
    """Signs ``URLSafeTimedSerializer`` tokens with the key derived and the HMAC keyed
    once, instead of on every call: bulk exports sign two links per row.

    The token is the library's format exactly, with one choice the format leaves open:
    the payload is never zlib-compressed. ``dumps`` tries ``zlib.compress`` on every
    payload (two thirds of its cost) and keeps the result only when shorter; a link
    payload is an id, a version and purpose keys, which do not shrink. So a token is
    byte for byte what the library's own signer makes of the library's JSON, base64'd
    as the library does, at the same second, and the library's ``loads`` reads it (and
    still reads the compressed tokens of links already mailed).

    Made only for a serializer whose signer is itsdangerous's HMAC signer, and only when
    a probe token (non-ASCII, escapes) comes out identical to the library's own pieces
    at a fixed timestamp; otherwise the library signs (:meth:`for_serializer` gives
    None).
    """

    __slots__ = ("_inner", "_outer", "_sep", "_stamp")

    def __init__(self, key: bytes, digest_method: Any, sep: bytes) -> None:
        # HMAC (RFC 2104) with its two hash states keyed once: each token copies them,
        # hashes the message into the inner and the inner's digest into the outer
        # (what hmac.HMAC.copy and digest do, without their Python frames).
        inner, outer = digest_method(), digest_method()
        if len(key) > inner.block_size:
            key = digest_method(key).digest()
        key = key.ljust(inner.block_size, b"\x00")
        inner.update(key.translate(_IPAD))
        outer.update(key.translate(_OPAD))
        self._inner, self._outer = inner, outer
        self._sep = sep
        self._stamp: tuple[int, bytes] = (-1, b"")  # the last second, base64'd

    @classmethod
    def for_serializer(cls, serializer: URLSafeTimedSerializer) -> _Minter | None:
        signer = serializer.make_signer()
        algorithm = signer.algorithm
        if type(algorithm) is not HMACAlgorithm:
            return None
        minter = cls(signer.derive_key(), algorithm.digest_method, signer.sep)
        # The library's own token at a fixed time: the signer's documented hook.
        reference = serializer.make_signer()
        if not isinstance(reference, TimestampSigner):
            return None
        reference.get_timestamp = lambda: _PROBE_TIME  # type: ignore[method-assign]
        body = Serializer.dump_payload(serializer, _PROBE)  # the JSON, before any zlib
        expected = reference.sign(base64_encode(body)).decode()
        return minter if minter.dumps(_PROBE, _PROBE_TIME) == expected else None

    def _signature(self, value: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return _b64(outer.digest())

    def read(self, token: str, max_age: int, now: int) -> dict[str, Any] | None:
        """The payload of a token this minter's key signed (its canonical signature),
        not compressed and of an age from 0 to ``max_age`` seconds; ``None`` for any
        other token, which the library then reads (and refuses, with its reason, or
        accepts: a retired key, a compressed payload). What it returns, the library's
        ``loads`` returns too, with a key derived and an HMAC keyed on every call."""
        if not token.isascii():
            return None
        data = token.encode()
        sep = self._sep
        value, found, signature = data.rpartition(sep)
        if not found or not hmac.compare_digest(signature, self._signature(value)):
            return None
        body, found, stamp = value.rpartition(sep)
        if not found or body.startswith(b"."):  # "." marks a zlib-compressed payload
            return None
        try:
            age = now - int.from_bytes(base64_decode(stamp), "big")
            if not 0 <= age <= max_age:
                return None
            # The library's reader (orjson would read an integer beyond 64 bits as a
            # float).
            payload = json.loads(base64_decode(body))
        except (BadData, ValueError):
            return None
        return payload if type(payload) is dict else None

    def dumps(self, payload: Mapping[str, Any], timestamp: int) -> str:
        sep = self._sep
        at, stamp = self._stamp  # one tuple: a thread sees a whole pair or the other
        if at != timestamp:
            stamp = sep + _b64(timestamp.to_bytes(8, "big").lstrip(b"\x00"))
            self._stamp = (timestamp, stamp)
        value = _b64(_compact_json(payload)) + stamp
        return (value + sep + self._signature(value)).decode()
