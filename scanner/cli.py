"""The ``portprobe`` command line: parse, build a config, run the scan, map errors to exits.

This is the only module that imports typer or touches the terminal. It stays thin: every
decision about probing lives in the engine, every format in ``scanner.report``.

Exit statuses (:class:`ExitStatus`): 0 success, 1 a scan that could not finish (or, for
``diff``, reports that differ), 2 bad input (always one line on stderr, never a traceback),
3 a finished scan that found open ports its policy (``--expect``) does not allow, 130
interrupted by SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO

import typer
from click import Context
from click.exceptions import ClickException
from typer.core import TyperGroup

from scanner import __version__
from scanner.engine import Scan
from scanner.errors import PortprobeError, ScanError, UsageError
from scanner.models import Port, PortState, Proto, Result, ScanConfig, Timing
from scanner.plan import Shard
from scanner.ports import format_port_spec, parse_port_spec, top_ports
from scanner.report import (
    FORMATS,
    Ending,
    ScanMeta,
    Summary,
    TableReport,
    Writer,
    format_for_path,
    make_writer,
    printable,
)
from scanner.report.files import AtomicOutput
from scanner.targets import (
    Resolver,
    build_targets,
    parse_exclude_file,
    parse_target,
    read_targets_file,
)
from scanner.units import parse_duration

if TYPE_CHECKING:  # imported when first needed: they cost start-up time
    from scanner.assess import Assessor
    from scanner.evidence import Evidence, Prober
    from scanner.policy import Policy
    from scanner.report.read import Report


class ExitStatus(enum.IntEnum):
    """How ``portprobe`` exits."""

    SUCCESS = 0
    ERROR = 1
    CHANGED = 1  # diff: the reports differ
    USAGE = 2
    POLICY = 3  # the scan finished; open ports the policy does not allow
    INTERRUPTED = 130


@dataclass
class Environment:
    """The streams the command line talks to; tests replace them."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    resolver: Resolver | None = None  # None: the system's resolver
    argv: list[str] = field(default_factory=lambda: sys.argv[1:])

    @property
    def stderr_isatty(self) -> bool:
        """Whether stderr is a terminal (progress bars go only there)."""
        return bool(getattr(self.stderr, "isatty", lambda: False)())

    def say(self, message: str) -> None:
        """One line to stderr, prefixed with the program name.

        Messages quote user input (paths, targets) and errors: control characters are
        escaped, so a message stays one line and cannot drive the terminal.
        """
        self.stderr.write(f"portprobe: {printable(message)}\n")
        self.stderr.flush()


class _DefaultToScan(TyperGroup):
    """A group whose default command is ``scan``: ``portprobe HOST -p 22`` just works."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["scan", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultToScan,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Scan TCP and UDP ports: exact states, each open port's IANA label, what it was seen to "
        "speak, and whether the two agree. 'portprobe TARGET... [-p PORTS]' runs the scan "
        "command."
    ),
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"portprobe {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """portprobe: what really listens on your hosts."""


_DEFAULTS = ScanConfig()


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanRequest:
    """The scan command's options, validated."""

    targets: list[str]
    exclude: list[str]
    ports: list[Port]
    config: ScanConfig
    output: str | None
    format: str
    show_all: bool
    quiet: bool
    command: list[str]
    evidence: bool = True
    evidence_timeout: float = 2.0
    policy: Policy | None = None
    shard: Shard = Shard()
    resumed: Report | None = None  # the interrupted scan's report (--resume)


