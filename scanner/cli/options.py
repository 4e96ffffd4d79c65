"""The scan command's options, declared once; their defaults come from the config dataclasses.

Each option is an ``Annotated`` type: the scan command's signature (``scanner.cli.scan``)
reads like a list of them. Defaults are taken from :class:`~scanner.models.ScanConfig`,
:class:`~scanner.models.Timing` and :class:`~scanner.models.EvidenceConfig`, the single
source of truth, so the help text and the library never disagree.
"""

from __future__ import annotations

from typing import Annotated

import typer

from scanner.models import EvidenceConfig, ScanConfig
from scanner.units import format_duration

SCAN = ScanConfig()
EVIDENCE = EvidenceConfig()

# Defaults, as the options show them.
CONCURRENCY = SCAN.concurrency
RETRIES = SCAN.retries
MIN_RTT = format_duration(SCAN.timing.min_rtt_timeout)
MAX_RTT = format_duration(SCAN.timing.max_rtt_timeout)
INITIAL_RTT = format_duration(SCAN.timing.initial_rtt_timeout)
EVIDENCE_TIMEOUT = format_duration(EVIDENCE.timeout)

# Typer writes a default as "\\[default: X]" whenever rich is installed (for rich's markup,
# even with rich_markup_mode None): defaults are written in the help text instead.

