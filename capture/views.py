"""Capture's HTTP surface: hosted and embedded forms and quizzes, submissions, the
embed script (and, from :mod:`capture.confirm_views`, the double opt-in link).

Views parse, call :mod:`capture.services`, and render. Errors are domain exceptions:
machines get them from the app's one error handler (with CORS headers when the
caller's origin is allowed); people get the form again with each problem next to its
field.

Template contexts (``templates/capture/``):

- ``form.html``: ``definition``, ``notices`` (list of :class:`~capture.services.Notice`),
  ``values`` (name → list of values), ``ticked`` (purposes), ``errors`` (name →
  message), ``message`` (error summary or ``None``), ``render_token``, ``page_url``,
  ``action``, ``gpc``, ``embed``, ``parent``, ``nonce``, ``labels`` (name → label).
- ``quiz_step.html``: the same plus ``step``, ``step_number``, ``answers`` (kept so far).
  A step's POST answers 303 to ``GET /f/{slug}?q=TOKEN`` (POST-redirect-GET, so the
  browser's Back and Forward move between steps), the token signed by
  :class:`~capture.tokens.CaptureTokens` with the answers chosen so far.
- ``quiz_result.html``: the same plus ``outcome`` and ``answers``.
- ``thanks.html``: ``definition``, ``outcome``, ``consent`` and ``gpc_opt_out``
  (titles of the purposes ticked and of those the GPC signal opts out of: only what
  was sent, never the address's state), ``next_step``, ``stored``, ``embed``,
  ``parent``, ``nonce``.
- ``embed_refused.html``: ``definition``, ``framing`` (the origin of the page that may
  not frame the form), ``form_url`` (the form on its own).
- ``held.html``: ``view`` (:class:`~capture.held_confirmation.HeldView`), ``token``,
  ``nonce``.
- ``confirm.html``: ``view`` (:class:`~capture.double_opt_in.ConfirmationView`), ``done``
  (purposes confirmed by this POST or ``None`` on GET), ``token``, ``nonce``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from capture import confirm_views, embedding, forms, services
from capture.context import (
    CaptureState,
    capture_state,
    database_of,
    ledger_of,
    settings_of,
    templates_of,
)
from capture.definitions import Definition, OutcomeSpec, Published, plain
from capture.errors import QuizAnswersInvalid, SpamSuspected, TooFast
from capture.quiz import QuizPath, step_back, walk
from capture.ratelimit import bucket_for
from capture.tokens import CaptureTokens, QuizStepToken, RenderToken
from consent_ledger.api import ConsentLedger
from consent_ledger.evidence import EvidenceValue, clean_evidence
from zeroparty import i18n
from zeroparty.db import Database, utcnow
from zeroparty.errors import ZeropartyError
from zeroparty.http import JSONResponse, wants_json
from zeroparty.i18n import N_
from zeroparty.mail import ClaimedMails, LeadLinker, QueuedMail, claimed_mails, send_claimed
from zeroparty.tokens import TokenError, TokenInvalid

STATIC_DIR = Path(__file__).resolve().parent / "static"
EMBED_JS = (STATIC_DIR / "embed.js").read_bytes()
CAPTURE_CSS = (STATIC_DIR / "capture.css").read_bytes()
MAX_PAGE_URL = 2000
RESULT_STEP = "_result"


def _gpc(request: Request) -> bool:
    return request.headers.get("sec-gpc", "").strip() == "1"


def _page_url(value: str | None) -> str:
    if value and embedding.origin_of(value) and len(value) <= MAX_PAGE_URL:
        return value
    return ""


@dataclass(slots=True)
class FormScreen:
    """What a form page shows; rendered by :func:`_render`."""

    published: Published
    notices: list[services.Notice]
    token: RenderToken
    values: Mapping[str, list[str] | tuple[str, ...]] = field(default_factory=dict)
    ticked: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None
    note: str | None = None
    page_url: str = ""
    quiz: QuizPath | None = None
    status: int = 200


@dataclass(frozen=True, slots=True)
class LanguageWish:
    """What a request says about its language: the one a form was shown in (its render
    token's), ``?lang=``, ``Accept-Language``. :meth:`choose` picks among a form's."""

    shown: str = ""
    requested: str | None = None
    accept_language: str | None = None

    def choose(self, definition: Definition) -> str:
        offered = definition.offered_locales
        if self.shown in offered:
            return self.shown
        return i18n.choose_language(
            offered,
            requested=self.requested,
            accept_language=self.accept_language,
            default=definition.locale,
        )


def _wish(request: Request, token: RenderToken | None = None) -> LanguageWish:
    return LanguageWish(
        token.locale if token is not None else "",
        request.query_params.get("lang"),
        request.headers.get("accept-language"),
    )


def _load_screen(
    database: Database,
    store: services.DefinitionStore,
    slug: str,
    definition_id: int | None = None,
    wish: LanguageWish | None = None,
) -> tuple[Published, list[services.Notice]]:
    """A form's published version (its latest, or ``definition_id``), in the language
    ``wish`` chooses, and the notices it shows now in that language. A cached version
    costs no statement; which version is latest and the current notices are read each
    time, so what another process publishes shows at once."""
    with database.lookup() as connection:
        if definition_id is None:
            published = store.latest(connection, slug)
        else:
            published = store.get(connection, definition_id)
        if wish is not None:
            published = store.shown(published, wish.choose(published.definition))
        return published, services.notices_shown(connection, published.definition)


def _load_published(
    database: Database, store: services.DefinitionStore, definition_id: int
) -> Published:
    with database.lookup() as connection:
        return store.get(connection, definition_id)


def _load_notices(database: Database, definition: Definition) -> list[services.Notice]:
    with database.lookup() as connection:
        return services.notices_shown(connection, definition)


def _load_result(
    database: Database,
    store: services.DefinitionStore,
    definition_id: int,
    purposes: list[str],
    wish: LanguageWish,
) -> tuple[Published, dict[str, str]]:
    """A thanks page's form version (in its language) and the titles of the purposes it
    names."""
    with database.lookup() as connection:
        published = store.get(connection, definition_id)
        published = store.shown(published, wish.choose(published.definition))
        return published, services.purpose_titles(connection, purposes, published.definition.locale)


def _embed_params(request: Request, definition: Definition) -> tuple[bool, str | None]:
    """Whether the page is embedded, and the parent origin to talk to (if allowed)."""
    embed = request.query_params.get("embed") == "1"
    parent = (request.query_params.get("parent") or "").lower()
    allowed = embedding.allowed_origins(definition, settings_of(request))
    return embed, parent if embed and parent in allowed else None


def _labels(definition: Definition) -> dict[str, str]:
    labels = {f.name: f.label for f in definition.fields}
    labels.update({q.key: q.text for q in definition.questions()})
    labels["consent"] = i18n.gettext(definition.locale, "Your choices")
    return labels


def _embed_query(request: Request, definition: Definition) -> str:
    """``?embed=1&parent=…`` for links and actions that stay inside an embed, else ``""``."""
    embed, parent = _embed_params(request, definition)
    return "?embed=1" + (f"&parent={parent}" if parent else "") if embed else ""


def _render(request: Request, screen: FormScreen) -> Response:
    definition = screen.published.definition
    embed, parent = _embed_params(request, definition)
    nonce = embedding.new_nonce()
    gpc = _gpc(request)
    query = _embed_query(request, definition)
    language = definition.locale
    if definition.locales and language != definition.locales[0]:
        # Shown in another of its languages: it posts back in the one shown.
        query += ("&" if query else "?") + f"lang={language}"
    context: dict[str, Any] = {
        "definition": definition,
        "notices": [n for n in screen.notices if not (gpc and n.sale_or_sharing)],
        "values": screen.values,
        "ticked": screen.ticked,
        "errors": {name: i18n.translate(language, e) for name, e in screen.errors.items()},
        "message": i18n.translate(language, screen.message) if screen.message else None,
        "note": i18n.translate(language, screen.note) if screen.note else None,
        "render_token": capture_state(request).tokens.issue_render(screen.token),
        "page_url": screen.page_url,
        "action": f"/f/{definition.slug}{query}",
        "gpc": gpc,
        "embed": embed,
        "parent": parent,
        "nonce": nonce,
        "labels": _labels(definition),
        "honeypot": forms.HONEYPOT,
    }
    template = "capture/form.html"
    if definition.is_quiz:
        path = screen.quiz
        if path is None or (path.current is not None and path.outcome is None):
            step = path.current if path is not None else definition.steps[0]
            assert step is not None
            template = "capture/quiz_step.html"
            context.update(
                step=step,
                step_number=len(path.visited) + 1 if path is not None else 1,
                answers=path.answers if path is not None else {},
            )
        else:
            template = "capture/quiz_result.html"
            context.update(outcome=path.outcome, answers=path.answers)
    headers = embedding.page_headers(
        nonce,
        embedding.allowed_origins(definition, settings_of(request)),
        _redirect_targets(definition),
    )
    with i18n.activated(language):
        return templates_of(request).TemplateResponse(
            request, template, context, status_code=screen.status, headers=headers
        )


def _redirect_targets(definition: Definition) -> tuple[str, ...]:
    origin = embedding.origin_of(definition.redirect) if definition.redirect else None
    return (origin,) if origin else ()


def _new_render(
    state: CaptureState, published: Published, notices: list[services.Notice]
) -> RenderToken:
    """A render token for a form shown with ``notices``, in its language."""
    digests = {n.purpose: n.sha256 for n in notices}
    return state.tokens.new_render(published.id, digests, published.definition.locale)


def _form_json(published: Published, notices: list[services.Notice], token: str) -> dict[str, Any]:
    definition = plain(published.definition)
    for name in ("rate_limit", "min_fill_seconds", "double_opt_in", "allowed_origins"):
        definition.pop(name, None)
    definition["consent"] = [
        {
            "purpose": n.purpose,
            "title": n.title,
            "text": n.text,
            "notice_sha256": n.sha256,
            "double_opt_in": n.double_opt_in,
        }
        for n in notices
    ]
    return {
        **definition,
        "version": published.version,
        "sha256": published.sha256,
        "render_token": token,
    }


def _quiz_path(definition: Definition, step: QuizStepToken) -> QuizPath:
    """The quiz page a step token stands for, walked again from its answers."""
    if step.back:
        return step_back(definition, step.answers, step.at)
    path = walk(definition, step.answers, step.at)
    if path.current is None or path.errors:
        return path
    # Answers of later steps (given before Back was pressed) stay with the page, so the
    # way forward shows them chosen again; the final walk drops any off its path.
    later = {k: v for k, v in step.answers.items() if k not in path.answers}
    return dataclasses.replace(path, answers={**path.answers, **later})


async def _quiz_step_page(request: Request, slug: str, raw_token: str) -> Response:
    """``GET /f/{slug}?q=…``: a quiz step (or its result) after the step's POST. The
    answers come from the signed token, so Back and Forward show each step as it was
    answered; the render token inside keeps the submission id, so the final submit is
    sent once however often the visitor goes back."""
    state = capture_state(request)
    database = database_of(request)
    try:
        step = state.tokens.read_quiz_step(raw_token)
        published, notices = await database.run(
            _load_screen, database, state.store, slug, step.render.definition_id,
            _wish(request, step.render),
        )  # fmt: skip
        if published.definition.slug != slug or not published.definition.is_quiz:
            raise TokenInvalid("this quiz page is not valid: start again")
    except ZeropartyError as exc:
        return await _render_error(request, slug, state, _Submission(), exc)
    allowed = embedding.allowed_origins(published.definition, settings_of(request))
    framing = embedding.refused_frame_origin(request, allowed)
    if framing is not None:  # a step's address framed directly by a site not allowed
        return _refused_frame(request, published.definition, framing)
    path = _quiz_path(published.definition, step)
    screen = FormScreen(
        published, notices, step.render, page_url=_page_url(step.page_url), quiz=path
    )
    if path.errors:
        problem = QuizAnswersInvalid(dict(path.errors))
        screen.errors, screen.message = problem.fields, problem.message
        screen.status = problem.status_code
    return _render(request, screen)


async def form_page(request: Request) -> Response:
    """``GET /f/{slug}``: the hosted (or embedded) form or first quiz step; with ``q``,
    the quiz step a visitor was sent to after answering one."""
    slug = request.path_params["slug"]
    state = capture_state(request)
    if "q" in request.query_params and not wants_json(request):
        return await _quiz_step_page(request, slug, request.query_params["q"])
    published, notices = await database_of(request).run(
        _load_screen, database_of(request), state.store, slug, None, _wish(request)
    )
    if not wants_json(request):
        allowed = embedding.allowed_origins(published.definition, settings_of(request))
        framing = embedding.refused_frame_origin(request, allowed)
        if framing is not None:
            return _refused_frame(request, published.definition, framing)
    token = _new_render(state, published, notices)
    if wants_json(request):
        body = _form_json(published, notices, state.tokens.issue_render(token))
        origin = embedding.cross_origin(request)
        allowed = embedding.allowed_origins(published.definition, settings_of(request))
        headers = embedding.cors_headers(origin) if origin and origin in allowed else {}
        return JSONResponse(body, headers={**headers, "cache-control": "no-store"})
    hidden = {
        f.name: [request.query_params[f.name][: f.max_length]]
        for f in published.definition.fields
        if f.type.value == "hidden" and f.name in request.query_params
    }
    page_url = _page_url(request.query_params.get("page") or request.headers.get("referer"))
    return _render(request, FormScreen(published, notices, token, hidden, page_url=page_url))


def _refused_frame(request: Request, definition: Definition, framing: str) -> Response:
    """A frame on a site that may not show the form: a readable page instead of the
    blank frame ``frame-ancestors`` would leave, with no input to click into."""
    context = {"definition": definition, "framing": framing, "form_url": f"/f/{definition.slug}"}
    with i18n.activated(definition.locale):  # the language the form would be shown in
        return templates_of(request).TemplateResponse(
            request,
            "capture/embed_refused.html",
            context,
            status_code=403,
            headers=embedding.refusal_headers(),
        )


async def form_preflight(request: Request) -> Response:
    """``OPTIONS /f/{slug}``: CORS preflight for JSON submissions from allowed origins."""
    origin = embedding.cross_origin(request)
    if origin is None:
        return Response(status_code=204)
    state = capture_state(request)
    database = database_of(request)
    published, _ = await database.run(
        _load_screen, database, state.store, request.path_params["slug"]
    )
    embedding.check_origin(
        origin, embedding.allowed_origins(published.definition, settings_of(request))
    )
    return Response(status_code=204, headers=embedding.preflight_headers(origin))


def _evidence(
    request: Request, published: Published, token: RenderToken, page_url: str, submission_id: str
) -> dict[str, EvidenceValue]:
    definition = published.definition
    raw: dict[str, object] = {
        "ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
        "page_url": page_url or None,
        "referer": (request.headers.get("referer") or "")[:MAX_PAGE_URL] or None,
        "form": definition.slug,
        "form_version": published.version,
        "form_sha256": published.sha256,
        "locale": definition.locale,
        "submission": submission_id,
        "rendered_at": int(token.rendered_at),
        "gpc": _gpc(request),
    }
    if raw["ip"] in (None, "testclient"):
        raw.pop("ip")
    return clean_evidence({k: v for k, v in raw.items() if v is not None})


def _idempotency_key(request: Request, slug: str, token: RenderToken) -> str:
    supplied = request.headers.get("idempotency-key")
    key = f"header:{supplied[:200]}" if supplied else f"render:{token.submission_id}"
    return hashlib.sha256(f"{slug}\x00{key}".encode()).hexdigest()


def _store(
    ledger: ConsentLedger,
    request: services.SubmissionRequest,
    tokens: CaptureTokens,
    base_url: str,
    lead_links: LeadLinker | None,
) -> tuple[services.SubmissionResult, ClaimedMails]:
    """Store the submission; also returns the mails it queued (claimed by this process,
    to send once the transaction committed)."""
    try:
        # A plain connection: every statement of a submission is Core, so it pays for no
        # ORM session (listeners take the transaction as it is held).
        with ledger.database.write_connection() as connection:
            claims: list[QueuedMail] = []
            result = services.accept_submission(
                connection,
                request,
                ledger=ledger,
                tokens=tokens,
                base_url=base_url,
                lead_links=lead_links,
                claims=claims,
            )
            mails = claimed_mails(connection, claims, base_url)
        return result, mails
    except IntegrityError:
        # A retry (same render token or Idempotency-Key) met the first submission's
        # unique rows: answer as it was answered (or refuse a different body).
        with ledger.database.read() as session:
            previous = services.replay(session, request)
        if previous is None:
            raise
        return previous, ClaimedMails()  # its mail left with the first answer (or is retried)


@dataclass(slots=True)
class _Submission:
    """A submission being handled: what is known so far, for re-rendering on error."""

    raw: forms.RawSubmission | None = None
    token: RenderToken | None = None
    published: Published | None = None
    quiz: QuizPath | None = None


async def submit(request: Request) -> Response:
    """``POST /f/{slug}``: a submission, a quiz step, or a refusal that writes nothing."""
    slug = request.path_params["slug"]
    state = capture_state(request)
    origin = embedding.cross_origin(request)
    cors: dict[str, str] = {}
    work = _Submission()
    try:
        if origin is not None:
            # Refused before the body is read: nothing from another site gets further.
            database = database_of(request)
            latest, _ = await database.run(_load_screen, database, state.store, slug)
            allowed = embedding.allowed_origins(latest.definition, settings_of(request))
            embedding.check_origin(origin, allowed)
            cors = embedding.cors_headers(origin)
        return await _submit(request, slug, state, work, cors)
    except ZeropartyError as exc:
        if wants_json(request) or forms.media_type(request) == forms.JSON:
            # A JSON body gets a JSON answer even without an Accept header; the shape is
            # the app's one error shape, plus CORS so an allowed site's script can read it.
            error = {"code": exc.code, "message": exc.message, "fields": exc.fields}
            return JSONResponse({"error": error}, status_code=exc.status_code, headers=cors)
        return await _render_error(request, slug, state, work, exc)


async def _submit(
    request: Request, slug: str, state: CaptureState, work: _Submission, cors: dict[str, str]
) -> Response:
    database = database_of(request)
    settings = settings_of(request)
    work.raw = raw = await forms.read_submission(request)
    if not raw.is_json and forms.RENDER_FIELD not in raw.meta:
        return await _review(request, slug, state, raw)
    token = work.token = state.tokens.read_render(raw.meta.get(forms.RENDER_FIELD, ""))
    # Published versions never change: after the first use, no database round trip.
    published = state.store.by_id.get(token.definition_id)
    if published is None:
        published = await database.run(_load_published, database, state.store, token.definition_id)
    # The language it was shown in: its texts, notices and evidence (``locale``) are in it.
    published = state.store.shown(published, _wish(request, token).choose(published.definition))
    work.published = published
    definition = published.definition
    if definition.slug != slug:
        raise TokenInvalid("this form is not valid: reload the page")
    if raw.meta.get(forms.HONEYPOT):
        raise SpamSuspected("the submission was refused as automated")
    page_url = _page_url(raw.meta.get(forms.PAGE_URL))
    # A quiz step page names its step; its Next button may be "pressed" without a value.
    action = raw.meta.get(forms.ACTION) or ("next" if forms.AT_STEP in raw.meta else "submit")
    if definition.is_quiz and not raw.is_json and action in ("next", "back"):
        # POST-redirect-GET: every step is a page of its own in the browser's history,
        # so Back and Forward move between steps and never ask to send anything again.
        answers = {
            q.key: tuple(v for v in raw.values.get(q.key, []) if v) for q in definition.questions()
        }
        step = QuizStepToken(
            token, answers, raw.meta.get(forms.AT_STEP) or None, action == "back", page_url
        )
        query = _embed_query(request, definition).replace("?", "&")
        location = f"/f/{slug}?q={state.tokens.issue_quiz_step(step)}{query}"
        return RedirectResponse(location, status_code=303)
    submission = forms.clean(definition, raw)
    if definition.is_quiz:
        answers = {q.key: submission.values.get(q.key, ()) for q in definition.questions()}
        work.quiz = path = walk(definition, answers)
        if path.errors or path.outcome is None:
            raise QuizAnswersInvalid(dict(path.errors) or {"_quiz": N_("Answer every question")})
    if time.time() - token.rendered_at < definition.min_fill_seconds:
        raise TooFast(N_("That was very fast: please check your answers and send the form again."))
    missing = [p for p in submission.consent if p not in token.notices]
    if missing:
        raise TokenInvalid("the consent texts changed: please reload the form")
    if submission.email is None:
        # A quiz answered without an email: the result is shown, nothing is stored.
        result = services.SubmissionResult(
            services.new_submission_id(), outcome=_outcome_key(work.quiz), stored=False
        )
        return _success(request, published, result, cors, status=200)
    client = request.client.host if request.client else "unknown"
    supplied_key = "idempotency-key" in request.headers
    submission_id = services.new_submission_id() if supplied_key else token.submission_id
    service_request = services.SubmissionRequest(
        published=published,
        submission=submission,
        notices=token.notices,
        submission_id=submission_id,
        idempotency_key=_idempotency_key(request, slug, token),
        rate_bucket=bucket_for(settings.secret_keys[0], client, slug),
        gpc=_gpc(request),
        evidence=_evidence(request, published, token, page_url, submission_id),
        occurred_at=utcnow(),
        quiz=work.quiz,
    )
    # All of the submission's database work: one transaction, one hop (inline on SQLite).
    result, mails = await database.run(
        _store,
        ledger_of(request),
        service_request,
        state.tokens,
        settings.base_url,
        getattr(request.app.state, "lead_links", None),
    )
    background = BackgroundTask(send_claimed, database, settings, mails) if mails else None
    return _success(
        request,
        published,
        result,
        cors,
        background=background,
        status=200 if result.replayed else 201,
    )


def _outcome_key(path: QuizPath | None) -> str | None:
    return path.outcome.key if path is not None and path.outcome is not None else None


def _success(
    request: Request,
    published: Published,
    result: services.SubmissionResult,
    cors: dict[str, str],
    *,
    status: int,
    background: BackgroundTask | None = None,
) -> Response:
    definition = published.definition
    outcome = definition.outcome_named(result.outcome) if result.outcome else None
    if wants_json(request) or "application/json" in request.headers.get("content-type", ""):
        body = {
            **result.as_json(),
            "message": definition.thank_you,
            "redirect": definition.redirect,
            "result": _outcome_json(outcome),
        }
        headers = {**cors, "idempotent-replayed": "true"} if result.replayed else cors
        return JSONResponse(body, status_code=status, headers=headers, background=background)
    if definition.redirect and not definition.is_quiz:
        return RedirectResponse(definition.redirect, status_code=303, background=background)
    embed, parent = _embed_params(request, definition)
    token = capture_state(request).tokens.result.issue(
        {
            "d": published.id,
            "o": result.outcome,
            "c": list(result.consent),
            "g": list(result.gpc_opt_out),
            "k": result.stored,
            "l": definition.locale,
        }
    )
    query = f"?r={token}" + ("&embed=1" if embed else "") + (f"&parent={parent}" if parent else "")
    return RedirectResponse(
        f"/f/{definition.slug}/thanks{query}", status_code=303, background=background
    )


def _outcome_json(outcome: OutcomeSpec | None) -> dict[str, str] | None:
    if outcome is None:
        return None
    return {"key": outcome.key, "title": outcome.title, "text": outcome.text}


async def _review(
    request: Request, slug: str, state: CaptureState, raw: forms.RawSubmission
) -> Response:
    """A plain ``<form>`` on another site posted without a render token: nothing is
    stored. The hosted form is shown with the answers filled in and every box unticked,
    so the visitor sends it once more having seen the exact notice texts we record."""
    published, notices = await database_of(request).run(
        _load_screen, database_of(request), state.store, slug, None, _wish(request)
    )
    definition = published.definition
    token = _new_render(state, published, notices)
    values = {name: v for name, v in raw.values.items() if definition.field_named(name)}
    note = N_("Please check your details, tick only what you agree to, and send the form.")
    page_url = _page_url(request.headers.get("referer"))
    return _render(request, FormScreen(published, notices, token, values, note=note,
                                       page_url=page_url))  # fmt: skip


async def _render_error(
    request: Request, slug: str, state: CaptureState, work: _Submission, exc: ZeropartyError
) -> Response:
    """The form again, with the problem said next to each field it concerns."""
    fresh = isinstance(exc, TokenError) or work.published is None
    if fresh:
        wish = _wish(request, work.token)
        published, notices = await database_of(request).run(
            _load_screen, database_of(request), state.store, slug, None, wish
        )
    else:
        assert work.published is not None
        published = work.published
        notices = await database_of(request).run(
            _load_notices, database_of(request), published.definition
        )
    digests = {n.purpose: n.sha256 for n in notices}
    language = published.definition.locale
    if fresh or work.token is None:
        token = state.tokens.new_render(published.id, digests, language)
    elif exc.code == "conflict":
        token = state.tokens.new_render(published.id, work.token.notices, language)
    else:
        token = work.token  # keeps when it was first shown and its submission id
    raw = work.raw or forms.RawSubmission()
    message = exc.message
    if isinstance(exc, TokenError):
        message = N_("This form had expired or was not valid. Please check it and send it again.")
    screen = FormScreen(
        published,
        notices,
        token,
        values=raw.values,
        ticked=tuple(p for p in raw.consent if p in published.definition.consent),
        errors=exc.fields,
        message=message,
        page_url=_page_url(raw.meta.get(forms.PAGE_URL)),
        quiz=work.quiz if published.definition.is_quiz else None,
        status=exc.status_code,
    )
    return _render(request, screen)


async def thanks_page(request: Request) -> Response:
    """``GET /f/{slug}/thanks?r=…``: the result of an accepted submission."""
    state = capture_state(request)
    payload = state.tokens.result.read(request.query_params.get("r", ""))
    named = [str(p) for p in (*payload.get("c", []), *payload.get("g", []))]
    database = database_of(request)
    wish = LanguageWish(str(payload.get("l", ""))[:16], request.query_params.get("lang"))
    published, titles = await database.run(
        _load_result, database, state.store, int(payload.get("d", 0)), named, wish
    )
    definition = published.definition
    language = definition.locale
    embed, parent = _embed_params(request, definition)
    nonce = embedding.new_nonce()
    context = {
        "definition": definition,
        "outcome": definition.outcome_named(str(payload.get("o"))) if payload.get("o") else None,
        "consent": [titles.get(p, p) for p in payload.get("c", [])],
        "gpc_opt_out": [titles.get(p, p) for p in payload.get("g", [])],
        "next_step": i18n.translate(language, services.NEXT_STEP),
        "stored": bool(payload.get("k", True)),
        "embed": embed,
        "parent": parent,
        "nonce": nonce,
    }
    headers = embedding.page_headers(
        nonce, embedding.allowed_origins(definition, settings_of(request))
    )
    with i18n.activated(language):
        return templates_of(request).TemplateResponse(
            request, "capture/thanks.html", context, headers=headers
        )


async def embed_js(_request: Request) -> Response:
    """``GET /embed.js``: the loader (no dependencies, no cookies)."""
    return Response(
        EMBED_JS,
        media_type="text/javascript; charset=utf-8",
        headers={
            "cache-control": "public, max-age=300",
            "cross-origin-resource-policy": "cross-origin",
        },
    )


async def capture_css(_request: Request) -> Response:
    return Response(
        CAPTURE_CSS,
        media_type="text/css; charset=utf-8",
        headers={"cache-control": "public, max-age=300"},
    )


routes = [
    Route("/embed.js", embed_js, methods=["GET"]),
    Route("/capture/capture.css", capture_css, methods=["GET"]),
    Route("/f/{slug}", form_page, methods=["GET"]),
    Route("/f/{slug}", submit, methods=["POST"]),
    Route("/f/{slug}", form_preflight, methods=["OPTIONS"]),
    Route("/f/{slug}/thanks", thanks_page, methods=["GET"]),
    *confirm_views.routes,
]