@app.command(
    "scan",
    help="Scan TARGETs (addresses, CIDRs, ranges like 198.18.0.1-20, host names).",
)
def scan_command(
    ctx: typer.Context,
    targets: Annotated[list[str] | None, typer.Argument(show_default=False)] = None,
    ports: Annotated[
        str | None,
        typer.Option(
            "-p",
            "--ports",
            help="Ports: 22,80,1000-2000, - for 1-65535, T:22,U:53 per protocol.",
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option("--top-ports", help="The N most common ports (default: 1000)."),
    ] = None,
    udp: Annotated[
        bool, typer.Option("--udp", "-sU", help="Scan UDP ports (with --tcp: both).")
    ] = False,
    tcp: Annotated[
        bool, typer.Option("--tcp", "-sT", help="Scan TCP ports (the default).")
    ] = False,
    defeat_icmp_ratelimit: Annotated[
        bool,
        typer.Option(
            "--defeat-icmp-ratelimit",
            help="UDP fast mode: don't wait for rate-limited ICMP errors; unanswered "
            "ports become closed|filtered.",
        ),
    ] = False,
    targets_file: Annotated[
        str | None,
        typer.Option("-iL", "--targets-file", help="Read targets from FILE, one per line."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Targets not to scan (repeatable).")
    ] = None,
    exclude_file: Annotated[
        str | None, typer.Option("--exclude-file", help="Read targets not to scan from FILE.")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o", "--output", help="Write a report to FILE (.csv .json .jsonl .xml .txt)."
        ),
    ] = None,
    xml_output: Annotated[
        str | None, typer.Option("-oX", help="Write nmap-style XML to FILE (-o FILE --format xml).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Report format: table, csv, json, jsonl or xml."),
    ] = None,
    expect: Annotated[
        str | None,
        typer.Option("--expect", help="Policy FILE of allowed host/port/protocol; flag the rest."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="Scan only part K of N (K/N; needs --seed when N > 1)."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Finish the interrupted scan whose JSON(L) report is FILE."),
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Show and write closed ports too.")
    ] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Most probes in flight at once.")
    ] = _DEFAULTS.concurrency,
    rate: Annotated[
        float | None, typer.Option("--rate", help="Most probes sent per second.")
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", help="Times an unanswered probe is sent again.")
    ] = _DEFAULTS.retries,
    min_rtt: Annotated[
        str, typer.Option("--min-rtt-timeout", help="Floor of the adaptive timeout.")
    ] = "100ms",
    max_rtt: Annotated[
        str, typer.Option("--max-rtt-timeout", help="Ceiling of the adaptive timeout.")
    ] = "10s",
    initial_rtt: Annotated[
        str, typer.Option("--initial-rtt-timeout", help="Timeout before any answer.")
    ] = "1s",
    seed: Annotated[int | None, typer.Option("--seed", help="Fix the random probe order.")] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Processes sharing the scan (default: one per CPU, max 4)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
    no_evidence: Annotated[
        bool,
        typer.Option("--no-evidence", help="Port states only: do not probe what open ports speak."),
    ] = False,
    evidence_timeout: Annotated[
        str, typer.Option("--evidence-timeout", help="Time to identify one open port.")
    ] = "2s",
) -> None:
    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    if resume is not None:
        request = _resume_request(ctx, env, resume)
    else:
        request = _request(env.argv, ctx.params)
    raise typer.Exit(run_scan(request, env))


def _request(argv: list[str], params: dict[str, Any]) -> ScanRequest:
    """The :class:`ScanRequest` for the scan command's parsed ``params``."""
    output, fmt = params["output"], params["fmt"]
    if params["xml_output"] is not None:
        if output is not None:
            raise UsageError("use either -o or -oX, not both")
        if fmt not in (None, "xml"):
            raise UsageError("-oX writes XML: drop --format, or use -o FILE --format FORMAT")
        output, fmt = params["xml_output"], "xml"
    return _validate(
        argv=argv,
        targets=params["targets"] or [],
        ports=params["ports"],
        top=params["top"],
        protocols=[
            p for p, wanted in ((Proto.TCP, params["tcp"]), (Proto.UDP, params["udp"])) if wanted
        ],
        defeat_icmp_ratelimit=params["defeat_icmp_ratelimit"],
        targets_file=params["targets_file"],
        exclude=params["exclude"] or [],
        exclude_file=params["exclude_file"],
        output=output,
        fmt=fmt,
        show_all=params["show_all"],
        concurrency=params["concurrency"],
        rate=params["rate"],
        retries=params["retries"],
        timing=(params["min_rtt"], params["max_rtt"], params["initial_rtt"]),
        seed=params["seed"],
        workers=params["workers"],
        quiet=params["quiet"],
        evidence=not params["no_evidence"],
        evidence_timeout=params["evidence_timeout"],
        expect=params["expect"],
        shard=params["shard"],
    )


def _resume_request(ctx: typer.Context, env: Environment, path: str) -> ScanRequest:
    """The request that finishes the interrupted scan reported in ``path``.

    The scan's own command line and seed come from the report; the new report replaces
    ``path`` (atomically) and holds the old results and the new ones.
    """
    from click.core import ParameterSource

    from scanner.report.read import read_report

    for name in ctx.params:
        if name not in ("resume", "quiet") and ctx.get_parameter_source(name) not in (
            ParameterSource.DEFAULT,
            None,
        ):
            raise UsageError("--resume takes no other options: the interrupted scan's are used")
    report = read_report(path)
    if report.format not in ("json", "jsonl"):
        raise UsageError(
            f"{path}: --resume needs a JSON or JSON Lines report (they record the scan's "
            f"command line), not {report.format}"
        )
    command, seed = report.meta.get("command"), report.meta.get("seed")
    if (
        not isinstance(command, list)
        or not all(isinstance(word, str) for word in command)
        or not command
        or isinstance(seed, bool)
        or not isinstance(seed, int)
    ):
        raise UsageError(f"{path}: the report does not record its command line and seed")
    if report.complete:
        raise UsageError(f"{path}: that scan finished; there is nothing to resume")
    argv = command[1:]
    if argv[:1] == ["scan"]:
        argv = argv[1:]
    try:
        stored = ctx.command.make_context("scan", list(argv), parent=ctx.parent)
    except ClickException as exc:
        problem = exc.format_message()
        raise UsageError(f"{path}: its command line does not parse: {problem}") from None
    params = {**stored.params, "output": path, "xml_output": None, "fmt": report.format}
    if ctx.get_parameter_source("quiet") is not ParameterSource.DEFAULT:
        params["quiet"] = ctx.params["quiet"]
    if params.get("resume") is not None:
        raise UsageError(f"{path}: its command line is itself a --resume")
    request = _request(argv, params)
    if not request.show_all:
        env.say(
            "warning: the report does not list closed ports (no --all), so they are "
            "probed again; use --all to make a scan fully resumable"
        )
    return replace(
        request,
        command=list(command),
        config=replace(request.config, seed=seed),
        resumed=report,
    )


@app.command("port", help="A reference card for one port: registry, attestation, local listeners.")
def port_command(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="The port number, 0-65535.", show_default=False)],
) -> None:
    from scanner.localinfo import listeners
    from scanner.portcard import build_card
    from scanner.registry import load_registry

    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    if not number.isascii() or not number.isdigit() or int(number) > 65535:
        raise UsageError(f"port must be a number from 0 to 65535, not {number!r}")
    port = int(number)
    try:
        found, hidden = listeners(port)
        can_list = True
    except PermissionError:
        found, hidden, can_list = [], False, False
    lines = build_card(port, load_registry(), found, hidden, can_list=can_list)
    env.stdout.write("\n".join(printable(line) for line in lines) + "\n")


