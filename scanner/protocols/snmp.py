"""SNMP (port 161): v1 and v2c GetRequest for sysDescr.0 with community ``public``.

Rules and theory:
- An SNMPv1 (RFC 1157 4) or SNMPv2c (RFC 1901 3, PDUs from RFC 3416 3) message is a BER
  (X.690) SEQUENCE of the version (INTEGER 0 for v1, 1 for v2c), the community (OCTET
  STRING) and a PDU. A GetRequest PDU ([0], tag 0xA0) holds a request-id, error-status
  and error-index (INTEGERs) and a SEQUENCE of variable bindings, each a SEQUENCE of an
  OBJECT IDENTIFIER and a value (NULL in a request). The agent answers with a Response
  PDU ([2], tag 0xA2) carrying the same request-id.
- Two probes, one per version, each asking for sysDescr.0 (1.3.6.1.2.1.1.1.0, RFC 3418)
  with the community ``public`` and a request-id of its own, so a reply tells which
  version it answers. An agent that does not know the community stays silent (RFC 3584
  and every agent in practice), so silence proves nothing.
- A reply counts only if it is a well-formed Response to one of our requests: version,
  request-id and PDU tag must match. An agent that answers with an error (v1
  noSuchName) or an exception value (v2c noSuchObject...) still proves SNMP; the detail
  says which. The sysDescr shown is cleaned.
- The BER codec here is small and strict: single-byte tags only, definite lengths only
  (short form, or long form of at most 4 bytes), every length within its enclosing value,
  INTEGERs at most 8 bytes, and no trailing bytes after the message. Anything else is not
  SNMP. Nesting is fixed by the message shape, so no recursion depth is left to the peer.
"""

from __future__ import annotations

from dataclasses import dataclass

from scanner.protocols import Evidence, clean, join_detail

__all__ = [
    "COMMUNITY",
    "REQUEST_IDS",
    "SYS_DESCR",
    "BerError",
    "Message",
    "build_request",
    "decode_message",
    "decode_oid",
    "encode_integer",
    "encode_message",
    "encode_oid",
    "parse_reply",
    "parse_v1_reply",
    "parse_v2c_reply",
    "tlv",
]

COMMUNITY = b"public"
SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)
V1, V2C = 0, 1
VERSION_NAMES = {V1: "v1", V2C: "v2c"}
REQUEST_IDS = {V1: 0x70700001, V2C: 0x70700002}  # fixed, one per version
MAX_MESSAGE = 4096  # an SNMP reply to one GetRequest is a few hundred bytes

# Universal and SNMP tags.
INTEGER, OCTET_STRING, NULL, OID, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
GET_REQUEST, RESPONSE = 0xA0, 0xA2
_EXCEPTIONS = {0x80: "noSuchObject", 0x81: "noSuchInstance", 0x82: "endOfMibView"}
_ERRORS = ("noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr")


class BerError(ValueError):
    """Bytes that are not the strict BER this module accepts."""


# --------------------------------------------------------------------------- encoder


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One BER tag-length-value (definite length, minimal)."""
    return bytes((tag,)) + _length(len(content)) + content


def encode_integer(value: int) -> bytes:
    """An INTEGER in the fewest two's-complement bytes."""
    size = max(1, (value.bit_length() + 8) // 8)
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def encode_oid(arcs: tuple[int, ...]) -> bytes:
    """An OBJECT IDENTIFIER (X.690 8.19): 40*a+b, then base-128 arcs."""
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"not an OID: {arcs!r}")
    body = bytearray()
    for arc in (arcs[0] * 40 + arcs[1], *arcs[2:]):
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | arc & 0x7F)
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


@dataclass(frozen=True, slots=True)
class Message:
    """An SNMPv1/v2c message with one PDU; ``bindings`` are (OID, value tag, value)."""

    version: int
    community: bytes
    pdu: int
    request_id: int
    error_status: int
    error_index: int
    bindings: tuple[tuple[tuple[int, ...], int, bytes], ...]


def encode_message(message: Message) -> bytes:
    """``message`` as BER bytes."""
    bindings = b"".join(
        tlv(SEQUENCE, encode_oid(oid) + tlv(tag, value)) for oid, tag, value in message.bindings
    )
    pdu = tlv(
        message.pdu,
        encode_integer(message.request_id)
        + encode_integer(message.error_status)
        + encode_integer(message.error_index)
        + tlv(SEQUENCE, bindings),
    )
    return tlv(
        SEQUENCE,
        encode_integer(message.version) + tlv(OCTET_STRING, message.community) + pdu,
    )


