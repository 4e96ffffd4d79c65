"""Network-namespace test lab for portprobe.

``Lab`` builds, with iproute2 and nftables, a CLIENT namespace (where the
scanner runs; no default route) and a SERVER namespace (fake services), joined
by:

* a clean veth path: client 198.18.0.1 / 2001:db8::1, server 198.18.0.2 /
  2001:db8::2, plus optional extra server IPv4 addresses 198.18.0.3.. ;
* optionally a delayed/lossy path: two TUN devices joined by
  ``lab_tunfwd.py`` (``delay_ms`` each way), client 198.18.1.1 /
  2001:db8:1::1, server 198.18.1.2 / 2001:db8:1::2, with ``loss_pct`` random
  drop each way applied by nftables in the SERVER namespace.

Traffic never leaves the two namespaces: only 198.18.0.0/15 and 2001:db8::/32
are used, and no default route is ever added.

Names: every lab uses ``pp<pid>x<ctr>`` as its base (``<ctr>`` is 3 base-36
digits); namespaces are ``<base>c``/``<base>s`` and interfaces
``<base>vc``/``vs``/``tc``/``ts`` (<= 15 chars).  A marker file
``/run/portprobe-lab/<base>.json`` records the owning pid and its start time,
so ``sweep_stale()`` only removes labs whose owner is dead, and never touches
any other namespace (such as the lead's ppdevc/ppdevs).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from lab_tunfwd import enter_netns

__all__ = [
    "CLIENT4",
    "CLIENT6",
    "DELAYED_CLIENT4",
    "DELAYED_CLIENT6",
    "Lab",
    "LabError",
    "log_tail",
    "missing_prerequisites",
    "sweep_stale",
]

HERE = Path(__file__).resolve().parent
SERVICES_SCRIPT = HERE / "lab_services.py"
TUNFWD_SCRIPT = HERE / "lab_tunfwd.py"

NETNS_DIR = Path("/run/netns")
MARKER_DIR = Path("/run/portprobe-lab")
# Our names only: "pp" + decimal pid + "x" + 3 base-36 chars + role.  "ppdevc"
# and friends can never match, and PROTECTED_NS guards them explicitly anyway.
_BASE_RE = re.compile(r"^pp(\d{1,7})x([0-9a-z]{3})$")
_NS_RE = re.compile(r"^(pp\d{1,7}x[0-9a-z]{3})[cs]$")
_LINK_RE = re.compile(r"^(pp\d{1,7}x[0-9a-z]{3})(?:vc|vs|tc|ts)$")
PROTECTED_NS = frozenset({"ppdevc", "ppdevs"})

CLIENT4, CLIENT6 = "198.18.0.1", "2001:db8::1"
SERVER4, SERVER6 = "198.18.0.2", "2001:db8::2"
DELAYED_CLIENT4, DELAYED_CLIENT6 = "198.18.1.1", "2001:db8:1::1"
DELAYED_SERVER4, DELAYED_SERVER6 = "198.18.1.2", "2001:db8:1::2"
MAX_EXTRA_HOSTS = 200
# The TUN ring holds txqueuelen packets until the forwarder reads them; the
# default 500 would add burst loss on top of the configured loss_pct.
TUN_TXQUEUELEN = 10000

TCP_KINDS = frozenset(
    {"open", "banner", "http", "silent", "smtp", "vsftpd", "mysql", "redis", "https", "tls"}
) | frozenset(
    {"tarpit", "endless", "garbage", "ansi", "ansi-http", "formula", "formula-http", "rst",
     "halfopen", "noread"}
)  # hostile kinds, see lab_services.py  # fmt: skip
TLS_KINDS = frozenset({"https", "tls"})  # need the openssl CLI (lab_services makes a cert)
UDP_KINDS = frozenset({"dns", "ntp", "echo", "silent", "snmp", "memcached", "sip"})

CMD_TIMEOUT = 10.0  # every iproute2/nft call
READY_TIMEOUT = 10.0  # services / forwarder start-up
STOP_GRACE = 2.0  # SIGTERM -> SIGKILL

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_counter_lock = threading.Lock()
_next_counter = 0
_live: set[Lab] = set()  # strong refs: an un-closed lab must reach atexit

T = TypeVar("T")


class LabError(RuntimeError):
    """The lab could not be built (or a lab command failed)."""


# --------------------------------------------------------------------------- helpers


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin", "/usr/bin") if os.access(p := f"{d}/{name}", os.X_OK)),
        None,
    )


def missing_prerequisites() -> list[str]:
    """Return what the lab needs but this machine lacks (empty list = ready)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root privileges")
    for tool in ("ip", "nft"):
        if _which(tool) is None:
            missing.append(f"'{tool}' executable")
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun")
    try:
        import dns.message  # noqa: F401
    except ImportError:
        missing.append("dnspython (pip install dnspython)")
    return missing


