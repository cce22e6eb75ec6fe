"""The preference center's HTTP surface: thin handlers over :mod:`preference_center`.

``GET /p/{token}`` changes nothing (mail scanners follow links): it swaps the token for a
short-lived signed cookie (HttpOnly, SameSite=Strict, Secure on https) and sends the
browser on to the clean URL ``/p/``, so the token leaves the address bar and history.
Every cookie-authenticated POST checks the origin and a CSRF nonce bound to the cookie.
``POST /u/{token}`` is RFC 8058 one-click unsubscribe: no cookie, no page to click.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

# Registers the ledger's personal-data provider (the app always erases through it).
import consent_ledger.erasure
import preference_center.form_topics  # (registers the form topics listener)
import preference_center.personal_data  # noqa: F401  (registers this package's provider)
from consent_ledger.actions import ConsentMethod, ConsentSource
from consent_ledger.models import Subject
from consent_ledger.receipts import build_receipt
from consent_ledger.requests import RequestChannel, RequestKind, record_request
from consent_ledger.subjects import InvalidEmail
from preference_center import export, forms, mails, services
from preference_center.locale import choose_locale, strings
from preference_center.tokens import (
    MAX_AGE,
    LinkClaim,
    LinkPurpose,
    LinkTokens,
    check_not_revoked,
)
from zeroparty.crosssite import require_same_origin
from zeroparty.db import Database
from zeroparty.mail import queued_mail_ids, send_after_commit
from zeroparty.settings import Settings
from zeroparty.tokens import TokenError

COOKIE = "zp_pref"
COOKIE_PATH = "/p"
NO_REFERRER = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
NOTICES = ("saved", "unsubscribed_all", "erase_requested")
SELF_SERVICE = "the lead (self-service)"


class SessionMissing(TokenError):
    status_code = 401
    code = "session_expired"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _tokens(request: Request) -> LinkTokens:
    tokens: LinkTokens | None = getattr(request.app.state, "preference_tokens", None)
    if tokens is None:
        tokens = LinkTokens(_settings(request))
        request.app.state.preference_tokens = tokens
    return tokens


def _render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    locale: str | None = None,
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    lang = locale or choose_locale(None, request.headers.get("accept-language"))
    response = templates.TemplateResponse(
        request,
        f"preference_center/{template}",
        {**context, "lang": lang, "t": strings(lang)},
        status_code=status,
        headers=NO_REFERRER,
    )
    return response


def _context(request: Request) -> services.ChangeContext:
    return services.ChangeContext(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def _link_pages(endpoint: Endpoint) -> Endpoint:
    """Token problems become a page that says what is wrong and offers a fresh link."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except TokenError as exc:
            return _link_problem(request, exc)
        except services.SubjectGone:
            response = _render(request, "message.html", {"kind": "erased"}, status=410)
            response.delete_cookie(COOKIE, path=COOKIE_PATH)
            return response

    return guarded


def _link_problem(request: Request, exc: TokenError) -> Response:
    kinds = {
        "token_expired": "link_expired",
        "token_wrong_purpose": "link_wrong_purpose",
        "token_revoked": "link_revoked",
        "session_expired": "session_expired",
    }
    kind = kinds.get(exc.code, "link_invalid")
    response = _render(
        request, "request_link.html", {"problem": kind, "code": exc.code}, status=exc.status_code
    )
    if kind == "session_expired":
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _read_link(request: Request, purpose: LinkPurpose, token: str) -> LinkClaim:
    claim = _tokens(request).read(purpose, token)
    with _database(request).read() as session:
        check_not_revoked(session, claim)
    return claim


