"""What ``--resume`` may take from a report: the stored command, seed and results, checked.

Rules:
- A report handed to ``--resume`` is untrusted input like any other (it may have been
  edited, or written by someone else). What it says is checked before anything runs:
  its schema is one this version writes or reads (1 to :data:`SCHEMA_VERSION`); its
  command line is a list of text words, run by portprobe, of the ``scan`` command (a
  stored ``diff a b`` would otherwise have sent ``diff``, ``a`` and ``b`` to DNS as
  targets), and not itself a ``--resume`` (nor ``--help``); its seed is a whole number
  of at most 64 bits. The command line's options are then validated by the caller
  exactly as typed ones are.
- The results kept must be results of that scan: every one must be of a host the command
  line scans and a port it probes. Otherwise the new report would mix other hosts' results
  into a file marked complete.
- The report is found where a crash left it: a scan killed by SIGKILL or a power loss
  leaves its results in a hidden temporary file beside the report
  (:func:`scanner.report.files.find_partial`); a newer one of those is preferred.
- Memory does not grow with the report: it is read twice as a stream, through one open
  file. First, when it is loaded, to check it and note which ports it lists (a
  :class:`~scanner.report.runs.KeySet`: a few bytes a port); then, as the new report is
  written, to carry its results over. A report that changes between the two readings
  fails the scan.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from scanner.errors import ReportError, ScanError
from scanner.models import Port, Proto, Result
from scanner.report.files import find_partial
from scanner.report.probed import Coverage
from scanner.report.read import ReportStream, open_report
from scanner.report.runs import KeySet
from scanner.report.writers import SCHEMA_VERSION

__all__ = ["Resumable", "check_keys", "check_results", "describe_scan", "load_resumable"]

_MAX_SEED = 2**64
_NOT_SCAN_OPTIONS = frozenset({"--help", "-h", "--version"})


@dataclass(slots=True)
class Resumable:
    """An interrupted scan's report, checked: its ``argv`` (the words after ``scan``), the
    whole stored ``command``, its ``seed``, and ``recovered``, the temporary file of a
    crashed scan it was read from (None: the report itself). ``format``, ``coverage``
    and ``kept`` (the number of results) are the report's; ``listed`` its keys.
    :meth:`results` reads the results again; :meth:`close` closes the file."""

    command: list[str]
    argv: list[str]
    seed: int
    format: str
    coverage: Coverage
    kept: int
    listed: KeySet
    recovered: str | None = None
    _stream: ReportStream | None = field(default=None, repr=False)

    def results(self) -> Iterator[Result]:
        """The report's results, read again from the file it was loaded from.

        ScanError if the file no longer holds what it held when it was loaded.
        """
        if self._stream is None:
            return
        again = self._stream.again()
        count = 0
        try:
            for result in again.results():
                if (result.host, result.protocol.value, result.port) not in self.listed:
                    break
                count += 1
                yield result
        except ReportError:
            pass
        if count != self.kept or again.count != self.kept:
            raise ScanError(f"{self._stream.name} changed while the scan was resumed")

    def unlisted(self) -> Iterator[Result]:
        """The closed ports the report probed and did not list, as results without RTT or
        time: carried over, unlisted, into the new report."""
        return self.coverage.closed_unlisted(self.listed)

    def done(self, address: str, port: Port) -> bool:
        """Whether the report says ``port`` of ``address`` is finished: listed, or named as
        probed by its ``probed`` record."""
        key = (address, port.protocol.value, port.number)
        return key in self.listed or self.coverage.probed(address, port)

    def check(self, path: str, hosts: Container[str], ports: Sequence[Port]) -> None:
        """ReportError unless every result is of one of ``hosts`` and one of ``ports``."""
        check_keys(path, self.listed, hosts, ports)

    def close(self) -> None:
        """Close the report's file."""
        if self._stream is not None:
            self._stream.close()


