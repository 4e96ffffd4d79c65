"""Benchmark: what real daemons' ports speak, portprobe's evidence against ``nmap -sV``.

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/service_id.py [--runs 3] [--portprobe PATH] [--timeout SECONDS]

The lab is the suite's real-daemon lab: Debian's daemons, started by hand in one lab's
server namespace, some on their registered ports and some on ports registered to
something else. ``tests/daemonlab_c.py`` (sshd, nginx, lighttpd, vsftpd, Exim, Dovecot,
tinyproxy, Xvnc, dnsmasq, chronyd, snmpd; TCP and UDP) serves on 198.18.0.3, and, when
those files are present, ``tests/daemonlab_a.py`` and ``tests/daemonlab_b.py`` serve on
198.18.0.2 (they bind the lab's first address; lab C's DNS on 53 and HTTP on 2451 would
collide with theirs there). Daemons whose packages are not installed are left out, and
the report says which. Each run, interleaved, scans both addresses with every lab port,
the same command line for both tools::

    nmap -sV -p T:...,U:... -sT [-sU] -n -Pn -oX out.xml 198.18.0.2 198.18.0.3
    portprobe 198.18.0.2 198.18.0.3 -p T:...,U:... -sT [-sU] -q -o out.json

Only the daemons' own (address, port, protocol) count; other ports either tool lists (a
daemon that binds every address shows up on both) are ignored. Identified means:

- portprobe: its JSON's ``evidence`` is the daemon's service (what the lab module says);
- nmap: its ``<service>`` was found by probing (``method="probed"``), not taken from its
  port table, and is neither ``tcpwrapped`` nor ``unknown``. nmap's names are printed as
  they are, with product and version, for comparison.

Pass: in every run portprobe identifies at least as many ports as nmap -sV, and
median(portprobe) / median(nmap -sV) <= 0.1. Exit status 0 on pass.
"""

from __future__ import annotations

import importlib
import json
import statistics
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from common import REPO, BenchSummary, Lab, bench_args, find_nmap, find_portprobe, timed_run

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the lab modules read scanner's payloads
import daemonlab_c  # tests/ is on the path once common is imported

NAME = "service_id"
TARGET_RATIO = 0.1
LAB_C_HOST = 1  # lab C's daemons listen on lab.extra4[0], 198.18.0.3

#: daemonlab_b's daemons do not say what they speak: the evidence service each must get.
#: nginx's h2c port is "http": portprobe ranks HTTP/2 as HTTP (scanner.evidence), and its
#: detail says HTTP/2.
B_SERVICES = {
    "smbd": "smb", "krb5kdc": "kerberos", "xrdp": "rdp", "xvfb-open": "x11",
    "xvfb-closed": "x11", "telnetd": "telnet", "ngircd": "irc", "prosody": "xmpp",
    "nats": "nats", "kamailio": "sip", "rmiregistry": "java-rmi", "nginx-h2c": "http",
    "rsyncd": "rsync",
}  # fmt: skip

Key = tuple[str, int, str]  # (address, port, protocol)


@dataclass(frozen=True, slots=True)
class Expected:
    """One daemon port of the lab and the evidence service portprobe must give it."""

    daemon: str
    service: str


@dataclass(frozen=True, slots=True)
class Seen:
    """What one tool reported for a port: its service name, product/version text (or, for
    portprobe without a product, the evidence's detail), whether that identifies the port,
    and whether a product was named."""

    service: str
    detail: str
    identified: bool
    product: bool = False


