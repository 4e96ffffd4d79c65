"""IRC (port 6667): register a nick, and read the server's numeric replies.

Rules and theory:
- An IRC server says little until a client registers (RFC 2812 3.1): ``NICK`` and
  ``USER``. Then it sends the welcome numerics: 001 RPL_WELCOME, 002 RPL_YOURHOST ("Your
  host is <server>, running version <version>"), 003 RPL_CREATED, 004 RPL_MYINFO
  (``<server> <version> <user modes> <channel modes>``). Some servers send ``NOTICE``
  lines first (``NOTICE AUTH :*** Looking up your hostname``), or refuse with ``ERROR``
  or a numeric such as 465 (banned) or 451 (not registered); ircu, hybrid and ratbox
  send ``PING :<cookie>`` and finish registration only after the matching ``PONG``.
- A reply proves IRC when a complete line is a server message: ``:<prefix> <3-digit
  numeric> <target> ...`` or ``:<prefix> NOTICE ...`` or ``NOTICE AUTH ...`` or
  ``ERROR :...``. The probe waits for 004 (or 002) to name the software, unless the
  server refused or pinged: the first complete refusal (``ERROR``, a 4xx/5xx numeric
  but 451) or ``PING`` decides; a line that is not IRC after IRC lines ends the wait.
  Only the first ``MAX_REPLY`` bytes are looked at.
- The version token of 004 is split into product and version (``software``):
  "ngircd-26.1" is ngircd 26.1, "UnrealIRCd-6.1.2" UnrealIRCd 6.1.2.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.software import split_software
from scanner.protocols.tcp import TcpProbe

__all__ = ["REQUEST", "TCP_PROBES", "build_request", "parse_reply"]

REQUEST = b"NICK portprobe\r\nUSER portprobe 0 * :portprobe\r\n"
MAX_REPLY = 4096
_LINE = re.compile(rb":([!-~]{1,255}) ([0-9]{3}|NOTICE|ERROR) ([^\r\n]{0,510})")
_BARE = re.compile(rb"(NOTICE [!-~]{1,64}|ERROR|PING) :?([^\r\n]{0,510})")


def build_request(_host: str = "", _port: int = 0) -> bytes:
    """``NICK`` and ``USER`` for the nick ``portprobe``."""
    return REQUEST


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("irc", ..., "irc", product=, version=)`` once the server named itself,
    refused us, or asked for a PONG (which registration waits for); else None."""
    head = data[:MAX_REPLY]
    server, seen, host_line = "", False, ""
    for raw in head.split(b"\n")[:-1]:  # complete lines only
        line = raw.rstrip(b"\r")
        m = _LINE.fullmatch(line)
        if m is None:
            bare = _BARE.fullmatch(line)
            if bare is None:
                return _named(server, "", host_line) if seen else None
            seen = True
            command, text = bare.group(1), clean(bare.group(2), 120)
            if command == b"ERROR":
                return Evidence("irc", join_detail(server, "refused", text), "irc",
                                rule="irc:error")  # fmt: skip
            if command == b"PING":
                # ircu, hybrid and ratbox want a PONG before they finish registration.
                return Evidence("irc", join_detail(server, "PING before registration"), "irc",
                                rule="irc:ping")  # fmt: skip
            continue
        seen = True
        server = server or clean(m.group(1), 80)
        code, rest = m.group(2), m.group(3)
        text = clean(rest.split(b":", 1)[-1], 120)
        if code == b"004":
            words = rest.split(b" ")
            return _named(server, clean(words[2], 60) if len(words) > 2 else "", host_line)
        if code == b"002":
            host_line = text
        elif code == b"ERROR":
            return Evidence("irc", join_detail(server, "refused", text), "irc", rule="irc:error")
        elif code[:1] in (b"4", b"5") and code != b"451":  # 451: not registered (yet)
            return Evidence("irc", join_detail(server, f"refused {code.decode()}", text), "irc",
                            rule="irc:refused")  # fmt: skip
    return None


def _named(server: str, version_token: str, host_line: str) -> Evidence:
    product, version = split_software(version_token) if version_token else ("", "")
    return Evidence(
        "irc",
        join_detail(server, version_token or host_line),
        "irc",
        product=product,
        version=version,
        rule="irc:myinfo" if version_token else "irc:server-message",
    )


TCP_PROBES = (TcpProbe(name="irc", request=build_request, decode=parse_reply, rank=45,
                       max_reply=MAX_REPLY),)  # fmt: skip
