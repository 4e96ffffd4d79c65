"""nmap-style XML: the document nmap writes with ``-oX``, read by ndiff, libnmap and friends.

Rules:
- The layout is nmap's (``nmaprun`` / ``scaninfo`` / ``host`` / ``status`` / ``address`` /
  ``hostnames`` / ``ports`` / ``extraports`` / ``port`` / ``state`` / ``service`` /
  ``runstats`` / ``finished``), with nmap's state and reason names, so tools
  built for nmap read it. portprobe scans without host discovery, as ``nmap -Pn`` does, so
  every host is ``up`` with reason ``user-set``.
- Our own fields go where nmap's readers ignore them safely, all in ``<service>``: the
  IANA label is its ``name`` (left out when there is none, as nmap does; ``method="table"``
  as nmap names a port without ``-sV``); the software an open port was seen to run is its
  ``product`` and ``version``, the evidence's detail its ``extrainfo``
  (``method="probed"``), as ``-sV`` reports a service; the rest of the assessment (the
  service seen, attestation, verdict, warning, policy, and the evidence trail: probe, rule,
  excerpt) are ``portprobe_*`` attributes. The result's RTT, tries and time are
  ``portprobe_*`` attributes of ``<state>``, the scan's seed, shard and registry date of
  ``<nmaprun>``.
- No ``<script>`` elements: nmap 7.93's ndiff crashes (TypeError) on a port whose only
  difference is its script output, so a changed verdict would break every ndiff run.
- nmap lists a host's ports of a state when there are 25 or fewer of them (all protocols
  together; 25 times the verbosity with ``-v``), closed ones too, and folds a state of more
  into ``<extraports>``, whose ``<extrareasons>`` name the ports (nmap 7.92's ``ports``
  attribute): so does portprobe, so that ndiff against nmap's XML of the same host finds
  no difference. Open ports are never folded; with ``--all`` nothing is.
- nmap groups ports by host, and results arrive in a random host order, so a host's rows
  are kept (those of a folded state as port numbers only) until the host is
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

import dataclasses
import re
import time
from collections.abc import Callable
from typing import TextIO
from xml.sax.saxutils import quoteattr

from scanner.errors import PortSpecError
from scanner.models import Assessment, ClosedPorts, PortState, Proto, Result
from scanner.ports import format_ports, parse_port_spec
from scanner.report.probed import ports_of_spec, whole_scan
from scanner.report.summary import Summary
from scanner.report.table import address_key
from scanner.report.writers import Ending, PerAssessment, ScanMeta, isotime
from scanner.text import escape_char, escape_controls

__all__ = ["HostWriter", "XmlWriter", "xml_text"]

XML_OUTPUT_VERSION = "1.05"  # nmap 7.9x's xmloutputversion

# Characters XML 1.0 cannot contain, even escaped (and lone surrogates).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Assessment fields that nmap's <service> has no attribute for: prefixed ``portprobe_``.
_EXTRA_KEYS = (
    "label_description",
    "range",
    "attestation",
    "evidence",
    "verdict",
    "warning",
    "policy",
    "evidence_probe",
    "evidence_rule",
    "evidence_excerpt",
)


def xml_text(text: str) -> str:
    """``text`` with every control or invisible character, and every one XML 1.0 cannot
    hold, shown as ``\\xNN`` (or ``\\uNNNN``)."""
    if text.isprintable():  # every character of both classes is one it rejects (tested)
        return text
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


def _service(a: Assessment) -> str:
    """nmap's ``<service>``: the label as its name, the software seen as product and
    version, the evidence's detail as extrainfo."""
    # nmap leaves the name out for a port its table does not name: so do we.
    attrs = [f"name={_attr(a.label)}"] if a.label else []
    if a.evidence or a.evidence_excerpt:
        # What the port was seen to run is what nmap -sV reports as product and version.
        attrs.extend(
            f"{name}={_attr(value)}"
            for name, value in (
                ("product", a.product),
                ("version", a.version),
                ("extrainfo", a.evidence_detail),
            )
            if value
        )
        attrs.append('method="probed" conf="10"')
    else:
        attrs.append('method="table" conf="3"')
    attrs.extend(
        f"portprobe_{key}={_attr(value)}" for key in _EXTRA_KEYS if (value := getattr(a, key))
    )
    return f"<service {' '.join(attrs)}/>"


