"""Software names and versions, as servers write them: "nginx/1.22.1", "OpenSSH_9.2p1".

Rules and theory:
- Servers name themselves in a product token (RFC 9110 10.2.4: ``product/version``, then
  comments in parentheses) or in looser forms: ``name_version`` (SSH), ``name-version``
  (IRC daemons), ``name version`` or ``name (version ...)`` (SIP servers).
  :func:`split_software` takes the first such token of a text: the name up to the last
  separator before a digit, and the version from there, up to the next space,
  parenthesis or semicolon.
- A text without a version gives (its first word, ""); a text that starts with a digit
  gives ("", ""). Both parts are cleaned and bounded: the input is untrusted.
"""

from __future__ import annotations

import re

from scanner.protocols import clean

__all__ = ["split_software"]

_MAX = 200
_TOKEN = re.compile(
    r"([A-Za-z][A-Za-z0-9.+_-]{0,60}?(?: [A-Z][A-Za-z]{1,20})?)"  # name, maybe two words
    r"(?:[/_ -][vV]?| \()"  # separator
    r"([0-9][0-9A-Za-z.+~:-]{0,40})"  # version
)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.+_-]{0,60}")


def split_software(text: str) -> tuple[str, str]:
    """("nginx", "1.22.1") from "nginx/1.22.1 (Debian)"; ("Postfix", "") from "Postfix"."""
    text = text[:_MAX].strip()
    m = _TOKEN.match(text)
    if m is not None:
        return clean(m.group(1), 60), clean(m.group(2).rstrip(".-:"), 40)
    name = _NAME.match(text)
    return (clean(name.group(), 60), "") if name else ("", "")
