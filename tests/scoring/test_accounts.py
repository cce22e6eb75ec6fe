"""Accounts: permissioned leads grouped by company domain; free-mail domains never form
an account; only permissioned members count, and a withdrawal takes one out at once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.engine import Connection
from starlette.testclient import TestClient

from scoring import accounts
from scoring.accounts import FREE_MAIL, domain_of, forms_account
from scoring.rules import ScoringModel
from scoring.stages import Stage
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


# --- pages: a page reads its own domains only, and pages add up to the whole list --------

# Company domains in index order with free-mail leads, a domain of unscored profiles and
# (below) MQL accounts spread between Lead-only ones, so that filtered pages must look
# past several ranges of domains before they are full.
COMPANIES = [f"co{n:02d}.example" for n in range(12)]
MQL_COMPANIES = {"co02.example", "co07.example", "co11.example"}


@pytest.fixture
def companies(api: TestClient, submit: Callable[..., Any], events: Callable[..., Any]) -> list[str]:
    for n, domain in enumerate(COMPANIES):
        submit(f"ann@{domain}", job_title=f"Director {n}", company_size="51-200")  # 35
        if n % 3 == 0:
            submit(f"bob@{domain}", company_size="1-10")  # 0
        if domain in MQL_COMPANIES:
            events(f"ann@{domain}", "pricing_page_viewed", "webinar_attended")  # 70: MQL
    submit("cy@gmail.com", **FIT)
    submit("di@mailbox.org", **FIT)
    submit("eve@co05-quiet.example", consent=("newsletter",), **FIT)  # no member
    return COMPANIES


def _all_pages(api: TestClient, limit: int, **params: str) -> list[dict[str, Any]]:
    """Every account, page after page (``limit`` each), following the cursor."""
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        body = _accounts(api, limit=str(limit), **params, **({"cursor": cursor} if cursor else {}))
        assert len(body["accounts"]) <= limit
        seen += body["accounts"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_pages_add_up_to_one_big_page(api: TestClient, companies: list[str]) -> None:
    everything = _accounts(api, limit="500")["accounts"]
    assert [a["domain"] for a in everything] == companies
    for limit in (1, 2, 5, 12, 13):
        assert _all_pages(api, limit) == everything
    # The listing and the account's own page agree on every figure.
    for account in everything:
        detail = api.get(f"/api/accounts/{account['domain']}").json()
        assert {k: detail[k] for k in account} == account
        assert len(detail["leads"]) == account["members"]


# ``SPARSE_STAGE`` values that send every stage filter one way: walking domains, or
# starting from the stage's leads (both must give the same pages).
ROUTES = {"walk domains": 0, "from the stage's leads": 10**6}


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("stage", ["MQL", "Lead"])
def test_stage_pages_add_up_to_the_accounts_at_that_stage(
    api: TestClient,
    companies: list[str],
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
    route: str,
) -> None:
    monkeypatch.setattr(accounts, "SPARSE_STAGE", ROUTES[route])
    everything = _accounts(api, limit="500")["accounts"]
    at_stage = [a for a in everything if a["stage"] == stage]
    expected = MQL_COMPANIES if stage == "MQL" else set(companies) - MQL_COMPANIES
    assert {a["domain"] for a in at_stage} == expected
    assert _accounts(api, limit="500", stage=stage)["accounts"] == at_stage
    for limit in (1, 2, 4):
        assert _all_pages(api, limit, stage=stage) == at_stage
    after_first = _accounts(api, stage=stage, cursor=at_stage[0]["domain"])["accounts"]
    assert after_first == at_stage[1:]


def test_a_withdrawal_leaves_every_page_at_once(
    api: TestClient, database: Database, companies: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _all_pages(api, 2)
    withdraw(database, "ann@co04.example")  # co04's only member
    withdraw(database, "ann@co03.example")  # one of co03's two members
    after = _all_pages(api, 2)
    assert [a["domain"] for a in after] == [
        a["domain"] for a in before if a["domain"] != "co04.example"
    ]
    assert api.get("/api/accounts/co04.example").status_code == 404
    co03 = next(a for a in after if a["domain"] == "co03.example")
    assert (co03["members"], co03["buying_committee"]) == (1, [])
    detail = api.get("/api/accounts/co03.example").json()
    assert [m["email"] for m in detail["leads"]] == ["bob@co03.example"]
    withdraw(database, "ann@co07.example")  # an MQL account's only member
    for sparse_stage in ROUTES.values():
        monkeypatch.setattr(accounts, "SPARSE_STAGE", sparse_stage)
        mql = [a["domain"] for a in _all_pages(api, 1, stage="MQL")]
        assert mql == ["co02.example", "co11.example"]


def test_the_committee_shows_each_members_current_authority(
    api: TestClient, companies: list[str]
) -> None:
    def committee() -> list[str]:
        listed = _by_domain(api, limit="3")["co01.example"]["buying_committee"]
        detail = api.get("/api/accounts/co01.example").json()["buying_committee"]
        assert listed == detail
        return list(listed)

    url = "/api/leads/qualification"
    assert api.post(url, json={"email": "ann@co01.example", "authority": "user"}).status_code == 201
    api.post(url, json={"email": "ann@co01.example", "authority": "decision_maker"})
    assert committee() == ["Director 1", "decision_maker"]
    api.post(url, json={"email": "ann@co01.example", "authority": None})  # cleared
    assert committee() == ["Director 1"]


def _plans(database: Database, run: Callable[[Connection], object]) -> list[str]:
    """The plan of every statement ``run`` sends that reads ``subject_profiles``, as
    the database would run it (same parameters, same connection)."""
    statements: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "subject_profiles" in statement:
            statements.append((statement, parameters))

    with database.read() as session:
        connection = session.connection()
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # Statistics as autovacuum keeps them (a never-analysed table is planned as
            # if nearly empty), and no sequential scans: tables this small are read
            # whole otherwise, index or not.
            for table in ("subject_profiles", "scoring_leads", "consent_state"):
                connection.exec_driver_sql(f"ANALYZE {table}")
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        event.listen(database.engine, "before_cursor_execute", capture)
        try:
            run(connection)
        finally:
            event.remove(database.engine, "before_cursor_execute", capture)
        explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
        return [
            "\n".join(str(row[-1]) for row in connection.exec_driver_sql(explain + sql, params))
            for sql, params in statements
        ]


def test_pages_and_accounts_are_read_through_the_indexes(
    database: Database, companies: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def page(connection: Connection) -> None:
        assert len(accounts.list_accounts(connection, stage=None, limit=3, after="co03")) == 3

    def at_stage(connection: Connection) -> None:
        assert accounts.list_accounts(connection, stage=Stage.MQL, limit=1) != []

    def one(connection: Connection) -> None:
        assert accounts.get_account(connection, "co03.example") is not None

    def check(plan: str, index: str | tuple[str, ...], *, in_order: bool = True) -> None:
        assert any(name in plan for name in ((index,) if isinstance(index, str) else index)), plan
        if database.dialect == "sqlite":
            assert "SCAN " not in plan, plan  # no table read whole
            if in_order:  # groups come in index order, none is sorted
                assert "TEMP B-TREE FOR GROUP BY" not in plan, plan

    domain_index = "ix_subject_profiles_email_domain"
    monkeypatch.setattr(accounts, "SPARSE_STAGE", ROUTES["walk domains"])
    for run, statements in ((page, 3), (at_stage, 4), (one, 2)):
        plans = _plans(database, run)
        assert len(plans) >= statements, plans
        for plan in plans:
            check(plan, domain_index)
    # A stage with few leads: its leads by the stage index, then the members of their
    # domains (a page's worth, looked up one domain at a time, then grouped).
    monkeypatch.setattr(accounts, "SPARSE_STAGE", ROUTES["from the stage's leads"])
    candidates, *pages = _plans(database, at_stage)
    # Either index led by the stage (the SLA's by the clock's start is one too).
    stage_indexes = ("ix_scoring_leads_stage_subject", "ix_scoring_leads_stage_since")
    check(candidates, stage_indexes, in_order=False)
    assert len(pages) >= 2, pages
    for plan in pages:
        check(plan, domain_index, in_order=False)


# --- free mail ---------------------------------------------------------------------------

LOCAL_PARTS = st.from_regex(r"[a-z][a-z0-9]{0,12}", fullmatch=True)
FREE_DOMAINS = st.sampled_from(sorted(FREE_MAIL | set(SITE_FREE_MAIL)))


@given(local=LOCAL_PARTS, domain=FREE_DOMAINS)
def test_a_free_mail_address_never_belongs_to_an_account(local: str, domain: str) -> None:
    model = ScoringModel("profiling", (), free_mail=SITE_FREE_MAIL)
    assert not forms_account(f"{local}@{domain}", model)
    assert not forms_account(f"{local}@{domain.upper()}", model)
    assert forms_account(f"{local}@{domain}.corp-example.com", model)


# The examples share one app and so one network's rate limit (20 submissions of a form per
# 10 minutes): at most 6 examples of at most 3 addresses stay under it.
@settings(
    max_examples=6,
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