def _optional(name: str) -> ModuleType | None:
    """The lab module ``name`` when this checkout has it (other areas' labs come and go)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def start_labs(lab: Lab, workdir: Path) -> tuple[dict[Key, Expected], list[str]]:
    """Start every installed daemon of labs A, B and C; (expected ports, notes on skips)."""
    expected: dict[Key, Expected] = {}
    notes: list[str] = []
    lab_a, lab_b = _optional("daemonlab_a"), _optional("daemonlab_b")
    if lab_a is not None:
        (workdir / "a").mkdir(mode=0o711)
        running = lab_a.start(lab, workdir / "a")
        for name, port in running.ports.items():
            expected[(running.address, port, "tcp")] = Expected(name, lab_a.DAEMONS[name].service)
        notes += [f"lab A: {name} left out: {why}" for name, why in running.skipped.items()]
    else:
        notes.append("lab A: tests/daemonlab_a.py absent")
    if lab_b is not None:
        absent = lab_b.missing()
        daemons = [d for d in lab_b.DAEMONS if not lab_b.missing([d])]
        for name, port in lab_b.start(lab, daemons).items():
            expected[(lab.server4, port, "tcp")] = Expected(name, B_SERVICES.get(name, "?"))
        notes += [f"lab B: missing {binary}" for binary in absent]
    else:
        notes.append("lab B: tests/daemonlab_b.py absent")
    (workdir / "c").mkdir(mode=0o711)
    running_c = daemonlab_c.start(lab, workdir / "c", address=lab.extra4[0])
    for name in running_c.daemons:
        for port in daemonlab_c.DAEMONS[name].ports:
            key = (running_c.address, port.number, port.protocol)
            expected[key] = Expected(name, port.service)
    notes += [f"lab C: {name} left out: {why}" for name, why in running_c.skipped.items()]
    return expected, notes


def parse_nmap(path: Path) -> dict[Key, Seen]:
    """{key: what nmap saw} from an nmap ``-oX`` file (empty when there is none)."""
    seen: dict[Key, Seen] = {}
    if not path.exists():
        return seen
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return seen
    for host in root.iter("host"):
        address = next((a.get("addr", "") for a in host.iter("address")), "")
        for port in host.iter("port"):
            service = port.find("service")
            key = (address, int(port.get("portid", "0")), port.get("protocol", ""))
            if service is None:
                seen[key] = Seen("", "", False)
                continue
            name = service.get("name", "")
            if service.get("tunnel") == "ssl":
                name = f"ssl/{name}"
            probed = service.get("method") == "probed"
            detail = " ".join(v for v in (service.get("product"), service.get("version")) if v)
            identified = probed and name not in ("", "tcpwrapped", "unknown")
            product = identified and bool(service.get("product"))
            seen[key] = Seen(name if probed else f"{name}?", detail, identified, product)
    return seen


def parse_portprobe(path: Path, expected: dict[Key, Expected]) -> dict[Key, Seen]:
    """{key: what portprobe saw} from its JSON report (empty when there is none)."""
    try:
        rows = json.loads(path.read_text()).get("results", [])
    except (OSError, ValueError):
        return {}
    seen: dict[Key, Seen] = {}
    for row in rows:
        key = (row["host"], int(row["port"]), row["protocol"])
        service = row.get("evidence", "")
        detail = " ".join(v for v in (row.get("product"), row.get("version")) if v)
        want = expected.get(key)
        seen[key] = Seen(
            service, detail or row.get("evidence_detail", ""),
            bool(service) and want is not None and service == want.service,
            bool(row.get("product")),
        )  # fmt: skip
    return seen


def count(seen: dict[Key, Seen], expected: dict[Key, Expected], *, product: bool = False) -> int:
    """How many expected ports ``seen`` identifies (with ``product``: and names a product)."""
    return sum(
        1
        for key in expected
        if key in seen and seen[key].identified and (seen[key].product or not product)
    )


def _times(name: str, seconds: Sequence[float]) -> str:
    return (
        f"  {name:<10} median {statistics.median(seconds):8.2f} s   min {min(seconds):8.2f} s"
        f"   max {max(seconds):8.2f} s   ({len(seconds)} runs)"
    )


def _cell(seen: Seen | None) -> str:
    if seen is None:
        return "- (not listed)"
    mark = "" if seen.identified else " [no]"
    text = (seen.service or "-") + (f" ({seen.detail})" if seen.detail else "")
    return text + mark


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    args = bench_args(__doc__.splitlines()[0], default_runs=3).parse_args(argv)
    portprobe, nmap = find_portprobe(args.portprobe), find_nmap()
    times: dict[str, list[float]] = {"nmap -sV": [], "portprobe": []}
    seen: dict[str, list[dict[Key, Seen]]] = {name: [] for name in times}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="portprobe-bench-")))
        lab_b = _optional("daemonlab_b")
        if lab_b is not None:
            stack.callback(lab_b.cleanup)  # its temporary directories, once the lab is closed
        lab = stack.enter_context(Lab(extra_hosts=LAB_C_HOST))
        tmp.chmod(0o711)  # daemons that drop root (PostgreSQL) reach their directories
        (tmp / "daemons").mkdir(mode=0o711)
        expected, notes = start_labs(lab, tmp / "daemons")
        hosts = sorted({address for address, _, _ in expected})
        assert set(hosts) <= {lab.server4, *lab.extra4}, hosts  # only the lab's addresses
        ports = daemonlab_c.scan_args((port, proto) for _, port, proto in expected)
        print(
            f"== {NAME}: {len(expected)} daemon ports on {', '.join(hosts)}, {args.runs} runs,"
            f" portprobe = {portprobe} =="
        )
        for note in notes:
            print(f"  note: {note}")
        for i in range(1, args.runs + 1):
            xml_path, json_path = tmp / f"nmap-{i}.xml", tmp / f"pp-{i}.json"
            t_nmap = timed_run(
                lab,
                [nmap, "-sV", *ports, "-n", "-Pn", "-oX", str(xml_path), *hosts],
                timeout=args.timeout,
            )
            t_pp = timed_run(
                lab, [portprobe, *hosts, *ports, "-q", "-o", str(json_path)],
                timeout=args.timeout,
            )  # fmt: skip
            for name, timed, found in (
                ("nmap -sV", t_nmap, parse_nmap(xml_path)),
                ("portprobe", t_pp, parse_portprobe(json_path, expected)),
            ):
                times[name].append(timed.seconds)
                seen[name].append(found)
            print(
                f"  run {i}/{args.runs}: nmap -sV {t_nmap.seconds:8.2f} s"
                f" ({count(seen['nmap -sV'][-1], expected)} identified)   portprobe"
                f" {t_pp.seconds:6.2f} s ({count(seen['portprobe'][-1], expected)} identified)"
            )

    print(f"\n== {NAME}: results ==")
    for name, secs in times.items():
        print(_times(name, secs))
    ratio = statistics.median(times["portprobe"]) / statistics.median(times["nmap -sV"])
    ratio_ok = ratio <= TARGET_RATIO
    print(
        f"  ratio portprobe/nmap -sV (median): {ratio:.3f}   target <= {TARGET_RATIO:g}:"
        f" {'met' if ratio_ok else 'NOT met'}"
    )
    print("\n  identifications (run 1; [no]: not identified, or for portprobe not the service):")
    print(f"  {'port':<24} {'daemon':<13} {'expected':<10} {'portprobe':<44} nmap -sV")
    for key in sorted(expected, key=lambda k: (k[0], k[2], k[1])):
        where = f"{key[0]}:{key[1]}/{key[2]}"
        want = expected[key]
        pp_cell = _cell(seen["portprobe"][0].get(key))
        nmap_cell = _cell(seen["nmap -sV"][0].get(key))
        print(f"  {where:<24} {want.daemon:<13} {want.service:<10} {pp_cell:<44.44} {nmap_cell}")
    counts = {name: [count(s, expected) for s in runs] for name, runs in seen.items()}
    for name, per_run in counts.items():
        print(f"  {name}: identified {', '.join(map(str, per_run))} of {len(expected)} (per run)")
    products = {name: count(runs[0], expected, product=True) for name, runs in seen.items()}
    print(
        f"  with a product named (run 1, information): portprobe {products['portprobe']},"
        f" nmap -sV {products['nmap -sV']}"
    )
    ids_ok = all(p >= n for p, n in zip(counts["portprobe"], counts["nmap -sV"], strict=True))
    passed = ids_ok and ratio_ok and args.runs > 0
    print(
        f"  RESULT: {'PASS' if passed else 'FAIL'} (portprobe identifies at least as many as"
        f" nmap -sV in every run: {'yes' if ids_ok else 'no'}; ratio"
        f" {'met' if ratio_ok else 'NOT met'})"
    )
    return BenchSummary(
        name=NAME,
        result=(
            f"portprobe {statistics.median(times['portprobe']):.2f} s / nmap -sV "
            f"{statistics.median(times['nmap -sV']):.2f} s = {ratio:.3f}; identified "
            f"{min(counts['portprobe'])} vs {max(counts['nmap -sV'])} of {len(expected)}"
        ),
        target=f"ratio <= {TARGET_RATIO:g}, identifies at least as many as nmap -sV",
        passed=passed,
    )


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    return 0 if run().passed else 1


if __name__ == "__main__":
    sys.exit(main())
