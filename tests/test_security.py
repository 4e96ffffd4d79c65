"""Issue 11: planted symlinks, endless inputs, crafted reports, odd locales.

Each test here is a regression test for one case of the issue: it failed before the fix.
The file-clobber tests plant links the way an unprivileged user of a shared directory
would (links owned by another uid), in ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import stat
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanner.cli import Environment, main
from scanner.errors import OutputError, ScanError
from scanner.models import Assessment, PortState, Proto, Reason, Result
from scanner.protocols import clean
from scanner.report import Ending, ScanMeta, Summary, make_writer, printable
from scanner.report.files import AtomicOutput
from scanner.report.read import read_report_bytes
from scanner.text import escape_controls

NOBODY = 65534
META = ScanMeta(
    version="0.1.0",
    command=["portprobe", "198.18.0.2", "-p", "22"],
    started=1795406400.0,
    seed=5,
    ports="22",
    hosts=1,
)


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the command line in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv), Environment(stdout=out, stderr=err))
    code = exit_info.value.code
    return int(code) if isinstance(code, int) else 0, out.getvalue(), err.getvalue()


def one_line_error(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("portprobe: error: "), err
    assert "Traceback" not in err


def plant(link: Path, target: Path | str) -> None:
    """A symlink planted by another user (uid nobody), as in a shared directory."""
    os.symlink(target, link)
    os.lchown(link, NOBODY, NOBODY)


def report(path: Path, results: list[Result], fmt: str = "jsonl", *, complete: bool = True) -> Path:
    """Write a report of ``results`` to ``path``."""
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = make_writer(fmt, stream, META)
        summary = Summary(ports_per_host=1)
        for r in results:
            writer.write(r)
            summary.add(r)
        writer.close(Ending(finished=META.started + 1, complete=complete, summary=summary))
    return path


def result(port: int = 22, host: str = "198.18.0.2", **assessed: str) -> Result:
    return Result(
        host,
        port,
        Proto.TCP,
        PortState.OPEN,
        Reason.SYN_ACK,
        None,
        0.001,
        1,
        META.started,
        Assessment(**assessed) if assessed else None,
    )


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A file only root may write (as /etc/shadow would be), outside the shared directory."""
    path = tmp_path / "root-only"
    path.write_text("precious\n")
    path.chmod(0o600)
    yield path
    assert path.read_text() == "precious\n", "a planted link made root overwrite this file"


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A world-writable directory (no sticky bit: fs.protected_symlinks does not apply)."""
    path = tmp_path / "shared"
    path.mkdir()
    path.chmod(0o777)
    return path


# -- 1. output files are never written through a planted link -------------------------


def plant_pid_links(folder: Path, name: str, victim: Path) -> None:
    """Links at the temporary names the old code used: ``.NAME.PID.part``, next PIDs too."""
    pid = os.getpid()
    for guess in range(pid - 2, pid + 30):
        plant(folder / f".{name}.{guess}.part", victim)


def test_a_planted_temporary_name_does_not_redirect_the_report(shared: Path, victim: Path) -> None:
    plant_pid_links(shared, "scan.csv", victim)
    with AtomicOutput(str(shared / "scan.csv")) as sink:
        sink.stream.write("host\n")
    assert (shared / "scan.csv").read_text() == "host\n"
    assert not (shared / "scan.csv").is_symlink()


@pytest.mark.parametrize("command", ["diff", "merge"])
def test_diff_and_merge_output_ignore_planted_temporary_names(
    shared: Path, victim: Path, tmp_path: Path, command: str
) -> None:
    old = report(tmp_path / "old.jsonl", [result(22)])
    # (diff: the same port seen differently, a change in what both reports probed)
    new = report(tmp_path / "new.jsonl", [result(22, label="ssh")] if command == "diff" else [])
    out = shared / "out.csv"
    plant_pid_links(shared, "out.csv", victim)
    code, _, err = cli(command, str(old), str(new), "-o", str(out))
    assert code == (1 if command == "diff" else 0), err
    assert "198.18.0.2" in out.read_text()


@pytest.fixture
def device(tmp_path: Path) -> Path:
    """A character device like /dev/null (1, 3), made where the test can see it."""
    path = tmp_path / "null-device"
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def test_a_planted_symlink_to_a_device_is_replaced_not_written_through(
    shared: Path, device: Path
) -> None:
    out = shared / "scan.csv"
    plant(out, device)
    with AtomicOutput(str(out)) as sink:
        sink.stream.write("host\n")
    assert stat.S_ISREG(os.lstat(out).st_mode) and out.read_text() == "host\n"
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_a_device_or_own_symlink_to_one_is_still_written_through(
    tmp_path: Path, device: Path
) -> None:
    own = tmp_path / "stdout-like"
    os.symlink(device, own)  # root's own link, as /dev/stdout is
    for path in (device, own):
        with AtomicOutput(str(path)) as sink:
            sink.stream.write("host\n")
    assert stat.S_ISCHR(os.lstat(device).st_mode) and os.path.islink(own)
    assert sorted(os.listdir(tmp_path)) == ["null-device", "stdout-like"]


def test_rewriting_a_report_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "scan.csv"
    out.write_text("old\n")
    out.chmod(0o600)
    with AtomicOutput(str(out)) as sink:
        sink.stream.write("new\n")
    assert out.read_text() == "new\n" and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_failed_write_is_one_error_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "scan.csv"
    out.write_text("old\n")
    with pytest.raises(ScanError, match="No space left"), AtomicOutput(str(out)) as sink:
        sink.stream.write("partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert os.listdir(tmp_path) == ["scan.csv"] and out.read_text() == "old\n"


def test_merge_onto_a_full_disk_is_one_line(tmp_path: Path) -> None:
    # More than a write buffer holds: the disk fills while results are written.
    shard = report(tmp_path / "a.jsonl", [result(port) for port in range(1, 2001)])
    code, _, err = cli("merge", str(shard), "-o", "/dev/full", "--format", "csv")
    assert code == 1
    one_line_error(err)
    assert "No space left on device" in err


@pytest.mark.parametrize("length", [245, 255])
def test_long_output_names_are_accepted(tmp_path: Path, length: int) -> None:
    out = tmp_path / ("r" * (length - 4) + ".csv")
    with AtomicOutput(str(out)) as sink:
        sink.stream.write("host\n")
    assert out.read_text() == "host\n" and os.listdir(tmp_path) == [out.name]


def test_a_name_too_long_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="File name too long"):
        AtomicOutput(str(tmp_path / ("r" * 300 + ".csv")))


# -- 2. XML comments ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["week---47.xml", "a--b.xml", "trailing-", "--"])
def test_xml_stays_well_formed_whatever_the_command_line(name: str) -> None:
    stream = io.StringIO()
    meta = ScanMeta(**{**_meta_fields(), "command": ["portprobe", "-oX", name, "198.18.0.2"]})
    writer = make_writer("xml", stream, meta)
    writer.write(result())
    writer.close(Ending(finished=META.started + 1, complete=True, summary=Summary()))
    root = ElementTree.fromstring(stream.getvalue())
    assert root.get("args") == f"portprobe -oX {name} 198.18.0.2"
    assert len(read_report_bytes(stream.getvalue().encode(), "x.xml").results) == 1


def _meta_fields() -> dict[str, object]:
    return {name: getattr(META, name) for name in META.__dataclass_fields__}


# -- 12. invisible and format characters ----------------------------------------------------

INVISIBLE = [
    "\u061c",
    "\u2060",
    "\u2061",
    "\u2062",
    "\u2063",
    "\u2064",
    "\u00ad",
    "\u180e",
    "\ufff9",
    "\ufffa",
    "\ufffb",
    "\U000e0000",
    "\U000e0041",
    "\U000e007f",
]


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
def test_invisible_characters_are_escaped_everywhere(char: str) -> None:
    text = f"ssh{char}d"
    assert char not in escape_controls(text) and "\\" in escape_controls(text)
    assert char not in printable(text) and char not in clean(text)
    r = result(label=text, evidence=text, label_description=text)
    for fmt in ("csv", "xml", "json", "jsonl"):
        stream = io.StringIO()
        writer = make_writer(fmt, stream, META)
        writer.write(r)
        writer.close(Ending(finished=META.started, complete=True, summary=Summary()))
        assert char not in stream.getvalue(), fmt


def test_every_escaped_character_is_one_isprintable_rejects() -> None:
    # escape_controls and xml_text skip their regexes for printable text: that is sound
    # only while both classes are subsets of what str.isprintable rejects, over the whole
    # of Unicode.
    import sys

    from scanner.report.xml import _NOT_XML
    from scanner.text import CONTROL

    printable_escaped = [
        code for code in range(sys.maxunicode + 1)
        if chr(code).isprintable() and (CONTROL.match(chr(code)) or _NOT_XML.match(chr(code)))
    ]  # fmt: skip
    assert printable_escaped == []


def test_escapes_of_astral_characters_are_unambiguous() -> None:
    assert escape_controls("\U000e0041") == "\\U000e0041"
    assert escape_controls("\x1b\u202e") == "\\x1b\\u202e"


def test_merge_sanitises_what_it_writes(tmp_path: Path) -> None:
    evil = "ESC\x1b]0;owned\x07 =cmd"
    shard = tmp_path / "a.jsonl"
    report(shard, [result(22)])
    lines = shard.read_text().splitlines()
    record = json.loads(lines[1])
    record.update(evidence=evil, label=evil)
    lines[1] = json.dumps(record)
    shard.write_text("\n".join(lines) + "\n")
    for fmt in ("csv", "xml", "jsonl"):
        out = tmp_path / f"merged.{fmt}"
        code, _, err = cli("merge", str(shard), "-o", str(out))
        assert code == 0, err
        text = out.read_text()
        assert "\x1b" not in text and "\x07" not in text and "\\x1b" in text, fmt


# -- 1, 5, 8. the registry store -----------------------------------------------------------

SHIPPED_CSV = (
    Path(__file__).resolve().parent.parent / "scanner/data/iana-service-names-port-numbers.csv"
)


@pytest.fixture
def data_dir(registry_data_dir: Path) -> Path:
    """An empty registry data directory of the test's own (see conftest)."""
    return registry_data_dir


