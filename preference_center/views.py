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
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from consent_ledger.actions import ConsentMethod, ConsentSource
from consent_ledger.api import PENDING, ConsentLedger, InvalidEmail, scrub_sqlite
from consent_ledger.proofs.receipts import build_receipt
from consent_ledger.requests import RequestChannel, RequestKind, record_request
from preference_center import export, forms, mails, services
from preference_center.escaped import page_texts
from preference_center.locale import LanguageWish, strings
from preference_center.tokens import MAX_AGE, LinkClaim, LinkPurpose, LinkTokens, TokenRevoked
from zeroparty import i18n
from zeroparty.crosssite import require_same_origin
from zeroparty.db import Database
from zeroparty.mail import queued_mail_ids, send_after_commit
from zeroparty.settings import Settings
from zeroparty.tokens import TokenError

COOKIE = "zp_pref"
COOKIE_PATH = "/p"
NO_REFERRER = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
NOTICES = ("saved", "unsubscribed_all", "erase_requested", "confirm_sent")
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
    wish = _wish(request)
    lang = locale or wish.choose(None)
    with i18n.activated(lang):
        return templates.TemplateResponse(
            request,
            f"preference_center/{template}",
            {**context, "lang": lang, "t": page_texts(lang), "lang_query": wish.query()},
            status_code=status,
            headers=NO_REFERRER,
        )


def _wish(request: Request) -> LanguageWish:
    """The page's language as the request asks for it: ``?lang=`` (a mailed link's, or
    one the lead chose), else the lead's recorded locale, else ``Accept-Language``."""
    return LanguageWish.of(request.query_params.get("lang"), request.headers.get("accept-language"))


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


def _ledger(request: Request) -> ConsentLedger:
    ledger: ConsentLedger = request.app.state.ledger
    return ledger


