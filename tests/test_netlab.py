"""Self-tests of the network-namespace lab (tests/netlab.py).

Only stdlib sockets, run in the CLIENT namespace via ``Lab.call_in_client``:
no scanner code is involved, so a failure here is a lab problem.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable

import netlab
import pytest

# pytest-timeout is optional; without it every socket op below still has a timeout.
_HAVE_TIMEOUT = importlib.util.find_spec("pytest_timeout") is not None
_TIMEOUT = [pytest.mark.timeout(60)] if _HAVE_TIMEOUT else []

pytestmark = [pytest.mark.netns, *_TIMEOUT]

FAMILIES = pytest.mark.parametrize("family", ["v4", "v6"])
FILTER_TIMEOUT = 0.5
NTP_EPOCH_OFFSET = 2208988800
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux value; absent from socket


def server_addr(lab: netlab.Lab, family: str) -> tuple[int, str]:
    """(address family, clean-path server address) for "v4"/"v6"."""
    return (socket.AF_INET, lab.server4) if family == "v4" else (socket.AF_INET6, lab.server6)


# --------------------------------------------------------------------------- client-side helpers


def tcp_connect(af: int, host: str, port: int, timeout: float = 2.0) -> str:
    """Connect and classify: "open", "refused" or "timeout"."""
    with socket.socket(af, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        return "open"


def tcp_connect_many(af: int, host: str, ports: list[int], timeout: float) -> dict[int, str]:
    """Like tcp_connect for several ports at once (non-blocking), sharing one timeout."""
    socks = {p: socket.socket(af, socket.SOCK_STREAM) for p in ports}
    result = dict.fromkeys(ports, "timeout")
    try:
        for p, s in socks.items():
            s.setblocking(False)
            s.connect_ex((host, p))
        deadline = time.monotonic() + timeout
        pending = dict(socks)
        while pending and (left := deadline - time.monotonic()) > 0:
            _, done, _ = select.select([], list(pending.values()), [], left)
            for p, s in list(pending.items()):
                if s in done:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err == 0:
                        result[p] = "open"
                    elif err == errno.ECONNREFUSED:
                        result[p] = "refused"
                    else:
                        result[p] = os.strerror(err)
                    del pending[p]
    finally:
        for s in socks.values():
            s.close()
    return result


def tcp_connect_time(af: int, host: str, port: int) -> float:
    """Seconds taken by one TCP handshake."""
    with socket.socket(af, socket.SOCK_STREAM) as s:
        s.settimeout(3.0)
        t0 = time.perf_counter()
        s.connect((host, port))
        return time.perf_counter() - t0


def tcp_exchange(af: int, host: str, port: int, send: bytes = b"", timeout: float = 2.0) -> bytes:
    """Connect, optionally send, read until EOF or timeout; return what was read."""
    out = b""
    with socket.create_connection((host, port), timeout=timeout) as s:
        if send:
            s.sendall(send)
        try:
            while chunk := s.recv(4096):
                out += chunk
                if len(out) > 65536:
                    break
        except TimeoutError:
            pass
    return out


def tcp_read_line(af: int, host: str, port: int) -> bytes:
    """Connect and read the first line the server sends."""
    with socket.create_connection((host, port), timeout=2.0) as s:
        data = b""
        while b"\n" not in data:
            chunk = s.recv(1024)
            if not chunk:
                break
            data += chunk
        return data


def udp_exchange(
    af: int, host: str, port: int, payload: bytes, timeout: float = 1.0
) -> bytes | None:
    """Send one datagram on a connected socket; return the reply or None on timeout.

    A connected socket only accepts replies from (host, port), which also
    checks that the services answer from the address that was asked.
    """
    with socket.socket(af, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(payload)
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def udp_many(
    af: int, host: str, probes: dict[str, tuple[int, bytes]], wait: float
) -> dict[str, bytes | None]:
    """Send all probes at once (one connected socket each); collect replies for ``wait`` s."""
    socks = {name: socket.socket(af, socket.SOCK_DGRAM) for name in probes}
    replies: dict[str, bytes | None] = dict.fromkeys(probes)
    try:
        for name, (port, payload) in probes.items():
            socks[name].connect((host, port))
            socks[name].send(payload)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(list(socks.values()), [], [], left)
            for name, s in socks.items():
                if s in ready:
                    replies[name] = s.recv(65535)
    finally:
        for s in socks.values():
            s.close()
    return replies


def dns_query(qname: str, qtype: int, qid: int = 0x4242) -> bytes:
    """A minimal RD query, built by hand (no dnspython in the test)."""
    wire = b"".join(bytes([len(p)]) + p.encode() for p in qname.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1)


def ntp_request(transmit: float) -> bytes:
    """A 48-byte SNTPv4 client request (LI=0, VN=4, mode 3)."""
    secs = int(transmit) + NTP_EPOCH_OFFSET
    frac = int((transmit % 1) * (1 << 32))
    return bytes([0x23]) + bytes(39) + struct.pack("!II", secs, frac)


# --------------------------------------------------------------------------- topology


def test_client_namespace_topology(lab: netlab.Lab) -> None:
    """Client has the lab addresses, loopback up and no default route."""
    addrs = lab.run(["ip", "-o", "addr", "show"], timeout=10, check=True).stdout
    assert "198.18.0.1/24" in addrs and "2001:db8::1/64" in addrs
    assert "127.0.0.1/8" in addrs
    for fam in ("-4", "-6"):
        routes = lab.run(["ip", fam, "route", "show", "default"], timeout=10, check=True).stdout
        assert routes.strip() == "", f"client must have no default route: {routes!r}"
    assert lab.delayed4 is None and lab.delayed6 is None  # session lab: no TUN path
    assert lab.client_ns.startswith("pp") and lab.server_ns.startswith("pp")
    assert all(len(n) <= 15 for n in (lab.client_veth, lab.server_veth, lab.client_tun))


def test_run_popen_and_threads_stay_isolated(lab: netlab.Lab) -> None:
    """run() captures text and times out; popen() gets signals; the caller's netns is untouched."""
    res = lab.run([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"], timeout=30)
    assert res.returncode == 3 and res.stdout == "hi\n"
    res = lab.run([sys.executable, "-c", "import sys; print(sys.stdin.read())"], input=b"abc")
    assert res.stdout == "abc\n"
    with pytest.raises(subprocess.TimeoutExpired):
        lab.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    proc = lab.popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == -signal.SIGTERM
    proc.stdout.close()
    # The pytest process itself never sees the lab addresses.
    own = os.readlink("/proc/thread-self/ns/net")
    assert lab.call_in_client(lambda: os.readlink("/proc/thread-self/ns/net")) != own
    assert os.readlink("/proc/thread-self/ns/net") == own
    with pytest.raises(ZeroDivisionError):
        lab.call_in_client(lambda: 1 / 0)


# --------------------------------------------------------------------------- TCP


@FAMILIES
def test_tcp_open_closed_filtered(lab: netlab.Lab, family: str) -> None:
    """Open ports connect, closed ports refuse, filtered ports time out."""
    af, host = server_addr(lab, family)

    def probe() -> dict[int, str]:
        res = {p: tcp_connect(af, host, p) for p in (22, 80, 443, 2451, 3451, 8080, 1)}
        res |= tcp_connect_many(af, host, [81, 444], FILTER_TIMEOUT)
        return res

    assert lab.call_in_client(probe) == {
        22: "open", 80: "open", 443: "open", 2451: "open", 3451: "open", 8080: "open",
        1: "refused", 81: "timeout", 444: "timeout",
    }  # fmt: skip


@FAMILIES
def test_tcp_banner(lab: netlab.Lab, family: str) -> None:
    """Port 22 sends the default SSH banner at once."""
    af, host = server_addr(lab, family)
    assert lab.call_in_client(tcp_read_line, af, host, 22) == b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"


@FAMILIES
@pytest.mark.parametrize("port", [80, 2451])
def test_tcp_http(lab: netlab.Lab, family: str, port: int) -> None:
    """The http kind answers a GET with the lab page and closes."""
    af, host = server_addr(lab, family)
    req = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: labtest\r\n\r\n".encode()
    raw = lab.call_in_client(tcp_exchange, af, host, port, req)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    assert headers["server"] == "lab-http/1.0"
    assert headers["content-type"].startswith("text/html")
    assert int(headers["content-length"]) == len(body)
    assert b"<title>lab page</title>" in body


def test_tcp_silent_and_open_close(lab: netlab.Lab) -> None:
    """silent holds the connection without data; open closes at once."""

    def check() -> tuple[bytes | None, bytes]:
        with socket.create_connection((lab.server4, 3451), timeout=0.5) as s:
            try:
                silent: bytes | None = s.recv(100)
            except TimeoutError:
                silent = None
        with socket.create_connection((lab.server4, 443), timeout=2) as s:
            opened = s.recv(100)
        return silent, opened

    assert lab.call_in_client(check) == (None, b"")


def test_tcp_many_connections(lab: netlab.Lab) -> None:
    """The services survive a burst of concurrent connections."""

    def burst() -> int:
        socks = []
        try:
            for _ in range(300):
                s = socket.create_connection((lab.server4, 3451), timeout=2)
                socks.append(s)
            for _ in range(300):
                tcp_connect(socket.AF_INET, lab.server4, 8080)
            return len(socks)
        finally:
            for s in socks:
                s.close()

    assert lab.call_in_client(burst) == 300
    assert lab.call_in_client(tcp_read_line, socket.AF_INET, lab.server4, 22).startswith(b"SSH-2.0")


# --------------------------------------------------------------------------- UDP


@FAMILIES
def test_udp_dns(lab: netlab.Lab, family: str) -> None:
    """A queries get 198.18.0.2; other types NXDOMAIN; ids echoed."""
    af, host = server_addr(lab, family)
    reply = lab.call_in_client(udp_exchange, af, host, 53, dns_query("www.example.test", 1, 0x1234))
    assert reply is not None
    qid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", reply[:12])
    assert qid == 0x1234 and flags & 0x8000 and flags & 0xF == 0
    assert (qd, an) == (1, 1)
    assert reply[-4:] == socket.inet_aton("198.18.0.2")
    reply = lab.call_in_client(udp_exchange, af, host, 53, dns_query("www.example.test", 28, 7))
    assert reply is not None
    qid, flags = struct.unpack("!HH", reply[:4])
    assert qid == 7 and flags & 0xF == 3  # NXDOMAIN


@FAMILIES
def test_udp_ntp(lab: netlab.Lab, family: str) -> None:
    """An NTP client request gets a mode-4, stratum-2 reply with sane timestamps."""
    af, host = server_addr(lab, family)
    now = time.time()
    req = ntp_request(now)
    reply = lab.call_in_client(udp_exchange, af, host, 123, req)
    assert reply is not None and len(reply) >= 48
    assert reply[0] & 7 == 4 and (reply[0] >> 3) & 7 == 4
    assert reply[1] == 2
    assert reply[24:32] == req[40:48]  # originate = our transmit timestamp
    secs, frac = struct.unpack("!II", reply[40:48])
    assert abs(secs + frac / 2**32 - NTP_EPOCH_OFFSET - now) < 5


@FAMILIES
def test_udp_echo_and_silence(lab: netlab.Lab, family: str) -> None:
    """echo echoes; malformed DNS/NTP, silent and filtered ports get nothing; closed refuses."""
    af, host = server_addr(lab, family)

    def probe() -> dict[str, object]:
        out: dict[str, object] = {}
        out |= udp_many(
            af,
            host,
            {
                "echo": (7, b"ping-123"),
                "dns-garbage": (53, b"\x01\x02garbage"),
                "dns-empty": (53, b""),
                "ntp-short": (123, b"\x23" + bytes(10)),
                "ntp-mode4": (123, b"\x24" + bytes(47)),
                "silent": (9999, b"hello"),
                "filtered": (162, b"\x30\x00"),
            },
            FILTER_TIMEOUT,
        )
        try:
            out["closed"] = udp_exchange(af, host, 5, b"x", 2.0)
        except ConnectionRefusedError:
            out["closed"] = "refused"
        return out

    assert lab.call_in_client(probe) == {
        "echo": b"ping-123",
        "dns-garbage": None,
        "dns-empty": None,
        "ntp-short": None,
        "ntp-mode4": None,
        "silent": None,
        "filtered": None,
        "closed": "refused",
    }


# --------------------------------------------------------------------------- extra hosts


def test_extra_hosts(make_lab: Callable[..., netlab.Lab]) -> None:
    """Extra addresses serve TCP and answer UDP from the address that was asked."""
    lab = make_lab(tcp={80: "http"}, udp={7: "echo"}, extra_hosts=5)
    assert lab.extra4 == [f"198.18.0.{i}" for i in range(3, 8)]

    def probe() -> list[tuple[str, bytes | None]]:
        return [
            (tcp_connect(socket.AF_INET, h, 80), udp_exchange(socket.AF_INET, h, 7, h.encode()))
            for h in lab.extra4
        ]

    assert lab.call_in_client(probe) == [("open", h.encode()) for h in lab.extra4]
    assert lab.call_in_client(tcp_connect, socket.AF_INET, lab.extra4[-1], 22) == "refused"
    assert lab.call_in_client(tcp_connect, socket.AF_INET, "198.18.0.8", 80, 0.5) == "timeout"


# --------------------------------------------------------------------------- delayed / lossy path


def test_custom_banner(make_lab: Callable[..., netlab.Lab]) -> None:
    """banner= replaces the default line (CRLF added when missing)."""
    lab = make_lab(tcp={21: "banner", 2222: "banner"}, banner="220 lab FTP ready")
    for port in (21, 2222):
        line = lab.call_in_client(tcp_read_line, socket.AF_INET6, lab.server6, port)
        assert line == b"220 lab FTP ready\r\n"


def test_delay(make_lab: Callable[..., netlab.Lab]) -> None:
    """delay_ms=50 each way gives a ~100 ms handshake on the TUN path; veth stays fast."""
    lab = make_lab(tcp={443: "open", 22: "banner"}, udp={7: "echo"}, delay_ms=50)
    assert lab.delayed4 == "198.18.1.2" and lab.delayed6 == "2001:db8:1::2"

    def measure() -> dict[str, list[float]]:
        return {
            "d4": [tcp_connect_time(socket.AF_INET, lab.delayed4 or "", 443) for _ in range(3)],
            "d6": [tcp_connect_time(socket.AF_INET6, lab.delayed6 or "", 443) for _ in range(2)],
            "c4": [tcp_connect_time(socket.AF_INET, lab.server4, 443) for _ in range(3)],
            "c6": [tcp_connect_time(socket.AF_INET6, lab.server6, 443) for _ in range(3)],
        }

    times = lab.call_in_client(measure)
    for t in times["d4"] + times["d6"]:
        assert 0.095 <= t < 1.0, times
    assert min(times["c4"]) < 0.020 and min(times["c6"]) < 0.020, times
    banner = lab.call_in_client(tcp_read_line, socket.AF_INET, lab.delayed4 or "", 22)
    assert banner.startswith(b"SSH-2.0-")


def test_delayed_path_keeps_order(make_lab: Callable[..., netlab.Lab]) -> None:
    """The forwarder keeps per-direction order and copes with a burst."""
    lab = make_lab(udp={7: "echo"}, delay_ms=20)

    def burst() -> list[int]:
        got: list[int] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.connect((lab.delayed4 or "", 7))
            for i in range(2000):
                s.send(struct.pack("!I", i) + bytes(60))
            s.settimeout(1.0)
            try:
                while len(got) < 2000:
                    got.append(struct.unpack("!I", s.recv(100)[:4])[0])
            except TimeoutError:
                pass
        return got

    got = lab.call_in_client(burst)
    assert len(got) == 2000, len(got)
    assert got == sorted(got), "reordered packets"


def test_loss(make_lab: Callable[..., netlab.Lab]) -> None:
    """loss_pct=30 each way drops about half the echo round trips; veth stays clean."""
    lab = make_lab(udp={7: "echo"}, loss_pct=30)
    assert lab.delayed4 is not None

    def roundtrips(host: str, count: int) -> int:
        seen: set[int] = set()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 7))
            s.settimeout(0.0)
            for i in range(count):
                with contextlib.suppress(OSError):
                    s.send(struct.pack("!I", i))
                time.sleep(0.001)  # pace so nothing is lost to socket buffers
            s.settimeout(0.5)
            try:
                while len(seen) < count:
                    seen.add(struct.unpack("!I", s.recv(100)[:4])[0])
            except TimeoutError:
                pass
        return len(seen)

    got = lab.call_in_client(roundtrips, lab.delayed4, 200)
    loss = 1 - got / 200
    assert 0.25 <= loss <= 0.75, f"round-trip loss {loss:.0%} (expected ~51%)"
    assert lab.call_in_client(roundtrips, lab.server4, 100) == 100


