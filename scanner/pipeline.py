"""The results pipeline: engine results in, assessed results out.

Rules and theory:
- One pipeline serves the library (:func:`scanner.scan`) and the command line: a port's
  result gets its registry label, then, if it is open, the evidence of what it speaks
  (``scanner.evidence``), the verdict (``scanner.assess``) and the policy mark
  (``scanner.policy``), in that order. Nothing else joins these.
- A UDP port that answered nothing to its own payloads (``open|filtered``) gets the
  payloads of every other protocol we have (``Prober.sweep_udp``): DNS on 5300 or SNMP on
  1161 answers only its own. A reply makes it ``open`` (reason ``udp-response``).
- Results that are not *reported* (closed ports, unless ``closed`` is set) pass through
  unassessed (``assessment`` None): the caller still counts them.
- Closed ports may come in bulk (:class:`~scanner.models.ClosedPorts`, from the engine's
  worker processes): :meth:`Pipeline.batches` passes such blocks on as they are (assessed
  in bulk when reported), for a consumer with no work to do per closed port (the command
  line). :meth:`Pipeline.run` yields :class:`Result` s only.
- Evidence is gathered while the scan goes on, one task per open port (the prober bounds
  how many run at once). Results leave in the order they become final, so an open port
  comes out after its evidence, later than the closed ports probed after it.
- The evidence prober is made (its modules imported: h11, ssl, the decoders, about
  0.07 s) once the scan has started, so that the scan's worker processes, if any, sweep
  meanwhile instead of waiting for it.
- The registry (about 0.1 s to parse) is loaded on a short-lived thread when the first
  result comes: by then the engine's worker processes, if any, have been forked (no
  thread runs across a fork). Results wait until it is loaded, so the thread runs at the
  scan's own priority: niced, it got no CPU beside the busy workers, and every result
  came out at the end of the scan.
- :meth:`Pipeline.stop` (Ctrl-C) cancels the evidence still running: those ports come out
  at once, without evidence (verdict ``unverified``).
- Memory is bounded: once ``MAX_READY`` finished results wait for the consumer (checked
  after each list of results the scan gives; a block of closed ports counts its ports),
  the pipeline stops reading the scan until the consumer catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import socket
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from scanner.errors import ScanError
from scanner.models import ClosedPorts, PortState, Proto, Reason, Result

if TYPE_CHECKING:  # imported when first needed: they cost start-up time
    from scanner.assess import Assessor
    from scanner.evidence import Evidence, EvidenceConfig, Prober
    from scanner.policy import Policy

__all__ = ["MAX_READY", "Pipeline"]

MAX_READY = 4096  # finished results held for a slow consumer before the scan is paused


class Pipeline:
    """Turns engine results into assessed results (see the module's rules).

    ``evidence``: probe what open ports speak (``evidence_config`` sets the budgets).
    ``closed``: assess closed ports too (``--all``); otherwise they pass unassessed.
    ``policy``: mark open ports ``allowed`` or ``violation``. ``assessor``: the registry's
    assessor to use; by default one is loaded on a thread when the first result comes.
    ``prober``: the evidence prober to use (tests give a fake); by default a
    :class:`~scanner.evidence.Prober` with ``evidence_config``.

    Example::

        pipeline = Pipeline()
        async for result in pipeline.run(Scan(hosts, ports)):
            print(result.port, result.assessment.verdict if result.assessment else "")
    """

    def __init__(
        self,
        *,
        evidence: bool = True,
        evidence_config: EvidenceConfig | None = None,
        closed: bool = False,
        policy: Policy | None = None,
        assessor: Assessor | None = None,
        prober: Prober | None = None,
    ) -> None:
        self._prober: Prober | None = prober
        # Made by run() once the scan has started (see the module's rules).
        self._evidence_config = evidence_config if evidence and prober is None else None
        self._wants_prober = evidence and prober is None
        self._closed = closed
        self._policy = policy
        self._assessor = assessor
        self._loading: asyncio.Future[None] | None = None
        self._waiting: list[tuple[Result | ClosedPorts, Evidence | None]] = []
        self._tasks: set[asyncio.Task[Evidence]] = set()
        self._error: BaseException | None = None
        self._ready: deque[Result | ClosedPorts] = deque()
        self._bulk = 0  # the ports of the blocks in _ready (a block counts as its ports)
        self._wake: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self._stopped = False

    @property
    def pending_evidence(self) -> int:
        """How many open ports are still being identified (their evidence probes running)."""
        return len(self._tasks)

    def reported(self, result: Result) -> bool:
        """Whether ``result`` is assessed and reported (closed ports only with ``closed``)."""
        return self._closed or result.state is not PortState.CLOSED

    def stop(self) -> None:
        """Cancel the evidence still running; its ports come out without evidence."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()

    async def run(self, results: AsyncIterable[Result]) -> AsyncGenerator[Result, None]:
        """Every result of ``results``, assessed if reported, as soon as it is final.

        Raises :class:`~scanner.errors.ScanError` if the registry cannot be loaded.
        """
        async with contextlib.aclosing(self._flow(results, blocks=False)) as flow:
            async for ready in flow:
                while ready:
                    item = ready.popleft()
                    if type(item) is ClosedPorts:  # (only if the source gave blocks itself)
                        self._bulk -= len(item)
                        for result in item.results():
                            yield result
                    else:
                        assert isinstance(item, Result)
                        yield item
                    if len(ready) < MAX_READY // 2:
                        self._set_drained()

    async def batches(
        self, results: AsyncIterable[Result]
    ) -> AsyncGenerator[list[Result | ClosedPorts], None]:
        """As :meth:`run`, in lists of what is final, where closed ports may come in bulk
        (:class:`~scanner.models.ClosedPorts`, assessed in bulk when reported) if
        ``results`` gives them (``Scan.batches(blocks=True)``)."""
        async with contextlib.aclosing(self._flow(results, blocks=True)) as flow:
            async for ready in flow:
                batch = list(ready)
                ready.clear()
                self._bulk = 0
                self._set_drained()
                yield batch

    def _set_drained(self) -> None:
        if self._drained is not None:
            self._drained.set()

    async def _flow(
        self, results: AsyncIterable[Result], *, blocks: bool
    ) -> AsyncGenerator[deque[Result | ClosedPorts], None]:
        """Run the pipeline; yield the deque of what is ready whenever it holds something
        (the caller empties it, and sets ``_drained`` as it does)."""
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        feeder = asyncio.get_running_loop().create_task(self._feed(results, blocks))
        try:
            await asyncio.sleep(0)  # the feeder's first step starts the scan
            self._make_prober()
            while True:
                if self._ready:
                    yield self._ready
                    continue
                if feeder.done() and not self._tasks and not self._waiting_on_registry():
                    break
                self._wake.clear()
                await self._wake.wait()
            feeder.result()  # an error of the scan itself
            if self._error is not None:
                raise self._error
            if self._loading is not None:
                loading, self._loading = self._loading, None
                try:
                    await loading
                except OSError as exc:
                    raise ScanError(
                        f"cannot load the port registry: {exc.strerror or exc}"
                    ) from exc
        finally:
            self.stop()
            feeder.cancel()
            await asyncio.gather(feeder, *self._tasks, return_exceptions=True)

    def _make_prober(self) -> None:
        if self._wants_prober:
            from scanner.evidence import EvidenceConfig, Prober

            self._wants_prober = False
            self._prober = Prober(self._evidence_config or EvidenceConfig())

    def _waiting_on_registry(self) -> bool:
        loading = self._loading
        return loading is not None and not loading.done()

    async def _feed(self, results: AsyncIterable[Result], blocks: bool) -> None:
        assert self._drained is not None
        # A scan gives its results in lists (``Scan.batches``): taken a list at a time, a
        # closed port costs an append here, not an async step, a call and a wake-up.
        batches: AsyncIterator[list[Any]]
        if not isinstance(results, _Batched):
            batches = _lists(results)
        elif blocks:
            batches = results.batches(blocks=True)
        else:
            batches = results.batches()
        ready, closed, add = self._ready, self._closed, self._add
        try:
            async for batch in batches:
                for result in batch:
                    if type(result) is ClosedPorts:
                        if closed:
                            self._assess(result, None)
                        else:
                            self._bulk += len(result)
                            ready.append(result)  # not reported: passes unassessed
                    elif closed or result.state is not _CLOSED:
                        add(result)
                    else:
                        ready.append(result)  # not reported: passes unassessed
                self._push_wake()
                if len(ready) + self._bulk >= MAX_READY:
                    self._drained.clear()
                    await self._drained.wait()
        finally:
            self._push_wake()

    def _push(self, result: Result | ClosedPorts) -> None:
        # (A policy judges open ports only: a block of closed ports has nothing to mark.)
        if type(result) is ClosedPorts:
            self._bulk += len(result)
        elif self._policy is not None:
            assert isinstance(result, Result)
            result = self._policy.mark(result)
        self._ready.append(result)
        self._push_wake()

    def _push_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _add(self, result: Result) -> None:
        if not self.reported(result):
            self._ready.append(result)
            self._push_wake()
            return
        self._make_prober()  # (a result before run() made it: a scan without a first await)
        if self._prober is not None and _probed_for_evidence(result) and not self._stopped:
            task = asyncio.get_running_loop().create_task(self._probe(result))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._probed, result))
        else:
            self._assess(result, None)

    def _probed(self, result: Result, task: asyncio.Task[Evidence]) -> None:
        """A port's evidence is in, or was cancelled (even before it started): assess it."""
        self._tasks.discard(task)
        self._push_wake()
        if task.cancelled():
            self._assess(result, None)
        elif (error := task.exception()) is not None:
            self._error = self._error or error  # a bug in a probe: raised by run()
        else:
            evidence = task.result()
            if result.state is PortState.OPEN_FILTERED and evidence.proof:
                # A silent UDP port answered another protocol's payload: it is open.
                result = dataclasses.replace(
                    result, state=PortState.OPEN, reason=Reason.UDP_RESPONSE
                )
            self._assess(result, evidence)

    def _assess(self, result: Result | ClosedPorts, evidence: Evidence | None) -> None:
        if self._assessor is not None:
            self._push(_assessed(self._assessor, result, evidence))
            return
        self._waiting.append((result, evidence))
        if self._loading is None:
            self._loading = self._load_registry()

    def _load_registry(self) -> asyncio.Future[None]:
        from scanner.assess import Assessor

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle(value: Assessor | None, error: BaseException | None) -> None:
            self._push_wake()
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
                return
            assert value is not None
            self._assessor = value
            waiting, self._waiting = self._waiting, []
            try:  # the registry reads data files lazily: out of descriptors, say
                for result, evidence in waiting:
                    self._push(_assessed(value, result, evidence))
            except Exception as exc:
                future.set_exception(exc)
                return
            future.set_result(None)

        def work() -> None:
            # At the scan's own priority (see the module's rules).
            try:
                value = Assessor()
            except BaseException as exc:  # handed to the event loop, raised by run()
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, value, None)

        threading.Thread(target=work, name="portprobe-registry", daemon=True).start()
        return future

    async def _probe(self, result: Result) -> Evidence:
        assert self._prober is not None
        family = socket.AF_INET6 if ":" in result.host else socket.AF_INET
        if result.state is PortState.OPEN_FILTERED:
            return await self._prober.sweep_udp(result.host, family, result.port)
        if result.protocol is Proto.UDP:
            return await self._prober.probe_udp(result.host, family, result.port)
        return await self._prober.probe(result.host, family, result.port, rtt=result.rtt)


_CLOSED = PortState.CLOSED


def _assessed(
    assessor: Assessor, result: Result | ClosedPorts, evidence: Evidence | None
) -> Result | ClosedPorts:
    if type(result) is ClosedPorts:
        return result.assessed(assessor.labels(result.ports, result.protocol))
    assert isinstance(result, Result)
    return assessor.assess(result, evidence)


@runtime_checkable
class _Batched(Protocol):
    """A source of results that also gives them in lists (``scanner.engine.Scan``), and
    with ``blocks=True`` closed ports in bulk too."""

    def batches(self, *, blocks: bool = False) -> AsyncIterator[list[Any]]: ...


async def _lists(results: AsyncIterable[Result]) -> AsyncIterator[list[Result]]:
    async for result in results:
        yield [result]


def _probed_for_evidence(result: Result) -> bool:
    """Open ports; and silent UDP ports, which get the payloads of other protocols."""
    state = result.state
    return state is PortState.OPEN or (
        state is PortState.OPEN_FILTERED and result.protocol is Proto.UDP
    )
