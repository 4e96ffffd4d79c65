"""This machine's listening sockets and their processes (psutil), for ``port`` and ``local``.

Rules:
- Read-only: nothing is sent anywhere; the kernel's socket table is read through psutil.
- Without privileges, Linux hides which process owns another user's socket: such sockets
  are still listed, with no process, and ``hidden`` says so, so the caller can tell the
  user rather than imply that nothing is there.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import psutil


@dataclass(frozen=True, slots=True)
class Listener:
    """A TCP socket in LISTEN state or a bound UDP socket of this machine."""

    protocol: str
    address: str
    port: int
    pid: int | None
    process: str


def listeners(port: int | None = None) -> tuple[list[Listener], bool]:
    """Listening sockets (of ``port`` only, if given), sorted; and whether some owners were hidden.

    Raises :class:`PermissionError` if the socket table cannot be read at all.
    """
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied as exc:
        raise PermissionError("reading this machine's sockets needs more privileges") from exc
    found: dict[tuple[str, str, int, int | None], Listener] = {}
    hidden = False
    names: dict[int, str] = {}
    for conn in connections:
        tcp = conn.type == socket.SOCK_STREAM
        local = conn.laddr
        if not local or (tcp and conn.status != psutil.CONN_LISTEN) or (not tcp and conn.raddr):
            continue
        address, local_port = str(local[0]), int(local[1])
        if port is not None and local_port != port:
            continue
        pid = conn.pid
        if pid is None:
            hidden = True
        process = ""
        if pid is not None:
            if pid not in names:
                try:
                    names[pid] = psutil.Process(pid).name()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    names[pid] = ""
            process = names[pid]
        listener = Listener("tcp" if tcp else "udp", address, local_port, pid, process)
        found[listener.protocol, listener.address, listener.port, pid] = listener
    ordered = sorted(found.values(), key=lambda x: (x.protocol, x.port, x.address, x.pid or 0))
    return ordered, hidden