@app.command("local", help="This machine's listening TCP and UDP sockets, with labels.")
def local_command(ctx: typer.Context) -> None:
    from tabulate import tabulate

    from scanner.localinfo import listeners
    from scanner.registry import attestation, load_registry

    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    registry = load_registry()
    try:
        found, hidden = listeners()
    except PermissionError as exc:
        raise ScanError(f"{exc}; run as root") from exc
    rows = []
    for item in found:
        label = registry.label(item.port, item.protocol)
        rows.append(
            (
                item.protocol,
                item.address,
                str(item.port),
                str(item.pid or "-"),
                printable(item.process or "-"),
                printable(label.service if label is not None else "-"),
                attestation(item.port, item.protocol, registry),
            )
        )
    headers = ("PROTO", "ADDRESS", "PORT", "PID", "PROCESS", "LABEL", "ATTESTATION")
    env.stdout.write(tabulate(rows, headers=headers, disable_numparse=True) + "\n")
    if hidden:
        env.stdout.write("Some owners are hidden: run as root to see other users' processes.\n")


@app.command("diff", help="What changed between two reports (any format): exit 0 none, 1 some.")
def diff_command(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The earlier report.", show_default=False)],
    new: Annotated[str, typer.Argument(help="The later report.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="Output: table, csv or json.")] = "table",
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write the diff to FILE.")
    ] = None,
) -> None:
    from scanner.report.diff import DIFF_FORMATS, diff_results, write_diff
    from scanner.report.read import read_report

    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    if fmt not in DIFF_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(DIFF_FORMATS)}, not {fmt!r}")
    changes = diff_results(read_report(old).results, read_report(new).results)
    if output is None:
        write_diff(changes, fmt, env.stdout, old=old, new=new)
    else:
        with AtomicOutput(output) as sink:
            write_diff(changes, fmt, sink.stream, old=old, new=new)
    raise typer.Exit(ExitStatus.CHANGED if changes else ExitStatus.SUCCESS)