def log_tail(log: IO[bytes], limit: int = 3000) -> str:
    """The last ``limit`` bytes of a daemon's or helper's log file, as text."""
    log.seek(0)
    return log.read()[-limit:].decode(errors="replace")


def _ip() -> str:
    path = _which("ip")
    if path is None:
        raise LabError("iproute2 'ip' not found")
    return path


def _cmd(
    argv: list[str], *, input: str | None = None, timeout: float = CMD_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a lab management command with a timeout; raise LabError on failure."""
    try:
        res = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    except OSError as exc:
        raise LabError(f"cannot run {argv[0]}: {exc}") from exc
    if check and res.returncode != 0:
        raise LabError(f"command failed ({res.returncode}): {' '.join(argv)}\n{res.stderr.strip()}")
    return res


def _ip_batch(ns: str, commands: list[str]) -> None:
    """Run several ``ip`` commands inside ``ns`` with a single process."""
    if commands:
        _cmd([_ip(), "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n")


def _accepts(address: str, port: int) -> bool:
    """True when a TCP connect to ``address``:``port`` succeeds within 0.5 s."""
    import socket

    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time (clock ticks) of ``pid``, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22 of stat(5)
    except (IndexError, ValueError):
        return None


def _owner_alive(pid: int, start: int | None) -> bool:
    """True if ``pid`` runs and (when known) is the same process that started then."""
    now = _proc_start_time(pid)
    if now is None:
        return False
    return start is None or now == start


def _setns(path: str | os.PathLike[str]) -> None:
    """Move the calling *thread* into the network namespace bound at ``path``.

    The forwarder script needs the same call on its own, so it owns the one copy.
    """
    enter_netns(os.fspath(path))


def _ns_exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def _ns_pids(ns: str) -> list[int]:
    if not _ns_exists(ns):
        return []
    try:
        res = _cmd([_ip(), "netns", "pids", ns], check=False)
    except LabError:
        return []
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _kill_ns_processes(ns: str) -> None:
    """SIGKILL whatever still runs inside one of *our* lab namespaces."""
    own = os.getpid()
    for pid in _ns_pids(ns):
        if pid != own:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _delete_ns(ns: str) -> None:
    if ns in PROTECTED_NS or not _NS_RE.match(ns):
        return  # never touch a namespace that is not ours
    if _ns_exists(ns):
        _kill_ns_processes(ns)
        with contextlib.suppress(LabError):
            _cmd([_ip(), "netns", "del", ns], check=False)


def _root_links() -> list[str]:
    try:
        res = _cmd([_ip(), "-o", "link", "show"], check=False)
    except LabError:
        return []
    names = []
    for line in res.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def _stop_process(proc: subprocess.Popen[Any] | None, *, group: bool) -> None:
    """Close our end of its stdin, SIGTERM (its group), then SIGKILL after a grace."""
    if proc is None:
        return
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    if proc.poll() is None:
        _signal(proc, signal.SIGTERM, group)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL, group)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE)
    elif group:
        _signal(proc, signal.SIGKILL, group)  # leader gone; reap any stragglers
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _signal(proc: subprocess.Popen[Any], sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)  # pid == pgid: started with start_new_session
        else:
            proc.send_signal(sig)


# --------------------------------------------------------------------------- sweeping


def _read_marker(base: str) -> dict[str, Any] | None:
    try:
        data = json.loads((MARKER_DIR / f"{base}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _base_owner_dead(base: str) -> bool:
    m = _BASE_RE.match(base)
    if not m:
        return False
    marker = _read_marker(base)
    start = marker.get("start") if marker else None
    return not _owner_alive(int(m.group(1)), start if isinstance(start, int) else None)


def sweep_stale() -> list[str]:
    """Delete leftovers of labs whose owning process is dead; return what was removed.

    Only names matching this module's pattern (``pp<pid>x<ctr>c|s``) are
    considered, and only when the pid recorded in the name (checked against
    the start time in the marker file, to survive pid reuse) is gone.  Never
    touches ppdevc/ppdevs or any other namespace.
    """
    removed: list[str] = []
    try:
        ns_names = sorted(os.listdir(NETNS_DIR))
    except OSError:
        ns_names = []
    dead: dict[str, bool] = {}
    for ns in ns_names:
        m = _NS_RE.match(ns)
        if ns in PROTECTED_NS or not m:
            continue
        base = m.group(1)
        if dead.setdefault(base, _base_owner_dead(base)):
            _delete_ns(ns)
            removed.append(ns)
    # Root-namespace links only exist if a lab died mid-setup in an odd way.
    for link in _root_links():
        m = _LINK_RE.match(link)
        if m and dead.setdefault(m.group(1), _base_owner_dead(m.group(1))):
            with contextlib.suppress(LabError):
                _cmd([_ip(), "link", "del", link], check=False)
                removed.append(link)
    try:
        markers = list(MARKER_DIR.glob("pp*.json"))
    except OSError:
        markers = []
    for marker in markers:
        base = marker.stem
        if _BASE_RE.match(base) and dead.setdefault(base, _base_owner_dead(base)):
            with contextlib.suppress(OSError):
                marker.unlink()
    return removed


def _reserve_base() -> str:
    """Pick an unused ``pp<pid>x<ctr>`` base and claim it with an O_EXCL marker file.

    The marker makes names unique even if this module is imported twice (as
    ``netlab`` and ``tests.netlab``) in one process.
    """
    global _next_counter
    MARKER_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    pid = os.getpid()
    payload = json.dumps({"pid": pid, "start": _proc_start_time(pid), "created": time.time()})
    with _counter_lock:
        for _ in range(36**3):
            ctr = _next_counter % 36**3
            _next_counter += 1
            base = f"pp{pid}x{_base36(ctr)}"
            if _ns_exists(base + "c") or _ns_exists(base + "s"):
                continue
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
                fd = os.open(MARKER_DIR / f"{base}.json", flags, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(payload)
            return base
    raise LabError("no free lab name")


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "".join(digits[(n // 36**i) % 36] for i in (2, 1, 0))


@atexit.register
def _close_all_labs() -> None:
    for lab in list(_live):
        with contextlib.suppress(Exception):
            lab.close()


# --------------------------------------------------------------------------- the lab


class Lab:
    """A two-namespace network lab; use as a context manager.

    Attributes:
        client_ns / server_ns: namespace names.
        server4 / server6: server addresses on the clean veth path.
        delayed4 / delayed6: server addresses on the delayed/lossy TUN path,
            or None when ``delay_ms == 0 and loss_pct == 0`` (no TUN path).
        extra4: the extra server IPv4 addresses (``extra_hosts``).
        client4 / client6 (and delayed_client4/6): the client's addresses.
    """

    server4: str = SERVER4
    server6: str = SERVER6
    client4: str = CLIENT4
    client6: str = CLIENT6

    def __init__(
        self,
        *,
        tcp: Mapping[int, str] | None = None,
        udp: Mapping[int, str] | None = None,
        filtered_tcp: Iterable[int] = (),
        filtered_udp: Iterable[int] = (),
        delay_ms: float = 0.0,
        loss_pct: float = 0.0,
        extra_hosts: int = 0,
        banner: str | None = None,
    ) -> None:
        """Validate the configuration and reserve names; nothing is built until __enter__."""
        self.tcp = {int(p): k for p, k in (tcp or {}).items()}
        self.udp = {int(p): k for p, k in (udp or {}).items()}
        self.filtered_tcp = sorted({int(p) for p in filtered_tcp})
        self.filtered_udp = sorted({int(p) for p in filtered_udp})
        for proto, mapping, kinds in (("tcp", self.tcp, TCP_KINDS), ("udp", self.udp, UDP_KINDS)):
            for port, kind in mapping.items():
                if kind not in kinds:
                    raise ValueError(
                        f"unknown {proto} service kind {kind!r} (want one of {sorted(kinds)})"
                    )
                if not 0 < port < 65536:
                    raise ValueError(f"bad {proto} port {port}")
        for port in (*self.filtered_tcp, *self.filtered_udp):
            if not 0 < port < 65536:
                raise ValueError(f"bad filtered port {port}")
        if delay_ms < 0 or not 0 <= loss_pct <= 100:
            raise ValueError("delay_ms must be >= 0 and 0 <= loss_pct <= 100")
        if not 0 <= extra_hosts <= MAX_EXTRA_HOSTS:
            raise ValueError(f"extra_hosts must be in 0..{MAX_EXTRA_HOSTS}")
        self.delay_ms = float(delay_ms)
        self.loss_pct = float(loss_pct)
        self.banner = banner

        self.has_delayed_path = self.delay_ms > 0 or self.loss_pct > 0
        self.delayed4: str | None = DELAYED_SERVER4 if self.has_delayed_path else None
        self.delayed6: str | None = DELAYED_SERVER6 if self.has_delayed_path else None
        self.delayed_client4: str | None = DELAYED_CLIENT4 if self.has_delayed_path else None
        self.delayed_client6: str | None = DELAYED_CLIENT6 if self.has_delayed_path else None
        self.extra4: list[str] = [f"198.18.0.{3 + i}" for i in range(extra_hosts)]

        missing = missing_prerequisites()
        if TLS_KINDS & set(self.tcp.values()) and _which("openssl") is None:
            missing.append("'openssl' executable (for the TLS kinds' certificate)")
        if missing:
            raise LabError("netns lab unavailable, missing: " + ", ".join(missing))
        sweep_stale()
        self._base = _reserve_base()
        self.client_ns: str = self._base + "c"
        self.server_ns: str = self._base + "s"
        self.client_veth = self._base + "vc"
        self.server_veth = self._base + "vs"
        self.client_tun = self._base + "tc"
        self.server_tun = self._base + "ts"

        self._lock = threading.Lock()
        self._entered = False
        self._closed = False
        self._services: subprocess.Popen[bytes] | None = None
        self._forwarder: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        self._popens: list[subprocess.Popen[Any]] = []
        self.setup_seconds: float | None = None
        self.teardown_seconds: float | None = None
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Lab {self.client_ns}/{self.server_ns} delay={self.delay_ms} loss={self.loss_pct}>"

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> Lab:
        """Build the namespaces, links, firewall rules and services."""
        with self._lock:
            if self._entered or self._closed:
                raise LabError("a Lab can only be entered once")
            self._entered = True
        t0 = time.monotonic()
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - t0
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Tear everything down (exceptions from the body propagate)."""
        self.close()

    def _setup(self) -> None:
        ip = _ip()
        _cmd([ip, "netns", "add", self.client_ns])
        _cmd([ip, "netns", "add", self.server_ns])
        # Created directly inside the namespaces: nothing ever appears in the
        # root namespace, so parallel labs cannot collide there.
        _cmd(
            [ip, "link", "add", "name", self.client_veth, "netns", self.client_ns,
             "type", "veth", "peer", "name", self.server_veth, "netns", self.server_ns]
        )  # fmt: skip
        _ip_batch(
            self.client_ns,
            [
                "link set lo up",
                f"link set {self.client_veth} up",
                f"addr add {CLIENT4}/24 dev {self.client_veth}",
                f"addr add {CLIENT6}/64 dev {self.client_veth} nodad",
            ],
        )
        _ip_batch(
            self.server_ns,
            [
                "link set lo up",
                f"link set {self.server_veth} up",
                f"addr add {SERVER4}/24 dev {self.server_veth}",
                f"addr add {SERVER6}/64 dev {self.server_veth} nodad",
                *(f"addr add {a}/24 dev {self.server_veth}" for a in self.extra4),
            ],
        )

        # Start the forwarder and the services in parallel: python start-up
        # dominates the lab's setup time.
        if self.has_delayed_path:
            self._forwarder = self._spawn(
                [sys.executable, str(TUNFWD_SCRIPT),
                 "--a-netns", str(NETNS_DIR / self.client_ns), "--a-name", self.client_tun,
                 "--b-netns", str(NETNS_DIR / self.server_ns), "--b-name", self.server_tun,
                 "--delay-ms", repr(self.delay_ms), "--watch-stdin"]
            )  # fmt: skip
        spec = {
            "tcp": {str(p): k for p, k in self.tcp.items()},
            "udp": {str(p): k for p, k in self.udp.items()},
            "banner": self.banner,
        }
        self._services = self._spawn(
            [ip, "netns", "exec", self.server_ns, sys.executable, str(SERVICES_SCRIPT),
             "--spec", json.dumps(spec), "--watch-stdin"]
        )  # fmt: skip

        deadline = time.monotonic() + READY_TIMEOUT
        if self._forwarder is not None:
            self._wait_ready(self._forwarder, "TUN forwarder", deadline)
            _ip_batch(
                self.client_ns,
                [
                    f"link set {self.client_tun} txqueuelen {TUN_TXQUEUELEN} up",
                    f"addr add {DELAYED_CLIENT4} peer {DELAYED_SERVER4} dev {self.client_tun}",
                    f"addr add {DELAYED_CLIENT6} peer {DELAYED_SERVER6} dev {self.client_tun}"
                    " nodad",
                ],
            )
            _ip_batch(
                self.server_ns,
                [
                    f"link set {self.server_tun} txqueuelen {TUN_TXQUEUELEN} up",
                    f"addr add {DELAYED_SERVER4} peer {DELAYED_CLIENT4} dev {self.server_tun}",
                    f"addr add {DELAYED_SERVER6} peer {DELAYED_CLIENT6} dev {self.server_tun}"
                    " nodad",
                ],
            )
        ruleset = self._nft_ruleset()
        if ruleset:
            nft = _which("nft") or "nft"
            _cmd([ip, "netns", "exec", self.server_ns, nft, "-f", "-"], input=ruleset)
        self._wait_ready(self._services, "lab services", deadline)

    def _nft_ruleset(self) -> str:
        """nftables rules for the SERVER namespace (filtered ports, path loss)."""
        rules_in: list[str] = []
        rules_out: list[str] = []
        if self.has_delayed_path and self.loss_pct > 0:
            # numgen mod 10000 gives 0.01 % resolution for fractional loss_pct.
            n = round(self.loss_pct * 100)
            rules_in.append(f'iifname "{self.server_tun}" numgen random mod 10000 < {n} drop')
            rules_out.append(f'oifname "{self.server_tun}" numgen random mod 10000 < {n} drop')
        if self.filtered_tcp:
            rules_in.append(f"tcp dport {{ {', '.join(map(str, self.filtered_tcp))} }} drop")
        if self.filtered_udp:
            rules_in.append(f"udp dport {{ {', '.join(map(str, self.filtered_udp))} }} drop")
        if not rules_in:
            return ""
        body_in = "\n".join(f"    {r}" for r in rules_in)
        body_out = "\n".join(f"    {r}" for r in rules_out)
        return (
            "table inet portprobe_lab {\n"
            "  chain input {\n    type filter hook input priority 0; policy accept;\n"
            f"{body_in}\n  }}\n"
            "  chain output {\n    type filter hook output priority 0; policy accept;\n"
            f"{body_out}\n  }}\n"
            "}\n"
        )

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start a lab helper in its own process group, stdin a lifeline pipe."""
        # Kept open for the lab's lifetime (closed in close()), hence no `with`.
        log = tempfile.TemporaryFile(prefix="portprobe-lab-")  # noqa: SIM115
        self._logs.append(log)
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes], what: str, deadline: float) -> None:
        """Wait (bounded) for a READY line from ``proc``."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LabError(f"{what} not ready after {READY_TIMEOUT}s{self._log_tail(proc)}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(STOP_GRACE)
                raise LabError(
                    f"{what} exited with {proc.returncode} before READY{self._log_tail(proc)}"
                )
            buf += chunk
            if any(line.startswith(b"READY") for line in buf.splitlines()):
                return

    def _log_tail(self, proc: subprocess.Popen[bytes]) -> str:
        idx = 0 if proc is self._forwarder else -1
        with contextlib.suppress(Exception):
            text = log_tail(self._logs[idx], 4000).strip()
            return f":\n{text}" if text else ""
        return ""

    def close(self) -> None:
        """Tear the lab down; idempotent, safe after a half-finished setup."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        t0 = time.monotonic()
        for proc in self._popens:
            _stop_process(proc, group=False)
        _stop_process(self._services, group=True)
        _stop_process(self._forwarder, group=True)
        for ns in (self.client_ns, self.server_ns):
            with contextlib.suppress(Exception):
                _delete_ns(ns)
        with contextlib.suppress(Exception):
            for link in _root_links():
                m = _LINK_RE.match(link)
                if m and m.group(1) == self._base:
                    _cmd([_ip(), "link", "del", link], check=False)
        for log in self._logs:
            with contextlib.suppress(OSError):
                log.close()
        with contextlib.suppress(OSError):
            (MARKER_DIR / f"{self._base}.json").unlink()
        _live.discard(self)
        self.teardown_seconds = time.monotonic() - t0

    @property
    def closed(self) -> bool:
        """True once close() has run."""
        return self._closed

    # ---------------------------------------------------------------- running things

    def _require_running(self) -> None:
        if not self._entered or self._closed:
            raise LabError("the lab is not running (use it inside `with Lab(...) as lab:`)")

    def _ns_argv(self, argv: list[str]) -> list[str]:
        self._require_running()
        return [_ip(), "netns", "exec", self.client_ns, *argv]

    def run(
        self,
        argv: list[str],
        *,
        timeout: float = 120,
        check: bool = False,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the CLIENT namespace; stdout/stderr captured as text.

        The command gets its own process group, which is killed as a whole on
        timeout (then subprocess.TimeoutExpired is raised).  stdin is
        ``input`` or /dev/null.  A custom ``env`` should contain PATH: it is
        what ``ip netns exec`` uses to find ``argv[0]``.
        """
        cmd = self._ns_argv(list(argv))
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL, group=True)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(
                cmd, timeout, out.decode(errors="replace"), err.decode(errors="replace")
            ) from None
        except BaseException:
            _signal(proc, signal.SIGKILL, group=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE)
            raise
        res = subprocess.CompletedProcess(
            cmd, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )
        if check:
            res.check_returncode()
        return res

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the CLIENT namespace (Popen keyword arguments pass through).

        ``ip netns exec`` execs the command, so ``proc.pid`` is the command
        itself and signals reach it directly.  Still-running processes are
        killed at teardown.
        """
        proc = subprocess.Popen(self._ns_argv(list(argv)), **kw)
        self._popens.append(proc)
        return proc

    def call_in_client(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a fresh thread inside the CLIENT namespace.

        setns(2) only moves the calling thread, so the caller's namespace is
        untouched.  Returns fn's result or re-raises its exception.
        """
        self._require_running()
        ns_path = NETNS_DIR / self.client_ns
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                _setns(ns_path)
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller
                outcome["error"] = exc

        thread = threading.Thread(target=target, name=f"netns-{self.client_ns}", daemon=True)
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]  # type: ignore[no-any-return]

    def start_daemon(
        self,
        argv: list[str],
        *,
        tcp: Iterable[int] = (),
        address: str | None = None,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a real daemon inside the SERVER namespace; wait until its ``tcp`` ports listen.

        ``argv`` runs as ``ip netns exec SERVER argv`` in its own process group, its
        output kept in a log (shown if it fails to start). Readiness: each port in ``tcp``
        accepts a connection from the CLIENT namespace to ``address`` (default: the
        server's IPv4 address), within ``timeout`` seconds, else :class:`LabError`. A daemon
        that forks into the background is still stopped at teardown: deleting the
        namespace kills every process in it.
        """
        self._require_running()
        log = tempfile.TemporaryFile(prefix="portprobe-daemon-")  # noqa: SIM115
        self._logs.append(log)
        proc = subprocess.Popen(
            [_ip(), "netns", "exec", self.server_ns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        self._popens.append(proc)
        target = address or self.server4
        deadline = time.monotonic() + timeout
        for port in tcp:
            while not self.call_in_client(_accepts, target, port):
                if time.monotonic() > deadline:
                    tail = log_tail(log)
                    raise LabError(f"{argv[0]} not listening on {port} after {timeout}s:\n{tail}")
                time.sleep(0.1)
        return proc

    def run_in_server(
        self, argv: list[str], *, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a (diagnostic) command inside the SERVER namespace, e.g. ``nft list ruleset``."""
        self._require_running()
        return _cmd([_ip(), "netns", "exec", self.server_ns, *argv], timeout=timeout, check=False)
