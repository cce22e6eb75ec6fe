"""Stored XSS through the compliance console: what visitors typed, shown to staff.

The payload corpus of ``test_hostile_input`` (plus spreadsheet formulas) goes in where
visitors and integrations can put text: the contact form's name, answers, hidden UTM
fields and page URL, the browser's user agent and referer, the consent API's name and
evidence, and a request note. Each hostile lead also downloads its data from the
preference page (a self-service access request in the queue). Then an admin fetches
every console page that shows any of it: the home page, lead search results, each
lead's timeline and proof page, the ledger view, the requests queue, the reports, the
staff log, the accounts and hand-off SLA pages (when the app has them); and the
exports: the ledger as CSV (every cell formula-safe) and JSON lines, and a lead's data
download (JSON attachments, never HTML). What staff type (the search box, ledger
filters) is shown back inert too.

Inert means: no payload text verbatim in the HTML, no ``<script>`` or ``<style>``
without the page's nonce, no event-handler attribute, no ``javascript:`` URL, no
``iframe``/``object``/``embed``/``math`` element (the console has none of its own).
"""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser

from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.export import FORMULA_PREFIXES
from consent_ledger.requests import DataSubjectRequest
from consent_ledger.subjects import find_subject_id
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens, current_version
from tests.console.conftest import csrf_of, log_in, make_staff
from tests.factories import notice_hash
from tests.reliability.live import FormTokens
from tests.reliability.test_hostile_input import PAYLOADS, _header
from zeroparty.db import Database
from zeroparty.settings import Settings

