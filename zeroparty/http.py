"""Small HTTP building blocks shared by every package's views."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from zeroparty.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

MAX_JSON_BYTES = 256 * 1024


class JSONResponse(Response):
    """JSON through orjson: faster than the standard library and strict about types."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def wants_json(request: Request) -> bool:
    """Machines get JSON: API paths, clients that ask for JSON before HTML, and clients
    that sent JSON without asking for HTML (a script posting a form's JSON body)."""
    # The scope's path, not request.url's (a URL object built for one prefix test): the
    # same text for these tests, since the URL only escapes "?", "#" and "\\" in it.
    path: str = request.scope["path"]
    if path.startswith(("/api/", "/ledger/")) or path in ("/healthz", "/openapi.json"):
        return True
    accept = request.headers.get("accept", "")
    if "application/json" not in accept:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        return content_type == "application/json" and "text/html" not in accept
    return "text/html" not in accept or accept.index("application/json") < accept.index("text/html")


async def read_json_object(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The request body as a JSON object, or a clear 4xx error.

    Refuses a wrong content type (415), a body over ``limit`` bytes (413, checked while
    reading so a lying Content-Length cannot make us buffer more), and anything that is
    not a JSON object (422).
    """
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType("send the body as Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    try:
        value = orjson.loads(bytes(body))
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object")
    return value
