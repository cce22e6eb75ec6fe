"""Real ``zeroparty serve`` processes for the reliability suite, and what drives them.

A :class:`ServeProcess` is the CLI users run, in its own process group, on a free
loopback port, with a database the test made; ``kill()`` is SIGKILL to the whole group
(supervisor and workers: what a power cut or the OOM killer does to the app), and
``start()`` again reuses the same port so clients reconnect as they would to a restarted
service. Its stdout and stderr (every incarnation's) are kept for the log checks.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx2

from capture.tokens import CaptureTokens, RenderToken
from tests.conftest import TEST_SECRET

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def zeroparty_command(*args: str) -> list[str]:
    """The ``zeroparty`` CLI of this interpreter (the venv's, whatever PATH says)."""
    return [sys.executable, "-m", "zeroparty.cli", *args]


def service_env(database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a zeroparty process: only what the test sets, no stray
    ``ZEROPARTY_*`` of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROPARTY_")}
    env.update(
        ZEROPARTY_DATABASE_URL=database_url,
        ZEROPARTY_SECRET_KEYS=TEST_SECRET,
        ZEROPARTY_CHECKPOINT_KEY_FILE=str(workdir / "checkpoint.key"),
        ZEROPARTY_OUTBOX_DIR=str(workdir / "outbox"),
        ZEROPARTY_API_KEY_CACHE_SECONDS="0",
    )
    env.update(extra)
    return env


def run_cli(
    env: Mapping[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        zeroparty_command(*args),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServeProcess:
    """``zeroparty serve --workers N`` on ``127.0.0.1:port``, restartable on that port."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        workers: int = 1,
        args: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.args = args
        self.workdir = workdir
        self.env = service_env(database_url, workdir, ZEROPARTY_BASE_URL=self.url, **env)
        self.process: subprocess.Popen[bytes] | None = None
        self.incarnations = 0
        self.log_files: list[Path] = []

    def start(self, *, wait: bool = True) -> ServeProcess:
        assert self.process is None or self.process.poll() is not None
        self.incarnations += 1
        log_file = self.workdir / f"serve-{self.port}-{self.incarnations}.log"
        self.log_files.append(log_file)
        with log_file.open("wb") as log:
            self.process = subprocess.Popen(
                zeroparty_command(
                    "serve", "--port", str(self.port), "--workers", str(self.workers), *self.args
                ),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"zeroparty serve exited:\n{self.logs()[-3000:]}")
            try:
                if httpx2.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"zeroparty serve not ready after {timeout:g} s:\n{self.logs()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to the supervisor and every worker at once: no shutdown code runs."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def worker_pids(self) -> list[int]:
        """The supervisor's children: the worker processes (Linux ``/proc``)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def kill_one_worker(self, chance: random.Random) -> int | None:
        """SIGKILL one worker; the supervisor starts a new one in its place."""
        workers = self.worker_pids()
        if not workers:
            return None
        pid = chance.choice(workers)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def logs(self) -> str:
        return "\n".join(
            path.read_text(encoding="utf-8", errors="replace")
            for path in self.log_files
            if path.exists()
        )


class FormTokens:
    """Render tokens as a browser that showed the form a while ago would hold them.

    One ``GET /f/{slug}`` (JSON) gives the published version and the notices shown; each
    submission then gets a fresh submission id and a first-shown time a minute back (the
    form's minimum fill time is a human's, not a load generator's)."""

    def __init__(self, server: str | Any, slug: str) -> None:
        """``server``: a base URL, or a client (``TestClient``) to ask."""
        self.tokens = CaptureTokens((TEST_SECRET,))
        headers = {"Accept": "application/json"}
        if isinstance(server, str):
            answer = httpx2.get(f"{server}/f/{slug}", headers=headers, timeout=10)
        else:
            answer = server.get(f"/f/{slug}", headers=headers)
        answer.raise_for_status()
        self.template: RenderToken = self.tokens.read_render(answer.json()["render_token"])

    def fresh(self) -> str:
        token = dataclasses.replace(
            self.template, rendered_at=time.time() - 60, submission_id=secrets.token_hex(16)
        )
        return self.tokens.issue_render(token)


def contact_submission(email: str, token: str, **fields: str) -> dict[str, Any]:
    """A JSON submission of the demo ``contact`` form with newsletter and profiling."""
    return {
        "fields": {"email": email, "name": "Test Lead", "message": "hello", **fields},
        "consent": ["newsletter", "profiling"],
        "render_token": token,
    }


def client_address(n: int) -> dict[str, str]:
    """A distinct client address per visitor, through the proxy header ``serve`` trusts
    from loopback (the demo form allows 20 submissions per address and window)."""
    return {"X-Forwarded-For": f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"}


def verify_ledger_cli(env: Mapping[str, str]) -> str:
    """``zeroparty ledger verify`` as an operator runs it; fails the test unless exit 0."""
    result = run_cli(env, "ledger", "verify", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def sqlite_integrity(database_url: str) -> None:
    """``PRAGMA integrity_check`` answers ``ok`` (only for SQLite URLs)."""
    import sqlite3

    if not database_url.startswith("sqlite"):
        return
    connection = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()
    assert rows == [("ok",)], rows


# Signed tokens (itsdangerous): a JSON payload in base64 starts "eyJ"; compressed, ".eJ".
TOKEN_RE = re.compile(r"(?:^|[^A-Za-z0-9_-])(?:eyJ|\.eJ)[A-Za-z0-9_-]{8,}")
EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z0-9.-]+")


def assert_no_personal_data(logs: str) -> None:
    """No email address and no signed token anywhere in ``logs``."""
    assert not EMAIL_RE.search(logs), EMAIL_RE.search(logs)
    assert not TOKEN_RE.search(logs), TOKEN_RE.search(logs)