@app.command("merge", help="Join the reports of a sharded scan into one report.")
def merge_command(
    ctx: typer.Context,
    files: Annotated[list[str], typer.Argument(help="Shard reports.", show_default=False)],
    output: Annotated[
        str | None,
        typer.Option(
            "-o", "--output", help="Write the merged report to FILE (format by extension)."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="Report format: table, csv, json, jsonl or xml."),
    ] = None,
) -> None:
    from scanner.report.merge import merge_reports, write_merged
    from scanner.report.read import read_report

    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt is None:
        fmt = format_for_path(output) if output is not None else "table"
    merged = merge_reports([(name, read_report(name)) for name in files])
    if merged.missing:
        env.say(f"warning: {merged.missing}: the merged report is marked incomplete")
    sink = AtomicOutput(output) if output is not None else None
    try:
        write_merged(
            merged,
            fmt,
            sink.stream if sink is not None else env.stdout,
            version=__version__,
            command=["portprobe", *env.argv],
        )
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    if sink is not None:
        sink.commit()
        env.say(f"merged {len(files)} reports, {len(merged.results)} results -> {output}")


registry_app = typer.Typer(help="The shipped IANA port registry: show, update, roll back.")
app.add_typer(registry_app, name="registry")


@registry_app.command("info", help="Where the registry data comes from, and how much of it.")
def registry_info(ctx: typer.Context) -> None:
    from scanner.registry import load_registry

    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    registry = load_registry()
    env.stdout.write(f"{len(registry)} records; {registry.source}; dated {registry.date}\n")


IANA_CSV = (
    "https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv"
)


@registry_app.command("update", help="Refresh the registry from IANA's CSV (or a local copy).")
def registry_update(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Option("--from", help="A file or URL of IANA's CSV.", show_default=False)
    ] = IANA_CSV,
) -> None:
    from scanner.registry import update_registry

    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    result = update_registry(source)
    before = f" (was {result.previous_records})" if result.previous_records is not None else ""
    env.stdout.write(f"registry updated: {result.records} records{before} -> {result.path}\n")


@registry_app.command("rollback", help="Go back to the registry data used before the last update.")
def registry_rollback(ctx: typer.Context) -> None:
    from scanner.registry import load_registry, rollback_registry

    env = ctx.obj if isinstance(ctx.obj, Environment) else Environment()
    path = rollback_registry()
    load_registry.cache_clear()
    registry = load_registry()
    env.stdout.write(f"registry rolled back to {path}: {len(registry)} records\n")


def _split_list(values: Sequence[str]) -> Iterator[str]:
    """Targets given as "a,b" or "a b" in one option value, when every piece is a target."""
    for value in values:
        pieces = value.replace(",", " ").split()
        try:
            for piece in pieces:
                parse_target(piece)
        except UsageError:
            yield value.strip()
        else:
            yield from pieces


