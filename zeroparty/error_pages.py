"""Error pages for people: what went wrong and what to do next, in the visitor's language.

Machines keep the JSON shape (``zeroparty.app.error_response``); people get a page that
says, in English or German, what happened and offers a way forward: the start page,
a new link where a link failed, trying again where waiting helps. The language is the
visitor's: ``?lang=`` first, then ``Accept-Language`` (quality values honoured), then
the site's default language; only languages the site offers (``site.locales``) and
these pages speak are chosen, English otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request

from zeroparty import i18n
from zeroparty.db import Database
from zeroparty.i18n import N_
from zeroparty.site_info import UNNAMED, SiteIdentity, site_identity

DEFAULT_LANGUAGE = "en"
# Where a lead asks for a new link to their preferences (the preference center's page).
REQUEST_LINK_PATH = "/p/request-link"

# Per status: heading and explanation, English message ids of the zeroparty catalogue.
# "other" is any status without a page of its own (a refused form value, a conflict):
# its message and fields are shown under it.
TEXTS: Mapping[str, str] = {
    "401_title": N_("Your session has ended"),
    "401_text": N_("Open the link from your email again, or ask for a new one."),
    "403_title": N_("You cannot open this page"),
    "403_text": N_(
        "You may not open this page. If you followed a link, it may be meant for someone "
        "else or for another page."
    ),
    "404_title": N_("Page not found"),
    "404_text": N_(
        "There is no page at this address. It may be mistyped, or the page has moved or "
        "been removed."
    ),
    "410_title": N_("This link no longer works"),
    "410_text": N_(
        "It has expired or was replaced by a newer one. Ask for a new link and we mail it to you."
    ),
    "429_title": N_("Too many attempts"),
    "429_text": N_("Please wait a minute, then try again."),
    "500_title": N_("Something went wrong on our side"),
    "500_text": N_("Nothing was changed. Please try again in a few minutes."),
    "503_title": N_("Temporarily unavailable"),
    "503_text": N_("Nothing was changed. Please try again in a few minutes."),
    "other_title": N_("That did not work"),
    "other_text": N_("Nothing was changed."),
    "home": N_("Go to the start page"),
    "new_link": N_("Get a new link"),
    "retry": N_("Try again"),
    "privacy": N_("Privacy policy"),
    "status": N_("Error"),
}
PAGES = frozenset({401, 403, 404, 410, 429, 500, 503})
SAFE = frozenset({"GET", "HEAD"})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@functools.cache
def texts(language: str) -> Mapping[str, str]:
    """Every text of these pages in ``language``, translated once per process."""
    return {key: i18n.gettext(language, text) for key, text in TEXTS.items()}


def choose_language(request: Request, identity: SiteIdentity) -> str:
    """``?lang=``, then ``Accept-Language``, then the site's default language: the
    first that the site offers (any, when the site is not known) and has a catalogue;
    English otherwise (:func:`zeroparty.i18n.choose_language`)."""
    # Unknown site (none loaded, or not read for a 5xx): every language with a catalogue.
    offered = i18n.languages() if identity is UNNAMED else identity.locales
    return i18n.choose_language(
        offered,
        requested=request.query_params.get("lang"),
        accept_language=request.headers.get("accept-language"),
        default=identity.default_locale,
    )


def _identity(database: Database) -> SiteIdentity:
    try:
        with database.read() as session:
            return site_identity(session)
    except SQLAlchemyError:
        return UNNAMED


async def current_identity(request: Request, status: int) -> SiteIdentity:
    """The site's name, languages and privacy policy; never read for a 5xx (the database
    may be why), nor when it cannot be read (the page still renders)."""
    database: Database | None = getattr(request.app.state, "database", None)
    if database is None or status >= 500:
        return UNNAMED
    try:
        return await database.run(_identity, database)
    except SQLAlchemyError:
        return UNNAMED


@dataclass(frozen=True, slots=True)
class Action:
    label: str
    href: str
    primary: bool


def actions(request: Request, status: int, t: Mapping[str, str]) -> list[Action]:
    """The ways forward: a new link where a link failed, trying again where waiting
    helps (a GET only: never resend a form), and always the start page."""
    found: list[Action] = []
    path = request.url.path
    if status == 410 or (status in (401, 403) and path.startswith("/p/")):
        found.append(Action(t["new_link"], REQUEST_LINK_PATH, True))
    if status in (429, 500, 503) and request.method == "GET":
        query = request.url.query
        found.append(Action(t["retry"], f"{path}?{query}" if query else path, True))
    found.append(Action(t["home"], "/", not found))
    root = request.scope.get("root_path", "")
    return [Action(a.label, f"{root}{a.href}", a.primary) for a in found]


def page_context(
    request: Request,
    identity: SiteIdentity,
    status: int,
    message: str,
    fields: Mapping[str, str],
) -> dict[str, object]:
    lang = choose_language(request, identity)
    t = texts(lang)
    key = str(status) if status in PAGES else "other"
    own_page = status in PAGES
    # The reason is English: on a page of its own, shown to English readers only, and
    # never Starlette's bare phrase ("Not Found") nor for a 5xx (the text says it all).
    generic = message == _phrase(status) or status >= 500
    detail = message if own_page and lang == DEFAULT_LANGUAGE and not generic else ""
    return {
        "lang": lang,
        "t": t,
        "status": status,
        "title": t[f"{key}_title"],
        "text": t[f"{key}_text"],
        # A status without a page of its own says what was refused (as the JSON does).
        "message": "" if own_page else message,
        "fields": {} if own_page else dict(fields),
        "detail": detail,
        # A refused form or button press changed nothing: say so (5xx texts already do).
        "nothing_changed": (
            t["other_text"] if own_page and status < 500 and request.method not in SAFE else ""
        ),
        "actions": actions(request, status, t),
        "site_name": "" if identity is UNNAMED else identity.name,
        "policy_url": (
            identity.policy_url if identity.policy_url.startswith(("https://", "http://")) else ""
        ),
    }
