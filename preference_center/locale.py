"""Page and mail texts of the preference center, and choosing the language of a page.

The texts are English message ids in the preference center's catalogue
(``preference_center/locale/<lang>/LC_MESSAGES/messages.po``): templates read them by
key (``t.title``), mails too, each translated once per language and process.
The lead's recorded locale wins (they saw their notices in it); otherwise the browser's
``Accept-Language`` (RFC 9110 section 12.5.4, quality values honoured); otherwise English:
:func:`zeroparty.i18n.choose_language`, the rule every visitor's page follows.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from zeroparty import i18n
from zeroparty.i18n import N_

DEFAULT_LOCALE = i18n.SOURCE_LANGUAGE

TEXTS: Mapping[str, str] = {
    "title": N_("Your preferences"),
    "intro": N_("Choose what we may send you and how we may use your data. Changes count at once."),
    "signed_in_as": N_("Preferences for"),
    "purposes": N_("What you agree to"),
    "topics": N_("Topics"),
    "status_permitted": N_("currently on"),
    "status_not_permitted": N_("currently off"),
    "status_pending": N_("waiting for your confirmation"),
    "save": N_("Save my choices"),
    "saved": N_("Your choices are saved."),
    "unsubscribed_all": N_("You are unsubscribed from everything."),
    "unsubscribe_all_heading": N_("Unsubscribe from everything"),
    "unsubscribe_all_text": N_("One click withdraws every consent and every topic."),
    "unsubscribe_all": N_("Unsubscribe from everything"),
    "your_data": N_("Your data"),
    "export_text": N_("Download everything we hold about you, as JSON (GDPR Art. 15 and 20)."),
    "export": N_("Download my data"),
    "receipts": N_("Download my consent receipts"),
    "erase_heading": N_("Erase my data"),
    "erase_text": N_(
        "We mail you a link to confirm. Erasure deletes your email, name, answers and "
        "evidence; a pseudonymous record that consent existed stays, as the law requires."
    ),
    "erase": N_("Request erasure"),
    "erase_requested": N_(
        "We have mailed you a link to confirm the erasure. It works for 24 hours."
    ),
    "erase_confirm_title": N_("Erase your data?"),
    "erase_confirm_text": N_(
        "This deletes your email, name, answers and the evidence of your choices. It "
        "cannot be undone."
    ),
    "erase_confirm": N_("Yes, erase my data"),
    "erased_title": N_("Your data is erased"),
    "erased_text": N_("We hold no personal data about you any more. This link no longer works."),
    "request_title": N_("Get a new link"),
    "request_text": N_("Type your email address and we mail you a link to your preferences."),
    "email": N_("Email address"),
    "send_link": N_("Mail me a link"),
    "request_done": N_(
        "If this address is known to us, a link to its preferences is on its way. Check your inbox."
    ),
    "link_expired": N_("This link has expired."),
    "link_invalid": N_("This link is not valid. It may have been copied incompletely."),
    "link_wrong_purpose": N_("This link is meant for something else."),
    "link_revoked": N_("This link has been withdrawn. A newer one may be in your inbox."),
    "session_expired": N_("Your session has ended. Open the link from your email again."),
    "unsubscribe_title": N_("Unsubscribe"),
    "unsubscribe_text": N_("Stop these emails with one click."),
    "unsubscribe_confirm": N_("Unsubscribe"),
    "unsubscribed_title": N_("You are unsubscribed"),
    "unsubscribed_text": N_("We will not email you about this any more."),
    "manage_link": N_("Manage all your preferences"),
    "mail_link_subject": N_("Your preference link"),
    "mail_link_text": N_("Here is your link to manage what we send you and your data:"),
    "mail_erase_subject": N_("Confirm the erasure of your data"),
    "mail_erase_text": N_("Open this link to confirm that we should erase your data:"),
    "mail_ignore": N_("If you did not ask for this, ignore this email."),
    "notice_changed": N_(
        "This text changed since you agreed to it, so your earlier consent ended. Tick "
        "the box if you agree to the new text."
    ),
    "what_changed": N_("What changed:"),
    "gpc_honoured": N_(
        "Your browser sends a Global Privacy Control signal: we honour it as your opt-out "
        "of the sale or sharing of your personal information."
    ),
    "status_gpc": N_("Global Privacy Control honoured"),
    "ends_on": N_("This consent ends on"),
    "renew": N_("To keep it, leave the box ticked and save your choices shortly before."),
    "mail_confirm_grant_subject": N_("Please confirm your choice"),
    "mail_confirm_grant_text": N_("Open this link to confirm that you agree to receive:"),
    "confirm_sent": N_(
        "Almost done: we have mailed you a link to confirm what you agreed to. Until you "
        "confirm, it stays off."
    ),
    "confirm_grant_title": N_("Confirm your choice"),
    "confirm_grant_text": N_("Please confirm that you agree to:"),
    "confirm_grant": N_("Yes, I confirm"),
    "confirmed_title": N_("Thank you"),
    "confirmed_text": N_("Your choice is confirmed."),
    "footer": N_("Manage your preferences or unsubscribe:"),
}


def choose_locale(
    recorded: str | None, accept_language: str | None, requested: str | None = None
) -> str:
    """``?lang=`` (``requested``), else the lead's recorded locale, else the browser's,
    among the languages with a catalogue; English otherwise."""
    return i18n.choose_language(
        i18n.languages(),
        requested=requested,
        recorded=recorded,
        accept_language=accept_language,
        default=DEFAULT_LOCALE,
    )


@dataclass(frozen=True, slots=True)
class LanguageWish:
    """What a request says of its language: ``?lang=`` (only a language with a
    catalogue, else ``None``) and ``Accept-Language``."""

    requested: str | None = None
    accept_language: str | None = None

    @classmethod
    def of(cls, lang: str | None, accept_language: str | None) -> LanguageWish:
        language = i18n.primary(lang[:16]) if lang else ""
        return cls(language if language in i18n.languages() else None, accept_language)

    def choose(self, recorded: str | None) -> str:
        return choose_locale(recorded, self.accept_language, self.requested)

    def query(self, separator: str = "?") -> str:
        """``?lang=xx`` to carry an asked-for language to the next page; else empty."""
        return f"{separator}lang={self.requested}" if self.requested else ""


@functools.cache
def _strings(language: str) -> Mapping[str, str]:
    return {key: i18n.gettext(language, text) for key, text in TEXTS.items()}


def text_language(locale: str) -> str:
    """The language whose texts a page in ``locale`` shows: its primary subtag when it
    has a catalogue, else English."""
    language = i18n.primary(locale)
    return language if language in i18n.languages() else DEFAULT_LOCALE


def strings(locale: str) -> Mapping[str, str]:
    """Every text in ``locale`` (English where it has no catalogue), built once."""
    return _strings(text_language(locale))
