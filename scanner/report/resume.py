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
"""

from __future__ import annotations

import os
from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass

from scanner.errors import ReportError
from scanner.models import Port, Result
from scanner.report.files import find_partial
from scanner.report.read import Report, read_report
from scanner.report.writers import SCHEMA_VERSION

__all__ = ["Resumable", "check_results", "describe_scan", "load_resumable"]

_MAX_SEED = 2**64
_NOT_SCAN_OPTIONS = frozenset({"--help", "-h", "--version"})


@dataclass(frozen=True, slots=True)
class Resumable:
    """An interrupted scan's report, checked: its ``argv`` (the words after ``scan``), the
    whole stored ``command``, its ``seed``, and ``recovered``, the temporary file of a
    crashed scan it was read from (None: the report itself)."""

    report: Report
    command: list[str]
    argv: list[str]
    seed: int
    recovered: str | None = None


def load_resumable(path: str, commands: Collection[str]) -> Resumable:
    """Read and check the report at ``path`` (or what a crash left beside it).

    ``commands`` are the command line's subcommand names: a stored command line that
    names one other than ``scan`` is refused. ReportError on any fault.
    """
    recovered = _newer_partial(path)
    report = read_report(recovered or path, torn_tail=True)
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
    return Resumable(report, list(command), argv, seed, recovered)


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
    path: str, results: Sequence[Result], hosts: Container[str], ports: Sequence[Port]
) -> None:
    """ReportError unless every result is of one of ``hosts`` and one of ``ports``."""
    probed = {(port.protocol, port.number) for port in ports}
    for result in results:
        if result.host not in hosts or (result.protocol, result.port) not in probed:
            raise ReportError(
                f"{path}: it holds a result for {result.host} {result.port}/"
                f"{result.protocol.value}, which its command line does not scan: "
                "not resuming a report that was edited or mixed"
            )


def describe_scan(targets: Sequence[str], port_spec: str, kept: int, limit: int = 60) -> str:
    """One line saying what a resumed scan will scan, for the user to see first."""
    shown = " ".join(targets)
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    ports = port_spec if len(port_spec) <= limit else port_spec[: limit - 3] + "..."
    return f"resuming: targets {shown}; ports {ports}; {kept} results kept"
