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
    typer.Option("-iL", "--targets-file", help="Read targets from FILE, one per line."),
]
Exclude = Annotated[
    list[str] | None, typer.Option("--exclude", help="Targets not to scan (repeatable).")
]
ExcludeFile = Annotated[
    str | None, typer.Option("--exclude-file", help="Read targets not to scan from FILE.")
]
Output = Annotated[
    str | None,
    typer.Option("-o", "--output", help="Write a report to FILE (.csv .json .jsonl .xml .txt)."),
]
XmlOutput = Annotated[
    str | None, typer.Option("-oX", help="Write nmap-style XML to FILE (-o FILE --format xml).")
]
Format = Annotated[
    str | None, typer.Option("--format", help="Report format: table, csv, json, jsonl or xml.")
]
Expect = Annotated[
    str | None,
    typer.Option("--expect", help="Policy FILE of allowed host/port/protocol; flag the rest."),
]
ShardOpt = Annotated[
    str | None,
    typer.Option("--shard", help="Scan only part K of N (K/N; needs --seed when N > 1)."),
]
Resume = Annotated[
    str | None,
    typer.Option("--resume", help="Finish the interrupted scan whose JSON(L) report is FILE."),
]
ShowAll = Annotated[bool, typer.Option("--all", help="Show and write closed ports too.")]
Concurrency = Annotated[int, typer.Option("--concurrency", help="Most probes in flight at once.")]
Rate = Annotated[float | None, typer.Option("--rate", help="Most probes sent per second.")]
Retries = Annotated[int, typer.Option("--retries", help="Times an unanswered probe is sent again.")]
MinRtt = Annotated[str, typer.Option("--min-rtt-timeout", help="Floor of the adaptive timeout.")]
MaxRtt = Annotated[str, typer.Option("--max-rtt-timeout", help="Ceiling of the adaptive timeout.")]
InitialRtt = Annotated[
    str, typer.Option("--initial-rtt-timeout", help="Timeout before any answer.")
]
Seed = Annotated[int | None, typer.Option("--seed", help="Fix the random probe order.")]
Workers = Annotated[
    int | None,
    typer.Option("--workers", help="Processes sharing the scan (default: one per CPU, max 4)."),
]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")]
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
    str, typer.Option("--evidence-timeout", help="Time to identify one open port.")
]

# Defaults, as the options show them.
CONCURRENCY = SCAN.concurrency
RETRIES = SCAN.retries
MIN_RTT = format_duration(SCAN.timing.min_rtt_timeout)
MAX_RTT = format_duration(SCAN.timing.max_rtt_timeout)
INITIAL_RTT = format_duration(SCAN.timing.initial_rtt_timeout)
EVIDENCE_TIMEOUT = format_duration(EVIDENCE.timeout)
