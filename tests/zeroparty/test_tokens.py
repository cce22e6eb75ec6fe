"""Link tokens signed on the fast path are itsdangerous tokens, byte for byte.

:class:`zeroparty.tokens.TokenService` derives its HMAC key once and never compresses
(bulk exports sign two links per row). Every token must still be exactly what the
library's own signer makes of the library's JSON at the same second, be read by the
library's ``loads``, and equal ``URLSafeTimedSerializer.dumps`` whenever that does not
compress; links already mailed (compressed or not) keep working.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import BadSignature, Serializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import NoneAlgorithm

from zeroparty.tokens import TokenExpired, TokenService, _Minter

KEYS = ("first-key-signs-0123456789abcdef", "retired-key-still-reads-0123456789")
NOW = 1_780_000_000

payloads = st.fixed_dictionaries(
    {"s": st.text(max_size=80), "v": st.integers(min_value=0, max_value=2**40)},
    optional={
        "p": st.lists(st.sampled_from(["newsletter", "profiling", "ü" * 30, ""]), max_size=8),
        "n": st.text(alphabet='0123456789abcdef\n\t\r\b\f\x00\x1f\x7f"\\/\u2028é😀', max_size=64),
        "x": st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.booleans(),
            st.none(),
            st.lists(st.integers()),
        ),
    },
)


def _library(keys: tuple[str, ...], purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(list(reversed(keys)), salt=purpose)


@settings(max_examples=300, deadline=None)
@given(payload=payloads, purpose=st.sampled_from(["preference-center.manage", "capture.confirm"]))
def test_a_token_is_the_librarys_token_at_the_same_second(payload: dict, purpose: str) -> None:
    service = TokenService(KEYS, purpose, 3600)
    assert service._minter is not None  # the fast path is the one in use
    library = _library(KEYS, purpose)
    with mock.patch("time.time", return_value=NOW + 0.75):
        ours = service.issue(payload)
        signer = library.make_signer()
        assert (
            ours == signer.sign(base64_encode(Serializer.dump_payload(library, payload))).decode()
        )
        theirs = library.dumps(payload)
        if not theirs.startswith("."):  # the library did not compress: the very same token
            assert ours == theirs
        assert library.loads(ours) == payload
        assert service.read(ours) == payload


def test_a_link_payload_is_the_librarys_token_exactly() -> None:
    payloads = [
        {"s": "0000a3293b54c4c9300786b3e6d2fb92", "v": 0},
        {"s": "0000a3293b54c4c9300786b3e6d2fb92", "v": 3, "p": ["newsletter", "profiling"]},
        {"s": "9c1f04be7d2a4e6b8f3a51c0d6e7b2a4", "v": 0, "n": "5b0e8d1c7a9f4e2b"},
    ]
    with mock.patch("time.time", return_value=NOW):
        for payload in payloads:
            assert TokenService(KEYS, "p", 60).issue(payload) == _library(KEYS, "p").dumps(payload)


def test_tokens_the_library_compressed_still_read() -> None:
    payload = {"s": "lead", "v": 1, "p": ["newsletter"] * 40}
    mailed = _library(KEYS, "p").dumps(payload)
    assert mailed.startswith(".")  # zlib-compressed, as itsdangerous does
    assert TokenService(KEYS, "p", 60).read(mailed) == payload
    ours = TokenService(KEYS, "p", 60).issue(payload)
    assert not ours.startswith(".")
    assert _library(KEYS, "p").loads(ours) == payload


def test_the_first_key_signs_and_a_retired_key_still_reads() -> None:
    token = TokenService(KEYS, "p", 60).issue({"s": "x", "v": 0})
    assert _library((KEYS[0],), "p").loads(token) == {"s": "x", "v": 0}
    old = TokenService((KEYS[1],), "p", 60).issue({"s": "y", "v": 0})
    assert TokenService(KEYS, "p", 60).read(old) == {"s": "y", "v": 0}


def test_the_timestamp_is_the_signing_second() -> None:
    service = TokenService(KEYS, "p", 60)
    with mock.patch("time.time", return_value=NOW):
        token = service.issue({"s": "x", "v": 0})
    with mock.patch("time.time", return_value=NOW + 61), pytest.raises(TokenExpired):
        service.read(token)


def test_another_key_derivation_is_followed() -> None:
    serializer = URLSafeTimedSerializer(
        "a-key-0123456789abcdef", salt="p", signer_kwargs={"key_derivation": "hmac"}
    )
    minter = _Minter.for_serializer(serializer)
    assert minter is not None
    with mock.patch("time.time", return_value=NOW):
        assert minter.dumps({"s": "x", "v": 3}, NOW) == serializer.dumps({"s": "x", "v": 3})
    assert serializer.loads(minter.dumps({"s": "x", "v": 3}, int(NOW))) == {"s": "x", "v": 3}


@pytest.mark.parametrize("digest", [hashlib.sha1, hashlib.sha256, hashlib.sha512])
@pytest.mark.parametrize("key", ["short", "k" * 200])  # longer than a block: hashed first
def test_the_minter_signs_as_the_library_for_each_digest_key_and_second(
    digest: Any, key: str
) -> None:
    """The HMAC keyed once gives the library's own tokens, with any hash it is given,
    a key longer than the hash's block, and the second's stamp reused or renewed."""
    serializer = URLSafeTimedSerializer(key, salt="p", signer_kwargs={"digest_method": digest})
    minter = _Minter.for_serializer(serializer)
    assert minter is not None
    for at in (NOW, NOW, NOW + 1, NOW):
        payload = {"s": hashlib.sha256(b"lead").hexdigest()[:32], "v": 2, "p": ["newsletter"]}
        with mock.patch("time.time", return_value=at):
            assert minter.dumps(payload, int(at)) == serializer.dumps(payload)


def test_a_signer_it_does_not_know_is_left_to_the_library() -> None:
    serializer = URLSafeTimedSerializer(
        "a-key-0123456789abcdef", salt="p", signer_kwargs={"algorithm": NoneAlgorithm()}
    )
    assert _Minter.for_serializer(serializer) is None


def test_a_probe_that_differs_keeps_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Minter, "dumps", lambda self, payload, timestamp: "not-the-same")
    service = TokenService(KEYS, "p", 60)
    assert service._minter is None
    token = service.issue({"s": "x", "v": 0})
    assert service.read(token) == {"s": "x", "v": 0}


@settings(max_examples=300, deadline=None)
@given(payload=payloads, age=st.integers(min_value=-3, max_value=63))
def test_the_fast_read_returns_what_the_library_returns(payload: dict, age: int) -> None:
    service = TokenService(KEYS, "p", 60)
    with mock.patch("time.time", return_value=NOW + 0.5):
        token = service.issue(payload)
    assert service._minter is not None
    fast = service._minter.read(token, 60, NOW + age)
    with mock.patch("time.time", return_value=NOW + age + 0.5):
        try:
            expected = _library(KEYS, "p").loads(token, max_age=60)
        except BadSignature:
            expected = None
    if 0 <= age <= 60:
        assert fast == expected == payload
    else:
        assert fast is None  # the library decides: expired, or from the future
        with mock.patch("time.time", return_value=NOW + age + 0.5):
            if expected is None:
                with pytest.raises(TokenExpired):
                    service.read(token)
            else:
                assert service.read(token) == expected


def test_a_fresh_token_is_read_without_the_library() -> None:
    service = TokenService(KEYS, "p", 60)
    token = service.issue({"s": "x", "v": 2, "p": ["newsletter"]})
    with mock.patch.object(service._serializer, "loads", side_effect=AssertionError):
        assert service.read(token) == {"s": "x", "v": 2, "p": ["newsletter"]}


def test_the_fast_read_leaves_every_other_token_to_the_library() -> None:
    service = TokenService(KEYS, "p", 60)
    minter = service._minter
    assert minter is not None
    now = int(time.time())
    token = service.issue({"s": "x", "v": 0})
    assert minter.read(token, 60, now) == {"s": "x", "v": 0}
    body, stamp, signature = token.split(".")

    def changed(text: str) -> str:  # the last character another
        return text[:-1] + ("A" if text[-1] != "A" else "B")

    others = {
        "compressed": _library(KEYS, "p").dumps({"s": "lead", "v": 1, "p": ["newsletter"] * 40}),
        "retired key": TokenService((KEYS[1],), "p", 60).issue({"s": "y", "v": 0}),
        "other purpose": TokenService(KEYS, "q", 60).issue({"s": "x", "v": 0}),
        "signature changed": f"{body}.{stamp}.{changed(signature)}",
        "body changed": f"{changed(body)}.{stamp}.{signature}",
        "no timestamp": f"{body}.{signature}",
        "not ascii": token + "é",
        "empty": "",
    }
    for name, other in others.items():
        assert minter.read(other, 60, now) is None, name
    assert minter.read(token, 60, now + 61) is None, "expired"
    assert minter.read(token, 60, now - 1) is None, "from the future"
    # The library still reads what it should.
    assert service.read(others["compressed"])["v"] == 1
    assert service.read(others["retired key"]) == {"s": "y", "v": 0}
