"""Big reports in bounded memory: an external sort of text lines, and a compact key set.

Rules:
- A line sorts by its text: callers put a fixed-width sort key first (:func:`sort_text`
  for a result's host, protocol and port), then a tab, then their payload, and end it
  with ``\\n`` (payloads hold no raw line break).
- At most :data:`RUN_LINES` lines are held in memory; beyond that they go, sorted, to a
  run in a temporary file, and the runs are merged (``heapq.merge``) when read. A million
  lines cost the memory of ``RUN_LINES``, whatever the input.
- Input that comes already in order (a CSV report, sorted by its writer) is appended to
  the run before it rather than opening a new one: it is read back as it was written.
- ``diff`` and ``merge`` sort through :class:`ExternalSort` (the CSV writer has its own
  runs, of its rows pickled: see :class:`scanner.report.writers.CsvWriter`).
- :class:`KeySet` holds (host, protocol, port) keys as a few bytes each: a host's ports
  are a set of numbers while they are few, and a bitmap of 16 KiB (both protocols' 65,536
  ports) beyond that. ``merge`` and ``--resume`` keep what a report lists in one.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

__all__ = ["RUN_LINES", "ExternalSort", "KeySet", "SortedRuns", "sort_prefix", "sort_text"]

#: Lines an :class:`ExternalSort` sorts in memory; more go to sorted runs on disk.
RUN_LINES = 50_000


def sort_prefix(address: tuple[int, bytes]) -> str:
    """A host's :func:`~scanner.report.table.address_key` as fixed-width text (65
    characters) that sorts the same way: the start of :func:`sort_text`."""
    version, packed = address
    return f"{version}{packed.hex():>64.64}"


def sort_text(key: tuple[Any, ...]) -> str:
    """``(address_key, protocol, port)`` as fixed-width text that sorts the same way,
    ending in a tab: :func:`sort_prefix`, the protocol in 4 characters, the port in 5."""
    address, protocol, port = key
    return f"{sort_prefix(address)}{protocol:<4}{port:05d}\t"


class SortedRuns:
    """Sorted runs of lines in temporary files, read back merged into one sorted stream."""

    def __init__(self) -> None:
        self._runs: list[IO[str]] = []
        self._last = ""  # the last line of the last run

    def __bool__(self) -> bool:
        return bool(self._runs)

    def new_run(self) -> IO[str]:
        """A new, empty run to write sorted lines to."""
        run = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115
        self._runs.append(run)
        return run

    def add(self, lines: list[str]) -> None:
        """Write ``lines`` (sorted) as a run; after the last run if they follow it."""
        if not lines:
            return
        run = self._runs[-1] if self._runs and self._last <= lines[0] else self.new_run()
        run.writelines(lines)
        self._last = lines[-1]

    def merged(self) -> Iterator[str]:
        """Every line of every run, in order (may be called again: it starts over)."""
        for run in self._runs:
            run.flush()
            run.seek(0)
        if len(self._runs) == 1:
            return iter(self._runs[0])
        return heapq.merge(*self._runs)

    def close(self) -> None:
        """Remove the runs."""
        for run in self._runs:
            run.close()
        self._runs = []


class ExternalSort:
    """Lines in, the same lines sorted out, in bounded memory (see the module rules)."""

    def __init__(self, run_lines: int | None = None) -> None:
        self._held: list[str] = []
        self._limit = run_lines or RUN_LINES
        self._runs = SortedRuns()
        self.count = 0

    def add(self, line: str) -> None:
        """Add one line (it ends with ``\\n``)."""
        self._held.append(line)
        self.count += 1
        if len(self._held) >= self._limit:
            self._spill()

    def extend(self, lines: Iterable[str]) -> None:
        """Add every line of ``lines``."""
        for line in lines:
            self.add(line)

    def _spill(self) -> None:
        self._held.sort()
        self._runs.add(self._held)
        self._held = []

    def sorted(self) -> Iterator[str]:
        """Every line added, in order; may be called again (add no more lines after)."""
        if not self._runs:
            self._held.sort()
            return iter(self._held)
        if self._held:
            self._spill()
        return self._runs.merged()

    def close(self) -> None:
        """Remove the temporary files."""
        self._held = []
        self._runs.close()

    def __enter__(self) -> ExternalSort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_UDP = 1 << 16  # a port's code in a KeySet: its number, plus this for UDP
_SMALL = 1024  # ports a host keeps as a set before it turns into a bitmap


class KeySet:
    """A set of (host, protocol, port) keys in little memory (see the module rules)."""

    def __init__(self) -> None:
        self._hosts: dict[str, set[int] | bytearray] = {}

    @staticmethod
    def _code(protocol: str, port: int) -> int:
        return port | _UDP if protocol == "udp" else port

    def add(self, host: str, protocol: str, port: int) -> None:
        """Add one key."""
        code = self._code(protocol, port)
        ports = self._hosts.get(host)
        if ports is None:
            self._hosts[host] = {code}
        elif isinstance(ports, set):
            ports.add(code)
            if len(ports) > _SMALL:
                bitmap = bytearray(2 * _UDP // 8)
                for each in ports:
                    bitmap[each >> 3] |= 1 << (each & 7)
                self._hosts[host] = bitmap
        else:
            ports[code >> 3] |= 1 << (code & 7)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 3:
            return False
        host, protocol, port = key
        ports = self._hosts.get(host)
        if ports is None:
            return False
        code = self._code(str(protocol), int(port))
        if isinstance(ports, set):
            return code in ports
        return bool(ports[code >> 3] & (1 << (code & 7)))

    def hosts(self) -> list[str]:
        """The hosts that have a key, in the order they came."""
        return list(self._hosts)

    def ports(self, host: str) -> Iterator[tuple[str, int]]:
        """The (protocol, port) keys of ``host``, TCP first, by number."""
        ports = self._hosts.get(host)
        if ports is None:
            return
        if isinstance(ports, set):
            codes: Iterable[int] = sorted(ports)
        else:
            codes = (
                index << 3 | bit
                for index, byte in enumerate(ports)
                if byte
                for bit in range(8)
                if byte & (1 << bit)
            )
        for code in codes:
            yield ("udp", code - _UDP) if code >= _UDP else ("tcp", code)
