"""The common daemons of Debian, started by hand inside a lab's SERVER namespace.

Rules and theory:
- Every daemon runs only in the lab's SERVER namespace (``Lab.start_daemon``), in the
  foreground, with its configuration from ``tests/daemons/<name>/`` (``@WORKDIR@``,
  ``@ADDRESS@``, ``@PORT@`` filled in) and its data in a temporary directory; deleting
  the namespace at teardown kills whatever it forked.
- Files a daemon insists on keeping at a fixed path (sshd's /run/sshd, Exim's
  /etc/exim4, Xvnc's /tmp/.X11-unix) go to a mount namespace of its own
  (``unshare --mount``): nothing is written outside the temporary directory, and
  parallel labs never see each other's.
- Some listen on their registered port, some on a port registered to something else
  (SSH on 2222, HTTP on 8000 and on 2451 "netchat", DNS on 5300, SNMP on 1161/udp, POP3
  on 1110): a label is not evidence.
- All daemons start at once and are waited for together (TCP: a connect from the CLIENT
  namespace; UDP-only daemons: a reply to their protocol's request), so the lab costs
  about as long as its slowest daemon, not the sum. One self-signed certificate, made by
  ``openssl req`` at start, serves nginx's HTTPS and Dovecot's IMAPS and POP3S.
- :func:`missing` names the daemons whose binaries are absent: the caller skips them
  (or, under CI, fails).

Each :class:`Port` carries what a scan must find there: state, evidence service, product,
the Debian package whose upstream version the evidence's version must be, and the
verdict. For end-to-end scans of the same lab::

    with tempfile.TemporaryDirectory() as workdir, netlab.Lab() as lab:
        running = daemonlab_c.start(lab, Path(workdir))
        for port in running.ports:  # every Port of every daemon that runs
            ...  # scan running.address:port.number/port.protocol from the client namespace
"""

from __future__ import annotations

import os
import pwd
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import netlab
from netlab import _accepts

from scanner.protocols import ntp, snmp

__all__ = [
    "DAEMONS",
    "Daemon",
    "Port",
    "Running",
    "missing",
    "scan_args",
    "start",
    "upstream_version",
]

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "daemons"
START_TIMEOUT = 30.0  # seconds for every daemon to listen, all together
PREPARE_TIMEOUT = 30.0  # seconds for one preparation step (a key, a certificate)

POP3_PORT = 1110  # 110 is NATS's in daemonlab_b: POP3 on a port registered to something else


@dataclass(frozen=True, slots=True, kw_only=True)
class Port:
    """One port of a daemon and what a scan of it must find.

    ``service``: the evidence's service; ``product``: its product ("" when the protocol
    names none); ``package``: the Debian package whose upstream version the evidence's
    version must be ("" when the protocol gives none); ``verdict``: the assessment's.
    """

    number: int
    protocol: str = "tcp"
    state: str = "open"
    service: str
    product: str = ""
    package: str = ""
    verdict: str = "consistent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Daemon:
    """One real daemon: how it is started, and the ports it serves.

    ``binary`` must be installed (Debian package ``debian``). ``argv(workdir, address)``
    prepares the daemon's files under ``workdir`` and returns the command line that keeps
    it in the foreground. ``ready``: for a daemon without a TCP port, the (UDP port,
    request) whose reply says it serves.
    """

    name: str
    debian: str
    binary: str
    argv: Callable[[Path, str], list[str]]
    ports: tuple[Port, ...]
    ready: tuple[int, bytes] | None = None
    env: Callable[[Path], dict[str, str]] = lambda _workdir: {}


@dataclass(slots=True)
class Running:
    """What :func:`start` started: ``ports``, every port of every daemon, serving."""

    address: str
    daemons: list[str] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # daemon: why it was not started


def upstream_version(package: str) -> str:
    """The upstream part of an installed Debian package's version (1:9.2p1-2+deb12u3 -> 9.2p1)."""
    res = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    version = res.stdout.strip().split(":", 1)[-1]
    return re.sub(r"-[^-]*$", "", version).split("+dfsg")[0]


def scan_args(ports: Iterable[tuple[int, str]]) -> list[str]:
    """The scan options (``-p T:..,U:.. -sT [-sU]``, as both portprobe and nmap take them)
    that cover every (port, protocol) of ``ports``."""
    pairs = set(ports)
    tcp = sorted(port for port, proto in pairs if proto == "tcp")
    udp = sorted(port for port, proto in pairs if proto == "udp")
    spec = [f"T:{','.join(map(str, tcp))}"] + ([f"U:{','.join(map(str, udp))}"] if udp else [])
    return ["-p", ",".join(spec), "-sT", *(["-sU"] if udp else [])]


