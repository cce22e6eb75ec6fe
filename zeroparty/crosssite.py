"""Refusing cross-site POSTs (the datasette way: ``Sec-Fetch-Site``, then ``Origin``).

Browsers since 2020 send ``Sec-Fetch-Site`` on every request; a form posted from another
site says ``cross-site``. Older browsers send ``Origin`` on POSTs. A request with neither
header is not from a browser that a foreign page could drive; the CSRF token bound to the
session cookie still has to match (each package checks its own: the preference center's
nonce, the console's session nonce).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

from zeroparty.errors import Forbidden


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def require_same_origin(request: Request, base_url: str) -> None:
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site != "same-origin":
            raise Forbidden("cross-site request refused: post this form from its own page")
        return
    origin = request.headers.get("origin")
    if origin is None:
        return
    allowed = {_origin(base_url), _origin(str(request.base_url))}
    if origin.lower() not in allowed:
        raise Forbidden("cross-site request refused: post this form from its own page")