def _validate(
    *,
    argv: list[str],
    targets: list[str],
    ports: str | None,
    top: int | None,
    targets_file: str | None,
    protocols: Sequence[Proto] = (),
    defeat_icmp_ratelimit: bool = False,
    exclude: list[str],
    exclude_file: str | None,
    output: str | None,
    fmt: str | None,
    show_all: bool,
    concurrency: int,
    rate: float | None,
    retries: int,
    timing: tuple[str, str, str],
    seed: int | None,
    workers: int | None,
    quiet: bool,
    evidence: bool = True,
    evidence_timeout: str = "2s",
    expect: str | None = None,
    shard: str | None = None,
) -> ScanRequest:
    """Turn raw options into a :class:`ScanRequest`; UsageError (exit 2) on any fault."""
    if ports is not None and top is not None:
        raise UsageError("use either -p/--ports or --top-ports, not both")
    protocols = list(protocols) or [Proto.TCP]
    if ports is not None:
        port_list = parse_port_spec(ports, protocols)
    else:
        count = 1000 if top is None else top
        port_list = [Port(p, n) for p in protocols for n in top_ports(count, p)]
    if defeat_icmp_ratelimit and not any(p.protocol is Proto.UDP for p in port_list):
        raise UsageError("--defeat-icmp-ratelimit is a UDP option: add --udp (or U: ports)")
    all_targets = list(targets)
    if targets_file is not None:
        all_targets += read_targets_file(targets_file)
    for target in all_targets:
        parse_target(target)
    if not all_targets:
        raise UsageError("no targets given (name them, or use -iL FILE)")
    excluded = list(_split_list(exclude))
    if exclude_file is not None:
        excluded += parse_exclude_file(exclude_file)
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt is None:
        fmt = format_for_path(output) if output is not None else "table"
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if rate is not None and not rate > 0:
        raise UsageError("--rate must be a positive number of probes per second")
    if retries < 0:
        raise UsageError("--retries must not be negative")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    floor, ceiling, initial = (
        parse_duration(timing[0], option="--min-rtt-timeout"),
        parse_duration(timing[1], option="--max-rtt-timeout"),
        parse_duration(timing[2], option="--initial-rtt-timeout"),
    )
    if floor > ceiling:
        raise UsageError("--min-rtt-timeout must not exceed --max-rtt-timeout")
    part = _parse_shard(shard) if shard is not None else Shard()
    if part.count > 1 and seed is None:
        raise UsageError(
            "--shard needs --seed: every shard must walk the same order (use one seed for all)"
        )
    policy = None
    if expect is not None:
        from scanner.policy import read_policy

        policy = read_policy(expect)
    config = ScanConfig(
        concurrency=concurrency,
        rate=rate,
        retries=retries,
        timing=Timing(min_rtt_timeout=floor, max_rtt_timeout=ceiling, initial_rtt_timeout=initial),
        seed=seed,
        workers=workers,
        defeat_icmp_ratelimit=defeat_icmp_ratelimit,
    )
    return ScanRequest(
        targets=all_targets,
        exclude=excluded,
        ports=port_list,
        config=config,
        output=output,
        format=fmt,
        show_all=show_all,
        quiet=quiet,
        command=["portprobe", *argv],
        evidence=evidence,
        evidence_timeout=parse_duration(evidence_timeout, option="--evidence-timeout"),
        policy=policy,
        shard=part,
    )


def _parse_shard(text: str) -> Shard:
    """``K/N`` (1 <= K <= N) as a :class:`Shard`; UsageError otherwise."""
    k, slash, n = text.strip().partition("/")
    if not (slash and k.isascii() and k.isdigit() and n.isascii() and n.isdigit()):
        raise UsageError(f"--shard must be K/N, such as 1/4, not {text[:20]!r}")
    index, count = int(k), int(n)
    if not 1 <= index <= count or count > 1_000_000:
        raise UsageError(f"--shard {index}/{count}: K must be from 1 to N (at most 1000000)")
    return Shard(index - 1, count)


def run_scan(request: ScanRequest, env: Environment) -> ExitStatus:
    """Run one scan as the command line does, writing to ``env``; returns the exit status."""
    sink: AtomicOutput | None = None
    if request.output is not None:
        sink = AtomicOutput(request.output)  # a bad path fails here, before any probe
    try:
        status = asyncio.run(_scan(request, env, sink))
    except KeyboardInterrupt:
        if sink is not None:
            sink.discard()
        env.say("interrupted before the scan started")
        return ExitStatus.INTERRUPTED
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    return status


