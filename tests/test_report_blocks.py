"""Closed ports in bulk (``ClosedPorts``) through the results layer and every report format:
the same documents, counts and results as the same ports one ``Result`` at a time."""

from __future__ import annotations

import asyncio
import io
from array import array
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner.assess import Assessor
from scanner.models import Assessment, ClosedPorts, PortState, Proto, Reason, Result
from scanner.pipeline import Pipeline
from scanner.report import FORMATS, Ending, ScanMeta, Summary, make_writer
from scanner.report.probed import ProbedLog, ports_of_spec

ASSESSOR = Assessor()
Item = Result | ClosedPorts


def block(
    host: str,
    ports: list[int],
    *,
    stamp: float = 5.0,
    name: str | None = None,
    reason: Reason = Reason.CONN_REFUSED,
    rtts: list[float] | None = None,
) -> ClosedPorts:
    return ClosedPorts(
        host, name, Proto.TCP, reason, array("H", ports),
        array("f", rtts if rtts is not None else [0.5] * len(ports)),
        array("B", [1 + p % 3 for p in ports]), stamp,
    )  # fmt: skip


def one(
    host: str, port: int, state: PortState, *, stamp: float = 4.0, name: str | None = None
) -> Result:
    reason = {PortState.OPEN: Reason.SYN_ACK, PortState.FILTERED: Reason.NO_RESPONSE}[state]
    return Result(host, port, Proto.TCP, state, reason, name, 0.25, 1, stamp)


def assessed(items: list[Item]) -> list[Item]:
    """``items`` as the results layer gives them with ``--all``: every one assessed."""
    return [
        i.assessed(ASSESSOR.labels(i.ports, i.protocol)) if isinstance(i, ClosedPorts)
        else ASSESSOR.assess(i)
        for i in items
    ]  # fmt: skip


def render(fmt: str, meta: ScanMeta, items: list[Item], *, bulk: bool) -> tuple[str, Summary]:
    """The report of ``items`` in ``fmt``, fed as the command line feeds it: blocks whole
    (``bulk``) or as the results they stand for."""
    stream = io.StringIO()
    writer = make_writer(fmt, stream, meta)
    summary = Summary(ports_per_host=len(ports_of_spec(meta.ports) or ()))
    for item in items:
        if isinstance(item, ClosedPorts) and bulk:
            summary.add_closed(item)
            if item.assessments is not None:
                writer.write_closed(item)
            else:
                writer.omit_closed(item)
            continue
        for result in item.results() if isinstance(item, ClosedPorts) else [item]:
            summary.add(result)
            if result.assessment is not None:
                writer.write(result)
            else:
                writer.omit(result)
    writer.close(Ending(finished=9.0, complete=True, summary=summary))
    return stream.getvalue(), summary


def meta_of(ports: int, *, listed: bool, shard: str = "1/1", verbose: int = 0) -> ScanMeta:
    return ScanMeta(
        version="0", command=["portprobe", "x"], started=1.0, seed=1, ports=f"1-{ports}",
        hosts=3, shard=shard, closed_listed=listed,
        extra={"verbose": verbose} if verbose else {},
    )  # fmt: skip


def check_same(meta: ScanMeta, items: list[Item]) -> None:
    for fmt in FORMATS:
        text, summary = render(fmt, meta, items, bulk=True)
        want, want_summary = render(fmt, meta, items, bulk=False)
        assert text == want, fmt
        assert summary.as_dict() == want_summary.as_dict()
        assert summary.not_shown(frozenset()) == want_summary.not_shown(frozenset())


A, B = "198.18.0.2", "198.18.0.10"

CASES: dict[str, tuple[int, list[Item]]] = {
    # A whole host in blocks and results: complete at its last block.
    "whole host": (40, [
        block(A, list(range(1, 11))), one(A, 22, PortState.OPEN),
        block(A, list(range(11, 22)) + list(range(23, 41)), stamp=6.0),
    ]),
    # 25 or fewer closed ports are listed (nmap's rule), more are folded, across blocks.
    "listed then folded": (60, [
        block(A, [3, 1, 2]), one(A, 50, PortState.FILTERED), block(A, list(range(4, 30))),
        block(B, list(range(1, 20)), name="lab"), one(B, 30, PortState.OPEN, name="lab"),
    ]),
    "few closed, listed": (30, [block(A, [7, 9]), one(A, 8, PortState.OPEN)]),
    "no RTT, other reason": (30, [
        block(A, [1, 2], rtts=[-1.0, 0.125], reason=Reason.ERROR), block(A, [3, 4]),
    ]),
    "empty block": (10, [block(A, []), one(A, 1, PortState.OPEN)]),
}  # fmt: skip


