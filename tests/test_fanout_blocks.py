"""Closed ports in bulk: the block records of the worker stream, and what the parent makes of
them (``ClosedPorts``), against the record-a-probe path they replace."""

from __future__ import annotations

import asyncio
import struct
from array import array
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.engine import Scan
from scanner.engine.base import Attempt, HostCache
from scanner.engine.fanout import _record, decode_results, recorder
from scanner.engine.records import (
    BLOCK_BYTES,
    CLOSED,
    MAX_BLOCK,
    REASONS,
    RESULT,
    ClosedBuffer,
    ClosedRecord,
    Decoder,
    encode_closed,
    encode_counters,
    encode_error,
    encode_result,
)
from scanner.engine.scan import expand
from scanner.models import ClosedPorts, Port, PortState, Proto, Reason, Result, ScanConfig
from scanner.targets import TargetSet, parse_target
from scanner.transport import Answer

HOSTS = TargetSet([parse_target("198.18.0.0/24")])

# (host, reason, ports, rtts, tries, timestamp); RTTs exact in float32, -1.0 for none.
BLOCKS = [
    (0, Reason.CONN_REFUSED, [1, 2, 3], [0.0001220703125, 0.5, -1.0], [1, 1, 2], 1795406400.25),
    (2**40, Reason.CONN_REFUSED, [65535], [0.0], [255], 0.0),
    (7, Reason.ERROR, [80, 443], [0.25, 0.75], [3, 1], 1.5),
]


def block_bytes(
    host: int, reason: Reason, ports: Any, rtts: Any, tries: Any, stamp: float
) -> bytes:
    return encode_closed(
        host, reason, array("H", ports), array("f", rtts), array("B", tries), stamp
    )