async def _scan(request: ScanRequest, env: Environment, sink: AtomicOutput | None) -> ExitStatus:
    hosts, unresolved = await build_targets(
        request.targets, exclude=request.exclude, resolver=env.resolver
    )
    for name in unresolved:
        env.say(f"warning: cannot resolve {printable(name.name)}: {name.reason}; skipping it")
    if hosts.size == 0:
        if sink is not None:
            sink.discard()
        env.say("error: no hosts left to scan")
        return ExitStatus.ERROR
    from scanner.registry import registry_date

    done = _done(request.resumed)
    scan = Scan(
        hosts,
        request.ports,
        request.config,
        shard=request.shard,
        skip=(lambda address, port: (address, port.protocol.value, port.number) in done)
        if done
        else None,
    )
    loop = asyncio.get_running_loop()
    meta = ScanMeta(
        version=__version__,
        command=request.command,
        started=time.time(),
        seed=scan.seed,
        ports=format_port_spec(request.ports),
        hosts=hosts.size,
        shard=f"{request.shard.index + 1}/{request.shard.count}",
        registry_date=registry_date(),
        closed_listed=request.show_all,
    )
    to_stdout = request.format != "table" and sink is None
    writer: Writer | None = None
    stream: TextIO | None = sink.stream if sink is not None else None
    if request.format != "table":
        stream = stream if stream is not None else env.stdout
        try:
            writer = make_writer(request.format, stream, meta)
        except OSError as exc:  # stdout is a full disk or a closed pipe: nothing to scan for
            if sink is not None:
                sink.discard()
            env.say(f"error: {_write_failure(exc)}")
            return ExitStatus.ERROR
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, scan.stop)
    table = TableReport(show_all=request.show_all)
    output = _Output(table, writer, sink, request.policy)
    enrichment = _Enrichment(request, output.emit)
    summary = Summary(ports_per_host=len(request.ports))
    for old in request.resumed.results if request.resumed is not None else ():
        summary.add(old)
        output.emit(old)
    failure: ScanError | None = None
    progress = _Progress(scan, env) if env.stderr_isatty and not request.quiet else None
    probed = 0
    try:
        async for result in scan:
            if output.failure is not None:  # a write failed in an evidence task
                raise output.failure
            probed += 1
            summary.add(result)
            if request.show_all or result.state is not PortState.CLOSED:
                enrichment.add(result)
            elif writer is not None:
                writer.omit(result)
        await enrichment.finish(interrupted=scan.stats.interrupted)
        failure = output.failure
    except (ScanError, OSError) as exc:
        failure = _write_failure(exc)
        scan.stop()
        await enrichment.finish(interrupted=True)
    finally:
        if progress is not None:
            progress.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    ending = Ending(
        finished=time.time(),
        complete=not scan.stats.interrupted and failure is None,
        summary=summary,
    )
    try:
        if writer is not None:
            writer.close(ending)
        elif sink is not None:
            table.render(summary, sink.stream)
        if sink is not None:
            sink.commit()
    except (ScanError, OSError) as exc:
        failure = failure or _write_failure(exc)
    report = env.stderr if to_stdout else env.stdout
    if not to_stdout:
        try:
            table.render(summary, env.stdout)
        except OSError as exc:
            failure = failure or _write_failure(exc)
    if not request.quiet:
        for address, (burst, interval, measured) in scan.icmp_budgets().items():
            pace = f"one per {interval:.2f} s" if measured else "about one per second, assumed"
            env.say(
                f"note: {address} rate-limits its ICMP errors (a burst of {burst}, then {pace}); "
                "UDP probes to it were paced to that budget (--defeat-icmp-ratelimit trades "
                "accuracy for speed)"
            )
    elapsed = ending.finished - meta.started
    up = len(summary.hosts_answered)
    if failure is not None:
        env.say(f"error: {failure}")
        return ExitStatus.ERROR
    if scan.stats.interrupted:
        saved = f"; partial results saved to {request.output}" if request.output else ""
        report.write(
            f"portprobe interrupted: {scan.stats.done} of {scan.stats.total} probes finished "
            f"in {elapsed:.2f} s (seed {scan.seed}){saved}\n"
        )
        return ExitStatus.INTERRUPTED
    report.write(
        f"portprobe done: {hosts.size} host{'s' if hosts.size != 1 else ''} ({up} up), "
        f"{len(request.ports)} port{'s' if len(request.ports) != 1 else ''} each, "
        f"scanned in {elapsed:.2f} s (seed {scan.seed})\n"
    )
    if request.resumed is not None:
        report.write(
            f"portprobe resumed {request.output}: {len(request.resumed.results)} results "
            f"kept, {probed} ports probed now\n"
        )
    if output.violations:
        report.write(
            f"portprobe: {output.violations} open port{'s' if output.violations != 1 else ''} "
            "not allowed by the policy\n"
        )
        return ExitStatus.POLICY
    return ExitStatus.SUCCESS