def test_registry_update_never_copies_or_writes_through_a_planted_link(
    data_dir: Path, victim: Path, tmp_path: Path
) -> None:
    from scanner.registry import update_registry

    data_dir.mkdir()
    plant(data_dir / "iana-service-names-port-numbers.csv", victim)
    plant(data_dir / "iana-registry.json", victim)
    update_registry(str(SHIPPED_CSV))
    for name in os.listdir(data_dir):
        path = data_dir / name
        assert not path.is_symlink() and "precious" not in path.read_text(), name
    assert sorted(os.listdir(data_dir)) == [
        "iana-registry.json",
        "iana-service-names-port-numbers.csv",
    ]


def test_registry_update_keeps_the_copy_mode(data_dir: Path) -> None:
    from scanner.registry import update_registry

    update_registry(str(SHIPPED_CSV))
    copy = data_dir / "iana-service-names-port-numbers.csv"
    copy.chmod(0o640)
    update_registry(str(SHIPPED_CSV))
    assert stat.S_IMODE(copy.stat().st_mode) == 0o640


# -- 3. IPv4-mapped IPv6 addresses ---------------------------------------------------------


@pytest.mark.parametrize("target", ["::ffff:198.18.0.2", "[::ffff:198.18.0.2]", "::ffff:c612:2"])
def test_an_excluded_ipv4_host_is_not_scanned_by_its_mapped_address(target: str) -> None:
    import asyncio

    from scanner.targets import build_targets

    hosts, _ = asyncio.run(build_targets([target, "198.18.0.3"], exclude=["198.18.0.2"]))
    assert [h.address for h in hosts] == ["198.18.0.3"]
    hosts, _ = asyncio.run(build_targets(["198.18.0.2"], exclude=[target]))
    assert hosts.size == 0


