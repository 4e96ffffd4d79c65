"""Durations written the command line's way: the defaults shown come from the config classes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.evidence import EvidenceConfig
from scanner.models import Timing
from scanner.units import format_duration, parse_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.1, "100ms"),
        (0.25, "250ms"),
        (0.0005, "0.5ms"),
        (1.0, "1s"),
        (2.0, "2s"),
        (1.5, "1.5s"),
        (10.0, "10s"),
        (90.0, "90s"),
        (120.0, "2m"),
        (7200.0, "2h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.inf, math.nan])
def test_format_duration_rejects_what_parse_duration_would(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)


@given(st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False))
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-9)


def test_config_defaults_print_as_the_cli_documents_them() -> None:
    timing = Timing()
    assert [
        format_duration(timing.min_rtt_timeout),
        format_duration(timing.max_rtt_timeout),
        format_duration(timing.initial_rtt_timeout),
        format_duration(EvidenceConfig().timeout),
    ] == ["100ms", "10s", "1s", "2s"]