def _port(result: Result, service: Callable[[Assessment], str] = _service) -> str:
    """One ``<port>`` element; ``service`` renders the assessment (a cache of
    :func:`_service`, as the writer passes)."""
    a, rtt = result.assessment, result.rtt
    rtt_attr = "" if rtt is None else f' portprobe_rtt_ms="{rtt * 1000:.3f}"'
    # States, reasons, protocols and ISO times need no escaping: they are ours.
    return (
        f'<port protocol="{result.protocol._value_}" portid="{result.port}">'
        f'<state state="{result.state._value_}" reason="{result.reason._value_}"'
        f' reason_ttl="0"{rtt_attr}'
        f' portprobe_tries="{result.tries}" portprobe_time="{isotime(result.timestamp)}"/>'
        f"{'' if a is None else service(a)}</port>\n"
    )


class HostWriter:
    """What the nmap formats (XML, grepable) share: every result passes ``_hosts`` (a
    :class:`HostGrouper`; nmap lists a state's ports when there are 25 or fewer, closed
    ones too), and a host is written by ``_completed`` once it is complete."""

    _hosts: HostGrouper

    def _completed(self, address: str, host: HostPorts) -> None:
        raise NotImplementedError

    def _add(self, result: Result, *, omitted: bool = False) -> None:
        done = self._hosts.add(result, omitted=omitted)
        if done is not None:
            self._completed(*done)

    def write(self, result: Result) -> None:
        """Keep ``result`` for its host's element."""
        self._add(result)

    def omit(self, result: Result) -> None:
        """Count ``result`` (listed all the same while its state has few ports)."""
        self._add(result, omitted=True)

    def write_closed(self, block: ClosedPorts) -> None:
        """:meth:`write` each port of ``block``."""
        for result in block.results():
            self._add(result)

    def omit_closed(self, block: ClosedPorts) -> None:
        """:meth:`omit` each port of ``block``, in bulk."""
        done = self._hosts.add_closed(block)
        if done is not None:
            self._completed(*done)


class XmlWriter(HostWriter):
    """nmap-style XML (``-oX``); see the module rules for where portprobe's fields go."""

    def __init__(self, stream: TextIO, meta: ScanMeta) -> None:
        self._stream = stream
        self._meta = meta
        self._hosts = HostGrouper(meta)
        self._flushed: set[str] = set()
        self._service = PerAssessment(_service)
        ports = _ports_by_protocol(meta.ports)
        verbose = self._hosts.verbose
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
            f'<verbose level="{verbose}"/>\n'
            '<debugging level="0"/>\n'
        )

    def _completed(self, address: str, host: HostPorts) -> None:
        self._stream.write(self._host(address, host))
        self._flushed.add(address)

    def _host(self, address: str, host: HostPorts) -> str:
        names = (
            f'<hostname name={_attr(host.hostname)} type="user"/>\n'
            if host.hostname is not None
            else ""
        )
        parts = [
            f'<host starttime="{int(host.first)}" endtime="{int(host.last)}">'
            '<status state="up" reason="user-set" reason_ttl="0"/>\n'
            f'<address addr={_attr(address)} addrtype="{_addrtype(address)}"/>\n'
            f"<hostnames>\n{names}</hostnames>\n<ports>"
        ]
        for state, reasons in host.folded():
            total = sum(len(numbers) for _, _, numbers in reasons)
            parts.append(f'<extraports state={_attr(state)} count="{total}">\n')
            parts.extend(
                f'<extrareasons reason={_attr(reason)} count="{len(numbers)}"'
                f' proto={_attr(protocol)} ports="{format_ports(numbers)}"/>\n'
                for protocol, reason, numbers in reasons
            )
            parts.append("</extraports>\n")
        service = self._service
        parts.extend(_port(r, service) for r in host.listed())
        parts.append("</ports>\n</host>\n")
        return "".join(parts)

    def close(self, ending: Ending) -> None:
        hosts = self._hosts.rest()
        for address, ports in hosts:
            self._stream.write(self._host(address, ports))
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


