"""The ICMP budget model (scanner/pacing.py): tables of error times in, judgements out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.pacing import DEFAULT_INTERVAL, MIN_INTERVAL, IcmpBudget


@pytest.mark.parametrize(
    ("errors", "burst"),
    [
        ([0.0], 1),
        ([0.0, 0.001, 0.002, 0.003, 0.004, 0.005], 6),  # Linux's burst of six
        ([0.0, 0.001, 0.002, 1.0, 2.0], 3),  # then the refills
        ([0.0, 0.5], 1),
        ([5.0, 5.004, 5.008], 3),  # 4 ms apart is still one burst
        ([0.0, 0.02], 1),
    ],
)
def test_the_burst_is_the_first_run_of_errors_close_together(
    errors: list[float], burst: int
) -> None:
    assert IcmpBudget(errors).burst == burst


BURST_THEN_EMPTY = [0.0, 0.001, 0.002, 0.003, 0.004, 0.005]


@pytest.mark.parametrize(
    ("arrival", "proves"),
    [
        (0.003, False),  # in the middle of the burst: the errors around it took the tokens
        (0.2, False),  # the bucket is empty until a refill
        (1.0, False),  # exactly one interval: the pessimistic margin says not yet
        (1.2, True),  # a refill (and its margin) later: a closed port would have answered
        (10.0, True),
    ],
)
def test_a_silence_proves_something_only_if_the_host_had_a_token(
    arrival: float, proves: bool
) -> None:
    budget = IcmpBudget(BURST_THEN_EMPTY)
    assert budget.proves_silence(arrival, jitter=0.004) is proves


def test_an_error_right_after_a_silent_probe_takes_its_token_away() -> None:
    budget = IcmpBudget(BURST_THEN_EMPTY)
    assert budget.proves_silence(2.0, jitter=0.004)
    budget.error(2.001)  # another probe drew an error as ours arrived: maybe with our token
    assert not budget.proves_silence(2.0, jitter=0.004)
    assert budget.proves_silence(2.0, jitter=0.0005)  # unless the timing rules it out


def test_silences_before_the_first_error_count() -> None:
    budget = IcmpBudget([1.0, 1.001])
    assert budget.proves_silence(0.5, jitter=0.004)


@pytest.mark.parametrize(
    ("interval", "count"),
    [(1.0, 40), (0.25, 40), (0.1, 64), (0.01, 200)],
)
def test_the_interval_is_bounded_by_the_errors_a_saturated_host_sends(
    interval: float, count: int
) -> None:
    # The first burst, then one error per refill: what a host sends while every probe
    # that reaches it finds a closed port.
    errors = [i * 0.001 for i in range(6)]
    budget = IcmpBudget(errors)
    for k in range(1, count):
        budget.error(0.005 + k * interval)
    assert interval <= budget.interval <= interval * 1.12
    assert budget.learned is (interval < DEFAULT_INTERVAL)


def test_the_interval_starts_at_the_hint_and_never_rises() -> None:
    budget = IcmpBudget([0.0], interval=0.3)
    assert budget.interval == 0.3
    for k in range(1, 30):
        budget.error(k * 2.0)  # slower than the hint: no bound below it
    assert budget.interval == 0.3 and not budget.learned


def test_release_is_immediate_while_tokens_are_spare_and_at_a_cadence_otherwise() -> None:
    budget = IcmpBudget(BURST_THEN_EMPTY)
    # Long after: the bucket is full again, so up to six probes may go at once.
    assert budget.release_at(20.0, ahead=0.001, outstanding=0, last=19.0) == 20.0
    assert budget.release_at(20.0, ahead=0.001, outstanding=5, last=20.0) == 20.0
    later = budget.release_at(20.0, ahead=0.001, outstanding=6, last=20.0)
    assert 20.0 < later <= 20.0 + budget.interval / 8 + 1e-9
    # Just after the burst: not before the next cadence tick.
    assert budget.release_at(0.006, ahead=0.0, outstanding=0, last=0.005) == pytest.approx(
        0.005 + budget.interval / 8
    )


@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=80),
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.floats(min_value=0, max_value=1.0, allow_nan=False),
)
def test_the_model_never_raises_and_stays_sane(
    errors: list[float], probe: float, jitter: float
) -> None:
    errors.sort()
    budget = IcmpBudget(errors[:1])
    for t in errors[1:]:
        budget.error(t)
    assert MIN_INTERVAL <= budget.interval <= DEFAULT_INTERVAL
    assert budget.burst >= 1
    assert 0.0 <= budget.tokens(probe) <= budget.burst
    assert isinstance(budget.proves_silence(probe, jitter), bool)
    assert budget.release_at(probe, 0.0, 0, probe) >= probe
