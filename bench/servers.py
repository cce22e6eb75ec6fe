"""Starting and stopping the servers under test (each in its own process group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A server process started with ``command``, ready once ``probe_path`` answers 2xx."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        port: int,
        probe_path: str,
        env: Mapping[str, str],
        log_file: Path,
        probe_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.probe_path = probe_path
        self.probe_headers = dict(probe_headers or {})
        self.log_file = log_file
        self._log = log_file.open("w")
        self.process = subprocess.Popen(
            list(command),
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops its workers
        )

    def get(self, path: str) -> tuple[int, bytes]:
        # Always http://127.0.0.1:<port>: the scheme is ours, never a caller's.
        request = urllib.request.Request(self.base_url + path, headers=self.probe_headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
                return int(answer.status), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def cpu_seconds(self) -> float:
        """CPU time used so far by every live process of the server's group (Linux)."""
        total_ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended meanwhile
            # After "pid (comm)": state ppid pgrp ...; utime and stime are fields 14, 15.
            if int(fields[2]) == self.process.pid:
                total_ticks += int(fields[11]) + int(fields[12])
        return total_ticks / CLOCK_TICKS

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_file.read_text()[-3000:]}")
            try:
                status, _ = self.get(self.probe_path)
                if 200 <= status < 300:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT_S:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self._log.close()

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
