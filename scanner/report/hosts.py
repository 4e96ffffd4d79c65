"""The report of a host discovery (``-sn``): which hosts are up, in every output format.

Rules:
- Hosts come in address order. The terminal, XML and grepable outputs list the hosts up,
  as nmap's ``-sn`` does (the hosts down too at ``-v``, as nmap's); CSV, JSON and JSON
  Lines list every host with ``status`` ``up`` or ``down``, its reason and RTT
  (``HOST_COLUMNS``).
- XML is nmap's: a ``<host>`` with ``<status state="up" reason=...>`` and its address, no
  ``<ports>``; ``<runstats>`` counts the hosts up and down. Grepable is nmap's
  ``Host: ADDR ()\\tStatus: Up``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from typing import TextIO
from xml.sax.saxutils import quoteattr

from scanner.discovery import HostStatus
from scanner.errors import OutputError
from scanner.report.table import address_key, printable
from scanner.report.writers import ScanMeta, isotime
from scanner.report.xml import nmap_time

__all__ = ["HOST_COLUMNS", "write_hosts"]

HOST_COLUMNS = ("host", "status", "reason", "rtt_ms")
"""The columns of a discovery report (CSV header, JSON keys), in order."""


def _record(status: HostStatus) -> dict[str, object]:
    return {
        "host": status.host,
        "status": "up" if status.up else "down",
        "reason": status.reason,
        "rtt_ms": None if status.rtt is None else round(status.rtt * 1000, 3),
    }


def _done_line(statuses: Sequence[HostStatus], elapsed: float) -> str:
    total, up = len(statuses), sum(s.up for s in statuses)
    return (
        f"{total} IP address{'es' if total != 1 else ''} ({up} host{'s' if up != 1 else ''}"
        f" up) scanned in {elapsed:.2f} seconds"
    )


def write_hosts(
    statuses: Sequence[HostStatus],
    fmt: str,
    stream: TextIO,
    meta: ScanMeta,
    *,
    finished: float,
    complete: bool = True,
    verbose: int = 0,
    reason: bool = False,
) -> None:
    """Write a discovery's ``statuses`` to ``stream`` as ``fmt`` (see the module rules)."""
    ordered = sorted(statuses, key=lambda s: address_key(s.host))
    elapsed = max(0.0, finished - meta.started)
    shown = [s for s in ordered if s.up or verbose]
    if fmt == "table":
        for s in shown:
            if not s.up:
                stream.write(f"portprobe report for {s.host} [host down, {s.reason}]\n")
                continue
            latency = "" if s.rtt is None else f" ({s.rtt:.5f}s latency)"
            why = f", received {s.reason}" if reason or verbose else ""
            stream.write(f"portprobe report for {s.host}\nHost is up{why}{latency}.\n")
    elif fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(HOST_COLUMNS)
        for s in ordered:
            writer.writerow(["" if v is None else v for v in _record(s).values()])
    elif fmt == "json":
        document = {
            "scan": meta.as_dict(),
            "hosts": [_record(s) for s in ordered],
            "end": {"finished": isotime(finished), "complete": complete},
        }
        stream.write(json.dumps(document, indent=1) + "\n")
    elif fmt == "jsonl":
        stream.write(json.dumps({"type": "scan", **meta.as_dict()}) + "\n")
        for s in ordered:
            stream.write(json.dumps({"type": "host", **_record(s)}) + "\n")
        stream.write(
            json.dumps({"type": "end", "finished": isotime(finished), "complete": complete}) + "\n"
        )
    elif fmt == "xml":
        _write_xml(ordered, shown, stream, meta, finished, complete)
    elif fmt == "grepable":
        command = printable(" ".join(meta.command))
        stream.write(
            f"# portprobe {printable(meta.version)} scan initiated {nmap_time(meta.started)}"
            f" as: {command}\n"
        )
        for s in shown:
            stream.write(f"Host: {s.host} ()\tStatus: {'Up' if s.up else 'Down'}\n")
        stream.write(
            f"# portprobe done at {nmap_time(finished)} -- {_done_line(ordered, elapsed)}\n"
        )
    else:
        raise OutputError(f"unknown output format {fmt!r}")


def _write_xml(
    ordered: Sequence[HostStatus],
    shown: Sequence[HostStatus],
    stream: TextIO,
    meta: ScanMeta,
    finished: float,
    complete: bool,
) -> None:
    command = " ".join(meta.command)
    up = sum(s.up for s in ordered)
    elapsed = max(0.0, finished - meta.started)
    stream.write(
        '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
        f'<nmaprun scanner="portprobe" args={quoteattr(printable(command))}'
        f' start="{int(meta.started)}" startstr="{nmap_time(meta.started)}"'
        f' version={quoteattr(printable(meta.version))} xmloutputversion="1.05">\n'
        '<verbose level="0"/>\n<debugging level="0"/>\n'
    )
    for s in shown:
        kind = "ipv6" if ":" in s.host else "ipv4"
        times = "" if s.rtt is None else f'<times srtt="{int(s.rtt * 1e6)}" rttvar="0" to="0"/>\n'
        stream.write(
            f'<host><status state="{"up" if s.up else "down"}" reason={quoteattr(s.reason)}'
            f' reason_ttl="0"/>\n<address addr="{s.host}" addrtype="{kind}"/>\n'
            f"<hostnames>\n</hostnames>\n{times}</host>\n"
        )
    exit_attrs = (
        'exit="success"'
        if complete
        else 'exit="error" errormsg="interrupted or failed: partial results"'
    )
    summary = f"portprobe done at {nmap_time(finished)}; {_done_line(ordered, elapsed)}"
    stream.write(
        f'<runstats><finished time="{int(finished)}" timestr="{nmap_time(finished)}"'
        f' summary={quoteattr(summary)} elapsed="{elapsed:.2f}" {exit_attrs}/>'
        f'<hosts up="{up}" down="{len(ordered) - up}" total="{len(ordered)}"/>\n'
        "</runstats>\n</nmaprun>\n"
    )
