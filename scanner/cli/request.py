"""Building the scan request: the command line's options checked and turned into a config.

Every fault of the user's input is a :class:`~scanner.errors.UsageError`: one line, exit 2.
``--resume`` rebuilds the interrupted scan's request from its report, validated exactly as
the command line is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import click
import typer
from click.exceptions import ClickException

from scanner.cli.app import Environment
from scanner.cli.habits import Output, apply_nmap_options, outputs_of, require_ipv6
from scanner.errors import PolicyError, TargetFileError, UsageError
from scanner.models import MAX_WORKERS, EvidenceConfig, Port, Proto, ScanConfig, Timing
from scanner.plan import Shard
from scanner.ports import parse_port_spec, top_ports
from scanner.report import FORMATS
from scanner.targets import parse_exclude_file, parse_target, read_targets_file
from scanner.units import parse_duration

if TYPE_CHECKING:
    from scanner.policy import Policy
    from scanner.report.resume import Resumable

__all__ = ["ScanRequest", "build_request", "explicit_params", "parse_shard", "resume_request"]


def explicit_params(ctx: click.Context) -> frozenset[str]:
    """The options given on the command line (not defaults), by parameter name."""
    from click.core import ParameterSource

    return frozenset(
        name
        for name in ctx.params
        if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
    )


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
    evidence_timeout: float = EvidenceConfig().timeout
    explain: bool = False
    policy: Policy | None = None
    shard: Shard = Shard()
    resumed: Resumable | None = None  # the interrupted scan's report (--resume): close it
    recovered: str | None = None  # the temporary file of a killed scan it was read from
    # Every report to write (``output``/``format`` are the first, or None and "table"):
    outputs: tuple[Output, ...] = ()
    ping_only: bool = False  # -sn: host discovery, no port scan
    discover: bool = False  # --discover: skip the hosts found down
    verbose: int = 0  # -v, -vv
    reason: bool = False  # --reason (and -v): a REASON column
    host_timeout: float | None = None  # --host-timeout, seconds
    ipv6: bool = False  # -6: names resolve to IPv6 addresses


def build_request(
    argv: list[str], params: dict[str, Any], explicit: frozenset[str] = frozenset()
) -> ScanRequest:
    """The :class:`ScanRequest` for the scan command's parsed ``params``; UsageError (exit 2)
    on any fault. ``explicit`` names the options given (a timing template fills the rest)."""
    params = apply_nmap_options(params, explicit)
    fmt = params["fmt"]
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    outputs = outputs_of(params)
    ports, top = params["ports"], params["top"]
    protocols = [
        p for p, wanted in ((Proto.TCP, params["tcp"]), (Proto.UDP, params["udp"])) if wanted
    ]
    targets, targets_file = params["targets"] or [], params["targets_file"]
    exclude, exclude_file = params["exclude"] or [], params["exclude_file"]
    defeat_icmp_ratelimit = params["defeat_icmp_ratelimit"]
    concurrency, rate, retries = params["concurrency"], params["rate"], params["retries"]
    workers, seed, shard, expect = (
        params["workers"],
        params["seed"],
        params["shard"],
        params["expect"],
    )
    timing = (params["min_rtt"], params["max_rtt"], params["initial_rtt"])
    if ports is not None and top is not None:
        raise UsageError("use either -p/--ports or --top-ports, not both")
    protocols = protocols or [Proto.TCP]
    if ports is not None:
        port_list = parse_port_spec(ports, protocols)
    else:
        count = 1000 if top is None else top
        port_list = [Port(p, n) for p in protocols for n in top_ports(count, p)]
    if params.get("exclude_ports") is not None:
        from scanner.nmap_options import exclude_ports

        port_list = exclude_ports(port_list, params["exclude_ports"])
    if defeat_icmp_ratelimit and not any(p.protocol is Proto.UDP for p in port_list):
        raise UsageError("--defeat-icmp-ratelimit is a UDP option: add --udp (or U: ports)")
    all_targets = list(targets)
    if targets_file is not None:
        all_targets += read_targets_file(targets_file)
    for target in all_targets:
        parse_target(target)
    if not all_targets:
        raise UsageError("no targets given (name them, or use -iL FILE)")
    if params.get("ipv6"):
        require_ipv6(all_targets)
    excluded = list(_split_list(exclude))
    if exclude_file is not None:
        excluded += parse_exclude_file(exclude_file)
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if rate is not None and not rate > 0:
        raise UsageError("--rate must be a positive number of probes per second")
    if retries < 0:
        raise UsageError("--retries must not be negative")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be from 1 to {MAX_WORKERS}")
    floor, ceiling, initial = (
        parse_duration(timing[0], option="--min-rtt-timeout"),
        parse_duration(timing[1], option="--max-rtt-timeout"),
        parse_duration(timing[2], option="--initial-rtt-timeout"),
    )
    if floor > ceiling:
        raise UsageError("--min-rtt-timeout must not exceed --max-rtt-timeout")
    part = parse_shard(shard) if shard is not None else Shard()
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
        sequential=bool(params.get("sequential")),
    )
    host_timeout = params.get("host_timeout")
    verbose = int(params.get("verbose") or 0)
    primary = outputs[0] if outputs else None
    return ScanRequest(
        targets=all_targets,
        exclude=excluded,
        ports=port_list,
        config=config,
        output=primary.path if primary is not None else None,
        format=primary.format if primary is not None else "table",
        show_all=params["show_all"],
        quiet=params["quiet"],
        command=["portprobe", *argv],
        evidence=not params["no_evidence"],
        evidence_timeout=parse_duration(params["evidence_timeout"], option="--evidence-timeout"),
        explain=params.get("explain", False),
        policy=policy,
        shard=part,
        outputs=tuple(outputs),
        ping_only=bool(params.get("ping_scan")),
        discover=bool(params.get("discover")),
        verbose=verbose,
        reason=bool(params.get("reason")) or verbose > 0,
        host_timeout=None
        if host_timeout is None
        else parse_duration(str(host_timeout), option="--host-timeout"),
        ipv6=bool(params.get("ipv6")),
    )


def parse_shard(text: str) -> Shard:
    """``K/N`` (1 <= K <= N) as a :class:`Shard`; UsageError otherwise."""
    k, slash, n = text.strip().partition("/")
    if not (slash and k.isascii() and k.isdigit() and n.isascii() and n.isdigit()):
        raise UsageError(f"--shard must be K/N, such as 1/4, not {text[:20]!r}")
    index, count = int(k), int(n)
    if not 1 <= index <= count or count > 1_000_000:
        raise UsageError(f"--shard {index}/{count}: K must be from 1 to N (at most 1000000)")
    return Shard(index - 1, count)


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


def resume_request(ctx: typer.Context, env: Environment, path: str) -> ScanRequest:
    """The request that finishes the interrupted scan reported in ``path``.

    The scan's own command line and seed come from the report; the new report replaces
    ``path`` (atomically) and holds the old results and the new ones. The report is
    untrusted: :func:`scanner.report.resume.load_resumable` checks it, and its command
    line is validated as a typed one is (a file it names that does not parse is refused
    without showing the file's content: the report chose the file, not the user).
    """
    from click.core import ParameterSource

    from scanner.report.resume import load_resumable

    for name in ctx.params:
        if name not in ("resume", "quiet") and ctx.get_parameter_source(name) not in (
            ParameterSource.DEFAULT,
            None,
        ):
            raise UsageError("--resume takes no other options: the interrupted scan's are used")
    group = ctx.parent.command if ctx.parent is not None else None
    commands = getattr(group, "commands", {})
    stored_scan = load_resumable(path, commands)
    try:
        return _resumed(ctx, env, path, stored_scan)
    except BaseException:
        stored_scan.close()
        raise


def _resumed(
    ctx: typer.Context, env: Environment, path: str, stored_scan: Resumable
) -> ScanRequest:
    """The request of ``resume_request``, once the report is loaded."""
    from click.core import ParameterSource

    command, argv = stored_scan.command, stored_scan.argv
    if stored_scan.recovered is not None:
        env.say(f"recovering the results a killed scan left in {stored_scan.recovered}")
    try:
        stored = ctx.command.make_context("scan", list(argv), parent=ctx.parent)
    except ClickException as exc:
        problem = exc.format_message()
        raise UsageError(f"{path}: its command line does not parse: {problem}") from None
    params = {
        **stored.params,
        "output": path,
        "xml_output": None,
        "normal_output": None,
        "grep_output": None,
        "all_outputs": None,
        "fmt": stored_scan.format,
    }
    if ctx.get_parameter_source("quiet") is not ParameterSource.DEFAULT:
        params["quiet"] = ctx.params["quiet"]
    if params.get("resume") is not None:
        raise UsageError(f"{path}: its command line is itself a --resume")
    try:
        request = build_request(argv, params, explicit_params(stored))
    except TargetFileError as exc:
        where = f"{exc.path}:{exc.line}" if exc.line is not None else exc.path
        raise UsageError(
            f"{path}: its command line reads {where}, which does not give targets "
            "(its content is not shown: the report named it)"
        ) from None
    except PolicyError:
        raise UsageError(
            f"{path}: its command line names a policy file that does not parse "
            "(its content is not shown: the report named it)"
        ) from None
    if not request.show_all and not stored_scan.coverage.exact:
        env.say(
            "warning: the report does not record which closed ports it probed (an older "
            "report, without --all), so they are probed again"
        )
    return replace(
        request,
        command=list(command),
        config=replace(request.config, seed=stored_scan.seed),
        resumed=stored_scan,
        recovered=stored_scan.recovered,
    )
