"""Every console page renders, with data and empty; roles see what they may and no more."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from tests.console.conftest import csrf_of

PAGES = [
    "/console/",
    "/console/leads",
    "/console/leads?q=ann",
    "/console/ledger",
    "/console/ledger?purpose=newsletter&action=granted&source=form&from=2020-01-01&to=2099-01-01",
    "/console/requests",
    "/console/reports",
    "/console/reports?weeks=20",
    "/console/versions",
    "/console/health",
    "/console/audit",
    "/console/password",
]

# Who may open which page (200) and who is refused (403).
ALLOWED = {
    "admin": set(PAGES),
    "compliance": set(PAGES) - {"/console/audit"},
    "marketer": {
        "/console/",
        "/console/leads",
        "/console/leads?q=ann",
        "/console/reports",
        "/console/reports?weeks=20",
        "/console/versions",
        "/console/password",
    },
}


@pytest.mark.parametrize("with_data", [True, False], ids=["data", "empty"])
@pytest.mark.parametrize("role", ["admin", "compliance", "marketer"])
def test_pages_by_role(
    as_role: Callable[[str], TestClient],
    request: pytest.FixtureRequest,
    role: str,
    with_data: bool,
) -> None:
    if with_data:
        request.getfixturevalue("lead")
    client = as_role(role)
    for path in PAGES:
        answer = client.get(path)
        expected = 200 if path in ALLOWED[role] else 403
        assert answer.status_code == expected, (path, answer.status_code, answer.text[:300])
        assert "unsafe-inline" not in answer.headers["content-security-policy"]
        if expected == 200:
            assert answer.headers["cache-control"] == "no-store"


def test_lead_pages_by_role(as_role: Callable[[str], TestClient], lead: str) -> None:
    for role in ("admin", "compliance", "marketer"):
        client = as_role(role)
        timeline = client.get(f"/console/leads/{lead}")
        assert timeline.status_code == 200
        proof = client.get(f"/console/leads/{lead}/proof/newsletter")
        receipt = client.get(f"/console/leads/{lead}/receipt/newsletter")
        export = client.get("/console/ledger/export?format=csv")
        expected = 403 if role == "marketer" else 200
        assert (proof.status_code, receipt.status_code, export.status_code) == (expected,) * 3


def test_marketer_never_sees_raw_evidence(as_role: Callable[[str], TestClient], lead: str) -> None:
    marketer = as_role("marketer").get(f"/console/leads/{lead}").text
    compliance = as_role("compliance").get(f"/console/leads/{lead}").text
    assert "198.51.100.0" in compliance
    assert "pytest" in compliance
    assert "198.51.100" not in marketer
    assert "kept (not shown to your role)" in marketer


def test_refused_posts_by_role(as_role: Callable[[str], TestClient], lead: str) -> None:
    marketer = as_role("marketer")
    csrf = csrf_of(marketer)
    for path in ("/console/health/verify", "/console/requests", "/console/requests/1/erase"):
        assert marketer.post(path, data={"csrf": csrf}).status_code == 403
