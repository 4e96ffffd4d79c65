"""Real daemons from Debian's packages, started by hand in a lab's server namespace.

Each :class:`Daemon` names its Debian package, the binary it needs, the TCP port it listens
on in the lab, and how to start it: a config from ``tests/daemons/<name>/`` with ``@TMP@``
(a fresh temporary directory), ``@PORT@`` and ``@ADDR@`` (the server's address) filled in,
and an argv that keeps the daemon in the foreground. :func:`start` runs them with
:meth:`netlab.Lab.start_daemon`, which waits until each port accepts from the client
namespace; the lab's teardown kills them (deleting the namespace kills every process in it).

Daemons never run in the root namespace. Files a daemon insists on writing at a fixed path
(xrdp's pid file under /run/xrdp, Xvfb's lock and socket under /tmp) go to a tmpfs mounted
in a mount namespace of its own (``unshare --mount``), so that parallel labs never see
each other's. Prosody refuses to run as root unless told (``run_as_root``); the KDC's
realm is made here with ``kdb5_util`` in the daemon's temporary directory.

:func:`exchange` runs one ``TcpProbe`` the way the prober does, for tests that want a
probe's verdict on a real daemon.

Some daemons listen on their registered port, some on a port registered to something
else (:data:`DAEMONS`): the probes must not care.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import netlab

from scanner.protocols import Evidence
from scanner.protocols.tcp import TcpProbe

__all__ = ["DAEMONS", "Daemon", "cleanup", "exchange", "missing", "start"]

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "daemons"
REALM = "PORTPROBE.TEST"
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Daemon:
    """One real daemon of the lab: ``argv(tmp, port, addr)`` starts it in the foreground."""

    name: str
    package: str
    binary: str
    port: int
    argv: Callable[[Path, int, str], list[str]]


def _config(name: str, file: str, tmp: Path, port: int, addr: str) -> Path:
    """``tests/daemons/<name>/<file>`` with its placeholders filled, written into ``tmp``."""
    text = (CONFIGS / name / file).read_text()
    text = text.replace("@TMP@", str(tmp)).replace("@PORT@", str(port))
    out = tmp / file
    out.write_text(text.replace("@ADDR@", addr))
    return out


def _self_signed(tmp: Path) -> None:
    """A throwaway certificate and key for daemons that want one (xrdp's TLS layer)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=portprobe-lab", "-keyout", str(tmp / "key.pem"),
         "-out", str(tmp / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _smbd(tmp: Path, port: int, addr: str) -> list[str]:
    for sub in ("private", "lock", "state", "cache", "run", "ncalrpc", "bind-dns"):
        (tmp / sub).mkdir()
    conf = _config("samba", "smb.conf", tmp, port, addr)
    return ["/usr/sbin/smbd", "--foreground", "--no-process-group", "--debug-stdout",
            "-s", str(conf)]  # fmt: skip


def _krb5_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "KRB5_CONFIG": str(tmp / "krb5.conf"),
            "KRB5_KDC_PROFILE": str(tmp / "kdc.conf")}  # fmt: skip


def _krb5kdc(tmp: Path, port: int, addr: str) -> list[str]:
    _config("krb5", "krb5.conf", tmp, port, addr)
    _config("krb5", "kdc.conf", tmp, port, addr)
    (tmp / "kadm5.acl").write_text("")
    # A tiny realm: the database and its stash, made here (no network involved).
    subprocess.run(
        ["/usr/sbin/kdb5_util", "create", "-s", "-r", REALM, "-P", "portprobe-lab"],
        env=_krb5_env(tmp), check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return ["env", f"KRB5_CONFIG={tmp / 'krb5.conf'}", f"KRB5_KDC_PROFILE={tmp / 'kdc.conf'}",
            "/usr/sbin/krb5kdc", "-n", "-r", REALM]  # fmt: skip


def _xrdp(tmp: Path, port: int, addr: str) -> list[str]:
    _self_signed(tmp)
    conf = _config("xrdp", "xrdp.ini", tmp, port, addr)
    return ["unshare", "--mount", "sh", "-c",
            "mkdir -p /run/xrdp && mount -t tmpfs lab /run/xrdp && "
            f'exec /usr/sbin/xrdp --nodaemon --config "{conf}"']  # fmt: skip


def _xvfb(display: int, *extra: str) -> Callable[[Path, int, str], list[str]]:
    def argv(tmp: Path, port: int, addr: str) -> list[str]:
        assert port == 6000 + display
        # Xvfb writes its lock to /tmp/.X<n>-lock and its socket under /tmp/.X11-unix:
        # a private /tmp keeps parallel labs apart.
        return ["unshare", "--mount", "sh", "-c",
                f"mount -t tmpfs lab /tmp && exec /usr/bin/Xvfb :{display} -listen tcp "
                f"-nolisten unix -screen 0 320x200x8 {' '.join(extra)}"]  # fmt: skip

    return argv


def _telnetd(tmp: Path, port: int, addr: str) -> list[str]:
    conf = _config("telnetd", "inetd.conf", tmp, port, addr)
    return ["/usr/sbin/inetutils-inetd", "-d", "-p", str(tmp / "inetd.pid"), str(conf)]


def _ngircd(tmp: Path, port: int, addr: str) -> list[str]:
    conf = _config("ngircd", "ngircd.conf", tmp, port, addr)
    return ["/usr/sbin/ngircd", "--nodaemon", "--passive", "--config", str(conf)]


def _prosody(tmp: Path, port: int, addr: str) -> list[str]:
    conf = _config("prosody", "prosody.cfg.lua", tmp, port, addr)
    return ["/usr/bin/prosody", "--config", str(conf), "-F"]


def _nats(tmp: Path, port: int, addr: str) -> list[str]:
    conf = _config("nats", "nats.conf", tmp, port, addr)
    return ["/usr/sbin/nats-server", "-c", str(conf)]


def _kamailio(tmp: Path, port: int, addr: str) -> list[str]:
    conf = _config("kamailio", "kamailio.cfg", tmp, port, addr)
    return ["/usr/sbin/kamailio", "-DD", "-E", "-f", str(conf), "-P", str(tmp / "k.pid"),
            "-Y", str(tmp), "-m", "16", "-M", "4"]  # fmt: skip


def _rmiregistry(tmp: Path, port: int, addr: str) -> list[str]:
    return ["/usr/bin/rmiregistry", "-J-Xmx32m", "-J-XX:TieredStopAtLevel=1", str(port)]


def _nginx(tmp: Path, port: int, addr: str) -> list[str]:
    conf = _config("nginx-h2c", "nginx.conf", tmp, port, addr)
    return ["/usr/sbin/nginx", "-e", "stderr", "-p", str(tmp), "-c", str(conf)]


def _rsyncd(tmp: Path, port: int, addr: str) -> list[str]:
    conf = _config("rsync", "rsyncd.conf", tmp, port, addr)
    return ["/usr/bin/rsync", "--daemon", "--no-detach", f"--config={conf}"]


#: The daemons, each on its lab port. Registered ports: 88 kerberos, 445 SMB, 873 rsync,
#: 1099 rmiregistry, 3389 RDP, 5060 SIP, 5222 XMPP, 6000/6001 X11, 6667 IRC. Ports
#: registered to something else: NATS on 110 (pop3), telnet on 2525, nginx h2c on 8081.
DAEMONS: tuple[Daemon, ...] = (
    Daemon("smbd", "samba", "/usr/sbin/smbd", 445, _smbd),
    Daemon("krb5kdc", "krb5-kdc", "/usr/sbin/krb5kdc", 88, _krb5kdc),
    Daemon("xrdp", "xrdp", "/usr/sbin/xrdp", 3389, _xrdp),
    Daemon("xvfb-open", "xvfb", "/usr/bin/Xvfb", 6000, _xvfb(0, "-ac")),
    Daemon("xvfb-closed", "xvfb", "/usr/bin/Xvfb", 6001, _xvfb(1)),
    Daemon("telnetd", "inetutils-telnetd", "/usr/sbin/telnetd", 2525, _telnetd),
    Daemon("ngircd", "ngircd", "/usr/sbin/ngircd", 6667, _ngircd),
    Daemon("prosody", "prosody", "/usr/bin/prosody", 5222, _prosody),
    Daemon("nats", "nats-server", "/usr/sbin/nats-server", 110, _nats),
    Daemon("kamailio", "kamailio", "/usr/sbin/kamailio", 5060, _kamailio),
    Daemon("rmiregistry", "default-jre-headless", "/usr/bin/rmiregistry", 1099, _rmiregistry),
    Daemon("nginx-h2c", "nginx", "/usr/sbin/nginx", 8081, _nginx),
    Daemon("rsyncd", "rsync", "/usr/bin/rsync", 873, _rsyncd),
)
_EXTRA_BINARIES = {"telnetd": "/usr/sbin/inetutils-inetd", "xrdp": "/usr/bin/openssl"}


def missing(daemons: Iterable[Daemon] = DAEMONS) -> list[str]:
    """The binaries these daemons need that this machine lacks, with their packages."""
    out = []
    for daemon in daemons:
        for binary in (daemon.binary, _EXTRA_BINARIES.get(daemon.name)):
            if binary and not os.access(binary, os.X_OK):
                out.append(f"{binary} (Debian package {daemon.package})")
    return out


def start(lab: netlab.Lab, daemons: Iterable[Daemon] = DAEMONS) -> dict[str, int]:
    """Start ``daemons`` in ``lab``'s server namespace; {name: port} once all listen.

    Each gets a temporary directory (configs, a KDC database, logs); :func:`cleanup`
    removes them once the lab is closed.
    """
    ports = {}
    for daemon in daemons:
        tmp = Path(tempfile.mkdtemp(prefix=f"portprobe-b-{daemon.name}-"))
        _TMPDIRS.append(tmp)
        argv = daemon.argv(tmp, daemon.port, lab.server4)
        lab.start_daemon(argv, tcp=[daemon.port], timeout=START_TIMEOUT)
        ports[daemon.name] = daemon.port
    return ports


_TMPDIRS: list[Path] = []


def cleanup() -> None:
    """Remove the temporary directories of daemons started so far (after their lab closed)."""
    while _TMPDIRS:
        shutil.rmtree(_TMPDIRS.pop(), ignore_errors=True)


async def exchange(host: str, port: int, probe: TcpProbe, timeout: float) -> Evidence | None:
    """Run one TCP probe as the prober does: connect, send its request, read (at most
    ``probe.max_reply`` bytes, within ``timeout`` seconds) until its decoder answers or the
    peer closes; the decoder's last word. Connection errors give None.
    """
    data = b""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            request = probe.request(host, port)
            if request:
                writer.write(request)
            while len(data) < probe.max_reply:
                chunk = await reader.read(probe.max_reply - len(data))
                if not chunk:
                    break
                data += chunk
                found = probe.decode(data)
                if found is not None:
                    return found
    except (TimeoutError, OSError):
        pass
    finally:
        if writer is not None:
            writer.transport.abort()
    return probe.decode(data)
