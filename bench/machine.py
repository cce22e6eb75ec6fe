"""What the figures were measured on: the machine and the versions of the stack."""

from __future__ import annotations

import os
import platform
import shutil
import sqlite3
import subprocess
import time
from importlib import metadata
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

PACKAGES = ("sqlalchemy", "starlette", "uvicorn", "uvloop", "httptools", "psycopg", "orjson")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def postgres_version(admin_url: str | None) -> str:
    if admin_url is None:
        return "not used"
    url = make_url(admin_url)
    try:
        with psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database or "postgres",
            connect_timeout=3,
        ) as connection:
            row = connection.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError:
        return "unreachable"
    return str(row[0]) if row else "unknown"


def wrk_version() -> str | None:
    path = shutil.which("wrk")
    if path is None:
        return None
    result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    first = (result.stdout or result.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk"


def describe(admin_url: str | None) -> list[str]:
    """Markdown bullet lines naming the machine and every version that matters."""
    packages = []
    for name in PACKAGES:
        try:
            packages.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            packages.append(f"{name} (absent)")
    return [
        f"- machine: {os.cpu_count()} cores (`nproc` {len(os.sched_getaffinity(0))}), "
        f"{cpu_model()}, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"PostgreSQL {postgres_version(admin_url)}",
        f"- {', '.join(packages)}",
        f"- load generator: {wrk_version() or 'wrk absent (Python fallback)'}",
    ]


def load_average() -> float:
    """The 1-minute load average: other work on this shared machine skews figures."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def wait_for_quiet(threshold: float, max_wait_s: float) -> float:
    """Wait (bounded) until the load average drops under ``threshold``; returns it."""
    deadline = time.monotonic() + max_wait_s
    load = load_average()
    while load >= threshold and time.monotonic() < deadline:
        time.sleep(5)
        load = load_average()
    return load


def source_state(root: Path) -> str:
    """The commit measured and how many files differ from it (read-only git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    changed = len([line for line in status.splitlines() if line.strip()])
    return f"commit {commit or 'unknown'}" + (
        f" with {changed} uncommitted path(s) in the work tree" if changed else ""
    )
