"""MQTT (port 1883): CONNECT, then the broker's CONNACK; the broker's version where it tells.

Rules and theory:
- MQTT 3.1.1 (OASIS standard): every control packet starts with a fixed header, a type
  byte and a "remaining length" of 1 to 4 bytes (7 bits each, low first, the high bit
  says another follows). The client speaks first: CONNECT, protocol name ``MQTT``, level
  4, clean session, no credentials, client ID ``portprobe``.
- The broker's first packet must be CONNACK (``0x20``, remaining length 2): a flags byte
  (0 or 1, session present) and a return code 0-5 (0 accepted; 1 protocol level refused;
  2 client ID refused; 3 unavailable; 4 bad credentials; 5 not authorized). Any of them
  proves MQTT; a refusal ends there (the broker closes).
- In the same write the probe subscribes (QoS 0) to ``$SYS/broker/version``: Mosquitto
  publishes its name and version there as a retained message, so an accepted client gets
  ``mosquitto version 2.0.11`` right after the SUBACK. A PINGREQ goes last: its PINGRESP
  tells that the broker has answered everything before it, so the decoder stops waiting
  for a version that is not coming (a broker without that topic, or one that refuses the
  subscription). Nothing is published, and the connection is dropped after.
- Bounded: at most ``MAX_REPLY`` bytes; a packet longer than that is not an answer.
"""

from __future__ import annotations

import re

from scanner.protocols import Evidence, join_detail
from scanner.protocols.tcp import TcpProbe

__all__ = ["CLIENT_ID", "MAX_REPLY", "TCP_PROBES", "VERSION_TOPIC", "build_request", "decode"]

CLIENT_ID = b"portprobe"
VERSION_TOPIC = b"$SYS/broker/version"
MAX_REPLY = 2048
_CONNACK, _PUBLISH, _PINGRESP = 0x2, 0x3, 0xD  # packet types (the high 4 bits)
_RETURN_CODES = (
    "accepted", "refused: protocol level", "refused: client identifier", "refused: unavailable",
    "refused: bad user name or password", "refused: not authorized",
)  # fmt: skip
_BROKER = re.compile(rb"mosquitto version (\d{1,3}(?:\.\d{1,3}){1,3})")


def _string(raw: bytes) -> bytes:
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining(len(body)) + body


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def build_request() -> bytes:
    """CONNECT (3.1.1, clean session, keep-alive 10 s), SUBSCRIBE to the version, PINGREQ."""
    connect = _string(b"MQTT") + b"\x04\x02" + (10).to_bytes(2, "big") + _string(CLIENT_ID)
    subscribe = (1).to_bytes(2, "big") + _string(VERSION_TOPIC) + b"\x00"
    return _packet(0x10, connect) + _packet(0x82, subscribe) + b"\xc0\x00"


def request(_host: str, _port: int) -> bytes:
    """The ``mqtt`` probe's request: :func:`build_request`."""
    return build_request()


def _packets(data: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """The whole packets at the start of ``data``: [(first byte, body)], and whether the
    bytes so far are well formed."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        length, shift, at = 0, 0, pos + 1
        while True:
            if at >= len(data):
                return out, True  # the length is still coming
            byte = data[at]
            length |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if not byte & 0x80:
                break
            if shift >= 28:
                return out, False
        if length > MAX_REPLY:
            return out, False
        if at + length > len(data):
            return out, True
        out.append((data[pos], data[at : at + length]))
        pos = at + length
    return out, True


def decode(data: bytes) -> Evidence | None:
    """``Evidence("mqtt", ...)`` once the CONNACK (and the version, if it comes) is in."""
    packets, sound = _packets(data[:MAX_REPLY])
    if not packets:
        return None
    first, body = packets[0]
    if first != _CONNACK << 4 or len(body) != 2 or body[0] > 1 or body[1] >= len(_RETURN_CODES):
        return None
    status = _RETURN_CODES[body[1]]
    if body[1] != 0:
        return Evidence("mqtt", join_detail("MQTT 3.1.1", status), "mqtt", rule="mqtt:connack")
    for first, body in packets[1:]:
        if first >> 4 == _PUBLISH and (version := _mosquitto_version(first, body)):
            return Evidence(
                "mqtt", join_detail("MQTT 3.1.1", status, f"Mosquitto {version}"), "mqtt",
                product="Mosquitto", version=version, rule="mqtt:$SYS/broker/version",
            )  # fmt: skip
        if first >> 4 == _PINGRESP:
            break
    else:
        if sound and len(data) < MAX_REPLY:
            return None  # the version, or the PINGRESP, is still coming
    return Evidence("mqtt", join_detail("MQTT 3.1.1", status), "mqtt", rule="mqtt:connack")


def _mosquitto_version(first: int, body: bytes) -> str:
    """Mosquitto's version from a PUBLISH on the version topic, else ""."""
    size = int.from_bytes(body[:2], "big")
    if len(body) < 2 or body[2 : 2 + size] != VERSION_TOPIC:
        return ""
    payload = body[2 + size + (2 if first & 0x06 else 0) :]  # QoS > 0: a packet ID
    m = _BROKER.match(payload[:100])
    return m.group(1).decode() if m else ""


TCP_PROBES = (TcpProbe(name="mqtt", request=request, decode=decode, rank=50, max_reply=MAX_REPLY),)
