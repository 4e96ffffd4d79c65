"""Regenerate scanner/data/top-ports-{tcp,udp}.txt from an nmap-services file.

Usage: python bench/make_top_ports.py [/usr/share/nmap/nmap-services]

Only the order of port numbers by nmap's measured open-frequency is written (ties broken
by port number); names and frequencies are not copied. The result for TCP equals the port
set of ``nmap --top-ports 1000`` (checked by tests/test_ports.py against the shipped file).
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = """\
# portprobe top {upper} ports, most frequently open first, one port per line.
# Source: the open-frequency column of nmap-services from Nmap 7.93 (Debian nmap-common
# 7.93+dfsg1-1), which Nmap measures from large Internet scans. Only the resulting
# order of port numbers is kept here (ties broken by port number); frequencies and
# names are not copied. Regenerate with bench/make_top_ports.py.
"""


def main(source: str = "/usr/share/nmap/nmap-services") -> None:
    rows: dict[str, list[tuple[float, int]]] = {"tcp": [], "udp": []}
    for line in Path(source).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        port, proto = fields[1].split("/")
        frequency = float(fields[2])
        if proto in rows and frequency > 0:
            rows[proto].append((-frequency, int(port)))
    out_dir = Path(__file__).resolve().parent.parent / "scanner" / "data"
    for proto, entries in rows.items():
        ports = [port for _, port in sorted(entries)]
        text = HEADER.format(upper=proto.upper()) + "".join(f"{p}\n" for p in ports)
        (out_dir / f"top-ports-{proto}.txt").write_text(text)
        print(f"{proto}: {len(ports)} ports")


if __name__ == "__main__":
    main(*sys.argv[1:])
