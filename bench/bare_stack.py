"""The bare stack doing zeroparty's hot paths with nothing else: the ceiling a ratio is
taken against (the shape of ``shared/perf/bare.py`` described in PERF-NOTES).

Starlette + uvicorn (uvloop, httptools), stdlib :mod:`sqlite3` on a copy of the same
migrated zeroparty SQLite file, one connection per worker process, WAL and
``synchronous=NORMAL``, statements prepared once (sqlite3's statement cache) and run in
the ``async`` endpoint itself: no threadpool, no ORM, no SQLAlchemy statement building.

  POST /submit                 the urlencoded form; in one ``BEGIN IMMEDIATE`` transaction a
                               subject with its email and name, and one hash-chained consent
                               entry per ticked ``consent`` box (head read and updated); 303.
  GET  /lookup                 (also ``/api/consent``) ``?email=&purpose=``: zeroparty's
                               answer fields (purpose, permitted, status, since, notice)
                               from purposes ⟕ subject_profiles ⟕ consent_state, as JSON.
  GET  /page                   ``?email=``: the lead's purposes with their notice texts, its
                               states and the purposes' topics with its subscriptions, as a
                               Jinja page.
  POST /u/{subject}/{purpose}  RFC 8058 one-click (``List-Unsubscribe=One-Click``): one
                               hash-chained withdrawal entry appended, head updated; 200.
  POST /events                 ``{"events": [...]}``: parsed, the rows inserted with one
                               ``executemany`` in one transaction (ids deduplicated).
  GET  /healthz                ``{"status": "ok"}``.

Served with ``uvicorn bench.bare_stack:app`` and the database file in ``BARE_DB``. The bare
tables (``bare_*``) live beside zeroparty's in the same file; the reads use zeroparty's own
tables and indexes.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jinja2
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

DB_ENV = "BARE_DB"
SCHEMA = """
CREATE TABLE IF NOT EXISTS bare_subjects (id TEXT PRIMARY KEY, email TEXT UNIQUE, name TEXT);
CREATE TABLE IF NOT EXISTS bare_events (seq INTEGER PRIMARY KEY, subject_id TEXT, purpose TEXT,
       action TEXT, evidence TEXT, prev_hash TEXT, hash TEXT UNIQUE);
CREATE TABLE IF NOT EXISTS bare_head (id INTEGER PRIMARY KEY, seq INTEGER, hash TEXT);
INSERT OR IGNORE INTO bare_head VALUES (1, 0, '0000');
CREATE TABLE IF NOT EXISTS bare_lead_events (id TEXT PRIMARY KEY, email TEXT, type TEXT,
       occurred_at TEXT, properties TEXT);
"""

INSERT_SUBJECT = "INSERT INTO bare_subjects VALUES (?, ?, ?)"
READ_HEAD = "SELECT seq, hash FROM bare_head WHERE id = 1"
INSERT_EVENT = "INSERT INTO bare_events VALUES (?, ?, ?, ?, ?, ?, ?)"
UPDATE_HEAD = "UPDATE bare_head SET seq = ?, hash = ? WHERE id = 1"
LOOKUP = (
    "SELECT s.status, s.permitted, s.since, s.notice_sha256 FROM purposes u "
    "LEFT JOIN subject_profiles p ON p.email = ? "
    "LEFT JOIN consent_state s ON s.subject_id = p.subject_id AND s.purpose_key = u.key "
    "WHERE u.key = ?"
)
PAGE_PURPOSES = (
    "SELECT u.key, u.title, n.text, s.permitted FROM purposes u "
    "JOIN notice_versions n ON n.purpose_key = u.key AND n.locale = 'en' "
    "AND n.version = (SELECT max(version) FROM notice_versions m "
    "WHERE m.purpose_key = u.key AND m.locale = 'en') "
    "LEFT JOIN consent_state s ON s.purpose_key = u.key AND s.subject_id = ? ORDER BY u.key"
)
PAGE_TOPICS = (
    "SELECT t.purpose_key, t.key, t.title, coalesce(ts.subscribed, 1) FROM topics t "
    "LEFT JOIN topic_subscriptions ts ON ts.topic_key = t.key AND ts.subject_id = ? "
    "ORDER BY t.key"
)
SUBJECT_OF = "SELECT subject_id FROM subject_profiles WHERE email = ?"
INSERT_LEAD_EVENT = "INSERT OR IGNORE INTO bare_lead_events VALUES (?, ?, ?, ?, ?)"

PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Your choices</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head><body><main>
<h1>Your choices, {{ email }}</h1><form method="post">
{% for p in purposes %}<fieldset><legend>{{ p.title }}</legend>
<p>{{ p.text }}</p><label><input type="checkbox" name="consent" value="{{ p.key }}"
{% if p.permitted %}checked{% endif %}> {{ p.title }}</label>
{% for t in p.topics %}<label><input type="checkbox" name="topic" value="{{ t.key }}"
{% if t.subscribed %}checked{% endif %}> {{ t.title }}</label>{% endfor %}
</fieldset>{% endfor %}
<button>Save</button></form></main></body></html>"""
)


