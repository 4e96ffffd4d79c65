"""The command line: bad input, exit codes, formats. Real sockets here go to loopback only."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner import __version__
from scanner.cli import Environment, ExitStatus, main
from scanner.errors import UsageError
from scanner.units import parse_duration

# Every case must be refused before a single probe is sent (targets are loopback anyway).
BAD_INPUT = [
    (["127.0.0.1", "-p", "0"], "out of range"),
    (["127.0.0.1", "-p", "70000"], "out of range"),
    (["127.0.0.1", "-p", "abc"], "not a port"),
    (["127.0.0.1", "-p", "5-1"], "reversed"),
    (["127.0.0.1", "-p", ""], "empty"),
    (["127.0.0.1", "-p", "22,,80"], "empty"),
    (["127.0.0.300", "-p", "22"], "invalid target"),
    (["a..b", "-p", "22"], "invalid target"),
    (["http://127.0.0.1/", "-p", "22"], "invalid target"),
    (["-p", "22"], "no targets"),
    (["127.0.0.1", "-p", "22", "-iL", "/nonexistent/targets.txt"], "/nonexistent/targets.txt"),
    (["127.0.0.1", "-p", "22", "-o", "/nonexistent/dir/out.csv"], "cannot write"),
    (["127.0.0.1", "-p", "22", "-o", "out.xlsx"], "--format"),
    (["127.0.0.1", "-p", "22", "--format", "yaml"], "--format"),
    (["127.0.0.1", "-p", "22", "--rate", "0"], "--rate"),
    (["127.0.0.1", "-p", "22", "--rate", "-5"], "--rate"),
    (["127.0.0.1", "-p", "22", "--rate", "fast"], "--rate"),
    (["127.0.0.1", "-p", "22", "--retries", "-1"], "--retries"),
    (["127.0.0.1", "-p", "22", "--concurrency", "0"], "--concurrency"),
    (["127.0.0.1", "-p", "22", "--concurrency", "many"], "--concurrency"),
    (["127.0.0.1", "-p", "22", "--seed", "abc"], "--seed"),
    (["127.0.0.1", "-p", "22", "--min-rtt-timeout", "soon"], "--min-rtt-timeout"),
    (["127.0.0.1", "-p", "22", "--max-rtt-timeout", "0"], "--max-rtt-timeout"),
    (["127.0.0.1", "-p", "22", "--min-rtt-timeout", "2s", "--max-rtt-timeout", "1s"], "exceed"),
    (["127.0.0.1", "--top-ports", "0"], "top"),
    (["127.0.0.1", "-p", "22", "--top-ports", "10"], "either"),
    (["127.0.0.1", "--no-such-option"], "no-such-option"),
    (["127.0.0.1", "-p", "22", "--workers", "0"], "--workers"),
    (["127.0.0.1", "-p", "22", "--workers", "two"], "--workers"),
    (["127.0.0.1", "-p", "22", "--evidence-timeout", "soon"], "--evidence-timeout"),
    (["127.0.0.1", "-p", "22", "--evidence-timeout", "0s"], "--evidence-timeout"),
    (["127.0.0.1", "-p", "22", "--exclude", "1.2.3.4.5"], "invalid target"),
    (["127.0.0.1", "-p", "S:22"], "SCTP"),
    (["127.0.0.1", "-p", "X:22"], "unknown protocol prefix"),
    (["127.0.0.1", "-p", "U:"], "empty"),
    (["127.0.0.1", "-sU", "-p", "U:T:53"], "prefix"),
    (["127.0.0.1", "-p", "22", "--defeat-icmp-ratelimit"], "UDP option"),
    (["127.0.0.1", "-sU", "--top-ports", "0"], "top"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], needle: str, tmp_path: Path) -> None:
    proc = run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("portprobe: error: ")
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_bad_line_in_targets_file_names_its_number(tmp_path: Path) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("# lab hosts\n127.0.0.1\n\n127.0.0.999  # typo\n")
    proc = run_cli("-iL", str(targets), "-p", "22")
    assert proc.returncode == 2
    assert f"{targets}:4:" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_version_both_ways() -> None:
    for argv in (["--version"],):
        proc = run_cli(*argv)
        assert proc.returncode == 0
        assert proc.stdout.strip() == f"portprobe {__version__}"
    script = Path(sys.executable).with_name("portprobe")
    if script.exists():
        out = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == f"portprobe {__version__}"


def test_help_exits_0() -> None:
    proc = run_cli("scan", "--help")
    assert proc.returncode == 0
    assert "--top-ports" in proc.stdout and "--targets-file" in proc.stdout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), ("3", 3.0), (".5s", 0.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@given(st.text(max_size=20))
@settings(max_examples=300)
def test_parse_duration_only_raises_usage_errors(text: str) -> None:
    try:
        assert parse_duration(text) > 0
    except UsageError as exc:
        assert "\n" not in str(exc)


# -- real scans of loopback in this process, through main() ----------------------------


def free_port() -> int:
    """A loopback port with nothing listening (bound briefly, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_main(argv: list[str], resolver: object = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, resolver=resolver)  # type: ignore[arg-type]
    with pytest.raises(SystemExit) as exit_info:
        main(argv, env)
    return int(exit_info.value.code or 0), out.getvalue(), err.getvalue()


def test_loopback_scan_exact_states_and_csv(listener: int, tmp_path: Path) -> None:
    closed = free_port()
    out_file = tmp_path / "audit.csv"
    code, out, err = run_main(
        ["127.0.0.1", "-p", f"{listener},{closed}", "--all", "-o", str(out_file), "--seed", "1"]
    )
    assert code == ExitStatus.SUCCESS, err
    with out_file.open() as stream:
        rows = {int(r["port"]): r for r in csv.DictReader(stream)}
    assert rows[listener]["state"] == "open" and rows[listener]["reason"] == "syn-ack"
    assert rows[closed]["state"] == "closed" and rows[closed]["reason"] == "conn-refused"
    assert all(r["protocol"] == "tcp" for r in rows.values())
    assert f"{listener}/tcp" in out and "portprobe done: 1 host (1 up)" in out
    # --all went to the file; the terminal keeps its usual view.
    assert f"{closed}/tcp" not in out and "Not shown: 1 closed" in out


def test_file_without_all_omits_closed_ports(listener: int, tmp_path: Path) -> None:
    out_file = tmp_path / "audit.json"
    code, _, err = run_main(["127.0.0.1", "-p", f"{listener},{free_port()}", "-o", str(out_file)])
    assert code == 0, err
    doc = json.loads(out_file.read_text())
    assert [(r["port"], r["state"]) for r in doc["results"]] == [(listener, "open")]
    assert doc["end"]["complete"] is True
    assert doc["end"]["summary"]["states"] == {"closed": 1, "open": 1}


def test_format_to_stdout_keeps_stdout_machine_readable(listener: int) -> None:
    code, out, err = run_main(["127.0.0.1", "-p", str(listener), "--format", "jsonl"])
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["type"] for line in lines] == ["scan", "result", "end"]
    assert "portprobe done" in err


