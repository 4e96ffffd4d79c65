"""Worker processes: the record codec, failures, and equivalence with a one-process scan."""

from __future__ import annotations

import asyncio
import csv
import os
import signal
import time
from pathlib import Path
from typing import Any

import netlab
import pytest
from conftest import PORTPROBE, SESSION_LAB_FILTERED_TCP, SESSION_LAB_TCP, portprobe
from hypothesis import given
from hypothesis import strategies as st

from scanner.engine import Scan
from scanner.engine.base import Attempt, HostCache
from scanner.engine.fanout import _record, decode_results
from scanner.engine.records import Decoder, encode_counters, encode_error, encode_result
from scanner.errors import ScanError
from scanner.models import Port, PortState, Proto, Reason, Result, ScanConfig
from scanner.targets import TargetSet, parse_target
from scanner.transport import Answer

RECORDS = [
    (0, 22, PortState.OPEN, Reason.SYN_ACK, 0.0125, 1, 1795406400.25),
    (2**40, 65535, PortState.FILTERED, Reason.NO_RESPONSE, None, 3, 1795406401.0),
    (7, 1, PortState.CLOSED, Reason.CONN_REFUSED, 0.0, 1, 0.0),
    (1, 53, PortState.OPEN_FILTERED, Reason.NO_RESPONSE, None, 255, 1.5),
]


def test_records_round_trip() -> None:
    stream = b"".join(encode_result(*r) for r in RECORDS) + encode_counters(5, 2, 1, 512)
    decoder = Decoder()
    got = [
        (d.host, d.port, d.state, d.reason, d.rtt, d.tries, d.timestamp)
        for d in decoder.feed(stream)
    ]
    assert [g[:4] + g[5:] for g in got] == [r[:4] + r[5:] for r in RECORDS]
    assert [g[4] for g in got] == pytest.approx([0.0125, None, 0.0, None])
    assert decoder.counters == (5, 2, 1, 512)
    assert decoder.pending == b"" and decoder.errors == []


def test_a_workers_record_is_encode_result() -> None:
    # fanout._record inlines encode_result for speed: the bytes must be the same.
    for host, port, state, reason, rtt, tries, _ in RECORDS:
        attempt = Attempt(host, None, Port(Proto.TCP, port), tries, 0, 0, 0.0, False)  # type: ignore[arg-type]
        record = _record(attempt, Answer(state, reason), rtt)
        stamp = Decoder().feed(record)[0].timestamp
        assert abs(stamp - time.time()) < 60
        assert record == encode_result(host, port, state, reason, rtt, tries, stamp)


@pytest.mark.parametrize("cut", [1, 5, 17, 30, 31, 57])
def test_records_split_anywhere_decode_the_same(cut: int) -> None:
    stream = b"".join(encode_result(*r) for r in RECORDS[:2]) + encode_error("boom: x")
    decoder = Decoder()
    first = list(decoder.feed(stream[:cut]))
    second = list(decoder.feed(stream[cut:]))
    assert [d.port for d in first + second] == [22, 65535]
    assert decoder.errors == ["boom: x"]
    assert decoder.pending == b""


def test_truncated_tail_is_kept_not_decoded() -> None:
    record = encode_result(*RECORDS[0])
    decoder = Decoder()
    assert list(decoder.feed(record + record[:10])) != []
    assert decoder.pending == record[:10]


@pytest.mark.parametrize(
    "stream",
    [
        b"Zgarbage",
        # Found by hypothesis: a result record whose state code is out of range (0x7f: out
        # of range however many reasons the enum grows to).
        b"R\x00" + b"\x00" * 7 + b"\x00\x00\x00\x7f" + b"\x00" * 13,
        encode_result(*RECORDS[0])[:11] + b"\xff" + encode_result(*RECORDS[0])[12:],
    ],
)
def test_corrupt_stream_is_an_error_not_an_exception(stream: bytes) -> None:
    decoder = Decoder()
    assert list(decoder.feed(stream)) == []
    assert decoder.errors and "corrupt" in decoder.errors[0]


def test_runs_stop_at_other_records_and_decode_to_results() -> None:
    one, two = (encode_result(*r) for r in RECORDS[:2])
    stream = one + two + encode_counters(1, 2, 3, 4) + two + encode_error("late") + one
    decoder = Decoder()
    runs = decoder.runs(stream)
    assert [bytes(run) for run in runs] == [one + two, two, one]
    assert decoder.counters == (1, 2, 3, 4) and decoder.errors == ["late"]
    hosts = HostCache(TargetSet([parse_target("198.18.0.0/24")]))  # index 2**40: no such host
    results: list[Result] = []
    with pytest.raises(IndexError):
        decode_results(runs, hosts, results)
    results.clear()
    assert decode_results([runs[2]], hosts, results) == 1
    (result,) = results
    assert (result.host, result.port, result.protocol, result.state, result.reason) == (
        "198.18.0.0",
        22,
        Proto.TCP,
        PortState.OPEN,
        Reason.SYN_ACK,
    )
    assert (result.rtt, result.tries, result.timestamp) == (pytest.approx(0.0125), 1, 1795406400.25)
    assert result.hostname is None and result.assessment is None


