"""How long ``POST /p/request-link`` takes for a lead's address and for a stranger's.

``python -m bench.request_link_timing [--requests N] [--write]``

The issue this answers: a link request for a known address answered measurably later
than one for an unknown address (the look-up and the queued mail happened before the
answer), which tells a stranger who is a lead. Now both answers do the same work (check
the address, count it against the rate limit) and the rest happens after the answer.

A real ``uvicorn`` server on a fresh SQLite database with the demo site, N leads (each
address asked once: the rate limit is per address); N requests for leads' addresses and
N for unknown ones, interleaved in pairs in a shuffled order, over one keep-alive
connection, timed from sending the request to the last byte of the answer. Twice:
requests 100 ms apart (the work after each answer is done before the next request), and
back to back (the next request shares the machine with the previous one's background
work, a lead's heavier than a stranger's). ``--write``
replaces this benchmark's section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import select

from bench.bench_import import replace_section
from bench.databases import prepare, sqlite_url, workdir
from bench.machine import describe, load_average
from bench.servers import Server, free_port
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.models import NoticeVersion
from consent_ledger.services import ConsentRecord, record_consent
from zeroparty.db import Database
from zeroparty.settings import PROJECT_ROOT

KEY = "request_link_timing"
TITLE = "Preference-link requests: known and unknown addresses"
COMMAND = "python -m bench.request_link_timing [--requests N] [--write]"
PAUSE_S = 0.1


def seed_leads(url: str, count: int) -> list[str]:
    database = Database.from_url(url)
    try:
        with database.read() as session:
            notice = session.execute(
                select(NoticeVersion.sha256).where(
                    NoticeVersion.purpose_key == "newsletter", NoticeVersion.locale == "en"
                )
            ).scalar_one()
        emails = [f"lead{n}@bench.example" for n in range(count)]
        with database.write() as session:
            for email in emails:
                record_consent(
                    session,
                    ConsentRecord(
                        email=email,
                        purpose="newsletter",
                        action=ConsentAction.GRANTED,
                        source=ConsentSource.FORM,
                        method=ConsentMethod.DOUBLE_OPT_IN,
                        notice_sha256=notice,
                        evidence={"ip": "198.51.100.7"},
                    ),
                )
        return emails
    finally:
        database.dispose()


def _ask(connection: http.client.HTTPConnection, email: str) -> tuple[float, int, bytes]:
    body = f"email={email.replace('@', '%40')}"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Sec-Fetch-Site": "same-origin",
    }
    started = time.perf_counter()
    connection.request("POST", "/p/request-link", body=body, headers=headers)
    answer = connection.getresponse()
    content = answer.read()
    return (time.perf_counter() - started) * 1000, answer.status, content


def measure(port: int, known: list[str], unknown: list[str], pause: float) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    bodies: set[bytes] = set()
    order = random.Random(14)  # which of each pair goes first: the same every run
    try:
        for lead, stranger in zip(known, unknown, strict=True):
            pair = [("known", lead), ("unknown", stranger)]
            order.shuffle(pair)  # neither kind always follows the other's background work
            for kind, email in pair:
                elapsed, status, content = _ask(connection, email)
                if status != 200:
                    raise RuntimeError(f"{kind} address answered {status}")
                times[kind].append(elapsed)
                bodies.add(content)
                time.sleep(pause)
    finally:
        connection.close()
    if len(bodies) != 1:
        raise RuntimeError("the answers differ between known and unknown addresses")
    return {
        "known": statistics.median(times["known"]),
        "unknown": statistics.median(times["unknown"]),
        "known_p90": statistics.quantiles(times["known"], n=10)[-1],
        "unknown_p90": statistics.quantiles(times["unknown"], n=10)[-1],
    }


def run(requests: int) -> str:
    with workdir() as folder:
        url = sqlite_url(folder / "bench.db")
        prepare(url)
        leads = seed_leads(url, 2 * requests + 20)
        port = free_port()
        env = {
            **os.environ,
            "ZEROPARTY_DATABASE_URL": url,
            "ZEROPARTY_SECRET_KEYS": secrets.token_urlsafe(32),
            "ZEROPARTY_BASE_URL": f"http://127.0.0.1:{port}",
            "ZEROPARTY_OUTBOX_DIR": str(folder / "outbox"),
            "ZEROPARTY_CHECKPOINT_KEY_FILE": str(folder / "checkpoint.key"),
        }
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "zeroparty.app:app_from_env",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        ]  # fmt: skip
        with Server("zeroparty", command, port=port, probe_path="/healthz", env=env,
                    log_file=folder / "server.log"):  # fmt: skip
            strangers = [f"stranger{n}@bench.example" for n in range(2 * requests + 20)]
            measure(port, leads[:10], strangers[:10], PAUSE_S)  # warm-up, not counted
            spaced = measure(
                port, leads[10 : 10 + requests], strangers[10 : 10 + requests], PAUSE_S
            )
            packed = measure(port, leads[10 + requests :][:requests],
                             strangers[10 + requests :][:requests], 0.0)  # fmt: skip
            mails = len(list((folder / "outbox").glob("*.eml")))
    lines = [
        f"## {TITLE}",
        "",
        f"`{COMMAND}`",
        "",
        "The answer is the same, and so is the work before it (the address checked and "
        "counted against its rate limit); the look-up and the mail for a lead happen after "
        "the answer. One uvicorn process, SQLite, the outbox folder transport; "
        f"{requests} requests per kind and mode, interleaved in pairs of shuffled order, "
        "over one keep-alive connection, timed to the last byte of the answer. Back to "
        "back, a request shares the machine with the previous request's background work "
        "(for a lead: the look-up, the queued mail, writing it), which is what the "
        "difference in that row measures, whichever address the request itself names.",
        "",
        "| mode | known address, median | unknown address, median | difference | "
        "known p90 | unknown p90 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, figures in ((f"{PAUSE_S * 1000:.0f} ms apart", spaced), ("back to back", packed)):
        lines.append(
            f"| {name} | {figures['known']:.2f} ms | {figures['unknown']:.2f} ms | "
            f"{figures['known'] - figures['unknown']:+.2f} ms | "
            f"{figures['known_p90']:.2f} ms | {figures['unknown_p90']:.2f} ms |"
        )
    lines += [
        "",
        f"Mails written for the leads' addresses (after the answers): {mails}. "
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; 1-minute load average "
        f"{load_average():.1f} at the end on this shared machine.",
    ]
    lines += [f"Machine: {line.removeprefix('- ')}" for line in describe(None)][:3]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parsed = parser.parse_args(argv)
    markdown = run(parsed.requests)
    print(markdown)
    if parsed.write:
        replace_section(KEY, markdown, PROJECT_ROOT / "BENCHMARKS.md")
        print("wrote the request-link section of BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
