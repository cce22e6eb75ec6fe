"""The words of the consent receipt mail: a short summary for the person, while the
signed receipt itself travels as the attachment :data:`RECEIPT_FILENAME`.

Every sentence is in :data:`SENTENCES` and :func:`receipt_summary` is the one place that
puts them together; :func:`sentences_in` gives them in another language from the
catalogue (dates are written as ISO 8601 days and UTC times, which need no translation).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from zeroparty import i18n
from zeroparty.i18n import N_

RECEIPT_FILENAME = "consent-receipt.json"
RECEIPT_CONTENT_TYPE = "application/json"
SHORT_HASH = 12  # hex digits of a notice's SHA-256 named in the text (the file has all 64)

SENTENCES: Mapping[str, str] = {
    "subject": N_("Your consent receipt"),
    "greeting": N_("Hello,"),
    "intro": N_(
        "thank you for confirming. This is your consent receipt: what you agreed to, "
        "when, and under which version of our notice."
    ),
    "line": N_("- {purpose}: {action} on {date}, notice version {version} (SHA-256 {sha256})"),
    "line_unknown_version": N_("- {purpose}: {action} on {date}, notice SHA-256 {sha256}"),
    "line_no_notice": N_("- {purpose}: {action} on {date}"),
    "receipt_id": N_("Receipt ID: {receipt_id}"),
    "attached": N_(
        "The signed receipt is attached as {filename}. It holds the exact notice text "
        "you were shown and a proof that this record is in our tamper-evident consent "
        "ledger. Keep it: anyone can check it without trusting us, with our public key "
        "(the first line of {key_url}):"
    ),
    # A command: the same in every language.
    "command": '    zeroparty receipt verify {filename} --key "KEY"',
    # What the ledger entry says, as the person did it (consent_ledger.actions).
    "granted": N_("agreed"),
    "confirmed": N_("agreed and confirmed"),
    "withdrawn": N_("withdrew"),
    "refused": N_("declined"),
    "gpc-opt-out": N_("opted out by Global Privacy Control"),
    "expired": N_("consent expired"),
    "erased": N_("data erased"),
}


@functools.cache
def sentences_in(language: str) -> Mapping[str, str]:
    """:data:`SENTENCES` in ``language`` (the consent ledger's catalogue), built once."""
    return {key: i18n.translate(language, text) for key, text in SENTENCES.items()}


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    """One purpose as the receipt records it: its title, the entry's action and time,
    and the notice the entry names (its version number, when this site knows it)."""

    purpose: str
    action: str
    occurred_at: datetime
    notice_sha256: str | None
    notice_version: int | None


def _line(line: ReceiptLine, sentences: Mapping[str, str]) -> str:
    values = {
        "purpose": line.purpose,
        "action": sentences.get(line.action, line.action),
        "date": f"{line.occurred_at:%Y-%m-%d %H:%M} UTC",
        "version": line.notice_version,
        "sha256": (line.notice_sha256 or "")[:SHORT_HASH],
    }
    if line.notice_sha256 is None:
        return sentences["line_no_notice"].format_map(values)
    if line.notice_version is None:
        return sentences["line_unknown_version"].format_map(values)
    return sentences["line"].format_map(values)


def receipt_summary(
    lines: Sequence[ReceiptLine],
    *,
    receipt_id: str,
    key_url: str,
    sentences: Mapping[str, str] = SENTENCES,
) -> str:
    """The mail's text: greeting, one line per purpose, the receipt's ID, where the
    signed file is and how to check it. Links to the preference center are added by
    the mail's sender (:func:`zeroparty.mail.with_lead_links`), the footer on the wire."""
    values = {"filename": RECEIPT_FILENAME, "key_url": key_url, "receipt_id": receipt_id}
    paragraphs = [
        sentences["greeting"],
        sentences["intro"],
        "\n".join(_line(line, sentences) for line in lines),
        sentences["receipt_id"].format_map(values),
        sentences["attached"].format_map(values) + "\n\n" + sentences["command"].format_map(values),
    ]
    return "\n\n".join(paragraphs) + "\n"
