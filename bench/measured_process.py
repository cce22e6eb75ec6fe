"""Run a command as a child process and measure its wall time and peak memory.

Peak memory is the child's maximum resident set (``ru_maxrss``). It is read through a
small intermediary, GNU ``/usr/bin/time`` (or a bare ``python -S`` wrapper when that is
absent), never from this process's ``wait4``: Linux carries the RSS high-water mark of
the process that forks across ``exec``, so a child forked from a big benchmark process
would report the benchmark's memory as its own.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = Path("/usr/bin/time")
# Used only when GNU time is absent: forks the command from a ~10 MB interpreter.
WRAPPER = (
    "import os,sys\n"
    "pid=os.fork()\n"
    "if pid==0: os.execvp(sys.argv[2],sys.argv[2:])\n"
    "_,status,usage=os.wait4(pid,0)\n"
    "open(sys.argv[1],'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


@dataclass(frozen=True, slots=True)
class ProcessRun:
    seconds: float
    peak_mb: float
    returncode: int
    stdout: str
    stderr: str


def measuring_tool() -> str:
    return "GNU time (%M)" if GNU_TIME.exists() else "python -S fork/wait4 wrapper"


def run_measured(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 600.0
) -> ProcessRun:
    """Run ``command`` to completion (killed after ``timeout_s``)."""
    with tempfile.TemporaryDirectory(prefix="zeroparty-bench-rss-") as directory:
        rss_file = Path(directory) / "maxrss"
        if GNU_TIME.exists():
            wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *command]
        else:
            wrapped = [sys.executable, "-S", "-c", WRAPPER, str(rss_file), *command]
        started = time.perf_counter()
        try:
            result = subprocess.run(
                wrapped,
                env=dict(env) if env is not None else None,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{command[0]} took longer than {timeout_s:g} s") from exc
        seconds = time.perf_counter() - started
        lines = rss_file.read_text().split() if rss_file.exists() else []
        # The last word: GNU time writes "Command exited with non-zero status N" first.
        peak_kib = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return ProcessRun(seconds, peak_kib / 1024, result.returncode, result.stdout, result.stderr)
