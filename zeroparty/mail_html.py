"""A mail's HTML alternative, made from its text in the brand's colours.

The text part is the mail; this is the same words for clients that show HTML, so it is
made from the finished text (footer included) and says nothing the text does not. Every
character of the text is HTML-escaped; the only markup added is paragraphs, line breaks,
a rule for the ``--`` line before the preference link, ``<pre>`` for indented lines (a
command to copy), and a link for each ``http(s)://`` URL, whose ``href`` is the escaped
URL itself. Styles are inline (mail clients drop ``<style>`` and stylesheets) and hold
only the brand's ``#rrggbb`` colours, checked again here. No images, no scripts, no
remote resources: nothing that loads when the mail is opened.
"""

from __future__ import annotations

import re
from html import escape

from zeroparty.site_info import COLOUR, MailColours

URL = re.compile(r"https?://[^\s<>\"']+")
TRAILING = ".,;:!?)"  # punctuation after a URL ends the sentence, not the URL
FONT = "font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:1.5"


def _linked(line: str, colour: str) -> str:
    parts: list[str] = []
    position = 0
    for match in URL.finditer(line):
        url = match.group(0).rstrip(TRAILING)
        parts.append(escape(line[position : match.start()]))
        parts.append(f'<a href="{escape(url)}" style="color:{colour}">{escape(url)}</a>')
        position = match.start() + len(url)
    parts.append(escape(line[position:]))
    return "".join(parts)


def _block(paragraph: list[str], colours: MailColours) -> str:
    if all(line.startswith("    ") for line in paragraph):
        code = "\n".join(escape(line[4:]) for line in paragraph)
        return f'<pre style="white-space:pre-wrap;margin:0 0 16px">{code}</pre>'
    rule = ""
    if paragraph[0].rstrip() == "--":  # RFC 3676 4.3's signature separator, as text
        rule = f'<hr style="border:0;border-top:1px solid {colours.text};margin:24px 0 16px">'
        paragraph = paragraph[1:]
    lines = "<br>\n".join(_linked(line, colours.primary) for line in paragraph)
    return rule + (f'<p style="margin:0 0 16px">{lines}</p>' if paragraph else "")


def mail_html(text: str, colours: MailColours) -> str:
    """The HTML alternative of ``text`` in ``colours`` (``ValueError`` for a colour
    that is not ``#rrggbb``: never written into a style unchecked)."""
    for colour in (colours.primary, colours.text, colours.background):
        if not COLOUR.fullmatch(colour):
            raise ValueError(f"not a #rrggbb colour: {colour!r}")
    paragraphs: list[list[str]] = [[]]
    for line in text.replace("\r\n", "\n").strip("\n").split("\n"):
        if line.strip():
            paragraphs[-1].append(line.rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    blocks = "\n".join(_block(p, colours) for p in paragraphs if p)
    page = f"background:{colours.background};color:{colours.text}"
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width"></head>\n'
        f'<body style="margin:0;padding:0;{page}">\n'
        f'<div style="max-width:40em;margin:0 auto;padding:16px;{FONT};{page}">\n'
        f'<p style="margin:0 0 16px;font-weight:bold;color:{colours.primary}">'
        f"{escape(colours.name)}</p>\n{blocks}\n</div>\n</body></html>\n"
    )
