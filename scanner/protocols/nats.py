"""NATS (port 4222): the ``INFO {json}`` line a NATS server sends first.

Rules and theory:
- A NATS server greets every client with ``INFO <json>\\r\\n`` before the client says
  anything (NATS client protocol, "INFO"). The JSON names the server (``server_id``,
  ``server_name``), its ``version``, the Go release it was built with (``go``), the
  protocol level (``proto``), and whether auth or TLS is required.
- The line counts once complete (CRLF) and when it is a JSON object with a string
  ``server_id`` or ``version``: anything else that starts with "INFO" is not NATS.
  The line is bounded (``MAX_LINE``); values are cleaned.
"""

from __future__ import annotations

import json

from scanner.protocols import Evidence, clean, join_detail
from scanner.protocols.tcp import TcpProbe, passive

__all__ = ["MAX_LINE", "TCP_PROBES", "parse_reply"]

MAX_LINE = 8192


def parse_reply(data: bytes) -> Evidence | None:
    """``Evidence("nats", ..., "nats", product="nats-server", version=...)``, else None."""
    if not data.startswith(b"INFO ") and not data.startswith(b"INFO\t"):
        return None
    end = data.find(b"\r\n", 0, MAX_LINE)
    if end < 0:
        return None
    try:
        info = json.loads(data[5:end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(info, dict):
        return None
    version, server_id = info.get("version"), info.get("server_id")
    if not isinstance(version, str) and not isinstance(server_id, str):
        return None
    version = clean(version, 40) if isinstance(version, str) else ""
    go, name = info.get("go"), info.get("server_name")
    needs = [w for w, k in (("auth", "auth_required"), ("tls", "tls_required")) if info.get(k)]
    return Evidence(
        "nats",
        join_detail(
            f"nats-server {version}".strip(),
            clean(go, 30) if isinstance(go, str) else "",
            f"name {clean(name, 60)}" if isinstance(name, str) and name else "",
            f"{' and '.join(needs)} required" if needs else "",
        ),
        "nats",
        product="nats-server",
        version=version,
        rule="nats:info",
    )


TCP_PROBES = (TcpProbe(name="nats", request=passive, decode=parse_reply, rank=20,
                       max_reply=MAX_LINE),)  # fmt: skip
