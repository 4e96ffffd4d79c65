"""HTTP/1.1: a ``GET /`` probe and its response, through h11.

Rules and theory:
- h11 does all HTTP framing: :func:`build_request` has an h11 client connection write a
  ``GET /`` with a Host header (RFC 9112 3.2 makes it mandatory) and ``Connection:
  close``, so a polite server closes after its answer. :class:`ResponseParser` is an h11
  client connection that has sent that same request and is then fed the server's bytes:
  status line, headers, and a body framed by Content-Length, chunked coding or EOF.
- Any response h11 accepts proves HTTP, whatever its status (a 400 or a 404 is still
  HTTP). Bytes h11 rejects before a complete status line and headers are not HTTP.
  Interim (1xx) responses are skipped.
- Bounded: h11 buffers at most ``MAX_HEAD`` bytes of status line and headers, the body is
  kept up to ``max_body`` bytes (enough for a ``<title>``), and the caller decides how
  much to read at all. A response cut short (a timeout, a byte limit, a broken chunk)
  still counts once its head arrived: we observe, we do not need the whole page. A head
  cut short (a Set-Cookie of 10 KB, past the 8 KiB a probe reads) counts too, once its
  status line is whole: that line alone proves HTTP; the Server header is taken if it came.
- The detail is ``<Server>; <status>; title '<title>'`` (plus ``location <url>`` for a
  redirect), each part taken from untrusted bytes and cleaned.
"""

from __future__ import annotations

import html
import ipaddress
import re

import h11

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.software import split_software

__all__ = [
    "MAX_HEAD",
    "USER_AGENT",
    "ResponseParser",
    "authority",
    "build_request",
    "parse_response",
]

USER_AGENT = "portprobe"
MAX_HEAD = 16 * 1024  # h11's own default bound on an incomplete status line + headers
MAX_BODY = 4096  # body bytes kept for the title
_PART = 80  # characters of one header value or title in the detail
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
# A whole status line (RFC 9112 4), and a Server header line, of a head cut short.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?\r?\n")
_SERVER_LINE = re.compile(rb"\r?\nserver:[ \t]*([^\r\n]*)\r?\n", re.IGNORECASE)


def authority(address: str, port: int, *, default_port: int = 80) -> str:
    """The Host header for ``address``: IPv6 in brackets, ``:port`` unless the default."""
    host = address
    try:
        if ipaddress.ip_address(address.split("%", 1)[0]).version == 6:
            host = f"[{address}]"
    except ValueError:
        pass  # a name: used as it is
    return host if port == default_port else f"{host}:{port}"


def _request(host: str, target: str) -> h11.Request:
    return h11.Request(
        method="GET",
        target=target,
        headers=[
            ("Host", host),
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ],
    )


def build_request(host: str, target: str = "/") -> bytes:
    """The bytes of ``GET target`` for Host ``host`` (raises ValueError on an invalid one)."""
    conn = h11.Connection(h11.CLIENT)
    try:
        data = conn.send(_request(host, target))
        end = conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        raise ValueError(f"cannot build an HTTP request for Host {host!r}: {exc}") from exc
    assert data is not None and end is not None  # only None for ConnectionClosed
    return data + end


