"""The audience export's writer: a second process that signs each member's links and
writes the rows, while the first walks the ledger.

An export of a million leads spends about as long signing two links per lead and
formatting its row as reading it; one process does both in turn. ``zeroparty audience
export`` hands every page of members' fields (and their link versions) to this process
over a pipe and reads the next page meanwhile. The rows come out in the walk's order,
byte for byte what the export writes in one process (but the second each token is
signed at).

The pipe carries frames: a 4-byte little-endian length, then a pickle. The first frame
is the format, the output's encoding and the linker (it pickles as what rebuilds it from
the secret keys and the base URL: the pipe is between two processes of one user), then
one frame per page (the
members' fields and the revoked leads' link versions), then an empty frame at the end.
The writer exits 0 once every row is written and flushed; :data:`OUTPUT_CLOSED` when
whoever reads the output closed it (``| head``); anything else is a failure the parent
reports.

Run by the parent as ``python -m consent_sync.export_writer``; nothing else to use.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, Any

from consent_sync.audience_rows import Member, Unlinked, linked, write_csv, write_jsonl
from zeroparty.errors import ZeropartyError
from zeroparty.mail import LeadLinkerMany

OUTPUT_CLOSED = 3
"""The writer's exit status when its output was closed before the end."""
_LENGTH = struct.Struct("<I")
_PIPE_BYTES = 1 << 20  # a page of rows (about 170 kB) fits: the walk does not wait
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_OUTPUT_BUFFER = 1 << 20


class ExportStopped(ZeropartyError):
    """The writer process stopped before the end: the export is incomplete."""

    status_code = 500
    code = "export_stopped"


class OutputClosed(BrokenPipeError):
    """Whoever reads the export closed it before the end (``| head``): what writing
    into a closed pipe raises in one process, so the command line ends the same way."""


class Writer:
    """The parent's end: starts the writer process on ``output`` (a file descriptor),
    sends it pages, and at :meth:`finish` waits for every row to be written."""

    def __init__(
        self,
        output: int,
        linker: LeadLinkerMany,
        purposes: Sequence[str],
        form: str,
        encoding: str = "utf-8",
    ) -> None:
        self.rows = 0
        first = _frame((form, encoding, linker, tuple(purposes)))  # fails before any start
        # -P: the writer imports what this process does, never a module that happens to
        # sit in the working directory.
        self._process = subprocess.Popen(
            [sys.executable, "-P", "-m", "consent_sync.export_writer"],
            stdin=subprocess.PIPE,
            stdout=output,
        )
        pipe = self._process.stdin
        assert pipe is not None
        self._pipe: IO[bytes] = pipe
        try:
            with contextlib.suppress(OSError):  # a smaller pipe only makes the walk wait
                fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
            self._write(first)
        except BaseException:
            self._stop()
            raise

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is not None:  # the walk failed: no half export passes for a whole one
            self._stop()

    def send(self, fields: list[Unlinked], versions: Mapping[str, int]) -> None:
        """A page: its members' fields, and the link versions of those whose links were
        revoked (any other is at version 0)."""
        if fields:
            self._write(_frame((fields, versions)))
            self.rows += len(fields)

    def finish(self) -> int:
        """Wait for the writer to write and flush every row; how many rows."""
        with contextlib.suppress(OSError):
            self._pipe.write(_LENGTH.pack(0))
            self._pipe.close()
        status = self._process.wait()
        if status == OUTPUT_CLOSED:
            raise OutputClosed("the export's output was closed before the end")
        if status != 0:
            raise ExportStopped(f"the export's writer process stopped (exit status {status})")
        return self.rows

    def _write(self, frame: bytes) -> None:
        try:
            self._pipe.write(frame)
        except BrokenPipeError:
            self.finish()  # raises what stopped the writer
            raise ExportStopped("the export's writer process stopped") from None

    def _stop(self) -> None:
        self._process.kill()
        with contextlib.suppress(OSError):
            self._pipe.close()
        self._process.wait()


def usable(linker: object) -> bool:
    """Whether ``linker`` can sign in the writer: it reads versions and mints apart."""
    return callable(getattr(linker, "versions", None)) and callable(getattr(linker, "mint", None))


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _frames(source: IO[bytes]) -> Iterator[Any]:
    while True:
        head = source.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            raise EOFError("the export ended without its last frame")
        (size,) = _LENGTH.unpack(head)
        if size == 0:
            return
        body = source.read(size)
        if len(body) < size:
            raise EOFError("the export ended in the middle of a frame")
        yield pickle.loads(body)  # noqa: S301 (our own parent's frames)


def _members(
    frames: Iterator[Any], linker: LeadLinkerMany, purposes: Sequence[str]
) -> Iterator[Member]:
    mint = linker.mint
    for page, versions in frames:
        for fields in page:
            lead = fields[0]
            yield linked(fields, mint(lead, versions.get(lead, 0), purposes))


def main() -> int:
    frames = _frames(sys.stdin.buffer)
    try:
        form, encoding, linker, purposes = next(frames)
        raw = io.FileIO(sys.stdout.fileno(), "w", closefd=False)
        buffered = io.BufferedWriter(raw, _OUTPUT_BUFFER)
        out = io.TextIOWrapper(buffered, encoding=encoding, newline="")
        write = write_csv if form == "csv" else write_jsonl
        write(_members(frames, linker, purposes), out)
        out.flush()
    except BrokenPipeError:
        # Whoever reads the output is gone (| head): nothing more to say, and nothing
        # left to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OUTPUT_CLOSED
    except (EOFError, KeyboardInterrupt) as exc:
        print(f"export writer: stopped ({exc or type(exc).__name__})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
