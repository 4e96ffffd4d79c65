"""Worker processes for one scan: fork, a binary record stream back, and a clean stop.

Rules and theory:
- A sweep is CPU-bound in one Python process (socket, connect and close dominate), so a
  scan may fan out to worker processes, each running the ordinary engine on its own shard
  of the same seeded plan. Shards are disjoint and cover the plan exactly (``scanner.plan``).
- Workers are forked, so they start in milliseconds and inherit the targets, the raised
  descriptor limit and the network namespace. A worker ignores SIGINT (the terminal sends
  it to the whole process group; the parent decides) and treats SIGTERM as "stop, send
  what is finished, exit", so an interrupted scan loses no finished result.
- A worker writes fixed-size binary records to a pipe: results (host index, port, state,
  reason, RTT, tries, time), then its counters, or an error message if it failed. The
  parent decodes whole records only; a truncated tail (a worker killed mid-write) is
  dropped. A worker gets SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``), and a
  write to a pipe whose reader is gone kills it anyway: no orphan scans on.
- Forking is done with SIGINT and SIGTERM held (:func:`signals_held`): a signal that comes
  while workers are being forked stops the forking at once (the caller checks between
  forks), and its handler runs as soon as they are released. A child starts with them
  held too, and releases them only once SIGTERM is its own: a SIGTERM sent in the
  instant after the fork is never lost, nor run by the parent's handler in the child.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from scanner.models import PortState, Reason

_STATES = list(PortState)
_REASONS = list(Reason)
_STATE_CODE = {state: i for i, state in enumerate(_STATES)}
_REASON_CODE = {reason: i for i, reason in enumerate(_REASONS)}

# kind byte, then the body: a result, the worker's counters, or an error's length.
RESULT = struct.Struct("<cQHBBfBd")
COUNTERS = struct.Struct("<cQQQQ")
ERROR = struct.Struct("<cI")
_SIZES = {b"R": RESULT.size, b"C": COUNTERS.size, b"E": ERROR.size}
_NO_RTT = -1.0


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
        b"R", host, port, _STATE_CODE[state], _REASON_CODE[reason],
        _NO_RTT if rtt is None else rtt, min(tries, 255), timestamp,
    )  # fmt: skip


def encode_counters(sent: int, retransmitted: int, deferred: int, concurrency: int) -> bytes:
    """A worker's final counters as a record."""
    return COUNTERS.pack(b"C", sent, retransmitted, deferred, concurrency)


def encode_error(message: str) -> bytes:
    """A worker's failure as a record."""
    text = message.encode("utf-8", "replace")[:4000]
    return ERROR.pack(b"E", len(text)) + text


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A decoded result: the host is an index into the scan's host table."""

    host: int
    port: int
    state: PortState
    reason: Reason
    rtt: float | None
    tries: int
    timestamp: float


@dataclass(slots=True)
class Decoder:
    """Turns a worker's byte stream into records, keeping any incomplete tail for later."""

    pending: bytes = b""
    counters: tuple[int, int, int, int] = (0, 0, 0, 0)
    errors: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> Iterator[ResultRecord]:
        """Decode every complete record in ``pending + data``; yield the results."""
        buffer = self.pending + data if self.pending else data
        offset, end = 0, len(buffer)
        while offset < end:
            kind = buffer[offset : offset + 1]
            size = _SIZES.get(kind)
            if size is None:
                self.errors.append(f"corrupt worker stream (record kind {kind!r})")
                offset = end
                break
            if offset + size > end:
                break
            if kind == b"R":
                _, host, port, state, reason, rtt, tries, stamp = RESULT.unpack_from(buffer, offset)
                if state >= len(_STATES) or reason >= len(_REASONS):
                    self.errors.append("corrupt worker stream (unknown state or reason code)")
                    offset = end
                    break
                yield ResultRecord(
                    host, port, _STATES[state], _REASONS[reason],
                    None if rtt == _NO_RTT else rtt, tries, stamp,
                )  # fmt: skip
            elif kind == b"C":
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


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent exits; exit now if it already has.

    (Linux ties this to the forking *thread*; the engine forks from the thread running
    its event loop, which outlives the workers.)
    """
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


@dataclass(slots=True)
class Worker:
    """A forked worker: its pid, the read end of its pipe, and its decoder."""

    pid: int
    fd: int
    decoder: Decoder = field(default_factory=Decoder)
    status: int | None = None

    def stop(self) -> None:
        """Ask the worker to stop and send what it has finished."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def reap(self, *, kill: bool = False) -> int:
        """Wait for the worker to exit (killing it first if asked); its exit status."""
        if self.status is None:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            try:
                _, raw = os.waitpid(self.pid, 0)
                self.status = os.waitstatus_to_exitcode(raw)
            except ChildProcessError:
                self.status = 0
        return self.status


_HELD = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def signals_held() -> Iterator[Callable[[], bool]]:
    """Hold SIGINT and SIGTERM while forking; yields a check: has one of them come?

    On leaving, the signals are released and any that came is handled as usual.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield lambda: bool(signal.sigpending() & _HELD)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def fork_worker(body: Callable[[int], None]) -> Worker:
    """Fork a worker that runs ``body(write_fd)`` and exits; the parent gets its Worker.

    In the child, SIGINT is ignored, SIGTERM is left for ``body`` to handle, the parent's
    signal wakeup descriptor is dropped, and any exception becomes an error record and
    exit status 1. The child never returns into the caller.
    """
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return Worker(pid, read_fd)
    code = 0
    try:
        os.close(read_fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        # Held by the parent's signals_held(): a SIGTERM that came meanwhile ends us now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
        _die_with_parent(parent)
        body(write_fd)
    except BaseException as exc:  # reported to the parent through the pipe, never raised
        code = 1
        with contextlib.suppress(OSError):
            os.write(write_fd, encode_error(f"{type(exc).__name__}: {exc}"))
    finally:
        os._exit(code)