# nmap folds a non-open state's ports into <extraports> when there are more than this many
# on a host (all protocols together); -v multiplies it by the verbosity (nmap's
# PortList::isIgnoredState).
FOLD_ABOVE = 25

# nmap's numbers for the states (portlist.h): folded states of equal count come in this order.
_NMAP_STATE_ORDER = {
    "closed": 1,
    "open": 2,
    "filtered": 3,
    "unfiltered": 6,
    "open|filtered": 7,
    "closed|filtered": 8,
}


def fold_limit(verbose: int) -> int:
    """The most ports of one state nmap lists on a host at verbosity ``verbose``."""
    return FOLD_ABOVE * verbose if verbose > 0 else FOLD_ABOVE


class HostPorts:
    """One host's results until its ``<host>`` is written, folded as nmap folds them.

    Memory: results are kept for states of at most ``max_listed`` ports (and for open
    ports, which nmap never folds); a state that grows past that keeps only port numbers.
    """

    __slots__ = (
        "count",
        "first",
        "folded_ports",
        "hostname",
        "last",
        "max_listed",
        "omitted",
        "rows",
    )

    def __init__(self, first: float, max_listed: int) -> None:
        self.first = self.last = first
        self.hostname: str | None = None
        self.count = 0
        self.max_listed = max_listed
        self.rows: dict[str, list[Result]] = {}
        self.omitted: set[int] = set()  # id() of the rows that came through omit()
        # state -> (protocol, reason) -> port numbers
        self.folded_ports: dict[str, dict[tuple[str, str], list[int]]] = {}

    def add(self, result: Result, *, omitted: bool = False) -> None:
        self.count += 1
        self.first = min(self.first, result.timestamp)
        self.last = max(self.last, result.timestamp)
        if result.hostname:
            self.hostname = result.hostname
        state = result.state.value
        folded = self.folded_ports.get(state)
        if folded is not None:
            key = (result.protocol.value, result.reason.value)
            folded.setdefault(key, []).append(result.port)
            return
        rows = self.rows.setdefault(state, [])
        rows.append(result)
        if omitted:
            self.omitted.add(id(result))
        if result.state is not PortState.OPEN and len(rows) > self.max_listed:
            folded = self.folded_ports[state] = {}
            for row in self.rows.pop(state):
                key = (row.protocol.value, row.reason.value)
                folded.setdefault(key, []).append(row.port)

    def add_closed(self, block: ClosedPorts) -> None:
        """:meth:`add` each of ``block.results()`` (omitted), in bulk once its state is
        folded (or is about to be)."""
        state = PortState.CLOSED.value
        rows = self.rows.get(state, ())
        if state not in self.folded_ports and len(rows) + len(block) <= self.max_listed:
            for result in block.results():
                self.add(result, omitted=True)
            return
        count = len(block)
        if not count:
            return
        self.count += count
        self.first = min(self.first, block.timestamp)
        self.last = max(self.last, block.timestamp)
        if block.hostname:
            self.hostname = block.hostname
        folded = self.folded_ports.get(state)
        if folded is None:
            folded = self.folded_ports[state] = {}
            for row in self.rows.pop(state, ()):
                key = (row.protocol.value, row.reason.value)
                folded.setdefault(key, []).append(row.port)
        key = (block.protocol.value, block.reason.value)
        folded.setdefault(key, []).extend(block.ports)

    def folded(self) -> list[tuple[str, list[tuple[str, str, list[int]]]]]:
        """The folded states, most ports first (ties in nmap's state order), each with its
        (protocol, reason, ports), most ports first."""

        def size(reasons: dict[tuple[str, str], list[int]]) -> int:
            return sum(map(len, reasons.values()))

        states = sorted(
            self.folded_ports.items(),
            key=lambda item: (-size(item[1]), _NMAP_STATE_ORDER.get(item[0], 9)),
        )
        return [
            (
                state,
                sorted(
                    ((protocol, reason, numbers) for (protocol, reason), numbers in by.items()),
                    key=lambda item: (-len(item[2]), item[0], item[1]),
                ),
            )
            for state, by in states
        ]

    def listed(self) -> list[Result]:
        """The listed results, by protocol and port; a port the reports left out (``omit``:
        closed, without an assessment), listed here as nmap lists up to 25, gets its IANA
        label, as nmap names every port it lists."""
        rows = [row for rows in self.rows.values() for row in rows]
        rows = [_labelled(r) if r.assessment is None and id(r) in self.omitted else r for r in rows]
        return sorted(rows, key=lambda r: (r.protocol.value, r.port))


