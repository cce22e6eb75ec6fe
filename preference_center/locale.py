"""Page strings in English and German, and choosing the language of a page.

The lead's recorded locale wins (they saw their notices in it); otherwise the browser's
``Accept-Language`` (RFC 9110 section 12.5.4, quality values honoured); otherwise English.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_LOCALE = "en"

STRINGS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "title": "Your preferences",
        "intro": "Choose what we may send you and how we may use your data. Changes count at once.",
        "signed_in_as": "Preferences for",
        "purposes": "What you agree to",
        "topics": "Topics",
        "status_permitted": "currently on",
        "status_not_permitted": "currently off",
        "status_pending": "waiting for your confirmation",
        "save": "Save my choices",
        "saved": "Your choices are saved.",
        "unsubscribed_all": "You are unsubscribed from everything.",
        "unsubscribe_all_heading": "Unsubscribe from everything",
        "unsubscribe_all_text": "One click withdraws every consent and every topic.",
        "unsubscribe_all": "Unsubscribe from everything",
        "your_data": "Your data",
        "export_text": "Download everything we hold about you, as JSON (GDPR Art. 15 and 20).",
        "export": "Download my data",
        "receipts": "Download my consent receipts",
        "erase_heading": "Erase my data",
        "erase_text": (
            "We mail you a link to confirm. Erasure deletes your email, name, answers and "
            "evidence; a pseudonymous record that consent existed stays, as the law requires."
        ),
        "erase": "Request erasure",
        "erase_requested": (
            "We have mailed you a link to confirm the erasure. It works for 24 hours."
        ),
        "erase_confirm_title": "Erase your data?",
        "erase_confirm_text": (
            "This deletes your email, name, answers and the evidence of your choices. "
            "It cannot be undone."
        ),
        "erase_confirm": "Yes, erase my data",
        "erased_title": "Your data is erased",
        "erased_text": "We hold no personal data about you any more. This link no longer works.",
        "request_title": "Get a new link",
        "request_text": "Type your email address and we mail you a link to your preferences.",
        "email": "Email address",
        "send_link": "Mail me a link",
        "request_done": (
            "If this address is known to us, a link to its preferences is on its way. "
            "Check your inbox."
        ),
        "link_expired": "This link has expired.",
        "link_invalid": "This link is not valid. It may have been copied incompletely.",
        "link_wrong_purpose": "This link is meant for something else.",
        "link_revoked": "This link has been withdrawn. A newer one may be in your inbox.",
        "session_expired": "Your session has ended. Open the link from your email again.",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_text": "Stop these emails with one click.",
        "unsubscribe_confirm": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_text": "We will not email you about this any more.",
        "manage_link": "Manage all your preferences",
        "mail_link_subject": "Your preference link",
        "mail_link_text": "Here is your link to manage what we send you and your data:",
        "mail_erase_subject": "Confirm the erasure of your data",
        "mail_erase_text": "Open this link to confirm that we should erase your data:",
        "mail_ignore": "If you did not ask for this, ignore this email.",
        "notice_changed": (
            "This text changed since you agreed to it, so your earlier consent ended. "
            "Tick the box if you agree to the new text."
        ),
        "what_changed": "What changed:",
        "gpc_honoured": (
            "Your browser sends a Global Privacy Control signal: we honour it as your "
            "opt-out of the sale or sharing of your personal information."
        ),
        "status_gpc": "Global Privacy Control honoured",
        "ends_on": "This consent ends on",
        "renew": "To keep it, leave the box ticked and save your choices shortly before.",
        "mail_confirm_grant_subject": "Please confirm your choice",
        "mail_confirm_grant_text": "Open this link to confirm that you agree to receive:",
        "confirm_sent": (
            "Almost done: we have mailed you a link to confirm what you agreed to. "
            "Until you confirm, it stays off."
        ),
        "confirm_grant_title": "Confirm your choice",
        "confirm_grant_text": "Please confirm that you agree to:",
        "confirm_grant": "Yes, I confirm",
        "confirmed_title": "Thank you",
        "confirmed_text": "Your choice is confirmed.",
        "footer": "Manage your preferences or unsubscribe:",
    },
    "de": {
        "title": "Ihre Einstellungen",
        "intro": (
            "Wählen Sie, was wir Ihnen schicken und wie wir Ihre Daten nutzen dürfen. "
            "Änderungen gelten sofort."
        ),
        "signed_in_as": "Einstellungen für",
        "purposes": "Wozu Sie zustimmen",
        "topics": "Themen",
        "status_permitted": "derzeit an",
        "status_not_permitted": "derzeit aus",
        "status_pending": "wartet auf Ihre Bestätigung",
        "save": "Auswahl speichern",
        "saved": "Ihre Auswahl ist gespeichert.",
        "unsubscribed_all": "Sie sind von allem abgemeldet.",
        "unsubscribe_all_heading": "Von allem abmelden",
        "unsubscribe_all_text": "Ein Klick widerruft jede Einwilligung und jedes Thema.",
        "unsubscribe_all": "Von allem abmelden",
        "your_data": "Ihre Daten",
        "export_text": (
            "Laden Sie alles herunter, was wir über Sie speichern, als JSON (DSGVO Art. 15 und 20)."
        ),
        "export": "Meine Daten herunterladen",
        "receipts": "Meine Einwilligungsbelege herunterladen",
        "erase_heading": "Meine Daten löschen",
        "erase_text": (
            "Wir schicken Ihnen einen Link zur Bestätigung. Die Löschung entfernt E-Mail, "
            "Name, Antworten und Nachweise; ein pseudonymer Beleg, dass eine Einwilligung "
            "bestand, bleibt, wie es das Gesetz verlangt."
        ),
        "erase": "Löschung beantragen",
        "erase_requested": (
            "Wir haben Ihnen einen Link zur Bestätigung der Löschung geschickt. Er gilt 24 Stunden."
        ),
        "erase_confirm_title": "Ihre Daten löschen?",
        "erase_confirm_text": (
            "Dies löscht Ihre E-Mail-Adresse, Ihren Namen, Ihre Antworten und die Nachweise "
            "Ihrer Auswahl. Das lässt sich nicht rückgängig machen."
        ),
        "erase_confirm": "Ja, meine Daten löschen",
        "erased_title": "Ihre Daten sind gelöscht",
        "erased_text": (
            "Wir speichern keine personenbezogenen Daten mehr über Sie. "
            "Dieser Link gilt nicht mehr."
        ),
        "request_title": "Neuen Link anfordern",
        "request_text": (
            "Geben Sie Ihre E-Mail-Adresse ein, und wir schicken Ihnen einen Link zu Ihren "
            "Einstellungen."
        ),
        "email": "E-Mail-Adresse",
        "send_link": "Link zuschicken",
        "request_done": (
            "Wenn uns diese Adresse bekannt ist, ist ein Link zu ihren Einstellungen "
            "unterwegs. Sehen Sie in Ihrem Posteingang nach."
        ),
        "link_expired": "Dieser Link ist abgelaufen.",
        "link_invalid": "Dieser Link ist ungültig. Vielleicht wurde er unvollständig kopiert.",
        "link_wrong_purpose": "Dieser Link ist für etwas anderes gedacht.",
        "link_revoked": (
            "Dieser Link wurde zurückgezogen. Ein neuerer ist vielleicht in Ihrem Posteingang."
        ),
        "session_expired": (
            "Ihre Sitzung ist abgelaufen. Öffnen Sie den Link aus Ihrer E-Mail erneut."
        ),
        "unsubscribe_title": "Abmelden",
        "unsubscribe_text": "Diese E-Mails mit einem Klick abbestellen.",
        "unsubscribe_confirm": "Abmelden",
        "unsubscribed_title": "Sie sind abgemeldet",
        "unsubscribed_text": "Wir schreiben Ihnen dazu keine E-Mails mehr.",
        "manage_link": "Alle Einstellungen verwalten",
        "mail_link_subject": "Ihr Link zu Ihren Einstellungen",
        "mail_link_text": (
            "Hier ist Ihr Link, um zu verwalten, was wir Ihnen schicken, und Ihre Daten:"
        ),
        "mail_erase_subject": "Bestätigen Sie die Löschung Ihrer Daten",
        "mail_erase_text": "Öffnen Sie diesen Link, um die Löschung Ihrer Daten zu bestätigen:",
        "mail_ignore": "Wenn Sie das nicht angefordert haben, ignorieren Sie diese E-Mail.",
        "notice_changed": (
            "Dieser Text hat sich geändert, seit Sie zugestimmt haben; Ihre frühere "
            "Einwilligung ist daher beendet. Kreuzen Sie das Feld an, wenn Sie dem neuen "
            "Text zustimmen."
        ),
        "what_changed": "Was sich geändert hat:",
        "gpc_honoured": (
            "Ihr Browser sendet ein Global-Privacy-Control-Signal: Wir beachten es als "
            "Ihren Widerspruch gegen Verkauf und Weitergabe Ihrer Daten."
        ),
        "status_gpc": "Global Privacy Control beachtet",
        "ends_on": "Diese Einwilligung endet am",
        "renew": "Um sie zu behalten, lassen Sie das Feld angekreuzt und speichern Sie kurz davor.",
        "mail_confirm_grant_subject": "Bitte bestätigen Sie Ihre Auswahl",
        "mail_confirm_grant_text": (
            "Öffnen Sie diesen Link, um zu bestätigen, dass Sie Folgendes erhalten möchten:"
        ),
        "confirm_sent": (
            "Fast fertig: Wir haben Ihnen einen Link zur Bestätigung geschickt. "
            "Bis Sie bestätigen, bleibt es ausgeschaltet."
        ),
        "confirm_grant_title": "Bestätigen Sie Ihre Auswahl",
        "confirm_grant_text": "Bitte bestätigen Sie, dass Sie zustimmen:",
        "confirm_grant": "Ja, ich bestätige",
        "confirmed_title": "Vielen Dank",
        "confirmed_text": "Ihre Auswahl ist bestätigt.",
        "footer": "Einstellungen verwalten oder abmelden:",
    },
}
LOCALES = tuple(STRINGS)


def _language(tag: str) -> str:
    return tag.strip().split("-")[0].split("_")[0].lower()


def from_accept_language(header: str | None) -> str | None:
    """The best supported language in an ``Accept-Language`` header, if any."""
    if not header:
        return None
    choices: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")[:20]):
        tag, _, params = item.partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        language = _language(tag)
        if language in STRINGS and quality > 0:
            choices.append((-quality, position, language))
    return min(choices)[2] if choices else None


def choose_locale(recorded: str | None, accept_language: str | None) -> str:
    if recorded and _language(recorded) in STRINGS:
        return _language(recorded)
    return from_accept_language(accept_language) or DEFAULT_LOCALE


def strings(locale: str) -> Mapping[str, str]:
    return STRINGS.get(locale, STRINGS[DEFAULT_LOCALE])
