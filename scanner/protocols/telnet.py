"""Telnet (port 23): refuse the server's option negotiation, and read its login prompt.

Rules and theory:
- A telnet server usually opens with option negotiation (RFC 854, RFC 855): ``IAC DO
  <option>`` / ``IAC WILL <option>``. Many (inetutils, BSD, busybox telnetd) wait for the
  client's answers before they start ``login``, so a client that stays silent sees only
  the negotiation (the passive banner rule, ``banner.py``, already calls that telnet).
- This probe refuses up front, as RFC 854 allows a party to refuse any option: ``IAC
  WONT`` for the options servers ask a client to do (terminal type, speed, X display,
  environment) and ``IAC DONT`` for those they offer to do (authentication,
  encryption). The server then goes on to its banner (``/etc/issue.net``) and the
  ``login:`` prompt, which name the host and often its system.
- The reply proves telnet once it opens with an IAC command (WILL/WONT/DO/DONT or a
  subnegotiation) *and* either text after the commands is complete (a line end, or a
  prompt ending in ":", ">", "#" or "$": ``login: `` comes without a line end) or the
  server has offered to echo or to suppress go-ahead (``WILL ECHO`` / ``WILL SGA``),
  which servers do when the session proper starts. Commands are stripped
  (``banner.strip_iac``); the detail is the text, cleaned and bounded, or else the
  options the server asked for and offered.
- inetutils telnetd (Debian's) negotiates in three rounds, and waits for the client's
  answer to each (its ``DO TIMING-MARK`` above all) before it starts ``login``; an answer
  sent before the question is ignored (RFC 1143). A request sent once, up front, cannot
  take part in that, so against it this probe sees the second round (``WILL SGA``) and
  reports the options; the prompt case is tested with the bytes of a client that did
  answer every round (tests/data/daemons-b/telnetd-interactive.bin).
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.banner import IAC, WILL_WONT_DO_DONT, strip_iac
from scanner.protocols.tcp import TcpProbe

__all__ = ["REQUEST", "TCP_PROBES", "build_request", "parse_reply"]

_WONT, _DONT = 0xFC, 0xFE
# TTYPE, TSPEED, XDISPLOC, NEW-ENVIRON, OLD-ENVIRON; AUTHENTICATION, ENCRYPT.
REQUEST = bytes(b for opt in (24, 32, 35, 39, 36) for b in (IAC, _WONT, opt)) + bytes(
    b for opt in (37, 38) for b in (IAC, _DONT, opt)
)
MAX_REPLY = 4096
_PROMPT = re.compile(rb"\S[^\n]{0,200}[:>#$]\s*$")
_WILL, _DO = 0xFB, 0xFD
_SESSION_START = frozenset((1, 3))  # ECHO, SUPPRESS-GO-AHEAD
_OPTIONS = {0: "BINARY", 1: "ECHO", 3: "SGA", 5: "STATUS", 24: "TTYPE", 31: "NAWS", 32: "TSPEED",
            33: "LFLOW", 34: "LINEMODE", 35: "XDISPLOC", 36: "ENVIRON", 37: "AUTHENTICATION",
            38: "ENCRYPT", 39: "NEW-ENVIRON"}  # fmt: skip


def build_request(_host: str = "", _port: int = 0) -> bytes:
    """The refusals sent at once (always the same bytes)."""
    return REQUEST


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("telnet", "<banner and prompt>", "telnet")`` once a prompt came, else None."""
    head = data[:MAX_REPLY]
    if len(head) < 3 or head[0] != IAC or head[1] not in (*WILL_WONT_DO_DONT, 0xFA):
        return None
    text = strip_iac(head).replace(b"\x00", b"")
    if text.strip() and (text.endswith(b"\n") or _PROMPT.search(text)):
        lines = [ln.strip() for ln in text.replace(b"\r", b"\n").split(b"\n") if ln.strip()]
        return Evidence("telnet", clean(b" | ".join(lines[-4:])), "telnet",
                        rule="telnet:negotiation+prompt")  # fmt: skip
    asked, offered = _negotiation(head)
    if not _SESSION_START & set(offered):
        return None
    detail = join_detail(
        "DO " + " ".join(_name(o) for o in asked) if asked else "",
        "WILL " + " ".join(_name(o) for o in offered),
    )
    return Evidence("telnet", detail, "telnet", rule="telnet:negotiation")


def _name(option: int) -> str:
    return _OPTIONS.get(option, str(option))


def _negotiation(data: bytes) -> tuple[list[int], list[int]]:
    """The options the server asked us to do (DO) and offered to do (WILL), in order."""
    asked: list[int] = []
    offered: list[int] = []
    for i in range(len(data) - 2):
        if data[i] == IAC and data[i + 1] in (_WILL, _DO) and (i == 0 or data[i - 1] != IAC):
            target = offered if data[i + 1] == _WILL else asked
            if data[i + 2] not in target and len(target) < 16:
                target.append(data[i + 2])
    return asked, offered


TCP_PROBES = (
    TcpProbe(name="telnet", request=build_request, decode=parse_reply, rank=90,
             max_reply=MAX_REPLY),
)  # fmt: skip
