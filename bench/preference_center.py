"""Preference page renders/s and one-click unsubscribes/s, beside a bare Starlette app.

zeroparty: the real app (``uvicorn --factory zeroparty.app:app_from_env``, 1 worker) on a
migrated SQLite file with the demo site and ``LEADS`` leads. ``GET /p/`` with a session
cookie renders a lead's page (5 queries, the Jinja2 page); ``POST /u/{token}`` with
``List-Unsubscribe=One-Click`` withdraws a lead's newsletter (ledger append, evidence,
projection, topics), each lead once. Baseline, same run, same uvicorn settings: a bare
Starlette app rendering a Jinja2 page of the same shape from one query, and parsing
the same form body and inserting one row (SQLite, Core, statement built once).
Load: ``wrk -t1 -c32`` for the GETs; 32 keep-alive asyncio connections for the POSTs.

Run alone: ``python -m bench.preference_center [--quick]``. The figures in BENCHMARKS.md
come from :mod:`bench.hot_paths` instead (paths 4 and 5), which measures both against the
bare stack of :mod:`bench.bare_stack` (sqlite3 in the async endpoint, statements
prepared once, a hash-chained append for the one-click); this module's own baseline
is weaker (a sync endpoint in the threadpool, one plain insert).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from bench.databases import prepare, sqlite_url, workdir
from bench.http_load import LoadGenerator
from bench.report import percentile
from bench.servers import Server, free_port

SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 (a throwaway server's key)
CONNECTIONS = 32
LEADS = 3000

_bare_meta = MetaData()
_unsubscribes = Table(
    "bare_unsubscribes",
    _bare_meta,
    Column("id", Integer, primary_key=True),
    Column("token", String(300)),
)
_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html><html lang="en"><head><title>Your preferences</title></head><body>
<main><h1>Your preferences</h1><form method="post" action="/p/">
{% for p in purposes %}<fieldset><legend>{{ p.title }}</legend>
<input type="checkbox" name="purpose" value="{{ p.key }}" id="p-{{ p.key }}" checked>
<label for="p-{{ p.key }}">{{ p.text }}</label>
{% for t in p.topics %}<input type="checkbox" name="topic" value="{{ t }}" id="t-{{ t }}">
<label for="t-{{ t }}">{{ t }}</label>{% endfor %}</fieldset>{% endfor %}
<button>Save</button></form></main></body></html>"""
)


def bare_app() -> Starlette:
    """The baseline: one query and a Jinja2 page; a form parse and a one-row insert."""
    engine = create_engine(os.environ["BENCH_BARE_DATABASE_URL"])
    _bare_meta.create_all(engine)
    insert_row = insert(_unsubscribes)
    select_notices = text("SELECT purpose_key, text FROM notice_versions WHERE locale = 'en'")

    def page(_request: Request) -> HTMLResponse:
        with engine.connect() as connection:
            rows = connection.execute(select_notices).all()
        purposes = [
            {"key": key, "title": key, "text": body, "topics": ["a", "b"]} for key, body in rows
        ]
        return HTMLResponse(_PAGE.render(purposes=purposes))

    async def unsubscribe(request: Request) -> PlainTextResponse:
        form = await request.form()
        if form.get("List-Unsubscribe") != "One-Click":
            return PlainTextResponse("bad", status_code=422)
        with engine.begin() as connection:
            connection.execute(insert_row, {"token": request.path_params["token"]})
        return PlainTextResponse("unsubscribed")

    return Starlette(
        routes=[Route("/p/", page), Route("/u/{token}", unsubscribe, methods=["POST"])]
    )