def _cookie_claim(request: Request) -> LinkClaim:
    """The session cookie's claim (signature and age); revocation is checked by callers."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        raise SessionMissing("your session has ended; open the link from your email again")
    try:
        return _tokens(request).read(LinkPurpose.SESSION, raw)
    except TokenError as exc:
        raise SessionMissing("your session has ended; open the link from your email again") from exc


def _session_claim(request: Request) -> LinkClaim:
    claim = _cookie_claim(request)
    with _database(request).read() as session:
        check_not_revoked(session, claim)
    return claim


def _set_session(request: Request, response: Response, claim: LinkClaim) -> None:
    value = _tokens(request).issue(LinkPurpose.SESSION, claim)
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE[LinkPurpose.SESSION],
        path=COOKIE_PATH,
        secure=_settings(request).base_url.startswith("https://"),
        httponly=True,
        samesite="strict",
    )


@_link_pages
async def open_link(request: Request) -> Response:
    """``GET /p/{token}``: check the link, set the session cookie, go to ``/p/``."""
    claim = await run_in_threadpool(
        _read_link, request, LinkPurpose.MANAGE, request.path_params["token"]
    )
    session_claim = LinkClaim(claim.subject_id, claim.version, nonce=secrets.token_urlsafe(24))
    # A SameSite=Strict cookie is withheld from a redirect chain a foreign site started
    # (a click in webmail): there, a page of ours continues the navigation instead.
    if request.headers.get("sec-fetch-site") in ("none", "same-origin"):
        response: Response = RedirectResponse("/p/", status_code=303, headers=NO_REFERRER)
    else:
        response = _render(request, "opening.html", {})
        response.headers["Refresh"] = "0; url=/p/"
    _set_session(request, response, session_claim)
    return response


def _page_context(request: Request, claim: LinkClaim) -> tuple[dict[str, Any], str]:
    with _database(request).read() as session:
        check_not_revoked(session, claim)
        subject = session.get(Subject, claim.subject_id)
        locale = choose_locale(
            subject.locale if subject else None, request.headers.get("accept-language")
        )
        page = services.preference_page(session, claim.subject_id, locale)
    done = request.query_params.get("done")
    return {"page": page, "csrf": claim.nonce, "done": done if done in NOTICES else None}, locale


@_link_pages
async def show_page(request: Request) -> Response:
    """``GET /p/``: the preference page of the lead whose cookie this is."""
    # One read transaction checks the session and reads the page.
    context, locale = await run_in_threadpool(_page_context, request, _cookie_claim(request))
    return _render(request, "page.html", context, locale=locale)


def _save(
    request: Request, claim: LinkClaim, action: str, choices: services.Choices | None
) -> None:
    with _database(request).write() as session:
        if action == "unsubscribe_all":
            services.withdraw_purposes(session, claim.subject_id, None, _context(request))
        else:
            assert choices is not None
            services.apply_choices(session, claim.subject_id, choices, _context(request))


async def _post_page(request: Request, claim: LinkClaim) -> Response:
    require_same_origin(request, _settings(request).base_url)
    form = await forms.read_form(request)
    forms.check_csrf(form, claim.nonce)
    action = forms.parse_action(form)
    choices = forms.parse_choices(form) if action == "save" else None
    await run_in_threadpool(_save, request, claim, action, choices)
    done = "saved" if action == "save" else "unsubscribed_all"
    return RedirectResponse(f"/p/?done={done}", status_code=303, headers=NO_REFERRER)


@_link_pages
async def save_page(request: Request) -> Response:
    """``POST /p/``: save the ticked choices, or unsubscribe from everything."""
    claim = await run_in_threadpool(_session_claim, request)
    return await _post_page(request, claim)


@_link_pages
async def save_page_with_token(request: Request) -> Response:
    """``POST /p/{token}``: as ``POST /p/``, for a session opened by this very link."""
    link = await run_in_threadpool(
        _read_link, request, LinkPurpose.MANAGE, request.path_params["token"]
    )
    claim = await run_in_threadpool(_session_claim, request)
    if claim.subject_id != link.subject_id:
        raise SessionMissing("this link belongs to someone else's session; open it again")
    return await _post_page(request, claim)


def _download(body: dict[str, Any], filename: str) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={**NO_REFERRER, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _export(request: Request, claim: LinkClaim, receipts: bool) -> dict[str, Any]:
    database = _database(request)
    if not receipts:
        with database.write() as session:
            body = export.subject_export(session, claim.subject_id)
            # The download answers an access request (GDPR Art. 15) at once: kept in
            # the queue the console shows, as completed.
            record_request(
                session, claim.subject_id, RequestKind.ACCESS, RequestChannel.PREFERENCE_CENTER,
                handled_by=SELF_SERVICE, completed=True,
            )  # fmt: skip
            return body
    with database.read() as session:
        services.live_subject(session, claim.subject_id)
    state = request.app.state
    return build_receipt(database, state.settings, state.checkpoint_signer.get(), claim.subject_id)


@_link_pages
async def download_export(request: Request) -> Response:
    """``GET /p/export``: everything held about the lead, as JSON (Art. 15 and 20)."""
    claim = await run_in_threadpool(_session_claim, request)
    body = await run_in_threadpool(_export, request, claim, False)
    return _download(body, "my-data.json")


@_link_pages
async def download_receipts(request: Request) -> Response:
    """``GET /p/receipts``: a signed consent receipt (Kantara v1.1 fields) with the
    inclusion proof of each purpose's latest entry; checkable offline."""
    claim = await run_in_threadpool(_session_claim, request)
    body = await run_in_threadpool(_export, request, claim, True)
    return _download(body, "my-consent-receipts.json")


