"""The real ``portprobe`` command against Debian's common daemons, in one namespace lab.

The daemons (``tests/daemonlab_c.py``) start once for the module, some on their registered
ports and some on ports registered to something else. One scan, the command a user types
(``portprobe ADDRESS -p T:...,U:... -sT -sU --format json``), runs from the client
namespace over every port they serve, TCP and UDP. Then, port by port, its JSON report
must give the state, the evidence service, the product and the version (the upstream part
of the installed Debian package's version, as ``dpkg-query`` gives it) where the protocol
gives them, and the verdict.

Where portprobe itself falls short (not the lab), the assertion stays and is marked
``xfail(strict=True)`` in :data:`GAPS`, naming the gap: when portprobe learns it, the
test fails until the mark goes.

Without a daemon's binary its ports skip, saying which package is missing; under CI
(``CI`` set) that is a failure, as for the lab itself.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import daemonlab_c
import netlab
import pytest
from conftest import _in_ci, portprobe, require_netns
from daemonlab_c import DAEMONS, Port
from netlab import _ns_pids

pytestmark = pytest.mark.netns

SCAN_TIMEOUT = 60.0  # the scan takes a few seconds; this bounds a hung one
REAP_GRACE = 5.0  # seconds a SIGKILLed daemon process may take to disappear

#: (port/protocol, what is asserted) -> the portprobe gap that makes it fail today. (The
#: first seven, DNS over UDP without version.bind, imaps/pop3s verdicts and VNC on 5901,
#: were mended.)
GAPS: dict[tuple[str, str], str] = {}

Row = dict[str, Any]


class Scan:
    """The one scan's report rows by (port, protocol), the daemons that were skipped, and
    the processes of the server namespace that outlived the lab."""

    def __init__(
        self, rows: dict[tuple[int, str], Row], running: daemonlab_c.Running, leftover: list[int]
    ) -> None:
        self.rows = rows
        self.leftover = leftover
        self.skipped = {
            (port.number, port.protocol): why
            for name, why in running.skipped.items()
            for port in DAEMONS[name].ports
        }

    def row(self, port: Port) -> Row:
        """The report's row of ``port``; skips when its daemon is not installed."""
        key = (port.number, port.protocol)
        if key in self.skipped:
            pytest.skip(self.skipped[key])
        assert key in self.rows, f"{port.number}/{port.protocol} missing from the report"
        return self.rows[key]


@pytest.fixture(scope="module")
def scan() -> Iterator[Scan]:
    """Every installed daemon of ``daemonlab_c`` serving; one portprobe scan of all ports."""
    require_netns()
    missing = daemonlab_c.missing()
    if missing and _in_ci():
        pytest.fail(f"daemons missing under CI: {missing}", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="daemons-c-") as workdir, netlab.Lab() as lab:
        running = daemonlab_c.start(lab, Path(workdir))
        ports = daemonlab_c.scan_args((p.number, p.protocol) for p in running.ports)
        res = portprobe(
            lab, running.address, *ports, "-q", "--format", "json", timeout=SCAN_TIMEOUT
        )
        daemon_pids = _ns_pids(lab.server_ns)
    assert res.returncode in (0, 1), res.stderr  # 1: an alarm was raised (a contradiction)
    rows = {(r["port"], r["protocol"]): r for r in json.loads(res.stdout)["results"]}
    yield Scan(rows, running, _survivors(daemon_pids))


def _survivors(pids: list[int]) -> list[int]:
    """The ``pids`` still alive after a grace: the lab SIGKILLs its namespace's processes
    at teardown, and the kernel takes a moment to reap those that were reparented."""
    deadline = time.monotonic() + REAP_GRACE
    while (alive := [pid for pid in pids if Path(f"/proc/{pid}").exists()]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return alive


def _cases(field: str, applies: Callable[[Port], bool] = lambda _port: True) -> list[Any]:
    """One pytest param per lab port that ``applies``, marked xfail where :data:`GAPS` says."""
    params = []
    for daemon in DAEMONS.values():
        for port in daemon.ports:
            if not applies(port):
                continue
            key = f"{port.number}/{port.protocol}"
            gap = GAPS.get((key, field))
            marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
            params.append(pytest.param(port, id=f"{daemon.name}-{key}", marks=marks))
    return params


@pytest.mark.parametrize("port", _cases("state"))
def test_state(scan: Scan, port: Port) -> None:
    """Every port a daemon serves is open (a UDP one by its reply: udp-response)."""
    row = scan.row(port)
    assert row["state"] == port.state
    assert row["reason"] == ("syn-ack" if port.protocol == "tcp" else "udp-response")


@pytest.mark.parametrize("port", _cases("service"))
def test_service(scan: Scan, port: Port) -> None:
    """The evidence names what the daemon speaks, whatever the port's label."""
    assert scan.row(port)["evidence"] == port.service


@pytest.mark.parametrize("port", _cases("product", lambda port: bool(port.product)))
def test_product(scan: Scan, port: Port) -> None:
    """The product, where the protocol names it (OpenSSH, nginx, Exim, Dovecot...)."""
    assert scan.row(port).get("product") == port.product


@pytest.mark.parametrize("port", _cases("version", lambda port: bool(port.package)))
def test_version(scan: Scan, port: Port) -> None:
    """The version, where the protocol gives it: the installed package's upstream version."""
    want = daemonlab_c.upstream_version(port.package)
    assert want, f"dpkg-query knows no version of {port.package}"
    assert scan.row(port).get("version") == want


@pytest.mark.parametrize("port", _cases("verdict"))
def test_verdict(scan: Scan, port: Port) -> None:
    """The verdict: consistent on the port's own label, customary on a documented
    unofficial use (HTTP on 8000, SSH on 2222), contradicts anywhere else."""
    row = scan.row(port)
    assert row["verdict"] == port.verdict
    assert ("label is not evidence" in row["warning"]) == (port.verdict == "contradicts")


def test_teardown_leaves_no_daemon(scan: Scan) -> None:
    """Every process the daemons ran in the server namespace (forked workers included) is
    gone once the lab is closed: nothing of the lab outlives it."""
    assert scan.leftover == []
