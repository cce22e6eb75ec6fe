"""The public request page: anyone may ask us to act on a data-protection right.

``GET /request`` shows a form (address, kind of request); ``POST /request`` counts the
address against the link rate limit (the one ``/p/request-link`` uses, per address and
hour), keeps the request pending and mails a signed link, valid 24 hours, to the address,
whether or not we know it: the answer, its work and its timing are the same for a
stranger's address and a lead's, so the page tells nobody who is a lead. Only the person
who follows the link (``GET /request/confirm/{token}`` shows a button, since mail scanners
follow links; ``POST`` records) learns the outcome: the request is in the queue with its
deadline, or, for an address we hold nothing on, that we hold nothing (recorded as such).
A link records once; following it again says it was recorded already.

Tokens carry only a random nonce (no address: tokens travel in URLs and logs); the
pending row holding the address is deleted when the link is followed and purged once it
expired.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from consent_ledger.api import InvalidEmail
from consent_ledger.requests import (
    CONFIRMATION_HOURS,
    ConfirmationGone,
    RequestKind,
    RequestStatus,
    confirm,
    parse_kind,
    start_confirmation,
)
from preference_center import forms, mails
from zeroparty import i18n
from zeroparty.crosssite import require_same_origin
from zeroparty.db import Database
from zeroparty.errors import InvalidInput
from zeroparty.i18n import N_
from zeroparty.mail import Mail, in_language, queue_mail, queued_mail_ids, send_after_commit
from zeroparty.settings import Settings
from zeroparty.tokens import TokenError, TokenExpired, TokenService

SALT = "preference-center.data-subject-request"
NO_REFERRER = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

PUBLIC_KINDS: dict[RequestKind, str] = {
    RequestKind.ACCESS: N_("Tell me what you hold about me and send me a copy"),
    RequestKind.PORTABILITY: N_("Give me my data in a machine-readable format"),
    RequestKind.ERASURE: N_("Delete my personal data"),
    RequestKind.RECTIFICATION: N_("Correct data about me that is wrong"),
    RequestKind.RESTRICTION: N_("Restrict what you do with my data"),
    RequestKind.OBJECTION: N_("I object to your processing of my data (including marketing)"),
    RequestKind.OPT_OUT_SALE: N_("Do not sell or share my personal information"),
    RequestKind.LIMIT_SENSITIVE: N_("Limit the use of my sensitive personal information"),
}
MAIL_SUBJECT = N_("Confirm your data-protection request")
MAIL_TEXT = N_(
    "Someone, we hope you, asked us on %(page)s to act on a data-protection request for "
    "this address:\n\n  %(kind)s\n\nTo confirm it is yours, open this link within "
    "%(hours)s hours:\n\n%(link)s\n\nIf you did not ask, ignore this mail: nothing happens.\n"
)


def _language(request: Request) -> str:
    """``?lang=``, then the browser's language, among those with a catalogue."""
    return i18n.choose_language(
        i18n.languages(),
        requested=request.query_params.get("lang"),
        accept_language=request.headers.get("accept-language"),
        default=i18n.SOURCE_LANGUAGE,
    )


def _kinds(language: str) -> dict[RequestKind, str]:
    return {kind: i18n.gettext(language, text) for kind, text in PUBLIC_KINDS.items()}


def _tokens(settings: Settings) -> TokenService:
    return TokenService(
        settings.secret_keys, SALT, int(timedelta(hours=CONFIRMATION_HOURS).total_seconds())
    )