def _write_failure(exc: BaseException) -> ScanError:
    """A failed write (disk full, a closed pipe) as the one-line error the user sees."""
    if isinstance(exc, ScanError):
        return exc
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ScanError(f"writing the report failed: {reason}")


def _done(report: Report | None) -> set[tuple[str, str, int]]:
    """The (host, protocol, port) keys an interrupted scan's report says are finished."""
    if report is None:
        return set()
    return {(r.host, r.protocol.value, r.port) for r in report.results}


class _Output:
    """Where finished results go: the terminal table, and the report writer if any."""

    FLUSH_EVERY = 0.5

    def __init__(
        self,
        table: TableReport,
        writer: Writer | None,
        sink: AtomicOutput | None,
        policy: Policy | None = None,
    ):
        self._table, self._writer, self._sink = table, writer, sink
        self._policy = policy
        self.violations = 0
        self._last_flush = time.monotonic()
        self.failure: ScanError | None = None

    def emit(self, result: Result) -> None:
        """Show and write one assessed result (the caller decided it is reported).

        A write that fails raises :class:`ScanError` and is kept in ``failure``: results
        are also emitted from evidence tasks and loop callbacks, where an exception
        would otherwise be lost, and a lost write is a silent loss.
        """
        if self._policy is not None:
            result = self._policy.mark(result)
            if result.assessment is not None and result.assessment.policy == "violation":
                self.violations += 1
        self._table.add(result)
        if self._writer is not None:
            try:
                self._writer.write(result)
                now = time.monotonic()
                if self._sink is not None and now - self._last_flush > self.FLUSH_EVERY:
                    self._sink.flush()
                    self._last_flush = now
            except (ScanError, OSError) as exc:
                self.failure = self.failure or _write_failure(exc)
                raise self.failure from exc


