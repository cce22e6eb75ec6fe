"""Scoring's JSON API: events in, leads and explanations out, stage moves."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from consent_ledger.api import ConsentLedger
from consent_ledger.entries import format_timestamp
from scoring import accounts, conversion, outcomes, qualification, schemas, services, sla
from scoring.lifecycle import Lifecycle
from zeroparty.apikeys import ApiKeyVerifier, Caller, Scope
from zeroparty.db import Database, utcnow
from zeroparty.errors import InvalidInput, NotFound, ZeropartyError
from zeroparty.http import JSONResponse, read_json_object

MAX_EVENTS_BYTES = 1024 * 1024


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _ledger(request: Request) -> ConsentLedger:
    ledger: ConsentLedger = request.app.state.ledger
    return ledger


def _authenticate(request: Request) -> Caller:
    with _database(request).read() as session:
        caller: Caller = request.app.state.api_keys.verify(
            session, request.headers.get("authorization")
        )
    return caller


def _lifecycle(request: Request) -> Lifecycle:
    """The lifecycle in force: the stage names a request may use."""
    with _database(request).read() as session:
        return services.lifecycle_in_force(session)


async def post_events(request: Request) -> JSONResponse:
    # The body is read and checked first, but a refusal of it is raised only after the
    # API key is checked (in the one database hop): a caller without a valid key is
    # told so, whatever it sent.
    refused: ZeropartyError | None = None
    events: list[services.EventIn] = []
    try:
        events = schemas.parse_events(await read_json_object(request, limit=MAX_EVENTS_BYTES))
    except ZeropartyError as exc:
        refused = exc
    database = _database(request)
    result = await database.run(
        _ingest,
        database,
        request.app.state.api_keys,
        request.headers.get("authorization"),
        events,
        refused,
    )
    return JSONResponse(
        {"accepted": result.accepted, "duplicates": result.duplicates, "dropped": result.dropped},
        status_code=201 if result.accepted else 200,
    )


def _ingest(
    database: Database,
    api_keys: ApiKeyVerifier,
    authorization: str | None,
    events: list[services.EventIn],
    refused: ZeropartyError | None,
) -> services.IntakeResult:
    """All of ``POST /api/events``'s database work, in one write transaction: the key
    check (a query only when the key is not cached), then the batch."""
    with database.write_connection() as connection:
        api_keys.verify(connection, authorization).require(Scope.EVENTS)
        if refused is not None:
            raise refused
        return services.ingest_events(connection, events)


def get_leads(request: Request) -> JSONResponse:
    _authenticate(request)
    with _database(request).read() as session:
        connection = session.connection()
        lifecycle = services.lifecycle_in_force(connection)
        query = schemas.parse_leads_query(request.query_params, lifecycle)
        page = services.list_leads(connection, query.stage, query.limit, query.after)
        rows = page.leads
        ids = [r.subject_id for r in rows]
        predictions = conversion.predict(connection, ids)
        model = services.require_model(connection).model
        intents = services.lead_intents(connection, model, ids)
    return JSONResponse(
        {
            "leads": [
                {
                    "lead_id": r.subject_id,
                    "email": r.email,
                    "stage": r.stage,
                    "score": r.score,
                    "stage_since": format_timestamp(r.stage_since),
                    "scored_at": format_timestamp(r.scored_at),
                    "conversion": _conversion(predictions, r.subject_id),
                    "intent": intents[r.subject_id].as_json(),
                    "lead_types": r.lead_types,
                    "temperature": r.temperature,
                    "next_action": services.next_action_of(
                        model,
                        r.stage,
                        r.score,
                        r.lead_types,
                        intents[r.subject_id],
                        r.acknowledged,
                    ),
                }
                for r in rows
            ],
            "next_cursor": page.next_cursor,
        }
    )


def _conversion(
    predictions: dict[str, conversion.Prediction], subject_id: str
) -> dict[str, object] | None:
    prediction = predictions.get(subject_id)
    return prediction.as_json() if prediction is not None else None


def _lead_id(ledger: ConsentLedger, session: Session, raw_email: object) -> str:
    errors: dict[str, str] = {}
    email = schemas.email_field(raw_email, "email", errors)
    if errors:
        raise InvalidInput(f"email: {errors['email']}", fields=errors)
    subject_id = ledger.find_lead(session, email)
    if subject_id is None:
        raise NotFound("no lead with this email", fields={"email": "unknown lead"})
    return subject_id


def explanation_json(explanation: services.Explanation) -> dict[str, object]:
    return {
        "lead_id": explanation.subject_id,
        "permitted": explanation.permitted,
        "stage": explanation.stage,
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
        "status": explanation.status.value,
        "reason": explanation.reason,
        "intent": explanation.intent.as_json(),
        "lead_types": services.LeadTypes(explanation.subject_id, explanation.lead_types).as_json(),
        "temperature": explanation.temperature,
        "next_action": explanation.next_action,
        "outcome": None
        if explanation.outcome is None
        else {
            "outcome": explanation.outcome.outcome,
            "decided_at": format_timestamp(explanation.outcome.decided_at),
            "recorded_by": explanation.outcome.recorded_by,
        },
    }


def get_score(request: Request) -> JSONResponse:
    _authenticate(request)
    unknown = sorted(set(request.query_params) - {"email"})
    if unknown:
        raise InvalidInput(
            "unknown parameter", fields={k[:64]: "unknown parameter" for k in unknown}
        )
    with _database(request).read() as session:
        subject_id = _lead_id(_ledger(request), session, request.query_params.get("email"))
        explanation = services.explain(session.connection(), subject_id)
        predictions = conversion.predict(session.connection(), [subject_id])
        # BANT is shown only while the lead's gating consent is live (SPEC rule 3).
        bant = (
            qualification.current(session.connection(), subject_id) if explanation.permitted else {}
        )
    return JSONResponse(
        {
            **explanation_json(explanation),
            "conversion": _conversion(predictions, subject_id),
            "qualification": _bant_json(bant),
        }
    )


async def post_stage(request: Request) -> JSONResponse:
    caller = await run_in_threadpool(_authenticate, request)
    lifecycle = await run_in_threadpool(_lifecycle, request)
    move = schemas.parse_stage_move(await read_json_object(request), lifecycle)
    old, lead = await run_in_threadpool(_move, _ledger(request), move, f"api:{caller.name}")
    return JSONResponse(
        {
            "lead_id": lead.subject_id,
            "from": old,
            "stage": lead.stage,
            "score": lead.score,
            "recycled": move.recycle,
        },
    )


def _move(
    ledger: ConsentLedger, move: schemas.StageMove, actor: str
) -> tuple[str, services.LeadScore]:
    with ledger.database.write() as session:
        subject_id = _lead_id(ledger, session, move.email)
        return services.move_stage(
            session, subject_id, move.stage, actor=actor, reason=move.reason, recycle=move.recycle
        )


async def post_lead_type(request: Request) -> JSONResponse:
    caller = await run_in_threadpool(_authenticate, request)
    given = schemas.parse_lead_type(await read_json_object(request))
    created, held = await run_in_threadpool(
        _give_type, _ledger(request), given, f"api:{caller.name}"
    )
    return JSONResponse(
        {"lead_id": held.subject_id, "lead_types": held.as_json()},
        status_code=201 if created else 200,
    )


def _give_type(
    ledger: ConsentLedger, given: schemas.LeadTypeIn, actor: str
) -> tuple[bool, services.LeadTypes]:
    with ledger.database.write() as session:
        subject_id = _lead_id(ledger, session, given.email)
        return services.give_lead_type(
            session, subject_id, given.type, actor=actor, reason=given.reason
        )


async def post_outcome(request: Request) -> JSONResponse:
    caller = await run_in_threadpool(_authenticate, request)
    given = schemas.parse_outcome(await read_json_object(request))
    recorded = await run_in_threadpool(
        _record_outcome, _ledger(request), given, f"api:{caller.name}"
    )
    return JSONResponse(
        {
            "lead_id": recorded.subject_id,
            "outcome": recorded.outcome.value,
            "decided_at": format_timestamp(recorded.decided_at),
            "recorded_by": recorded.recorded_by,
            "recorded_at": format_timestamp(recorded.recorded_at),
            "created": recorded.created,
        },
        status_code=201 if recorded.created else 200,
    )


def _record_outcome(
    ledger: ConsentLedger, given: schemas.OutcomeIn, actor: str
) -> outcomes.RecordedOutcome:
    with ledger.database.write() as session:
        subject_id = _lead_id(ledger, session, given.email)
        return outcomes.record_outcome(
            session, subject_id, given.outcome, given.decided_at, actor=actor
        )


def _bant_json(bant: dict[str, qualification.BantValue]) -> dict[str, object]:
    return {
        name: (
            {
                "value": bant[name].value,
                "recorded_by": bant[name].actor,
                "recorded_at": format_timestamp(bant[name].recorded_at),
            }
            if name in bant
            else None
        )
        for name in qualification.BANT_FIELDS
    }


async def post_qualification(request: Request) -> JSONResponse:
    caller = await run_in_threadpool(_authenticate, request)
    given = schemas.parse_qualification(await read_json_object(request))
    subject_id, bant = await run_in_threadpool(
        _qualify, _ledger(request), given, f"api:{caller.name}"
    )
    return JSONResponse({"lead_id": subject_id, "qualification": _bant_json(bant)}, status_code=201)


def _qualify(
    ledger: ConsentLedger, given: schemas.QualificationIn, actor: str
) -> tuple[str, dict[str, qualification.BantValue]]:
    with ledger.database.write() as session:
        subject_id = _lead_id(ledger, session, given.email)
        return subject_id, qualification.record(
            session, subject_id, given.values, actor=actor, now=utcnow()
        )


def _account_json(account: accounts.Account) -> dict[str, object]:
    return {
        "domain": account.domain,
        "members": account.members,
        "score": account.score,
        "top_score": account.top_score,
        "stage": account.stage,
        "buying_committee": list(account.committee),
    }


def get_accounts(request: Request) -> JSONResponse:
    _authenticate(request)
    query = schemas.parse_accounts_query(request.query_params, _lifecycle(request))
    with _database(request).read() as session:
        rows = accounts.list_accounts(
            session.connection(), stage=query.stage, limit=query.limit, after=query.after
        )
    return JSONResponse(
        {
            "accounts": [_account_json(a) for a in rows],
            "next_cursor": rows[-1].domain if len(rows) == query.limit else None,
        }
    )


def get_account(request: Request) -> JSONResponse:
    _authenticate(request)
    if request.query_params:
        raise InvalidInput(
            "unknown parameter",
            fields={k[:64]: "unknown parameter" for k in request.query_params},
        )
    domain = schemas.parse_domain(request.path_params["domain"])
    with _database(request).read() as session:
        found = accounts.get_account(session.connection(), domain)
    if found is None:
        raise NotFound(
            "no account: no permissioned lead with this domain, or a free-mail domain",
            fields={"domain": "no account"},
        )
    account, members = found
    return JSONResponse(
        {
            **_account_json(account),
            "leads": [
                {
                    "lead_id": m.subject_id,
                    "email": m.email,
                    "stage": m.stage,
                    "score": m.score,
                    "job_title": m.job_title,
                }
                for m in members
            ],
        }
    )


async def post_ack(request: Request) -> JSONResponse:
    caller = await run_in_threadpool(_authenticate, request)
    email = schemas.parse_ack(await read_json_object(request))
    ack = await run_in_threadpool(_ack, _ledger(request), email, f"api:{caller.name}")
    return JSONResponse(
        {
            "lead_id": ack.subject_id,
            "stage": ack.stage,
            "entered_at": format_timestamp(ack.entered_at),
            "acknowledged_at": format_timestamp(ack.acked_at),
            "acknowledged_by": ack.actor,
            "due_at": format_timestamp(ack.due_at) if ack.due_at else None,
            "within_sla": ack.within_sla,
        },
        status_code=201 if ack.created else 200,
    )


def _ack(ledger: ConsentLedger, email: str, actor: str) -> sla.Acknowledgement:
    with ledger.database.write() as session:
        subject_id = _lead_id(ledger, session, email)
        return sla.acknowledge(session, subject_id, actor=actor, now=utcnow())


def get_sla(request: Request) -> JSONResponse:
    _authenticate(request)
    query = schemas.parse_sla_query(request.query_params)
    with _database(request).read() as session:
        page = sla.pending(
            session, now=utcnow(), state=query.state, limit=query.limit, after=query.after
        )
        rows = page.handoffs
    return JSONResponse(
        {
            "leads": [
                {
                    "lead_id": r.subject_id,
                    "email": r.email,
                    "stage": r.stage,
                    "score": r.score,
                    "entered_at": format_timestamp(r.entered_at),
                    "due_at": format_timestamp(r.due_at),
                    "state": r.state.value if r.state else "open",
                }
                for r in rows
            ],
            "next_cursor": page.next_cursor,
        }
    )


routes = [
    Route("/api/events", post_events, methods=["POST"]),
    Route("/api/leads", get_leads, methods=["GET"]),
    Route("/api/leads/score", get_score, methods=["GET"]),
    Route("/api/leads/stage", post_stage, methods=["POST"]),
    Route("/api/leads/qualification", post_qualification, methods=["POST"]),
    Route("/api/leads/ack", post_ack, methods=["POST"]),
    Route("/api/leads/sla", get_sla, methods=["GET"]),
    Route("/api/accounts", get_accounts, methods=["GET"]),
    Route("/api/accounts/{domain}", get_account, methods=["GET"]),
    Route("/api/leads/outcome", post_outcome, methods=["POST"]),
    Route("/api/leads/type", post_lead_type, methods=["POST"]),
]
