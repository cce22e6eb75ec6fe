"""The ledger's JSON API: consent look-up and recording, notices."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consent_ledger import schemas, services, state
from consent_ledger.entries import format_timestamp
from consent_ledger.subjects import find_subject_id
from zeroparty.db import Database
from zeroparty.errors import InvalidInput
from zeroparty.http import JSONResponse, read_json_object


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _authenticate(request: Request, session: Session | Connection) -> None:
    request.app.state.api_keys.verify(session, request.headers.get("authorization"))


def _authenticate_read(request: Request, database: Database) -> None:
    with database.read() as session:
        _authenticate(request, session)


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


def get_consent(request: Request) -> JSONResponse:
    # A plain connection, not an ORM session: this is the site backend's hot path.
    with _database(request).lookup() as connection:
        _authenticate(request, connection)
        email, purpose, at = schemas.parse_consent_query(request.query_params)
        if at is None:
            answer = state.consent_now(connection, email, purpose)
        else:
            subject_id = find_subject_id(connection, email)
            answer = state.consent_at(connection, subject_id or "", purpose, at)
    body = _answer_json(answer)
    if at is not None:
        body["at"] = format_timestamp(at)
    return JSONResponse(body)


async def post_consent(request: Request) -> JSONResponse:
    database = _database(request)
    await run_in_threadpool(_authenticate_read, request, database)
    body = await read_json_object(request)
    record = schemas.parse_consent_post(body)
    entry, answer = await run_in_threadpool(_record, database, record)
    return JSONResponse({**entry, "consent": _answer_json(answer)}, status_code=201)


def _record(
    database: Database, record: services.ConsentRecord
) -> tuple[dict[str, object], state.ConsentAnswer]:
    with database.write_connection() as connection:
        entry = services.record_consent(connection, record)
        answer = state.consent_now(connection, record.email, record.purpose)
    return entry.as_json(), answer


# A language tag's shape (BCP 47, loosely): what may be looked up as a locale at all.
_LOCALE_SHAPE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")


def get_notices(request: Request) -> JSONResponse:
    locale = request.query_params.get("locale") or None
    with _database(request).read() as session:
        _authenticate(request, session)
        if locale is not None and not _LOCALE_SHAPE.fullmatch(locale):
            reason = "must be a locale such as en or de-AT"
            raise InvalidInput(f"locale: {reason}", fields={"locale": reason})
        notices = services.current_notices(session, locale)
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


routes = [
    Route("/api/consent", get_consent, methods=["GET"]),
    Route("/api/consent", post_consent, methods=["POST"]),
    Route("/api/notices", get_notices, methods=["GET"]),
]
