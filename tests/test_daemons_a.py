"""The new TCP probes against real daemons from Debian's packages, in one namespace lab.

The daemons (``tests/daemonlab_a.py``) start once for the module, some on their registered
ports and some on ports registered to something else. Each probe's request goes out from
the client namespace as ``scanner.evidence`` would send it; its decoder sees every byte
received so far after each read, and the first answer counts. The product must be what the
daemon is, and the version the one of the installed Debian package. Last, the real I/O
(``scanner.evidence.Prober``, with every probe of ``protocols.tcp``) probes every daemon's
port at once and must name them all.

Without a daemon's binary its test skips, saying which package is missing; under CI
(``CI`` set) that is a failure, as for the lab itself.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import daemonlab_a
import netlab
import pytest
from conftest import _in_ci, probe_evidence, require_netns
from daemonlab_c import upstream_version
from test_protocols_a import PROBES

from scanner.models import EvidenceConfig
from scanner.protocols import Evidence, tcp
from scanner.protocols.tcp import TcpProbe

pytestmark = pytest.mark.netns

READ_TIMEOUT = 3.0  # seconds one exchange may take; a daemon on the lab's veth answers in ms

Daemons = tuple[netlab.Lab, daemonlab_a.Running]


@pytest.fixture(scope="module")
def daemons() -> Iterator[Daemons]:
    """One lab with every installed daemon of ``daemonlab_a`` listening."""
    require_netns()
    missing = daemonlab_a.missing()
    if missing and _in_ci():
        pytest.fail(f"daemons missing under CI: {missing}", pytrace=False)
    # The lab (and its daemons) goes first, then their data.
    with tempfile.TemporaryDirectory(prefix="daemons-a-") as workdir, netlab.Lab() as lab:
        yield lab, daemonlab_a.start(lab, Path(workdir))


async def exchange(address: str, port: int, probe: TcpProbe) -> Evidence | None:
    """Send ``probe``'s request; decode after every read; the first answer, or None.

    Stops at an answer, the peer's close, ``probe.max_reply`` bytes or READ_TIMEOUT.
    """
    reader, writer = await asyncio.open_connection(address, port)
    data = b""
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            writer.write(probe.request(address, port))
            while len(data) < probe.max_reply:
                chunk = await reader.read(probe.max_reply - len(data))
                if not chunk:
                    break
                data += chunk
                if (found := probe.decode(data)) is not None:
                    return found
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        writer.close()
    return None


def run_exchanges(
    daemons: Daemons, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], Evidence | None]:
    """(daemon, probe) -> the probe's answer from that daemon, all at once, from the client."""

    lab, running = daemons

    async def all_of_them() -> list[Evidence | None]:
        return await asyncio.gather(
            *(exchange(running.address, running.ports[d], PROBES[p]) for d, p in pairs)
        )

    found = lab.call_in_client(asyncio.run, all_of_them())
    return dict(zip(pairs, found, strict=True))


def need(daemons: Daemons, daemon: str) -> None:
    if daemon in daemons[1].skipped:
        pytest.skip(daemons[1].skipped[daemon])


@pytest.mark.parametrize("daemon", sorted(daemonlab_a.DAEMONS))
def test_each_daemon_is_identified_with_product_and_version(daemons: Daemons, daemon: str) -> None:
    need(daemons, daemon)
    want = daemonlab_a.DAEMONS[daemon]
    found = run_exchanges(daemons, [(daemon, want.probe)])[(daemon, want.probe)]
    assert found is not None, f"{want.probe} drew nothing from {daemon}"
    assert (found.service, found.product) == (want.service, want.product)
    assert found.version == (upstream_version(want.package) if want.package else "")
    assert found.rule.startswith(f"{want.service}:")


def test_no_probe_names_another_daemon(daemons: Daemons) -> None:
    """Every probe against every daemon, at once: only the daemon's own probe answers, and
    no other decoder takes its bytes for something else (MariaDB speaks first to all).

    MongoDB's probe has no daemon of its own here; it must answer none of them.
    """
    present = [d for d in daemonlab_a.DAEMONS if d not in daemons[1].skipped]
    pairs = [(d, p) for d in present for p in PROBES]
    found = run_exchanges(daemons, pairs)
    wrong = {
        pair: evidence
        for pair, evidence in found.items()
        if evidence is not None and evidence.service != daemonlab_a.DAEMONS[pair[0]].service
    }
    assert wrong == {}
    for daemon in present:
        assert found[(daemon, daemonlab_a.DAEMONS[daemon].probe)] is not None


def test_the_prober_names_every_daemon(daemons: Daemons) -> None:
    """scanner.evidence's Prober, every port at once: each daemon's service, product and
    version, whatever port it is on (PostgreSQL on 2451, BIND on PostgreSQL's 5432...)."""
    lab, running = daemons
    registered = {p.name for p in (*tcp.active_probes(), *tcp.passive_probes())}
    assert set(PROBES) - {"greeting"} <= registered  # every probe here runs in a real scan
    found, _seconds = probe_evidence(
        lab, EvidenceConfig(timeout=3.0), running.address, sorted(running.ports.values())
    )
    seen = {name: found[port] for name, port in running.ports.items()}
    for name, evidence in seen.items():
        want = daemonlab_a.DAEMONS[name]
        version = upstream_version(want.package) if want.package else ""
        assert (evidence.service, evidence.product, evidence.version) == (
            want.service, want.product, version,
        ), name  # fmt: skip
