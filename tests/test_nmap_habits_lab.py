"""nmap's habits on the namespace lab: XML that ndiff finds equal to nmap's, host discovery.

portprobe and nmap run in the lab's client namespace; every address is the lab's own.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import socket
import time
from pathlib import Path
from xml.etree import ElementTree

import lab_discovery
import netlab
import pytest
from conftest import PORTPROBE, portprobe
from test_audit_lab import _services_file

from scanner.discovery import DiscoveryConfig, HostStatus, discover
from scanner.report.read import read_report
from scanner.transport import IcmpEchoTransport

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

# 28 filtered ports: more than nmap's 25, so both fold them into <extraports>.
FILTERED = list(range(100, 128))


@pytest.mark.skipif(shutil.which("ndiff") is None, reason="ndiff is not installed")
def test_ndiff_finds_no_difference_on_a_host_with_28_filtered_ports(
    make_lab: type[netlab.Lab], tmp_path: Path
) -> None:
    lab = make_lab(tcp={22: "open", 80: "http"}, filtered_tcp=FILTERED)
    spec = "1-30,80,100-127"
    ports = [*range(1, 31), 80, *FILTERED]
    datadir = tmp_path / "nmap-data"
    datadir.mkdir()
    _services_file(datadir / "nmap-services", ports)
    nmap_xml, ours = tmp_path / "nmap.xml", tmp_path / "portprobe.xml"
    scan = ["-sT", "-Pn", "-p", spec, "--datadir", str(datadir), lab.server4]
    nmap = lab.run(["nmap", *scan, "-oA", str(tmp_path / "nmap")], timeout=120)
    assert nmap.returncode == 0, nmap.stderr
    proc = portprobe(lab, lab.server4, "-p", spec, "--no-evidence", "-oX", str(ours))
    assert proc.returncode == 0, proc.stderr
    text = ours.read_text()
    assert '<extraports state="filtered" count="28">' in text
    assert 'ports="100-127"' in text
    diff = lab.run(["ndiff", str(nmap_xml), str(ours)], timeout=60)
    assert "Traceback" not in diff.stderr, diff.stderr
    assert [line for line in diff.stdout.splitlines() if "/tcp" in line] == [], diff.stdout
    assert diff.returncode == 0, diff.stdout
    # A host with 5 closed ports: nmap lists them, named; so does portprobe, without --all.
    few = "1-5,22,80"
    small = ["-sT", "-Pn", "-p", few, "--datadir", str(datadir), lab.server4]
    assert lab.run(["nmap", *small, "-oX", str(tmp_path / "few.xml")]).returncode == 0
    proc = portprobe(lab, lab.server4, "-p", few, "--no-evidence", "-oX", str(ours))
    assert proc.returncode == 0, proc.stderr
    assert '<port protocol="tcp" portid="1"><state state="closed"' in ours.read_text()
    diff = lab.run(["ndiff", str(tmp_path / "few.xml"), str(ours)], timeout=60)
    assert [line for line in diff.stdout.splitlines() if "/tcp" in line] == [], diff.stdout
    # The grepable output (-oG) has nmap's ports line: the same ports, states and labels.
    grepable = tmp_path / "portprobe.gnmap"
    proc = portprobe(lab, lab.server4, "-p", spec, "--no-evidence", "-o", str(grepable))
    assert proc.returncode == 0, proc.stderr
    assert _ports_line(grepable) == _ports_line(tmp_path / "nmap.gnmap")


def _ports_line(path: Path) -> tuple[list[str], str]:
    """The port fields (without the version) and the ignored state of a grepable file."""
    (line,) = [line for line in path.read_text().splitlines() if "\tPorts: " in line]
    fields = dict(part.split(": ", 1) for part in line.split("\t")[1:])
    ports = ["/".join(f.split("/")[:5]) for f in fields["Ports"].split(", ")]
    return ports, fields.get("Ignored State", "")


# -- host discovery ------------------------------------------------------------------------


def _discover(lab: netlab.Lab, hosts: list[str], config: DiscoveryConfig) -> dict[str, HostStatus]:
    async def run() -> dict[str, HostStatus]:
        return {status.host: status async for status in discover(hosts, config)}

    found: dict[str, HostStatus] = lab.call_in_client(asyncio.run, run())
    return found


def _icmp_kind() -> str:
    transport = IcmpEchoTransport()
    try:
        return transport.kind(socket.AF_INET)
    finally:
        transport.close()


def test_discovery_tells_live_hosts_from_silent_routed_ones(
    make_lab: type[netlab.Lab],
) -> None:
    lab = make_lab(tcp={22: "open", 80: "http"}, extra_hosts=lab_discovery.EXTRA_HOSTS)
    up, down = lab_discovery.prepare(lab)
    found = _discover(lab, [*up, *down], DiscoveryConfig())
    assert sorted(h for h, s in found.items() if s.up) == sorted(up)
    assert sorted(h for h, s in found.items() if not s.up) == sorted(down)
    assert {found[h].reason for h in down} == {"no-response"}
    assert found[lab.server4].reason in ("syn-ack", "conn-refused", "echo-reply")
    # Hosts that answer one kind of probe only: each method alone finds them.
    assert found[lab_discovery.ICMP_ONLY].reason == "echo-reply"
    assert found[lab_discovery.UDP_ONLY].reason == "port-unreach"


@pytest.mark.parametrize("unprivileged", [True, False], ids=["ping-socket", "raw-socket"])
def test_icmp_echo_alone_through_either_socket(
    make_lab: type[netlab.Lab], unprivileged: bool
) -> None:
    lab = make_lab(tcp={}, extra_hosts=lab_discovery.EXTRA_HOSTS)
    _up, down = lab_discovery.prepare(lab)
    # The lab's client namespace is ours: let root's group use ping sockets there, or not.
    groups = "0 2147483647" if unprivileged else "1 0"
    sysctl = lab.run(["sysctl", "-w", f"net.ipv4.ping_group_range={groups}"], timeout=10)
    assert sysctl.returncode == 0, sysctl.stderr
    kind = lab.call_in_client(_icmp_kind)
    assert kind == ("dgram" if unprivileged else "raw")
    config = DiscoveryConfig(tcp_ports=(), udp_port=None)
    hosts = [lab.server4, lab_discovery.ICMP_ONLY, lab_discovery.UDP_ONLY, *down[:4]]
    found = _discover(lab, hosts, config)
    assert (
        {h: s.up for h, s in found.items()}
        == {
            lab.server4: True,
            lab_discovery.ICMP_ONLY: True,
            lab_discovery.UDP_ONLY: False,  # it drops echoes, and no other probe was sent
            **{h: False for h in down[:4]},
        }
    )
    assert found[lab.server4].reason == "echo-reply"


# -- scaling out: the README's GNU parallel recipe ------------------------------------------


def _recipe() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("<!-- shard-recipe -->", 1)[1].split("<!-- /shard-recipe -->", 1)[0]
    return block.split("```sh\n", 1)[1].split("```", 1)[0]


def _full_states(path: Path) -> dict[tuple[str, str, int], str]:
    """Every port a report says was probed, listed or not, with its state."""
    report = read_report(str(path))
    every = [*report.results, *report.coverage.unlisted_results(report.results)]
    states = {(r.host, r.protocol.value, r.port): r.state.value for r in every}
    assert len(states) == len(every), "a port was reported twice"
    return states


@pytest.mark.skipif(shutil.which("parallel") is None, reason="GNU parallel is not installed")
def test_the_readmes_parallel_shard_recipe_equals_the_unsharded_scan(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    recipe = _recipe()
    assert recipe.startswith("parallel portprobe ") and "portprobe merge" in recipe
    # `portprobe` is this checkout's, run by the interpreter running the tests.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "portprobe"
    wrapper.write_text(f'#!/bin/sh\nexec {" ".join(PORTPROBE)} "$@"\n')
    wrapper.chmod(0o755)
    script = f"cd {tmp_path} && export PATH={bin_dir}:$PATH && set -e\n{recipe}"
    proc = lab.run(["bash", "-c", script], timeout=200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shards = sorted(tmp_path.glob("shard*.jsonl"))
    assert len(shards) == 4
    # The same scan, unsharded: the command line of the recipe without the shard.
    first = recipe.split("\n", 1)[0] + recipe.split("\n")[1]
    words = first.replace("\\", " ").split()
    argv = words[words.index("portprobe") + 1 : words.index(":::")]
    shard_at = argv.index("--shard")
    del argv[shard_at : shard_at + 2]
    argv[argv.index("-o") + 1] = str(tmp_path / "whole.json")
    whole = portprobe(lab, *argv)
    assert whole.returncode == 0, whole.stderr
    expected = _full_states(tmp_path / "whole.json")
    assert len(expected) == 2 * 2000  # every port of both addresses, closed ones included
    assert _full_states(tmp_path / "merged.json") == expected


# -- the command line: -sn, --discover, --host-timeout, resume without --all -----------------


def test_sn_lists_exactly_the_hosts_up(make_lab: type[netlab.Lab], tmp_path: Path) -> None:
    lab = make_lab(tcp={22: "open"}, extra_hosts=lab_discovery.EXTRA_HOSTS)
    up, down = lab_discovery.prepare(lab)
    v4_up = [h for h in up if ":" not in h]
    v4_down = [h for h in down if ":" not in h]
    proc = portprobe(lab, "-sn", *v4_up, *v4_down, "-oX", str(tmp_path / "sn.xml"), "-q")
    assert proc.returncode == 0, proc.stderr
    shown = re.findall(r"portprobe report for (\S+)\nHost is up", proc.stdout)
    assert sorted(shown) == sorted(v4_up)
    assert f"({len(v4_up)} hosts up)" in proc.stdout
    root = ElementTree.parse(tmp_path / "sn.xml").getroot()
    found = [h.find("address").get("addr") for h in root.iter("host")]  # type: ignore[union-attr]
    assert sorted(found) == sorted(v4_up)
    assert root.find("runstats/hosts").get("down") == str(len(v4_down))  # type: ignore[union-attr]


def test_discover_skips_the_hosts_found_down(make_lab: type[netlab.Lab], tmp_path: Path) -> None:
    lab = make_lab(tcp={22: "open"}, extra_hosts=lab_discovery.EXTRA_HOSTS)
    _, down = lab_discovery.prepare(lab)
    silent = [h for h in down if ":" not in h][:4]
    out = tmp_path / "scan.json"
    args = [lab.server4, *silent, "-p", "22,80", "--no-evidence", "-o", str(out)]
    proc = portprobe(lab, *args, "--discover")
    assert proc.returncode == 0, proc.stderr
    assert "4 hosts found down (--discover) were not scanned" in proc.stdout
    hosts = {r.host for r in read_report(str(out)).results}
    assert hosts == {lab.server4}
    # Without it (nmap's -Pn, the default) every host is probed.
    every = portprobe(lab, *args, "-Pn")
    assert every.returncode == 0 and {r.host for r in read_report(str(out)).results} == {
        lab.server4,
        *silent,
    }


def test_host_timeout_drops_a_slow_host_and_says_so(lab: netlab.Lab, tmp_path: Path) -> None:
    # 501 ports at 200 a second take 2.5 s: the host is dropped after 300 ms.
    out = tmp_path / "scan.json"
    proc = portprobe(
        lab, lab.server4, "-p", "1000-1500", "--max-rate", "200", "--host-timeout", "300ms",
        "--no-evidence", "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"Host {lab.server4} timed out (--host-timeout)" in proc.stdout
    report = read_report(str(out))
    probed = len(report.results) + len(report.coverage.unlisted.get(lab.server4, {}))
    assert 0 < probed < 250  # what was probed in time is reported, and only that


def test_a_report_without_all_resumes_without_probing_closed_ports_again(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    out = tmp_path / "scan.jsonl"
    proc = lab.popen(
        [*PORTPROBE, lab.server4, "-p-", "--rate", "4000", "--no-evidence", "--seed", "5",
         "-o", str(out)],
        stdout=-1, stderr=-1, text=True,
    )  # fmt: skip
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    before = _full_states(out)
    assert 1000 < len(before) < 65535
    resumed = portprobe(lab, "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "probed again" not in resumed.stderr
    assert "ports probed now" in resumed.stdout
    probed_now = int(resumed.stdout.split(" results kept, ")[1].split(" ports probed now")[0])
    assert probed_now == 65535 - len(before)  # nothing done before was probed again
    assert len(resumed.stdout.splitlines()) < 40  # the terminal is not flooded
    after = _full_states(out)
    assert {k: v for k, v in after.items() if k in before} == before
    whole = tmp_path / "whole.jsonl"
    args = [lab.server4, "-p-", "--no-evidence", "-o", str(whole)]
    assert portprobe(lab, *args).returncode == 0
    assert after == _full_states(whole)
