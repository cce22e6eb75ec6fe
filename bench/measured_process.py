"""Run a command as a child process and measure its wall time and peak memory.

Peak memory is the child's maximum resident set (``ru_maxrss``). It is read through a
small intermediary, GNU ``/usr/bin/time`` (or a bare ``python -S`` wrapper when that is
absent), never from this process's ``wait4``: Linux carries the RSS high-water mark of
the process that forks across ``exec``, so a child forked from a big benchmark process
would report the benchmark's memory as its own. A command that starts helper processes
is also measured as a whole: the sum of its process tree's resident memory, sampled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

GNU_TIME = Path("/usr/bin/time")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
SAMPLE_S = 0.05
# Used only when GNU time is absent: forks the command from a ~10 MB interpreter.
WRAPPER = (
    "import os,sys\n"
    "pid=os.fork()\n"
    "if pid==0: os.execvp(sys.argv[2],sys.argv[2:])\n"
    "_,status,usage=os.wait4(pid,0)\n"
    "open(sys.argv[1],'w').write(f'{usage.ru_maxrss} {usage.ru_utime} {usage.ru_stime}')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


@dataclass(frozen=True, slots=True)
class ProcessRun:
    seconds: float
    cpu_seconds: float  # user + system, the command and the helpers it waited for
    peak_mb: float  # the largest single process
    tree_peak_mb: float  # the whole process tree at its largest moment (sampled)
    returncode: int
    stdout: str
    stderr: str


def measuring_tool() -> str:
    tool = "GNU time (%M %U %S)" if GNU_TIME.exists() else "a python -S fork/wait4 wrapper"
    return f"{tool}, plus the process tree's resident memory sampled every {SAMPLE_S:g} s"


def _numbers(words: list[str]) -> tuple[float, float, float]:
    try:
        return float(words[0]), float(words[1]), float(words[2])
    except ValueError:
        return 0.0, 0.0, 0.0


def tree_rss_mb(group: int, exclude: int) -> float:
    """Resident memory of every live process in process group ``group`` but ``exclude``."""
    total_pages = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != group or int(stat.parent.name) == exclude:
                continue
            total_pages += int((stat.parent / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return total_pages * PAGE_BYTES / 2**20


def run_measured(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 600.0
) -> ProcessRun:
    """Run ``command`` to completion (killed after ``timeout_s``).

    Two peaks are kept: the largest single process (``ru_maxrss``, exact) and the
    largest sum over the command's process tree at one moment (sampled every
    :data:`SAMPLE_S`), which is what counts when the command starts helpers.
    """
    with (
        tempfile.TemporaryDirectory(prefix="zeroparty-bench-rss-") as directory,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        rss_file = Path(directory) / "maxrss"
        if GNU_TIME.exists():
            wrapped = [str(GNU_TIME), "-f", "%M %U %S", "-o", str(rss_file), *command]
        else:
            wrapped = [sys.executable, "-S", "-c", WRAPPER, str(rss_file), *command]
        started = time.perf_counter()
        process = subprocess.Popen(
            wrapped,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, to sum and to stop
        )
        tree_peak = 0.0
        while process.poll() is None:
            if time.perf_counter() - started > timeout_s:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise RuntimeError(f"{command[0]} took longer than {timeout_s:g} s")
            tree_peak = max(tree_peak, tree_rss_mb(process.pid, exclude=process.pid))
            time.sleep(SAMPLE_S)
        seconds = time.perf_counter() - started
        words = rss_file.read_text().split() if rss_file.exists() else []
        # The last three words: GNU time may write "Command exited with …" first.
        peak_kib, user_s, system_s = _numbers(words[-3:]) if len(words) >= 3 else (0, 0, 0)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return ProcessRun(
        seconds,
        user_s + system_s,
        peak_kib / 1024,
        max(tree_peak, peak_kib / 1024),
        process.returncode,
        stdout,
        stderr,
    )