@pytest.mark.parametrize("listed", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_blocks_make_the_same_reports_as_their_results(name: str, listed: bool) -> None:
    ports, items = CASES[name]
    check_same(meta_of(ports, listed=listed), assessed(items) if listed else items)


def test_a_partial_scan_names_its_unlisted_ports_the_same() -> None:
    items: list[Item] = [block(A, [1, 2, 5]), block(B, list(range(1, 31)))]
    check_same(meta_of(40, listed=False, shard="1/2"), items)
    check_same(meta_of(40, listed=False, verbose=2), items)


@st.composite
def scans(draw: Any) -> tuple[ScanMeta, list[Item]]:
    """A scan's results in some order, closed ports grouped into blocks as workers send them."""
    ports = draw(st.integers(1, 60))
    hosts = draw(st.lists(st.sampled_from([A, B, "198.18.0.3", "2001:db8::1"]), min_size=1,
                          max_size=3, unique=True))  # fmt: skip
    whole = draw(st.booleans())
    keys = [
        (host, port)
        for host in hosts
        for port in range(1, ports + 1)
        if whole or draw(st.booleans())
    ]
    order = draw(st.permutations(keys))
    states = st.sampled_from([PortState.CLOSED] * 4 + [PortState.OPEN, PortState.FILTERED])
    names = {host: draw(st.sampled_from([None, "lab", 'odd, "name"'])) for host in hosts}
    items: list[Item] = []
    stamp = 10.0
    pending: list[int] = []
    pending_host = ""

    def flush() -> None:
        if pending:
            items.append(block(pending_host, list(pending), stamp=stamp, name=names[pending_host]))
            pending.clear()

    for host, port in order:
        stamp += draw(st.sampled_from([0.0, 0.0004, 1.5]))
        state = draw(states)
        if state is PortState.CLOSED:
            if host != pending_host or draw(st.booleans()):
                flush()
            pending_host = host
            pending.append(port)
        else:
            items.append(one(host, port, state, stamp=stamp, name=names[host]))
    flush()
    listed = draw(st.booleans())
    shard = "1/1" if whole else draw(st.sampled_from(["1/1", "2/3"]))
    meta = meta_of(ports, listed=listed, shard=shard, verbose=draw(st.sampled_from([0, 0, 1, 3])))
    return meta, assessed(items) if listed else items


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scans())
def test_any_scan_in_blocks_makes_the_same_reports(scan: tuple[ScanMeta, list[Item]]) -> None:
    check_same(*scan)


def test_probed_log_counts_a_host_again_after_it_is_complete() -> None:
    """A port counted once more than the host has (a duplicate) starts the count anew, in
    bulk as one by one."""
    ports = ports_of_spec("1-4")
    bulk, single = ProbedLog(ports, whole=True), ProbedLog(ports, whole=True)
    blk = block(A, [1, 2, 3, 4, 2, 3])
    bulk.unlisted_closed(blk)
    for result in blk.results():
        single.unlisted(result)
    assert bulk.as_dict() == single.as_dict() == {
        "complete_hosts": [A], "unlisted": {A: {"closed": "2-3"}},
    }  # fmt: skip


# -- the pipeline --------------------------------------------------------------------------


class Blocked:
    """A source that, like ``Scan.batches(blocks=True)``, gives closed ports in bulk."""

    def __init__(self, lists: list[list[Item]]) -> None:
        self.lists = lists

    def __aiter__(self) -> AsyncIterator[Result]:
        raise AssertionError("a batched source is read by its lists")

    async def batches(self, *, blocks: bool = False) -> AsyncIterator[list[Any]]:
        for batch in self.lists:
            await asyncio.sleep(0)
            if blocks:
                yield batch
            else:
                yield [
                    r for i in batch for r in (i.results() if isinstance(i, ClosedPorts) else [i])
                ]


@pytest.mark.parametrize("closed", [False, True])
def test_pipeline_batches_pass_blocks_and_run_gives_results(closed: bool) -> None:
    lists: list[list[Item]] = [
        [block(A, [1, 2, 3]), one(A, 22, PortState.OPEN)],
        [],
        [one(A, 4, PortState.FILTERED), block(A, [5, 6], stamp=7.0)],
    ]

    async def batches() -> list[Item]:
        pipeline = Pipeline(evidence=False, closed=closed, assessor=ASSESSOR)
        return [i async for batch in pipeline.batches(Blocked(lists)) for i in batch]  # type: ignore[arg-type]

    async def run() -> list[Result]:
        pipeline = Pipeline(evidence=False, closed=closed, assessor=ASSESSOR)
        return [r async for r in pipeline.run(Blocked(lists))]  # type: ignore[arg-type]

    items = asyncio.run(batches())
    results = asyncio.run(run())
    assert all(type(r) is Result for r in results)
    blocks = [i for i in items if isinstance(i, ClosedPorts)]
    assert [len(b) for b in blocks] == [3, 2]
    assert all((b.assessments is not None) is closed for b in blocks)
    expanded = [r for i in items for r in (i.results() if isinstance(i, ClosedPorts) else [i])]
    key = lambda r: r.port  # noqa: E731
    assert sorted(expanded, key=key) == sorted(results, key=key)
    by_port = {r.port: r for r in results}
    if closed:
        assert by_port[1].assessment == Assessment(
            label="tcpmux", label_description=by_port[1].assessment.label_description,  # type: ignore[union-attr]
            range="system", attestation=by_port[1].assessment.attestation,  # type: ignore[union-attr]
        )  # fmt: skip
        assert by_port[5].assessment is ASSESSOR.label(5, "tcp")
    else:
        assert by_port[1].assessment is None and by_port[22].assessment is not None


