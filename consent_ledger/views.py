"""The ledger's JSON API: consent look-up and recording, notices."""

from __future__ import annotations

import re
from datetime import datetime

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consent_ledger import schemas, services, state
from consent_ledger.actions import ConsentAction
from consent_ledger.api import ConsentLedger, is_negative
from consent_ledger.entries import format_timestamp
from consent_ledger.subjects import find_subject_id
from zeroparty.apikeys import ApiKeyVerifier, Scope
from zeroparty.db import Database
from zeroparty.errors import InvalidInput
from zeroparty.http import JSONResponse, read_json_object


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _verify(
    database: Database, verifier: ApiKeyVerifier, authorization: str | None, scope: Scope
) -> None:
    with database.lookup() as connection:
        verifier.verify(connection, authorization).require(scope)


async def _authenticate(request: Request, scope: Scope) -> None:
    """Refuse a request without a good API key with ``scope``. A key checked recently
    is known from the cache (no statement, no hop); a cold one is checked by one query."""
    verifier: ApiKeyVerifier = request.app.state.api_keys
    authorization = request.headers.get("authorization")
    caller = verifier.cached(authorization)
    if caller is None:
        database = _database(request)
        await database.run(_verify, database, verifier, authorization, scope)
    else:
        caller.require(scope)


def _ts(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment is not None else None


def _answer_json(answer: state.ConsentAnswer) -> dict[str, object]:
    return {
        "purpose": answer.purpose,
        "permitted": answer.permitted,
        "status": answer.status,
        "since": _ts(answer.since),
        "notice_sha256": answer.notice_sha256,
    }


async def get_consent(request: Request) -> Response:
    # The site backend's hot path: the key from the cache, the e-mail's normal form from
    # its cache, then one hop doing one statement compiled once, on the driver's cursor.
    database = _database(request)
    verifier: ApiKeyVerifier = request.app.state.api_keys
    authorization = request.headers.get("authorization")
    caller = verifier.cached(authorization)
    if caller is None:
        body = await database.run(_verified_lookup, database, verifier, authorization, request)
    else:
        caller.require(Scope.CONSENT_READ)
        email, purpose, at = schemas.parse_consent_query(request.query_params)
        body = await database.run(_lookup, database, email, purpose, at)
    return Response(orjson.dumps(body), media_type="application/json")


def _verified_lookup(
    database: Database, verifier: ApiKeyVerifier, authorization: str | None, request: Request
) -> dict[str, object]:
    _verify(database, verifier, authorization, Scope.CONSENT_READ)
    email, purpose, at = schemas.parse_consent_query(request.query_params)
    return _lookup(database, email, purpose, at)


def _lookup(database: Database, email: str, purpose: str, at: datetime | None) -> dict[str, object]:
    if at is None:
        with database.lookup_cursor() as cursor:
            answer = state.consent_now_on_cursor(cursor, database.engine.dialect, email, purpose)
        return _answer_json(answer)
    with database.lookup() as connection:
        subject_id = find_subject_id(connection, email)
        answer = state.consent_at(connection, subject_id or "", purpose, at)
    body = _answer_json(answer)
    body["at"] = format_timestamp(at)
    return body


async def post_consent(request: Request) -> JSONResponse:
    await _authenticate(request, Scope.CONSENT_WRITE)
    body = await read_json_object(request)
    record = schemas.parse_consent_post(body)
    database = _database(request)
    if record.action is ConsentAction.GPC_OPT_OUT:
        gpc = await database.run(_record_gpc, database, request.app.state.ledger, record)
        if gpc is None:  # honoured already: the signal is not recorded twice
            now = await database.run(_lookup, database, record.email, record.purpose, None)
            return JSONResponse({"recorded": False, "consent": now}, status_code=200)
        entry, answer = gpc
    else:
        entry, answer = await database.run(_record, database, request.app.state.ledger, record)
    return JSONResponse({**entry, "consent": _answer_json(answer)}, status_code=201)


def _record_gpc(
    database: Database, consent_ledger: ConsentLedger, record: services.ConsentRecord
) -> tuple[dict[str, object], state.ConsentAnswer] | None:
    """A GPC signal for a known or new lead (issue 16): refused for a purpose that is
    not a sale or sharing; ``None`` when the lead's state is a no already."""
    with database.write_connection() as connection:
        if not consent_ledger.is_sale_or_sharing(connection, record.purpose):
            reason = "a GPC signal opts out of sale or sharing only: not such a purpose"
            raise InvalidInput(f"purpose: {reason}", fields={"purpose": reason})
        current = consent_ledger.consent(connection, record.email, record.purpose)
        if is_negative(current.status):
            return None
        entry = consent_ledger.record_by_email(connection, record)
    with database.lookup() as connection:
        answer = consent_ledger.consent(connection, record.email, record.purpose)
    return entry.as_json(), answer


def _record(
    database: Database, consent_ledger: ConsentLedger, record: services.ConsentRecord
) -> tuple[dict[str, object], state.ConsentAnswer]:
    with database.write_connection() as connection:
        entry = consent_ledger.record_by_email(connection, record)
    # Read after the commit, not inside the transaction: on PostgreSQL the ledger's head
    # stays locked until the commit, and other writers should not wait for this read.
    dialect = database.engine.dialect
    with database.lookup_cursor() as cursor:
        answer = state.consent_now_on_cursor(cursor, dialect, record.email, record.purpose)
    return entry.as_json(), answer


# A language tag's shape (BCP 47, loosely): what may be looked up as a locale at all.
_LOCALE_SHAPE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")


async def get_notices(request: Request) -> JSONResponse:
    verifier: ApiKeyVerifier = request.app.state.api_keys
    authorization = request.headers.get("authorization")
    caller = verifier.cached(authorization)
    cold = caller is None  # a cold key is checked in the same hop
    if caller is not None:
        caller.require(Scope.CONSENT_READ)
    locale = request.query_params.get("locale") or None
    database = _database(request)
    notices = await database.run(
        _notices, database, verifier if cold else None, authorization, locale
    )
    return JSONResponse(
        {
            "notices": [
                {
                    "purpose": n.purpose,
                    "title": n.title,
                    "category": n.category,
                    "mechanism": n.mechanism,
                    "locale": n.locale,
                    "version": n.version,
                    "notice_sha256": n.notice_sha256,
                    "text": n.text,
                }
                for n in notices
            ]
        }
    )


def _notices(
    database: Database,
    verifier: ApiKeyVerifier | None,
    authorization: str | None,
    locale: str | None,
) -> list[services.NoticeView]:
    with database.read() as session:
        if verifier is not None:
            verifier.verify(session, authorization).require(Scope.CONSENT_READ)
        if locale is not None and not _LOCALE_SHAPE.fullmatch(locale):
            reason = "must be a locale such as en or de-AT"
            raise InvalidInput(f"locale: {reason}", fields={"locale": reason})
        return services.current_notices(session, locale)


routes = [
    Route("/api/consent", get_consent, methods=["GET"]),
    Route("/api/consent", post_consent, methods=["POST"]),
    Route("/api/notices", get_notices, methods=["GET"]),
]