class ResponseParser:
    """An incremental, bounded HTTP response reader (sans-I/O).

    Feed it what the server sent with :meth:`feed`, call :meth:`close` at EOF; ``done``
    says when reading more is pointless, :meth:`detail` / :meth:`evidence` what was seen.
    """

    def __init__(self, *, max_body: int = MAX_BODY) -> None:
        """A parser for the response to the request :func:`build_request` makes."""
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        # h11 only reads a response once its request went out; the bytes are discarded.
        self._conn.send(_request("portprobe.invalid", "/"))
        self._conn.send(h11.EndOfMessage())
        self._max_body = max_body
        self._body = bytearray()
        self._head = bytearray()  # the first bytes, until h11 has seen a whole head
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []  # as h11 gives them: names lower-case
        self.server = ""
        self.location = ""
        self.done = False

    def feed(self, data: bytes) -> None:
        """Take more bytes from the server (ignored once ``done``)."""
        if self.done or not data:
            return
        if self.status is None and len(self._head) < MAX_HEAD:
            self._head += data[: MAX_HEAD - len(self._head)]
        self._conn.receive_data(data)
        self._drain()

    def close(self) -> None:
        """The server closed the connection: no more bytes will come."""
        if not self.done:
            self._conn.receive_data(b"")
            self._drain()
        self.done = True

    def _head_seen(self) -> tuple[int | None, str]:
        """The status and Server header: h11's, or, when no whole head came, those of the
        bytes so far (a whole status line alone proves HTTP)."""
        if self.status is not None:
            return self.status, self.server
        status = _STATUS_LINE.match(self._head)
        if status is None:
            return None, ""
        head = self._head.split(b"\r\n\r\n", 1)[0]
        server = _SERVER_LINE.search(head, status.end() - 2)
        return int(status[1]), clean(server[1], _PART) if server is not None else ""

    def _drain(self) -> None:
        while not self.done:
            try:
                event = self._conn.next_event()
            except h11.ProtocolError:
                self.done = True  # not HTTP (no status yet) or a broken body (keep the head)
                return
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
                self.headers = list(event.headers)  # bounded by MAX_HEAD
                for name, value in event.headers:
                    if name == b"server" and not self.server:
                        self.server = clean(value, _PART)
                    elif name == b"location" and not self.location:
                        self.location = clean(value, _PART)
            elif isinstance(event, h11.Data):
                room = self._max_body - len(self._body)
                self._body += event.data[:room]
                if room <= len(event.data):
                    self.done = True  # enough of the page for a title
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) or event is h11.PAUSED:
                self.done = True
            # InformationalResponse (1xx): wait for the final response.

    @property
    def body(self) -> bytes:
        """The first bytes of the body (at most ``max_body``), for ``http_products``."""
        return bytes(self._body)

    @property
    def title(self) -> str:
        """The page's ``<title>``, cleaned ("" when there is none in the body kept)."""
        m = _TITLE.search(self._body)
        if m is None:
            return ""
        text = html.unescape(m.group(1)[: _PART * 8].decode("utf-8", "replace"))
        return clean(text, _PART)

    def detail(self) -> str | None:
        """``<Server>; <status>; title '<title>'``, or None when no response was seen."""
        status, server = self._head_seen()
        if status is None:
            return None
        title = self.title
        return join_detail(
            server,
            str(status),
            f"title '{title}'" if title else "",
            f"location {self.location}" if self.location and 300 <= status < 400 else "",
        )

    def software(self) -> tuple[str, str, str]:
        """(product, version, rule) of the reply: an API ``http_products`` knows by its
        headers or body (Elasticsearch 8.11.1), else the Server field (nginx 1.22.1)."""
        if self.status is None:
            return "", "", ""
        from scanner.protocols import http_products  # json, only for HTTP replies

        found = http_products.identify(self.status, self.headers, self.body)
        if found is not None:
            return found.product, found.version, found.rule
        product, version = split_software(self.server)
        return product, version, "http:server" if product else "http:status-line"

    def evidence(self) -> Evidence | None:
        """``Evidence("http", detail, "http")`` with the software, or None when no response
        was seen."""
        detail = self.detail()
        if detail is None:
            return None
        product, version, rule = self.software()
        if product and product not in detail:  # an API known by its headers or body
            detail = join_detail(f"{product} {version}".strip(), detail)
        return Evidence("http", detail, "http", product=product, version=version, rule=rule)


def parse_response(data: bytes) -> Evidence | None:
    """What a complete (or truncated) response to :func:`build_request` shows, if HTTP."""
    parser = ResponseParser()
    parser.feed(data)
    parser.close()
    return parser.evidence()
