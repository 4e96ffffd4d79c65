"""Parsers for the small values of the command line (durations), nmap's way."""

from __future__ import annotations

import math
import re

from scanner.errors import UsageError

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?|\.\d+)(?P<unit>ms|s|m|h)?", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Seconds from ``"250ms"``, ``"1.5s"``, ``"2m"``, ``"1h"`` or a bare number of seconds.

    Raises :class:`~scanner.errors.UsageError` (one line, naming ``option``) for anything
    else, and for zero, negative or non-finite durations.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{option}: {text!r} is not a duration (examples: 250ms, 1.5s, 2m)")
    seconds = float(match["number"]) * _UNIT_SECONDS[match["unit"]]
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"{option}: {text!r} must be a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` as the command line writes it, and :func:`parse_duration` reads it back.

    ``0.1`` -> ``"100ms"``, ``2.0`` -> ``"2s"``, ``1.5`` -> ``"1.5s"``, ``120.0`` ->
    ``"2m"``: so that an option's default shown in ``--help`` comes from the config
    dataclass (``Timing``, ``EvidenceConfig``) rather than from a copy of it.
    """
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"not a positive duration: {seconds!r}")
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:.12g}{unit}"
    if seconds < 1:
        return f"{seconds * 1000:.12g}ms"
    return f"{seconds:.12g}s"
