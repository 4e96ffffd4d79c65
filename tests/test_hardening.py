"""Hardening checks that need no lab: failures of this machine during a loopback scan.

A scan that runs out of descriptors can fail to read the registry's data files. That must
end the scan with one line and exit status 1, never a traceback or a scan that never ends.
"""

from __future__ import annotations

import errno
import io
from typing import Any

import pytest

import scanner.assess
from scanner.cli import Environment, ExitStatus, main

pytestmark = pytest.mark.timeout(30)  # the bug this guards against was a hang


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        main(argv, Environment(stdout=io.StringIO(), stderr=err))
    return int(exit_info.value.code or 0), err.getvalue()


def out_of_descriptors(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.EMFILE, "Too many open files")


@pytest.mark.parametrize("where", ["loading", "assessing"])
def test_registry_out_of_descriptors_is_one_line_and_exit_1(
    listener: int, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "loading":
        monkeypatch.setattr(scanner.assess, "Assessor", out_of_descriptors)
    else:  # the first assessment reads the top-ports list lazily
        monkeypatch.setattr(scanner.assess.Assessor, "assess", out_of_descriptors)
    code, err = run(["127.0.0.1", "-p", str(listener), "--no-evidence", "-q"])
    assert code == ExitStatus.ERROR
    assert err == "portprobe: error: cannot load the port registry: Too many open files\n"


# --------------------------------------------------------------------------- lossy UDP


# UDP ports get every retry (scanner/engine/core.py): a silent UDP port is common and shows no
# loss, so a responder must not depend on loss having been noticed elsewhere.
def test_an_open_udp_port_whose_first_two_probes_are_lost_is_still_found() -> None:
    import asyncio

    from fakes import FakeTransport, Hosts, Reply, Silence

    from scanner.engine import Scan
    from scanner.models import Port, PortState, Proto, ScanConfig, Timing
    from scanner.transport import UDP_OPEN

    lossy = FakeTransport(
        protocol=Proto.UDP,
        script={("198.18.0.2", 53): [Silence(), Silence(), Reply(UDP_OPEN, 0.001)]},
    )
    timing = Timing(initial_rtt_timeout=0.1, min_rtt_timeout=0.02, max_rtt_timeout=0.2)
    scan = Scan(
        Hosts("198.18.0.2"),
        [Port(Proto.UDP, 53)],
        ScanConfig(seed=1, timing=timing, retries=2),
        transport=lossy,
    )

    async def collect() -> list[Any]:
        return [r async for r in scan]

    (result,) = asyncio.run(collect())
    assert (result.state, result.tries) == (PortState.OPEN, 3)
