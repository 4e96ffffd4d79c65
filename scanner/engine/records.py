"""The binary record stream from a scan's worker processes back to the parent.

Rules and theory:
- A worker writes fixed-size binary records to a pipe: results (host index, port, state,
  reason, RTT, tries, time), then its counters, or an error message if it failed. The
  parent decodes whole records only; a truncated tail (a worker killed mid-write) is
  dropped.
- Closed ports, nearly every answer of a large scan, do not get a record each: a worker
  gathers them per (host, reason) in a :class:`ClosedBuffer` and sends one *block*
  record per (host, reason) at the end of each batch it writes (the same latency as a
  record each), with one timestamp, the flush time. A block is a header and two columns
  (``port | tries << 16`` as 32 bits, RTTs as float32) in the machine's own byte order
  (the stream never leaves the machine), which the parent takes with a copy each and
  splits in C, not in a loop.
- Everything is checked as it is decoded (kinds, state and reason codes, block sizes): a
  corrupt stream is an error, never an exception.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable
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
#: A block of closed ports: kind, host index, reason code, port count, timestamp; then two
#: columns, ``BLOCK_BYTES`` bytes a port: ``array("I")`` of ``port | tries << 16`` (one
#: append a port in the worker; two "H" columns to the parent) and ``array("f")`` RTTs.
CLOSED = struct.Struct("<cQBId")
_SIZES = {b"R": RESULT.size, b"C": COUNTERS.size, b"E": ERROR.size, b"K": CLOSED.size}
NO_RTT = -1.0  #: a record's RTT when there is none
#: The most ports one block record holds (a bigger buffer is sent as several blocks).
MAX_BLOCK = 65536
BLOCK_BYTES = 4 + 4
# Where a port and its tries are in the "H" view of the first column.
_PORT_AT, _TRIES_AT = (0, 1) if sys.byteorder == "little" else (1, 0)
_U32 = next(code for code in "IL" if array(code).itemsize == 4)  # ("I" on every Linux)


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


def encode_closed(
    host: int,
    reason: Reason,
    ports: array[int],
    rtts: array[float],
    tries: array[int],
    timestamp: float,
) -> bytes:
    """Closed ports of one host with one reason as block records (columns of equal length;
    tries above 255 count as 255, as in a result record)."""
    pairs = array(
        _U32, (port | min(count, 255) << 16 for port, count in zip(ports, tries, strict=True))
    )
    return _encode_block(host, REASON_CODE[reason], pairs, rtts, timestamp)


def _encode_block(
    host: int, code: int, pairs: array[int], rtts: array[float], timestamp: float
) -> bytes:
    """Block records of a worker's columns (more than ``MAX_BLOCK`` ports make several)."""
    if len(pairs) <= MAX_BLOCK:  # (the usual: no copies)
        return b"".join(
            (CLOSED.pack(b"K", host, code, len(pairs), timestamp), pairs.tobytes(), rtts.tobytes())
        )
    return b"".join(
        _encode_block(host, code, pairs[start : start + MAX_BLOCK],
                      rtts[start : start + MAX_BLOCK], timestamp)
        for start in range(0, len(pairs), MAX_BLOCK)
    )  # fmt: skip


class ClosedBuffer:
    """A worker's closed ports since its last batch, by (host index, reason): :meth:`add`
    each, :meth:`flush` at the end of each batch (see the module's rules)."""

    __slots__ = ("columns",)

    def __init__(self) -> None:
        #: ``host << 8 | reason code`` -> :func:`new_buffers`. The worker's hot path
        #: calls the appends directly (``engine.fanout``).
        self.columns: dict[int, Buffers] = {}

    def add(self, host: int, reason: Reason, port: int, rtt: float | None, tries: int) -> None:
        """Keep one closed port."""
        key = host << 8 | REASON_CODE[reason]
        columns = self.columns.get(key)
        if columns is None:
            columns = self.columns[key] = new_buffers()
        columns[0](port | min(tries, 255) << 16)
        columns[1](NO_RTT if rtt is None else rtt)

    def flush(self, timestamp: float) -> bytes:
        """Every port kept, as block records stamped ``timestamp``; the buffer is emptied."""
        if not self.columns:
            return b""
        data = b"".join(
            [_encode_block(key >> 8, key & 0xFF, pairs, rtts, timestamp)
             for key, (_, _, pairs, rtts) in self.columns.items()]
        )  # fmt: skip
        self.columns.clear()
        return data


Buffers = tuple[Callable[[int], None], Callable[[float], None], "array[int]", "array[float]"]


def new_buffers() -> Buffers:
    """A worker's empty columns of a block (``port | tries << 16``, RTTs): their ``append``
    (a bound method is one lookup less a port), then the columns themselves."""
    pairs, rtts = array(_U32), array("f")
    return pairs.append, rtts.append, pairs, rtts


class ClosedRecord(NamedTuple):
    """A decoded block of closed ports: the host is an index into the scan's host table."""

    host: int
    reason: Reason
    ports: array[int]
    rtts: array[float]
    tries: array[int]
    timestamp: float


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
        append, no_rtt, closed = records.append, NO_RTT, PortState.CLOSED
        for run in self.runs(data):
            if isinstance(run, ClosedRecord):
                for port, rtt, tries in zip(run.ports, run.rtts, run.tries, strict=True):
                    append(
                        ResultRecord(run.host, port, closed, run.reason,
                                     None if rtt < 0 else rtt, tries, run.timestamp)
                    )  # fmt: skip
                continue
            for _, host, port, state, reason, rtt, tries, stamp in RESULT.iter_unpack(run):
                append(
                    _make(
                        ResultRecord,
                        (host, port, STATES[state], REASONS[reason],
                         None if rtt == no_rtt else rtt, tries, stamp),
                    )
                )  # fmt: skip
        return records

    def runs(self, data: bytes) -> list[memoryview | ClosedRecord]:
        """The result records in ``pending + data``, in order: runs of whole result records
        with known state and reason codes, undecoded, for ``RESULT.iter_unpack`` (the
        parent's hot path: no object per record here), and blocks of closed ports.
        Counters and errors are taken in on the way; a corrupt stream is an error, and the
        rest of ``data`` is dropped.
        """
        buffer = self.pending + data if self.pending else data
        runs: list[memoryview | ClosedRecord] = []
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
            if kind == b"K":
                _, host, reason, count, stamp = CLOSED.unpack_from(buffer, offset)
                if reason >= len(REASONS) or not 0 < count <= MAX_BLOCK:
                    self.errors.append("corrupt worker stream (bad block of closed ports)")
                    offset = end
                    break
                start = offset + size
                if start + count * BLOCK_BYTES > end:
                    break
                rtts_at = start + 4 * count
                pairs, rtts = array("H"), array("f")
                view = memoryview(buffer)
                pairs.frombytes(view[start:rtts_at])
                rtts.frombytes(view[rtts_at : rtts_at + 4 * count])
                runs.append(
                    ClosedRecord(host, REASONS[reason], pairs[_PORT_AT::2], rtts,
                                 pairs[_TRIES_AT::2], stamp)
                )  # fmt: skip
                offset = rtts_at + 4 * count
                continue
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
