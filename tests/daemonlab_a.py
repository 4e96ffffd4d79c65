"""Real daemons from Debian's packages, started by hand inside a lab's SERVER namespace.

Rules and theory:
- Every daemon runs only in the lab's SERVER namespace (``Lab.start_daemon``), in the
  foreground, with its configuration from ``tests/daemons/<name>/`` and its data in a
  temporary directory; deleting the namespace at teardown kills whatever it forked.
- Some listen on their registered port, some on a port registered to something else
  (PostgreSQL on 2451, Redis on 3451, memcached on 9100, and BIND's DNS on 5432, the
  PostgreSQL port): a label is not evidence.
- All daemons start at once and are waited for together, so the lab costs about as
  long as its slowest daemon (RabbitMQ, a few seconds), not the sum.
- :func:`missing` names the daemons whose binaries are absent: the caller skips them
  (or, under CI, fails).

For end-to-end scans of the same lab::

    with tempfile.TemporaryDirectory() as workdir, netlab.Lab() as lab:
        running = daemonlab_a.start(lab, Path(workdir))
        for name, port in running.ports.items():
            want = daemonlab_a.DAEMONS[name]  # .service, .product, .package (its version)
            ...  # scan running.address:port from the client namespace
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import netlab
from netlab import _accepts

__all__ = ["DAEMONS", "Daemon", "Running", "missing", "start"]

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "daemons"
START_TIMEOUT = 60.0  # seconds for every daemon to listen, all together
PREPARE_TIMEOUT = 60.0  # seconds for one data directory to be made (initdb, install-db)
PG_BIN = Path("/usr/lib/postgresql")


@dataclass(frozen=True, slots=True, kw_only=True)
class Daemon:
    """One real daemon: how it is started, and what a scan of its port must find.

    ``binary``: must be installed. ``port``: the TCP port it listens on (in the SERVER
    namespace, on the server's IPv4 address). ``argv(workdir, lab)`` prepares the daemon's
    data under ``workdir`` (which it owns) and returns the command line; ``env`` is added to
    the environment. ``after``: daemons that must listen before this one starts.

    What it is, for the tests that scan it: ``probe`` (the TCP probe that identifies it),
    ``service``, ``product``, and ``package``, the Debian package whose upstream version
    the evidence's version must be ("" when the protocol gives none).
    """

    name: str
    binary: str
    port: int
    argv: Callable[[Path, netlab.Lab], list[str]]
    probe: str
    service: str
    product: str
    package: str = ""
    env: Callable[[Path], dict[str, str]] = lambda _workdir: {}
    after: tuple[str, ...] = ()


@dataclass(slots=True)
class Running:
    """What :func:`start` started: ``ports[daemon]`` is its TCP port, listening."""

    address: str
    ports: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # daemon: why it was not started


def _render(name: str, workdir: Path, **values: str | int) -> Path:
    """``tests/daemons/<name>/<file>`` with ``@KEY@`` replaced, written into ``workdir``."""
    out = workdir / "conf"
    out.mkdir(exist_ok=True)
    for source in sorted((CONFIGS / name).iterdir()):
        text = source.read_text()
        for key, value in {"WORKDIR": str(workdir), **values}.items():
            text = text.replace(f"@{key}@", str(value))
        (out / source.name).write_text(text)
    return out


def _chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
            os.chown(name, entry.pw_uid, entry.pw_gid)


def _prepare(lab: netlab.Lab, argv: list[str], what: str) -> None:
    """Run a preparation step (no network use) in the SERVER namespace; raise if it fails."""
    res = lab.run_in_server(argv, timeout=PREPARE_TIMEOUT)
    if res.returncode != 0:
        raise netlab.LabError(f"{what} failed ({res.returncode}): {res.stderr[-2000:]}")


def _pg_bin(tool: str) -> str:
    found = sorted(PG_BIN.glob(f"*/bin/{tool}"))
    return str(found[-1]) if found else f"/usr/lib/postgresql/NONE/bin/{tool}"


# --------------------------------------------------------------------------- the daemons


def _dnsmasq(workdir: Path, lab: netlab.Lab) -> list[str]:
    conf = _render("dnsmasq", workdir, ADDRESS=lab.server4, PORT=DNS_PORT)
    return ["/usr/sbin/dnsmasq", "--keep-in-foreground", f"--conf-file={conf / 'dnsmasq.conf'}"]


def _bind9(workdir: Path, lab: netlab.Lab) -> list[str]:
    conf = _render("bind9", workdir, ADDRESS=lab.server4, PORT=BIND_PORT)
    # -g: foreground, log to stderr; -4: IPv4 only (no IPv6 route in the lab anyway).
    return ["/usr/sbin/named", "-g", "-4", "-u", "root", "-c", str(conf / "named.conf")]


def _slapd(workdir: Path, lab: netlab.Lab) -> list[str]:
    conf = _render("slapd", workdir)
    return ["/usr/sbin/slapd", "-d", "0", "-f", str(conf / "slapd.conf"),
            "-h", f"ldap://{lab.server4}:{LDAP_PORT}/"]  # fmt: skip


def _postgres(workdir: Path, lab: netlab.Lab) -> list[str]:
    data = workdir / "pgdata"
    _chown(workdir, "postgres")
    os.chmod(workdir, 0o755)
    _prepare(
        lab,
        ["runuser", "-u", "postgres", "--", _pg_bin("initdb"), "--no-sync", "-A", "peer",
         "-U", "postgres", "-D", str(data)],
        "initdb",
    )  # fmt: skip
    # Only local connections are allowed (initdb's pg_hba.conf, as Debian ships it): the
    # scanner, from another host, gets "no pg_hba.conf entry", which names PostgreSQL.
    return ["runuser", "-u", "postgres", "--", _pg_bin("postgres"), "-D", str(data),
            "-p", str(PG_PORT), "-c", f"listen_addresses={lab.server4}",
            "-c", f"unix_socket_directories={workdir}", "-c", "fsync=off"]  # fmt: skip


def _mariadb(workdir: Path, lab: netlab.Lab) -> list[str]:
    conf = _render("mariadb", workdir)
    data = workdir / "data"
    _prepare(
        lab,
        ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        "mariadb-install-db",
    )  # fmt: skip
    return ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", "--user=root",
            f"--bind-address={lab.server4}", f"--port={MYSQL_PORT}",
            f"--socket={workdir / 'mysqld.sock'}", f"--pid-file={workdir / 'mysqld.pid'}",
            f"--init-file={conf / 'init.sql'}", "--skip-log-bin",
            "--innodb-buffer-pool-size=8M"]  # fmt: skip


def _memcached(_workdir: Path, lab: netlab.Lab) -> list[str]:
    return ["/usr/bin/memcached", "-u", "root", "-l", lab.server4, "-p", str(MEMCACHED_PORT),
            "-U", "0", "-m", "8"]  # fmt: skip


def _mosquitto(workdir: Path, lab: netlab.Lab) -> list[str]:
    conf = _render("mosquitto", workdir, ADDRESS=lab.server4, PORT=MQTT_PORT)
    return ["/usr/sbin/mosquitto", "-c", str(conf / "mosquitto.conf")]


def _epmd(_workdir: Path, _lab: netlab.Lab) -> list[str]:
    return ["/usr/bin/epmd", "-port", str(EPMD_PORT)]


def _rabbitmq(workdir: Path, lab: netlab.Lab) -> list[str]:
    _render("rabbitmq", workdir, ADDRESS=lab.server4, PORT=AMQP_PORT)
    return ["/usr/lib/rabbitmq/bin/rabbitmq-server"]


def _rabbitmq_env(workdir: Path) -> dict[str, str]:
    # Everything under the work directory; the node name resolves on the namespace's lo.
    return {
        "HOME": str(workdir),
        "RABBITMQ_NODENAME": "rabbit@localhost",
        "RABBITMQ_CONFIG_FILE": str(workdir / "conf" / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "conf" / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
        "RABBITMQ_LOG_BASE": str(workdir / "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_PID_FILE": str(workdir / "rabbit.pid"),
        "RABBITMQ_DIST_PORT": "25672",
        "ERL_EPMD_PORT": str(EPMD_PORT),
    }


def _redis(workdir: Path, lab: netlab.Lab) -> list[str]:
    return ["/usr/bin/redis-server", "--port", str(REDIS_PORT), "--bind", lab.server4,
            "--protected-mode", "no", "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--daemonize", "no"]  # fmt: skip


DNS_PORT = 53  # registered: domain
BIND_PORT = 5432  # registered to postgresql: BIND where PostgreSQL is expected
LDAP_PORT = 389  # registered: ldap
PG_PORT = 2451  # registered to netchat
MYSQL_PORT = 3306  # registered: mysql
MEMCACHED_PORT = 9100  # registered to hp-pdl-datastr (JetDirect)
MQTT_PORT = 1883  # registered: mqtt
EPMD_PORT = 4369  # registered: epmd
AMQP_PORT = 5672  # registered: amqp
REDIS_PORT = 3451  # registered to asam

DAEMONS: dict[str, Daemon] = {
    d.name: d
    for d in (
        Daemon(name="dnsmasq", binary="/usr/sbin/dnsmasq", port=DNS_PORT, argv=_dnsmasq,
               probe="dns-tcp", service="dns", product="dnsmasq", package="dnsmasq-base"),
        Daemon(name="bind9", binary="/usr/sbin/named", port=BIND_PORT, argv=_bind9,
               probe="dns-tcp", service="dns", product="BIND", package="bind9"),
        Daemon(name="slapd", binary="/usr/sbin/slapd", port=LDAP_PORT, argv=_slapd,
               probe="ldap", service="ldap", product="OpenLDAP"),
        Daemon(name="postgresql", binary=_pg_bin("postgres"), port=PG_PORT, argv=_postgres,
               probe="postgres", service="postgresql", product="PostgreSQL"),
        Daemon(name="mariadb", binary="/usr/sbin/mariadbd", port=MYSQL_PORT, argv=_mariadb,
               probe="greeting", service="mysql", product="MariaDB", package="mariadb-server"),
        Daemon(name="memcached", binary="/usr/bin/memcached", port=MEMCACHED_PORT,
               argv=_memcached, probe="memcached", service="memcached", product="memcached",
               package="memcached"),
        Daemon(name="mosquitto", binary="/usr/sbin/mosquitto", port=MQTT_PORT, argv=_mosquitto,
               probe="mqtt", service="mqtt", product="Mosquitto", package="mosquitto"),
        Daemon(name="epmd", binary="/usr/bin/epmd", port=EPMD_PORT, argv=_epmd, probe="epmd",
               service="epmd", product="epmd"),
        Daemon(name="rabbitmq", binary="/usr/lib/rabbitmq/bin/rabbitmq-server", port=AMQP_PORT,
               argv=_rabbitmq, env=_rabbitmq_env, after=("epmd",), probe="amqp",
               service="amqp", product="RabbitMQ", package="rabbitmq-server"),
        Daemon(name="redis", binary="/usr/bin/redis-server", port=REDIS_PORT, argv=_redis,
               probe="redis", service="redis", product="Redis", package="redis-server"),
    )
}  # fmt: skip


def missing(names: Iterable[str] = DAEMONS) -> dict[str, str]:
    """``{daemon: why}`` for the daemons among ``names`` that cannot run on this machine."""
    out = {}
    for name in names:
        daemon = DAEMONS[name]
        if not os.access(daemon.binary, os.X_OK):
            out[name] = f"{daemon.binary} not installed (see .ci/packages.d/daemons-a.txt)"
    if "postgresql" in names and not os.access(_pg_bin("initdb"), os.X_OK):
        out.setdefault("postgresql", "initdb not installed")
    if "mariadb" in names and shutil.which("mariadb-install-db") is None:
        out.setdefault("mariadb", "mariadb-install-db not installed")
    return out


def start(lab: netlab.Lab, workdir: Path, names: Iterable[str] = DAEMONS) -> Running:
    """Start the daemons ``names`` (those installed) in ``lab``; wait until all listen.

    Data goes under ``workdir`` (one subdirectory each). Raises :class:`netlab.LabError`
    if a daemon does not listen within ``START_TIMEOUT`` seconds (its log is shown).
    """
    wanted = list(names)
    running = Running(lab.server4, skipped=missing(wanted))
    pending = [DAEMONS[n] for n in wanted if n not in running.skipped]
    starting: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
    deadline = time.monotonic() + START_TIMEOUT
    os.chmod(workdir, 0o711)  # daemons that drop root (postgres) reach their own directory
    while pending or starting:
        for daemon in [d for d in pending if all(a in running.ports for a in d.after)]:
            pending.remove(daemon)
            home = Path(tempfile.mkdtemp(prefix=f"{daemon.name}-", dir=workdir))
            env = {**os.environ, **daemon.env(home)}
            proc = lab.start_daemon(daemon.argv(home, lab), env=env)
            starting[daemon.name] = (proc, lab._logs[-1])  # start_daemon's log of it
        if not starting:
            raise netlab.LabError(f"daemons wait for ones that never start: {pending}")
        for name, (proc, log) in list(starting.items()):
            daemon = DAEMONS[name]
            if lab.call_in_client(_accepts, lab.server4, daemon.port):
                running.ports[name] = daemon.port
                del starting[name]
            elif proc.poll() is not None or time.monotonic() > deadline:
                tail = netlab.log_tail(log)
                why = f"exited ({proc.returncode})" if proc.poll() is not None else "timed out"
                raise netlab.LabError(f"{name} not listening on {daemon.port}: {why}:\n{tail}")
        time.sleep(0.1)
    return running
