"""Who may frame a form and who may post to it: origins, CSP and CORS.

A form may be framed by, and accept cross-origin submissions from, its own
``allowed_origins`` plus ``ZEROPARTY_ALLOWED_EMBED_ORIGINS``. Framing is enforced by the
browser through CSP ``frame-ancestors``; submissions are checked here by their
``Origin`` (datasette-style cross-site protection): a browser always sends it on a
cross-origin POST, so a POST from any other site is refused before anything is read.
Requests without ``Origin`` come from servers and scripts, not from another site's
page, and are accepted (they still need a valid render token).

A browser shows a frame refused by ``frame-ancestors`` blank, the reason only in its
console. So a frame load (``Sec-Fetch-Dest: iframe``) whose framing page is known to be
on an origin that may not frame the form gets :func:`refused_frame_origin`'s page
instead: no form and no input, so it may be framed anywhere (clickjacking needs
something to click that acts), saying the form cannot be shown there, with a link that
opens it on its own. The framing page is known from ``Referer`` (browsers send at least
its origin by default) or, failing that, the ``parent`` the embed script names. Either
can be wrong only to the requester's own cost: every page with inputs keeps its
``frame-ancestors``, so a forged hint gets either this harmless page or a blank frame.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request

from capture.definitions import Definition
from capture.errors import OriginRefused
from zeroparty.settings import Settings

CORS_MAX_AGE = "600"
CORS_HEADERS = "content-type, accept, idempotency-key"


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, else ``None``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origin(request: Request) -> str:
    host = request.headers.get("host", request.url.netloc)
    return f"{request.url.scheme}://{host}".lower()


def allowed_origins(definition: Definition, settings: Settings) -> tuple[str, ...]:
    origins = (*definition.allowed_origins, *settings.allowed_embed_origins)
    return tuple(dict.fromkeys(o.rstrip("/").lower() for o in origins))


def cross_origin(request: Request) -> str | None:
    """The request's ``Origin`` when it is another site's, else ``None``."""
    origin = request.headers.get("origin")
    if origin is None or origin.lower() == own_origin(request):
        return None
    return origin.lower()


def check_origin(origin: str, allowed: Iterable[str]) -> None:
    if origin not in allowed:
        raise OriginRefused(f"this form does not accept submissions from {origin[:100]}")


def cors_headers(origin: str) -> dict[str, str]:
    """Headers letting ``origin`` (already checked) read a JSON answer; no credentials."""
    return {"access-control-allow-origin": origin, "vary": "Origin"}


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        **cors_headers(origin),
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": CORS_HEADERS,
        "access-control-max-age": CORS_MAX_AGE,
    }


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def refused_frame_origin(request: Request, allowed: Iterable[str]) -> str | None:
    """The origin of the page framing this request when it may not frame the form,
    else ``None`` (not a frame load, same origin, allowed, or the framing page unknown:
    then the form's own CSP decides as before)."""
    if request.headers.get("sec-fetch-dest") != "iframe":
        return None
    if request.headers.get("sec-fetch-site") == "same-origin":
        return None
    framing = origin_of(request.headers.get("referer") or "") or origin_of(
        request.query_params.get("parent") or ""
    )
    if framing is None or framing == own_origin(request) or framing in allowed:
        return None
    return framing


def refusal_headers() -> dict[str, str]:
    """Headers of the page saying a form cannot be shown in this frame: it holds no
    form, input or script, so any page may frame it."""
    return {
        "content-security-policy": (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'none'; "
            "frame-ancestors *; base-uri 'none'"
        ),
        # Ignored by browsers that know frame-ancestors (all current ones); older ones
        # keep refusing cross-site frames, as they did before.
        "x-frame-options": "SAMEORIGIN",
        "x-content-type-options": "nosniff",
        "referrer-policy": "strict-origin-when-cross-origin",
        "cache-control": "no-store",
        "vary": "Sec-Fetch-Dest, Sec-Fetch-Site, Referer",
    }


def page_headers(
    nonce: str, frame_origins: Iterable[str], form_targets: Iterable[str] = ()
) -> dict[str, str]:
    """CSP with a per-response nonce; framing only by the form's origins.

    ``X-Frame-Options`` cannot name several origins: browsers that know
    ``frame-ancestors`` ignore it, older ones get ``SAMEORIGIN`` (no cross-site framing).
    ``form_targets`` are origins a form may be sent or redirected to (CSP ``form-action``
    also governs the redirect after a submission).
    """
    ancestors = " ".join(["'self'", *frame_origins])
    targets = " ".join(["'self'", *form_targets])
    return {
        "content-security-policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; "
            f"img-src 'self' data:; form-action {targets}; frame-ancestors {ancestors}; "
            "base-uri 'none'"
        ),
        "x-frame-options": "SAMEORIGIN",
        "x-content-type-options": "nosniff",
        "referrer-policy": "strict-origin-when-cross-origin",
        "cache-control": "no-store",
    }
