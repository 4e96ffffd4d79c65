"""ONC RPC portmapper (port 111): a DUMP call to program 100000 version 2.

Rules and theory:
- An ONC RPC message (RFC 5531 9) is XDR (RFC 4506): 32-bit big-endian words, opaque
  data padded to 4 bytes. A CALL holds the transaction ID (XID), message type 0, RPC
  version 2, program, version and procedure, then a credential and a verifier, here
  both AUTH_NONE (flavor 0, no body).
- We call the portmapper (program 100000, version 2, RFC 1833 3) procedure 4, DUMP,
  which takes no arguments and returns the list of registered (program, version,
  protocol, port) mappings: what RPC services the host runs.
- A REPLY (message type 1) carries our XID. MSG_ACCEPTED then a verifier (skipped,
  bounded) and an accept status; SUCCESS is followed by the DUMP results, an XDR
  optional-data list (1, mapping, 1, mapping, ..., 0). MSG_DENIED (RPC version mismatch
  or an authentication error) still proves an RPC server. A reply counts only with our
  XID and message type 1; the list is read for at most ``_MAX_MAPPINGS`` entries, and a
  list cut short is reported as far as it goes.
"""

from __future__ import annotations

import struct

from scanner.protocols import Evidence, join_detail

__all__ = ["PROGRAM_NAMES", "XID", "build_request", "parse_reply"]

XID = 0x70700111
PORTMAPPER, PMAP_VERSION, PMAPPROC_DUMP = 100000, 2, 4
_CALL, _REPLY = 0, 1
_ACCEPTED, _DENIED = 0, 1
_MAX_MAPPINGS = 64
_SHOWN = 6
_MAX_AUTH = 400  # RFC 5531 8.2: opaque_auth bodies are at most 400 bytes

PROGRAM_NAMES = {
    100000: "portmapper", 100003: "nfs", 100005: "mountd", 100021: "nlockmgr",
    100024: "status", 100227: "nfs_acl", 100011: "rquotad", 100004: "ypserv",
    100007: "ypbind", 100009: "yppasswdd", 100001: "rstatd", 100002: "rusersd",
}  # fmt: skip
_PROTOCOLS = {6: "tcp", 17: "udp"}
_ACCEPT_STATUS = ("success", "program unavailable", "program version mismatch",
                  "procedure unavailable", "garbage arguments", "system error")  # fmt: skip


def build_request() -> bytes:
    """CALL XID, portmapper v2 DUMP, AUTH_NONE credential and verifier."""
    return struct.pack("!10I", XID, _CALL, 2, PORTMAPPER, PMAP_VERSION, PMAPPROC_DUMP, 0, 0, 0, 0)


def _words(data: bytes, pos: int, count: int) -> tuple[int, ...] | None:
    if pos + 4 * count > len(data):
        return None
    return struct.unpack_from(f"!{count}I", data, pos)


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("rpcbind", "portmapper v2; <n> mappings: ...", "rpc")`` for our call's reply."""
    head = _words(data, 0, 3)
    if head is None or head[0] != XID or head[1] != _REPLY:
        return None
    if head[2] == _DENIED:
        return Evidence("rpc", "call denied", "rpc")
    if head[2] != _ACCEPTED:
        return None
    verifier = _words(data, 12, 2)
    if verifier is None or verifier[1] > _MAX_AUTH:
        return None
    pos = 20 + (verifier[1] + 3) // 4 * 4
    status = _words(data, pos, 1)
    if status is None:
        return None
    if status[0] != 0:
        name = _ACCEPT_STATUS[status[0]] if status[0] < len(_ACCEPT_STATUS) else "error"
        return Evidence("rpc", name, "rpc")
    return Evidence("rpcbind", _mappings(data, pos + 4), "rpc")


def _mappings(data: bytes, pos: int) -> str:
    """The DUMP list, as ``"portmapper v2; <n> mappings: nfs v3 tcp 2049, ..."``."""
    seen: list[str] = []
    count = 0
    while count < _MAX_MAPPINGS:
        follows = _words(data, pos, 1)
        if follows is None or follows[0] != 1:
            break
        mapping = _words(data, pos + 4, 4)
        if mapping is None:
            break
        program, version, protocol, port = mapping
        count += 1
        pos += 20
        name = PROGRAM_NAMES.get(program, str(program))
        entry = f"{name} v{version} {_PROTOCOLS.get(protocol, str(protocol))} {port}"
        if entry not in seen:
            seen.append(entry)
    shown = ", ".join(seen[:_SHOWN]) + (", ..." if len(seen) > _SHOWN else "")
    noun = "mapping" if count == 1 else "mappings"
    return join_detail("portmapper v2", f"{count} {noun}: {shown}" if count else "")