def load_resumable(path: str, commands: Collection[str]) -> Resumable:
    """Read and check the report at ``path`` (or what a crash left beside it).

    ``commands`` are the command line's subcommand names: a stored command line that
    names one other than ``scan`` is refused. ReportError on any fault. The file stays
    open for :meth:`Resumable.results`: close the :class:`Resumable`.
    """
    recovered = _newer_partial(path)
    stream = open_report(recovered or path, torn_tail=True)
    try:
        listed = KeySet()
        for result in stream.results():
            listed.add(result.host, result.protocol.value, result.port)
        found = _check(path, stream, commands)
        return Resumable(
            command=found[0],
            argv=found[1],
            seed=found[2],
            format=stream.format,
            coverage=stream.coverage,
            kept=stream.count,
            listed=listed,
            recovered=recovered,
            _stream=stream,
        )
    except BaseException:
        stream.close()
        raise


def _check(
    path: str, report: ReportStream, commands: Collection[str]
) -> tuple[list[str], list[str], int]:
    """The stored command line, its words after ``scan``, and the seed, checked."""
    if report.format not in ("json", "jsonl"):
        raise ReportError(
            f"{path}: --resume needs a JSON or JSON Lines report (they record the scan's "
            f"command line), not {report.format}"
        )
    meta = report.meta
    schema = meta.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= SCHEMA_VERSION:
        raise ReportError(
            f"{path}: report schema {str(schema)[:20]!r} is not one this version reads "
            f"(1 to {SCHEMA_VERSION})"
        )
    command, seed = meta.get("command"), meta.get("seed")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(word, str) for word in command)
        or isinstance(seed, bool)
        or not isinstance(seed, int)
    ):
        raise ReportError(f"{path}: the report does not record its command line and seed")
    if not 0 <= seed < _MAX_SEED:
        raise ReportError(f"{path}: the recorded seed is not a 64-bit number")
    if command[0] != "portprobe":
        raise ReportError(f"{path}: the recorded command line is not portprobe's")
    if report.complete:
        raise ReportError(f"{path}: that scan finished; there is nothing to resume")
    argv = list(command[1:])
    if argv[:1] == ["scan"]:
        argv = argv[1:]
    elif argv[:1] and argv[0] in commands:
        raise ReportError(f"{path}: the recorded command line is not a scan ({argv[0]!r})")
    if any(word == "--resume" or word.startswith("--resume=") for word in argv):
        raise ReportError(f"{path}: its command line is itself a --resume")
    if any(word in _NOT_SCAN_OPTIONS for word in argv):
        raise ReportError(f"{path}: its command line asks for help or the version, not a scan")
    return list(command), argv, seed


def _newer_partial(path: str) -> str | None:
    """The temporary file of a crashed scan beside ``path``, if it is newer than ``path``."""
    partial = find_partial(path)
    if partial is None:
        return None
    try:
        if os.stat(partial).st_mtime <= os.stat(path).st_mtime:
            return None
    except FileNotFoundError:
        pass  # the crash left only the temporary file
    except OSError:
        return None
    return partial


def check_results(
    path: str, results: Iterable[Result], hosts: Container[str], ports: Sequence[Port]
) -> None:
    """ReportError unless every result is of one of ``hosts`` and one of ``ports``."""
    listed = KeySet()
    for result in results:
        listed.add(result.host, result.protocol.value, result.port)
    check_keys(path, listed, hosts, ports)


def check_keys(path: str, listed: KeySet, hosts: Container[str], ports: Sequence[Port]) -> None:
    """ReportError unless every key of ``listed`` is of one of ``hosts`` and ``ports``."""
    probed = {(port.protocol.value, port.number) for port in ports}
    for host in listed.hosts():
        for protocol, number in listed.ports(host):
            if host not in hosts or (protocol, number) not in probed:
                raise ReportError(
                    f"{path}: it holds a result for {host} {number}/{Proto(protocol).value}, "
                    "which its command line does not scan: "
                    "not resuming a report that was edited or mixed"
                )


def describe_scan(targets: Sequence[str], port_spec: str, kept: int, limit: int = 60) -> str:
    """One line saying what a resumed scan will scan, for the user to see first."""
    shown = " ".join(targets)
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    ports = port_spec if len(port_spec) <= limit else port_spec[: limit - 3] + "..."
    return f"resuming: targets {shown}; ports {ports}; {kept} results kept"
