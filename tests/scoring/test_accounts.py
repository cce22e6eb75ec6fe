"""Accounts: permissioned leads grouped by company domain; free-mail domains never form
an account; only permissioned members count, and a withdrawal takes one out at once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from scoring.accounts import FREE_MAIL, domain_of, forms_account
from scoring.rules import ScoringModel
from tests.scoring.conftest import withdraw
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database

FIT = {"company_size": "51-200", "job_title": "Director of Sales"}  # 35 points
SITE_FREE_MAIL = ("mailbox.org", "posteo.de")  # the demo site.toml's list


def _accounts(api: TestClient, **params: str) -> dict[str, Any]:
    response = api.get("/api/accounts", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _by_domain(api: TestClient, **params: str) -> dict[str, dict[str, Any]]:
    return {a["domain"]: a for a in _accounts(api, **params)["accounts"]}


def test_leads_of_one_company_form_one_account(
    api: TestClient, submit: Callable[..., Any], events: Callable[..., Any]
) -> None:
    submit("ann@acme-corp.com", **FIT)
    events("ann@acme-corp.com", "pricing_page_viewed", "webinar_attended")  # 70: MQL
    submit("bob@acme-corp.com", job_title="CTO")  # 15
    submit("cy@other-corp.com", company_size="1-10")  # 0
    accounts = _by_domain(api)
    assert set(accounts) == {"acme-corp.com", "other-corp.com"}
    acme = accounts["acme-corp.com"]
    assert acme["members"] == 2
    assert acme["score"] == 85  # the sum of its members' scores
    assert acme["top_score"] == 70
    assert acme["stage"] == "MQL"  # the furthest stage of a member
    assert acme["buying_committee"] == ["CTO", "Director of Sales"]
    assert accounts["other-corp.com"]["stage"] == "Lead"

    detail = api.get("/api/accounts/ACME-corp.com")
    assert detail.status_code == 200
    body = detail.json()
    assert body["members"] == 2
    assert {(m["email"], m["stage"], m["job_title"]) for m in body["leads"]} == {
        ("ann@acme-corp.com", "MQL", "Director of Sales"),
        ("bob@acme-corp.com", "Lead", "CTO"),
    }


def test_only_permissioned_members_count(
    api: TestClient, submit: Callable[..., Any], events: Callable[..., Any]
) -> None:
    submit("ann@acme-corp.com", **FIT)
    # No profiling consent: not scored, not a member, not in the committee.
    submit("eve@acme-corp.com", consent=("newsletter",), job_title="Chief Executive")
    submit("dan@silent-corp.com", consent=("newsletter",), **FIT)
    accounts = _by_domain(api)
    assert set(accounts) == {"acme-corp.com"}
    assert accounts["acme-corp.com"]["members"] == 1
    assert accounts["acme-corp.com"]["buying_committee"] == ["Director of Sales"]
    assert api.get("/api/accounts/silent-corp.com").status_code == 404
    detail = api.get("/api/accounts/acme-corp.com").json()
    assert [m["email"] for m in detail["leads"]] == ["ann@acme-corp.com"]


def test_a_withdrawal_leaves_the_account_at_once(
    api: TestClient, database: Database, submit: Callable[..., Any], events: Callable[..., Any]
) -> None:
    submit("ann@acme-corp.com", **FIT)
    events("ann@acme-corp.com", "pricing_page_viewed", "webinar_attended")  # 70: MQL
    submit("bob@acme-corp.com", job_title="CTO")
    assert _by_domain(api)["acme-corp.com"]["stage"] == "MQL"

    withdraw(database, "ann@acme-corp.com")
    acme = _by_domain(api)["acme-corp.com"]
    assert (acme["members"], acme["score"], acme["stage"]) == (1, 15, "Lead")
    assert acme["buying_committee"] == ["CTO"]
    assert _by_domain(api, stage="MQL") == {}

    withdraw(database, "bob@acme-corp.com")
    assert _by_domain(api) == {}
    missing = api.get("/api/accounts/acme-corp.com")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_accounts_by_stage_are_paginated_with_a_cursor(
    api: TestClient, submit: Callable[..., Any], events: Callable[..., Any]
) -> None:
    for n in range(5):
        submit(f"lead@company{n}.com", **FIT)
        events(f"lead@company{n}.com", "pricing_page_viewed", "webinar_attended")
    submit("other@lead-only.com", **FIT)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"stage": "MQL", "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = _accounts(api, **params)
        seen += [a["domain"] for a in body["accounts"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"company{n}.com" for n in range(5)]
    assert pages == 3
    assert set(_by_domain(api, stage="Lead")) == {"lead-only.com"}
    assert _by_domain(api, stage="SQL") == {}


# --- free mail ---------------------------------------------------------------------------

LOCAL_PARTS = st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True)
FREE_DOMAINS = st.sampled_from(sorted(FREE_MAIL | set(SITE_FREE_MAIL)))


@given(local=LOCAL_PARTS, domain=FREE_DOMAINS)
def test_a_free_mail_address_never_belongs_to_an_account(local: str, domain: str) -> None:
    model = ScoringModel("profiling", (), free_mail=SITE_FREE_MAIL)
    assert not forms_account(f"{local}@{domain}", model)
    assert not forms_account(f"{local}@{domain.upper()}", model)
    assert forms_account(f"{local}@{domain}.corp-example.com", model)


@settings(
    max_examples=8,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(addresses=st.lists(st.tuples(LOCAL_PARTS, FREE_DOMAINS), min_size=1, max_size=3))
def test_free_mail_leads_never_form_accounts(
    api: TestClient,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    addresses: list[tuple[str, str]],
) -> None:
    for local, domain in addresses:
        email = f"{local}.{uuid.uuid4().hex[:8]}@{domain}"
        submit(email, **FIT)
        events(email, "pricing_page_viewed", "webinar_attended")
    listed = {a["domain"] for a in _accounts(api, limit="500")["accounts"]}
    assert not listed & (FREE_MAIL | set(SITE_FREE_MAIL))
    for _, domain in addresses:
        assert api.get(f"/api/accounts/{domain}").status_code == 404


def test_the_site_list_adds_free_mail_domains(
    api: TestClient, submit: Callable[..., Any], load_model: Callable[..., list[str]]
) -> None:
    submit("ann@mailbox.org", **FIT)
    submit("bob@fastmail.com", **FIT)
    assert set(_by_domain(api)) == {"fastmail.com"}
    load_model(('free_mail = ["mailbox.org", "posteo.de"]', 'free_mail = ["FastMail.com"]'))
    assert set(_by_domain(api)) == {"mailbox.org"}


@pytest.mark.parametrize(
    ("replacement", "where"),
    [
        ('free_mail = ["not a domain"]', "scoring.accounts.free_mail[0]"),
        ("free_mail = 3", "scoring.accounts.free_mail"),
        ('free_mail = ["a.com"]\ncolour = "red"', "scoring.accounts.colour"),
    ],
)
def test_a_bad_free_mail_list_is_refused_with_its_key(
    load_model: Callable[..., list[str]], replacement: str, where: str
) -> None:
    with pytest.raises(SiteConfigError) as caught:
        load_model(('free_mail = ["mailbox.org", "posteo.de"]', replacement))
    assert where in str(caught.value)
    assert "site.toml" in str(caught.value)


def test_domain_of_takes_the_part_after_the_last_at() -> None:
    assert domain_of("Ann@Acme-Corp.com") == "acme-corp.com"


# --- the API's edges ----------------------------------------------------------------------------


def test_accounts_need_a_key(app_client: TestClient) -> None:
    for path in ("/api/accounts", "/api/accounts/acme-corp.com"):
        response = app_client.get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"stage": "Visitor"}, "stage"),
        ({"stage": "nope"}, "stage"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "not a domain!"}, "cursor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_account_queries_are_422(api: TestClient, params: dict[str, str], field: str) -> None:
    response = api.get("/api/accounts", params=params)
    assert response.status_code == 422
    assert field in response.json()["error"]["fields"]


def test_a_bad_domain_is_422_and_a_free_mail_domain_404(api: TestClient) -> None:
    bad = api.get("/api/accounts/not_a_domain")
    assert bad.status_code == 422
    assert "domain" in bad.json()["error"]["fields"]
    assert api.get("/api/accounts/gmail.com").status_code == 404
    assert api.get("/api/accounts/acme-corp.com", params={"x": "1"}).status_code == 422
