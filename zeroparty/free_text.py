"""What free text typed by a person may hold: one rule for every input that takes it.

Control characters (Unicode category Cc: the C0 block, DEL and the C1 block) have no
place in a name, a company or a message. A browser never sends one from a text input
(HTML strips line breaks from an ``<input>``'s value and sends a ``<textarea>``'s line
breaks as CRLF), so a value holding one came from a script or a paste of binary, and
it would break what the value is later written into: a mail header (CR, LF), a CSV row,
a log line, a terminal (ESC). Such a value is refused, never silently altered, with
one exception: a value the person did not type (a hidden field filled from the page's
address) has its control characters replaced by spaces, since an error would ask them
to remove what they cannot see (:func:`without_control_characters`).

- single-line text (a name, a company, a job title, a label): tab is the only control
  character allowed;
- multi-line text (a message): tab and line feed are allowed, after line breaks are
  normalised to ``\\n`` (WHATWG Infra, "normalize newlines": CRLF, then any lone CR).
"""

from __future__ import annotations

import re

_SINGLE_LINE_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_MULTI_LINE_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def normalise_newlines(text: str) -> str:
    """``text`` with CRLF and lone CR turned into LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def has_control_characters(text: str, *, multiline: bool = False) -> bool:
    """Whether ``text`` holds a control character its kind of field may not hold
    (``multiline``: after :func:`normalise_newlines`)."""
    pattern = _MULTI_LINE_CONTROLS if multiline else _SINGLE_LINE_CONTROLS
    return pattern.search(text) is not None


def without_control_characters(text: str) -> str:
    """``text`` with every control character a one-line field may not hold replaced by
    a space: for values nobody typed, such as a hidden field filled from a URL."""
    return _SINGLE_LINE_CONTROLS.sub(" ", text)
