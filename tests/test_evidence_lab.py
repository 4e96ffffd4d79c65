"""Evidence from real services: the netns lab's (marker ``netns``), and a few on loopback.

What a user sees: 22 speaks SSH, 80 and 2451 (registered "netchat") speak HTTP, a silent
port shows nothing after exactly one budget, an accept-and-close port nothing at once,
TLS services show their certificate, over IPv4 and IPv6 alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from conftest import probe_evidence
from netlab import Lab

from scanner.evidence import NO_EVIDENCE, Evidence, EvidenceConfig, Prober
from scanner.protocols import tcp

LAB_HTTP = Evidence("http", "lab-http/1.0; 200; title 'lab page'", "http")
LAB_SSH = Evidence("ssh", "OpenSSH_9.2p1 Debian-2", "banner")


def core(found: Evidence) -> Evidence:
    """``found`` without its trail (excerpt, product, version, rule): the codec tests pin
    those; here what matters is what was identified, and how."""
    return dataclasses.replace(found, excerpt="", product="", version="", rule="")


LAB_TLS = "TLSv1.3; CN=lab.test; self-signed"


def probe_in(lab: Lab, config: EvidenceConfig, address: str, port: int) -> tuple[Evidence, float]:
    """Probe one port from the lab's client namespace: (evidence, seconds)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    async def run() -> tuple[Evidence, float]:
        start = time.perf_counter()
        found = await Prober(config).probe(address, family, port)
        return found, time.perf_counter() - start

    outcome: tuple[Evidence, float] = lab.call_in_client(asyncio.run, run())
    return outcome


def probe_many(
    lab: Lab, config: EvidenceConfig, address: str, ports: list[int]
) -> tuple[dict[int, Evidence], float]:
    """Probe ``ports`` at once with one Prober: ({port: evidence}, total seconds)."""
    return probe_evidence(lab, config, address, ports)


# --------------------------------------------------------------------------- the session lab

QUICK = EvidenceConfig(timeout=2.0)


@pytest.mark.netns
@pytest.mark.parametrize(
    ("port", "expected"),
    [(22, LAB_SSH), (80, LAB_HTTP), (2451, LAB_HTTP)],
    ids=["ssh-22", "http-80", "http-2451-netchat"],
)
def test_identified(lab: Lab, port: int, expected: Evidence) -> None:
    found, seconds = probe_in(lab, QUICK, lab.server4, port)
    assert core(found) == expected
    assert seconds < QUICK.timeout / 2  # a speaking port does not wait out the budget


@pytest.mark.netns
@pytest.mark.parametrize(("port", "expected"), [(22, LAB_SSH), (80, LAB_HTTP)])
def test_identified_over_ipv6(lab: Lab, port: int, expected: Evidence) -> None:
    assert lab.server6 == "2001:db8::2"
    found, _ = probe_in(lab, QUICK, lab.server6, port)
    assert core(found) == expected


@pytest.mark.netns
def test_silent_port_costs_one_timeout(lab: Lab) -> None:
    config = EvidenceConfig(timeout=1.0)
    found, seconds = probe_in(lab, config, lab.server4, 3451)
    assert found == NO_EVIDENCE
    assert 0.9 * config.timeout <= seconds < config.timeout + 0.5


@pytest.mark.netns
@pytest.mark.parametrize(
    "port", [443, 8080, 1], ids=["accept-close-443", "accept-close-8080", "closed-1"]
)
def test_nothing_from_accept_and_close_or_closed(lab: Lab, port: int) -> None:
    found, seconds = probe_in(lab, QUICK, lab.server4, port)
    assert found == NO_EVIDENCE
    assert seconds < 0.5  # every attempt ended at once: no need to wait


# --------------------------------------------------------------------------- more service kinds

