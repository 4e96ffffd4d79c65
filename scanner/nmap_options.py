"""nmap's habits, with nmap's meaning: timing templates, the options portprobe does not have
(and what to use instead), excluded ports and ``-oA``.

Rules:
- ``-T0`` to ``-T5`` set portprobe's concurrency, rate, retries and timeouts as the table
  :data:`TIMING_TEMPLATES` says (the README shows it); options given explicitly win over
  the template, whatever their order.
- An nmap option portprobe does not have is refused before parsing, with one line that
  names it and says what portprobe offers instead (:func:`refuse_unsupported`), never with
  a suggestion of an unrelated option.
- Nothing here touches the terminal or the network: the command line uses these tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scanner.errors import UsageError
from scanner.models import Port, Proto
from scanner.ports import parse_port_spec

__all__ = [
    "TIMING_TEMPLATES",
    "UNSUPPORTED",
    "Template",
    "exclude_ports",
    "oa_paths",
    "parse_template",
    "refuse_unsupported",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Template:
    """One of nmap's timing templates, in portprobe's terms.

    ``rate`` is probes per second (None: no cap), the timeouts are in seconds, and
    ``host_timeout`` drops a host after that many seconds (None: never).
    """

    name: str
    concurrency: int
    rate: float | None
    retries: int
    initial_rtt: float
    min_rtt: float
    max_rtt: float
    host_timeout: float | None = None


# nmap's templates (nmap.org/book/performance-timing-templates.html): T0-T2 serialize
# probes with a delay of 5 min, 15 s and 0.4 s between them (a rate here, concurrency 1);
# T3 is the default; T4 and T5 shorten the timeouts, T5 also retries less and drops a host
# after 15 minutes. portprobe's default retries (2) stand for nmap's 10 adaptive ones.
TIMING_TEMPLATES: dict[int, Template] = {
    0: Template(
        name="paranoid",
        concurrency=1,
        rate=1 / 300,
        retries=2,
        initial_rtt=300.0,
        min_rtt=0.1,
        max_rtt=300.0,
    ),
    1: Template(
        name="sneaky",
        concurrency=1,
        rate=1 / 15,
        retries=2,
        initial_rtt=15.0,
        min_rtt=0.1,
        max_rtt=15.0,
    ),
    2: Template(
        name="polite",
        concurrency=1,
        rate=2.5,
        retries=2,
        initial_rtt=1.0,
        min_rtt=0.1,
        max_rtt=10.0,
    ),
    3: Template(
        name="normal",
        concurrency=1024,
        rate=None,
        retries=2,
        initial_rtt=1.0,
        min_rtt=0.1,
        max_rtt=10.0,
    ),
    4: Template(
        name="aggressive",
        concurrency=2048,
        rate=None,
        retries=2,
        initial_rtt=0.5,
        min_rtt=0.1,
        max_rtt=1.25,
    ),
    5: Template(
        name="insane",
        concurrency=4096,
        rate=None,
        retries=1,
        initial_rtt=0.25,
        min_rtt=0.05,
        max_rtt=0.3,
        host_timeout=900.0,
    ),
}

_TEMPLATE_NAMES = {t.name: n for n, t in TIMING_TEMPLATES.items()}


def parse_template(text: str) -> Template:
    """``-T``'s value (``0``-``5`` or a name such as ``aggressive``) as a :class:`Template`."""
    value = text.strip().lower()
    number = int(value) if value.isascii() and value.isdigit() else _TEMPLATE_NAMES.get(value)
    if number is None or number not in TIMING_TEMPLATES:
        names = ", ".join(f"{n} ({t.name})" for n, t in TIMING_TEMPLATES.items())
        raise UsageError(f"-T takes a timing template: {names}; not {text[:20]!r}")
    return TIMING_TEMPLATES[number]


_RAW = "needs raw packets; portprobe scans with TCP connect (-sT) and UDP (-sU)"
_DISCOVERY = (
    "is one of nmap's host discovery probes; portprobe's --discover (and -sn) probe TCP "
    "80, 443 and 22, ICMP echo and UDP at once"
)
_SPOOF = "forges packets, which needs raw sockets; portprobe's probes are ordinary connects"

