"""``-sn``: a host discovery and no port scan, into the same outputs as a scan."""

from __future__ import annotations

import asyncio
import contextlib
import time

from scanner import __version__
from scanner.cli.app import Environment, ExitStatus, write_failure
from scanner.cli.habits import Output, stop_on_signals
from scanner.cli.request import ScanRequest
from scanner.errors import ScanError
from scanner.report import ScanMeta, printable
from scanner.report.files import AtomicOutput
from scanner.targets import Resolver, build_targets

__all__ = ["run", "run_ping_scan"]


def run(request: ScanRequest, env: Environment) -> ExitStatus:
    """``-sn`` for a scan request: its targets, exclusions, outputs and verbosity."""
    from scanner.cli.habits import ipv6_resolver

    return run_ping_scan(
        targets=request.targets,
        exclude=request.exclude,
        outputs=list(request.outputs),
        command=request.command,
        env=env,
        resolver=ipv6_resolver(env.resolver) if request.ipv6 else env.resolver,
        verbose=request.verbose,
        reason=request.reason,
    )


def run_ping_scan(
    *,
    targets: list[str],
    exclude: list[str],
    outputs: list[Output],
    command: list[str],
    env: Environment,
    resolver: Resolver | None,
    verbose: int = 0,
    reason: bool = False,
) -> ExitStatus:
    """Find which of ``targets`` are up; write the table (unless a report takes stdout) and
    every report of ``outputs``; the exit status."""
    sinks = [AtomicOutput(o.path) for o in outputs if o.path is not None]  # bad paths fail now
    try:
        return asyncio.run(
            _ping(targets, exclude, outputs, sinks, command, env, resolver, verbose, reason)
        )
    except BaseException:
        for sink in sinks:
            sink.discard()
        raise


async def _ping(
    targets: list[str],
    exclude: list[str],
    outputs: list[Output],
    sinks: list[AtomicOutput],
    command: list[str],
    env: Environment,
    resolver: Resolver | None,
    verbose: int,
    reason: bool,
) -> ExitStatus:
    from scanner.discovery import discover
    from scanner.report.hosts import write_hosts

    hosts, unresolved = await build_targets(targets, exclude=exclude, resolver=resolver)
    for name in unresolved:
        env.say(f"warning: cannot resolve {printable(name.name)}: {name.reason}; skipping it")
    if hosts.size == 0:
        for unused in sinks:
            unused.discard()
        env.say("error: no hosts left to scan")
        return ExitStatus.ERROR
    started = time.time()
    stopped = asyncio.Event()
    undo = stop_on_signals(asyncio.get_running_loop(), stopped.set)
    statuses = []
    try:
        async with contextlib.aclosing(discover(h.address for h in hosts)) as found:
            async for status in found:
                statuses.append(status)
                if stopped.is_set():
                    break
    finally:
        undo()
    finished = time.time()
    complete = not stopped.is_set()
    meta = ScanMeta(
        version=__version__,
        command=command,
        started=started,
        seed=0,
        ports="",
        hosts=hosts.size,
        extra={"mode": "host discovery (-sn)"},
    )
    failure: ScanError | None = None
    to_stdout = next((o for o in outputs if o.path is None), None)
    files = iter(sinks)
    for output in outputs:
        sink: AtomicOutput | None = next(files) if output.path is not None else None
        stream = sink.stream if sink is not None else env.stdout
        try:
            write_hosts(
                statuses,
                output.format,
                stream,
                meta,
                finished=finished,
                complete=complete,
                verbose=verbose,
                reason=reason,
            )
            if sink is not None:
                sink.commit()
        except (ScanError, OSError) as exc:
            failure = failure or write_failure(exc)
    report = env.stderr if to_stdout is not None else env.stdout
    if to_stdout is None:
        write_hosts(
            statuses, "table", env.stdout, meta, finished=finished, verbose=verbose, reason=reason
        )
    if failure is not None:
        env.say(f"error: {failure}")
        return ExitStatus.ERROR
    up = sum(s.up for s in statuses)
    elapsed = finished - started
    word = "interrupted" if not complete else "done"
    report.write(
        f"portprobe {word}: {len(statuses)} IP address{'es' if len(statuses) != 1 else ''}"
        f" ({up} host{'s' if up != 1 else ''} up) scanned in {elapsed:.2f} s\n"
    )
    return ExitStatus.SUCCESS if complete else ExitStatus.INTERRUPTED
