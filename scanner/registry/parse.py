"""IANA's CSV format of the port registry: the record type and its parser.

Rules:
- The input is IANA's own CSV (``service-names-port-numbers.csv``): RFC 4180 quoting, LF or
  CRLF line ends, fields with line breaks inside double quotes. The first non-blank row is the
  header; columns are found by name (case and spacing ignored), so their order may change.
  Every column of :data:`COLUMNS` must be there; unknown extra columns are ignored. IANA's
  2015 name ``Known Unauthorized Uses`` is accepted for ``Unauthorized Use Reported``.
- One column of portprobe's own is read when present: :data:`ORIGIN_COLUMN`, which says
  where a shipped record's fields come from (:attr:`Registration.origin`); IANA's files
  lack it, and their records' origin is "".
- Every row has as many fields as the header. Blank rows (only whitespace) are skipped.
- A port is ``N`` or ``N-M`` (ASCII digits, 0-65535, ``N <= M``) or empty: IANA lists some
  service names (DNS-SD types) without a port; they are kept with ``low == high == NO_PORT``.
- A transport is a token such as ``tcp`` (kept lower-cased) or empty: an empty transport
  means the record covers the port on every transport.
- A row needs a service name or a port. Whitespace around a service name is dropped; every
  other field is kept exactly as IANA gives it.
- Malformed input raises :class:`RegistryError` with one line naming the line number; no
  other exception escapes :func:`parse_registry_csv`.
"""

from __future__ import annotations

import csv
import io
import operator
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from scanner.errors import UsageError
from scanner.ports import MAX_PORT

__all__ = [
    "COLUMNS",
    "NO_PORT",
    "ORIGIN_COLUMN",
    "Registration",
    "RegistryError",
    "Status",
    "check_record",
    "parse_registry_csv",
]

#: IANA's column names, in IANA's order.
COLUMNS: Final = (
    "Service Name",
    "Port Number",
    "Transport Protocol",
    "Description",
    "Assignee",
    "Contact",
    "Registration Date",
    "Modification Date",
    "Reference",
    "Service Code",
    "Unauthorized Use Reported",
    "Assignment Notes",
)

#: portprobe's column in the shipped CSV: which source each record's fields come from.
ORIGIN_COLUMN: Final = "Portprobe Origin"

#: ``low`` and ``high`` of a record that names a service without a port.
NO_PORT: Final = -1

Status = Literal["assigned", "reserved", "unassigned"]

# Other names a column has had in IANA's files (2015: "Known Unauthorized Uses"), as keys.
_ALIASES: Final = {"knownunauthorizeduses": "unauthorizedusereported"}
_PORT = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_TRANSPORT = re.compile(r"[a-z][a-z0-9-]*")
# Descriptions of records without a service name that set a number aside rather than free it.
_RESERVED = re.compile(r"\breserved\b|^any private\b", re.IGNORECASE)

_repr = reprlib.Repr()
_repr.maxstring = 60


class RegistryError(UsageError):
    """The port registry data is malformed, incomplete, or cannot be read or replaced.

    A usage error: it nearly always means a file or URL the user gave (``registry update``).
    """


@dataclass(frozen=True, slots=True)
class Registration:
    """One record of IANA's Service Name and Transport Protocol Port Number Registry.

    ``service`` is the service name (``""`` for Unassigned and Reserved records). ``low`` and
    ``high`` bound the port or range, inclusive; both are :data:`NO_PORT` (-1) for a service
    name registered without a port. ``transport`` is ``"tcp"``, ``"udp"``, ``"sctp"``,
    ``"dccp"``, or ``""`` when the record covers every transport. The other fields are IANA's
    text as given: dates such as ``"2002-04"`` or ``"2012-04-24"``, people as
    ``"[Julian_Mehnle]"``, references as ``"[RFC6335]"``. ``origin`` says which source
    the fields come from in merged data (the shipped registry: see
    ``scanner/data/iana-registry.json``, key ``origins``); "" when one source gives them all.
    """

    service: str
    low: int
    high: int
    transport: str
    description: str = ""
    assignee: str = ""
    contact: str = ""
    registered: str = ""
    modified: str = ""
    reference: str = ""
    service_code: str = ""
    unauthorized_use: str = ""
    notes: str = ""
    origin: str = ""

    @property
    def status(self) -> Status:
        """``"assigned"`` when the record names a service; otherwise ``"reserved"`` or
        ``"unassigned"`` from IANA's description.

        ``"reserved"``: the description says "Reserved" (also "IANA Reserved",
        "Reserved - IANA") or "any private ..." (numbers RFC 1700 set aside for private
        systems). Every other unnamed record ("Unassigned", "De-registered", "Removed",
        "Deprecated", ...) frees the number: ``"unassigned"``.
        """
        if self.service:
            return "assigned"
        if _RESERVED.search(self.description):
            return "reserved"
        return "unassigned"

    @property
    def has_port(self) -> bool:
        """Whether the record covers a port (False for a bare service name)."""
        return self.low != NO_PORT

    def covers(self, port: int) -> bool:
        """Whether ``port`` lies in the record's port or range."""
        return self.low <= port <= self.high and self.has_port


