"""nmap's habits on the command line: its options, with nmap's meaning, turned into ours.

Rules:
- nmap's names for options portprobe already has are aliases (``--max-retries`` is
  ``--retries``, ``--max-rate`` is ``--rate``, ``-F`` is ``--top-ports 100``); giving both
  with different values is an error, never a silent pick.
- A timing template (``-T0`` to ``-T5``, :data:`scanner.nmap_options.TIMING_TEMPLATES`)
  fills the options the user did not give; the ones given explicitly win, in any order.
- Outputs: ``-o FILE`` (format by extension or ``--format``), ``-oN``, ``-oX``, ``-oG`` and
  ``-oA BASE``; ``-`` is standard output for each, and only one may take it.
- ``-sn`` runs a host discovery and no port scan; ``--discover`` runs one first and skips
  the hosts found down; ``-Pn`` (the default) probes every host.
- ``-6``: targets must be IPv6, and names resolve to their IPv6 addresses.
"""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from scanner.errors import UsageError
from scanner.models import Port
from scanner.nmap_options import oa_paths, parse_template
from scanner.report import format_for_path
from scanner.targets import Resolver, parse_target
from scanner.units import format_duration, parse_duration

__all__ = [
    "Output",
    "apply_nmap_options",
    "host_timeout_skip",
    "ipv6_resolver",
    "outputs_of",
    "require_ipv6",
]


def _given(params: dict[str, Any], name: str, explicit: frozenset[str]) -> bool:
    return name in explicit or (not explicit and params.get(name) not in (None, False))


def apply_nmap_options(params: dict[str, Any], explicit: frozenset[str]) -> dict[str, Any]:
    """``params`` with nmap's aliases and timing template resolved (see the module rules).

    ``explicit`` names the options the user gave (Click's parameter sources), so that a
    template never overrides them.
    """
    out = dict(params)
    for alias, name, what in (
        ("max_retries", "retries", "--max-retries is --retries"),
        ("max_rate", "rate", "--max-rate is --rate"),
    ):
        value = out.get(alias)
        if value is None:
            continue
        if name in explicit and out.get(name) != value:
            raise UsageError(f"{what}: give one of them, or the same value to both")
        out[name] = value
        explicit = explicit | {name}
    if out.get("fast"):
        if out.get("ports") is not None or out.get("top") is not None:
            raise UsageError("-F is --top-ports 100: drop -p/--ports or --top-ports")
        out["top"] = 100
    if out.get("open_only") and out.get("show_all"):
        raise UsageError("--open shows open ports only and --all every port: choose one")
    if out.get("skip_discovery") and out.get("discover"):
        raise UsageError("-Pn probes every host and --discover skips those found down: choose one")
    if out.get("version_scan") and out.get("no_evidence"):
        raise UsageError("-sV asks for evidence and --no-evidence turns it off: choose one")
    template = out.get("timing_template")
    if template is not None:
        chosen = parse_template(template)
        filled = {
            "concurrency": chosen.concurrency,
            "rate": chosen.rate,
            "retries": chosen.retries,
            "initial_rtt": format_duration(chosen.initial_rtt),
            "min_rtt": format_duration(chosen.min_rtt),
            "max_rtt": format_duration(chosen.max_rtt),
            "host_timeout": None
            if chosen.host_timeout is None
            else format_duration(chosen.host_timeout),
        }
        for name, value in filled.items():
            if name not in explicit:
                out[name] = value
    min_rate = out.get("min_rate")
    if min_rate is not None:
        if not min_rate > 0:
            raise UsageError("--min-rate must be a positive number of probes per second")
        rate = out.get("rate")
        if rate is not None and rate < min_rate:
            raise UsageError("--min-rate must not exceed --max-rate (--rate)")
        # Probes are sent as fast as the concurrency allows: to send N a second, N times
        # the initial timeout must be allowed in flight.
        initial = parse_duration(str(out.get("initial_rtt", "1s")), option="--initial-rtt-timeout")
        out["concurrency"] = max(int(out.get("concurrency", 1)), math.ceil(min_rate * initial))
    return out


@dataclass(frozen=True, slots=True)
class Output:
    """One report to write: its format and its path (None: standard output)."""

    format: str
    path: str | None


def outputs_of(params: dict[str, Any]) -> list[Output]:
    """The reports the options ask for, the terminal table aside (see the module rules)."""
    found: list[Output] = []
    output, fmt = params.get("output"), params.get("fmt")
    if output is not None:
        found.append(Output(fmt or format_for_path(output), None if output == "-" else output))
    elif fmt is not None and fmt != "table":
        found.append(Output(fmt, None))
    for option, name in (
        ("normal_output", "table"),
        ("xml_output", "xml"),
        ("grep_output", "grepable"),
    ):
        path = params.get(option)
        if path is not None:
            found.append(Output(name, None if path == "-" else path))
    base = params.get("all_outputs")
    if base is not None:
        found.extend(Output(name, path) for name, path in oa_paths(base).items())
    to_stdout = [o for o in found if o.path is None]
    if len(to_stdout) > 1:
        raise UsageError("only one report can go to standard output (-)")
    paths = [o.path for o in found if o.path is not None]
    if len(set(paths)) != len(paths):
        raise UsageError("two reports would be written to the same file")
    return found


def require_ipv6(targets: Iterable[str]) -> None:
    """``-6``: every target must be IPv6 (or a name, resolved to IPv6)."""
    for target in targets:
        if parse_target(target).family == socket.AF_INET:
            raise UsageError(f"-6 scans IPv6: {target[:60]!r} is an IPv4 target")


def ipv6_resolver(resolver: Resolver | None) -> Resolver:
    """A resolver that gives only IPv6 addresses (``-6``)."""

    async def resolve(name: str) -> list[str]:
        if resolver is not None:
            answers = await resolver(name)
        else:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(name, None, family=socket.AF_INET6)
            answers = [str(info[4][0]) for info in infos]
        found = [a for a in answers if ":" in a]
        if not found:
            raise OSError(0, "no IPv6 address (-6)")
        return found

    return resolve


def host_timeout_skip(
    seconds: float, timed_out: set[str], clock: Callable[[], float] = time.monotonic
) -> Callable[[str, Port], bool]:
    """``--host-timeout``: a ``skip`` for the engine that drops a host once ``seconds``
    have passed since its first probe, and notes it in ``timed_out``."""
    first: dict[str, float] = {}

    def skip(address: str, port: Port) -> bool:
        now = clock()
        started = first.setdefault(address, now)
        if now - started > seconds:
            timed_out.add(address)
            return True
        return False

    return skip


def combine_skips(*skips: Callable[[str, Port], bool] | None) -> Callable[[str, Port], bool] | None:
    """One ``skip`` that leaves a probe out when any of ``skips`` does (None: none given)."""
    chosen = [s for s in skips if s is not None]
    if not chosen:
        return None
    if len(chosen) == 1:
        return chosen[0]
    return lambda address, port: any(s(address, port) for s in chosen)


def stop_on_signals(
    loop: asyncio.AbstractEventLoop, stop: Callable[[], None]
) -> Callable[[], None]:
    """Call ``stop`` on SIGINT and SIGTERM; returns what undoes it."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)

    def undo() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

    return undo