def test_a_mapped_network_is_its_ipv4_network_and_size_guarded() -> None:
    from scanner.errors import TargetError
    from scanner.targets import parse_network, parse_target

    assert (
        parse_target("::ffff:198.18.0.0/120").intervals == parse_target("198.18.0.0/24").intervals
    )
    with pytest.raises(TargetError, match="too large"):
        parse_target("::ffff:0.0.0.0/96")
    with pytest.raises(TargetError, match="IPv4-mapped"):
        parse_network("::/64")  # it holds ::ffff:0:0/96, all of IPv4


def test_a_mapped_answer_of_the_resolver_is_ipv4() -> None:
    import asyncio

    from scanner.targets import build_targets

    async def resolver(name: str) -> list[str]:
        return ["::ffff:198.18.0.2"]

    hosts, _ = asyncio.run(build_targets(["db.test"], exclude=["198.18.0.2"], resolver=resolver))
    assert hosts.size == 0


# -- 5. bounded reads of every input file --------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A FIFO nobody ever writes to; input reads give up on it after 0.3 s here."""
    import scanner.safeio

    monkeypatch.setattr(scanner.safeio, "INPUT_TIMEOUT", 0.3)
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def input_commands(path: str, good: Path) -> dict[str, list[str]]:
    """Every command that reads an input file, reading ``path``."""
    return {
        "-iL": ["-iL", path, "-p", "22"],
        "--exclude-file": ["198.18.0.2", "-p", "22", "--exclude-file", path],
        "--expect": ["198.18.0.2", "-p", "22", "--expect", path],
        "diff": ["diff", str(good), path],
        "merge": ["merge", str(good), path],
        "--resume": ["--resume", path],
        "registry update": ["registry", "update", "--from", path],
    }


@pytest.mark.parametrize("kind", list(input_commands("", Path())))
def test_endless_device_input_is_refused_in_one_line(
    kind: str, tmp_path: Path, data_dir: Path
) -> None:
    good = report(tmp_path / "good.jsonl", [result()])
    code, _, err = cli(*input_commands("/dev/zero", good)[kind])
    assert code == 2
    one_line_error(err)
    assert "larger than" in err and "/dev/zero" in err


@pytest.mark.parametrize("kind", list(input_commands("", Path())))
def test_a_fifo_nobody_writes_is_refused_in_one_line(
    kind: str, tmp_path: Path, fifo: Path, data_dir: Path
) -> None:
    good = report(tmp_path / "good.jsonl", [result()])
    code, _, err = cli(*input_commands(str(fifo), good)[kind])
    assert code == 2
    one_line_error(err)
    assert "did not end within 0.3 s" in err


def test_a_fifo_that_is_written_and_closed_is_read(tmp_path: Path, fifo: Path) -> None:
    import threading

    from scanner.targets import read_targets_file

    def feed() -> None:
        with fifo.open("w") as stream:
            stream.write("198.18.0.2\n")

    writer = threading.Thread(target=feed)
    writer.start()
    assert read_targets_file(str(fifo)) == ["198.18.0.2"]
    writer.join()


