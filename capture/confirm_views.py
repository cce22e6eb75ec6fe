"""The double opt-in link: ``GET /confirm/{token}`` shows what it would confirm and
changes nothing; ``POST /confirm/{token}`` records ``confirmed``."""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capture import double_opt_in, embedding
from capture.context import capture_state, database_of, settings_of, templates_of
from capture.tokens import CaptureTokens
from consent_ledger import receipts
from consent_ledger.checkpoints import CheckpointSigner
from consent_ledger.evidence import EvidenceValue, clean_evidence
from zeroparty.db import Database
from zeroparty.http import JSONResponse, wants_json
from zeroparty.mail import LeadLinker, deliver_pending, transport_for
from zeroparty.settings import Settings


def _confirm_view(
    database: Database, tokens: CaptureTokens, raw: str
) -> double_opt_in.ConfirmationView:
    token = tokens.read_confirm(raw)
    with database.read() as session:
        return double_opt_in.confirmation_view(session, token)


def _confirm(
    database: Database, tokens: CaptureTokens, raw: str, evidence: dict[str, EvidenceValue]
) -> tuple[double_opt_in.ConfirmationView, tuple[str, ...]]:
    token = tokens.read_confirm(raw)
    with database.write() as session:
        done = double_opt_in.confirm(
            session, token, {**evidence, "submission": token.submission_id}
        )
        return double_opt_in.confirmation_view(session, token), done


def _confirm_page(
    request: Request, view: double_opt_in.ConfirmationView, done: tuple[str, ...] | None
) -> Response:
    nonce = embedding.new_nonce()
    context = {
        "view": view,
        "done": done,
        "token": request.path_params["token"],
        "nonce": nonce,
    }
    return templates_of(request).TemplateResponse(
        request, "capture/confirm.html", context, headers=embedding.page_headers(nonce, ())
    )


async def confirm_page(request: Request) -> Response:
    """``GET /confirm/{token}``: says what would be confirmed; changes nothing (mail
    scanners and link previews fetch links before people do)."""
    state = capture_state(request)
    view = await run_in_threadpool(
        _confirm_view, database_of(request), state.tokens, request.path_params["token"]
    )
    return _confirm_page(request, view, None)


async def confirm_post(request: Request) -> Response:
    """``POST /confirm/{token}``: records ``confirmed`` with its own evidence."""
    state = capture_state(request)
    origin = embedding.cross_origin(request)
    if origin is not None:
        embedding.check_origin(origin, ())
    evidence = clean_evidence(
        {
            k: v
            for k, v in {
                "ip": request.client.host if request.client else None,
                "user_agent": request.headers.get("user-agent"),
                "method": "confirmation-link",
            }.items()
            if v is not None and v != "testclient"
        }
    )
    database = database_of(request)
    view, done = await run_in_threadpool(
        _confirm, database, state.tokens, request.path_params["token"], evidence
    )
    background = None
    settings = settings_of(request)
    if done and settings.mail_receipts:
        token = state.tokens.read_confirm(request.path_params["token"])
        background = BackgroundTask(
            _mail_receipt,
            database,
            settings,
            request.app.state.checkpoint_signer,
            token.subject_id,
            getattr(request.app.state, "lead_links", None),
        )
    if wants_json(request):
        return JSONResponse({"confirmed": list(done)}, background=background)
    response = _confirm_page(request, view, done)
    response.background = background
    return response


def _mail_receipt(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    subject_id: str,
    lead_links: LeadLinker | None,
) -> None:
    """After the answer is sent: the lead's signed receipt by mail (SPEC: receipts a
    regulator can verify), then delivery."""
    if receipts.mail_receipt(database, settings, signer, subject_id, lead_links):
        deliver_pending(database, transport_for(settings.smtp_url, settings.outbox_dir))


routes = [
    Route("/confirm/{token}", confirm_page, methods=["GET"]),
    Route("/confirm/{token}", confirm_post, methods=["POST"]),
]
