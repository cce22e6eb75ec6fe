"""Audience cursors: signed, carrying the export's snapshot, valid for a day.

A cursor names the purpose, topic and ledger entry of the export it continues and the
last lead it walked past, signed with the site's secret key (a purpose of its own, as
every token here), so a page can neither be moved to another snapshot nor skip leads.
A day old, it is refused: an export takes minutes, and a snapshot kept open for days
would hand out links and addresses of that day long after.
"""

from __future__ import annotations

from datetime import datetime

from consent_sync.audiences import Snapshot
from zeroparty.errors import ZeropartyError
from zeroparty.settings import Settings
from zeroparty.tokens import TokenExpired, TokenInvalid, TokenService, TokenWrongPurpose

PURPOSE = "consent-sync.audience-cursor"
MAX_AGE_SECONDS = 24 * 3600


class CursorInvalid(ZeropartyError):
    status_code = 400
    code = "cursor_invalid"


class CursorExpired(ZeropartyError):
    status_code = 410
    code = "cursor_expired"


def _service(settings: Settings) -> TokenService:
    return TokenService(settings.secret_keys, PURPOSE, MAX_AGE_SECONDS)


def issue(settings: Settings, snapshot: Snapshot, after: str) -> str:
    return _service(settings).issue(
        {
            "p": snapshot.purpose,
            "t": snapshot.topic,
            "s": snapshot.as_of_seq,
            "at": snapshot.as_of.isoformat(),
            "a": after,
        }
    )


def read(settings: Settings, cursor: str, purpose: str, topic: str | None) -> tuple[Snapshot, str]:
    """The snapshot and position a cursor carries; refused when tampered with, too old,
    or issued for another purpose or topic than the request names."""
    try:
        claims = _service(settings).read(cursor)
        snapshot = Snapshot(
            str(claims["p"]),
            None if claims["t"] is None else str(claims["t"]),
            int(claims["s"]),
            datetime.fromisoformat(str(claims["at"])),
        )
        after = str(claims["a"])
    except TokenExpired as exc:
        reason = "is more than a day old: start the export again without a cursor"
        raise CursorExpired(f"cursor: {reason}", fields={"cursor": reason}) from exc
    except (TokenInvalid, TokenWrongPurpose, KeyError, TypeError, ValueError) as exc:
        reason = "is not a cursor this API issued (changed or cut short?)"
        raise CursorInvalid(f"cursor: {reason}", fields={"cursor": reason}) from exc
    if (snapshot.purpose, snapshot.topic) != (purpose, topic):
        reason = "belongs to an export of another purpose or topic"
        raise CursorInvalid(f"cursor: {reason}", fields={"cursor": reason})
    return snapshot, after