def test_unresolvable_name_is_reported_and_the_scan_goes_on(listener: int) -> None:
    async def resolver(name: str) -> list[str]:
        if name == "localhost":
            return ["127.0.0.1"]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    code, out, err = run_main(["nosuch.lab", "localhost", "-p", str(listener)], resolver)
    assert code == 0
    assert "cannot resolve nosuch.lab" in err
    assert "localhost (127.0.0.1)" in out


def test_nothing_left_to_scan_is_an_error() -> None:
    async def resolver(name: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    code, _, err = run_main(["nosuch.lab", "-p", "22"], resolver)
    assert code == ExitStatus.ERROR
    assert "no hosts left to scan" in err


def test_excluded_hosts_are_not_scanned(listener: int) -> None:
    code, out, _ = run_main(
        ["127.0.0.1-3", "--exclude", "127.0.0.2,127.0.0.3", "-p", str(listener), "--all"]
    )
    assert code == 0
    assert "portprobe report for 127.0.0.1\n" in out
    assert "127.0.0.2" not in out and "127.0.0.3" not in out


@pytest.mark.parametrize("ports", [[0], [70000], [22, -1]])
def test_library_refuses_bad_port_numbers(ports: list[int]) -> None:
    import asyncio

    import scanner

    async def first() -> None:
        async for _ in scanner.scan(["127.0.0.1"], ports):
            pass

    with pytest.raises(scanner.PortSpecError, match="out of range"):
        asyncio.run(first())


def test_ctrl_c_during_evidence_stops_at_once_and_keeps_the_result(tmp_path: Path) -> None:
    """An open port that started to speak and never finishes, with a 30 s evidence budget:
    SIGINT ends the scan within a fraction of a second, and the report holds the port."""
    import signal
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    listener = server.getsockname()[1]
    held: list[socket.socket] = []

    def drip() -> None:  # one byte of a banner that never ends: worth the whole budget
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            with contextlib.suppress(OSError):
                conn.send(b"2")

    threading.Thread(target=drip, daemon=True).start()
    out = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanner", "127.0.0.1", "-p", str(listener),
         "--evidence-timeout", "30", "-q", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(2.0)  # start-up, the scan, and the evidence probe under way
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        proc.kill()
        proc.communicate()
        server.close()
        for conn in held:
            conn.close()
    assert proc.returncode == ExitStatus.INTERRUPTED
    assert took < 1.5  # interpreter teardown included; it was the 30 s budget before
    doc = json.loads(out.read_text())
    assert [(r["port"], r["state"], r["verdict"]) for r in doc["results"]] == [
        (listener, "open", "unverified")
    ]
    assert doc["end"]["complete"] is False
