"""The binary record stream from a scan's worker processes back to the parent.

Rules and theory:
- A worker writes fixed-size binary records to a pipe: results (host index, port, state,
  reason, RTT, tries, time), then its counters, or an error message if it failed. The
  parent decodes whole records only; a truncated tail (a worker killed mid-write) is
  dropped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from scanner.models import PortState, Reason

_STATES = list(PortState)
_REASONS = list(Reason)
#: The codes of states and reasons in a record (their order in their enums).
STATE_CODE = {state: i for i, state in enumerate(_STATES)}
REASON_CODE = {reason: i for i, reason in enumerate(_REASONS)}

# kind byte, then the body: a result, the worker's counters, or an error's length.
RESULT = struct.Struct("<cQHBBfBd")
COUNTERS = struct.Struct("<cQQQQ")
ERROR = struct.Struct("<cI")
_SIZES = {b"R": RESULT.size, b"C": COUNTERS.size, b"E": ERROR.size}
NO_RTT = -1.0  #: a record's RTT when there is none


def encode_result(
    host: int,
    port: int,
    state: PortState,
    reason: Reason,
    rtt: float | None,
    tries: int,
    timestamp: float,
) -> bytes:
    """One result as a record."""
    return RESULT.pack(
        b"R", host, port, STATE_CODE[state], REASON_CODE[reason],
        NO_RTT if rtt is None else rtt, min(tries, 255), timestamp,
    )  # fmt: skip


def encode_counters(sent: int, retransmitted: int, deferred: int, concurrency: int) -> bytes:
    """A worker's final counters as a record."""
    return COUNTERS.pack(b"C", sent, retransmitted, deferred, concurrency)


def encode_error(message: str) -> bytes:
    """A worker's failure as a record."""
    text = message.encode("utf-8", "replace")[:4000]
    return ERROR.pack(b"E", len(text)) + text


class ResultRecord(NamedTuple):
    """A decoded result: the host is an index into the scan's host table."""

    host: int
    port: int
    state: PortState
    reason: Reason
    rtt: float | None
    tries: int
    timestamp: float


_RESULT_SIZE = RESULT.size
_make = tuple.__new__  # (skips the namedtuple's Python-level __new__: this is the hot path)


@dataclass(slots=True)
class Decoder:
    """Turns a worker's byte stream into records, keeping any incomplete tail for later."""

    pending: bytes = b""
    counters: tuple[int, int, int, int] = (0, 0, 0, 0)
    errors: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> list[ResultRecord]:
        """Decode every complete record in ``pending + data``; return the results."""
        buffer = self.pending + data if self.pending else data
        records: list[ResultRecord] = []
        offset, end = 0, len(buffer)
        while offset < end:
            kind = buffer[offset : offset + 1]
            if kind == b"R":
                # A run of results (nearly the whole stream), unpacked in one C loop.
                count = (end - offset) // _RESULT_SIZE
                if not count:
                    break
                view = memoryview(buffer)[offset : offset + count * _RESULT_SIZE]
                try:
                    offset = self._results(view, offset, records)
                except IndexError:
                    self.errors.append("corrupt worker stream (unknown state or reason code)")
                    offset = end
                continue
            size = _SIZES.get(kind)
            if size is None:
                self.errors.append(f"corrupt worker stream (record kind {kind!r})")
                offset = end
                break
            if offset + size > end:
                break
            if kind == b"C":
                self.counters = COUNTERS.unpack_from(buffer, offset)[1:]
            else:
                (length,) = ERROR.unpack_from(buffer, offset)[1:]
                if offset + size + length > end:
                    break
                text = buffer[offset + size : offset + size + length]
                self.errors.append(text.decode("utf-8", "replace"))
                offset += length
            offset += size
        self.pending = buffer[offset:]
        return records

    @staticmethod
    def _results(view: memoryview, offset: int, records: list[ResultRecord]) -> int:
        """Append the results at the head of ``view`` (which starts at ``offset``) to
        ``records``, up to the first record of another kind; the offset after them.

        Raises IndexError for an unknown state or reason code.
        """
        states, reasons, no_rtt, append = _STATES, _REASONS, NO_RTT, records.append
        taken = 0
        for kind, host, port, state, reason, rtt, tries, stamp in RESULT.iter_unpack(view):
            if kind != b"R":
                break
            append(
                _make(
                    ResultRecord,
                    (host, port, states[state], reasons[reason],
                     None if rtt == no_rtt else rtt, tries, stamp),
                )
            )  # fmt: skip
            taken += 1
        return offset + taken * _RESULT_SIZE
