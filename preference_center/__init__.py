"""Signed links, the preference page, one-click unsubscribe, self-service export and
erasure. ``mail_headers`` is the helper every outgoing mail uses."""

from preference_center.links import MailLinks, mail_headers

__all__ = ["MailLinks", "mail_headers"]
