"""LDAP (port 389): an anonymous search of the RootDSE, and the entry or result it draws.

Rules and theory:
- LDAP messages are BER (X.690) ``LDAPMessage`` sequences (RFC 4511 4.1.1): a message ID,
  then the operation under an APPLICATION tag. A client may search before binding: the
  request is anonymous. The search asks the RootDSE (RFC 4512 5.1: base ``""``, scope
  baseObject, filter ``(objectClass=*)``) for the few attributes that say what the server
  is: ``vendorName``/``vendorVersion`` (RFC 3045), ``supportedLDAPVersion``,
  ``namingContexts``, ``supportedSASLMechanisms``, and the operational ``objectClass``,
  ``structuralObjectClass`` (OpenLDAP's RootDSE is of class ``OpenLDAProotDSE``) and
  ``forestFunctionality`` (only Active Directory has it).
- A reply counts when its first message is a sequence with our message ID (or 0, for the
  unsolicited Notice of Disconnection) and a SearchResultEntry (APPLICATION 4),
  SearchResultDone (APPLICATION 5) or ExtendedResponse (APPLICATION 24). A refusal
  (``Done`` with an error code, e.g. confidentiality required) proves LDAP just as well.
- The BER here is minimal and strict: single-byte tags, definite lengths of at most 4
  bytes, every element inside its parent. Anything else is not our reply. A message is
  decoded once complete; one bigger than ``MAX_MESSAGE`` is decoded from its first
  ``MAX_MESSAGE`` bytes, the elements that arrived whole.
- Product: ``vendorName`` (and ``vendorVersion``) where given, else OpenLDAP or Active
  Directory from the classes above; neither gives a version without one.
"""

from __future__ import annotations

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = ["ATTRIBUTES", "MAX_MESSAGE", "MESSAGE_ID", "TCP_PROBES", "build_request", "decode"]

MESSAGE_ID = 7
MAX_MESSAGE = 8192
ATTRIBUTES = (
    "vendorName", "vendorVersion", "supportedLDAPVersion", "namingContexts",
    "supportedSASLMechanisms", "objectClass", "structuralObjectClass", "forestFunctionality",
)  # fmt: skip
_SEQUENCE, _SET, _INTEGER, _OCTETS, _ENUMERATED = 0x30, 0x31, 0x02, 0x04, 0x0A
_ENTRY, _DONE, _EXTENDED = 0x64, 0x65, 0x78
_MAX_VALUES = 16  # values of one attribute looked at
_RESULTS = {
    0: "success", 1: "operationsError", 2: "protocolError", 7: "authMethodNotSupported",
    8: "strongerAuthRequired", 13: "confidentialityRequired", 32: "noSuchObject",
    48: "inappropriateAuthentication", 49: "invalidCredentials", 50: "insufficientAccessRights",
    51: "busy", 52: "unavailable", 53: "unwillingToPerform", 80: "other",
}  # fmt: skip


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def build_request() -> bytes:
    """The anonymous RootDSE search (message :data:`MESSAGE_ID`) for :data:`ATTRIBUTES`."""
    search = (
        _tlv(_OCTETS, b"")  # baseObject: the RootDSE
        + _tlv(_ENUMERATED, b"\x00")  # scope: baseObject
        + _tlv(_ENUMERATED, b"\x00")  # derefAliases: never
        + _tlv(_INTEGER, b"\x00")  # sizeLimit
        + _tlv(_INTEGER, b"\x00")  # timeLimit
        + _tlv(0x01, b"\x00")  # typesOnly: FALSE
        + _tlv(0x87, b"objectClass")  # filter: present [7]
        + _tlv(_SEQUENCE, b"".join(_tlv(_OCTETS, a.encode()) for a in ATTRIBUTES))
    )
    return _tlv(_SEQUENCE, _tlv(_INTEGER, bytes([MESSAGE_ID])) + _tlv(0x63, search))


def request(_host: str, _port: int) -> bytes:
    """The ``ldap`` probe's request: :func:`build_request`."""
    return build_request()