def _column_key(name: str) -> str:
    """A header name compared without case or spacing."""
    key = "".join(name.split()).casefold()
    return _ALIASES.get(key, key)


_KEYS: Final = tuple(_column_key(name) for name in COLUMNS)


def parse_registry_csv(text: str) -> list[Registration]:
    """Parse IANA's registry CSV into records, in the file's order.

    Raises :class:`RegistryError` (one line, naming the line) for a missing column, a row
    with the wrong number of fields, broken quoting, a bad port or range (not ``N`` or
    ``N-M``, outside 0-65535, reversed), a bad transport, or a row with neither a service
    name nor a port.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    records: list[Registration] = []
    positions: tuple[int, ...] | None = None
    origin: int | None = None
    width = 0
    try:
        for row in reader:
            if not "".join(row).strip():  # a blank line, or only separators and spaces
                continue
            if positions is None:
                positions, origin = _header_positions(row, reader.line_num)
                pick = operator.itemgetter(*positions)
                width = len(row)
                continue
            if len(row) != width:
                raise RegistryError(
                    f"line {reader.line_num}: {len(row)} fields, the header has {width}"
                )
            fields = pick(row)
            tag = row[origin].strip() if origin is not None else ""
            records.append(check_record(fields, f"line {reader.line_num}", tag))
    except csv.Error as exc:
        raise RegistryError(f"line {reader.line_num}: malformed CSV: {exc}") from exc
    if positions is None:
        raise RegistryError("no header row: the registry CSV is empty")
    return records


def _header_positions(header: list[str], line: int) -> tuple[tuple[int, ...], int | None]:
    """Where each of :data:`COLUMNS` is in ``header``, and :data:`ORIGIN_COLUMN` (or None)."""
    found: dict[str, int] = {}
    for position, name in enumerate(header):
        key = _column_key(name)
        if key in found:
            raise RegistryError(f"line {line}: column {_repr.repr(name.strip())} appears twice")
        found[key] = position
    missing = [name for name, key in zip(COLUMNS, _KEYS, strict=True) if key not in found]
    if missing:
        raise RegistryError(f"line {line}: the header lacks column(s) {', '.join(missing)}")
    return tuple(found[key] for key in _KEYS), found.get(_column_key(ORIGIN_COLUMN))


def check_record(fields: Sequence[str], where: str, origin: str = "") -> Registration:
    """One record from its fields in :data:`COLUMNS` order, checked as the module rules say.

    ``where`` names the record in a RegistryError ("line 12", "record 3").
    """
    (service_text, port_text, transport_text, description, assignee, contact, registered,
     modified, reference, service_code, unauthorized_use, notes) = fields  # fmt: skip
    service = service_text.strip()
    low, high = _ports(port_text.strip(), where)
    transport = transport_text.strip().lower()
    if transport and not _TRANSPORT.fullmatch(transport):
        raise RegistryError(f"{where}: bad transport protocol {_repr.repr(transport_text)}")
    if not service and low == NO_PORT:
        raise RegistryError(f"{where}: a record needs a service name or a port number")
    return Registration(
        service, low, high, transport, description, assignee, contact, registered, modified,
        reference, service_code, unauthorized_use, notes, origin,
    )  # fmt: skip


def _ports(text: str, where: str) -> tuple[int, int]:
    """The inclusive range of a Port Number field; (NO_PORT, NO_PORT) when it is empty."""
    if not text:
        return NO_PORT, NO_PORT
    match = _PORT.fullmatch(text)
    if match is None:
        raise RegistryError(f"{where}: {_repr.repr(text)} is not a port number or range")
    low = int(match[1])
    high = low if match[2] is None else int(match[2])
    if max(low, high) > MAX_PORT:
        raise RegistryError(f"{where}: port {_repr.repr(text)} is out of range 0-{MAX_PORT}")
    if low > high:
        raise RegistryError(f"{where}: reversed port range {_repr.repr(text)}")
    return low, high