def _cookie_claim(request: Request) -> LinkClaim:
    """The session cookie's claim (signature and age); revocation is checked by callers
    inside their one database hop."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        raise SessionMissing("your session has ended; open the link from your email again")
    try:
        return _tokens(request).read(LinkPurpose.SESSION, raw)
    except TokenError as exc:
        raise SessionMissing("your session has ended; open the link from your email again") from exc


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


def _check_link(database: Database, claim: LinkClaim) -> None:
    with database.lookup() as connection:
        services.check_link_version(connection, claim.subject_id, claim.version)


@_link_pages
async def open_link(request: Request) -> Response:
    """``GET /p/{token}``: check the link, set the session cookie, go to ``/p/``."""
    claim = _tokens(request).read(LinkPurpose.MANAGE, request.path_params["token"])
    database = _database(request)
    await database.run(_check_link, database, claim)
    session_claim = LinkClaim(claim.subject_id, claim.version, nonce=secrets.token_urlsafe(24))
    # A SameSite=Strict cookie is withheld from a redirect chain a foreign site started
    # (a click in webmail): there, a page of ours continues the navigation instead.
    if request.headers.get("sec-fetch-site") in ("none", "same-origin"):
        page = "/p/" + _wish(request).query()  # a mailed link's ?lang= goes along
        response: Response = RedirectResponse(page, status_code=303, headers=NO_REFERRER)
    else:
        response = _render(request, "opening.html", {})
        response.headers["Refresh"] = "0; url=/p/" + _wish(request).query()
    _set_session(request, response, session_claim)
    return response


def _read_page(
    database: Database,
    ledger: ConsentLedger,
    claim: LinkClaim,
    wish: LanguageWish,
    gpc: services.ChangeContext | None,
) -> tuple[services.PreferencePage, str]:
    # One statement: a single snapshot, so no transaction around it.
    with database.lookup_cursor() as cursor:
        lead = _live(
            services.lead_on_cursor(
                cursor, database.engine.dialect, claim.subject_id, claim.version, notices=True
            )
        )
    if gpc is not None and services.gpc_not_yet_honoured(lead):
        # Sec-GPC: 1 from a known lead's browser is their opt-out of sale and sharing
        # (SPEC rule 7, CCPA regs 7025): recorded once, then shown as honoured.
        with database.write_connection() as connection:
            lead = services.live_lead(connection, claim.subject_id, claim.version, notices=True)
            if services.honour_gpc(ledger, connection, lead, gpc):
                lead = services.live_lead(connection, claim.subject_id, claim.version, notices=True)
    locale = wish.choose(lead.locale)
    return services.preference_page(lead, locale, gpc=gpc is not None), locale


def _gpc(request: Request) -> services.ChangeContext | None:
    """The change context of a GPC signal (``Sec-GPC: 1``, the GPC spec's only value),
    or ``None`` without one."""
    if request.headers.get("sec-gpc", "").strip() != "1":
        return None
    return services.ChangeContext(
        method=ConsentMethod.GPC_SIGNAL,
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        via="preference-page-gpc",
    )


@_link_pages
async def show_page(request: Request) -> Response:
    """``GET /p/``: the preference page of the lead whose cookie this is; a GPC signal
    is recorded as the lead's opt-out of sale and sharing (once)."""
    claim = _cookie_claim(request)
    database = _database(request)
    page, locale = await database.run(
        _read_page, database, _ledger(request), claim, _wish(request),
        _gpc(request),
    )  # fmt: skip
    done = request.query_params.get("done")
    context = {"page": page, "csrf": claim.nonce, "done": done if done in NOTICES else None}
    return _render(request, "page.html", context, locale=locale)


def _save(
    database: Database,
    ledger: ConsentLedger,
    settings: Settings,
    claim: LinkClaim,
    choices: services.Choices | None,
    context: services.ChangeContext,
    wish: LanguageWish,
) -> tuple[str, ...]:
    """Apply the choices; returns the ids of the mails queued (a confirmation link for
    grants the ledger left pending)."""
    with database.write_connection() as connection:
        lead = services.load_lead(connection, claim.subject_id, claim.version)
        if choices is None:
            lead = _live(lead)
            services.withdraw_purposes(ledger, connection, lead, None, context)
            return ()
        if lead is not None:
            services.validate_choices(lead, choices)
        lead = _live(lead)
        entries = services.apply_choices(ledger, connection, lead, choices, context)
        pending = {e.purpose for e in entries if e.confirmation_required}
        if not pending:
            return ()
        locale = wish.choose(lead.locale)
        with Session(bind=connection) as session:  # joins the connection's transaction
            mails.queue_grant_confirmation(
                session,
                settings,
                lead.subject_id,
                lead.email,
                locale,
                [(p.key, p.title_in(locale)) for p in lead.purposes if p.key in pending],
            )
            return queued_mail_ids(session)


def _live(lead: services.Lead | None) -> services.Lead:
    if lead is None:
        raise services.SubjectGone("there is no personal data behind this link any more")
    return lead


async def _post_page(request: Request, claim: LinkClaim) -> Response:
    require_same_origin(request, _settings(request).base_url)
    form = await forms.read_form(request)
    forms.check_csrf(form, claim.nonce)
    action = forms.parse_action(form)
    choices = forms.parse_choices(form) if action == "save" else None
    database, settings = _database(request), _settings(request)
    mail_ids = await database.run(
        _save, database, _ledger(request), settings, claim, choices, _context(request),
        _wish(request),
    )  # fmt: skip
    done = "saved" if action == "save" else "unsubscribed_all"
    lang = _wish(request).query("&")
    if mail_ids:
        done = "confirm_sent"
        background = BackgroundTask(send_after_commit, database, settings, mail_ids)
        return RedirectResponse(
            f"/p/?done={done}{lang}", status_code=303, headers=NO_REFERRER, background=background
        )
    return RedirectResponse(f"/p/?done={done}{lang}", status_code=303, headers=NO_REFERRER)


@_link_pages
async def save_page(request: Request) -> Response:
    """``POST /p/``: save the ticked choices, or unsubscribe from everything."""
    return await _post_page(request, _cookie_claim(request))


@_link_pages
async def save_page_with_token(request: Request) -> Response:
    """``POST /p/{token}``: as ``POST /p/``, for a session opened by this very link."""
    link = _tokens(request).read(LinkPurpose.MANAGE, request.path_params["token"])
    claim = _cookie_claim(request)
    if claim.subject_id != link.subject_id:
        raise SessionMissing("this link belongs to someone else's session; open it again")
    if link.version != claim.version:
        # At most one of them is the lead's current version (checked with the save).
        raise TokenRevoked("this link has been withdrawn; a newer one may have been mailed")
    return await _post_page(request, claim)


def _download(body: dict[str, Any], filename: str) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={**NO_REFERRER, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _export(database: Database, ledger: ConsentLedger, claim: LinkClaim) -> dict[str, Any]:
    with database.write() as session:
        services.check_link_version(session, claim.subject_id, claim.version)
        body = export.subject_export(ledger, session, claim.subject_id)
        # The download answers an access request (GDPR Art. 15) at once: kept in
        # the queue the console shows, as completed.
        record_request(
            session, claim.subject_id, RequestKind.ACCESS, RequestChannel.PREFERENCE_CENTER,
            handled_by=SELF_SERVICE, completed=True,
        )  # fmt: skip
        return body


def _receipts(
    database: Database, settings: Settings, signer: Any, claim: LinkClaim
) -> dict[str, Any]:
    with database.read() as session:
        services.check_link_version(session, claim.subject_id, claim.version)
        services.lead_row(session, claim.subject_id)
    return build_receipt(database, settings, signer.get(), claim.subject_id)


@_link_pages
async def download_export(request: Request) -> Response:
    """``GET /p/export``: everything held about the lead, as JSON (Art. 15 and 20)."""
    claim = _cookie_claim(request)
    database = _database(request)
    body = await database.run(_export, database, _ledger(request), claim)
    return _download(body, "my-data.json")


@_link_pages
async def download_receipts(request: Request) -> Response:
    """``GET /p/receipts``: a signed consent receipt (Kantara v1.1 fields) with the
    inclusion proof of each purpose's latest entry; checkable offline."""
    claim = _cookie_claim(request)
    state = request.app.state
    # Always the threadpool: the receipt signs and proves (CPU) besides reading.
    body = await run_in_threadpool(
        _receipts, state.database, state.settings, state.checkpoint_signer, claim
    )
    return _download(body, "my-consent-receipts.json")


def _request_erasure(
    database: Database, settings: Settings, claim: LinkClaim, wish: LanguageWish
) -> tuple[str, ...]:
    """Queue the erasure confirmation; returns the ids of the mails queued."""
    with database.write() as session:
        services.check_link_version(session, claim.subject_id, claim.version)
        lead = services.lead_row(session, claim.subject_id)
        locale = wish.choose(lead.locale)
        mails.request_erasure(session, settings, claim.subject_id, lead.email, locale)
        return queued_mail_ids(session)


@_link_pages
async def ask_erasure(request: Request) -> Response:
    """``POST /p/erase``: mail a link that confirms the erasure."""
    claim = _cookie_claim(request)
    require_same_origin(request, _settings(request).base_url)
    form = await forms.read_form(request)
    forms.check_csrf(form, claim.nonce)
    database, settings = _database(request), _settings(request)
    mail_ids = await database.run(_request_erasure, database, settings, claim, _wish(request))
    background = BackgroundTask(send_after_commit, database, settings, mail_ids)
    return RedirectResponse(
        "/p/?done=erase_requested" + _wish(request).query("&"),
        status_code=303,
        headers=NO_REFERRER,
        background=background,
    )


def _link_locale(database: Database, claim: LinkClaim, wish: LanguageWish) -> str:
    """Check ``claim`` is not revoked; the locale of its lead's pages."""
    with database.read() as session:
        services.check_link_version(session, claim.subject_id, claim.version)
        locale = mails.subject_locale(session, claim.subject_id)
    return wish.choose(locale)


@_link_pages
async def confirm_erasure_page(request: Request) -> Response:
    """``GET /p/erase/{token}``: a page with the confirming button; erases nothing."""
    token = request.path_params["token"]
    claim = _tokens(request).read(LinkPurpose.ERASE, token)
    database = _database(request)
    locale = await database.run(_link_locale, database, claim, _wish(request))
    return _render(request, "erase_confirm.html", {"token": token}, locale=locale)


def _erase(database: Database, ledger: ConsentLedger, claim: LinkClaim, wish: LanguageWish) -> str:
    with database.write() as session:
        services.check_link_version(session, claim.subject_id, claim.version)
        lead = services.lead_row(session, claim.subject_id)
        locale = wish.choose(lead.locale)
        record_request(
            session, claim.subject_id, RequestKind.ERASURE, RequestChannel.PREFERENCE_CENTER,
            handled_by=SELF_SERVICE, completed=True,
        )  # fmt: skip
        ledger.erase(
            session,
            claim.subject_id,
            source=ConsentSource.PREFERENCE_CENTER,
            method=ConsentMethod.EMAIL_LINK,
            source_ref="self-service-erasure",
        )
    scrub_sqlite(database)
    return locale


@_link_pages
async def confirm_erasure(request: Request) -> Response:
    """``POST /p/erase/{token}``: erase the lead's personal data now."""
    token = request.path_params["token"]
    claim = _tokens(request).read(LinkPurpose.ERASE, token)
    require_same_origin(request, _settings(request).base_url)
    database = _database(request)
    locale = await database.run(_erase, database, _ledger(request), claim, _wish(request))
    response = _render(request, "message.html", {"kind": "erased"}, locale=locale)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


async def request_link_page(request: Request) -> Response:
    """``GET /p/request-link``: the form to ask for a fresh link."""
    return _render(request, "request_link.html", {"problem": None})


def _note_link_request(database: Database, settings: Settings, email: str) -> None:
    with database.write() as session:
        mails.note_link_request(session, settings, email)


def _send_link(
    database: Database,
    ledger: ConsentLedger,
    settings: Settings,
    email: str,
    wish: LanguageWish,
) -> None:
    """After the answer: look the address up, queue its link if it is a lead's, send it."""
    with database.write() as session:
        mail_id = mails.queue_link_mail(ledger, session, settings, email, wish)
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
    database, settings = _database(request), _settings(request)
    await database.run(_note_link_request, database, settings, email)
    response = _render(request, "message.html", {"kind": "request_done"})
    response.background = BackgroundTask(
        _send_link,
        database,
        _ledger(request),
        settings,
        email,
        _wish(request),
    )
    return response


@_link_pages
async def unsubscribe_page(request: Request) -> Response:
    """``GET /u/{token}``: a browser opened the List-Unsubscribe URL; one button."""
    token = request.path_params["token"]
    claim = _tokens(request).read(LinkPurpose.UNSUBSCRIBE, token)
    database = _database(request)
    locale = await database.run(_link_locale, database, claim, _wish(request))
    return _render(request, "unsubscribe.html", {"token": token}, locale=locale)


def _one_click(
    database: Database,
    ledger: ConsentLedger,
    claim: LinkClaim,
    context: services.ChangeContext,
    wish: LanguageWish,
) -> str:
    with database.write_connection() as connection:
        lead = services.live_lead(connection, claim.subject_id, claim.version)
        services.withdraw_purposes(ledger, connection, lead, claim.purposes, context)
    return wish.choose(lead.locale)


@_link_pages
async def one_click_unsubscribe(request: Request) -> Response:
    """``POST /u/{token}`` (RFC 8058): withdraw the token's purposes; 200, nothing to click."""
    token = request.path_params["token"]
    claim = _tokens(request).read(LinkPurpose.UNSUBSCRIBE, token)
    await forms.read_one_click(request)
    context = services.ChangeContext(
        method=ConsentMethod.ONE_CLICK,
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        via="one-click-unsubscribe",
    )
    database = _database(request)
    locale = await database.run(
        _one_click,
        database,
        _ledger(request),
        claim,
        context,
        _wish(request),
    )
    if _wants_html(request):  # the button of GET /u/{token} in a browser
        return _render(request, "message.html", {"kind": "unsubscribed"}, locale=locale)
    # A mail provider's POST (RFC 8058): nobody sees the body; a short text in the
    # lead's language, not a page.
    texts = strings(locale)
    return PlainTextResponse(
        f"{texts['unsubscribed_title']}\n{texts['unsubscribed_text']}\n",
        headers={**NO_REFERRER, "Content-Language": locale},
    )


def _wants_html(request: Request) -> bool:
    """Whether the request's ``Accept`` names an HTML type, as every browser's does."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "application/xhtml+xml" in accept


def _grants_to_confirm(
    database: Database, claim: LinkClaim, wish: LanguageWish
) -> tuple[list[str], str]:
    """Titles of the claim's purposes still pending, and the page's locale."""
    with database.lookup() as connection:
        lead = services.live_lead(connection, claim.subject_id, claim.version)
    locale = wish.choose(lead.locale)
    pending = [
        p.title_in(locale) for p in lead.purposes if p.key in claim.purposes and p.status == PENDING
    ]
    return pending, locale


@_link_pages
async def confirm_grant_page(request: Request) -> Response:
    """``GET /p/confirm/{token}``: what the link confirms, and one button; records
    nothing (mail scanners follow links)."""
    token = request.path_params["token"]
    claim = _tokens(request).read(LinkPurpose.CONFIRM_GRANT, token)
    database = _database(request)
    titles, locale = await database.run(_grants_to_confirm, database, claim, _wish(request))
    context = {"token": token, "titles": titles, "confirmed": False}
    return _render(request, "confirm_grant.html", context, locale=locale)


def _confirm_grants(
    database: Database,
    ledger: ConsentLedger,
    claim: LinkClaim,
    context: services.ChangeContext,
    wish: LanguageWish,
) -> str:
    with database.write_connection() as connection:
        lead = services.live_lead(connection, claim.subject_id, claim.version)
        services.confirm_grants(ledger, connection, lead, claim.purposes, context)
    return wish.choose(lead.locale)


@_link_pages
async def confirm_grant(request: Request) -> Response:
    """``POST /p/confirm/{token}``: confirm the link's purposes still pending; a second
    press, or one after a withdrawal, records nothing."""
    token = request.path_params["token"]
    claim = _tokens(request).read(LinkPurpose.CONFIRM_GRANT, token)
    require_same_origin(request, _settings(request).base_url)
    context = services.ChangeContext(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        via="confirmation-link",
    )
    database = _database(request)
    locale = await database.run(
        _confirm_grants, database, _ledger(request), claim, context,
        _wish(request),
    )  # fmt: skip
    page = {"token": token, "titles": [], "confirmed": True}
    return _render(request, "confirm_grant.html", page, locale=locale)


routes = [
    Route("/p/confirm/{token}", confirm_grant_page, methods=["GET"]),
    Route("/p/confirm/{token}", confirm_grant, methods=["POST"]),
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
