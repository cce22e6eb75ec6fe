"""Scoring's JSON API: events in, leads and explanations out, stage moves."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consent_ledger.entries import format_timestamp
from consent_ledger.subjects import find_subject_id
from scoring import schemas, services
from scoring.stages import Stage
from zeroparty.apikeys import Caller
from zeroparty.db import Database
from zeroparty.errors import InvalidInput, NotFound
from zeroparty.http import JSONResponse, read_json_object

MAX_EVENTS_BYTES = 1024 * 1024


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _authenticate(request: Request) -> Caller:
    with _database(request).read() as session:
        caller: Caller = request.app.state.api_keys.verify(
            session, request.headers.get("authorization")
        )
    return caller


async def post_events(request: Request) -> JSONResponse:
    await run_in_threadpool(_authenticate, request)
    body = await read_json_object(request, limit=MAX_EVENTS_BYTES)
    events = schemas.parse_events(body)
    result = await run_in_threadpool(_ingest, _database(request), events)
    return JSONResponse(
        {"accepted": result.accepted, "duplicates": result.duplicates, "dropped": result.dropped},
        status_code=201 if result.accepted else 200,
    )


def _ingest(database: Database, events: list[services.EventIn]) -> services.IntakeResult:
    with database.write() as session:
        return services.ingest_events(session, events)


def get_leads(request: Request) -> JSONResponse:
    _authenticate(request)
    query = schemas.parse_leads_query(request.query_params)
    with _database(request).read() as session:
        rows = services.list_leads(session.connection(), query.stage, query.limit, query.after)
    return JSONResponse(
        {
            "leads": [
                {
                    "lead_id": r.subject_id,
                    "email": r.email,
                    "stage": r.stage.value,
                    "score": r.score,
                    "stage_since": format_timestamp(r.stage_since),
                    "scored_at": format_timestamp(r.scored_at),
                }
                for r in rows
            ],
            "next_cursor": rows[-1].subject_id if len(rows) == query.limit else None,
        }
    )


def _lead_id(session: Session, raw_email: object) -> str:
    errors: dict[str, str] = {}
    email = schemas._email(raw_email, "email", errors)
    if errors:
        raise InvalidInput(f"email: {errors['email']}", fields=errors)
    subject_id = find_subject_id(session, email)
    if subject_id is None:
        raise NotFound("no lead with this email", fields={"email": "unknown lead"})
    return subject_id


def explanation_json(explanation: services.Explanation) -> dict[str, object]:
    return {
        "lead_id": explanation.subject_id,
        "permitted": explanation.permitted,
        "stage": explanation.stage.value,
        "score": explanation.score,
        "model_version": explanation.model_id,
        "scored_at": format_timestamp(explanation.scored_at) if explanation.scored_at else None,
        "points": [
            {
                "rule": p.rule,
                "kind": p.kind,
                "points": p.points,
                "source": p.source,
                "occurred_at": format_timestamp(p.occurred_at),
                "consent_entry": p.consent_seq,
            }
            for p in explanation.points
        ],
        "stage_changes": [
            {**change, "at": format_timestamp(change["at"])}  # type: ignore[arg-type]
            for change in explanation.changes
        ],
    }


def get_score(request: Request) -> JSONResponse:
    _authenticate(request)
    unknown = sorted(set(request.query_params) - {"email"})
    if unknown:
        raise InvalidInput(
            "unknown parameter", fields={k[:64]: "unknown parameter" for k in unknown}
        )
    with _database(request).read() as session:
        subject_id = _lead_id(session, request.query_params.get("email"))
        explanation = services.explain(session.connection(), subject_id)
    return JSONResponse(explanation_json(explanation))


async def post_stage(request: Request) -> JSONResponse:
    caller = await run_in_threadpool(_authenticate, request)
    move = schemas.parse_stage_move(await read_json_object(request))
    old, lead = await run_in_threadpool(_move, _database(request), move, f"api:{caller.name}")
    return JSONResponse(
        {
            "lead_id": lead.subject_id,
            "from": old.value,
            "stage": lead.stage.value,
            "score": lead.score,
            "recycled": move.recycle,
        },
    )


def _move(
    database: Database, move: schemas.StageMove, actor: str
) -> tuple[Stage, services.LeadScore]:
    with database.write() as session:
        subject_id = _lead_id(session, move.email)
        return services.move_stage(
            session, subject_id, move.stage, actor=actor, reason=move.reason, recycle=move.recycle
        )


routes = [
    Route("/api/events", post_events, methods=["POST"]),
    Route("/api/leads", get_leads, methods=["GET"]),
    Route("/api/leads/score", get_score, methods=["GET"]),
    Route("/api/leads/stage", post_stage, methods=["POST"]),
]