def test_pipeline_batches_wait_for_the_registry_with_blocks() -> None:
    """Blocks that come before the registry is loaded are assessed once it is, in order."""

    async def go() -> list[Item]:
        pipeline = Pipeline(evidence=False, closed=True)
        source = Blocked([[block(A, [22, 23])], [block(A, [80])]])
        return [i async for batch in pipeline.batches(source) for i in batch]  # type: ignore[arg-type]

    items = asyncio.run(go())
    labels = [[a.label for a in i.assessments or ()] for i in items if isinstance(i, ClosedPorts)]
    assert labels == [["ssh", "telnet"], ["http"]]


# -- the CSV writer's sort -----------------------------------------------------------------

_hosts = st.one_of(
    st.ip_addresses().map(str),
    st.text(st.characters(codec="utf-8"), max_size=6),
    st.sampled_from(["", "a", "a\x00", "a\x00b", "a\x01", "a\x01\x02", "ab", "\x00"]),
)


@given(st.lists(_hosts, max_size=12))
def test_host_sort_key_sorts_as_address_key(hosts: list[str]) -> None:
    from scanner.report.table import address_key
    from scanner.report.writers import host_sort_key

    assert sorted(hosts, key=host_sort_key) == sorted(hosts, key=address_key)
    for x in hosts:
        for y in hosts:
            assert (host_sort_key(x) == host_sort_key(y)) == (address_key(x) == address_key(y))


@given(st.sets(st.text(max_size=4), max_size=60), st.randoms(), st.integers(1, 5))
def test_merge_chunks_gives_every_row_in_order(rows: set[str], rnd: Any, size: int) -> None:
    from scanner.report.writers import merge_chunks

    shuffled = sorted(rows)
    rnd.shuffle(shuffled)
    runs: list[list[str]] = [[] for _ in range(rnd.randint(1, 4))]
    for row in shuffled:
        rnd.choice(runs).append(row)
    chunked = [iter([sorted(run)[i : i + size] for i in range(0, len(run), size)]) for run in runs]
    assert [row for rows in merge_chunks(chunked) for row in rows] == sorted(rows)


@pytest.mark.parametrize(("run", "chunk"), [(7, 3), (50, 1024)])
def test_csv_in_blocks_through_runs_on_disk_is_the_same(
    monkeypatch: pytest.MonkeyPatch, run: int, chunk: int
) -> None:
    from scanner.report import writers

    items: list[Item] = [
        block(B, list(range(1, 20)), stamp=3.0), one(A, 22, PortState.OPEN),
        block("2001:db8::1", [5, 3, 9]), block(A, list(range(30, 60))),
        one("198.18.0.3", 7, PortState.FILTERED), block(A, [1, 2, 3], stamp=9.5),
    ]  # fmt: skip
    meta = meta_of(60, listed=True)
    want, _ = render("csv", meta, assessed(items), bulk=False)
    monkeypatch.setattr(writers, "CSV_RUN", run)
    monkeypatch.setattr(writers, "_RUN_CHUNK", chunk)
    assert render("csv", meta, assessed(items), bulk=True)[0] == want
    assert render("csv", meta, assessed(items), bulk=False)[0] == want


def test_a_slow_consumer_of_blocks_pauses_the_scan_by_their_ports() -> None:
    """A block counts as its ports toward MAX_READY: big blocks pause the scan soon."""
    from scanner.pipeline import MAX_READY

    pulled = 0

    class Many:
        async def batches(self, *, blocks: bool = False) -> AsyncIterator[list[Any]]:
            nonlocal pulled
            for start in range(0, 100 * MAX_READY, 1000):
                pulled += 1
                yield [block(A, [1 + (p % 60000) for p in range(start, start + 1000)])]

        def __aiter__(self) -> AsyncIterator[Result]:
            raise AssertionError

    async def go() -> int:
        pipeline = Pipeline(evidence=False, assessor=ASSESSOR)
        gen = pipeline.batches(Many())  # type: ignore[arg-type]
        await gen.__anext__()
        for _ in range(50):
            await asyncio.sleep(0)
        seen = pulled
        await gen.aclose()
        return seen

    assert asyncio.run(go()) <= 2 * (MAX_READY // 1000 + 2)