def _request_erasure(request: Request, claim: LinkClaim) -> tuple[str, ...]:
    """Queue the erasure confirmation; returns the ids of the mails queued."""
    with _database(request).write() as session:
        subject, profile = services.live_subject(session, claim.subject_id)
        locale = choose_locale(subject.locale, request.headers.get("accept-language"))
        mails.request_erasure(session, _settings(request), claim.subject_id, profile.email, locale)
        return queued_mail_ids(session)


@_link_pages
async def ask_erasure(request: Request) -> Response:
    """``POST /p/erase``: mail a link that confirms the erasure."""
    claim = await run_in_threadpool(_session_claim, request)
    require_same_origin(request, _settings(request).base_url)
    form = await forms.read_form(request)
    forms.check_csrf(form, claim.nonce)
    mail_ids = await run_in_threadpool(_request_erasure, request, claim)
    background = BackgroundTask(send_after_commit, _database(request), _settings(request), mail_ids)
    return RedirectResponse(
        "/p/?done=erase_requested", status_code=303, headers=NO_REFERRER, background=background
    )


def _subject_locale(request: Request, subject_id: str) -> str:
    with _database(request).read() as session:
        subject = session.get(Subject, subject_id)
        return choose_locale(
            subject.locale if subject else None, request.headers.get("accept-language")
        )


@_link_pages
async def confirm_erasure_page(request: Request) -> Response:
    """``GET /p/erase/{token}``: a page with the confirming button; erases nothing."""
    token = request.path_params["token"]
    claim = await run_in_threadpool(_read_link, request, LinkPurpose.ERASE, token)
    locale = await run_in_threadpool(_subject_locale, request, claim.subject_id)
    return _render(request, "erase_confirm.html", {"token": token}, locale=locale)


def _erase(request: Request, claim: LinkClaim) -> None:
    with _database(request).write() as session:
        check_not_revoked(session, claim)
        services.live_subject(session, claim.subject_id)
        record_request(
            session, claim.subject_id, RequestKind.ERASURE, RequestChannel.PREFERENCE_CENTER,
            handled_by=SELF_SERVICE, completed=True,
        )  # fmt: skip
        consent_ledger.erasure.erase_subject(
            session,
            claim.subject_id,
            source=ConsentSource.PREFERENCE_CENTER,
            method=ConsentMethod.EMAIL_LINK,
            source_ref="self-service-erasure",
        )
    consent_ledger.erasure.scrub_sqlite(_database(request))


@_link_pages
async def confirm_erasure(request: Request) -> Response:
    """``POST /p/erase/{token}``: erase the lead's personal data now."""
    token = request.path_params["token"]
    claim = await run_in_threadpool(_read_link, request, LinkPurpose.ERASE, token)
    require_same_origin(request, _settings(request).base_url)
    locale = await run_in_threadpool(_subject_locale, request, claim.subject_id)
    await run_in_threadpool(_erase, request, claim)
    response = _render(request, "message.html", {"kind": "erased"}, locale=locale)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


