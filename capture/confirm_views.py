"""The double opt-in link: ``GET /confirm/{token}`` shows what it would confirm and
changes nothing; ``POST /confirm/{token}`` records ``confirmed``. The same for a held
submission (:mod:`capture.held_confirmation`): ``GET /confirm/held/{token}`` shows it,
``POST`` applies it."""

from __future__ import annotations

import logging

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from capture import double_opt_in, embedding, held_confirmation
from capture.context import capture_state, database_of, ledger_of, settings_of, templates_of
from capture.services import DefinitionStore
from capture.tokens import CaptureTokens
from consent_ledger.api import ConsentLedger
from consent_ledger.evidence import EvidenceValue, clean_evidence
from consent_ledger.proofs import receipts
from consent_ledger.proofs.checkpoints import CheckpointError
from consent_ledger.proofs.transparency import SignerSource
from zeroparty import i18n
from zeroparty.db import Database
from zeroparty.http import JSONResponse, wants_json
from zeroparty.mail import LeadLinker, send_after_commit
from zeroparty.settings import Settings

log = logging.getLogger("zeroparty.capture")


def _language(request: Request) -> str:
    """The page's language: the link's ``?lang=`` (the mail's language), else the
    browser's."""
    return i18n.choose_language(
        i18n.languages(),
        requested=request.query_params.get("lang"),
        accept_language=request.headers.get("accept-language"),
        default=i18n.SOURCE_LANGUAGE,
    )


def _confirm_view(
    ledger: ConsentLedger, tokens: CaptureTokens, raw: str
) -> double_opt_in.ConfirmationView:
    token = tokens.read_confirm(raw)
    with ledger.database.read() as session:
        return double_opt_in.confirmation_view(session, ledger, token)


def _confirm(
    ledger: ConsentLedger, tokens: CaptureTokens, raw: str, evidence: dict[str, EvidenceValue]
) -> tuple[double_opt_in.ConfirmationView, tuple[str, ...]]:
    token = tokens.read_confirm(raw)
    with ledger.database.write() as session:
        done = double_opt_in.confirm(
            session, ledger, token, {**evidence, "submission": token.submission_id}
        )
        return double_opt_in.confirmation_view(session, ledger, token), done


def _confirm_page(
    request: Request, view: double_opt_in.ConfirmationView, done: tuple[str, ...] | None
) -> Response:
    nonce = embedding.new_nonce()
    language = _language(request)
    context = {
        "view": view.in_language(language),
        "done": done,
        "token": request.path_params["token"],
        "nonce": nonce,
    }
    with i18n.activated(language):
        return templates_of(request).TemplateResponse(
            request, "capture/confirm.html", context, headers=embedding.page_headers(nonce, ())
        )


async def confirm_page(request: Request) -> Response:
    """``GET /confirm/{token}``: says what would be confirmed; changes nothing (mail
    scanners and link previews fetch links before people do)."""
    state = capture_state(request)
    ledger = ledger_of(request)
    view = await ledger.database.run(
        _confirm_view, ledger, state.tokens, request.path_params["token"]
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
    view, done = await database.run(
        _confirm, ledger_of(request), state.tokens, request.path_params["token"], evidence
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


def _held_view(
    ledger: ConsentLedger, tokens: CaptureTokens, store: DefinitionStore, raw: str, language: str
) -> held_confirmation.HeldView:
    token = tokens.read_held(raw)
    with ledger.database.read() as session:
        return held_confirmation.held_view(session, ledger, store, token, language)


def _confirm_held(
    ledger: ConsentLedger,
    tokens: CaptureTokens,
    store: DefinitionStore,
    raw: str,
    confirmation: dict[str, EvidenceValue],
    language: str,
) -> held_confirmation.HeldView:
    token = tokens.read_held(raw)
    with ledger.database.write() as session:
        return held_confirmation.confirm_held(session, ledger, store, token, confirmation, language)


def _held_page(request: Request, view: held_confirmation.HeldView) -> Response:
    nonce = embedding.new_nonce()
    context = {"view": view, "token": request.path_params["token"], "nonce": nonce}
    with i18n.activated(_language(request)):
        return templates_of(request).TemplateResponse(
            request, "capture/held.html", context, headers=embedding.page_headers(nonce, ())
        )


async def held_page(request: Request) -> Response:
    """``GET /confirm/held/{token}``: what was sent under the address; changes nothing."""
    state = capture_state(request)
    ledger = ledger_of(request)
    view = await ledger.database.run(
        _held_view,
        ledger,
        state.tokens,
        state.store,
        request.path_params["token"],
        _language(request),
    )
    return _held_page(request, view)


async def held_post(request: Request) -> Response:
    """``POST /confirm/held/{token}``: the owner of the address applies what was sent,
    with the confirmation's own evidence."""
    state = capture_state(request)
    origin = embedding.cross_origin(request)
    if origin is not None:
        embedding.check_origin(origin, ())
    confirmation = clean_evidence(
        {
            k: v
            for k, v in {
                "confirmed_by": "confirmation-link",
                "confirmed_ip": request.client.host if request.client else None,
                "confirmed_user_agent": request.headers.get("user-agent"),
            }.items()
            if v is not None and v != "testclient"
        }
    )
    ledger = ledger_of(request)
    view = await ledger.database.run(
        _confirm_held,
        ledger,
        state.tokens,
        state.store,
        request.path_params["token"],
        confirmation,
        _language(request),
    )
    if wants_json(request):
        return JSONResponse({"status": view.status.value})
    return _held_page(request, view)


def _mail_receipt(
    database: Database,
    settings: Settings,
    signers: SignerSource,
    subject_id: str,
    lead_links: LeadLinker | None,
) -> None:
    """After the answer is sent: the lead's signed receipt by mail (SPEC: receipts a
    regulator can verify), then delivery of that mail alone. A host whose checkpoint key
    is refused sends no receipt (the confirmation itself is stored and answered); the
    lead can download one from the preference center once the key is fixed."""
    try:
        signer = signers.get()
    except CheckpointError as exc:
        log.error("no receipt mailed after a confirmation: %s", exc)
        return
    mail_id = receipts.mail_receipt(database, settings, signer, subject_id, lead_links)
    if mail_id is not None:
        send_after_commit(database, settings, (mail_id,))


routes = [
    Route("/confirm/held/{token}", held_page, methods=["GET"]),
    Route("/confirm/held/{token}", held_post, methods=["POST"]),
    Route("/confirm/{token}", confirm_page, methods=["GET"]),
    Route("/confirm/{token}", confirm_post, methods=["POST"]),
]
