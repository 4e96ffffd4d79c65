"""Benchmark: what open ports speak, portprobe's evidence against ``nmap -sV``.

Run from the repository root, as root (the lab needs network namespaces)::

    sudo python3 bench/service_id.py [--runs 3] [--portprobe PATH] [--timeout SECONDS]

The lab (``tests/netlab.py``) serves on 198.18.0.2: 22 (an OpenSSH banner), 80 and 2451
(HTTP; 2451 is registered as "netchat"), 3451 (silent: accepts, never speaks) and 8443
(HTTPS with a self-signed certificate, nginx-style 400 to plain HTTP). Each run, interleaved,
is::

    nmap -sV -p 22,80,2451,3451,8443 -n -Pn -oX out.xml 198.18.0.2
    portprobe 198.18.0.2 -p 22,80,2451,3451,8443 -q -o out.json
    python -c <scanner.evidence.Prober over the same ports>     (the evidence layer alone)

Identification is compared per port after mapping nmap's names: ``ssh``, ``http``,
``http`` with ``tunnel="ssl"`` -> ``https``, ``ssl`` -> ``tls``; a name nmap only took from
its port table (``method="table"``), ``tcpwrapped`` or ``unknown`` means nothing
identified, as does an empty evidence column in portprobe's JSON.

Pass: every portprobe run identifies exactly ``EXPECTED`` and median(portprobe) /
median(nmap) <= 0.5. nmap's identifications are printed next to portprobe's, port by port,
as information: nmap 7.93 reports 2451 only as "netchat?" from its port table, although
the fingerprint it prints holds the HTTP answers it got there. When portprobe's JSON has
no evidence column (an older portprobe), the direct Prober run stands in for it, and the
report says so. Exit status 0 on pass.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from common import (
    REPO,
    BenchSummary,
    Lab,
    Timed,
    bench_args,
    find_nmap,
    find_portprobe,
    timed_run,
)

NAME = "service_id"
TARGET_RATIO = 0.5
SERVER = "198.18.0.2"
LAB_TCP = {22: "banner", 80: "http", 2451: "http", 3451: "silent", 8443: "https"}
PORTS = ",".join(str(p) for p in sorted(LAB_TCP))
#: What each port must be identified as ("" = nothing).
EXPECTED = {22: "ssh", 80: "http", 2451: "http", 3451: "", 8443: "https"}
EVIDENCE_TIMEOUT = 2.0  # portprobe's default --evidence-timeout

# The evidence layer alone, in a fresh interpreter in the lab's client namespace.
PROBER_SCRIPT = """
import asyncio, json, socket, sys
sys.path.insert(0, sys.argv[4])
from scanner.evidence import EvidenceConfig, Prober

async def main(address, ports, timeout):
    prober = Prober(EvidenceConfig(timeout=timeout))
    found = await asyncio.gather(*(prober.probe(address, socket.AF_INET, p) for p in ports))
    print(json.dumps({p: [e.service, e.detail, e.proof] for p, e in zip(ports, found)}))

asyncio.run(main(sys.argv[1], [int(p) for p in sys.argv[2].split(",")], float(sys.argv[3])))
"""

Seen = dict[int, tuple[str, str]]  # port -> (service, detail)


def nmap_service(service: ET.Element | None) -> str:
    """nmap's ``<service>`` mapped to evidence names ("" when nmap identified nothing)."""
    if service is None or service.get("method") == "table":
        return ""
    name = service.get("name", "")
    if name in ("", "tcpwrapped", "unknown"):
        return ""
    if service.get("tunnel") == "ssl":
        return "https" if name.startswith("http") else "tls"
    if name in ("ssl", "tls"):
        return "tls"
    if name.startswith("http") and name != "https":
        return "http"  # http-proxy, http-alt...
    return name


def parse_nmap(path: Path) -> Seen:
    """{port: (service, product and version)} from an nmap ``-oX`` file."""
    seen: Seen = {}
    if not path.exists():
        return seen
    for port in ET.parse(path).getroot().iter("port"):
        service = port.find("service")
        detail = ""
        if service is not None and service.get("method") == "table":
            detail = f"{service.get('name', '')}? (port table only)"
        elif service is not None:
            detail = " ".join(
                v for v in (service.get("product"), service.get("version")) if v
            ) or service.get("name", "")
        seen[int(port.get("portid", "0"))] = (nmap_service(service), detail)
    return seen


