"""nmap's options with nmap's meaning: the README's tables drive these tests.

Scans here only reach loopback (127.0.0.1, ::1).
"""

from __future__ import annotations

import io
import re
import shlex
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.cli import Environment, main
from scanner.cli.habits import Output, apply_nmap_options, host_timeout_skip, outputs_of
from scanner.errors import UsageError
from scanner.models import Port, Proto
from scanner.nmap_options import (
    TIMING_TEMPLATES,
    UNSUPPORTED,
    exclude_ports,
    parse_template,
    refuse_unsupported,
)
from scanner.units import format_duration

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def table(marker: str) -> list[list[str]]:
    """The rows of the README table between ``<!-- marker -->`` and its end marker."""
    block = README.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    rows = [line for line in block.strip().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def code(cell: str) -> str:
    found = re.findall(r"`([^`]+)`", cell)
    assert found, cell
    return found[0]


OPTIONS = table("nmap-options")


def test_the_readme_table_names_every_option_of_the_issue() -> None:
    named = " ".join(row[0] for row in OPTIONS)
    for option in (
        "-sT", "-sU", "-sV", "-sn", "-Pn", "--discover", "-n", "--open", "-F", "--exclude-ports",
        "-r", "-T0", "--max-retries", "--host-timeout", "--min-rate", "--max-rate", "-v",
        "--reason", "-6", "-iL", "-oN", "-oX", "-oG", "-oA", "-V",
    ):  # fmt: skip
        assert option in named, option


def run(argv: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> tuple[int, str, str]:
    """Run the command line in this process: (status, stdout, stderr). Click writes help and
    the version to the real stdout: ``capsys`` adds it."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        main(argv, Environment(stdout=out, stderr=err))
    code = exit_info.value.code
    printed = capsys.readouterr().out if capsys is not None else ""
    return int(code) if isinstance(code, int) else 0, printed + out.getvalue(), err.getvalue()


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 and ::1, in a scratch directory; yields its port."""
    monkeypatch.chdir(tmp_path)
    socks = []
    port = 0
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family)
        sock.bind((address, port))
        sock.listen(16)
        port = sock.getsockname()[1]
        socks.append(sock)
    yield port
    for sock in socks:
        sock.close()


@pytest.mark.parametrize("row", OPTIONS, ids=[row[0] for row in OPTIONS])
def test_every_example_of_the_table_runs(
    row: list[str],
    loopback: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    example = code(row[2])
    argv = shlex.split(example)
    assert argv[0] == "portprobe"
    # The examples name port 22 (or 53): here, the loopback listener's port.
    listened = any(word in ("22", "53") for word in argv)
    argv = [str(loopback) if word in ("22", "53") else word for word in argv[1:]]
    if "-iL" in argv:
        monkeypatch.setattr("sys.stdin", io.StringIO("127.0.0.1\n"))
    status, out, err = run(argv, capsys)
    assert status == 0, (example, out, err)
    assert "error" not in err, err
    if "-V" in argv:
        assert re.fullmatch(r"portprobe \S+\n", out)
    elif "-sn" in argv:
        assert "portprobe report for 127.0.0.1\nHost is up" in out
    elif "-oA" in argv:
        assert {p.name for p in tmp_path.iterdir()} >= {"scan.nmap", "scan.xml", "scan.gnmap"}
    elif "-oX" in argv:
        assert out.startswith("<?xml") and f'portid="{loopback}"' in out
    elif "-oG" in argv:
        assert f"Ports: {loopback}/open/tcp/" in out
    elif "-oN" in argv:
        assert f"{loopback}/tcp" in (tmp_path / "scan.txt").read_text()
    elif listened and "-sU" not in argv:
        assert f"{loopback}/tcp  open" in out, out


def test_help_shows_usage_options_examples_and_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    assert "Usage: portprobe [OPTIONS] TARGET..." in out
    for needle in ("-p", "-sn", "-oA", "--top-ports", "Examples:", "diff", "merge"):
        assert needle in out, needle
    assert "\\[" not in out  # no stray backslashes before brackets
    status, scan_help, _ = run(["scan", "--help"], capsys)
    assert status == 0 and "\\[" not in scan_help
    assert "-iL, --targets-file FILE" in scan_help


# -- nmap options portprobe does not have -------------------------------------------------


@pytest.mark.parametrize("option", sorted(UNSUPPORTED))
def test_an_unsupported_nmap_option_says_what_to_use_instead(option: str) -> None:
    status, out, err = run(
        ["127.0.0.1", option, "x"] if option.startswith("--") else ["127.0.0.1", option]
    )
    assert status == 2 and out == ""
    assert err == f"portprobe: error: {UNSUPPORTED[option]}\n"


def test_the_readme_quotes_the_messages_it_shows() -> None:
    for option in ("-sS", "-O"):
        assert f"portprobe: error: {UNSUPPORTED[option]}" in README


@pytest.mark.parametrize("argv", [["-sS"], ["-PS22"], ["-sQ"], ["-PX"]])
def test_nmap_families_are_refused_by_name(argv: list[str]) -> None:
    with pytest.raises(UsageError, match=re.escape(argv[0][:3])):
        refuse_unsupported(argv)


def test_an_unknown_option_gets_no_unrelated_suggestion() -> None:
    status, _, err = run(["127.0.0.1", "--retry-forever"])
    assert status == 2 and "Did you mean" not in err and "--retry-forever" in err


# -- timing templates -----------------------------------------------------------------------


def test_the_readmes_timing_table_is_the_code_s() -> None:
    rows = table("timing-templates")
    assert len(rows) == len(TIMING_TEMPLATES)
    for row, (number, template) in zip(rows, sorted(TIMING_TEMPLATES.items()), strict=True):
        assert row[0] == f"`-T{number}` {template.name}"
        assert row[1] == str(template.concurrency)
        rate = template.rate
        assert row[2] == (
            "no cap" if rate is None else (f"1/{round(1 / rate)}" if rate < 1 else f"{rate:g}")
        )
        assert row[3] == str(template.retries)
        times = (template.initial_rtt, template.min_rtt, template.max_rtt)
        assert row[4] == " / ".join(format_duration(t) for t in times)
        host = template.host_timeout
        assert row[5] == ("none" if host is None else format_duration(host))
        assert parse_template(str(number)) is template
        assert parse_template(template.name) is template


def test_a_template_fills_only_what_was_not_given() -> None:
    params = {"timing_template": "4", "concurrency": 10, "retries": 2, "rate": None}
    out = apply_nmap_options(params, frozenset({"concurrency"}))
    assert out["concurrency"] == 10  # given: kept
    assert out["initial_rtt"] == "500ms" and out["max_rtt"] == "1.25s"
    assert out["retries"] == 2


@pytest.mark.parametrize(
    ("params", "explicit", "needle"),
    [
        ({"max_retries": 3, "retries": 1}, {"retries"}, "--max-retries"),
        ({"max_rate": 5.0, "rate": 9.0}, {"rate"}, "--max-rate"),
        ({"fast": True, "ports": "22"}, set(), "-F"),
        ({"open_only": True, "show_all": True}, set(), "--open"),
        ({"skip_discovery": True, "discover": True}, set(), "-Pn"),
        ({"version_scan": True, "no_evidence": True}, set(), "-sV"),
        ({"timing_template": "9"}, set(), "-T"),
        ({"min_rate": 100.0, "rate": 10.0}, set(), "--min-rate"),
    ],
)
def test_contradictions_are_usage_errors(
    params: dict[str, object], explicit: set[str], needle: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(needle)):
        apply_nmap_options(params, frozenset(explicit))


def test_aliases_and_min_rate() -> None:
    out = apply_nmap_options(
        {"max_retries": 5, "max_rate": 50.0, "min_rate": 20.0, "concurrency": 4}, frozenset()
    )
    assert out["retries"] == 5 and out["rate"] == 50.0
    assert out["concurrency"] == 20  # 20 a second, 1 s before the first answer


def test_outputs() -> None:
    assert outputs_of({"all_outputs": "week"}) == [
        Output("table", "week.nmap"),
        Output("xml", "week.xml"),
        Output("grepable", "week.gnmap"),
    ]
    assert outputs_of({"xml_output": "-"}) == [Output("xml", None)]
    assert outputs_of({"output": "a.json", "grep_output": "-"}) == [
        Output("json", "a.json"),
        Output("grepable", None),
    ]
    with pytest.raises(UsageError, match="standard output"):
        outputs_of({"xml_output": "-", "grep_output": "-"})
    with pytest.raises(UsageError, match="same file"):
        outputs_of({"xml_output": "a.xml", "all_outputs": "a"})


def test_exclude_ports_and_host_timeout() -> None:
    ports = [Port(Proto.TCP, n) for n in (21, 22, 23)] + [Port(Proto.UDP, 53)]
    assert exclude_ports(ports, "22,U:53") == [Port(Proto.TCP, 21), Port(Proto.TCP, 23)]
    with pytest.raises(UsageError, match="no port"):
        exclude_ports(ports, "1-100")
    now = [0.0]
    dropped: set[str] = set()
    skip = host_timeout_skip(10.0, dropped, clock=lambda: now[0])
    assert not skip("198.18.0.2", Port(Proto.TCP, 1))
    now[0] = 5.0
    assert not skip("198.18.0.3", Port(Proto.TCP, 1))
    now[0] = 10.5
    assert skip("198.18.0.2", Port(Proto.TCP, 2)) and not skip("198.18.0.3", Port(Proto.TCP, 2))
    assert dropped == {"198.18.0.2"}