@pytest.mark.parametrize("kind", ["diff", "-iL", "--expect", "registry update"])
def test_a_huge_regular_file_is_refused_before_it_is_read(
    kind: str, tmp_path: Path, data_dir: Path
) -> None:
    good = report(tmp_path / "good.jsonl", [result()])
    huge = tmp_path / "huge"
    with huge.open("wb") as stream:  # sparse: 300 MiB that cost no disk
        stream.truncate(300 << 20)
    code, _, err = cli(*input_commands(str(huge), good)[kind])
    assert code == 2
    one_line_error(err)
    assert "larger than" in err


# -- 6. crafted report fields --------------------------------------------------------------

BIG = "9" * 5000  # past Python's 4,300-digit limit for int()


def crafted(path: Path, *, scan: dict[str, object] | None = None, **fields: object) -> Path:
    """A JSON Lines report whose scan record, result or end record has ``fields`` replaced."""
    report(path, [result(22)], complete=False)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[0].update(scan or {})
    for key, value in fields.items():
        target = records[2] if key in ("finished", "summary") else records[1]
        target[key] = value
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


CRAFTED = {
    "port of 5000 digits": {"port": BIG},
    "tries of 5000 digits": {"tries": BIG},
    "seed of 5000 digits": {"scan": {"seed": BIG, "shard": "1/2"}},
    "shard of 5000 digits": {"scan": {"shard": f"{BIG}/{BIG}"}},
    "hosts of 5000 digits": {"scan": {"hosts": BIG}},
    "count of 5000 digits": {"summary": {"states": {"closed": BIG}}},
    "time in year 0": {"time": "0001-01-01T00:00:00+14:00"},
    "time in year 10000": {"time": "9999-12-31T23:59:59-14:00"},
    "start in year 0": {"scan": {"started": "0001-01-01T00:00:00+14:00"}},
    "end in year 10000": {"finished": "9999-12-31T23:59:59-14:00"},
    "lone surrogate": {"hostname": "\ud800"},
    "lone surrogate in the scan": {"scan": {"registry_date": "\udfff"}},
}


@pytest.mark.parametrize("case", list(CRAFTED))
@pytest.mark.parametrize("command", ["diff", "merge -o x.xml", "merge -o x.csv", "merge"])
def test_crafted_fields_give_a_report_or_one_line(tmp_path: Path, case: str, command: str) -> None:
    fields = dict(CRAFTED[case])
    scan = fields.pop("scan", None)
    bad = crafted(tmp_path / "bad.jsonl", scan=scan, **fields)  # type: ignore[arg-type]
    good = report(tmp_path / "good.jsonl", [result(23)])
    word, *rest = command.split()
    out = [str(tmp_path / rest[1])] if rest else []
    code, _, err = cli(word, str(good), str(bad), *(["-o", *out] if out else []))
    assert "Traceback" not in err
    if code == 2:
        one_line_error(err)
    else:
        assert code in (0, 1), err
        if out:
            Path(out[0]).read_text(encoding="utf-8")


# -- 8. registry update ----------------------------------------------------------------------


class _Server:
    """An HTTP server on loopback, in a thread, serving ``routes``: path -> handler."""

    def __init__(self, routes: dict[str, object]) -> None:
        import http.server
        import threading

        outer = routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = outer.get(self.path)
                if route is None:
                    self.send_error(404)
                elif callable(route):
                    route(self)
                else:
                    body = route if isinstance(route, bytes) else b""
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[_Server] = []

    def start(routes: dict[str, object]) -> _Server:
        servers.append(_Server(routes))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _redirect(location: str) -> object:
    def handle(handler: object) -> None:
        handler.send_response(302)  # type: ignore[attr-defined]
        handler.send_header("Location", location)  # type: ignore[attr-defined]
        handler.send_header("Content-Length", "0")  # type: ignore[attr-defined]
        handler.end_headers()  # type: ignore[attr-defined]

    return handle


def test_a_download_that_drips_is_cut_off_for_the_whole_download(
    serve: object, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import scanner.registry.store as store
    from scanner.registry import RegistryError, update_registry

    def drip(handler: object) -> None:
        handler.send_response(200)  # type: ignore[attr-defined]
        handler.send_header("Content-Length", "100")  # type: ignore[attr-defined]
        handler.end_headers()  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):  # the client gives up first
            for _ in range(12):  # a byte every 0.25 s, each well within the per-read timeout
                handler.wfile.write(b"x")  # type: ignore[attr-defined]
                handler.wfile.flush()  # type: ignore[attr-defined]
                time.sleep(0.25)

    monkeypatch.setattr(store, "FETCH_TIMEOUT", 1.0)
    monkeypatch.setattr(store, "READ_TIMEOUT", 1.0)
    server = serve({"/csv": drip})  # type: ignore[operator]
    started = time.monotonic()
    with pytest.raises(RegistryError, match="not finished within 1 s"):
        update_registry(f"{server.url}/csv")
    assert time.monotonic() - started < 2.0


