"""Text from outside made inert: the one class of characters portprobe escapes, and how.

Rules and theory:
- Banners, host names, registry descriptions and report fields are written by others. On a
  terminal some characters move the cursor, recolour, retitle or clear it (C0 and C1
  controls: ESC, CSI ``0x9b``, BEL, ...); others hide text or reorder it so that what is
  shown is not what is there (zero-width and invisible characters, bidi embeddings,
  overrides and isolates, the Arabic letter mark, interlinear annotations, tag
  characters, the soft hyphen, the BOM). None of them belongs in a port report.
- :data:`CONTROL` is that class, defined once here; every escaping function of portprobe
  (``scanner.protocols.clean``, ``scanner.report.table.printable``, the CSV, JSON and XML
  writers) uses it. Lone surrogates are in it too: they cannot be encoded, and a report
  holding one could not be written.
- Every character of the class is one that ``str.isprintable`` rejects, so text that is
  printable needs no escaping (the fast path of :func:`escape_controls`).
- A character of the class is shown as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``: visible,
  unambiguous, and the same on every terminal.
- What portprobe prints never depends on the locale's encoding: on a terminal that cannot
  show a character (``LC_ALL=C`` without UTF-8 mode: ASCII), it is written as a
  backslash escape (:func:`escape_unencodable`) instead of failing the whole table.
"""

from __future__ import annotations

import contextlib
import re
from typing import TextIO

__all__ = ["CONTROL", "escape_char", "escape_controls", "escape_unencodable"]

CONTROL = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f"  # C0 controls, DEL, C1 controls
    "\u00ad"  # soft hyphen (invisible unless a line breaks at it)
    "\u061c"  # Arabic letter mark (bidi)
    "\u180e"  # Mongolian vowel separator (zero width)
    "\u200b-\u200f"  # zero-width space, non-joiner, joiner; LRM, RLM
    "\u2028-\u202e"  # line and paragraph separators; bidi embeddings and overrides
    "\u2060-\u2069"  # word joiner, invisible operators, bidi isolates
    "\ud800-\udfff"  # lone surrogates (never valid text)
    "\ufeff"  # BOM, zero-width no-break space
    "\ufff9-\ufffb"  # interlinear annotation anchors
    "\U000e0000-\U000e007f"  # tag characters
    "]"
)
"""Every character portprobe escapes before text reaches a terminal or a report."""


def escape_char(char: str) -> str:
    """One character as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``, by its code point."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _escape(match: re.Match[str]) -> str:
    return escape_char(match.group())


def escape_controls(text: str) -> str:
    """``text`` with every character of :data:`CONTROL` escaped (see :func:`escape_char`)."""
    # Every character of CONTROL is one str.isprintable rejects (tests/test_text.py checks
    # all of Unicode), so printable text, nearly all of it, skips the regex: a report of a
    # million rows escapes ten million cells.
    if text.isprintable():
        return text
    return CONTROL.sub(_escape, text)


def escape_unencodable(stream: TextIO) -> None:
    """Make ``stream`` write characters its encoding lacks as backslash escapes.

    For the process's own text streams (stdout, stderr); a stream that cannot be
    reconfigured (a test's StringIO, which holds any character) is left as it is.
    """
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):  # a closed stream: nothing to write
            reconfigure(errors="backslashreplace")
