"""The body of a one-click unsubscribe (``forms.read_one_click``): the exact body mail
providers send is recognised as it is; every other body goes through the form parser
and answers as before, whatever its length, encoding or framing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from preference_center.tokens import LinkPurpose
from tests.preference_center.conftest import counts, issue, ledger_size
from zeroparty.db import Database
from zeroparty.settings import Settings

URLENCODED = "application/x-www-form-urlencoded"


def _chunks(body: bytes) -> Iterator[bytes]:
    """The body sent chunked: no Content-Length."""
    yield body[:5]
    yield body[5:]


@pytest.mark.parametrize(
    ("content_type", "body", "chunked", "status"),
    [
        (URLENCODED, b"List-Unsubscribe=One-Click", False, 200),  # as providers send it
        (URLENCODED + "; charset=UTF-8", b"List-Unsubscribe=One-Click", False, 200),
        ("Application/X-WWW-Form-Urlencoded", b"List-Unsubscribe=One-Click", False, 200),
        (URLENCODED, b"List-Unsubscribe=One-Click", True, 200),
        (URLENCODED, b"List-Unsubscribe=One%2DClick", False, 200),
        (URLENCODED, b"List-Unsubscribe=One-Click&extra=1", False, 200),
        (URLENCODED, b"List-Unsubscribe=One-Clack", False, 422),  # the same length
        (URLENCODED, b"List-Unsubscribe=One-Clack", True, 422),
        (URLENCODED, b"list-unsubscribe=One-Click", False, 422),
        ("multipart/form-data; boundary=x", b"List-Unsubscribe=One-Click", False, 400),
        ("text/plain", b"List-Unsubscribe=One-Click", False, 415),
        (URLENCODED, b"&".join([b"a=1"] * 11) + b"&List-Unsubscribe=One-Click", False, 400),
    ],
)
def test_one_click_bodies(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    content_type: str,
    body: bytes,
    chunked: bool,
    status: int,
) -> None:
    token = issue(settings, database, lead, LinkPurpose.UNSUBSCRIBE, ("newsletter",))
    before, entries = counts(database), ledger_size(database)
    response = app_client.post(
        f"/u/{token}",
        content=_chunks(body) if chunked else body,
        headers={"Content-Type": content_type},
    )
    assert response.status_code == status, response.text
    if status == 200:
        assert ledger_size(database) == entries + 1  # the newsletter withdrawn
    else:
        assert counts(database) == before
