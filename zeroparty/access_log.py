"""Access log lines without the secrets and personal data that travel in URLs.

Signed links carry their token in the path (``/p/TOKEN``, ``/u/TOKEN``,
``/confirm/TOKEN``, ``/p/erase/TOKEN``) or the query (``?r=TOKEN``, a quiz step's
``?q=TOKEN``), and the consent API takes an email in its query. Whoever reads an access
log (``serve --access-log``) must not be able to open a lead's preference center from
it, nor learn who was looked up (nor which answers a quiz taker chose).
"""

from __future__ import annotations

import logging
import re

# A token is long (a signed payload); short segments like /p/export stay readable.
_TOKEN_IN_PATH = re.compile(r"(/(?:p/erase|p|u|confirm)/)[A-Za-z0-9_.\-]{20,}")
_SECRET_IN_QUERY = re.compile(r"([?&](?:r|q|email)=)[^&\s]*")
REDACTED = "[redacted]"


def redact(url: str) -> str:
    """``url`` with link tokens and email addresses replaced by ``[redacted]``."""
    url = _TOKEN_IN_PATH.sub(rf"\g<1>{REDACTED}", url)
    return _SECRET_IN_QUERY.sub(rf"\g<1>{REDACTED}", url)


class RedactUrls(logging.Filter):
    """For uvicorn's access logger, whose arguments are (client, method, path, version,
    status): the path is redacted before the line is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        return True


def install() -> None:
    """Redact uvicorn's access log in this process (idempotent)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactUrls) for f in logger.filters):
        logger.addFilter(RedactUrls())