class _Enrichment:
    """Assesses reported results; open ports first wait for their evidence, in tasks.

    Evidence is gathered while the scan goes on. The registry (about 0.1 s to load) is
    loaded on a short-lived thread, started by the first reported result: by then any
    worker processes have been forked, and the parent is idle while they scan. Results
    wait in a list until it is ready. On an interruption the probes still running are
    cancelled and their ports reported without evidence (verdict unverified).
    """

    def __init__(self, request: ScanRequest, emit: Callable[[Result], None]) -> None:
        self._prober: Prober | None = None
        if request.evidence:  # h11, ssl and the decoders cost start-up time: only if needed
            from scanner.evidence import EvidenceConfig, Prober

            self._prober = Prober(EvidenceConfig(timeout=request.evidence_timeout))
        self._emit = emit
        self._assessor: Assessor | None = None
        self._loading: asyncio.Future[Assessor] | None = None
        self._waiting: list[tuple[Result, Evidence | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, result: Result) -> None:
        """Assess ``result`` now, or once its evidence (and the registry) is in."""
        if self._prober is not None and result.state is PortState.OPEN:
            task = asyncio.get_running_loop().create_task(self._probe(result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._assess(result, None)

    def _assess(self, result: Result, evidence: Evidence | None) -> None:
        if self._assessor is not None:
            self._emit(self._assessor.assess(result, evidence))
            return
        self._waiting.append((result, evidence))
        if self._loading is None:
            self._loading = self._load_registry()

    def _load_registry(self) -> asyncio.Future[Assessor]:
        from scanner.assess import Assessor

        loop = asyncio.get_running_loop()
        future: asyncio.Future[Assessor] = loop.create_future()

        def settle(value: Assessor | None, error: BaseException | None) -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
                return
            assert value is not None
            self._assessor = value
            waiting, self._waiting = self._waiting, []
            # The future must settle whatever happens here, or finish() would wait for it
            # forever. A failed write is kept by the output; any other error (the registry
            # reads data files lazily: out of descriptors) is raised by finish().
            try:
                for result, evidence in waiting:
                    self._emit(value.assess(result, evidence))
            except ScanError:
                pass
            except Exception as exc:
                future.set_exception(exc)
                return
            future.set_result(value)

        def work() -> None:
            # The parse is CPU work that can wait: let the kernel run the scan's worker
            # processes first (Linux threads have their own priority).
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            try:
                value = Assessor()
            except BaseException as exc:  # handed to the event loop, raised by finish()
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, value, None)

        threading.Thread(target=work, name="portprobe-registry", daemon=True).start()
        return future

    async def _probe(self, result: Result) -> None:
        assert self._prober is not None
        family = socket.AF_INET6 if ":" in result.host else socket.AF_INET
        try:
            if result.protocol is Proto.UDP:
                evidence = await self._prober.probe_udp(result.host, family, result.port)
            else:
                evidence = await self._prober.probe(result.host, family, result.port)
        except asyncio.CancelledError:
            self._assess(result, None)
            raise
        self._assess(result, evidence)

    async def finish(self, *, interrupted: bool) -> None:
        """Wait for the evidence still coming (or cancel it, when interrupted)."""
        if interrupted:
            for task in self._tasks:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        loading, self._loading = self._loading, None  # raises once, not on a second call
        if loading is not None:
            try:
                await loading
            except OSError as exc:
                raise ScanError(f"cannot load the port registry: {exc.strerror or exc}") from exc


class _Progress:
    """A progress bar with an ETA on stderr, shown once a scan has run for a second."""

    DELAY = 1.0

    def __init__(self, scan: Scan, env: Environment) -> None:
        self._scan = scan
        self._env = env
        self._bar: Any = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        await asyncio.sleep(self.DELAY)
        stats = self._scan.stats
        self._bar = Progress(
            TextColumn("scanning"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} probes"),
            TimeRemainingColumn(),
            console=Console(file=self._env.stderr),
            transient=True,
        )
        task = self._bar.add_task("scan", total=stats.total)
        with self._bar:
            while True:
                self._bar.update(task, completed=stats.done)
                await asyncio.sleep(0.2)

    def close(self) -> None:
        self._task.cancel()


def _configure_logging(env: Environment) -> None:
    handler = logging.StreamHandler(env.stderr)
    handler.setFormatter(logging.Formatter("portprobe: warning: %(message)s"))
    logger = logging.getLogger("scanner")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> NoReturn:
    """The console script: run the command line and exit with its status.

    ``argv`` defaults to ``sys.argv[1:]``; ``env`` (the streams and resolver) to the real ones.
    """
    env = env if env is not None else Environment()
    if argv is not None:
        env.argv = list(argv)
    _configure_logging(env)
    command = typer.main.get_command(app)
    if not (list(argv) if argv is not None else sys.argv[1:]):
        # Help, and one line saying why (Click would print the help as the error message).
        env.stdout.write(command.get_help(Context(command, info_name="portprobe")) + "\n")
        env.say("error: no command or target given")
        sys.exit(int(ExitStatus.USAGE))
    try:
        status = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="portprobe",
            standalone_mode=False,
            obj=env,
        )
    except ClickException as exc:
        env.say(f"error: {exc.format_message()}")
        status = ExitStatus.USAGE
    except PortprobeError as exc:
        env.say(f"error: {exc}")
        status = ExitStatus.USAGE if isinstance(exc, UsageError) else ExitStatus.ERROR
    except (KeyboardInterrupt, typer.Abort):
        env.say("interrupted")
        status = ExitStatus.INTERRUPTED
    try:
        sys.stdout.flush()
    except OSError as exc:  # a full disk or a closed pipe: the output is lost, so say so
        env.say(f"error: {_write_failure(exc)}")
        status = ExitStatus.ERROR
        _discard_stdout()
    except ValueError:
        pass  # stdout was closed: nothing buffered to lose
    sys.exit(int(status) if isinstance(status, int) else 0)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
