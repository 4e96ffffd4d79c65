"""Running one scan for the command line: the engine and the results pipeline, into reports.

The scan's results come from :class:`scanner.pipeline.Pipeline` already assessed; this
module only decides where they go (the terminal table, a report file, stdout), counts
them, and turns what happened into an exit status. Ctrl-C and SIGTERM stop the scan and
the evidence still running; every finished result is still written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace

from scanner import __version__
from scanner.cli.app import Environment, ExitStatus, write_failure
from scanner.cli.habits import Output, combine_skips, host_timeout_skip, ipv6_resolver
from scanner.cli.progress import Progress
from scanner.cli.request import ScanRequest
from scanner.engine import Scan, rare_collections
from scanner.errors import OutputClosed, ScanError
from scanner.models import ClosedPorts, EvidenceConfig, Port, Result
from scanner.pipeline import Pipeline
from scanner.ports import format_port_spec
from scanner.report import Ending, ScanMeta, Summary, TableReport, Writer, make_writer, printable
from scanner.report.files import AtomicOutput
from scanner.report.table import MAX_UNREACHABLE_LISTED, address_key
from scanner.targets import TargetSet, build_targets

__all__ = ["run_scan"]


def run_scan(request: ScanRequest, env: Environment) -> ExitStatus:
    """Run one scan as the command line does, writing to ``env``; returns the exit status."""
    sinks: list[AtomicOutput] = []
    try:
        for output in _outputs(request):
            if output.path is not None:  # a bad path fails here, before any probe
                sinks.append(AtomicOutput(output.path))
        with rare_collections():  # a scan makes objects by the million, and no cycles
            return asyncio.run(_scan(request, env, sinks))
    except KeyboardInterrupt:
        _discard(sinks)
        env.say("interrupted before the scan started")
        return ExitStatus.INTERRUPTED
    except BaseException:
        _discard(sinks)
        raise
    finally:
        if request.resumed is not None:
            request.resumed.close()


def _discard(sinks: list[AtomicOutput]) -> None:
    for sink in sinks:
        sink.discard()


def _outputs(request: ScanRequest) -> tuple[Output, ...]:
    """The reports to write: ``outputs``, or the one of ``output`` and ``format``."""
    if request.outputs:
        return request.outputs
    if request.output is not None or request.format != "table":
        return (Output(request.format, request.output),)
    return ()


class _Tee:
    """Several report writers as one."""

    def __init__(self, writers: list[Writer]) -> None:
        self.writers = writers

    def write(self, result: Result) -> None:
        for writer in self.writers:
            writer.write(result)

    def omit(self, result: Result) -> None:
        for writer in self.writers:
            writer.omit(result)

    def write_closed(self, block: ClosedPorts) -> None:
        for writer in self.writers:
            writer.write_closed(block)

    def omit_closed(self, block: ClosedPorts) -> None:
        for writer in self.writers:
            writer.omit_closed(block)

    def close(self, ending: Ending) -> None:
        for writer in self.writers:
            writer.close(ending)


async def _scan(request: ScanRequest, env: Environment, sinks: list[AtomicOutput]) -> ExitStatus:
    resolver = ipv6_resolver(env.resolver) if request.ipv6 else env.resolver
    hosts, unresolved = await build_targets(
        request.targets, exclude=request.exclude, resolver=resolver
    )
    for name in unresolved:
        env.say(f"warning: cannot resolve {printable(name.name)}: {name.reason}; skipping it")
    if hosts.size == 0:
        _discard(sinks)
        env.say("error: no hosts left to scan")
        return ExitStatus.ERROR
    if request.resumed is not None:
        from scanner.report.resume import describe_scan

        # An edited report must not mix other hosts' results into a file marked complete.
        request.resumed.check(str(request.output), hosts, request.ports)
        spec = format_port_spec(request.ports)
        env.say(describe_scan(request.targets, spec, request.resumed.kept))
    from scanner.registry import registry_date

    down: set[str] = set()
    if request.discover:
        down = await _discover(hosts, env, request.quiet)
    timed_out: set[str] = set()
    config = request.config
    host_skip = None
    if request.host_timeout is not None:
        # The parent must see every probe to drop a host: one process.
        config = replace(config, workers=1)
        host_skip = host_timeout_skip(request.host_timeout, timed_out)
    scan = Scan(
        hosts,
        request.ports,
        config,
        shard=request.shard,
        skip=combine_skips(
            _resumed_skip(request),
            (lambda address, port: address in down) if down else None,
            host_skip,
        ),
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
        extra={"verbose": request.verbose} if request.verbose else {},
    )
    outputs = _outputs(request)
    # A report on stdout is the output: the table and summary make way (summary: stderr).
    to_stdout = any(o.path is None and o.format != "table" for o in outputs)
    writers: list[Writer] = []
    files = iter(sinks)
    try:
        for wanted in outputs:
            if wanted.path is None and wanted.format == "table":
                continue  # -oN -: the terminal's table itself
            sink = next(files) if wanted.path is not None else None
            stream = sink.stream if sink is not None else env.stdout
            writers.append(make_writer(wanted.format, stream, meta))
    except OSError as exc:  # stdout is a full disk or a closed pipe: nothing to scan for
        _discard(sinks)
        return _failed(env, write_failure(exc))
    writer: Writer | None = None
    if writers:
        writer = writers[0] if len(writers) == 1 else _Tee(writers)
    pipeline = Pipeline(
        evidence=request.evidence,
        evidence_config=EvidenceConfig(timeout=request.evidence_timeout),
        closed=request.show_all,
        policy=request.policy,
    )

    def interrupt() -> None:
        scan.stop()
        pipeline.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupt)
    # The terminal's table. With -o FILE, --all goes to the file only: closed rows by the
    # thousand are for a file, and laying them out would cost more than the scan. -vv
    # shows every port on the terminal, as --all does without a file.
    every_row = (request.show_all and not sinks) or request.verbose >= 2
    table = (
        None
        if to_stdout
        else TableReport(
            show_all=every_row,
            reason=request.reason,
            registry_date=meta.registry_date,
            today=dt.datetime.now(dt.UTC).date(),
            explain=request.explain,
        )
    )
    output = _Output(table, writer, sinks, every_row=every_row)
    summary = Summary(ports_per_host=len(request.ports))
    failure: ScanError | None = None
    progress = Progress(scan, env, pipeline) if env.stderr_isatty and not request.quiet else None
    probed = 0
    try:
        resumed = request.resumed
        for old in resumed.results() if resumed is not None else ():  # (read again: streamed)
            summary.add(old)
            output.emit(old)
        if resumed is not None and writer is not None:
            # The closed ports the report probed and did not list: carried on, unlisted.
            for old in resumed.unlisted():
                summary.add(old)
                writer.omit(old)
        # Closed ports come in bulk from worker processes (ClosedPorts): without --all,
        # nothing is done per port for them but what a report must keep.
        async with contextlib.aclosing(pipeline.batches(scan)) as batches:
            async for batch in batches:
                for result in batch:
                    if type(result) is ClosedPorts:
                        probed += len(result)
                        summary.add_closed(result)
                        output.take_closed(result)
                        continue
                    assert isinstance(result, Result)
                    probed += 1
                    summary.add(result)
                    output.take(result)
    except (ScanError, OSError) as exc:
        failure = write_failure(exc)
        scan.stop()
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
        for sink in sinks:
            sink.commit()
            if request.recovered is not None:  # what a killed scan left is in the report now
                with contextlib.suppress(OSError):
                    os.unlink(request.recovered)
    except (ScanError, OSError) as exc:
        failure = failure or write_failure(exc)
        _discard(sinks)  # (a committed report stays; only leftovers go)
    report = env.stderr if to_stdout else env.stdout
    if table is not None:
        try:
            table.render(summary, env.stdout)
        except OSError as exc:
            failure = failure or write_failure(exc)
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
    for address in sorted(timed_out, key=address_key)[:MAX_UNREACHABLE_LISTED]:
        report.write(
            f"Host {address} timed out (--host-timeout): its other ports were not probed\n"
        )
    if len(timed_out) > MAX_UNREACHABLE_LISTED:
        report.write(f"... and {len(timed_out) - MAX_UNREACHABLE_LISTED} more hosts timed out\n")
    if down:
        report.write(
            f"{len(down)} host{'s' if len(down) != 1 else ''} found down (--discover) "
            f"{'were' if len(down) != 1 else 'was'} not scanned\n"
        )
    if request.verbose and not scan.stats.interrupted and elapsed > 0:
        report.write(
            f"portprobe timing: {scan.stats.done} probes in {elapsed:.2f} s "
            f"({scan.stats.done / elapsed:.0f} a second)\n"
        )
    if failure is not None:
        return _failed(env, failure)
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
            f"portprobe resumed {request.output}: {request.resumed.kept} results "
            f"kept, {probed} ports probed now\n"
        )
    if output.violations:
        report.write(
            f"portprobe: {output.violations} open port{'s' if output.violations != 1 else ''} "
            "not allowed by the policy\n"
        )
        return ExitStatus.POLICY
    return ExitStatus.SUCCESS


def _failed(env: Environment, failure: ScanError) -> ExitStatus:
    """Say why the scan failed (one line) and give its status; a closed output is quiet."""
    if isinstance(failure, OutputClosed):
        return ExitStatus.OUTPUT_CLOSED
    env.say(f"error: {failure}")
    return ExitStatus.ERROR


def _resumed_skip(request: ScanRequest) -> Callable[[str, Port], bool] | None:
    """What an interrupted scan's report says is finished: the ports it lists, and those
    its ``probed`` record names as closed (so a report without --all resumes too)."""
    return None if request.resumed is None else request.resumed.done


async def _discover(hosts: TargetSet, env: Environment, quiet: bool) -> set[str]:
    """--discover: the addresses of ``hosts`` found down."""
    from scanner.discovery import discover

    down: set[str] = set()
    async with contextlib.aclosing(discover(h.address for h in hosts)) as found:
        async for status in found:
            if not status.up:
                down.add(status.host)
    if down and not quiet:
        env.say(f"note: {len(down)} of {hosts.size} hosts found down by --discover: not scanned")
    return down


class _Output:
    """Where finished results go: the terminal table, and the report writer if any."""

    FLUSH_EVERY = 0.5

    def __init__(
        self,
        table: TableReport | None,
        writer: Writer | None,
        sinks: list[AtomicOutput],
        *,
        every_row: bool = False,
    ) -> None:
        self._table, self._writer, self._sinks = table, writer, sinks
        self._every_row = every_row
        self.violations = 0
        self._last_flush = time.monotonic()

    def emit(self, result: Result) -> None:
        """Show and write one assessed result; a failed write raises (ScanError, OSError)."""
        if result.assessment is not None and result.assessment.policy == "violation":
            self.violations += 1
        if self._table is not None:
            self._table.add(result)
        if self._writer is not None:
            self._writer.write(result)
            self._flush()

    def take(self, result: Result) -> None:
        """A result of the pipeline: shown and written if assessed (:meth:`emit`), else
        counted by the writer, and shown only where every row is (``every_row``)."""
        if result.assessment is not None:
            self.emit(result)
            return
        if self._every_row and self._table is not None:
            self._table.add(result)
        if self._writer is not None:
            self._writer.omit(result)

    def take_closed(self, block: ClosedPorts) -> None:
        """Show and write an assessed block of closed ports (as :meth:`emit` each of its
        results), or count it where it is not reported, in bulk."""
        shown = block.assessments is not None or self._every_row
        if shown and self._table is not None:
            self._table.add_closed(block)
        if self._writer is None:
            return
        if block.assessments is None:
            self._writer.omit_closed(block)
            return
        self._writer.write_closed(block)
        self._flush()

    def _flush(self) -> None:
        now = time.monotonic()
        if self._sinks and now - self._last_flush > self.FLUSH_EVERY:
            for sink in self._sinks:
                sink.flush()
            self._last_flush = now
