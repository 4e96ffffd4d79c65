"""Which real daemons stay silent to other protocols' probes: the data behind probe ranks.

Starts the daemons of ``tests/daemonlab_b.py`` in a lab, sends every active probe of
``scanner.protocols.tcp`` to every daemon, each on its own connection, and prints per
daemon the probes it neither answered nor closed on within ``--wait`` seconds.

Rules and theory:

- A probe that meets silence holds one of the prober's ``PROBES_AT_ONCE`` slots for its
  whole ``probe_wait``. A daemon silent to nearly every foreign probe (SMB, RDP, SIP and
  IRC daemons wait for a whole message of their own) is only named in time if its own
  probe ranks early; a daemon that closes or answers at once costs nothing.
- Traffic stays in the lab's namespaces. Run from the repository root, as root:
  ``python3 bench/probe_silence.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import daemonlab_b
import netlab

from scanner.protocols import tcp
from scanner.protocols.tcp import TcpProbe


async def _one(host: str, port: int, probe: TcpProbe, wait: float) -> str:
    """What ``probe``'s request drew within ``wait``: reply, closed, reset or silent."""
    try:
        async with asyncio.timeout(wait):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                request = probe.request(host, port)
                if request:
                    writer.write(request)
                return "reply" if await reader.read(4096) else "closed"
            finally:
                writer.transport.abort()
    except TimeoutError:
        return "silent"
    except OSError:
        return "reset"


async def _all(host: str, ports: dict[str, int], wait: float) -> dict[str, dict[str, str]]:
    probes = tcp.active_probes()
    out = {}
    for name, port in ports.items():
        found = await asyncio.gather(*(_one(host, port, p, wait) for p in probes))
        out[name] = {p.name: f for p, f in zip(probes, found, strict=True)}
    return out


def main() -> None:
    """Print, per daemon, the probes it stayed silent to."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=1.5, help="seconds a probe waits")
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        with netlab.Lab() as lab:
            daemonlab_b.start(lab)
            ports = {d.name: d.port for d in daemonlab_b.DAEMONS}
            seen = lab.call_in_client(asyncio.run, _all(lab.server4, ports, args.wait))
    finally:
        daemonlab_b.cleanup()
    total = len(tcp.active_probes())
    for name, found in seen.items():
        silent = [p for p, what in found.items() if what == "silent"]
        print(f"{name:12} silent to {len(silent):2}/{total}: {' '.join(silent)}")
    print(f"({time.perf_counter() - start:.1f} s, --wait {args.wait})")


if __name__ == "__main__":
    main()