def test_provenance_names_the_url_after_redirects(serve: object, data_dir: Path) -> None:
    from scanner.registry import load_registry, update_registry

    server = serve({"/old": _redirect("/new"), "/new": SHIPPED_CSV.read_bytes()})  # type: ignore[operator]
    update_registry(f"{server.url}/old")
    assert f"downloaded from {server.url}/new" in load_registry().source


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:1/x.csv", "file:///etc/passwd"])
def test_a_redirect_away_from_http_is_refused(serve: object, data_dir: Path, target: str) -> None:
    from scanner.registry import RegistryError, update_registry

    server = serve({"/csv": _redirect(target)})  # type: ignore[operator]
    with pytest.raises(RegistryError, match=r"(?i)redirect"):
        update_registry(f"{server.url}/csv")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/a\x1bb", "http://127.0.0.1\x1b:1/", "http://x/a b"]
)
def test_a_url_with_a_control_character_is_one_line(url: str, data_dir: Path) -> None:
    code, _, err = cli("registry", "update", "--from", url)
    assert code == 2
    one_line_error(err)
    assert "\x1b" not in err


def test_registry_descriptions_reach_reports_escaped(data_dir: Path, tmp_path: Path) -> None:
    from scanner.assess import Assessor
    from scanner.registry import load_registry, update_registry

    text = SHIPPED_CSV.read_text(encoding="utf-8")
    source = tmp_path / "evil.csv"
    source.write_text(text.replace("ASAM Services", "ASAM\x1b]0;owned\x07\u202e"), encoding="utf-8")
    update_registry(str(source))
    assessed = Assessor(load_registry()).assess(result(3451))
    for fmt in ("csv", "xml", "jsonl"):
        stream = io.StringIO()
        writer = make_writer(fmt, stream, META)
        writer.write(assessed)
        writer.close(Ending(finished=META.started, complete=True, summary=Summary()))
        text = stream.getvalue()
        assert "\x1b" not in text and "\u202e" not in text, fmt
        if fmt == "jsonl":
            text = json.loads(text.splitlines()[1])["label_description"]
        assert "ASAM\\x1b]0;owned\\x07\\u202e" in text, fmt


# -- 10. resume after a crash: reading what a killed scan left -------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_report_cut_anywhere_reads_with_every_whole_result(tmp_path: Path, fmt: str) -> None:
    from scanner.errors import ReportError
    from scanner.report.read import read_report_bytes

    ports = [22, 23, 25]
    whole = report(tmp_path / f"r.{fmt}", [result(port) for port in ports]).read_bytes()
    # Where each result's record ends: the "}" that closes its line.
    lines = whole.split(b"\n")
    ends, offset = [], 0
    for line in lines:
        if b'"port": ' in line and b'"scan"' not in line:
            ends.append(offset + line.rstrip(b",").rindex(b"}") + 1)
        offset += len(line) + 1
    assert len(ends) == len(ports)
    for cut in range(len(lines[0]) + 1, len(whole)):
        data = whole[:cut]
        got = read_report_bytes(data, "r", torn_tail=True)
        assert [r.port for r in got.results] == ports[: sum(end <= cut for end in ends)], cut
        assert got.complete is False or cut >= len(whole) - 2
        if not data.rstrip().endswith((b"}", b"[")):
            with pytest.raises(ReportError):  # diff and merge still refuse a torn report
                read_report_bytes(data, "r")


def test_find_partial_takes_only_our_own_regular_temporary_file(tmp_path: Path) -> None:
    import time

    from scanner.report.files import find_partial

    out = tmp_path / "scan.jsonl"
    assert find_partial(str(out)) is None
    mine = tmp_path / ".scan.jsonl.abc123.part"
    mine.write_text('{"type": "scan"}\n')
    planted = tmp_path / ".scan.jsonl.zzz999.part"
    planted.write_text('{"type": "scan"}\n')
    os.chown(planted, NOBODY, NOBODY)
    time.sleep(0.01)
    link = tmp_path / ".scan.jsonl.lnk000.part"
    os.symlink(mine, link)
    (tmp_path / ".other.jsonl.abc.part").write_text("x")
    assert find_partial(str(out)) == str(mine)


# -- 13. smaller faults ------------------------------------------------------------------------


def test_an_http_head_over_8_kib_is_still_http() -> None:
    from scanner.protocols.http import ResponseParser

    head = b"HTTP/1.1 200 OK\r\nServer: nginx/1.25\r\nSet-Cookie: id=" + b"x" * 10_000 + b"\r\n\r\n"
    parser = ResponseParser()
    for start in range(0, 8192, 1024):  # what a probe reads: 8 KiB, in reads
        parser.feed(head[start : start + 1024])
    evidence = parser.evidence()
    assert evidence is not None and evidence.service == "http"
    assert evidence.detail == "nginx/1.25; 200"