class HostGrouper:
    """Groups a scan's results by host for the nmap formats (XML, grepable).

    A host is complete, and handed back by :meth:`add`, once it has a result for every
    port of the scan (``meta.ports``, in a whole scan); the others wait for :meth:`rest`.
    Folding follows nmap (:func:`fold_limit` at the scan's verbosity; nothing with
    ``--all``).
    """

    def __init__(self, meta: ScanMeta) -> None:
        ports = ports_of_spec(meta.ports)
        self._per_host = len(ports) if ports and whole_scan(meta.shard) else 0
        verbose = meta.extra.get("verbose", 0)
        self.verbose = max(0, verbose) if isinstance(verbose, int) else 0
        # --all asks for every port listed: nothing is folded (as nmap's -d3).
        self._max_listed = 1 << 30 if meta.closed_listed else fold_limit(self.verbose)
        self._hosts: dict[str, HostPorts] = {}

    def add(self, result: Result, *, omitted: bool = False) -> tuple[str, HostPorts] | None:
        """Count ``result``; its host and ports if that completed the host."""
        host = self._hosts.get(result.host)
        if host is None:
            host = self._hosts[result.host] = HostPorts(result.timestamp, self._max_listed)
        host.add(result, omitted=omitted)
        if self._per_host and host.count == self._per_host:
            return result.host, self._hosts.pop(result.host)
        return None

    def add_closed(self, block: ClosedPorts) -> tuple[str, HostPorts] | None:
        """:meth:`add` each of ``block.results()`` (omitted), in bulk."""
        if not len(block):
            return None
        host = self._hosts.get(block.host)
        if host is None:
            host = self._hosts[block.host] = HostPorts(block.timestamp, self._max_listed)
        host.add_closed(block)
        if self._per_host and host.count == self._per_host:
            return block.host, self._hosts.pop(block.host)
        return None

    def rest(self) -> list[tuple[str, HostPorts]]:
        """The hosts not complete yet, in address order (and forget them)."""
        hosts = [(a, self._hosts[a]) for a in sorted(self._hosts, key=address_key)]
        self._hosts.clear()
        return hosts


def nmap_time(timestamp: float) -> str:
    """A Unix time as nmap writes it in its reports (``Mon Nov 23 06:48:07 2026``, UTC)."""
    return _timestr(timestamp)


def _labelled(result: Result) -> Result:
    from scanner.registry import load_registry  # only hosts with few closed ports need it

    found = load_registry().label(result.port, result.protocol.value)
    if found is None:
        return result
    return dataclasses.replace(result, assessment=Assessment(label=found.service))


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
