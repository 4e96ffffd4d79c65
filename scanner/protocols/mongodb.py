"""MongoDB (port 27017): an OP_MSG ``hello``, and the document it draws.

Rules and theory:
- MongoDB's wire protocol (the "MongoDB Wire Protocol" reference): every message has a
  16-byte header of little-endian int32s, messageLength (header included), requestID,
  responseTo and opCode. OP_MSG (opCode 2013, servers since 3.6) follows it with uint32
  flagBits and sections; a kind-0 section is one BSON document (bsonspec.org: int32 size,
  elements, a final NUL; an element is a type byte, a NUL-terminated name and a value).
- The probe sends ``{hello: 1, $db: "admin"}`` with a fixed requestID. ``hello`` needs no
  authentication, and every driver sends it first. The answer counts if its header
  answers our requestID with an OP_MSG (``responseTo`` = our ID) and its first section is
  a well-formed document with an ``ok`` field. A server too old for ``hello`` answers
  ``ok: 0`` with an error (code 59, CommandNotFound): still MongoDB.
- The detail says what the document does: the wire versions (``minWireVersion`` to
  ``maxWireVersion``, which grows with every release: 21 is 7.0), whether it is a
  writable primary, a replica set's name, ``isdbgrid`` for a mongos router. hello gives
  no version string, so the version stays empty.
- BSON here is minimal and strict: only the top level is read; a type we do not know
  ends the walk (the fields before it are kept); every length is checked against its
  container. Bounded by ``MAX_REPLY`` (a hello reply is about 300 bytes).
- No Debian package ships a MongoDB server, so the tests use replies built byte by byte
  from the wire and BSON specifications, not captured from a real server.
"""

from __future__ import annotations

import struct

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = ["MAX_REPLY", "OP_MSG", "REQUEST_ID", "TCP_PROBES", "build_hello", "decode"]

OP_MSG = 2013
REQUEST_ID = 0x7070
MAX_REPLY = 4096
_HEADER = struct.Struct("<iiii")
_INT32 = struct.Struct("<i")
_DOUBLE = struct.Struct("<d")
_INT64 = struct.Struct("<q")
# Fixed-size BSON values: type -> size (double, ObjectId, bool, datetime, null, int32,
# timestamp, int64, decimal128, min key, max key).
_FIXED = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
          0xFF: 0, 0x7F: 0}  # fmt: skip
_STRING, _DOCUMENT, _ARRAY, _BINARY = 0x02, 0x03, 0x04, 0x05
Value = float | int | bool | str | None


def _cstring(text: str) -> bytes:
    return text.encode() + b"\0"


def build_hello() -> bytes:
    """The OP_MSG ``{hello: 1, $db: "admin"}``, requestID :data:`REQUEST_ID`."""
    body = (
        b"\x10" + _cstring("hello") + _INT32.pack(1)
        + b"\x02" + _cstring("$db") + _INT32.pack(6) + _cstring("admin")
    )  # fmt: skip
    document = _INT32.pack(4 + len(body) + 1) + body + b"\0"
    message = struct.pack("<I", 0) + b"\x00" + document  # flagBits, section kind 0
    return _HEADER.pack(_HEADER.size + len(message), REQUEST_ID, 0, OP_MSG) + message


def request(_host: str, _port: int) -> bytes:
    """The ``mongodb`` probe's request: :func:`build_hello`."""
    return build_hello()


def _document(buf: bytes, pos: int) -> dict[str, Value] | None:
    """The top-level scalar fields of the BSON document at ``pos`` (nested ones: None)."""
    if len(buf) - pos < 5:
        return None
    (size,) = _INT32.unpack_from(buf, pos)
    end = pos + size
    if size < 5 or end > len(buf) or buf[end - 1] != 0:
        return None
    fields: dict[str, Value] = {}
    pos += 4
    while pos < end - 1:
        kind = buf[pos]
        nul = buf.find(b"\0", pos + 1, end)
        if nul < 0:
            return None
        name = buf[pos + 1 : nul].decode("utf-8", "replace")
        pos = nul + 1
        value: Value = None
        if kind in _FIXED:
            width = _FIXED[kind]
            if pos + width > end:
                return None
            if kind == 0x01:
                (value,) = _DOUBLE.unpack_from(buf, pos)
            elif kind == 0x08:
                value = buf[pos] != 0
            elif kind == 0x10:
                (value,) = _INT32.unpack_from(buf, pos)
            elif kind == 0x12:
                (value,) = _INT64.unpack_from(buf, pos)
        elif kind in (_STRING, _DOCUMENT, _ARRAY, _BINARY):
            if pos + 4 > end:
                return None
            (length,) = _INT32.unpack_from(buf, pos)
            width = length + (4 if kind in (_STRING, _BINARY) else 0) + (kind == _BINARY)
            if length < (1 if kind == _STRING else 0) or pos + width > end:
                return None
            if kind == _STRING:
                value = buf[pos + 4 : pos + 4 + length - 1].decode("utf-8", "replace")
        else:
            break  # a type we do not read: keep what came before it
        fields[name] = value
        pos += width
    return fields


def decode(data: bytes) -> Evidence | None:
    """``Evidence("mongodb", ..., product="MongoDB")`` for the answer to :func:`build_hello`."""
    if len(data) < _HEADER.size:
        return None
    length, _ident, answers, opcode = _HEADER.unpack_from(data)
    if answers != REQUEST_ID or opcode != OP_MSG or not _HEADER.size + 5 < length <= MAX_REPLY:
        return None
    if len(data) < length:
        return None  # wait for the whole message
    message = data[:length]
    if message[_HEADER.size + 4] != 0:
        return None  # the first section is not a document
    fields = _document(message, _HEADER.size + 5)
    if fields is None or not isinstance(fields.get("ok"), float | int):
        return None
    return Evidence("mongodb", _detail(fields), "mongodb", product="MongoDB", rule="mongodb:hello")


def _detail(fields: dict[str, Value]) -> str:
    if fields["ok"] != 1:
        return join_detail(
            f"error {fields.get('code', '')}".strip(), clean(str(fields.get("errmsg", "")), 120)
        )
    low, high = fields.get("minWireVersion"), fields.get("maxWireVersion")
    role = ""
    if fields.get("msg") == "isdbgrid":
        role = "mongos"
    elif fields.get("isWritablePrimary") is True or fields.get("ismaster") is True:
        role = "primary"
    elif fields.get("secondary") is True:
        role = "secondary"
    replica = fields.get("setName")
    return join_detail(
        f"wire {low}-{high}" if isinstance(low, int) and isinstance(high, int) else "",
        role,
        f"replica set {clean(replica, 60)}" if isinstance(replica, str) else "",
    )


TCP_PROBES = (
    TcpProbe(name="mongodb", request=request, decode=decode, rank=60, max_reply=MAX_REPLY),
)