def build_request(version: int) -> bytes:
    """GetRequest sysDescr.0, community ``public``, for ``version`` 0 (v1) or 1 (v2c)."""
    return encode_message(
        Message(version, COMMUNITY, GET_REQUEST, REQUEST_IDS[version], 0, 0,
                ((SYS_DESCR, NULL, b""),))
    )  # fmt: skip


# --------------------------------------------------------------------------- decoder


def _read(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start, stop) of the TLV at ``pos``, which must end by ``end``."""
    if pos + 2 > end:
        raise BerError("truncated header")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise BerError("multi-byte tag")
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise BerError("indefinite or oversized length")
        if pos + count > end:
            raise BerError("truncated length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise BerError("value past its end")
    return tag, pos, pos + length


def _expect(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = _read(data, pos, end)
    if got != tag:
        raise BerError(f"tag {got:#x}, want {tag:#x}")
    return start, stop


def _integer(data: bytes, pos: int, end: int) -> tuple[int, int]:
    start, stop = _expect(data, pos, end, INTEGER)
    if not 1 <= stop - start <= 8:
        raise BerError("integer size")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def decode_oid(body: bytes) -> tuple[int, ...]:
    """The arcs of an OBJECT IDENTIFIER's contents."""
    if not body or body[-1] & 0x80 or len(body) > 128:
        raise BerError("bad OID")
    arcs: list[int] = []
    value = 0
    for byte in body:
        if value == 0 and byte == 0x80:
            raise BerError("non-minimal OID arc")
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = (first // 40, first % 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def decode_message(data: bytes) -> Message:
    """The SNMPv1/v2c message in ``data`` (raises :class:`BerError` if it is not one)."""
    if len(data) > MAX_MESSAGE:
        raise BerError("too long")
    start, end = _expect(data, 0, len(data), SEQUENCE)
    if end != len(data):
        raise BerError("trailing bytes")
    version, pos = _integer(data, start, end)
    c_start, pos = _expect(data, pos, end, OCTET_STRING)
    community = data[c_start:pos]
    pdu, p_start, p_end = _read(data, pos, end)
    if p_end != end or pdu & 0xE0 != 0xA0:
        raise BerError("no PDU")
    request_id, pos = _integer(data, p_start, p_end)
    error_status, pos = _integer(data, pos, p_end)
    error_index, pos = _integer(data, pos, p_end)
    pos, list_end = _expect(data, pos, p_end, SEQUENCE)
    if list_end != p_end:
        raise BerError("trailing bytes in PDU")
    bindings = []
    while pos < list_end:
        b_start, b_end = _expect(data, pos, list_end, SEQUENCE)
        o_start, o_end = _expect(data, b_start, b_end, OID)
        tag, v_start, v_end = _read(data, o_end, b_end)
        if v_end != b_end:
            raise BerError("trailing bytes in binding")
        bindings.append((decode_oid(data[o_start:o_end]), tag, data[v_start:v_end]))
        pos = b_end
    return Message(version, community, pdu, request_id, error_status, error_index, tuple(bindings))


def parse_reply(data: bytes, version: int | None = None) -> Evidence | None:
    """``Evidence("snmp", "v2c; community 'public'; <sysDescr>", "snmp")``, or None.

    ``version`` restricts the replies accepted to that of one request (0 v1, 1 v2c).
    """
    try:
        message = decode_message(data)
    except BerError:
        return None
    wanted = VERSION_NAMES if version is None else {version: VERSION_NAMES[version]}
    if (
        message.version not in wanted
        or message.pdu != RESPONSE
        or message.request_id != REQUEST_IDS[message.version]
    ):
        return None
    parts = [wanted[message.version], f"community '{clean(message.community, 40)}'"]
    if message.error_status:
        name = (
            _ERRORS[message.error_status]
            if 0 <= message.error_status < len(_ERRORS)
            else f"error {message.error_status}"
        )
        parts.append(name)
    for oid, tag, value in message.bindings[:1]:
        if oid != SYS_DESCR:
            parts.append("OID " + ".".join(map(str, oid))[:60])
        elif tag == OCTET_STRING:
            parts.append(clean(value))
        elif tag in _EXCEPTIONS:
            parts.append(_EXCEPTIONS[tag])
    return Evidence("snmp", join_detail(*parts), "snmp")


def parse_v1_reply(data: bytes) -> Evidence | None:
    """:func:`parse_reply` for the v1 request only."""
    return parse_reply(data, V1)


def parse_v2c_reply(data: bytes) -> Evidence | None:
    """:func:`parse_reply` for the v2c request only."""
    return parse_reply(data, V2C)
