"""nmap's grepable output (``-oG``): one line per host, for grep, awk and cut.

Rules:
- The layout is nmap's: a ``#`` comment line with the command, then per host a
  ``Host: ADDR (NAME)\\tStatus: Up`` line and a ``Host: ADDR (NAME)\\tPorts: ...`` line whose
  ports are ``PORT/STATE/PROTOCOL/OWNER/SERVICE/RPC/VERSION/``, comma-separated, then
  ``\\tIgnored State: STATE (COUNT)``; last, a ``#`` line saying
  how the scan ended.
- Folding is nmap's (see :mod:`scanner.report.xml`): a state of more than 25 ports on a
  host is folded, its ports left out; when exactly one state is folded, nmap names it
  and counts it (``Ignored State``), and so does portprobe (checked against nmap 7.93).
- SERVICE is the IANA label, VERSION what the port was seen to speak (as nmap's ``-sV``
  puts the product there). Every field is cleaned of control characters, and of the
  separators (``/``, ``,``, tab) that would break a line tool's split (shown as ``|``).
- Hosts are written when complete (whole scans) or at the end, in address order, as the
  XML writer does.
"""

from __future__ import annotations

import re
from typing import TextIO

from scanner.models import Result
from scanner.report.table import printable
from scanner.report.writers import Ending, ScanMeta
from scanner.report.xml import HostGrouper, HostPorts, HostWriter, nmap_time

__all__ = ["GrepableWriter", "grepable_field"]

_SEPARATORS = re.compile(r"[/,\t]")


def grepable_field(text: str) -> str:
    """``text`` fit for a grepable field: no control character, no separator."""
    return _SEPARATORS.sub("|", printable(text))


def _port(result: Result) -> str:
    a = result.assessment
    label = a.label if a is not None else ""
    seen = ""
    if a is not None and a.evidence:
        seen = f"{a.evidence} {a.evidence_detail}".strip()
    return (
        f"{result.port}/{result.state.value}/{result.protocol.value}//"
        f"{grepable_field(label)}//{grepable_field(seen)}/"
    )


class GrepableWriter(HostWriter):
    """nmap's ``-oG`` format (see the module rules)."""

    def __init__(self, stream: TextIO, meta: ScanMeta) -> None:
        self._stream = stream
        self._meta = meta
        self._hosts = HostGrouper(meta)
        self._written = 0
        command = printable(" ".join(meta.command))
        stream.write(
            f"# portprobe {printable(meta.version)} scan initiated {nmap_time(meta.started)}"
            f" as: {command}\n"
        )

    def _completed(self, address: str, host: HostPorts) -> None:
        self._stream.write(self._host(address, host))

    def _host(self, address: str, host: HostPorts) -> str:
        self._written += 1
        name = grepable_field(host.hostname or "")
        head = f"Host: {address} ({name})"
        folded = host.folded()
        parts = [_port(r) for r in host.listed()]
        line = f"{head}\tPorts: {', '.join(parts)}"
        if len(folded) == 1:  # nmap names the folded state only when there is one
            state, reasons = folded[0]
            line += f"\tIgnored State: {state} ({sum(len(n) for _, _, n in reasons)})"
        return f"{head}\tStatus: Up\n{line}\n"

    def close(self, ending: Ending) -> None:
        for address, ports in self._hosts.rest():
            self._stream.write(self._host(address, ports))
        up = self._written
        elapsed = max(0.0, ending.finished - self._meta.started)
        outcome = "done" if ending.complete else "stopped early (partial results)"
        self._stream.write(
            f"# portprobe {outcome} at {nmap_time(ending.finished)} -- {up} IP address"
            f"{'es' if up != 1 else ''} ({up} host{'s' if up != 1 else ''} up) scanned in"
            f" {elapsed:.2f} seconds\n"
        )
