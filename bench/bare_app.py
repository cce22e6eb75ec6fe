"""The bare baseline of ``GET /api/consent``: one Starlette endpoint, one Core query.

Same indexed query as :func:`consent_ledger.state.consent_now` (purposes ⟕
subject_profiles ⟕ subjects ⟕ consent_state, by email and purpose), built once, on the
same database, answered as JSON by a sync endpoint (Starlette's threadpool, as
zeroparty's view). No API key, no email validation, no ORM session (the SELECT runs
in SQLite's autocommit mode), no middleware, no error pages.

Served like zeroparty: ``uvicorn bench.bare_app:app_from_env --factory`` with the
database URL in ``BENCH_BARE_DATABASE_URL``.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Column, MetaData, String, Table, and_, bindparam, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.databases import bare_engine
from zeroparty.db import normalise_url

# One pooled connection per threadpool thread (anyio's default limit is 40), so no
# request pays for opening a SQLite connection and its pragmas (~0.35 ms of CPU here).
POOL_SIZE = 40

metadata = MetaData()
purposes = Table(
    "purposes",
    metadata,
    Column("key", String, primary_key=True),
    Column("mechanism", String),
    Column("jurisdictions", String),
)
profiles = Table(
    "subject_profiles",
    metadata,
    Column("subject_id", String, primary_key=True),
    Column("email", String),
)
subjects = Table(
    "subjects", metadata, Column("id", String, primary_key=True), Column("jurisdiction", String)
)
states = Table(
    "consent_state",
    metadata,
    Column("subject_id", String, primary_key=True),
    Column("purpose_key", String, primary_key=True),
    Column("status", String),
    Column("permitted", String),
    Column("since", String),
    Column("notice_sha256", String),
)
LOOKUP = (
    select(
        purposes.c.mechanism,
        purposes.c.jurisdictions,
        subjects.c.jurisdiction,
        states.c.status,
        states.c.permitted,
        states.c.since,
        states.c.notice_sha256,
    )
    .select_from(
        purposes.outerjoin(profiles, profiles.c.email == bindparam("email"))
        .outerjoin(subjects, subjects.c.id == profiles.c.subject_id)
        .outerjoin(
            states,
            and_(
                states.c.subject_id == profiles.c.subject_id,
                states.c.purpose_key == purposes.c.key,
            ),
        )
    )
    .where(purposes.c.key == bindparam("purpose"))
)


def create_bare_app(database_url: str) -> Starlette:
    reader = bare_engine(normalise_url(database_url), immediate=False, pool_size=POOL_SIZE)

    def consent(request: Request) -> JSONResponse:
        email = request.query_params.get("email", "").strip().lower()
        purpose = request.query_params.get("purpose", "")
        with reader.connect() as connection:
            row = connection.execute(LOOKUP, {"email": email, "purpose": purpose}).first()
        if row is None:
            return JSONResponse({"error": "unknown purpose"}, status_code=404)
        body: dict[str, Any] = {
            "purpose": purpose,
            "permitted": bool(row.permitted) if row.status is not None else False,
            "status": row.status or "none",
            "since": row.since,
            "notice_sha256": row.notice_sha256,
        }
        return JSONResponse(body)

    return Starlette(routes=[Route("/api/consent", consent, methods=["GET"])])


def app_from_env() -> Starlette:
    return create_bare_app(os.environ["BENCH_BARE_DATABASE_URL"])
