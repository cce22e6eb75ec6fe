"""The plain-ASCII fast path of ``normalise_email`` answers exactly as email-validator
does: whatever it accepts, email-validator accepts and normalises to the same lower-case
spelling; everything else is left to email-validator (and so refused or normalised as
before)."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consent_ledger.subjects import InvalidEmail, _plain_ascii, normalise_email


def _library(address: str) -> str | None:
    try:
        return validate_email(
            address, check_deliverability=False, allow_smtputf8=False
        ).normalized.lower()
    except EmailNotValidError:
        return None


_LOCAL = "abcXYZ019_!#$%&'*+-/=?^`{|}~." + ' "(),:;<>@[\\]' + "\u212a\u00e9\u0131"
_HOST = "abcxyzABC019-._" + "\u212a\u00e9\u0131" + "@"
_NAMES = ["example", "com", "test", "local", "localhost", "onion", "arpa", "invalid", "xn--"]

local_parts = st.text(alphabet=_LOCAL, min_size=0, max_size=70)
labels = st.one_of(st.text(alphabet=_HOST, min_size=0, max_size=66), st.sampled_from(_NAMES))
domains = st.lists(labels, min_size=1, max_size=5).map(".".join)
addresses = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains),
    st.text(max_size=40),
)


@settings(max_examples=3000, deadline=None)
@given(addresses)
@example("Foo.Bar@Example.COM")
@example("lead0000001@bench.example")
@example("a@b.c1")
@example("a@localhost")
@example("x@foo.test")
@example("x@sub.local")
@example("a@b--c.com")
@example("a@xn--bcher-kva.de")
@example("a..b@x.com")
@example(".a@x.com")
@example("a@x.com.")
@example("a@-x.com")
@example("\u212a@x.com")
@example("a@x.\u212aom")
@example("a" * 64 + "@x.com")
@example("a" * 65 + "@x.com")
@example("a@" + "b" * 63 + ".com")
@example("a@" + "b" * 64 + ".com")
@example("a@" + ".".join(["b" * 60] * 4) + ".com")
@example("a@1.2.3.4")
@example("a@[192.0.2.1]")
@example('"a b"@x.com')
def test_the_fast_path_accepts_only_what_email_validator_accepts_alike(address: str) -> None:
    fast = _plain_ascii(address)
    if fast is not None:
        assert _library(address) == fast


@pytest.mark.parametrize(
    "address",
    ["Ann.Lee@Example.COM", "o'brien+news@mail.example.org", "x@a-b.co.uk", "a@b--c.com"],
)
def test_normalise_email_is_unchanged(address: str) -> None:
    assert normalise_email(address) == _library(address)


@pytest.mark.parametrize("address", ["a@localhost", "a..b@x.com", "a@b.c1", "\u212a@x.com"])
def test_refusals_still_come_from_email_validator(address: str) -> None:
    with pytest.raises(InvalidEmail):
        normalise_email(address)