# -- 4. --workers: a cap, and a fork loop that honours signals ---------------------------------


def test_workers_beyond_the_cap_are_refused_in_one_line(tmp_path: Path) -> None:
    from scanner.models import MAX_WORKERS, ScanConfig

    assert ScanConfig(workers=MAX_WORKERS).workers == MAX_WORKERS
    with pytest.raises(ValueError, match="workers"):
        ScanConfig(workers=MAX_WORKERS + 1)
    for workers in ("65", "2000", "100000", "9" * 30):
        code, _, err = cli("198.18.0.2", "-p", "22", "--workers", workers)
        assert code == 2
        one_line_error(err)
    # A tampered report asks for 100,000 workers: refused the same way, nothing forked.
    stored = interrupted(tmp_path / "r.jsonl", ["portprobe", "198.18.0.2", "--workers", "100000"])
    code, _, err = cli("--resume", str(stored))
    assert code == 2 and "--workers must be from 1 to 64" in err


def test_a_sigterm_that_comes_while_forking_stops_the_forking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    import signal

    import scanner.engine.fanout
    from scanner.engine import Scan
    from scanner.engine.fanout import fork_worker
    from scanner.models import ScanConfig
    from scanner.targets import TargetSet, parse_target

    forked: list[int] = []

    def fork_and_signal(body: object) -> object:
        worker = fork_worker(body)  # type: ignore[arg-type]
        forked.append(worker.pid)
        if len(forked) == 2:  # the user presses Ctrl-C (or kill) during the fork loop
            os.kill(os.getpid(), signal.SIGTERM)
        return worker

    monkeypatch.setattr(scanner.engine.fanout, "fork_worker", fork_and_signal)
    scan = Scan(
        TargetSet([parse_target("127.0.0.1")]), range(1, 20001), ScanConfig(seed=3, workers=40)
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, scan.stop)
        try:
            async for _ in scan:
                pass
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    asyncio.run(run())
    assert len(forked) == 2, "forking went on after the SIGTERM"
    assert scan.stats.interrupted
    for pid in forked:  # every worker forked was stopped and reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_a_worker_signalled_right_after_the_fork_dies() -> None:
    """The parent's handler ignores SIGTERM; the child must not inherit that instant."""
    import signal
    import time

    from scanner.engine.fanout import fork_worker, signals_held

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        with signals_held():
            worker = fork_worker(lambda fd: time.sleep(30))
            os.kill(worker.pid, signal.SIGTERM)
        started = time.monotonic()
        _, status = os.waitpid(worker.pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
        assert time.monotonic() - started < 5
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(worker.fd)


# -- 9, 10. what --resume takes from a report ---------------------------------------------------

SUBCOMMANDS = ("scan", "diff", "merge", "port", "local", "registry")


def interrupted(path: Path, command: list[str], results: list[Result] | None = None) -> Path:
    """An interrupted scan's JSON Lines report of ``command``."""
    meta = ScanMeta(**{**_meta_fields(), "command": command})  # type: ignore[arg-type]
    with path.open("w", encoding="utf-8") as stream:
        writer = make_writer("jsonl", stream, meta)
        for r in results if results is not None else [result(22)]:
            writer.write(r)
        writer.close(Ending(finished=META.started + 1, complete=False, summary=Summary()))
    return path


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        (["portprobe", "diff", "a", "b"], "not a scan"),
        (["portprobe", "merge", "a"], "not a scan"),
        (["/tmp/evil", "198.18.0.2"], "not portprobe's"),
        (["portprobe", "198.18.0.2", "--resume", "x.jsonl"], "itself a --resume"),
        (["portprobe", "198.18.0.2", "--resume=x.jsonl"], "itself a --resume"),
        (["portprobe", "198.18.0.2", "--help"], "help"),
    ],
)
def test_a_stored_command_that_is_not_a_scan_is_refused(
    tmp_path: Path, command: list[str], problem: str
) -> None:
    from scanner.errors import ReportError
    from scanner.report.resume import load_resumable

    path = interrupted(tmp_path / "r.jsonl", command)
    with pytest.raises(ReportError, match=problem):
        load_resumable(str(path), SUBCOMMANDS)


@pytest.mark.parametrize(
    ("scan", "problem"),
    [
        ({"schema": 99}, "schema"),
        ({"schema": "3"}, "schema"),
        ({"seed": 2**70}, "64-bit"),
        ({"seed": -1}, "64-bit"),
        ({"seed": "5"}, "command line and seed"),
    ],
)
def test_a_stored_schema_or_seed_out_of_range_is_refused(
    tmp_path: Path, scan: dict[str, object], problem: str
) -> None:
    from scanner.errors import ReportError
    from scanner.report.resume import load_resumable

    path = crafted(tmp_path / "r.jsonl", scan=scan)
    with pytest.raises(ReportError, match=problem):
        load_resumable(str(path), SUBCOMMANDS)


