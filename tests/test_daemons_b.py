"""The second batch of TCP probes against real daemons from Debian's packages.

One lab for the module (``tests/daemonlab_b.py`` starts the daemons in its server
namespace, some on their registered ports, some on ports registered to something else);
each probe runs from the client namespace exactly as the prober runs it
(``daemonlab_b.exchange``: its request, then bounded reads until its decoder answers).
Then every probe goes to every daemon, to show that only the right ones identify it; and
``scanner.evidence.Prober``, with these probes registered, names every daemon.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import daemonlab_b
import netlab
import pytest
from conftest import _in_ci, probe_evidence

from scanner.models import EvidenceConfig
from scanner.protocols import (
    Evidence,
    banner,
    h2,
    irc,
    kerberos,
    nats,
    rdp,
    rmi,
    sip,
    smb2,
    tcp,
    telnet,
    x11,
    xmpp,
)
from scanner.protocols.tcp import TcpProbe, passive

pytestmark = pytest.mark.netns

TIMEOUT = 3.0  # per exchange; every daemon here answers in milliseconds
#: The passive banner rules, as a probe: what ``scanner.evidence`` does with a greeting.
BANNER = TcpProbe(
    name="banner",
    request=passive,
    decode=lambda data: e if (e := banner.classify(data)) and e.service else None,
)
PROBES: tuple[TcpProbe, ...] = (
    BANNER,
    *(p for m in (smb2, rdp, kerberos, x11, telnet, irc, xmpp, nats, rmi, sip, h2)
      for p in m.TCP_PROBES),
)  # fmt: skip
BY_NAME = {p.name: p for p in PROBES}


@pytest.fixture(scope="module")
def daemon_lab() -> Iterator[netlab.Lab]:
    """A lab with every daemon of ``daemonlab_b.DAEMONS`` running (skipped, or failed under
    CI, when one is not installed)."""
    missing = daemonlab_b.missing()
    if missing:
        reason = "daemons not installed: " + ", ".join(missing)
        if _in_ci():
            pytest.fail(reason + " (CI is set: .ci/packages.d/daemons-b.txt lists them)")
        pytest.skip(reason)
    try:
        with netlab.Lab() as lab:
            daemonlab_b.start(lab)
            yield lab
    finally:
        daemonlab_b.cleanup()


def run(lab: netlab.Lab, probe: TcpProbe, port: int) -> Evidence | None:
    """``probe`` against the daemon on ``port``, from the client namespace."""
    found: Evidence | None = lab.call_in_client(
        asyncio.run, daemonlab_b.exchange(lab.server4, port, probe, TIMEOUT)
    )
    return found


PORT = {d.name: d.port for d in daemonlab_b.DAEMONS}

#: (daemon, probe, service, rule, product, version, detail pattern)
CASES = [
    ("smbd", "smb2", "smb", "smb2:negotiate", "", "", r"SMB 3\.1\.1; signing required"),
    ("krb5kdc", "kerberos", "kerberos", "kerberos:krb-error", "", "",
     r"KRB-ERROR 6 C_PRINCIPAL_UNKNOWN"),
    ("xrdp", "rdp", "rdp", "rdp:negotiation-response", "", "", r"selected TLS"),
    ("xvfb-open", "x11", "x11", "x11:setup-success", "The X.Org Foundation", r"\d+\.\d+\.\d+",
     r"X11\.0 open \(no authentication\); The X\.Org Foundation; release [\d.]+; 1 screen"),
    ("xvfb-closed", "x11", "x11", "x11:setup-failed", "", "",
     r"X11\.0 refused; Authorization required"),
    ("telnetd", "telnet", "telnet", "telnet:negotiation", "", "", r"DO TTYPE .*; WILL .*SGA"),
    ("telnetd", "banner", "telnet", "banner:telnet", "", "", r""),
    ("ngircd", "irc", "irc", "irc:myinfo", "ngircd", r"\d+(\.\d+)*",
     r"irc\.portprobe\.test; ngircd-"),
    ("prosody", "xmpp", "xmpp", "xmpp:stream-features", "", "",
     r"from 198\.18\.0\.2; version 1\.0; SASL .*PLAIN"),
    ("nats", "nats", "nats", "nats:info", "nats-server", r"\d+\.\d+\.\d+",
     r"nats-server [\d.]+; go[\d.]+; name portprobe-lab"),
    ("kamailio", "sip-tcp", "sip", "sip:options-response", "kamailio", r"\d+\.\d+\.\d+",
     r"200 OK; kamailio \("),
    ("rmiregistry", "rmi", "java-rmi", "rmi:protocol-ack", "", "",
     r"ProtocolAck; sees us as 198\.18\.0\.1:\d+"),
    ("nginx-h2c", "http2", "http2", "h2:server-settings", "", "", r"HTTP/2; settings .*max_"),
    ("nginx-h2c", "grpc", "http2", "h2:response", "nginx", r"\d+\.\d+\.\d+",
     r"HTTP/2; nginx/[\d.]+; 200"),
    ("rsyncd", "banner", "rsync", "banner:rsync", "rsync", "",
     r"protocol 3\d\.0; digests sha512 .*md4"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("daemon", "probe", "service", "rule", "product", "version", "detail"),
    CASES,
    ids=[f"{c[0]}-{c[1]}" for c in CASES],
)
def test_probe_identifies_the_real_daemon(
    daemon_lab: netlab.Lab,
    daemon: str,
    probe: str,
    service: str,
    rule: str,
    product: str,
    version: str,
    detail: str,
) -> None:
    found = run(daemon_lab, BY_NAME[probe], PORT[daemon])
    assert found is not None, f"{probe} saw nothing from {daemon}"
    assert (found.service, found.rule, found.product) == (service, rule, product)
    assert re.fullmatch(version, found.version), found.version
    assert re.match(detail, found.detail), found.detail


#: Which probes identify each daemon: every other probe must say nothing about it.
IDENTIFIED_BY = {
    "smbd": {"smb2"},
    "krb5kdc": {"kerberos"},
    "xrdp": {"rdp"},
    "xvfb-open": {"x11"},
    "xvfb-closed": {"x11"},
    "telnetd": {"telnet", "banner"},
    "ngircd": {"irc"},
    "prosody": {"xmpp"},
    "nats": {"nats"},
    "kamailio": {"sip-tcp"},
    "rmiregistry": {"rmi"},
    "nginx-h2c": {"http2", "grpc"},
    "rsyncd": {"banner"},
}


def test_only_the_right_probes_identify_each_daemon(daemon_lab: netlab.Lab) -> None:
    """Every probe against every daemon, at once: no probe claims a daemon it does not
    speak to (what the prober relies on when it sends every probe to every port)."""

    async def everything() -> dict[tuple[str, str], Evidence | None]:
        pairs = [(d, p) for d in IDENTIFIED_BY for p in PROBES]
        found = await asyncio.gather(
            *(daemonlab_b.exchange(daemon_lab.server4, PORT[d], p, 1.5) for d, p in pairs)
        )
        return {(d, p.name): e for (d, p), e in zip(pairs, found, strict=True)}

    results = daemon_lab.call_in_client(asyncio.run, everything())
    identified = {d: {p for (dd, p), e in results.items() if dd == d and e} for d in IDENTIFIED_BY}
    assert identified == IDENTIFIED_BY


#: The modules of the probes tested here: all registered in scanner.protocols.tcp.
MODULES_B = ("smb2", "rdp", "kerberos", "x11", "telnet", "irc", "xmpp", "nats", "rmi", "sip",
             "rtsp", "mssql", "h2")  # fmt: skip

#: What scanner.evidence's Prober must say of each daemon: service, product, version.
PROBER_SAYS = {
    "smbd": ("smb", "", ""),
    "krb5kdc": ("kerberos", "", ""),
    "xrdp": ("rdp", "", ""),
    "xvfb-open": ("x11", "The X.Org Foundation", r"\d+\.\d+\.\d+"),
    "xvfb-closed": ("x11", "", ""),
    "telnetd": ("telnet", "", ""),
    "ngircd": ("irc", "ngircd", r"\d+(\.\d+)*"),
    "prosody": ("xmpp", "", ""),
    "nats": ("nats", "nats-server", r"\d+\.\d+\.\d+"),
    "kamailio": ("sip", "kamailio", r"\d+\.\d+\.\d+"),
    "rmiregistry": ("java-rmi", "", ""),
    "nginx-h2c": ("http", "", ""),  # HTTP/2 is HTTP; its server name, if the gRPC probe won
    "rsyncd": ("rsync", "rsync", ""),
}


def test_the_prober_names_every_daemon(daemon_lab: netlab.Lab) -> None:
    """scanner.evidence's Prober as registered, every port at once, within a 3 s budget:
    each daemon named, whatever port it is on (NATS on 110, telnet on 2525)."""
    assert set(MODULES_B) <= set(tcp._MODULES)
    found, _seconds = probe_evidence(
        daemon_lab, EvidenceConfig(timeout=3.0), daemon_lab.server4, sorted(PORT.values())
    )
    for name, (service, product, version) in PROBER_SAYS.items():
        evidence = found[PORT[name]]
        assert evidence.service == service, (name, evidence)
        # nginx's h2c names itself only to the gRPC probe, which may or may not settle first.
        assert evidence.product in ({product, "nginx"} if name == "nginx-h2c" else {product})
        assert re.fullmatch(version, evidence.version), (name, evidence)