FORMULAS = [
    '=HYPERLINK("http://evil.example","x")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,1)",
]
FOREIGN_TAGS = {"iframe", "object", "embed", "math", "mglyph", "mtext", "frame", "base"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data"}


class _ConsoleMarkup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag in ("script", "style") and "nonce" not in names and "src" not in names:
            self.problems.append(f"<{tag}> without the page's nonce")
        if tag in FOREIGN_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>")
            if name in URL_ATTRIBUTES and re.sub(r"\s", "", value or "").lower().startswith(
                ("javascript:", "vbscript:", "data:text/html")
            ):
                self.problems.append(f"<{tag} {name}={value!r}>")


def assert_console_inert(html: str, where: str) -> None:
    parser = _ConsoleMarkup()
    parser.feed(html)
    assert not parser.problems, f"{where}: {parser.problems}"
    for payload in PAYLOADS:
        if any(c in payload for c in "<>\"'"):
            assert payload not in html, f"{where}: payload shown unescaped: {payload!r}"
    assert "<script>alert" not in html.lower(), where


def _submit(client: TestClient, tokens: FormTokens, email: str, payload: str) -> None:
    """The contact form as a browser posts it, with ``payload`` in every typed field
    (one-line fields refuse line breaks: there it comes on one line)."""
    line = one_line(payload)
    answer = client.post(
        "/f/contact",
        data={
            "_rt": tokens.fresh(),
            "email": email,
            "name": line,
            "company": line,
            "job_title": line[:90],
            "message": payload,
            "utm_source": line,
            "utm_campaign": line,
            "_page": "https://www.northwind.example/?q=" + payload,
            "consent": ["newsletter", "profiling"],
        },
        headers={"User-Agent": _header(payload), "Referer": _header(payload)},
        follow_redirects=True,
    )
    assert answer.status_code == 200, answer.text


def one_line(payload: str) -> str:
    """``payload`` as a one-line field can hold it: line breaks become spaces."""
    return " ".join(payload.splitlines())


def _download(client: TestClient, settings: Settings, database: Database, email: str) -> None:
    """The lead opens its preference page and downloads its data (a self-service
    access request, listed in the console's queue)."""
    with database.read() as session:
        subject_id = find_subject_id(session, email)
        assert subject_id is not None
        version = current_version(session, subject_id)
    token = LinkTokens(settings).issue(LinkPurpose.MANAGE, LinkClaim(subject_id, version))
    visitor = TestClient(client.app)
    with visitor:
        assert visitor.get(f"/p/{token}", headers={"Sec-Fetch-Site": "none"}).status_code == 200
        assert visitor.get("/p/export").status_code == 200


def _attachment(answer: object, kind: str) -> None:
    headers = answer.headers  # type: ignore[attr-defined]
    assert answer.status_code == 200  # type: ignore[attr-defined]
    assert "attachment" in headers["content-disposition"]
    assert not headers["content-type"].startswith("text/html")
    assert kind in headers["content-type"]


def test_stored_payloads_are_inert_on_every_console_page(
    app_client: TestClient, settings: Settings, database: Database, api_key: str
) -> None:
    tokens = FormTokens(app_client, "contact")
    hostile = [*PAYLOADS, *FORMULAS]
    emails = [f"xss{n}@example.com" for n in range(len(hostile))]
    for email, payload in zip(emails, hostile, strict=True):
        _submit(app_client, tokens, email, payload)
    # An integration relays what visitors typed through the consent API.
    for email, payload in zip(emails, hostile, strict=True):
        answer = app_client.post(
            "/api/consent",
            json={"email": email, "purpose": "product_updates", "action": "granted",
                  "notice_sha256": notice_hash(database, "product_updates"),
                  "method": "double-opt-in", "source": "api", "name": one_line(payload),
                  "evidence": {"user_agent": payload, "note": payload, "form": payload}},
            headers={"Authorization": f"Bearer {api_key}"},
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
    for email in emails[:4]:
        _download(app_client, settings, database, email)
    with database.read() as session:
        subjects = [find_subject_id(session, email) for email in emails]
    assert all(subjects)

    make_staff(database, "admin@staff.example", "admin")
    admin = log_in(TestClient(app_client.app), "admin@staff.example")
    with admin:
        for payload in (PAYLOADS[0], PAYLOADS[1], FORMULAS[0]):
            entered = admin.post(
                "/console/requests",
                data={"csrf": csrf_of(admin), "email": emails[0], "kind": "access",
                      "note": payload},
                follow_redirects=False,
            )  # fmt: skip
            assert entered.status_code == 303, entered.text

        pages = {
            "home": "/console/",
            "search": "/console/leads?q=xss",
            "ledger": "/console/ledger",
            "ledger (api entries)": "/console/ledger?source=api",
            "requests": "/console/requests",
            "reports": "/console/reports",
            "audit": "/console/audit",
        }
        app = app_client.app
        routes = {getattr(route, "path", None) for route in app.routes}  # type: ignore[attr-defined]
        if "/console/accounts" in routes:  # the sales pages (job titles, BANT)
            pages.update(
                accounts="/console/accounts",
                account="/console/accounts/example.com",
                sla="/console/sla",
            )
        for subject_id in subjects:
            pages[f"timeline {subject_id}"] = f"/console/leads/{subject_id}"
            pages[f"proof {subject_id}"] = f"/console/leads/{subject_id}/proof/profiling"
        search = admin.get("/console/leads", params={"q": "xss"})
        assert all(str(s)[:8] in search.text for s in subjects), "search shows every lead"
        for where, path in pages.items():
            page = admin.get(path)
            assert page.status_code == 200, (where, page.status_code)
            assert page.headers["content-type"].startswith("text/html"), where
            assert_console_inert(page.text, where)
        timeline = admin.get(f"/console/leads/{subjects[0]}").text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in timeline  # shown, as text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in admin.get("/console/requests").text
        # What staff type is shown back too (the search box, a refused filter).
        for payload in PAYLOADS:
            for path, params in (
                ("/console/leads", {"q": payload}),
                ("/console/ledger", {"purpose": payload, "source": payload}),
                ("/console/ledger", {"from": payload}),
            ):
                page = admin.get(path, params=params)
                assert page.status_code < 500, (path, payload)
                assert_console_inert(page.text, f"{path} with {payload!r}")

        # Exports: attachments, never HTML; CSV cells never start a formula.
        csv_export = admin.get("/console/ledger/export", params={"format": "csv"})
        _attachment(csv_export, "csv")
        rows = list(csv.reader(io.StringIO(csv_export.text)))
        assert len(rows) > 2 * len(hostile)
        for row in rows:
            for cell in row:
                assert not cell.startswith(FORMULA_PREFIXES), cell
        assert any("HYPERLINK" in cell for row in rows for cell in row)
        jsonl = admin.get("/console/ledger/export", params={"format": "jsonl"})
        _attachment(jsonl, "json")
        entries = [json.loads(line) for line in jsonl.text.splitlines()]
        assert any((e["evidence"] or {}).get("note") == FORMULAS[0] for e in entries)

        with database.read() as session:
            by_staff = DataSubjectRequest.channel != "preference_center"
            staff_entered = session.scalars(select(DataSubjectRequest.id).where(by_staff)).first()
        assert staff_entered is not None
        download = admin.post(
            f"/console/requests/{staff_entered}/access", data={"csrf": csrf_of(admin)}
        )
        _attachment(download, "json")
        assert json.loads(download.content)["subject_id"] == subjects[0]
        assert_console_inert(admin.get("/console/requests").text, "requests after answering")
