"""API key scopes: a key does what its scopes allow (403 JSON otherwise, nothing changed
or logged); keys made without scopes, as every key before scopes, keep every scope."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent
from tests.consent_sync.conftest import count, staff_log
from tests.factories import record
from zeroparty import cli
from zeroparty.apikeys import ALL_SCOPES, ApiKey, ApiKeyVerifier, Scope, create_api_key
from zeroparty.db import Database
from zeroparty.errors import Forbidden

CONSENT_POST = {
    "email": "ann@example.com",
    "purpose": "profiling",
    "action": "withdrawn",
    "source": "api",
}

# Every scoped route: (method, path, body, its scope).
ROUTES = [
    ("GET", "/api/consent?email=ann@example.com&purpose=profiling", None, Scope.CONSENT_READ),
    ("GET", "/api/notices", None, Scope.CONSENT_READ),
    ("POST", "/api/consent", CONSENT_POST, Scope.CONSENT_WRITE),
    ("POST", "/api/events", {"events": []}, Scope.EVENTS),
    ("GET", "/api/changes", None, Scope.CHANGES),
]


def _key(database: Database, scopes: set[Scope] | None) -> str:
    with database.write() as session:
        return create_api_key(session, f"k-{uuid.uuid4().hex[:6]}", scopes)


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
def test_a_key_without_the_scope_is_refused_and_nothing_changes(
    app_client: TestClient,
    database: Database,
    method: str,
    path: str,
    body: object,
    scope: Scope,
) -> None:
    record(database, "ann@example.com", "profiling")
    entries = count(database, ConsentEvent)
    others = set(ALL_SCOPES) - {scope}
    key = _key(database, others)
    response = app_client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    assert scope.value in error["message"]
    assert count(database, ConsentEvent) == entries
    assert staff_log(database) == []


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
def test_a_key_with_the_scope_gets_in(
    app_client: TestClient,
    database: Database,
    method: str,
    path: str,
    body: object,
    scope: Scope,
) -> None:
    record(database, "ann@example.com", "profiling")
    key = _key(database, {scope})
    response = app_client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code not in (401, 403), response.text


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
def test_a_key_made_without_scopes_keeps_every_scope(
    api: TestClient, database: Database, method: str, path: str, body: object, scope: Scope
) -> None:
    record(database, "ann@example.com", "profiling")
    with database.read() as session:
        assert session.execute(select(ApiKey.scopes)).scalars().all() == [None]
    assert api.request(method, path, json=body).status_code not in (401, 403)


def test_a_cached_key_keeps_its_scopes(database: Database) -> None:
    key = _key(database, {Scope.CHANGES})
    verifier = ApiKeyVerifier(cache_seconds=60)
    with database.read() as session:
        verifier.verify(session, f"Bearer {key}")
    caller = verifier.cached(f"Bearer {key}")
    assert caller is not None
    assert caller.scopes == {Scope.CHANGES}
    caller.require(Scope.CHANGES)
    with pytest.raises(Forbidden):
        caller.require(Scope.AUDIENCES)


@pytest.mark.usefixtures("cli_env")
def test_the_cli_creates_a_scoped_key(
    app_client: TestClient, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["apikey", "create", "mailer", "--scope", "changes", "--scope", "audiences"])
    assert code == 0
    key = capsys.readouterr().out.strip()
    with database.read() as session:
        stored = session.execute(select(ApiKey.scopes).where(ApiKey.name == "mailer")).scalar()
    assert stored == "audiences changes"
    headers = {"Authorization": f"Bearer {key}"}
    assert app_client.get("/api/changes", headers=headers).status_code == 200
    assert app_client.get("/api/notices", headers=headers).status_code == 403


@pytest.mark.usefixtures("cli_env")
def test_the_cli_refuses_an_unknown_scope(
    database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["apikey", "create", "mailer", "--scope", "everything"]) == 2
    err = capsys.readouterr().err
    assert "unknown scope 'everything'" in err
    assert "consent:read" in err
    with database.read() as session:
        assert session.execute(select(ApiKey.id)).first() is None


def test_a_scope_this_version_does_not_know_grants_nothing(database: Database) -> None:
    key = _key(database, {Scope.CHANGES})
    with database.write() as session:
        stored = session.execute(select(ApiKey)).scalar_one()
        stored.scopes = "changes reports:write"  # written by a newer version
    with database.read() as session:
        caller = ApiKeyVerifier(cache_seconds=0).verify(session, f"Bearer {key}")
    assert caller.scopes == {Scope.CHANGES}


def test_every_scoped_route_documents_its_403(app_client: TestClient) -> None:
    paths = app_client.get("/openapi.json").json()["paths"]
    scoped = [
        *((m, p.split("?")[0]) for m, p, _b, _s in ROUTES),
        ("GET", "/api/audiences/{purpose}"),
        ("GET", "/api/suppression"),
    ]
    for method, path in scoped:
        assert "403" in paths[path][method.lower()]["responses"], (method, path)
