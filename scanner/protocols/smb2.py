"""SMB2/3 (port 445): a NEGOTIATE request, and the dialect and signing the server picks.

Rules and theory:
- Over TCP ("direct hosting", MS-SMB2 2.1) every SMB message is preceded by a 4-byte
  NetBIOS session header: a zero byte and a 24-bit big-endian length.
- The request is an SMB2 NEGOTIATE (MS-SMB2 2.2.3) offering the dialects 2.0.2 through
  3.1.1, with signing enabled (not required). Offering 3.1.1 obliges the client to send a
  pre-authentication integrity context (SHA-512 and a salt, 2.2.3.1.1); an encryption
  context (AES-128-GCM, AES-128-CCM) is added, as Windows and Samba clients do. Every
  value is fixed: the client GUID and salt are constants, not secrets.
- The response (MS-SMB2 2.2.4) proves SMB2 when it starts with ``\\xfeSMB``, a 64-byte
  header whose command is NEGOTIATE (0) and whose flags mark a server response; its
  body's ``DialectRevision`` is the dialect chosen, and ``SecurityMode`` says whether
  signing is enabled or required. The server GUID, times and security blob are not used.
- A server that speaks only SMB1 answers with an ``\\xffSMB`` header (or closes): that
  still proves SMB, reported as "SMB1". The wire gives no product name: Samba and Windows
  are told apart by other means, not here.
"""

from __future__ import annotations

import struct

from scanner.protocols import Evidence
from scanner.protocols.tcp import TcpProbe

__all__ = ["DIALECTS", "REQUEST", "TCP_PROBES", "build_request", "parse_reply"]

#: Dialect revisions offered, and the names they are shown with.
DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1"}
_WILDCARD = 0x02FF  # "SMB 2.???": the server wants a multi-protocol negotiate first

_SMB2 = b"\xfeSMB"
_SMB1 = b"\xffSMB"
_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")  # 64 bytes, MS-SMB2 2.2.1.2 (sync)
_FLAGS_SERVER_TO_REDIR = 0x1
_SIGNING_ENABLED, _SIGNING_REQUIRED = 0x1, 0x2
_CLIENT_GUID = b"portprobe-smb2\x00\x00"
_SALT = b"portprobe".ljust(32, b"\x00")


def _pad8(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 8)


def _context(kind: int, data: bytes) -> bytes:
    return struct.pack("<HHI", kind, len(data), 0) + data


def _build() -> bytes:
    dialects = b"".join(struct.pack("<H", d) for d in DIALECTS)
    preauth = _context(1, struct.pack("<HHH", 1, len(_SALT), 0x0001) + _SALT)  # SHA-512
    ciphers = _context(2, struct.pack("<HHH", 2, 0x0002, 0x0001))  # GCM, CCM
    fixed_len = _HEADER.size + 36
    offset = len(_pad8(b"\x00" * (fixed_len + len(dialects))))
    body = struct.pack(
        "<HHHHI16sIHH", 36, len(DIALECTS), _SIGNING_ENABLED, 0, 0, _CLIENT_GUID, offset, 2, 0
    )
    header = _HEADER.pack(_SMB2, 64, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, b"\x00" * 16)
    message = _pad8(header + body + dialects) + _pad8(preauth) + ciphers
    return struct.pack(">I", len(message)) + message


REQUEST = _build()


def build_request(_host: str = "", _port: int = 0) -> bytes:
    """The NetBIOS-framed SMB2 NEGOTIATE request (always the same bytes)."""
    return REQUEST


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("smb", "SMB 3.1.1; signing required", "smb2")`` for a NEGOTIATE response.

    None while the reply is incomplete or is not SMB.
    """
    if len(data) < 8 or data[0] != 0:
        return None
    length = int.from_bytes(data[1:4], "big")
    message = data[4 : 4 + length]
    if message.startswith(_SMB1) and length >= 32:
        return Evidence("smb", "SMB1", "smb2", rule="smb2:smb1-reply")
    if not message.startswith(_SMB2) or length < _HEADER.size + 6:
        return None
    if len(message) < _HEADER.size + 6:
        return None  # not all here yet
    fields = _HEADER.unpack_from(message)
    size, command, flags = fields[1], fields[4], fields[6]
    status = fields[3]
    if size != 64 or command != 0 or not flags & _FLAGS_SERVER_TO_REDIR:
        return None
    body = message[_HEADER.size :]
    structure, security, dialect = struct.unpack_from("<HHH", body)
    if status != 0:
        return Evidence("smb", f"SMB2 negotiate refused (status 0x{status:08x})", "smb2",
                        rule="smb2:negotiate-error")  # fmt: skip
    if structure != 65:
        return None
    if dialect == _WILDCARD:
        name = "2.x (wildcard)"
    elif dialect in DIALECTS:
        name = DIALECTS[dialect]
    else:
        return None  # a dialect we did not offer: not a real answer to us
    signing = (
        "signing required" if security & _SIGNING_REQUIRED
        else "signing enabled" if security & _SIGNING_ENABLED
        else "signing disabled"
    )  # fmt: skip
    return Evidence("smb", f"SMB {name}; {signing}", "smb2", rule="smb2:negotiate")


TCP_PROBES = (TcpProbe(name="smb2", request=build_request, decode=parse_reply, rank=30),)
