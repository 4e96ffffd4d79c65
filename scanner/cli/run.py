"""Running one scan for the command line: the engine and the results pipeline, into reports.

The scan's results come from :class:`scanner.pipeline.Pipeline` already assessed; this
module only decides where they go (the terminal table, a report file, stdout), counts
them, and turns what happened into an exit status. Ctrl-C and SIGTERM stop the scan and
the evidence still running; every finished result is still written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from scanner import __version__
from scanner.cli.app import Environment, ExitStatus, write_failure
from scanner.cli.progress import Progress
from scanner.cli.request import ScanRequest
from scanner.engine import Scan
from scanner.errors import OutputClosed, ScanError
from scanner.models import EvidenceConfig, Result
from scanner.pipeline import Pipeline
from scanner.ports import format_port_spec
from scanner.report import Ending, ScanMeta, Summary, TableReport, Writer, make_writer, printable
from scanner.report.files import AtomicOutput
from scanner.targets import build_targets

__all__ = ["run_scan"]


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
    if request.resumed is not None:
        from scanner.report.resume import check_results, describe_scan

        # An edited report must not mix other hosts' results into a file marked complete.
        check_results(str(request.output), request.resumed.results, hosts, request.ports)
        spec = format_port_spec(request.ports)
        env.say(describe_scan(request.targets, spec, len(request.resumed.results)))
    from scanner.registry import registry_date

    done = _done(request)
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
    to_stdout = request.format != "table" and sink is None  # the report is the output
    writer: Writer | None = None
    if sink is not None or to_stdout:
        try:
            writer = make_writer(
                request.format, sink.stream if sink is not None else env.stdout, meta
            )
        except OSError as exc:  # stdout is a full disk or a closed pipe: nothing to scan for
            if sink is not None:
                sink.discard()
            return _failed(env, write_failure(exc))
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
    # thousand are for a file, and laying them out would cost more than the scan.
    table = None if to_stdout else TableReport(show_all=request.show_all and sink is None)
    output = _Output(table, writer, sink)
    summary = Summary(ports_per_host=len(request.ports))
    failure: ScanError | None = None
    progress = Progress(scan, env) if env.stderr_isatty and not request.quiet else None
    probed = 0
    try:
        for old in request.resumed.results if request.resumed is not None else ():
            summary.add(old)
            output.emit(old)
        async with contextlib.aclosing(pipeline.run(scan)) as results:
            async for result in results:
                probed += 1
                summary.add(result)
                if result.assessment is not None:
                    output.emit(result)
                elif writer is not None:
                    writer.omit(result)
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
        if sink is not None:
            sink.commit()
            if request.recovered is not None:  # what a killed scan left is in the report now
                with contextlib.suppress(OSError):
                    os.unlink(request.recovered)
    except (ScanError, OSError) as exc:
        failure = failure or write_failure(exc)
        if sink is not None:
            sink.discard()  # the old report, if any, stays as it was
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


def _failed(env: Environment, failure: ScanError) -> ExitStatus:
    """Say why the scan failed (one line) and give its status; a closed output is quiet."""
    if isinstance(failure, OutputClosed):
        return ExitStatus.OUTPUT_CLOSED
    env.say(f"error: {failure}")
    return ExitStatus.ERROR


def _done(request: ScanRequest) -> set[tuple[str, str, int]]:
    """The (host, protocol, port) keys an interrupted scan's report says are finished."""
    if request.resumed is None:
        return set()
    return {(r.host, r.protocol.value, r.port) for r in request.resumed.results}


class _Output:
    """Where finished results go: the terminal table, and the report writer if any."""

    FLUSH_EVERY = 0.5

    def __init__(self, table: TableReport | None, writer: Writer | None, sink: AtomicOutput | None):
        self._table, self._writer, self._sink = table, writer, sink
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
            now = time.monotonic()
            if self._sink is not None and now - self._last_flush > self.FLUSH_EVERY:
                self._sink.flush()
                self._last_flush = now
