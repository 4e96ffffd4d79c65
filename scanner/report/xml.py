"""nmap-style XML: the document nmap writes with ``-oX``, read by ndiff, libnmap and friends.

Rules:
- The layout is nmap's (``nmaprun`` / ``scaninfo`` / ``host`` / ``status`` / ``address`` /
  ``hostnames`` / ``ports`` / ``extraports`` / ``port`` / ``state`` / ``service`` /
  ``runstats`` / ``finished``), with nmap's state and reason names, so tools
  built for nmap read it. portprobe scans without host discovery, as ``nmap -Pn`` does, so
  every host is ``up`` with reason ``user-set``.
- Our own fields go where nmap's readers ignore them safely, all in ``<service>``: the
  IANA label is its ``name`` (left out when there is none, as nmap does; ``method="table"``
  as nmap names a port without ``-sV``); what an open port was seen to speak is its
  ``product`` and ``extrainfo`` (``method="probed"``), as ``-sV`` reports a service; the
  rest of the assessment (attestation, verdict, warning, policy, ...) are ``portprobe_*``
  attributes. The result's RTT, tries and time are ``portprobe_*`` attributes of
  ``<state>``, the scan's seed, shard and registry date of ``<nmaprun>``.
- No ``<script>`` elements: nmap 7.93's ndiff crashes (TypeError) on a port whose only
  difference is its script output, so a changed verdict would break every ndiff run.
- nmap groups ports by host, and results arrive in a random host order, so a host's rows
  are kept (only the reported ones, as the terminal table keeps them) until the host is
  complete: every result passes the writer (``write``, or ``omit`` for a closed port left
  out), and in a whole scan (shard ``1/1``) every host gets one result per port, so the
  ``<host>`` element is written as soon as its count is reached. Hosts still incomplete
  (a shard, a merge, an interrupted scan) are written when the scan ends, however it ends.
  The file is renamed into place atomically (:mod:`scanner.report.files`); an interrupted
  or failed scan ends with ``<finished ... exit="error" errormsg=...>``, as nmap's does.
- Every string from the network or the user is cleaned of characters XML 1.0 cannot hold
  and of the control and invisible characters of :data:`scanner.text.CONTROL` (shown as
  ``\\xNN``) and quoted, so no banner can break or inject into the document. The command
  line in the opening comment has no ``--`` left in it (XML forbids it in a comment:
  ``-oX week---47.xml`` made a file no reader took).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from typing import TextIO
from xml.sax.saxutils import quoteattr

from scanner.errors import PortSpecError
from scanner.models import Proto, Result
from scanner.ports import format_ports, parse_port_spec
from scanner.report.summary import Summary
from scanner.report.table import address_key
from scanner.report.writers import Ending, ScanMeta, isotime
from scanner.text import escape_char, escape_controls

__all__ = ["XmlWriter", "xml_text"]

XML_OUTPUT_VERSION = "1.05"  # nmap 7.9x's xmloutputversion

# Characters XML 1.0 cannot contain, even escaped (and lone surrogates).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Assessment fields that nmap's <service> has no attribute for: prefixed ``portprobe_``.
_EXTRA_KEYS = (
    "label_description",
    "range",
    "attestation",
    "verdict",
    "warning",
    "policy",
)


def xml_text(text: str) -> str:
    """``text`` with every control or invisible character, and every one XML 1.0 cannot
    hold, shown as ``\\xNN`` (or ``\\uNNNN``)."""
    return _NOT_XML.sub(lambda match: escape_char(match.group()), escape_controls(text))


def _comment(text: str) -> str:
    """``text`` fit to go inside ``<!-- -->``: escaped, no ``--``, not ending in ``-``."""
    return re.sub("-(?=-|$)", "- ", xml_text(text))


def _attr(value: object) -> str:
    return quoteattr(xml_text(str(value)))


def _timestr(timestamp: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(timestamp))


def _addrtype(host: str) -> str:
    return "ipv6" if ":" in host else "ipv4"


def _service(result: Result) -> str:
    """nmap's ``<service>``: the label as its name, the evidence as product and extrainfo."""
    a = result.assessment
    if a is None:
        return ""
    # nmap leaves the name out for a port its table does not name: so do we.
    attrs = [f"name={_attr(a.label)}"] if a.label else []
    if a.evidence:
        # What the port was seen to speak is what nmap -sV reports as the product.
        attrs.append(f"product={_attr(a.evidence)}")
        if a.evidence_detail:
            attrs.append(f"extrainfo={_attr(a.evidence_detail)}")
        attrs.append('method="probed" conf="10"')
    else:
        attrs.append('method="table" conf="3"')
    attrs.extend(
        f"portprobe_{key}={_attr(value)}" for key in _EXTRA_KEYS if (value := getattr(a, key))
    )
    return f"<service {' '.join(attrs)}/>"


def _port(result: Result) -> str:
    state = (
        f"<state state={_attr(result.state.value)} reason={_attr(result.reason.value)}"
        ' reason_ttl="0"'
        + ("" if result.rtt is None else f' portprobe_rtt_ms="{result.rtt * 1000:.3f}"')
        + f' portprobe_tries="{result.tries}" portprobe_time={_attr(isotime(result.timestamp))}/>'
    )
    return (
        f'<port protocol={_attr(result.protocol.value)} portid="{result.port}">'
        f"{state}{_service(result)}</port>\n"
    )