def _element(buf: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """(tag, start of value, end of value) of the BER element at ``pos``, inside ``end``."""
    if pos + 2 > min(end, len(buf)):
        return None
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        return None  # multi-byte tags: never in LDAP
    if first < 0x80:
        start, length = pos + 2, first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or pos + 2 + count > min(end, len(buf)):
            return None
        start = pos + 2 + count
        length = int.from_bytes(buf[pos + 2 : start], "big")
    if start + length > end:
        return None
    return tag, start, start + length


def _children(
    buf: bytes, start: int, end: int, *, clip: bool = False
) -> list[tuple[int, int, int]]:
    """The elements between ``start`` and ``end``, up to the first one that does not fit.

    With ``clip``, that one is kept too, cut at ``end`` (a message read only in part).
    """
    out = []
    while start < end and (child := _element(buf, start, end)) is not None:
        out.append(child)
        start = child[2]
    if clip and start < end and (child := _element(buf, start, 1 << 40)) is not None:
        out.append((child[0], child[1], min(child[2], end)))
    return out


def _attributes(buf: bytes, start: int, end: int) -> dict[str, list[bytes]]:
    """A SearchResultEntry's attributes: ``{lowercase name: [values]}``."""
    found: dict[str, list[bytes]] = {}
    parts = _children(buf, start, end, clip=True)
    if len(parts) < 2 or parts[0][0] != _OCTETS or parts[1][0] != _SEQUENCE:
        return found
    for tag, a_start, a_end in _children(buf, parts[1][1], parts[1][2]):
        items = _children(buf, a_start, a_end)
        if tag != _SEQUENCE or len(items) != 2 or items[0][0] != _OCTETS or items[1][0] != _SET:
            break
        name = buf[items[0][1] : items[0][2]].decode("ascii", "replace").lower()
        values = _children(buf, items[1][1], items[1][2])[:_MAX_VALUES]
        found[name] = [buf[s:e] for t, s, e in values if t == _OCTETS]
    return found


def decode(data: bytes) -> Evidence | None:
    """``Evidence("ldap", ...)`` for a reply to :func:`build_request`, else None."""
    buf = data[:MAX_MESSAGE]
    head = _header(buf)
    if head is None:
        return None
    start, end = head
    if end > len(buf):
        if len(buf) < MAX_MESSAGE:
            return None  # wait for the rest of the message
        end = len(buf)
    parts = _children(buf, start, end, clip=True)
    if len(parts) < 2 or parts[0][0] != _INTEGER or parts[0][2] - parts[0][1] > 4:
        return None
    ident = int.from_bytes(buf[parts[0][1] : parts[0][2]], "big")
    op, op_start, op_end = parts[1]
    if ident == MESSAGE_ID and op == _ENTRY:
        return _entry(_attributes(buf, op_start, op_end))
    if (ident == MESSAGE_ID and op == _DONE) or (ident in (0, MESSAGE_ID) and op == _EXTENDED):
        return _result(buf, op_start, op_end)
    return None


def _header(buf: bytes) -> tuple[int, int] | None:
    """(start, declared end) of the LDAPMessage sequence ``buf`` starts with, all there or not.

    None if ``buf`` does not start with one, or if too little of it has come to tell.
    """
    if len(buf) < 2 or buf[0] != _SEQUENCE:
        return None
    if buf[1] < 0x80:
        return 2, 2 + buf[1]
    start = 2 + (buf[1] & 0x7F)
    if not 0x81 <= buf[1] <= 0x84 or len(buf) < start:
        return None
    return start, start + int.from_bytes(buf[2:start], "big")


def _text(values: list[bytes], limit: int = 60) -> str:
    return clean(b" ".join(values), limit)


def _entry(attrs: dict[str, list[bytes]]) -> Evidence:
    classes = {
        v.lower() for v in attrs.get("objectclass", []) + attrs.get("structuralobjectclass", [])
    }
    product = _text(attrs.get("vendorname", []))
    version = _text(attrs.get("vendorversion", []))
    if not product and b"openldaprootdse" in classes:
        product = "OpenLDAP"
    elif not product and "forestfunctionality" in attrs:
        product = "Active Directory"
    versions = _text(attrs.get("supportedldapversion", []), 20)
    return Evidence(
        "ldap",
        join_detail(
            "RootDSE",
            " ".join(p for p in (product, version) if p),
            f"LDAPv{versions}" if versions else "",
            f"naming {_text(attrs.get('namingcontexts', []))}" if "namingcontexts" in attrs else "",
            f"SASL {_text(attrs.get('supportedsaslmechanisms', []))}"
            if "supportedsaslmechanisms" in attrs
            else "",
        ),
        "ldap",
        product=product,
        version=version,
        rule="ldap:rootdse",
    )


def _result(buf: bytes, start: int, end: int) -> Evidence | None:
    parts = _children(buf, start, end)
    if len(parts) < 3 or parts[0][0] != _ENUMERATED or parts[0][2] - parts[0][1] > 4:
        return None
    if parts[1][0] != _OCTETS or parts[2][0] != _OCTETS:
        return None
    code = int.from_bytes(buf[parts[0][1] : parts[0][2]], "big")
    message = clean(buf[parts[2][1] : parts[2][2]], 100)
    name = _RESULTS.get(code, f"result {code}")
    return Evidence("ldap", join_detail(name, message), "ldap", rule="ldap:result")


TCP_PROBES = (TcpProbe(name="ldap", request=request, decode=decode, rank=40),)
