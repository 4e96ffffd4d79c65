"""HTTP/2 with prior knowledge (h2c), and gRPC over it: the server's first frames.

Rules and theory:
- A client that knows a port speaks HTTP/2 in clear sends the connection preface (RFC
  9113 3.4: ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``), then a SETTINGS frame. The
  server's own preface is a SETTINGS frame (type 4, stream 0, no ACK flag), and it must
  be the first frame it sends: that frame alone proves HTTP/2 (:func:`parse_server_frames`,
  also what a TLS connection that negotiated ``h2`` by ALPN gets). An HTTP/1.1 server
  answers the preface with a 400/505 page instead, which is not h2.
- Frames are a 9-byte header (24-bit length, type, flags, 31-bit stream id) and a
  payload; only complete frames are read, at most ``MAX_FRAMES`` of them, and a frame
  longer than 16,384 bytes (the default SETTINGS_MAX_FRAME_SIZE, which we never raise)
  is not HTTP/2.
- gRPC (its "PROTOCOL-HTTP2" document) is HTTP/2 with ``content-type:
  application/grpc``. The ``grpc`` probe sends, after the preface, a POST for the
  standard health check (``/grpc.health.v1.Health/Check``) with an empty message
  (5 bytes: not compressed, length 0). A gRPC server answers with a HEADERS frame whose
  content-type is ``application/grpc`` (and ``grpc-status``: 0, or 12 UNIMPLEMENTED when
  it has no health service); any other HTTP/2 server answers with its own status (404,
  200...), reported as "http2" with that status and its ``server`` field.
- Header blocks are HPACK (RFC 7541), decoded by the ``hpack`` library with a bounded
  header list; a block split over CONTINUATION frames is joined first. A block that does
  not decode is not taken as proof of gRPC.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import hpack

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.software import split_software
from scanner.protocols.tcp import TcpProbe

__all__ = [
    "GRPC_PATH",
    "PREFACE",
    "TCP_PROBES",
    "Frame",
    "build_grpc_request",
    "build_request",
    "parse_frames",
    "parse_grpc_reply",
    "parse_server_frames",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GRPC_PATH = b"/grpc.health.v1.Health/Check"
MAX_FRAMES = 32
MAX_FRAME = 16_384
MAX_HEADER_LIST = 16_384
MAX_REPLY = 32_768
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _GOAWAY, _CONTINUATION = 0, 1, 3, 4, 7, 9
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_SETTING_NAMES = {
    1: "header_table_size",
    2: "enable_push",
    3: "max_concurrent_streams",
    4: "initial_window_size",
    5: "max_frame_size",
    6: "max_header_list_size",
    8: "enable_connect_protocol",
}
_ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 7: "REFUSED_STREAM",
           8: "CANCEL", 11: "ENHANCE_YOUR_CALM", 13: "HTTP_1_1_REQUIRED"}  # fmt: skip
_GRPC_STATUS = {"0": "OK", "5": "NOT_FOUND", "7": "PERMISSION_DENIED", "12": "UNIMPLEMENTED",
                "14": "UNAVAILABLE", "16": "UNAUTHENTICATED"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Frame:
    """One HTTP/2 frame: ``kind`` (its type), ``flags``, ``stream`` and ``payload``."""

    kind: int
    flags: int
    stream: int
    payload: bytes


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


def build_request(_host: str = "", _port: int = 0) -> bytes:
    """The client preface and an empty SETTINGS frame."""
    return PREFACE + _frame(_SETTINGS, 0, 0, b"")


def build_grpc_request(host: str, port: int) -> bytes:
    """The preface, SETTINGS, and a gRPC health check on stream 1 (HEADERS, then DATA)."""
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    block = hpack.Encoder().encode(
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", GRPC_PATH),
            (b":authority", authority.encode("ascii", "replace")),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"user-agent", b"portprobe"),
        ],
        huffman=False,
    )
    return (
        build_request()
        + _frame(_HEADERS, _END_HEADERS, 1, block)
        + _frame(_DATA, _END_STREAM, 1, b"\x00\x00\x00\x00\x00")
    )


def parse_frames(data: bytes) -> list[Frame] | None:
    """The complete frames at the start of ``data`` (at most MAX_FRAMES); None if not h2."""
    frames: list[Frame] = []
    pos = 0
    while len(frames) < MAX_FRAMES and pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        kind, flags, stream = (
            data[pos + 3],
            data[pos + 4],
            int.from_bytes(data[pos + 5 : pos + 9], "big") & 0x7FFFFFFF,
        )
        if length > MAX_FRAME:
            return None
        if pos + 9 + length > len(data):
            break
        frames.append(Frame(kind, flags, stream, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return frames


def _is_server_preface(frames: list[Frame] | None) -> bool:
    if not frames:
        return False
    first = frames[0]
    return (
        first.kind == _SETTINGS
        and first.stream == 0
        and not first.flags & _ACK
        and len(first.payload) % 6 == 0
    )


def _settings(frame: Frame) -> str:
    parts = []
    for pos in range(0, min(len(frame.payload), 60), 6):
        ident, value = struct.unpack_from(">HI", frame.payload, pos)
        parts.append(f"{_SETTING_NAMES.get(ident, f'setting_{ident}')}={value}")
    return " ".join(parts)


def parse_server_frames(data: bytes) -> Evidence | None:
    """``Evidence("http2", "HTTP/2; settings ...", "http2")`` when ``data`` opens with the server's
    SETTINGS frame (its connection preface), else None. For h2c and for ALPN ``h2`` alike.
    """
    frames = parse_frames(data[:MAX_REPLY])
    if not _is_server_preface(frames):
        return None
    assert frames is not None
    settings = _settings(frames[0])
    return Evidence("http2", join_detail("HTTP/2", f"settings {settings}" if settings else ""),
                    "http2", rule="h2:server-settings")  # fmt: skip


def _header_block(frames: list[Frame], start: int) -> bytes | None:
    """The header block of the HEADERS frame ``frames[start]`` and its CONTINUATIONs."""
    first = frames[start]
    payload = first.payload
    if first.flags & _PADDED:
        if not payload:
            return None
        pad = payload[0]
        payload = payload[1 : len(payload) - pad] if pad < len(payload) else b""
    if first.flags & _PRIORITY:
        payload = payload[5:]
    block, flags = bytearray(payload), first.flags
    for frame in frames[start + 1 :]:
        if flags & _END_HEADERS:
            break
        if frame.kind != _CONTINUATION or frame.stream != first.stream:
            return None
        block += frame.payload
        flags = frame.flags
    return bytes(block) if flags & _END_HEADERS else None


def _decode_block(decoder: hpack.Decoder, block: bytes) -> dict[str, str] | None:
    try:
        headers = decoder.decode(block, raw=True)
    except (hpack.HPACKError, ValueError, IndexError, OverflowError, UnicodeDecodeError):
        return None
    out: dict[str, str] = {}
    for name, value in headers:
        key = clean(bytes(name), 40).lower()
        out.setdefault(key, clean(bytes(value), 120))
    return out


def parse_grpc_reply(data: bytes) -> Evidence | None:
    """What the server answered the gRPC probe: "grpc" for a gRPC response, "http2" for
    another HTTP/2 response or a refusal of the stream; None until one of them has come.
    """
    frames = parse_frames(data[:MAX_REPLY])
    if frames is None or not _is_server_preface(frames):
        return None
    decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST)
    for index, frame in enumerate(frames):
        if frame.kind == _HEADERS:
            block = _header_block(frames, index)
            if block is None:
                return None  # CONTINUATIONs still to come (or broken)
            headers = _decode_block(decoder, block)
            if headers is None:
                return None
            if frame.stream == 1:
                return _response(headers)
        elif frame.kind == _RST_STREAM and frame.stream == 1 and len(frame.payload) == 4:
            code = int.from_bytes(frame.payload, "big")
            return Evidence("http2", f"HTTP/2; stream refused {_ERRORS.get(code, code)}", "grpc",
                            rule="h2:rst-stream")  # fmt: skip
        elif frame.kind == _GOAWAY and frame.stream == 0 and len(frame.payload) >= 8:
            code = int.from_bytes(frame.payload[4:8], "big")
            return Evidence("http2", f"HTTP/2; goaway {_ERRORS.get(code, code)}", "grpc",
                            rule="h2:goaway")  # fmt: skip
    return None


def _response(headers: dict[str, str]) -> Evidence:
    server = headers.get("server", "")
    product, version = split_software(server) if server else ("", "")
    status = headers.get(":status", "")
    if headers.get("content-type", "").startswith("application/grpc"):
        code = headers.get("grpc-status", "")
        grpc_status = f"grpc-status {code} {_GRPC_STATUS.get(code, '')}".strip() if code else ""
        return Evidence(
            "grpc",
            join_detail(server, grpc_status, clean(headers.get("grpc-message", ""), 80)),
            "grpc",
            product=product,
            version=version,
            rule="h2:grpc-content-type",
        )
    return Evidence("http2", join_detail("HTTP/2", server, status), "grpc", product=product,
                    version=version, rule="h2:response")  # fmt: skip


TCP_PROBES = (
    TcpProbe(name="http2", request=build_request, decode=parse_server_frames, rank=40),
    TcpProbe(name="grpc", request=build_grpc_request, decode=parse_grpc_reply, rank=45,
             max_reply=MAX_REPLY),
)  # fmt: skip
