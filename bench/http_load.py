"""HTTP load: ``wrk`` with a Lua script rotating through many request paths, or, where
``wrk`` is absent, a bounded asyncio load generator (slower: it shares the 2 cores and
costs more CPU per request, so its figures are lower; the report says which ran).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.report import percentile

WRK_GRACE_S = 30.0
WRK_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx answers and socket errors
    tool: str


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def lua_script(paths: Sequence[str], headers: dict[str, str]) -> str:
    """A wrk script sending ``paths`` in turn, requests formatted once in ``init``."""
    lines = ["local paths = {"]
    lines += [f"  {_lua_string(path)}," for path in paths]
    lines.append("}")
    for name, value in headers.items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    lines.append(
        """local requests = {}
local counter = 0
init = function(args)
  for i, path in ipairs(paths) do
    requests[i] = wrk.format("GET", path)
  end
  counter = math.random(#requests)
end
request = function()
  counter = counter + 1
  if counter > #requests then counter = 1 end
  return requests[counter]
end"""
    )
    return "\n".join(lines) + "\n"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rate and total and p50 and p99):
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return LoadResult(
        requests_per_s=float(rate.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        requests=int(total.group(1)),
        errors=errors,
        tool="wrk",
    )


def run_wrk(base_url: str, script: Path, *, connections: int, seconds: float) -> LoadResult:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",  # wrk's default of 2 s drops slower answers uncounted
        f"{WRK_TIMEOUT_S:g}s",
        "-s",
        str(script),
        base_url,
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + WRK_TIMEOUT_S + WRK_GRACE_S,
        check=False,
    )
    if result.returncode != 0 or result.stderr.strip():
        # A script wrk cannot load is reported on stderr, and wrk then sends ``GET /``.
        raise RuntimeError(f"wrk failed: {result.stderr}")
    return parse_wrk(result.stdout)


async def _connection_loop(
    host: str,
    port: int,
    requests: list[bytes],
    offset: int,
    deadline: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    index = offset
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(requests[index % len(requests)])
            index += 1
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not status_line.startswith(b"HTTP/1.1 2"):
                errors[0] += 1
    finally:
        writer.close()


def run_python(
    base_url: str,
    paths: Sequence[str],
    headers: dict[str, str],
    *,
    connections: int,
    seconds: float,
) -> LoadResult:
    """The fallback: ``connections`` keep-alive connections for ``seconds``, then stop."""
    match = re.fullmatch(r"http://([^:/]+):(\d+)/?", base_url)
    if match is None:
        raise ValueError(f"expected http://host:port, got {base_url}")
    host, port = match.group(1), int(match.group(2))
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode() for path in paths
    ]
    latencies: list[float] = []
    errors = [0]

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        loops = [
            _connection_loop(host, port, requests, i * 997, deadline, latencies, errors)
            for i in range(connections)
        ]
        await asyncio.wait_for(asyncio.gather(*loops), timeout=seconds + WRK_GRACE_S)

    started = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - started
    return LoadResult(
        requests_per_s=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        requests=len(latencies),
        errors=errors[0],
        tool="python asyncio fallback",
    )


class LoadGenerator:
    """Sends the same rotating requests with wrk, or the fallback when wrk is absent."""

    def __init__(self, paths: Sequence[str], headers: dict[str, str]) -> None:
        self.paths = list(paths)
        self.headers = headers
        self._directory = tempfile.TemporaryDirectory(prefix="zeroparty-bench-wrk-")
        self.script = Path(self._directory.name) / "rotate.lua"
        self.script.write_text(lua_script(self.paths, headers))
        self.tool = "wrk" if have_wrk() else "python asyncio fallback"

    def run(self, base_url: str, *, connections: int, seconds: float) -> LoadResult:
        if self.tool == "wrk":
            return run_wrk(base_url, self.script, connections=connections, seconds=seconds)
        return run_python(
            base_url, self.paths, self.headers, connections=connections, seconds=seconds
        )

    def close(self) -> None:
        self._directory.cleanup()