def _seed(url: str, leads: int) -> tuple[str, list[str]]:
    """``leads`` leads with a live newsletter; a session cookie and one-click paths."""
    from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
    from consent_ledger.services import ConsentRecord, current_notices, record_consent
    from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens
    from zeroparty.db import Database
    from zeroparty.settings import Settings

    database = Database.from_url(url)
    tokens = LinkTokens(Settings(database_url=url, secret_keys=(SECRET,)))
    subject_ids = []
    with database.write() as session:
        sha = next(
            n.notice_sha256 for n in current_notices(session, "en") if n.purpose == "newsletter"
        )
        for n in range(leads):
            entry = record_consent(
                session,
                ConsentRecord(
                    email=f"lead{n}@bench.example",
                    purpose="newsletter",
                    action=ConsentAction.GRANTED,
                    source=ConsentSource.FORM,
                    method=ConsentMethod.DOUBLE_OPT_IN,
                    notice_sha256=sha,
                    evidence={"ip": "198.51.100.7", "user_agent": "bench"},
                ),
            )
            subject_ids.append(entry.subject_id)
    database.dispose()
    cookie = tokens.issue(LinkPurpose.SESSION, LinkClaim(subject_ids[0], 0, nonce="bench"))
    paths = [
        "/u/" + tokens.issue(LinkPurpose.UNSUBSCRIBE, LinkClaim(sid, 0, ("newsletter",)))
        for sid in subject_ids[1:]
    ]
    return cookie, paths


def post_load(port: int, paths: list[str], seconds: float) -> tuple[float, float, float, int]:
    """POST each path once (one-click body) over keep-alive connections; requests/s."""
    body = b"List-Unsubscribe=One-Click"
    queue = list(reversed(paths))
    latencies: list[float] = []
    errors = [0]

    async def connection_loop(deadline: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue and time.perf_counter() < deadline:
                path = queue.pop()
                started = time.perf_counter()
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors[0] += 1
        finally:
            writer.close()

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(connection_loop(deadline) for _ in range(CONNECTIONS)))

    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    return (
        len(latencies) / elapsed,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
        errors[0],
    )


def _server(
    name: str, factory: str, url: str, directory: Path, probe: str, headers: dict[str, str]
) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "ZEROPARTY_DATABASE_URL": url,
        "ZEROPARTY_SECRET_KEYS": SECRET,
        "ZEROPARTY_BASE_URL": f"http://127.0.0.1:{port}",
        "ZEROPARTY_CHECKPOINT_KEY_FILE": str(directory / "checkpoint.key"),
        "BENCH_BARE_DATABASE_URL": url,
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return Server(
        name,
        command,
        port=port,
        probe_path=probe,
        env=env,
        log_file=directory / f"{name}.log",
        probe_headers=headers,
    )


def run(quick: bool) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    leads = 600 if quick else LEADS
    with workdir() as directory:
        ours_url = sqlite_url(directory / "ours.db")
        bare_url = sqlite_url(directory / "bare.db")
        prepare(ours_url)
        prepare(bare_url)
        cookie, paths = _seed(ours_url, leads)
        headers = {"Cookie": f"zp_pref={cookie}"}
        results: dict[str, Any] = {"seconds": seconds, "connections": CONNECTIONS}
        load = LoadGenerator(["/p/"], headers)
        try:
            with _server(
                "zeroparty", "zeroparty.app:app_from_env", ours_url, directory, "/p/", headers
            ) as ours:
                page = load.run(ours.base_url, connections=CONNECTIONS, seconds=seconds)
                clicks = post_load(ours.port, paths, seconds)
            with _server(
                "bare", "bench.preference_center:bare_app", bare_url, directory, "/p/", {}
            ) as bare:
                bare_page = load.run(bare.base_url, connections=CONNECTIONS, seconds=seconds)
                bare_clicks = post_load(bare.port, paths, seconds)
        finally:
            load.close()
        results["page_renders_per_s"] = {
            "zeroparty": round(page.requests_per_s, 1),
            "bare": round(bare_page.requests_per_s, 1),
            "zeroparty_p50_ms": round(page.p50_ms, 1),
            "zeroparty_p99_ms": round(page.p99_ms, 1),
            "errors": page.errors,
            "tool": page.tool,
        }
        results["one_click_unsubscribes_per_s"] = {
            "zeroparty": round(clicks[0], 1),
            "bare": round(bare_clicks[0], 1),
            "zeroparty_p50_ms": round(clicks[1], 1),
            "zeroparty_p99_ms": round(clicks[2], 1),
            "errors": clicks[3] + bare_clicks[3],
            "leads": leads,
        }
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=2))