async def request_link_page(request: Request) -> Response:
    """``GET /p/request-link``: the form to ask for a fresh link."""
    return _render(request, "request_link.html", {"problem": None})


def _note_link_request(request: Request, email: str) -> None:
    with _database(request).write() as session:
        mails.note_link_request(session, _settings(request), email)


def _send_link(
    database: Database, settings: Settings, email: str, accept_language: str | None
) -> None:
    """After the answer: look the address up, queue its link if it is a lead's, send it."""
    with database.write() as session:
        mail_id = mails.queue_link_mail(session, settings, email, accept_language)
    if mail_id is not None:
        send_after_commit(database, settings, (mail_id,))


async def request_link(request: Request) -> Response:
    """``POST /p/request-link``: the same answer, after the same work, whether or not the
    address is known: check it, count it against the rate limit, answer. The look-up and
    the mail happen after the answer was sent (a background task) in both cases."""
    require_same_origin(request, _settings(request).base_url)
    form = await forms.read_form(request, max_fields=5)
    try:
        email = forms.parse_email(form)
    except InvalidEmail as exc:
        return _render(
            request,
            "request_link.html",
            {"problem": None, "error": exc.fields["email"]},
            status=422,
        )
    await run_in_threadpool(_note_link_request, request, email)
    response = _render(request, "message.html", {"kind": "request_done"})
    response.background = BackgroundTask(
        _send_link,
        _database(request),
        _settings(request),
        email,
        request.headers.get("accept-language"),
    )
    return response


@_link_pages
async def unsubscribe_page(request: Request) -> Response:
    """``GET /u/{token}``: a browser opened the List-Unsubscribe URL; one button."""
    token = request.path_params["token"]
    claim = await run_in_threadpool(_read_link, request, LinkPurpose.UNSUBSCRIBE, token)
    locale = await run_in_threadpool(_subject_locale, request, claim.subject_id)
    return _render(request, "unsubscribe.html", {"token": token}, locale=locale)


def _one_click(request: Request, claim: LinkClaim) -> str:
    context = services.ChangeContext(
        method=ConsentMethod.ONE_CLICK,
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        via="one-click-unsubscribe",
    )
    with _database(request).write() as session:
        check_not_revoked(session, claim)
        services.withdraw_purposes(session, claim.subject_id, claim.purposes, context)
        subject = session.get(Subject, claim.subject_id)
        return choose_locale(
            subject.locale if subject else None, request.headers.get("accept-language")
        )


@_link_pages
async def one_click_unsubscribe(request: Request) -> Response:
    """``POST /u/{token}`` (RFC 8058): withdraw the token's purposes; 200, nothing to click."""
    token = request.path_params["token"]
    claim = _tokens(request).read(LinkPurpose.UNSUBSCRIBE, token)
    form = await forms.read_form(request, max_fields=10)
    forms.check_one_click(form)
    locale = await run_in_threadpool(_one_click, request, claim)
    return _render(request, "message.html", {"kind": "unsubscribed"}, locale=locale)


routes = [
    Route("/p/", show_page, methods=["GET"]),
    Route("/p/", save_page, methods=["POST"]),
    Route("/p/export", download_export, methods=["GET"]),
    Route("/p/receipts", download_receipts, methods=["GET"]),
    Route("/p/request-link", request_link_page, methods=["GET"]),
    Route("/p/request-link", request_link, methods=["POST"]),
    Route("/p/erase", ask_erasure, methods=["POST"]),
    Route("/p/erase/{token}", confirm_erasure_page, methods=["GET"]),
    Route("/p/erase/{token}", confirm_erasure, methods=["POST"]),
    Route("/p/{token}", open_link, methods=["GET"]),
    Route("/p/{token}", save_page_with_token, methods=["POST"]),
    Route("/u/{token}", unsubscribe_page, methods=["GET"]),
    Route("/u/{token}", one_click_unsubscribe, methods=["POST"]),
]