class XmlWriter:
    """nmap-style XML (``-oX``); see the module rules for where portprobe's fields go."""

    def __init__(self, stream: TextIO, meta: ScanMeta) -> None:
        self._stream = stream
        self._meta = meta
        self._rows: dict[str, list[Result]] = defaultdict(list)
        self._hostnames: dict[str, str] = {}
        # host -> (protocol, state, reason) -> how many results were left out
        self._omitted: dict[str, Counter[tuple[str, str, str]]] = defaultdict(Counter)
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._count: Counter[str] = Counter()
        self._flushed: set[str] = set()
        ports = _ports_by_protocol(meta.ports)
        # Results a host gets in a whole scan; 0: unknown (a shard), so hosts wait for close.
        self._per_host = sum(map(len, ports.values())) if meta.shard == "1/1" else 0
        command = " ".join(meta.command)
        stream.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
            f"<!-- portprobe {_comment(meta.version)} scan initiated "
            f"{_timestr(meta.started)} as: {_comment(command)} -->\n"
            f'<nmaprun scanner="portprobe" args={_attr(command)} start="{int(meta.started)}"'
            f" startstr={_attr(_timestr(meta.started))} version={_attr(meta.version)}"
            f' xmloutputversion="{XML_OUTPUT_VERSION}" portprobe_seed="{meta.seed}"'
            f" portprobe_shard={_attr(meta.shard)}"
            f" portprobe_registry_date={_attr(meta.registry_date)}>\n"
            f"{_scaninfo(ports)}"
            '<verbose level="0"/>\n<debugging level="0"/>\n'
        )

    def _seen(self, result: Result) -> None:
        host = result.host
        if host not in self._first:
            self._first[host] = result.timestamp
        self._last[host] = result.timestamp
        if result.hostname:
            self._hostnames[host] = result.hostname

    def _counted(self, host: str) -> None:
        self._count[host] += 1
        if self._per_host and self._count[host] == self._per_host:
            self._stream.write(self._host(host))
            self._flushed.add(host)
            for table in (self._rows, self._omitted, self._first, self._last, self._count):
                table.pop(host, None)
            self._hostnames.pop(host, None)

    def write(self, result: Result) -> None:
        self._seen(result)
        self._rows[result.host].append(result)
        self._counted(result.host)

    def omit(self, result: Result) -> None:
        self._seen(result)
        key = (result.protocol.value, result.state.value, result.reason.value)
        self._omitted[result.host][key] += 1
        self._counted(result.host)

    def _host(self, host: str) -> str:
        rows = sorted(self._rows.get(host, []), key=lambda r: (r.protocol.value, r.port))
        hostname = self._hostnames.get(host)
        names = f'<hostname name={_attr(hostname)} type="user"/>\n' if hostname is not None else ""
        parts = [
            f'<host starttime="{int(self._first[host])}" endtime="{int(self._last[host])}">'
            '<status state="up" reason="user-set" reason_ttl="0"/>\n'
            f'<address addr={_attr(host)} addrtype="{_addrtype(host)}"/>\n'
            f"<hostnames>\n{names}</hostnames>\n<ports>"
        ]
        by_state: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for (protocol, state, reason), count in sorted(self._omitted.get(host, {}).items()):
            by_state[state].append((protocol, reason, count))
        for state, reasons in by_state.items():
            total = sum(count for _, _, count in reasons)
            parts.append(f'<extraports state={_attr(state)} count="{total}">\n')
            parts.extend(
                f'<extrareasons reason={_attr(reason)} count="{count}" proto={_attr(protocol)}/>\n'
                for protocol, reason, count in reasons
            )
            parts.append("</extraports>\n")
        parts.extend(_port(r) for r in rows)
        parts.append("</ports>\n</host>\n")
        return "".join(parts)

    def close(self, ending: Ending) -> None:
        hosts = sorted(self._first, key=address_key)
        for host in hosts:
            self._stream.write(self._host(host))
        summary: Summary = ending.summary
        up = len(hosts) + len(self._flushed)
        elapsed = max(0.0, ending.finished - self._meta.started)
        outcome = "finished" if ending.complete else "stopped early (partial results)"
        text = (
            f"portprobe {outcome} at {_timestr(ending.finished)}; {up} IP address"
            f"{'es' if up != 1 else ''} ({up} host{'s' if up != 1 else ''} up) scanned in"
            f" {elapsed:.2f} seconds"
        )
        exit_attrs = (
            'exit="success"'
            if ending.complete
            else 'exit="error" errormsg="interrupted or failed: partial results"'
        )
        self._stream.write(
            f'<runstats><finished time="{int(ending.finished)}"'
            f" timestr={_attr(_timestr(ending.finished))} summary={_attr(text)}"
            f' elapsed="{elapsed:.2f}" {exit_attrs}'
            f' portprobe_results="{summary.total}"/>'
            f'<hosts up="{up}" down="0" total="{up}"/>\n</runstats>\n</nmaprun>\n'
        )


def _ports_by_protocol(spec: str) -> dict[Proto, list[int]]:
    """The port numbers of a spec like ``T:22,U:53``, by protocol (empty if it does not parse:
    a spec portprobe did not write, e.g. merged from other scans)."""
    try:
        ports = parse_port_spec(spec)
    except PortSpecError:
        return {}
    by_protocol: dict[Proto, list[int]] = {}
    for port in ports:
        by_protocol.setdefault(port.protocol, []).append(port.number)
    return by_protocol


def _scaninfo(ports: dict[Proto, list[int]]) -> str:
    """nmap's ``<scaninfo>`` lines, one per protocol."""
    kinds = {Proto.TCP: "connect", Proto.UDP: "udp"}
    return "".join(
        f'<scaninfo type="{kinds[protocol]}" protocol="{protocol.value}"'
        f' numservices="{len(numbers)}" services="{format_ports(numbers)}"/>\n'
        for protocol, numbers in sorted(ports.items())
    )
