"""The results pipeline on fake results and a fake prober: no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scanner.assess import Assessor
from scanner.models import PortState, Proto, Reason, Result
from scanner.pipeline import MAX_READY, Pipeline
from scanner.policy import parse_policy
from scanner.protocols import Evidence

ASSESSOR = Assessor()
HTTP = Evidence("http", "lab; 200", "http")


def result(port: int, state: PortState = PortState.OPEN) -> Result:
    reason = {PortState.OPEN: Reason.SYN_ACK, PortState.CLOSED: Reason.CONN_REFUSED}[state]
    return Result("198.18.0.2", port, Proto.TCP, state, reason)


async def feed(results: list[Result]) -> AsyncIterator[Result]:
    for item in results:
        await asyncio.sleep(0)
        yield item


class FakeProber:
    """Answers ``evidence`` for every port after ``delay`` seconds (forever if None)."""

    def __init__(self, evidence: Evidence, delay: float | None = 0.01) -> None:
        self.evidence, self.delay, self.asked = evidence, delay, []  # type: ignore[var-annotated]

    async def probe(
        self, address: str, family: int, port: int, *, rtt: float | None = None
    ) -> Evidence:
        self.asked.append(port)
        if self.delay is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.delay or 0)
        return self.evidence

    async def probe_udp(self, address: str, family: int, port: int) -> Evidence:
        return await self.probe(address, family, port)

    sweep_udp = probe_udp


def run(pipeline: Pipeline, results: list[Result], *, stop_after: float | None = None) -> Any:
    async def go() -> list[Result]:
        if stop_after is not None:
            asyncio.get_running_loop().call_later(stop_after, pipeline.stop)
        return [r async for r in pipeline.run(feed(results))]

    return asyncio.run(go())


def test_open_ports_get_evidence_label_and_verdict() -> None:
    prober = FakeProber(HTTP)
    out = run(
        Pipeline(assessor=ASSESSOR, prober=prober),  # type: ignore[arg-type]
        [result(80), result(2451), result(23, PortState.CLOSED)],
    )
    by_port = {r.port: r for r in out}
    assert sorted(by_port) == [23, 80, 2451]
    assert sorted(prober.asked) == [80, 2451]
    assert by_port[80].assessment.verdict == "consistent"
    assert by_port[2451].assessment.verdict == "contradicts"
    assert by_port[2451].assessment.warning.startswith("label is not evidence")
    assert by_port[23].assessment is None  # closed, not reported: passes unassessed


@pytest.mark.parametrize("closed", [False, True])
def test_closed_ports_are_assessed_only_when_reported(closed: bool) -> None:
    out = run(
        Pipeline(evidence=False, closed=closed, assessor=ASSESSOR), [result(23, PortState.CLOSED)]
    )
    assert (out[0].assessment is not None) is closed
    if closed:
        assert out[0].assessment.label == "telnet"


def test_stop_cancels_evidence_and_keeps_every_result() -> None:
    prober = FakeProber(HTTP, delay=None)  # never answers
    ports = list(range(1000, 1010))
    out = run(
        Pipeline(assessor=ASSESSOR, prober=prober),  # type: ignore[arg-type]
        [result(p) for p in ports],
        stop_after=0.05,
    )
    assert sorted(r.port for r in out) == ports
    assert {r.assessment.verdict for r in out} == {"unverified"}


def test_policy_marks_open_ports() -> None:
    policy = parse_policy("198.18.0.2 80/tcp\n", "policy.txt")
    out = run(
        Pipeline(evidence=False, assessor=ASSESSOR, policy=policy), [result(80), result(2451)]
    )
    assert {r.port: r.assessment.policy for r in out} == {80: "allowed", 2451: "violation"}


def test_the_registry_loads_on_a_thread_when_none_is_given() -> None:
    out = run(Pipeline(evidence=False), [result(22)])
    assert out[0].assessment.label == "ssh"


def test_a_slow_consumer_pauses_the_scan() -> None:
    """At most MAX_READY finished results wait: the pipeline stops reading the scan."""
    pulled = 0

    async def many() -> AsyncIterator[Result]:
        nonlocal pulled
        for port in range(1, 3 * MAX_READY):
            pulled += 1
            yield result(port, PortState.CLOSED)

    async def go() -> int:
        pipeline = Pipeline(evidence=False, assessor=ASSESSOR)
        gen = pipeline.run(many())
        await gen.__anext__()
        for _ in range(20):
            await asyncio.sleep(0)
        seen = pulled
        await gen.aclose()
        return seen

    assert asyncio.run(go()) <= MAX_READY + 2


class Batched:
    """A source that, like ``Scan``, also gives its results in lists."""

    def __init__(self, lists: list[list[Result]]) -> None:
        self.lists = lists

    def __aiter__(self) -> AsyncIterator[Result]:
        raise AssertionError("a batched source is read by its lists")

    async def batches(self) -> AsyncIterator[list[Result]]:
        for batch in self.lists:
            await asyncio.sleep(0)
            yield batch


@pytest.mark.parametrize("closed", [False, True])
def test_a_batched_source_gives_what_its_results_one_by_one_give(closed: bool) -> None:
    lists = [
        [result(p, PortState.CLOSED) for p in range(1, 50)] + [result(80)],
        [],
        [result(2451), result(7000, PortState.CLOSED)],
    ]

    async def go(source: Any) -> list[tuple[int, str, bool]]:
        pipeline = Pipeline(evidence=False, closed=closed, assessor=ASSESSOR)
        found = [
            (r.port, r.state.value, r.assessment is not None) async for r in pipeline.run(source)
        ]
        return sorted(found)

    one_by_one = asyncio.run(go(feed([r for batch in lists for r in batch])))
    assert asyncio.run(go(Batched(lists))) == one_by_one
    assert len(one_by_one) == 52
    assert all(assessed == (closed or state == "open") for _, state, assessed in one_by_one)


def test_the_prober_is_made_once_the_scan_has_started() -> None:
    """Making a pipeline imports none of evidence's modules (0.07 s): run() makes the
    prober after the scan's first step, so a fanned-out scan's workers sweep meanwhile."""
    import subprocess
    import sys

    code = """
import asyncio, sys
from scanner.pipeline import Pipeline

seen = []

async def results():
    seen.append("scanner.evidence" in sys.modules)  # the scan's first step
    await asyncio.sleep(0)
    seen.append("scanner.evidence" in sys.modules)
    return
    yield

async def main():
    pipeline = Pipeline()
    seen.append("scanner.evidence" in sys.modules)
    async for _ in pipeline.run(results()):
        pass
    seen.append(pipeline._prober is not None)

asyncio.run(main())
print(seen)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[False, False, True, True]"


def test_a_scan_without_evidence_imports_none_of_evidences_modules() -> None:
    """``--no-evidence`` needs no prober: evidence, its decoders, h11 and dnspython (0.12 s of
    CPU) stay unimported, in the parent and so in every worker it forks."""
    import subprocess
    import sys

    code = """
import sys
from scanner.cli import main

try:
    main(["127.0.0.1", "-p", "1-50", "--no-evidence", "-q"])
except SystemExit as exit:
    print(exit.code, sorted(m for m in ("scanner.evidence", "dns", "h11") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "0 []"