# --------------------------------------------------------------------------- helpers


def _render(name: str, workdir: Path, address: str, **values: str | int) -> Path:
    """``tests/daemons/<name>/*`` with ``@KEY@`` replaced, written into ``workdir/conf``."""
    out = workdir / "conf"
    out.mkdir(exist_ok=True)
    fill = {"WORKDIR": str(workdir), "ADDRESS": address, **values}
    for source in sorted((CONFIGS / name).iterdir()):
        text = source.read_text()
        for key, value in fill.items():
            text = text.replace(f"@{key}@", str(value))
        (out / source.name).write_text(text)
    return out


def _run(argv: list[str], what: str) -> None:
    """A preparation step (no network use); raise LabError if it fails."""
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=PREPARE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise netlab.LabError(f"{what} failed: {exc}") from exc
    if res.returncode != 0:
        raise netlab.LabError(f"{what} failed ({res.returncode}): {res.stderr[-2000:]}")


def _self_signed(workdir: Path) -> None:
    """A throwaway certificate and key (P-256: made in milliseconds) in ``workdir``."""
    _run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=lab.portprobe.test",
         "-keyout", str(workdir / "key.pem"), "-out", str(workdir / "cert.pem")],
        "openssl req",
    )  # fmt: skip


def _chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
            os.chown(name, entry.pw_uid, entry.pw_gid)


def _private(mounts: str, argv: list[str]) -> list[str]:
    """``argv`` in a mount namespace of its own, after the shell commands ``mounts``."""
    return ["unshare", "--mount", "sh", "-c", f'{mounts} && exec "$@"', "daemon", *argv]


