"""Domain errors and their one translation into HTTP answers.

Services raise subclasses of :class:`ZeropartyError`; views never build error
responses themselves. Machines (``/api/…``, ``Accept: application/json``) get
``{"error": {"code", "message", "fields"}}``; people get an HTML page saying the same.
"""

from __future__ import annotations

from collections.abc import Mapping


class ZeropartyError(Exception):
    """Base of every error a user can be told about."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})


class InvalidInput(ZeropartyError):
    """The request or file is malformed or fails validation; nothing was changed."""

    status_code = 422
    code = "invalid_input"


class NotFound(ZeropartyError):
    status_code = 404
    code = "not_found"


class Unauthorized(ZeropartyError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ZeropartyError):
    status_code = 403
    code = "forbidden"


class Conflict(ZeropartyError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ZeropartyError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ZeropartyError):
    status_code = 415
    code = "unsupported_media_type"


class ServiceUnavailable(ZeropartyError):
    status_code = 503
    code = "unavailable"
