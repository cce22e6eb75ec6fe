"""Helpers for capture's tests: render tokens as a browser gets them, row counts."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.site import load_site

TABLES = (
    "subjects",
    "subject_profiles",
    "consent_events",
    "consent_evidence",
    "capture_submissions",
    "capture_answers",
    "capture_idempotency",
    "mail_outbox",
)
TOKEN_RE = re.compile(r'name="_rt" value="([^"]+)"')


def token_in(html: str) -> str:
    match = TOKEN_RE.search(html)
    assert match is not None, "no render token in the page"
    return match.group(1)


class _Elements(HTMLParser):
    TEXT_TAGS = frozenset(
        {
            "label",
            "legend",
            "p",
            "h1",
            "h2",
            "button",
            "option",
            "li",
            "a",
            "textarea",
            "span",
            "title",
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str]] = []
        self._open: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, **{k: v or "" for k, v in attrs}, "text": ""}
        self.found.append(element)
        if tag in self.TEXT_TAGS:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index]["tag"] == tag:
                del self._open[index]
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data


def find_all(html: str, tag: str, **attrs: str) -> list[dict[str, str]]:
    """Elements ``tag`` with these attribute values (``class_`` for class); their
    attributes plus ``text`` (the text inside, for text elements)."""
    parser = _Elements()
    parser.feed(html)
    wanted = {k.rstrip("_"): v for k, v in attrs.items()}
    return [
        e for e in parser.found if e["tag"] == tag and all(e.get(k) == v for k, v in wanted.items())
    ]


def one(html: str, tag: str, **attrs: str) -> dict[str, str]:
    found = find_all(html, tag, **attrs)
    assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
    return found[0]


@pytest.fixture
def tokens(settings: Settings) -> CaptureTokens:
    return CaptureTokens(settings.secret_keys)


@pytest.fixture
def render(app_client: TestClient, tokens: CaptureTokens) -> Callable[..., str]:
    """``render(slug)``: GET the hosted form and return its render token, aged ``age``
    seconds (a person takes a while to fill a form; the minimum fill time is checked)."""

    def get(slug: str, age: float = 30.0, **headers: str) -> str:
        response = app_client.get(f"/f/{slug}", headers=headers)
        assert response.status_code == 200, response.text
        token = tokens.read_render(token_in(response.text))
        aged = dataclasses.replace(token, rendered_at=token.rendered_at - age)
        return tokens.issue_render(aged)

    return get


@pytest.fixture
def counts(database: Database) -> Callable[[], dict[str, int]]:
    """Row counts of every table a submission may write."""

    def count() -> dict[str, int]:
        with database.read() as session:
            return {
                table: int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in TABLES
            }

    return count


@pytest.fixture
def load_toml(database: Database, tmp_path: Path) -> Callable[..., list[str]]:
    """``load_toml(extra, replace=(old, new))``: load the demo site with ``extra``
    appended (and ``old`` replaced by ``new``) into the test database."""
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")

    def load(extra: str, replace: tuple[str, str] | None = None) -> list[str]:
        path = tmp_path / "site.toml"
        base = demo.replace(*replace) if replace else demo
        path.write_text(base + "\n" + extra, encoding="utf-8")
        return load_site(database, path).changes

    return load