def _udp_answers(address: str, port: int, request: bytes) -> bool:
    """True when ``request`` to ``address``:``port`` draws a reply within 0.5 s."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect((address, port))
            sock.send(request)
            return bool(sock.recv(4096))
        except OSError:
            return False


# --------------------------------------------------------------------------- the daemons


def _sshd(workdir: Path, address: str) -> list[str]:
    conf = _render("sshd", workdir, address)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
          str(workdir / "ssh_host_ed25519_key")], "ssh-keygen")  # fmt: skip
    # sshd insists on its privilege-separation directory, /run/sshd.
    return _private(
        "mount -t tmpfs lab /run && mkdir -m 755 /run/sshd",
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf / "sshd_config")],
    )


def _nginx(workdir: Path, address: str) -> list[str]:
    conf = _render("nginx", workdir, address)
    _self_signed(workdir)
    return ["/usr/sbin/nginx", "-e", "stderr", "-p", str(workdir), "-c", str(conf / "nginx.conf")]


def _lighttpd(workdir: Path, address: str) -> list[str]:
    conf = _render("lighttpd", workdir, address, PORT=LIGHTTPD_PORT)
    (workdir / "index.html").write_text("portprobe lab lighttpd\n")
    return ["/usr/sbin/lighttpd", "-D", "-f", str(conf / "lighttpd.conf")]


def _vsftpd(workdir: Path, address: str) -> list[str]:
    conf = _render("vsftpd", workdir, address, PORT=21)
    (workdir / "empty").mkdir(mode=0o755)
    (workdir / "users").write_text("")
    return ["/usr/sbin/vsftpd", str(conf / "vsftpd.conf")]


def _exim4(workdir: Path, address: str) -> list[str]:
    conf = _render("exim4", workdir, address, PORT=25)
    for sub in ("spool", "log"):
        (workdir / sub).mkdir()
        _chown(workdir / sub, "Debian-exim")
    # Exim drops root for a configuration given with -C; its own path, /etc/exim4/exim4.conf,
    # is trusted: the lab's file is mounted there, in this daemon's mount namespace only.
    return _private(f'mount --bind "{conf}" /etc/exim4', ["/usr/sbin/exim4", "-bdf"])


def _dovecot(workdir: Path, address: str) -> list[str]:
    conf = _render("dovecot", workdir, address, POP3_PORT=POP3_PORT)
    _self_signed(workdir)
    return ["/usr/sbin/dovecot", "-F", "-c", str(conf / "dovecot.conf")]


def _tinyproxy(workdir: Path, address: str) -> list[str]:
    conf = _render("tinyproxy", workdir, address, PORT=3128)
    return ["/usr/bin/tinyproxy", "-d", "-c", str(conf / "tinyproxy.conf")]


def _xvnc(workdir: Path, address: str) -> list[str]:
    # Display :59 (its lock and socket in a private /tmp); the VNC port is set apart, and
    # X11 itself listens on no TCP port.
    return _private(
        "mount -t tmpfs lab /tmp",
        ["/usr/bin/Xvnc", ":59", "-rfbport", "5901", "-interface", address,
         "-SecurityTypes", "None", "-nolisten", "tcp", "-geometry", "320x200", "-depth", "16"],
    )  # fmt: skip


def _dnsmasq(port: int) -> Callable[[Path, str], list[str]]:
    def argv(workdir: Path, address: str) -> list[str]:
        conf = _render("dnsmasq-c", workdir, address, PORT=port)
        return ["/usr/sbin/dnsmasq", "--keep-in-foreground", f"--conf-file={conf / 'dnsmasq.conf'}"]

    return argv


def _chronyd(workdir: Path, address: str) -> list[str]:
    conf = _render("chrony", workdir, address, PORT=123)
    # -x: never touch the system clock (the lab's namespace shares it with the machine).
    return ["/usr/sbin/chronyd", "-d", "-x", "-u", "root", "-f", str(conf / "chrony.conf")]


def _snmpd(workdir: Path, address: str) -> list[str]:
    conf = _render("snmpd", workdir, address)
    # -C: only the lab's configuration; -f: foreground; -Lo: log to stdout.
    return ["/usr/sbin/snmpd", "-f", "-Lo", "-C", "-c", str(conf / "snmpd.conf"),
            "-p", str(workdir / "snmpd.pid"), "-I", "-smux"]  # fmt: skip


def _snmpd_env(workdir: Path) -> dict[str, str]:
    return {"SNMP_PERSISTENT_DIR": str(workdir), "MIBS": ""}


LIGHTTPD_PORT = 2451  # registered as netchat

#: The daemons and their ports. Verdicts: ``consistent`` on the port's own name (8443 is
#: registered as pcsync-https), ``customary`` on a documented unofficial use (SSH on 2222,
#: HTTP on 8000, an HTTP proxy on 3128, VNC display :1 on 5901), ``contradicts`` on a port
#: registered to something else (2451 netchat, 1110 webadmstart, 5300 hacl-hb, 1161
#: health-polling). No product where the protocol names none (NTP, SNMP's sysDescr, RFB),
#: no version where it gives none (Dovecot's greeting).
DAEMONS: dict[str, Daemon] = {
    d.name: d
    for d in (
        Daemon(name="sshd", debian="openssh-server", binary="/usr/sbin/sshd", argv=_sshd,
               ports=(Port(number=22, service="ssh", product="OpenSSH", package="openssh-server"),
                      Port(number=2222, service="ssh", product="OpenSSH",
                           package="openssh-server", verdict="customary"))),
        Daemon(name="nginx", debian="nginx", binary="/usr/sbin/nginx", argv=_nginx,
               ports=(Port(number=80, service="http", product="nginx", package="nginx"),
                      Port(number=8000, service="http", product="nginx", package="nginx",
                           verdict="customary"),
                      Port(number=8443, service="https", product="nginx", package="nginx"))),
        Daemon(name="lighttpd", debian="lighttpd", binary="/usr/sbin/lighttpd", argv=_lighttpd,
               ports=(Port(number=LIGHTTPD_PORT, service="http", product="lighttpd",
                           package="lighttpd", verdict="contradicts"),)),
        Daemon(name="vsftpd", debian="vsftpd", binary="/usr/sbin/vsftpd", argv=_vsftpd,
               ports=(Port(number=21, service="ftp", product="vsFTPd", package="vsftpd"),)),
        Daemon(name="exim4", debian="exim4-daemon-light", binary="/usr/sbin/exim4", argv=_exim4,
               ports=(Port(number=25, service="smtp", product="Exim",
                           package="exim4-daemon-light"),)),
        Daemon(name="dovecot", debian="dovecot-imapd", binary="/usr/sbin/dovecot",
               argv=_dovecot,
               ports=(Port(number=143, service="imap", product="Dovecot"),
                      Port(number=993, service="imaps", product="Dovecot"),
                      Port(number=POP3_PORT, service="pop3", product="Dovecot",
                           verdict="contradicts"),
                      Port(number=995, service="pop3s", product="Dovecot"))),
        Daemon(name="tinyproxy", debian="tinyproxy", binary="/usr/bin/tinyproxy",
               argv=_tinyproxy,
               ports=(Port(number=3128, service="http", product="tinyproxy",
                           package="tinyproxy", verdict="customary"),)),
        Daemon(name="xvnc", debian="tigervnc-standalone-server", binary="/usr/bin/Xvnc",
               argv=_xvnc, ports=(Port(number=5901, service="vnc", verdict="customary"),)),
        Daemon(name="dnsmasq", debian="dnsmasq-base", binary="/usr/sbin/dnsmasq",
               argv=_dnsmasq(53),
               ports=(Port(number=53, service="dns", product="dnsmasq", package="dnsmasq-base"),
                      Port(number=53, protocol="udp", service="dns", product="dnsmasq",
                           package="dnsmasq-base"))),
        Daemon(name="dnsmasq-5300", debian="dnsmasq-base", binary="/usr/sbin/dnsmasq",
               argv=_dnsmasq(5300),
               ports=(Port(number=5300, service="dns", product="dnsmasq",
                           package="dnsmasq-base", verdict="contradicts"),
                      Port(number=5300, protocol="udp", service="dns", product="dnsmasq",
                           package="dnsmasq-base", verdict="contradicts"))),
        Daemon(name="chronyd", debian="chrony", binary="/usr/sbin/chronyd", argv=_chronyd,
               ports=(Port(number=123, protocol="udp", service="ntp"),),
               ready=(123, ntp.build_request())),
        Daemon(name="snmpd", debian="snmpd", binary="/usr/sbin/snmpd", argv=_snmpd,
               env=_snmpd_env,
               ports=(Port(number=161, protocol="udp", service="snmp"),
                      Port(number=1161, protocol="udp", service="snmp",
                           verdict="contradicts")),
               ready=(161, snmp.build_request(snmp.V2C))),
    )
}  # fmt: skip
_EXTRA_BINARIES = {"sshd": "/usr/bin/ssh-keygen", "nginx": "/usr/bin/openssl",
                   "dovecot": "/usr/bin/openssl"}  # fmt: skip


def missing(names: Iterable[str] = DAEMONS) -> dict[str, str]:
    """``{daemon: why}`` for the daemons among ``names`` that cannot run on this machine."""
    out = {}
    for name in names:
        daemon = DAEMONS[name]
        for binary in (daemon.binary, _EXTRA_BINARIES.get(name)):
            if binary and not os.access(binary, os.X_OK):
                out[name] = (
                    f"{binary} not installed ({daemon.debian}; see .ci/packages.d/daemons-c.txt)"
                )
    return out


def _serving(lab: netlab.Lab, address: str, daemon: Daemon) -> bool:
    tcp = [p.number for p in daemon.ports if p.protocol == "tcp"]
    if daemon.ready is not None:
        return lab.call_in_client(_udp_answers, address, *daemon.ready)
    return all(lab.call_in_client(_accepts, address, port) for port in tcp)


def start(
    lab: netlab.Lab, workdir: Path, names: Iterable[str] = DAEMONS, *, address: str | None = None
) -> Running:
    """Start the daemons ``names`` (those installed) in ``lab``; wait until all serve.

    They listen on ``address`` (default: the server's IPv4 address; any address of the
    SERVER namespace, e.g. one of ``lab.extra4``). Data goes under ``workdir`` (one
    subdirectory each). Raises :class:`netlab.LabError` if a daemon does not serve within
    ``START_TIMEOUT`` seconds (its log is shown).
    """
    address = address or lab.server4
    wanted = list(names)
    running = Running(address, skipped=missing(wanted))
    starting: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
    os.chmod(workdir, 0o711)  # daemons that drop root reach their own directory
    for name in wanted:
        if name in running.skipped:
            continue
        daemon = DAEMONS[name]
        home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
        os.chmod(home, 0o755)
        env = {**os.environ, **daemon.env(home)}
        proc = lab.start_daemon(daemon.argv(home, address), env=env)
        starting[name] = (proc, lab._logs[-1])  # start_daemon's log of it
    deadline = time.monotonic() + START_TIMEOUT
    while starting:
        for name, (proc, log) in list(starting.items()):
            daemon = DAEMONS[name]
            if _serving(lab, address, daemon):
                running.daemons.append(name)
                running.ports.extend(daemon.ports)
                del starting[name]
            elif proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited ({proc.returncode})" if proc.poll() is not None else "timed out"
                raise netlab.LabError(
                    f"{name} not serving on {address}: {why}:\n{netlab.log_tail(log)}"
                )
        time.sleep(0.1)
    return running