# --------------------------------------------------------------------------- teardown / sweeping


def _netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_teardown_on_exit_and_exception() -> None:
    """Namespaces and marker files go away on normal exit, body exceptions, double close."""
    with netlab.Lab(tcp={80: "open"}, delay_ms=5) as lab:
        names = {lab.client_ns, lab.server_ns}
        assert names <= _netns_list()
    assert not names & _netns_list()
    assert not (netlab.MARKER_DIR / f"{lab.client_ns[:-1]}.json").exists()
    lab.close()  # idempotent

    with pytest.raises(RuntimeError, match="boom"), netlab.Lab(udp={7: "echo"}, loss_pct=5) as lab:
        names = {lab.client_ns, lab.server_ns}
        raise RuntimeError("boom")
    assert not names & _netns_list()
    assert lab.teardown_seconds is not None and lab.teardown_seconds < 10


def test_teardown_after_failed_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A setup that fails half-way (services die) still removes everything."""
    monkeypatch.setattr(netlab, "SERVICES_SCRIPT", netlab.HERE / "does-not-exist.py")
    lab = netlab.Lab(tcp={80: "open"}, delay_ms=5)
    with pytest.raises(netlab.LabError, match="before READY"):
        lab.__enter__()
    assert not {lab.client_ns, lab.server_ns} & _netns_list()
    assert lab.closed


def test_sweep_stale_only_removes_dead_owners(lab: netlab.Lab) -> None:
    """sweep_stale removes labs of dead pids, keeps live ones and the lead's dev lab."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    assert not os.path.exists(f"/proc/{dead.pid}")
    stale = f"pp{dead.pid}xzzzc"
    foreign = "ppnotoursc"  # not our pattern: must survive
    before = _netns_list()
    try:
        for ns in (stale, foreign):
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
        removed = netlab.sweep_stale()
        after = _netns_list()
        assert stale in removed and stale not in after
        assert foreign in after
        assert {lab.client_ns, lab.server_ns} <= after  # owner (us) is alive
        assert before & {"ppdevc", "ppdevs"} <= after
    finally:
        for ns in (stale, foreign):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_invalid_config_is_rejected() -> None:
    """Bad kinds and ranges fail fast, before anything is built."""
    with pytest.raises(ValueError):
        netlab.Lab(tcp={80: "ftp"})
    with pytest.raises(ValueError):
        netlab.Lab(loss_pct=101)
    with pytest.raises(ValueError):
        netlab.Lab(extra_hosts=201)