#: nmap options portprobe does not have, and what to use instead.
UNSUPPORTED: dict[str, str] = {
    "-sS": "-sS needs raw sockets; portprobe scans with TCP connect (-sT)",
    "-sA": f"-sA (ACK scan) {_RAW}",
    "-sW": f"-sW (window scan) {_RAW}",
    "-sM": f"-sM (Maimon scan) {_RAW}",
    "-sN": f"-sN (null scan) {_RAW}",
    "-sF": f"-sF (FIN scan) {_RAW}",
    "-sX": f"-sX (Xmas scan) {_RAW}",
    "-sI": f"-sI (idle scan) {_RAW}",
    "-sO": f"-sO (IP protocol scan) {_RAW}",
    "-sY": "-sY (SCTP) is not supported; portprobe scans TCP (-sT) and UDP (-sU)",
    "-sZ": "-sZ (SCTP) is not supported; portprobe scans TCP (-sT) and UDP (-sU)",
    "-sL": "-sL (list scan) is not supported; -sn lists the hosts that are up",
    "-sR": "-sR (RPC scan) is now part of -sV in nmap; portprobe's evidence (-sV, the default) "
    "identifies RPC ports",
    "-sC": "-sC runs nmap's NSE scripts; portprobe has no scripts: its evidence probes (-sV, the "
    "default) identify what open ports speak",
    "--script": "--script runs nmap's NSE scripts; portprobe has no scripts: its evidence probes "
    "(-sV, the default) identify what open ports speak",
    "-O": "-O (OS detection) needs raw packets; portprobe does no OS detection",
    "-A": "-A is -O -sV -sC --traceroute; portprobe has -sV (its evidence, the default) only",
    "--traceroute": "--traceroute needs raw packets; portprobe does not trace routes",
    "-b": f"-b (FTP bounce scan) {_RAW}",
    "-f": f"-f {_SPOOF}",
    "--mtu": f"--mtu {_SPOOF}",
    "-D": f"-D (decoys) {_SPOOF}",
    "-S": f"-S (source address) {_SPOOF}",
    "--spoof-mac": f"--spoof-mac {_SPOOF}",
    "--data-length": f"--data-length {_SPOOF}",
    "--ttl": f"--ttl {_SPOOF}",
    "--badsum": f"--badsum {_SPOOF}",
    "-g": f"-g (source port) {_SPOOF}",
    "--source-port": f"--source-port {_SPOOF}",
    "-e": "-e (interface) is not supported: the routing table picks the interface",
    "-iR": "-iR (random targets) is not supported: scan only hosts you are responsible for",
    "-R": "-R (reverse DNS) is not supported: portprobe never resolves addresses to names",
    "--dns-servers": "--dns-servers is not supported: names resolve with the system's resolver",
    "--scan-delay": "--scan-delay: use --max-rate (probes per second) or -T0 to -T2",
    "--max-scan-delay": "--max-scan-delay: use --max-rate (probes per second) or -T",
    "--min-parallelism": "--min-parallelism: use --concurrency (the most probes in flight)",
    "--max-parallelism": "--max-parallelism: use --concurrency (the most probes in flight)",
    "--min-hostgroup": "--min-hostgroup: portprobe spreads its probes over every host at once; "
    "use --concurrency",
    "--max-hostgroup": "--max-hostgroup: portprobe spreads its probes over every host at once; "
    "use --concurrency",
    "--version-intensity": "--version-intensity: evidence has no levels; --evidence-timeout "
    "sets its time",
    "--version-light": "--version-light: evidence has no levels; --evidence-timeout sets its time",
    "--version-all": "--version-all: evidence has no levels; --evidence-timeout sets its time",
    "-oS": "-oS (script kiddie output) is not supported; use -oN",
    "-d": "-d (debugging) is not supported; use -v or -vv",
    "-PE": f"-PE {_DISCOVERY}",
    "-PP": f"-PP {_DISCOVERY}",
    "-PM": f"-PM {_DISCOVERY}",
    "-PS": f"-PS {_DISCOVERY}",
    "-PA": f"-PA {_DISCOVERY}",
    "-PU": f"-PU {_DISCOVERY}",
    "-PY": f"-PY {_DISCOVERY}",
    "-PO": f"-PO {_DISCOVERY}",
    "-PR": f"-PR {_DISCOVERY}",
}

# Options that take their value in the same word (-PS22, -p80): matched by prefix.
_PREFIXED = ("-PS", "-PA", "-PU", "-PY", "-PO", "-d", "-g", "-e", "-D", "-S", "-b")


def refuse_unsupported(argv: Sequence[str], known: frozenset[str] = frozenset()) -> None:
    """UsageError naming the first nmap option in ``argv`` that portprobe does not have.

    ``known`` are the command line's own option names, which are never refused (``-S``
    might be one some day). Words after ``--`` are targets, not options.
    """
    for word in argv:
        if word == "--":
            return
        if not word.startswith("-") or word in known:
            continue
        name = word.split("=", 1)[0]
        message = UNSUPPORTED.get(name)
        if message is None and not name.startswith("--"):
            message = next(
                (UNSUPPORTED[p] for p in _PREFIXED if name.startswith(p) and len(name) > len(p)),
                None,
            )
            if message is None and len(name) == 3 and name[1] == "s" and name not in known:
                message = f"nmap's {name} scan is not supported; portprobe scans with TCP connect "
                message += "(-sT) and UDP (-sU), and -sn finds the hosts that are up"
            if message is None and len(name) >= 3 and name[1] == "P" and name not in known:
                message = f"{name} {_DISCOVERY}"
        if message is not None:
            raise UsageError(message)


def exclude_ports(ports: Sequence[Port], spec: str) -> list[Port]:
    """``ports`` without those of ``spec`` (nmap's ``--exclude-ports``; ``T:``/``U:`` apply,
    a bare number excludes it from every protocol)."""
    excluded = set(parse_port_spec(spec, (Proto.TCP, Proto.UDP)))
    kept = [p for p in ports if p not in excluded]
    if not kept:
        raise UsageError(f"--exclude-ports {spec[:40]!r} leaves no port to scan")
    return kept


def oa_paths(base: str) -> dict[str, str]:
    """nmap's ``-oA BASE``: the normal, XML and grepable outputs, by format."""
    if base == "-":
        raise UsageError("-oA writes three files: give it a base name, not -")
    return {"table": f"{base}.nmap", "xml": f"{base}.xml", "grepable": f"{base}.gnmap"}