KINDS = {
    8443: "https", 9443: "tls", 25: "smtp", 21: "vsftpd", 3306: "mysql", 6379: "redis",
    22: "banner", 80: "http",
}  # fmt: skip
KIND_EVIDENCE = {
    # TLS is proven by the handshake; the nginx-style 400 it gives plain HTTP must not win.
    8443: Evidence("https", f"{LAB_TLS}; lab-http/1.0; 200; title 'lab page'", "tls+http"),
    9443: Evidence("tls", LAB_TLS, "tls"),
    25: Evidence("smtp", "lab.test ESMTP Postfix (Debian/GNU)", "banner"),
    21: Evidence("ftp", "(vsFTPd 3.0.3)", "banner"),
    3306: Evidence("mysql", "8.0.36; caching_sha2_password", "banner"),
    # Redis answers the HTTP probe's request line as a GET command.
    6379: Evidence("redis", "ERR wrong number of arguments for 'get' command", "redis"),
    22: LAB_SSH,
    80: LAB_HTTP,
}


@pytest.mark.netns
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_service_kinds(make_lab: Callable[..., Lab], family: str) -> None:
    lab = make_lab(tcp=KINDS)
    address = lab.server4 if family == "ipv4" else lab.server6
    found, seconds = probe_many(lab, EvidenceConfig(timeout=1.5), address, sorted(KINDS))
    # Redis answers both the HTTP probe and its own (INFO): either reply may come first.
    redis = found.pop(6379)
    assert (redis.service, redis.proof) == ("redis", "redis")
    assert {port: core(e) for port, e in found.items()} == {
        port: e for port, e in KIND_EVIDENCE.items() if port != 6379
    }
    # A TLS service that never answers HTTP is only known as such when the budget ends.
    assert seconds < 1.5 + 0.5


@pytest.mark.netns
def test_twenty_silent_ports_cost_about_one_timeout(make_lab: Callable[..., Lab]) -> None:
    ports = list(range(5000, 5020))
    lab = make_lab(tcp=dict.fromkeys(ports, "silent"))
    config = EvidenceConfig(timeout=1.0)
    found, seconds = probe_many(lab, config, lab.server4, ports)
    assert found == dict.fromkeys(ports, NO_EVIDENCE)
    assert seconds < 2 * config.timeout


@pytest.mark.netns
@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_concurrency_bounds_ports_in_flight(make_lab: Callable[..., Lab], protocol: str) -> None:
    ports = list(range(5000, 5006))
    lab = make_lab(**{protocol: dict.fromkeys(ports, "silent")})
    config = EvidenceConfig(timeout=0.5, concurrency=3)
    found, seconds = probe_evidence(lab, config, lab.server4, ports, udp=protocol == "udp")
    assert set(found.values()) == {NO_EVIDENCE}
    assert 2 * config.timeout * 0.9 <= seconds < 3 * config.timeout  # two rounds of three