def parse_portprobe(path: Path) -> Seen | None:
    """{port: (evidence, evidence_detail)} from portprobe's JSON; None without the columns."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    rows = doc.get("results", [])
    if rows and not all("evidence" in row for row in rows):
        return None
    return {int(r["port"]): (r.get("evidence", ""), r.get("evidence_detail", "")) for r in rows}


def parse_prober(timed: Timed) -> Seen:
    """{port: (service, detail)} from the direct Prober run's JSON line."""
    try:
        doc = json.loads(timed.proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {}
    return {int(port): (found[0], found[1]) for port, found in doc.items()}


def service_of(seen: Seen, port: int) -> str:
    """The service ``seen`` gives ``port`` ("" for nothing, or a port not listed)."""
    return seen.get(port, ("", ""))[0]


def misses(seen: Seen) -> list[int]:
    """The ports ``seen`` does not identify as ``EXPECTED`` says."""
    return [port for port, want in EXPECTED.items() if service_of(seen, port) != want]


def _times(name: str, seconds: Sequence[float]) -> str:
    return (
        f"  {name:<14} median {statistics.median(seconds):7.2f} s   min {min(seconds):7.2f} s"
        f"   max {max(seconds):7.2f} s   ({len(seconds)} runs)"
    )


def run(argv: Sequence[str] | None = None) -> BenchSummary:
    """Run the benchmark and print its report; return its summary."""
    args = bench_args(__doc__.splitlines()[0], default_runs=3).parse_args(argv)
    portprobe, nmap = find_portprobe(args.portprobe), find_nmap()
    python = Path(portprobe).parent / "python"
    python_exe = str(python) if python.exists() else sys.executable
    print(f"== {NAME}: {SERVER} ports {PORTS}, {args.runs} runs, portprobe = {portprobe} ==")
    times: dict[str, list[float]] = {"nmap -sV": [], "portprobe": [], "Prober alone": []}
    seen: dict[str, list[Seen]] = {name: [] for name in times}
    no_columns = False
    with (
        tempfile.TemporaryDirectory(prefix="portprobe-bench-") as tmp,
        Lab(tcp=LAB_TCP) as lab,
    ):
        assert lab.server4 == SERVER, lab.server4  # only ever scan the lab's own address
        for i in range(1, args.runs + 1):
            xml_path, json_path = Path(tmp) / f"nmap-{i}.xml", Path(tmp) / f"pp-{i}.json"
            t_nmap = timed_run(
                lab,
                [nmap, "-sV", "-p", PORTS, "-n", "-Pn", "-oX", str(xml_path), SERVER],
                timeout=args.timeout,
            )
            t_pp = timed_run(
                lab, [portprobe, SERVER, "-p", PORTS, "-q", "-o", str(json_path)],
                timeout=args.timeout,
            )  # fmt: skip
            t_prober = timed_run(
                lab,
                [python_exe, "-c", PROBER_SCRIPT, SERVER, PORTS, str(EVIDENCE_TIMEOUT), str(REPO)],
                timeout=args.timeout,
            )
            pp_seen = parse_portprobe(json_path)
            no_columns = no_columns or pp_seen is None
            for name, timed, found in (
                ("nmap -sV", t_nmap, parse_nmap(xml_path)),
                ("portprobe", t_pp, pp_seen or {}),
                ("Prober alone", t_prober, parse_prober(t_prober)),
            ):
                times[name].append(timed.seconds)
                seen[name].append(found)
            print(
                f"  run {i}/{args.runs}: nmap -sV {t_nmap.seconds:7.2f} s   portprobe"
                f" {t_pp.seconds:6.2f} s   Prober alone {t_prober.seconds:6.2f} s"
            )

    print(f"\n== {NAME}: results ==")
    for name, secs in times.items():
        print(_times(name, secs))
    contender = "Prober alone" if no_columns else "portprobe"
    if no_columns:
        print("  note: portprobe's JSON has no evidence column yet: the Prober run stands in")
    ratio = statistics.median(times[contender]) / statistics.median(times["nmap -sV"])
    ratio_ok = ratio <= TARGET_RATIO
    print(
        f"  ratio {contender}/nmap -sV (median): {ratio:.3f}   target <= {TARGET_RATIO:.2f}:"
        f" {'met' if ratio_ok else 'NOT met'}"
    )
    tools = list(times)
    print(f"\n  identifications (run 1; {contender} vs nmap -sV in the last column):")
    print(f"  {'port':<6} {'expected':<9} " + "".join(f"{t:<36}" for t in tools) + "agree")
    for port, want in EXPECTED.items():
        cells = []
        for name in tools:
            service, detail = seen[name][0].get(port, ("", "")) if seen[name] else ("", "")
            cells.append(f"{(service or '-') + (f' ({detail})' if detail else ''):<35.35} ")
        first = {name: service_of(seen[name][0], port) if seen[name] else "" for name in tools}
        agree = "yes" if first[contender] == first["nmap -sV"] else "NO"
        print(f"  {port:<6} {want or '-':<9} " + "".join(cells) + agree)
    for name in tools:
        missed = [misses(s) for s in seen[name]]
        ok = sum(not m for m in missed)
        worst = next((m for m in missed if m), [])
        where = f" (not on {', '.join(map(str, worst))})" if worst else ""
        print(f"  {name}: identifies every port as expected in {ok} of {args.runs} runs{where}")
    passed_ids = all(not misses(s) for s in seen[contender]) and len(seen[contender]) == args.runs
    passed = passed_ids and ratio_ok
    print(
        f"  RESULT: {'PASS' if passed else 'FAIL'} ({contender}: every identification as"
        f" expected: {'yes' if passed_ids else 'no'}; ratio {'met' if ratio_ok else 'NOT met'};"
        " nmap -sV's identifications are information)"
    )
    return BenchSummary(
        name=NAME,
        result=(
            f"{contender} {statistics.median(times[contender]):.2f} s / nmap -sV "
            f"{statistics.median(times['nmap -sV']):.2f} s = {ratio:.2f}; "
            f"identified {'yes' if passed_ids else 'no'}"
        ),
        target=f"ratio <= {TARGET_RATIO:g}, every port identified as expected",
        passed=passed,
    )


def main() -> int:
    """Command-line entry point: exit 0 when the benchmark passes."""
    return 0 if run().passed else 1


if __name__ == "__main__":
    sys.exit(main())