def _render(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    language = _language(request)
    errors = {
        name: i18n.translate(language, problem)
        for name, problem in context.pop("errors", {}).items()
    }
    with i18n.activated(language):
        return templates.TemplateResponse(
            request,
            f"preference_center/{template}",
            {"kinds": _kinds(language), "lang": language, "errors": errors, "form": {}, **context},
            status_code=status,
            headers=NO_REFERRER,
        )


async def request_page(request: Request) -> Response:
    """``GET /request``: the form."""
    return _render(request, "request_form.html", {})


def _ask(
    database: Database, settings: Settings, email: str, kind: RequestKind, language: str
) -> tuple[str, ...]:
    """Count the address, keep the request pending, queue its link (in the language of
    the page it was asked on, which its link keeps); the mails queued."""
    with database.write() as session:
        mails.note_link_request(session, settings, email)
        nonce = start_confirmation(session, email, kind)
        link = f"{settings.base_url}/request/confirm/{_tokens(settings).issue({'n': nonce})}"
        if language != i18n.SOURCE_LANGUAGE:
            link += f"?lang={language}"
        text = i18n.gettext(language, MAIL_TEXT) % {
            "page": f"{settings.base_url}/request",
            "kind": i18n.gettext(language, PUBLIC_KINDS[kind]),
            "hours": CONFIRMATION_HOURS,
            "link": link,
        }
        subject = i18n.gettext(language, MAIL_SUBJECT)
        queue_mail(
            session, Mail(to=email, subject=subject, text=text, headers=in_language(language))
        )
        return queued_mail_ids(session)


async def ask(request: Request) -> Response:
    """``POST /request`` (``email``, ``kind``): mail the confirming link."""
    settings: Settings = request.app.state.settings
    require_same_origin(request, settings.base_url)
    form = await forms.read_form(request, max_fields=5)
    raw_kind = form.get("kind")
    values = {"email": str(form.get("email") or ""), "kind": str(raw_kind or "")}
    errors: dict[str, str] = {}
    try:
        email = forms.parse_email(form)
    except InvalidEmail as exc:
        errors["email"] = exc.fields.get("email", N_("not a valid email address"))
    try:
        kind = parse_kind(raw_kind if isinstance(raw_kind, str) else "")
    except InvalidInput:
        errors["kind"] = N_("choose one of the kinds of request listed")
    if errors:
        return _render(request, "request_form.html", {"errors": errors, "form": values}, 422)
    database: Database = request.app.state.database
    mail_ids = await database.run(_ask, database, settings, email, kind, _language(request))
    response = _render(request, "request_message.html", {"outcome": "mailed"})
    response.background = BackgroundTask(send_after_commit, database, settings, mail_ids)
    return response


def _nonce(settings: Settings, token: str) -> str:
    nonce = _tokens(settings).read(token).get("n")
    if not isinstance(nonce, str) or len(nonce) != 32:
        raise TokenError("this link is not valid")
    return nonce


def _link_problem(request: Request, exc: TokenError) -> Response:
    outcome = "expired" if isinstance(exc, TokenExpired) else "invalid"
    return _render(request, "request_message.html", {"outcome": outcome}, exc.status_code)


async def confirm_page(request: Request) -> Response:
    """``GET /request/confirm/{token}``: a page with the confirming button; records nothing."""
    token = request.path_params["token"]
    try:
        _nonce(request.app.state.settings, token)
    except TokenError as exc:
        return _link_problem(request, exc)
    return _render(request, "request_confirm.html", {"token": token})


def _confirm(database: Database, nonce: str) -> tuple[str, str | None, bool]:
    with database.write() as session:
        confirmed = confirm(session, nonce)
        request = confirmed.request
        held = request.status != RequestStatus.NOTHING_HELD
        due = f"{request.due_at:%Y-%m-%d}" if held else None
        return request.kind, due, confirmed.replayed


async def confirm_request(request: Request) -> Response:
    """``POST /request/confirm/{token}``: record the request, once."""
    settings: Settings = request.app.state.settings
    require_same_origin(request, settings.base_url)
    try:
        nonce = _nonce(settings, request.path_params["token"])
    except TokenError as exc:
        return _link_problem(request, exc)
    database: Database = request.app.state.database
    try:
        kind, due, replayed = await database.run(_confirm, database, nonce)
    except ConfirmationGone as exc:
        return _render(request, "request_message.html", {"outcome": "expired"}, exc.status_code)
    outcome = "replayed" if replayed else ("received" if due else "nothing_held")
    context = {
        "outcome": outcome,
        "kind": _kinds(_language(request))[RequestKind(kind)],
        "due": due,
    }
    return _render(request, "request_message.html", context, 200)


routes = [
    Route("/request", request_page, methods=["GET"]),
    Route("/request", ask, methods=["POST"]),
    Route("/request/confirm/{token}", confirm_page, methods=["GET"]),
    Route("/request/confirm/{token}", confirm_request, methods=["POST"]),
]
