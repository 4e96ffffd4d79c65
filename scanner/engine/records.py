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

#: The states and reasons by their codes in a record (their order in their enums).
STATES: list[PortState] = list(PortState)
REASONS: list[Reason] = list(Reason)
#: The codes of states and reasons in a record.
STATE_CODE = {state: i for i, state in enumerate(STATES)}
REASON_CODE = {reason: i for i, reason in enumerate(REASONS)}

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
# Where a result record's state and reason codes are (after kind, host and port).
_STATE_AT = struct.calcsize("<cQH")
_REASON_AT = _STATE_AT + 1
_make = tuple.__new__  # (skips the namedtuple's Python-level __new__: this is the hot path)


@dataclass(slots=True)
class Decoder:
    """Turns a worker's byte stream into records, keeping any incomplete tail for later."""

    pending: bytes = b""
    counters: tuple[int, int, int, int] = (0, 0, 0, 0)
    errors: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> list[ResultRecord]:
        """Decode every complete record in ``pending + data``; return the results."""
        records: list[ResultRecord] = []
        append, no_rtt = records.append, NO_RTT
        for run in self.runs(data):
            for _, host, port, state, reason, rtt, tries, stamp in RESULT.iter_unpack(run):
                append(
                    _make(
                        ResultRecord,
                        (host, port, STATES[state], REASONS[reason],
                         None if rtt == no_rtt else rtt, tries, stamp),
                    )
                )  # fmt: skip
        return records

    def runs(self, data: bytes) -> list[memoryview]:
        """The result records in ``pending + data``, undecoded: runs of whole records with
        known state and reason codes, for ``RESULT.iter_unpack`` (the parent's hot path:
        no object per record here). Counters and errors are taken in on the way; a corrupt
        stream is an error, and the rest of ``data`` is dropped.
        """
        buffer = self.pending + data if self.pending else data
        runs: list[memoryview] = []
        offset, end = 0, len(buffer)
        while offset < end:
            kind = buffer[offset : offset + 1]
            if kind == b"R":
                # A run of results (nearly the whole stream), found and checked in C loops:
                # the kind bytes of the whole records left, then their state and reason codes.
                whole = (end - offset) // _RESULT_SIZE
                if not whole:
                    break
                kinds = buffer[offset : offset + whole * _RESULT_SIZE : _RESULT_SIZE]
                stop = offset + (len(kinds) - len(kinds.lstrip(b"R"))) * _RESULT_SIZE
                if max(buffer[offset + _STATE_AT : stop : _RESULT_SIZE]) >= len(STATES) or max(
                    buffer[offset + _REASON_AT : stop : _RESULT_SIZE]
                ) >= len(REASONS):
                    self.errors.append("corrupt worker stream (unknown state or reason code)")
                    offset = end
                    break
                runs.append(memoryview(buffer)[offset:stop])
                offset = stop
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
        return runs
