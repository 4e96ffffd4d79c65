"""The deadlines of attempts in flight: young attempts, the heap, and exact expiry."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.engine.base import Attempt
from scanner.engine.deadlines import Deadlines
from scanner.models import Port, Proto

FLOOR = 0.1
PORT = Port(Proto.TCP, 80)


def attempt(sent: float) -> Attempt:
    return Attempt(0, None, PORT, 1, 0, 0, sent, False)  # type: ignore[arg-type]


def deadlines() -> Deadlines:
    return Deadlines(lambda: None, FLOOR)


def test_a_young_attempt_waits_out_of_the_heap_until_a_quarter_floor_old() -> None:
    d = deadlines()
    a = attempt(1.0)
    d.add(a, 1.0 + FLOOR)
    assert list(d.young) == [a] and d.heap == []
    assert d._next() == pytest.approx(1.0 + FLOOR / 2)  # the timer comes before the deadline
    assert list(d.due(1.0 + FLOOR / 8)) == []
    assert d.heap == []
    assert list(d.due(1.0 + FLOOR / 2)) == []  # promoted, not due
    assert not d.young and [e[2] for e in d.heap] == [a]
    assert d._next() == a.deadline
    assert list(d.due(a.deadline)) == [a]


def test_an_attempt_that_ended_young_never_reaches_the_heap() -> None:
    d = deadlines()
    a, b = attempt(1.0), attempt(1.01)
    d.add(a, 1.5)
    d.add(b, 1.5)
    a.live = False
    assert list(d.due(2.0)) == [b]
    assert d.heap == [] and not d.young


def test_provisional_attempts_go_to_the_heap_and_are_retimed() -> None:
    async def run() -> None:
        d = deadlines()
        d.loop = asyncio.get_running_loop()
        a = attempt(1.0)
        d.add(a, 2.0, provisional=True)
        assert d.provisional == [a] and [e[2] for e in d.heap] == [a] and not d.young
        d.retime(Proto.UDP, 0.2)  # another protocol: unchanged
        assert a.deadline == 2.0
        d.retime(Proto.TCP, 0.2)
        assert a.deadline == pytest.approx(1.2)
        assert d._when == pytest.approx(1.2)  # the timer moved to the new deadline
        assert list(d.due(1.2)) == [a]
        d.close()

    asyncio.run(run())


def test_floor_must_be_positive() -> None:
    with pytest.raises(ValueError, match="floor"):
        Deadlines(lambda: None, 0.0)


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=0.05),  # gap since the previous send
            st.floats(min_value=FLOOR, max_value=1.0),  # timeout (never under the floor)
            st.none() | st.floats(min_value=0.0, max_value=1.5),  # answered after this long
        ),
        max_size=40,
    )
)
def test_every_live_attempt_expires_exactly_at_its_deadline(
    sends: list[tuple[float, float, float | None]],
) -> None:
    # A simulated loop: the timer fires exactly when _next() says, as call_at would.
    d = deadlines()
    events: list[tuple[float, int, str, Attempt]] = []
    now = 0.0
    for i, (gap, timeout, answered) in enumerate(sends):
        now += gap
        a = attempt(now)
        a.deadline = now + timeout
        events.append((now, i, "send", a))
        if answered is not None:
            events.append((now + answered, i, "end", a))
    events.sort(key=lambda e: (e[0], e[1], e[2] == "end"))
    expired: dict[int, float] = {}
    ids = {id(e[3]): e[1] for e in events}
    queue = list(events)
    while queue or d.young or d.heap:
        timer = d._next()
        if queue and queue[0][0] < timer:
            at, _, kind, a = queue.pop(0)
            if kind == "send":
                d.add(a, a.deadline)
            elif a.live:
                a.live = False
            continue
        if timer == float("inf"):
            break
        for a in d.due(timer):
            a.live = False
            expired[ids[id(a)]] = timer
    for at, i, kind, a in events:
        if kind == "send":
            answered = sends[i][2]
            if answered is None or at + answered > a.deadline:
                assert expired.get(i) == a.deadline
            elif at + answered < a.deadline:
                assert i not in expired