def test_results_of_hosts_or_ports_the_command_does_not_scan_are_refused() -> None:
    from scanner.errors import ReportError
    from scanner.models import Port
    from scanner.report.resume import check_results

    ports = [Port(Proto.TCP, 22)]
    check_results("r", [result(22)], {"198.18.0.2"}, ports)
    with pytest.raises(ReportError, match=r"198\.18\.0\.9 22/tcp"):
        check_results("r", [result(22, host="198.18.0.9")], {"198.18.0.2"}, ports)
    with pytest.raises(ReportError, match=r"198\.18\.0\.2 80/tcp"):
        check_results("r", [result(80)], {"198.18.0.2"}, ports)


def test_resume_reads_what_a_killed_scan_left_beside_the_report(tmp_path: Path) -> None:
    import time

    from scanner.report.resume import load_resumable

    out = tmp_path / "scan.jsonl"
    interrupted(out, ["portprobe", "198.18.0.2", "-p", "22-25"], [result(22)])
    time.sleep(0.01)
    # The temporary file of a later run, killed by SIGKILL mid-line.
    partial = tmp_path / ".scan.jsonl.k1ll3d.part"
    text = interrupted(
        partial, ["portprobe", "198.18.0.2", "-p", "22-25"], [result(22), result(23)]
    )
    data = text.read_text().rsplit("\n", 2)[0]  # no end record, and the last result...
    partial.write_text(data[: len(data) - 20])  # ...torn in the middle
    found = load_resumable(str(out), SUBCOMMANDS)
    assert found.recovered == str(partial)
    assert [r.port for r in found.results()] == [22]
    found.close()
    out.unlink()  # the crash came before the first report was ever renamed into place
    again = load_resumable(str(out), SUBCOMMANDS)
    again.close()
    assert again.recovered == str(partial)


def test_dev_stdout_redirected_to_a_file_is_written_through(tmp_path: Path) -> None:
    """``-o /dev/stdout > out.txt``: /dev/stdout leads through /proc to a regular file."""
    redirected = tmp_path / "out.txt"
    with redirected.open("w") as stream:
        link = tmp_path / "stdout-like"  # root's own link, as /dev/stdout is
        os.symlink(f"/proc/self/fd/{stream.fileno()}", link)
        with AtomicOutput(str(link)) as sink:
            sink.stream.write("host\n")
        assert os.path.islink(link)  # never renamed over
    assert redirected.read_text() == "host\n"
    assert sorted(os.listdir(tmp_path)) == ["out.txt", "stdout-like"]


# -- 9. --resume trusts nothing in the report -------------------------------------------------


def test_a_resume_of_a_report_holding_other_hosts_is_refused(tmp_path: Path) -> None:
    out = interrupted(
        tmp_path / "r.jsonl",
        ["portprobe", "198.18.0.2", "-p", "22-23", "--all"],
        [result(22), result(22, host="198.18.0.9")],  # 198.18.0.9 is not in the command
    )
    before = out.read_bytes()
    code, _, err = cli("--resume", str(out))
    assert code == 2
    one_line_error(err)
    assert "198.18.0.9 22/tcp" in err and "does not scan" in err
    assert out.read_bytes() == before and os.listdir(tmp_path) == ["r.jsonl"]


def test_a_stored_targets_file_is_not_shown_in_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$s3cr3tHash:19000:0:99999:7:::\n")
    out = interrupted(tmp_path / "r.jsonl", ["portprobe", "-iL", str(secret), "-p", "22"])
    code, _, err = cli("--resume", str(out))
    assert code == 2
    one_line_error(err)
    assert "s3cr3t" not in err and f"{secret}:1" in err


def test_a_stored_diff_command_is_refused_without_a_lookup(tmp_path: Path) -> None:
    looked_up: list[str] = []

    async def resolver(name: str) -> list[str]:
        looked_up.append(name)
        return ["198.18.0.2"]

    out = interrupted(tmp_path / "r.jsonl", ["portprobe", "diff", "old.jsonl", "new.jsonl"])
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["--resume", str(out)], Environment(stdout=io.StringIO(), stderr=err, resolver=resolver)
        )
    assert exit_info.value.code == 2 and "not a scan" in err.getvalue()
    assert looked_up == []


def test_a_resume_says_what_it_will_scan_first(tmp_path: Path) -> None:
    # Loopback only: the resumed scan probes 127.0.0.1.
    kept = result(7, host="127.0.0.1")
    out = interrupted(
        tmp_path / "r.jsonl",
        ["portprobe", "127.0.0.1", "-p", "5-9", "--all", "--no-evidence", "-o", "x.jsonl"],
        [kept],
    )
    code, _, err = cli("--resume", str(out))
    assert code == 0, err
    assert "resuming: targets 127.0.0.1; ports 5-9; 1 results kept" in err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["port"] for r in records if r["type"] == "result") == [5, 6, 7, 8, 9]
    assert records[-1]["complete"] is True


# -- 10. resume after SIGKILL -------------------------------------------------------------------