def test_a_bad_code_late_in_a_run_is_an_error() -> None:
    bad = bytearray(encode_result(*RECORDS[2]))
    bad[12] = 200  # reason code
    decoder = Decoder()
    assert decoder.runs(encode_result(*RECORDS[0]) * 3 + bytes(bad)) == []
    assert decoder.errors == ["corrupt worker stream (unknown state or reason code)"]


@given(st.lists(st.sampled_from(RECORDS), max_size=12), st.integers(min_value=0, max_value=400))
def test_feed_decodes_any_split_of_a_valid_stream(records: list[Any], cut: int) -> None:
    stream = b"".join(encode_result(*r) for r in records) + encode_counters(1, 1, 1, 1)
    decoder = Decoder()
    got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
    assert [(d.host, d.port, d.state, d.reason, d.tries) for d in got] == [
        r[:4] + r[5:6] for r in records
    ]
    assert decoder.counters == (1, 1, 1, 1) and decoder.pending == b""


@given(st.lists(st.binary(max_size=80), max_size=8))
def test_decoder_never_raises_on_arbitrary_bytes(chunks: list[bytes]) -> None:
    decoder = Decoder()
    for chunk in chunks:
        for record in decoder.feed(chunk):
            assert 0 <= record.port <= 65535


# -- worker processes on loopback ---------------------------------------------------------


def loopback(count: int = 1) -> TargetSet:
    return TargetSet([parse_target(f"127.0.0.1-{count}")])


def collect(scan: Scan) -> dict[tuple[str, int], tuple[str, str]]:
    async def run() -> dict[tuple[str, int], tuple[str, str]]:
        out = {}
        async for r in scan:
            # (Both copies in the message: which one came twice tells where it came from.)
            assert (r.host, r.port) not in out, (r, out[r.host, r.port])
            out[r.host, r.port] = (r.state.value, r.reason.value)
        return out

    return asyncio.run(run())


def test_workers_find_the_same_as_one_process(listener: int) -> None:
    ports = sorted({*range(1, 3000), listener})
    one = collect(Scan(loopback(2), ports, ScanConfig(seed=4, workers=1)))
    three = Scan(loopback(2), ports, ScanConfig(seed=4, workers=3))
    assert three._workers == 3
    assert collect(three) == one
    assert one["127.0.0.1", listener] == ("open", "syn-ack")
    assert len(one) == 2 * len(ports)
    assert three.stats.sent >= 2 * len(ports)


def test_auto_workers_only_for_large_scans() -> None:
    assert Scan(loopback(), range(1, 100))._workers == 1
    assert Scan(loopback(), range(1, 65536))._workers == min(len(os.sched_getaffinity(0)), 4)
    assert Scan(loopback(), range(1, 65536), ScanConfig(workers=1))._workers == 1


def test_a_failing_worker_fails_the_scan() -> None:
    def explode(address: str, port: int) -> bool:
        raise RuntimeError(f"cannot decide {address}:{port}")

    scan = Scan(loopback(), range(1, 100), ScanConfig(workers=2), skip=explode)
    with pytest.raises(ScanError, match="a scan worker failed: RuntimeError: cannot decide"):
        collect(scan)


def test_sharded_workers_keep_the_callers_shard(listener: int) -> None:
    from scanner.plan import Shard

    ports = list(range(1, 2001))
    parts = [
        collect(Scan(loopback(), ports, ScanConfig(seed=9, workers=2), shard=Shard(i, 3)))
        for i in range(3)
    ]
    keys = [set(part) for part in parts]
    assert sum(map(len, keys)) == len(set().union(*keys)) == 2000


# -- in the lab ----------------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", ["1", "3"])
def test_cli_workers_give_exact_states(lab: netlab.Lab, tmp_path: Path, workers: str) -> None:
    out = tmp_path / "w.csv"
    proc = portprobe(
        lab, "198.18.0.2", "-p", "1-9000", "--all", "--workers", workers, "-o", str(out),
        timeout=100,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with out.open() as stream:
        rows = {int(r["port"]): (r["state"], r["reason"]) for r in csv.DictReader(stream)}
    assert len(rows) == 9000
    assert {p for p, s in rows.items() if s == ("open", "syn-ack")} == set(SESSION_LAB_TCP)
    assert {p for p, s in rows.items() if s == ("filtered", "no-response")} == set(
        SESSION_LAB_FILTERED_TCP
    )


@pytest.mark.netns
@pytest.mark.timeout(120)
def test_workers_die_with_their_parent(lab: netlab.Lab, tmp_path: Path) -> None:
    proc: Any = lab.popen(
        [
            *PORTPROBE,
            "198.18.0.2",
            "-p-",
            "--rate",
            "1000",
            "--workers",
            "2",
            "-o",
            str(tmp_path / "x.csv"),
        ],
        stdout=-3,
        stderr=-3,
    )
    deadline = time.monotonic() + 20
    children: list[int] = []
    while time.monotonic() < deadline and len(children) < 2:
        time.sleep(0.2)
        path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        children = [int(p) for p in path.read_text().split()] if path.exists() else []
    assert len(children) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    def alive(pid: int) -> bool:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return fields[0] != "Z"

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in children)
