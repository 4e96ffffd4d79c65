"""nmap's habits on the namespace lab: XML that ndiff finds equal to nmap's, host discovery.

portprobe and nmap run in the lab's client namespace; every address is the lab's own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import netlab
import pytest
from conftest import portprobe
from test_audit_lab import _services_file

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
    nmap = lab.run(["nmap", *scan, "-oX", str(nmap_xml)], timeout=120)
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
