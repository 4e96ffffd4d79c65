"""Shared pytest configuration and fixtures for portprobe's tests.

Keep fixtures grouped by owner; add new groups below the existing ones.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# pytest's default "prepend" import mode already puts tests/ on sys.path for
# this conftest; this keeps `import netlab` working under other import modes.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

import netlab  # noqa: E402

# =========================================================================
# Network-namespace lab (tests/netlab.py): `netns` marker, `lab`, `make_lab`
# =========================================================================

#: Services of the shared session lab; tests may rely on exactly these.
SESSION_LAB_TCP = {
    22: "banner", 80: "http", 443: "open", 2451: "http", 3451: "silent", 8080: "open",
}  # fmt: skip
SESSION_LAB_UDP = {53: "dns", 123: "ntp", 7: "echo", 9999: "silent"}
SESSION_LAB_FILTERED_TCP = [81, 444]
SESSION_LAB_FILTERED_UDP = [162]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``netns`` marker."""
    config.addinivalue_line(
        "markers",
        "netns: needs root, iproute2 (ip), nftables (nft), /dev/net/tun and dnspython to "
        "build network namespaces; skipped when missing, but FAILS when the CI env var is set",
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_netns() -> None:
    """Skip (or, under CI, fail) the current test if the netns lab cannot run here."""
    missing = netlab.missing_prerequisites()
    if not missing:
        return
    reason = "netns lab prerequisites missing: " + ", ".join(missing)
    if _in_ci():
        pytest.fail(reason + " (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Gate ``netns``-marked tests before any fixture builds a lab."""
    if item.get_closest_marker("netns") is not None:
        require_netns()


@pytest.fixture(scope="session")
def lab() -> Iterator[netlab.Lab]:
    """One shared lab for the whole session (clean path only, standard services)."""
    require_netns()
    with netlab.Lab(
        tcp=SESSION_LAB_TCP,
        udp=SESSION_LAB_UDP,
        filtered_tcp=SESSION_LAB_FILTERED_TCP,
        filtered_udp=SESSION_LAB_FILTERED_UDP,
    ) as the_lab:
        yield the_lab


@pytest.fixture
def make_lab() -> Iterator[Callable[..., netlab.Lab]]:
    """Factory for per-test labs: ``make_lab(delay_ms=50, ...)`` returns an entered Lab.

    Every lab it built is torn down when the test ends, pass or fail.
    """
    require_netns()
    labs: list[netlab.Lab] = []

    def factory(**kwargs: Any) -> netlab.Lab:
        new_lab = netlab.Lab(**kwargs)
        labs.append(new_lab)  # before __enter__: close() also covers a failed setup
        return new_lab.__enter__()

    yield factory
    for built in reversed(labs):
        built.close()


# ======================= end of netns lab section =========================


# =========================================================================
# Loopback helpers for in-process scans (traffic stays on 127.0.0.1)
# =========================================================================


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 with room for a scan's connects; yields its port."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


#: The command line of this checkout's portprobe, under the interpreter running the tests.
PORTPROBE = [sys.executable, "-m", "scanner"]


def run_cli(*args: str, cwd: Path | None = None) -> Any:
    """Run ``python -m scanner ARGS`` on this machine (no lab); the CompletedProcess."""
    import subprocess

    return subprocess.run(
        [*PORTPROBE, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def portprobe(lab: netlab.Lab, *args: str, timeout: float = 150) -> Any:
    """Run ``python -m scanner ARGS`` inside ``lab``'s client namespace; the CompletedProcess."""
    return lab.run([*PORTPROBE, *args], timeout=timeout)


def probe_evidence(
    lab: netlab.Lab, config: Any, address: str, ports: list[int], *, udp: bool = False
) -> tuple[dict[int, Any], float]:
    """Probe ``ports`` at once with one Prober in ``lab``'s client namespace (UDP if ``udp``):
    ({port: evidence}, total seconds)."""
    import asyncio
    import socket
    import time

    from scanner.evidence import Prober

    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    async def run() -> tuple[dict[int, Any], float]:
        prober = Prober(config)
        probe = prober.probe_udp if udp else prober.probe
        start = time.perf_counter()
        found = await asyncio.gather(*(probe(address, family, p) for p in ports))
        return dict(zip(ports, found, strict=True)), time.perf_counter() - start

    outcome: tuple[dict[int, Any], float] = lab.call_in_client(asyncio.run, run())
    return outcome


@pytest.fixture
def registry_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty registry data directory of the test's own, and a fresh registry cache."""
    from scanner.registry import load_registry

    directory = tmp_path / "data"
    monkeypatch.setenv("PORTPROBE_DATA_DIR", str(directory))
    load_registry.cache_clear()
    yield directory
    load_registry.cache_clear()


# =========================================================================
# IANA's registry XML: test data beside the repository, never committed
# =========================================================================

_IANA_XML_PATH = Path("shared", "iana", "service-names-port-numbers.xml")
#: ../shared/iana/service-names-port-numbers.xml (a real copy of IANA's registry, dated
#: 2026-08-17): CI has ../shared beside the clone; a git worktree may sit one level deeper,
#: so the nearest ancestor's shared/ counts. None when there is none.
IANA_XML_FILE: Path | None = next(
    (
        p / _IANA_XML_PATH
        for p in Path(__file__).resolve().parents[1:]
        if (p / _IANA_XML_PATH).exists()
    ),
    None,
)
needs_iana_xml = pytest.mark.skipif(
    IANA_XML_FILE is None,
    reason="IANA's registry XML (test data, never committed) is not in ../shared/iana",
)
