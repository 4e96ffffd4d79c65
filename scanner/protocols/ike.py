"""IKE (port 500): an IKEv1 main-mode proposal and an IKEv2 IKE_SA_INIT request.

Rules and theory:
- Both versions share the 28-byte ISAKMP header (RFC 2408 3.1, RFC 7296 3.1): the
  initiator's cookie/SPI (8 bytes), the responder's (8, zero in a first message), the
  first payload's type, the version (major.minor in one byte: 0x10 for IKEv1, 0x20 for
  IKEv2), the exchange type, flags, a message ID and the whole message's length.
- IKEv1 probe: main mode (exchange 2, "identity protection", RFC 2409 5) whose one SA
  payload (DOI IPsec, situation identity-only, RFC 2407 4.6) proposes ISAKMP with four
  transforms: AES-128, AES-256 and 3DES with SHA-1, and 3DES with MD5, each with
  pre-shared keys and MODP group 2 or 14 (RFC 2409 appendix A attributes).
- IKEv2 probe: IKE_SA_INIT (exchange 34, RFC 7296 1.2) with an SA (AES-CBC-128,
  HMAC-SHA2-256 PRF and integrity, MODP group 14), a KE payload and a nonce. The key
  exchange value and the nonce are fixed bytes: we never complete an exchange, and a
  responder answers (or refuses) the first message before it could notice.
- The payloads are fixed, each with its own initiator cookie/SPI. A responder echoes it
  in every reply, an acceptance or a refusal (NO-PROPOSAL-CHOSEN, INVALID-KE-PAYLOAD, a
  COOKIE request): each proves IKE. A reply counts only with our initiator cookie/SPI, a
  version of major 1 or 2, a length field of at least the header's and, for IKEv2, the
  response flag; for an IKEv1 main-mode reply, a responder cookie. The detail is the
  version, the exchange, and the first notification's type (or "SA accepted"), read
  from at most ``_MAX_PAYLOADS`` payloads.
"""

from __future__ import annotations

import struct

from scanner.protocols import Evidence, join_detail

__all__ = ["V1_COOKIE", "V2_SPI", "build_v1_request", "build_v2_request", "parse_reply"]

V1_COOKIE = bytes.fromhex("7070726f62650001")
V2_SPI = bytes.fromhex("7070726f62650002")
_HEADER = struct.Struct("!8s8sBBBBII")
_MAIN_MODE, _INFORMATIONAL_V1 = 2, 5
_SA_INIT, _INFORMATIONAL_V2 = 34, 37
_V1_SA, _V1_NOTIFY = 1, 11
_V2_SA, _V2_KE, _V2_NOTIFY, _V2_NONCE = 33, 34, 41, 40
_V2_INITIATOR, _V2_RESPONSE = 0x08, 0x20
_MAX_PAYLOADS = 16
_DH_GROUP_14_BYTES = 256

_NOTIFY_NAMES = {
    1: "INVALID-PAYLOAD-TYPE", 5: "INVALID-MAJOR-VERSION", 7: "INVALID-SYNTAX",
    9: "INVALID-MESSAGE-ID", 11: "INVALID-SPI", 14: "NO-PROPOSAL-CHOSEN",
    16: "PAYLOAD-MALFORMED", 17: "INVALID-KE-PAYLOAD", 24: "AUTHENTICATION-FAILED",
    16390: "COOKIE",
}  # fmt: skip


def _payload(next_payload: int, body: bytes) -> bytes:
    """A generic payload header (RFC 2408 3.2, RFC 7296 3.2) around ``body``."""
    return struct.pack("!BBH", next_payload, 0, 4 + len(body)) + body


def _message(spi: bytes, first: int, version: int, exchange: int, flags: int, body: bytes) -> bytes:
    return _HEADER.pack(spi, bytes(8), first, version, exchange, flags, 0, 28 + len(body)) + body


def _v1_transform(number: int, last: bool, attributes: tuple[tuple[int, int], ...]) -> bytes:
    # Transform payload (RFC 2408 3.6): number, KEY_IKE, 2 reserved, TV attributes.
    body = struct.pack("!BBH", number, 1, 0) + b"".join(
        struct.pack("!HH", 0x8000 | kind, value) for kind, value in attributes
    )
    return _payload(0 if last else 3, body)


