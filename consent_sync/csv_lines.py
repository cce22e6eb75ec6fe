"""CSV rows ending in a line feed, with every field that holds a line break quoted.

``csv.writer(out, lineterminator="\\n")`` quotes a field holding the delimiter, the
quote or a character of its line terminator, so a lone carriage return goes out bare,
and every reader (spreadsheets, pandas, Python's own ``csv.reader``) ends the row
there. RFC 4180 (section 2, rule 6) asks for fields holding CR or LF to be quoted: the
writer here quotes as ``csv.writer`` does with ``\\r\\n`` line ends (both characters),
then ends the row with ``\\n`` alone. A row without a carriage return comes out byte
for byte as ``csv.writer(out, lineterminator="\\n")`` writes it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import TextIO


class LineFeedCsvWriter:
    """``writerow`` and ``writerows`` as :func:`csv.writer`'s."""

    __slots__ = ("_buffer", "_out", "_writer")

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def writerow(self, fields: Iterable[object]) -> None:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._writer.writerow(fields)
        self._out.write(buffer.getvalue()[:-2] + "\n")

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for fields in rows:
            self.writerow(fields)