def test_resume_after_sigkill_recovers_the_temporary_file(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "scan.jsonl"
    command = [sys.executable, "-m", "scanner", "127.0.0.1", "-p", "1-20000", "--all"]
    proc = subprocess.Popen(
        [*command, "--no-evidence", "--rate", "2000", "-q", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2.5)
    proc.send_signal(signal.SIGKILL)  # a power loss, as far as the report can tell
    proc.wait(timeout=30)
    (partial,) = tmp_path.glob(".scan.jsonl.*.part")
    assert not out.exists()
    data = partial.read_bytes()
    kept = data.count(b'"type": "result"')
    assert 1000 < kept < 20000
    partial.write_bytes(data[: data.rstrip(b"\n").rindex(b"\n") + 40])  # a torn last record
    code, _, err = cli("--resume", str(out))
    assert code == 0, err
    assert "recovering the results a killed scan left" in err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["port"] for r in records if r["type"] == "result") == list(range(1, 20001))
    assert records[-1]["complete"] is True
    assert os.listdir(tmp_path) == ["scan.jsonl"]  # the temporary file is gone


# -- 7. terminals that are not UTF-8 ------------------------------------------------------------


@pytest.mark.parametrize("command", ["diff", "merge"])
def test_non_ascii_text_on_an_ascii_terminal_is_escaped(tmp_path: Path, command: str) -> None:
    import subprocess
    import sys

    old = report(tmp_path / "old.jsonl", [result(22, evidence="ssh")])
    new = report(tmp_path / "new.jsonl", [result(22, evidence="caf\u00e9 \ufffd")])
    args = [str(old), str(new)] if command == "diff" else [str(new)]
    env = {**os.environ, "PYTHONUTF8": "0", "LC_ALL": "C", "LANG": "C"}
    env.pop("PYTHONIOENCODING", None)
    proc = subprocess.run(
        [sys.executable, "-m", "scanner", command, *args],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == (1 if command == "diff" else 0)
    assert b"caf\\xe9 \\ufffd" in proc.stdout


# -- 13. the table piped into head -1 -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "jsonl"])
def test_a_closed_stdout_ends_quietly_as_sigpipe_would(fmt: str) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "scanner", "127.0.0.1", "-p", "1-3000", "--all"]
    with subprocess.Popen(
        [*command, "--no-evidence", "--format", fmt],  # about 200 KB: more than a pipe holds
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        proc.wait(timeout=60)
        assert proc.stderr.read() == b""
    assert proc.returncode == 141


@pytest.mark.parametrize(
    "args",
    [
        ["127.0.0.1", "-p", "1", "--no-evidence"],  # the closing "portprobe done" line
        ["127.0.0.1", "-p", "1", "--no-evidence", "-oG", "-"],
        ["port", "22"],
    ],
)
def test_a_short_output_to_a_closed_pipe_ends_quietly_too(args: list[str]) -> None:
    """An output smaller than a pipe fails at a write outside any report (the summary
    line): Click made that status 1; it is 141, as for a long one."""
    import subprocess
    import sys

    with subprocess.Popen(
        [sys.executable, "-m", "scanner", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first write
        proc.wait(timeout=60)
        assert proc.stderr.read() == b""
    assert proc.returncode == 141


def test_a_closed_stdout_descriptor_is_one_line_and_status_2() -> None:
    """Started with ``>&-``, Python has no sys.stdout at all: one line, not a traceback."""
    import subprocess
    import sys

    proc = subprocess.run(
        ["sh", "-c", 'exec "$0" -m scanner 127.0.0.1 -p 1 >&-', sys.executable],
        capture_output=False,
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
    )
    assert proc.stderr == b"portprobe: error: standard output is closed\n"
    assert proc.returncode == 2


# -- 11. Ctrl-C during evidence -------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_an_interrupt_during_evidence_stops_at_once_and_keeps_every_result(
    make_lab: object, tmp_path: Path, signum: str
) -> None:
    import signal
    import sys
    import time

    lab = make_lab(tcp={2222: "tarpit", 8080: "http"})  # type: ignore[operator]
    out = tmp_path / "scan.jsonl"
    command = [sys.executable, "-m", "scanner", "198.18.0.2", "-p", "2222,8080,9", "--all"]
    proc = lab.popen(
        [*command, "--evidence-timeout", "30s", "-q", "-o", str(out)],
        stdout=-1,
        stderr=-1,
        text=True,
    )
    time.sleep(3.0)  # the ports are probed; the tarpit's evidence takes its 30 s
    started = time.monotonic()
    proc.send_signal(getattr(signal, signum))
    _, stderr = proc.communicate(timeout=40)
    stopped = time.monotonic() - started
    assert proc.returncode == 130, stderr
    assert stopped < 5, f"{stopped:.1f} s: the evidence timeout was waited out"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    results = {r["port"]: r for r in records if r["type"] == "result"}
    assert sorted(results) == [9, 2222, 8080]  # every finished result is kept
    assert results[2222]["state"] == "open" and results[8080]["evidence"] == "http"
    assert records[-1]["complete"] is False