def build_v1_request() -> bytes:
    """An IKEv1 main-mode first message: one SA payload, four ISAKMP transforms."""
    # (encryption, key length, hash, group); attribute types from RFC 2409 appendix A.
    offers = ((7, 128, 2, 2), (7, 256, 2, 14), (5, 0, 2, 2), (5, 0, 1, 2))
    transforms = b""
    for number, (cipher, bits, hash_, group) in enumerate(offers, 1):
        attributes = ((1, cipher), *(((14, bits),) if bits else ()), (2, hash_), (3, 1),
                      (4, group), (11, 1), (12, 28800))  # fmt: skip
        transforms += _v1_transform(number, number == len(offers), attributes)
    proposal = _payload(0, struct.pack("!BBBB", 1, 1, 0, len(offers)) + transforms)
    sa = _payload(0, struct.pack("!II", 1, 1) + proposal)
    return _message(V1_COOKIE, _V1_SA, 0x10, _MAIN_MODE, 0, sa)


def _v2_transform(kind: int, ident: int, last: bool, attributes: bytes = b"") -> bytes:
    return _payload(0 if last else 3, struct.pack("!BBH", kind, 0, ident) + attributes)


def build_v2_request() -> bytes:
    """An IKEv2 IKE_SA_INIT request: SA, KE (MODP group 14) and nonce, all fixed."""
    transforms = (
        _v2_transform(1, 12, False, struct.pack("!HH", 0x800E, 128))  # ENCR_AES_CBC, 128 bits
        + _v2_transform(2, 5, False)  # PRF_HMAC_SHA2_256
        + _v2_transform(3, 12, False)  # AUTH_HMAC_SHA2_256_128
        + _v2_transform(4, 14, True)  # D-H group 14, 2048-bit MODP
    )
    proposal = _payload(0, struct.pack("!BBBB", 1, 1, 0, 4) + transforms)
    sa = _payload(_V2_KE, proposal)
    ke = _payload(_V2_NONCE, struct.pack("!HH", 14, 0) + b"\x55" * _DH_GROUP_14_BYTES)
    nonce = _payload(0, b"portprobe-ikev2-nonce-0123456789")
    return _message(V2_SPI, _V2_SA, 0x20, _SA_INIT, _V2_INITIATOR, sa + ke + nonce)


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("ike", "IKEv2; IKE_SA_INIT; SA accepted", "ike")`` for a reply, else None."""
    if len(data) < _HEADER.size:
        return None
    spi, responder, first, version, exchange, flags, _msgid, length = _HEADER.unpack_from(data)
    major = version >> 4
    if length < _HEADER.size or (major, spi) not in ((1, V1_COOKIE), (2, V2_SPI)):
        return None
    if major == 2 and not flags & _V2_RESPONSE:
        return None
    if major == 1 and exchange == _MAIN_MODE and not any(responder):
        return None  # a main-mode answer carries the responder's cookie
    names = {_MAIN_MODE: "main mode", _INFORMATIONAL_V1: "informational", _SA_INIT: "IKE_SA_INIT",
             _INFORMATIONAL_V2: "INFORMATIONAL"}  # fmt: skip
    outcome = _first_notify(data, first, major)
    return Evidence(
        "ike",
        join_detail(f"IKEv{major}", names.get(exchange, f"exchange {exchange}"), outcome),
        "ike",
    )


def _first_notify(data: bytes, kind: int, major: int) -> str:
    """The first notification's type in the payload chain, "SA accepted", or ""."""
    notify, sa = (_V1_NOTIFY, _V1_SA) if major == 1 else (_V2_NOTIFY, _V2_SA)
    pos = _HEADER.size
    seen_sa = False
    for _ in range(_MAX_PAYLOADS):
        if kind == 0 or pos + 4 > len(data):
            break
        next_kind, _reserved, size = struct.unpack_from("!BBH", data, pos)
        if size < 4:
            break
        if kind == notify:
            # IKEv1: DOI (4), protocol, SPI size, type; IKEv2: protocol, SPI size, type.
            at = pos + (10 if major == 1 else 6)
            if at + 2 <= len(data):
                code = int.from_bytes(data[at : at + 2], "big")
                return "notify " + _NOTIFY_NAMES.get(code, str(code))
            break
        seen_sa = seen_sa or kind == sa
        kind, pos = next_kind, pos + size
    return "SA accepted" if seen_sa else ""