Targets = Annotated[list[str] | None, typer.Argument(show_default=False)]
Ports = Annotated[
    str | None,
    typer.Option(
        "-p", "--ports", help="Ports: 22,80,1000-2000, - for 1-65535, T:22,U:53 per protocol."
    ),
]
TopPorts = Annotated[
    int | None, typer.Option("--top-ports", help="The N most common ports (default: 1000).")
]
Udp = Annotated[bool, typer.Option("--udp", "-sU", help="Scan UDP ports (with --tcp: both).")]
Tcp = Annotated[bool, typer.Option("--tcp", "-sT", help="Scan TCP ports (the default).")]
DefeatIcmp = Annotated[
    bool,
    typer.Option(
        "--defeat-icmp-ratelimit",
        help="UDP fast mode: don't wait for rate-limited ICMP errors; unanswered "
        "ports become closed|filtered.",
    ),
]
TargetsFile = Annotated[
    str | None,
    typer.Option(
        "-iL",
        "--targets-file",
        metavar="FILE",
        help="Read targets from FILE, one or more a line (- for standard input).",
    ),
]
Exclude = Annotated[
    list[str] | None,
    typer.Option("--exclude", metavar="TARGETS", help="Targets not to scan (repeatable)."),
]
ExcludeFile = Annotated[
    str | None,
    typer.Option("--exclude-file", metavar="FILE", help="Read targets not to scan from FILE."),
]
Output = Annotated[
    str | None,
    typer.Option(
        "-o",
        "--output",
        metavar="FILE",
        help="Write a report to FILE (.csv .json .jsonl .xml .gnmap .txt; - for stdout).",
    ),
]
XmlOutput = Annotated[
    str | None,
    typer.Option("-oX", metavar="FILE", help="Write nmap's XML to FILE (- for stdout)."),
]
NormalOutput = Annotated[
    str | None,
    typer.Option("-oN", metavar="FILE", help="Write the terminal report to FILE (- for stdout)."),
]
GrepOutput = Annotated[
    str | None,
    typer.Option(
        "-oG", metavar="FILE", help="Write nmap's grepable output to FILE (- for stdout)."
    ),
]
AllOutputs = Annotated[
    str | None,
    typer.Option("-oA", metavar="BASE", help="Write BASE.nmap, BASE.xml and BASE.gnmap."),
]
Format = Annotated[
    str | None,
    typer.Option(
        "--format",
        metavar="FORMAT",
        help="Report format: table, csv, json, jsonl, xml or grepable.",
    ),
]
Expect = Annotated[
    str | None,
    typer.Option(
        "--expect",
        metavar="FILE",
        help="Policy FILE of allowed host/port/protocol; flag the rest.",
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option("--shard", metavar="K/N", help="Scan only part K of N (needs --seed when N > 1)."),
]
Resume = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="FILE",
        help="Finish the interrupted scan whose JSON(L) report is FILE.",
    ),
]
ShowAll = Annotated[bool, typer.Option("--all", help="Show and write closed ports too.")]
Concurrency = Annotated[
    int,
    typer.Option(
        "--concurrency",
        show_default=False,
        help=f"Most probes in flight at once (default: {CONCURRENCY}).",
    ),
]
Rate = Annotated[float | None, typer.Option("--rate", help="Most probes sent per second.")]
MaxRate = Annotated[float | None, typer.Option("--max-rate", help="nmap's name for --rate.")]
MinRate = Annotated[
    float | None,
    typer.Option("--min-rate", help="Keep enough probes in flight to send N per second."),
]
Retries = Annotated[
    int,
    typer.Option(
        "--retries",
        show_default=False,
        help=f"Times an unanswered probe is sent again (default: {RETRIES}).",
    ),
]
MaxRetries = Annotated[int | None, typer.Option("--max-retries", help="nmap's name for --retries.")]
HostTimeout = Annotated[
    str | None,
    typer.Option(
        "--host-timeout",
        metavar="TIME",
        help="Drop a host TIME after its first probe (e.g. 30s, 5m); it is reported.",
    ),
]
TimingTemplate = Annotated[
    str | None,
    typer.Option(
        "-T",
        metavar="0-5",
        help="nmap's timing template, -T0 (paranoid) to -T5 (insane); see the README.",
    ),
]
MinRtt = Annotated[
    str,
    typer.Option(
        "--min-rtt-timeout",
        metavar="TIME",
        show_default=False,
        help=f"Floor of the adaptive timeout (default: {MIN_RTT}).",
    ),
]
MaxRtt = Annotated[
    str,
    typer.Option(
        "--max-rtt-timeout",
        metavar="TIME",
        show_default=False,
        help=f"Ceiling of the adaptive timeout (default: {MAX_RTT}).",
    ),
]
InitialRtt = Annotated[
    str,
    typer.Option(
        "--initial-rtt-timeout",
        metavar="TIME",
        show_default=False,
        help=f"Timeout before any answer (default: {INITIAL_RTT}).",
    ),
]
Seed = Annotated[int | None, typer.Option("--seed", help="Fix the random probe order.")]
Workers = Annotated[
    int | None,
    typer.Option("--workers", help="Processes sharing the scan (default: one per CPU, max 4)."),
]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")]
PingScan = Annotated[
    bool, typer.Option("-sn", help="Host discovery only: list the hosts that are up, no ports.")
]
Discover = Annotated[
    bool, typer.Option("--discover", help="Discover hosts first; skip those found down.")
]
SkipDiscovery = Annotated[
    bool, typer.Option("-Pn", help="Probe every host, up or not (the default).")
]
NoDns = Annotated[
    bool, typer.Option("-n", help="No reverse DNS (portprobe never resolves addresses).")
]
OpenOnly = Annotated[
    bool, typer.Option("--open", help="Show only open ports (the default; --all: every port).")
]
VersionScan = Annotated[
    bool, typer.Option("-sV", help="Evidence of what open ports speak (the default).")
]
Fast = Annotated[bool, typer.Option("-F", help="The 100 most common ports.")]
ExcludePorts = Annotated[
    str | None,
    typer.Option("--exclude-ports", metavar="PORTS", help="Ports not to scan (T:/U: apply)."),
]
Sequential = Annotated[
    bool, typer.Option("-r", help="Probe in order (host by host, port by port), not shuffled.")
]
Verbose = Annotated[
    int,
    typer.Option(
        "-v",
        count=True,
        show_default=False,
        help="More detail: reasons and timing (-v); every port's row too (-vv).",
    ),
]
ShowReason = Annotated[bool, typer.Option("--reason", help="A REASON column in the table.")]
Ipv6 = Annotated[bool, typer.Option("-6", help="IPv6: names resolve to IPv6 addresses.")]
NoEvidence = Annotated[
    bool,
    typer.Option("--no-evidence", help="Port states only: do not probe what open ports speak."),
]
Explain = Annotated[
    bool,
    typer.Option(
        "--explain",
        help="Under the table, for each open port: why its verdict, the bytes behind it, "
        "and a command to check it by hand.",
    ),
]
EvidenceTimeout = Annotated[
    str,
    typer.Option(
        "--evidence-timeout",
        metavar="TIME",
        show_default=False,
        help=f"Time to identify one open port (default: {EVIDENCE_TIMEOUT}).",
    ),
]