class Store:
    """The worker's one connection, opened at start-up."""

    conn: sqlite3.Connection


store = Store()


def open_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.executescript(SCHEMA)
    return conn


def _append(conn: sqlite3.Connection, sid: str, purposes: list[str], action: str,
            evidence: bytes) -> None:  # fmt: skip
    """Hash-chained entries for ``purposes`` and the head, inside the caller's transaction."""
    seq, prev = conn.execute(READ_HEAD).fetchone()
    for purpose in purposes:
        seq += 1
        body = orjson.dumps({"seq": seq, "s": sid, "p": purpose, "a": action, "prev": prev})
        digest = hashlib.sha256(body).hexdigest()
        conn.execute(INSERT_EVENT, (seq, sid, purpose, action, evidence, prev, digest))
        prev = digest
    conn.execute(UPDATE_HEAD, (seq, prev))


def _evidence(request: Request) -> bytes:
    client = request.client.host if request.client else None
    return orjson.dumps({"ua": request.headers.get("user-agent"), "ip": client})


async def submit(request: Request) -> Response:
    form = await request.form()
    email = str(form["email"]).lower()
    sid = secrets.token_hex(16)
    purposes = [str(p) for p in form.getlist("consent")]
    evidence = _evidence(request)
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(INSERT_SUBJECT, (sid, email, form.get("name")))
        _append(conn, sid, purposes, "granted", evidence)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return RedirectResponse("/thanks", status_code=303)


async def lookup(request: Request) -> Response:
    q = request.query_params
    purpose = q["purpose"]
    row = store.conn.execute(LOOKUP, (q["email"].strip().lower(), purpose)).fetchone()
    if row is None:
        return Response(b'{"error":"unknown purpose"}', 404, media_type="application/json")
    status, permitted, since, notice = row
    body = {
        "purpose": purpose,
        "permitted": bool(permitted) if status is not None else False,
        "status": status or "none",
        "since": since,
        "notice_sha256": notice,
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def page(request: Request) -> Response:
    email = request.query_params["email"].lower()
    conn = store.conn
    found = conn.execute(SUBJECT_OF, (email,)).fetchone()
    sid = found[0] if found else ""
    topics: dict[str, list[dict[str, Any]]] = {}
    for purpose, key, title, subscribed in conn.execute(PAGE_TOPICS, (sid,)):
        topic = {"key": key, "title": title, "subscribed": subscribed}
        topics.setdefault(purpose, []).append(topic)
    purposes = [
        {"key": k, "title": t, "text": x, "permitted": bool(p), "topics": topics.get(k, [])}
        for k, t, x, p in conn.execute(PAGE_PURPOSES, (sid,))
    ]
    return HTMLResponse(PAGE.render(email=email, purposes=purposes))


async def one_click(request: Request) -> Response:
    form = await request.form()
    if form.get("List-Unsubscribe") != "One-Click":
        return PlainTextResponse("expected List-Unsubscribe=One-Click", status_code=400)
    sid, purpose = request.path_params["subject"], request.path_params["purpose"]
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        _append(conn, sid, [purpose], "withdrawn", _evidence(request))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return PlainTextResponse("unsubscribed")


async def events(request: Request) -> Response:
    batch = orjson.loads(await request.body())["events"]
    rows = [
        (e["id"], e["email"].lower(), e["type"], e["occurred_at"],
         orjson.dumps(e.get("properties") or {}))
        for e in batch
    ]  # fmt: skip
    conn = store.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = conn.total_changes
        conn.executemany(INSERT_LEAD_EVENT, rows)
        accepted = conn.total_changes - before
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    body = {"accepted": accepted, "duplicates": len(rows) - accepted, "dropped": 0}
    return Response(orjson.dumps(body), 201 if accepted else 200, media_type="application/json")


async def healthz(_request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    store.conn = open_connection(os.environ[DB_ENV])
    try:
        yield
    finally:
        store.conn.close()


app = Starlette(
    routes=[
        Route("/submit", submit, methods=["POST"]),
        Route("/lookup", lookup),
        Route("/api/consent", lookup),  # the same, under zeroparty's path (bench.consent_lookup)
        Route("/page", page),
        Route("/u/{subject}/{purpose}", one_click, methods=["POST"]),
        Route("/events", events, methods=["POST"]),
        Route("/healthz", healthz),
    ],
    lifespan=lifespan,
)
