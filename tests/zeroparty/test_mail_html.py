"""The HTML alternative of a branded mail: made from the text, every character of it
escaped, links only for http(s) URLs, the brand's colours inline and nothing that loads
anything; on the wire after the unchanged text part (RFC 2046 5.1.4: the preferred,
richer form last), read from the bytes a real SMTP server received."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.fixtures.mail import SmtpServer
from tests.zeroparty.test_mail_wire import body_text, check_wire
from zeroparty.db import Database
from zeroparty.mail import (
    LeadLinks,
    Mail,
    deliver_queued,
    queue_mail,
    transport_for,
    with_lead_links,
)
from zeroparty.mail_html import mail_html
from zeroparty.settings import DEFAULT_SITE_FILE, Settings
from zeroparty.site import load_site
from zeroparty.site_info import MailColours

COLOURS = MailColours("Northwind <Analytics> & Co", "#0b5cad", "#1b1b1f", "#ffffff")
HOSTILE = (
    'Hello <script>alert("x")</script> & <img src=x onerror=alert(1)>,\n'
    "see https://example.org/a?b=1&c=<2>. Or javascript:alert(1), "
    'or http://example.org/x"onmouseover=alert(1)\n\n'
    '    zeroparty receipt verify consent-receipt.json --key "KEY"\n\n'
    "--\nManage your preferences or unsubscribe: https://example.org/p/tok_en-1.\n"
)


class _Tree(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(html: str) -> _Tree:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree


def test_the_text_is_escaped_and_only_urls_are_linked() -> None:
    html = mail_html(HOSTILE, COLOURS)
    tree = _parsed(html)
    allowed = {"html", "head", "meta", "body", "div", "p", "br", "a", "pre", "hr"}
    assert {tag for tag, _ in tree.tags} <= allowed
    assert not any(name.startswith("on") for _, attrs in tree.tags for name in attrs)
    assert not any("src" in attrs for _, attrs in tree.tags)
    links = [attrs["href"] for tag, attrs in tree.tags if tag == "a"]
    assert links == [
        "https://example.org/a?b=1&c=",  # the URL ends at "<"
        "http://example.org/x",  # and at a quote
        "https://example.org/p/tok_en-1",  # trailing punctuation is the sentence's
    ]
    text = "".join(tree.text)
    assert '<script>alert("x")</script>' in text  # shown as text, never as markup
    assert "<img src=x onerror=alert(1)>" in text
    assert "javascript:alert(1)" in text
    assert "Northwind <Analytics> & Co" in text
    assert 'zeroparty receipt verify consent-receipt.json --key "KEY"' in text
    styles = " ".join(str(attrs.get("style", "")) for _, attrs in tree.tags)
    assert set(re.findall(r"#[0-9a-fA-F]{6}", styles)) == {"#0b5cad", "#1b1b1f", "#ffffff"}
    assert "url(" not in styles
    assert [tag for tag, _ in tree.tags].count("pre") == 1
    assert [tag for tag, _ in tree.tags].count("hr") == 1


@pytest.mark.parametrize(
    "colours",
    [
        MailColours("N", "red", "#1b1b1f", "#ffffff"),
        MailColours("N", "#0b5cad", "#1b1b1f;background:url(x)", "#ffffff"),
        MailColours("N", "#0b5cad", "#1b1b1f", ""),
    ],
    ids=["name", "injection", "empty"],
)
def test_a_colour_that_is_not_rrggbb_is_refused(colours: MailColours) -> None:
    with pytest.raises(ValueError, match="not a #rrggbb colour"):
        mail_html("Hello", colours)


def _send(settings: Settings, database: Database, smtp_server: SmtpServer) -> bytes:
    links_mail = with_lead_links(
        Mail(to="lead@example.com", subject="Hi", text="Hello <you> & welcome.",
             headers={"List-Unsubscribe": "<http://testserver/u/abc>",
                      "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}),
        LeadLinks(headers={}, preference_url="http://testserver/p/tok"),
    )  # fmt: skip
    with database.write() as session:
        mail_id = queue_mail(session, links_mail)
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_queued(database, transport, [mail_id], base_url=settings.base_url) == 1
    return smtp_server.raw[-1]


def test_a_branded_mail_has_the_html_part_after_the_unchanged_text(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    raw = _send(settings, database, smtp_server)
    check_wire(raw)
    assert len(re.findall(rb"^MIME-Version:", raw, re.M | re.I)) == 1  # the message's only
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/alternative"
    text_part, html_part = message.iter_parts()  # type: ignore[misc]
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    text = body_text(raw).decode().replace("\r\n", "\n")
    assert text.startswith("Hello <you> & welcome.\n\n--\nManage your preferences")
    html = str(html_part.get_content())
    tree = _parsed(html)
    assert "Hello <you> & welcome." in "".join(tree.text)
    hrefs = [attrs["href"] for tag, attrs in tree.tags if tag == "a"]
    assert hrefs == ["http://testserver/p/tok", "https://northwind.example/privacy"]
    assert "#0b5cad" in html
    assert "This mail was sent by Northwind Analytics GmbH" in html


def test_without_a_brand_a_mail_is_text_only(
    settings: Settings, database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    demo = DEFAULT_SITE_FILE.read_text("utf-8")
    start, end = demo.index("[site.brand]"), demo.index("[purposes.")
    path = tmp_path / "site.toml"
    path.write_text(demo[:start] + demo[end:], "utf-8")
    assert load_site(database, path).changes == ["site.brand: removed"]
    raw = _send(settings, database, smtp_server)
    check_wire(raw)
    assert re.search(rb"^Content-Type: text/plain", raw, re.M)
    assert b"multipart" not in raw
    assert b"text/html" not in raw