def as_records(block: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """What a record a probe would have said for each port of ``block``."""
    host, reason, ports, rtts, tries, stamp = block
    return [
        (host, port, PortState.CLOSED, reason, None if rtt < 0 else rtt, count, stamp)
        for port, rtt, count in zip(ports, rtts, tries, strict=True)
    ]


def test_a_block_decodes_to_the_records_of_its_ports() -> None:
    stream = b"".join(block_bytes(*b) for b in BLOCKS) + encode_counters(5, 2, 1, 512)
    decoder = Decoder()
    got = [tuple(r) for r in decoder.feed(stream)]
    assert got == [r for b in BLOCKS for r in as_records(b)]
    assert decoder.counters == (5, 2, 1, 512)
    assert decoder.pending == b"" and decoder.errors == []


def test_runs_give_blocks_in_stream_order() -> None:
    result = encode_result(0, 22, PortState.OPEN, Reason.SYN_ACK, 0.5, 1, 2.0)
    stream = result + block_bytes(*BLOCKS[0]) + result + encode_error("late")
    decoder = Decoder()
    runs = decoder.runs(stream)
    assert [type(run) for run in runs] == [memoryview, ClosedRecord, memoryview]
    block = runs[1]
    assert isinstance(block, ClosedRecord)
    assert (block.host, block.reason, list(block.ports), list(block.tries)) == (
        0, Reason.CONN_REFUSED, [1, 2, 3], [1, 1, 2],
    )  # fmt: skip
    assert list(block.rtts) == [0.0001220703125, 0.5, -1.0] and block.timestamp == 1795406400.25
    assert decoder.errors == ["late"]


def test_a_truncated_block_waits_for_the_rest() -> None:
    data = block_bytes(*BLOCKS[0])
    for cut in (1, CLOSED.size - 1, CLOSED.size, len(data) - 1):
        decoder = Decoder()
        assert decoder.runs(data[:cut]) == []
        assert decoder.pending == data[:cut] and decoder.errors == []
        assert [tuple(r) for r in decoder.feed(data[cut:])] == as_records(BLOCKS[0])


def _header(reason: int, count: int) -> bytes:
    return CLOSED.pack(b"K", 0, reason, count, 0.0)


@pytest.mark.parametrize(
    "stream",
    [
        _header(len(REASONS), 1) + b"\x00" * 7,  # no such reason
        _header(0x7F, 1) + b"\x00" * 7,
        _header(1, 0),  # an empty block: a worker never sends one
        _header(1, MAX_BLOCK + 1),  # more than a block may hold: not waited for
        _header(1, 0xFFFFFFFF),
    ],
)
def test_a_corrupt_block_is_an_error_not_an_exception(stream: bytes) -> None:
    decoder = Decoder()
    assert decoder.runs(stream + encode_counters(1, 1, 1, 1)) == []
    assert decoder.errors == ["corrupt worker stream (bad block of closed ports)"]
    assert decoder.pending == b"" and decoder.counters == (0, 0, 0, 0)


def test_a_big_buffer_is_split_into_blocks() -> None:
    count = MAX_BLOCK + 10
    ports = array("H", (p % 65536 for p in range(count)))
    data = encode_closed(3, Reason.CONN_REFUSED, ports, array("f", [0.5] * count),
                         array("B", [1] * count), 9.0)  # fmt: skip
    runs = Decoder().runs(data)
    assert [len(run.ports) for run in runs if isinstance(run, ClosedRecord)] == [MAX_BLOCK, 10]
    assert [p for run in runs if isinstance(run, ClosedRecord) for p in run.ports] == list(ports)


_reasons = st.sampled_from(list(Reason))
_blocks = st.integers(1, 20).flatmap(
    lambda n: st.tuples(
        st.integers(0, 2**64 - 1),
        _reasons,
        st.lists(st.integers(0, 65535), min_size=n, max_size=n),
        st.lists(st.sampled_from([-1.0, 0.0, 0.5, 0.0001220703125, 3.0]), min_size=n, max_size=n),
        st.lists(st.integers(0, 255), min_size=n, max_size=n),
        st.floats(0, 4e9),
    )
)
_results = st.tuples(
    st.integers(0, 2**64 - 1),
    st.integers(0, 65535),
    st.sampled_from(list(PortState)),
    _reasons,
    st.sampled_from([None, 0.0, 0.5]),
    st.integers(0, 255),
    st.floats(0, 4e9),
)


@given(
    st.lists(st.one_of(_blocks.map(lambda b: ("K", b)), _results.map(lambda r: ("R", r)))),
    st.lists(st.integers(0, 2000), max_size=4),
)
def test_any_stream_of_results_and_blocks_decodes_to_its_records_however_split(
    items: list[tuple[str, Any]], cuts: list[int]
) -> None:
    stream = b"".join(
        block_bytes(*body) if kind == "K" else encode_result(*body) for kind, body in items
    ) + encode_counters(1, 2, 3, 4)  # fmt: skip
    want = [r for kind, body in items for r in (as_records(body) if kind == "K" else [body])]
    decoder = Decoder()
    got: list[Any] = []
    start = 0
    for cut in sorted(cuts):
        got += decoder.feed(stream[start:cut])
        start = max(start, cut)
    got += decoder.feed(stream[start:])
    assert [tuple(r) for r in got] == want
    assert decoder.counters == (1, 2, 3, 4) and decoder.pending == b"" and not decoder.errors


@given(st.lists(st.one_of(st.binary(max_size=80), st.builds(_header, st.integers(0, 255),
                                                               st.integers(0, 2**32 - 1))),
                max_size=8))  # fmt: skip
def test_runs_never_raise_on_arbitrary_bytes(chunks: list[bytes]) -> None:
    decoder = Decoder()
    for chunk in chunks:
        for run in decoder.runs(chunk):
            if isinstance(run, ClosedRecord):
                assert 0 < len(run.ports) == len(run.rtts) == len(run.tries) <= MAX_BLOCK
            else:
                assert len(run) % RESULT.size == 0
    assert len(decoder.pending) < CLOSED.size + BLOCK_BYTES * MAX_BLOCK


# -- the worker's side ---------------------------------------------------------------------


def attempt(host: int, port: int, tries: int = 1) -> Attempt:
    return Attempt(host, None, Port(Proto.TCP, port), tries, 0, 0, 0.0, False)  # type: ignore[arg-type]


def test_a_worker_buffers_closed_ports_and_records_the_rest() -> None:
    buffer = ClosedBuffer()
    record = recorder(buffer)
    refused = Answer(PortState.CLOSED, Reason.CONN_REFUSED)
    opened = Answer(PortState.OPEN, Reason.SYN_ACK)
    assert record(attempt(5, 22), refused, 0.5) == b""
    assert record(attempt(5, 23, 300), refused, None) == b""
    assert record(attempt(6, 22), refused, 0.25) == b""
    assert record(attempt(5, 24, 2), Answer(PortState.CLOSED, Reason.ERROR), 0.5) == b""
    line = record(attempt(5, 80), opened, 0.5)
    assert line[:1] == b"R" and line[1:-8] == _record(attempt(5, 80), opened, 0.5)[1:-8]
    # What ClosedBuffer.add keeps, the inlined recorder keeps too.
    same = ClosedBuffer()
    same.add(5, Reason.CONN_REFUSED, 22, 0.5, 1)
    same.add(5, Reason.CONN_REFUSED, 23, None, 300)
    same.add(6, Reason.CONN_REFUSED, 22, 0.25, 1)
    same.add(5, Reason.ERROR, 24, 0.5, 2)
    data = buffer.flush(7.0)
    assert data == same.flush(7.0)
    assert buffer.flush(8.0) == b"" and not buffer.columns
    assert [tuple(r) for r in Decoder().feed(data)] == [
        (5, 22, PortState.CLOSED, Reason.CONN_REFUSED, 0.5, 1, 7.0),
        (5, 23, PortState.CLOSED, Reason.CONN_REFUSED, None, 255, 7.0),
        (6, 22, PortState.CLOSED, Reason.CONN_REFUSED, 0.25, 1, 7.0),
        (5, 24, PortState.CLOSED, Reason.ERROR, 0.5, 2, 7.0),
    ]


# -- the parent's side ---------------------------------------------------------------------


def test_blocks_become_closed_ports_with_the_results_of_records() -> None:
    """A block gives exactly the Results that a record a port gives, stamped alike."""
    block_runs = Decoder().runs(b"".join(block_bytes(*b) for b in BLOCKS[:1] + BLOCKS[2:]))
    record_runs = Decoder().runs(
        b"".join(encode_result(*r) for b in BLOCKS[:1] + BLOCKS[2:] for r in as_records(b))
    )
    hosts = HostCache(HOSTS)
    blocks: list[Result | ClosedPorts] = []
    singles: list[Result | ClosedPorts] = []
    assert decode_results(block_runs, hosts, blocks) == decode_results(record_runs, hosts, singles)
    assert [type(b) for b in blocks] == [ClosedPorts, ClosedPorts]
    assert [len(b) for b in blocks if isinstance(b, ClosedPorts)] == [3, 2]
    first = blocks[0]
    assert isinstance(first, ClosedPorts)
    assert (first.host, first.protocol, first.reason) == (
        "198.18.0.0",
        Proto.TCP,
        Reason.CONN_REFUSED,
    )
    assert expand(blocks) == singles
    assert all(type(r) is Result for r in expand(blocks))


def test_closed_ports_results_keep_their_assessments() -> None:
    from scanner.models import Assessment

    a, b = Assessment(label="x"), Assessment(label="y")
    block = ClosedPorts("198.18.0.1", "lab", Proto.TCP, Reason.CONN_REFUSED, array("H", [1, 2]),
                        array("f", [0.5, -1.0]), array("B", [1, 2]), 3.0)  # fmt: skip
    assert [r.assessment for r in block.assessed([a, b]).results()] == [a, b]
    closed, refused = PortState.CLOSED, Reason.CONN_REFUSED
    assert block.results() == [
        Result("198.18.0.1", 1, Proto.TCP, closed, refused, "lab", 0.5, 1, 3.0),
        Result("198.18.0.1", 2, Proto.TCP, closed, refused, "lab", None, 2, 3.0),
    ]


def test_header_layout_is_fixed() -> None:
    # kind, host index, reason code, count, timestamp; little-endian, unpadded
    assert CLOSED.size == struct.calcsize("<cQBId") == 22


# -- worker processes on loopback ----------------------------------------------------------


def test_workers_give_closed_ports_in_blocks_and_iteration_gives_results(listener: int) -> None:
    ports = sorted({*range(1, 3000), listener})
    hosts = TargetSet([parse_target("127.0.0.1-2")])

    async def blocks() -> tuple[list[Any], Scan]:
        scan = Scan(hosts, ports, ScanConfig(seed=4, workers=2))
        return [item async for batch in scan.batches(blocks=True) for item in batch], scan

    async def results() -> list[Result]:
        return [r async for r in Scan(hosts, ports, ScanConfig(seed=4, workers=2))]

    items, scan = asyncio.run(blocks())
    assert any(type(item) is ClosedPorts for item in items)
    expanded = expand(items)
    assert scan.stats.done == len(expanded) == 2 * len(ports)
    plain = asyncio.run(results())
    assert all(type(r) is Result for r in plain)

    def states(found: list[Result]) -> dict[tuple[str, int], tuple[str, str]]:
        return {(r.host, r.port): (r.state.value, r.reason.value) for r in found}

    assert states(expanded) == states(plain)
    assert states(plain)["127.0.0.1", listener] == ("open", "syn-ack")


def test_a_stopped_worker_sends_every_finished_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM stops a worker's sweep: every result it finished, closed ports still in
    their buffer included, reaches the pipe before it ends."""
    import os
    import signal
    import threading

    from scanner.engine import fanout
    from scanner.engine.base import ports_of
    from scanner.plan import Plan

    emitted = 0
    real = fanout.recorder

    def counting(closed: ClosedBuffer) -> Any:
        record = real(closed)

        def counted(attempt: Attempt, answer: Answer, rtt: float | None) -> bytes:
            nonlocal emitted
            emitted += 1
            return record(attempt, answer, rtt)

        return counted

    monkeypatch.setattr(fanout, "recorder", counting)
    hosts = TargetSet([parse_target("127.0.0.1-4")])
    plan = Plan(hosts.size, ports_of(range(1, 20001)), seed=1)
    read_fd, write_fd = os.pipe()
    received = bytearray()

    def drain() -> None:
        while data := os.read(read_fd, 1 << 16):
            received.extend(data)

    reader = threading.Thread(target=drain)
    reader.start()

    async def work() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await fanout.serve(write_fd, hosts, plan, ScanConfig(concurrency=256), None)

    previous = signal.getsignal(signal.SIGTERM)
    try:
        asyncio.run(work())
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(write_fd)
        reader.join(timeout=10)
        os.close(read_fd)
    decoder = Decoder()
    records = decoder.feed(bytes(received))
    assert not decoder.errors and decoder.pending == b""
    assert 0 < len(records) == emitted < plan.expected
    assert sum(r.state is PortState.CLOSED for r in records) > 0
    assert len({(r.host, r.port) for r in records}) == len(records)
