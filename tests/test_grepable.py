"""nmap's grepable output (-oG): the layout nmap's users grep and cut."""

from __future__ import annotations

import re
from dataclasses import replace

from test_honest_reports import HOST, report, res

from scanner.models import Assessment, PortState
from scanner.report.grepable import grepable_field


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def test_layout_folding_and_fields() -> None:
    hostile = Assessment(label="netchat", evidence="http", evidence_detail="a/b, c\td\x1b[2J")
    netchat = replace(res(2451), assessment=hostile)
    results = [
        res(22, label="ssh"),
        netchat,
        *(res(p, PortState.FILTERED) for p in range(100, 103)),
    ]
    text = lines(report("grepable", results, ports="1-200,2451"))
    assert text[0].startswith("# portprobe 0.1.0 scan initiated ")
    assert text[1] == f"Host: {HOST} ()\tStatus: Up"
    head, ports, ignored = text[2].split("\t")
    assert head == f"Host: {HOST} ()"
    assert ports == (
        "Ports: 22/open/tcp//ssh///, 100/filtered/tcp/////, 101/filtered/tcp/////,"
        " 102/filtered/tcp/////, 2451/open/tcp//netchat//http a|b| c\\x09d\\x1b[2J/"
    )
    assert ignored == "Ignored State: closed (196)"
    assert re.fullmatch(
        r"# portprobe done at .* -- 1 IP address \(1 host up\) scanned in .*", text[3]
    )
    assert len(text) == 4


def test_two_folded_states_are_left_out_unnamed_as_nmap_does() -> None:
    results = [res(22), *(res(p, PortState.FILTERED) for p in range(100, 130))]  # 30 + 170
    text = lines(report("grepable", results, ports="1-200"))
    assert text[2] == f"Host: {HOST} ()\tPorts: 22/open/tcp/////"


def test_fields_cannot_split() -> None:
    assert grepable_field("a/b,c\td\ne") == "a|b|c\\x09d\\x0ae"