# --------------------------------------------------------------------------- loopback services

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def on_loopback(
    handler: Handler, config: EvidenceConfig, rtt: float | None = None
) -> tuple[Evidence, float]:
    """Serve ``handler`` on 127.0.0.1 and probe it (with the scan's ``rtt``, if given):
    (evidence, seconds)."""

    async def run() -> tuple[Evidence, float]:
        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(reader, writer)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(guarded, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            start = time.perf_counter()
            found = await Prober(config).probe("127.0.0.1", socket.AF_INET, port, rtt=rtt)
            return found, time.perf_counter() - start
        finally:
            server.close()
            await server.wait_closed()

    return _run(run())


def _run(coro: Coroutine[Any, Any, tuple[Evidence, float]]) -> tuple[Evidence, float]:
    return asyncio.run(coro)


async def hold(reader: asyncio.StreamReader) -> None:
    """Keep the connection until the client is gone."""
    while await reader.read(4096):
        pass


async def only_ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A Redis that ignores anything but an inline PING (so only the passive probe's PING works)."""
    while line := await reader.readline():
        if line == b"PING\r\n":
            writer.write(b"+PONG\r\n")
            await writer.drain()


async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP server whose page never ends."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nServer: endless\r\n\r\n<html><title>forever</title>")
    while True:
        writer.write(b"x" * 65536)
        await writer.drain()


async def late_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An FTP server that greets after a pause, in two pieces."""
    await asyncio.sleep(0.2)
    writer.write(b"220 (vsFTPd ")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(b"3.0.3)\r\n")
    await writer.drain()
    await hold(reader)


async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A banner made to attack a terminal."""
    writer.write(b"\x1b]0;owned\x07Evil\x1b[2J \xe2\x80\xaeesrever\r\n")
    await writer.drain()
    await hold(reader)


def test_redis_answering_only_ping() -> None:
    config = EvidenceConfig(timeout=1.0)
    found, seconds = on_loopback(only_ping, config)
    assert core(found) == Evidence("redis", "PONG", "redis")
    assert seconds < config.timeout  # PING after half the budget, answered at once


def test_endless_page_is_bounded() -> None:
    config = EvidenceConfig(timeout=1.0, max_bytes=4096)
    found, seconds = on_loopback(endless, config)
    assert core(found) == Evidence("http", "endless; 200; title 'forever'", "http")
    assert seconds < config.timeout


def test_banner_in_pieces() -> None:
    found, seconds = on_loopback(late_banner, EvidenceConfig(timeout=1.0))
    assert core(found) == Evidence("ftp", "(vsFTPd 3.0.3)", "banner")
    assert seconds < 0.5


def test_hostile_banner_is_cleaned() -> None:
    found, _ = on_loopback(hostile, EvidenceConfig(timeout=0.5))
    assert core(found) == Evidence("", "\\x1b]0;owned\\x07Evil\\x1b[2J \\u202eesrever", "banner")


def test_config_is_validated() -> None:
    for bad in ({"timeout": 0}, {"max_bytes": 1}, {"concurrency": 0}):
        with pytest.raises(ValueError):
            EvidenceConfig(**bad)


async def unknown_binary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A protocol nobody knows: the same 8 bytes in answer to anything."""
    await reader.read(1)
    writer.write(b"ZQP\x00\x00\x09\x01\xfe")
    await writer.drain()


def test_an_unrecognised_reply_is_kept_with_its_bytes() -> None:
    """A reply no decoder names is evidence too: shown, unrecognised, with an excerpt."""
    found, _ = on_loopback(unknown_binary, EvidenceConfig(timeout=1.0))
    assert found.service == ""
    assert found.excerpt == "ZQP\\x00\\x00\\x09\\x01\\xfe"
    assert found.detail == "8 bytes: 5a515000000901fe"


def test_probes_do_not_depend_on_the_label() -> None:
    """A port that never answers gets every active probe, whatever it is registered as:
    the label never picks them."""
    asked: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = b""
        with contextlib.suppress(OSError):  # timed out, or reset: the prober gave up
            async with asyncio.timeout(1.5):
                while len(got) < 64 and (chunk := await reader.read(64 - len(got))):
                    got += chunk
        asked.append(got)
        writer.close()

    async def run() -> int:
        server = await asyncio.start_server(record, "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        async with server:
            # (A floor of the whole budget: a silent port is not given up before every
            # probe has had its turn.)
            config = EvidenceConfig(timeout=4.0, silence_floor=4.0)
            await Prober(config).probe("127.0.0.1", socket.AF_INET, port)
        return port

    port = asyncio.run(run())
    requests = {probe.request("127.0.0.1", port)[:64] for probe in tcp.active_probes()}
    assert requests <= set(asked)


def test_a_grpc_server_that_speaks_only_h2_over_tls(tmp_path: Path) -> None:
    """A TLS server that offers only h2 by ALPN (gRPC): the TLS attempt asks as gRPC does
    and names it from the answer's content-type."""
    import shutil
    import ssl
    import subprocess

    import hpack

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=grpc.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])

    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return (
            len(payload).to_bytes(3, "big")
            + bytes([kind, flags])
            + stream.to_bytes(4, "big")
            + payload
        )

    async def grpc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        block = hpack.Encoder().encode(
            [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12")]
        )
        writer.write(frame(4, 0, 0, b"") + frame(1, 0x4 | 0x1, 1, block))
        await writer.drain()
        with contextlib.suppress(OSError):
            await hold(reader)

    async def run() -> Evidence:
        server = await asyncio.start_server(grpc, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await Prober(EvidenceConfig(timeout=2.0)).probe(
                "127.0.0.1", socket.AF_INET, port
            )

    found = asyncio.run(run())
    assert (found.service, found.proof) == ("grpc", "tls+http2")
    assert "CN=grpc.test" in found.detail and "grpc-status 12" in found.detail


async def irc_refusing_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """ngircd 26's answer to an HTTP request (captured); silent to anything else."""
    if (await reader.read(4096)).startswith(b"GET "):
        writer.write(b'ERROR :"Oops, HTTP request received? This is IRC!"\r\n')
        await writer.drain()
    with contextlib.suppress(OSError):
        await hold(reader)


def test_a_reply_to_a_foreign_request_is_named_by_its_own_decoder() -> None:
    """When nothing else named the port, the other probes' decoders read the replies."""
    found, _ = on_loopback(irc_refusing_http, EvidenceConfig(timeout=1.0))
    assert (found.service, found.proof) == ("irc", "http>irc")


# --------------------------------------------------------------------------- silence and RTT

LATE_SMTP = Evidence("smtp", "lab.test ESMTP Postfix (Debian/GNU)", "banner")


@pytest.mark.parametrize(
    ("config", "rtt", "wait"),
    [
        (EvidenceConfig(), None, 2.0),  # no RTT: the whole budget
        (EvidenceConfig(), 0.0001, 1.2),  # a fast link: the floor
        (EvidenceConfig(), 0.1, 1.2),
        (EvidenceConfig(), 0.17, 1.7),  # SILENCE_RTTS round trips, above the floor
        (EvidenceConfig(), 0.5, 2.0),  # never more than the budget
        (EvidenceConfig(timeout=1.0), 0.0001, 1.0),  # nor a floor above it
        (EvidenceConfig(silence_floor=0.3), 0.0001, 0.3),
        (EvidenceConfig(), float("nan"), 2.0),  # not an RTT: as if unknown
    ],
)
def test_silence_wait(config: EvidenceConfig, rtt: float | None, wait: float) -> None:
    assert config.silence_wait(rtt) == pytest.approx(wait)


@pytest.mark.parametrize("floor", [0.0, -1.0, float("nan")])
def test_silence_floor_must_be_positive(floor: float) -> None:
    with pytest.raises(ValueError, match="silence_floor"):
        EvidenceConfig(silence_floor=floor)


@pytest.mark.netns
def test_silence_wait_follows_the_scanned_rtt_and_a_late_greeting_is_identified(
    make_lab: Callable[..., Lab],
) -> None:
    """The engine's RTT goes into the prober: a silent port costs the floor, not the budget,
    and an SMTP server that greets 1 s late (lab kind smtp-late) is still identified."""
    from scanner.engine import Scan
    from scanner.models import ScanConfig
    from scanner.targets import TargetSet, parse_target

    late, silent = 2525, 5001
    lab = make_lab(tcp={late: "smtp-late", silent: "silent"})
    config = EvidenceConfig(timeout=4.0)  # the floor (1.2 s) is well under it

    async def run() -> dict[int, tuple[Evidence, float, float | None]]:
        hosts = TargetSet([parse_target(lab.server4)])
        results = [r async for r in Scan(hosts, [late, silent], ScanConfig(workers=1))]
        assert {r.port: r.state for r in results} == {late: "open", silent: "open"}
        prober = Prober(config)

        async def one(port: int, rtt: float | None) -> tuple[Evidence, float, float | None]:
            start = time.perf_counter()
            found = await prober.probe(lab.server4, socket.AF_INET, port, rtt=rtt)
            return found, time.perf_counter() - start, rtt

        found = await asyncio.gather(*(one(r.port, r.rtt) for r in results))
        return {r.port: f for r, f in zip(results, found, strict=True)}

    outcome: dict[int, tuple[Evidence, float, float | None]] = lab.call_in_client(
        asyncio.run, run()
    )
    late_found, late_seconds, late_rtt = outcome[late]
    silent_found, silent_seconds, silent_rtt = outcome[silent]
    assert late_rtt is not None and silent_rtt is not None  # the scan measured both
    assert core(late_found) == LATE_SMTP
    assert late_seconds >= 1.0  # it did wait for the greeting
    assert silent_found == NO_EVIDENCE
    # Given up at the silence wait, not at the budget (4 s).
    assert config.silence_wait(silent_rtt) <= silent_seconds < config.timeout - 1.0


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads whatever comes and never sends a byte."""
    await hold(reader)


@pytest.mark.parametrize("rtt", [None, 0.19])
def test_a_silent_port_is_given_up_by_the_round_trip_of_its_own_connects(
    rtt: float | None,
) -> None:
    """The scan's RTT of an open port may hold a busy worker's delay (0.19 s would mean a
    1.9 s wait), or be missing (the whole budget): the port's own connects took
    microseconds, and the smallest RTT known counts. Given up at the floor."""
    config = EvidenceConfig(timeout=3.0)
    found, seconds = on_loopback(silent, config, rtt=rtt)
    assert found == NO_EVIDENCE
    assert config.silence_floor <= seconds < 1.7


@pytest.mark.netns
def test_late_greeting_is_identified_without_an_rtt(make_lab: Callable[..., Lab]) -> None:
    """Without the scan's RTT, the port's own connects give one (the floor then applies):
    the greeting at 1 s is within it, whatever the other probes sent the server before it."""
    lab = make_lab(tcp={2525: "smtp-late"})
    config = EvidenceConfig(timeout=1.6)
    found, _ = probe_in(lab, config, lab.server4, 2525)
    assert core(found) == LATE_SMTP


async def http_and_h2c(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """As Debian's lighttpd does: HTTP/1.1, and HTTP/2 with prior knowledge (h2c)."""
    first = await reader.read(4096)
    if first.startswith(b"PRI * HTTP/2.0"):
        writer.write(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x08")
    elif first.startswith(b"GET "):
        writer.write(b"HTTP/1.1 200 OK\r\nServer: lighttpd/1.4.69\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    with contextlib.suppress(OSError):
        await hold(reader)


def test_h2c_ranks_with_http_and_the_server_is_named() -> None:
    """An h2c answer is HTTP too: it neither beats nor hides the HTTP/1.1 answer that
    names the server (before, lighttpd on 2451 came out as an unnamed 'http2')."""
    found, _ = on_loopback(http_and_h2c, EvidenceConfig(timeout=1.0))
    assert (found.service, found.product, found.version) == ("http", "lighttpd", "1.4.69")


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _probe_counting(serve: Serve) -> tuple[Evidence, int]:
    """Probe a loopback server running ``serve`` for each connection (RTT 0.1 ms); the
    evidence and how many connections it accepted."""

    async def run() -> tuple[Evidence, int]:
        accepted = 0

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await serve(reader, writer)

        server = await asyncio.start_server(counted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            found = await Prober(EvidenceConfig(timeout=2.0)).probe(
                "127.0.0.1", socket.AF_INET, port, rtt=0.0001
            )
        return found, accepted

    return asyncio.run(run())


@pytest.mark.parametrize("delay", [0.0, 0.1])
def test_a_server_that_greets_is_named_on_the_passive_connection_alone(delay: float) -> None:
    """A greeting within the passive connection's head start (see the evidence module's
    rules) names the port with no other connection; one that comes later still names it,
    the other attempts having started meanwhile."""
    from scanner.evidence import HEAD_START

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await asyncio.sleep(delay)
            writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
            await writer.drain()
            await reader.read(1)
        writer.close()

    found, accepted = _probe_counting(serve)
    assert (found.service, found.product, found.version) == ("ssh", "OpenSSH", "9.2p1")
    if delay == 0:
        assert accepted == 1
    else:
        assert delay > HEAD_START and accepted > 1  # (its RTT of 0.1 ms: the floor)


def test_a_port_that_closes_at_once_is_not_given_every_probe() -> None:
    """Loopback server that closes each connection at once, unprompted (nmap's tcpwrapped):
    the passive attempt (twice), HTTP, TLS and any active probes started meanwhile
    connect, the other queued probes do not; a port that only closes after a request gets
    every probe."""
    from scanner.evidence import PROBES_AT_ONCE

    def closing(close_at_once: bool) -> Serve:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not close_at_once:
                await reader.read(1)  # closes once a request has come
            writer.close()

        return serve

    found, accepted = _probe_counting(closing(close_at_once=True))
    assert found == NO_EVIDENCE
    # (Two passive connections, then HTTP and TLS; the probes' rounds only if the passive
    # one listened alone for its whole head start, as on a loaded machine.)
    assert 4 <= accepted <= 4 + 2 * PROBES_AT_ONCE < 3 + len(tcp.active_probes())
    found, accepted = _probe_counting(closing(close_at_once=False))
    assert found == NO_EVIDENCE
    assert accepted == 3 + len(tcp.active_probes())
