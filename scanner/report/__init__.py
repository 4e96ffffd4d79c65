"""Reports: the terminal table, CSV, JSON, JSON Lines, nmap-style XML and grepable output,
and the summary.

Writers take an open stream and a fixed, documented column list; they never decide which
results to include (the caller does) and never print anything themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from scanner.errors import OutputError
from scanner.report.summary import Summary
from scanner.report.table import TableReport, TableWriter, printable
from scanner.report.writers import (
    ASSESSMENT_COLUMNS,
    CSV_COLUMNS,
    SCHEMA_VERSION,
    CsvWriter,
    Ending,
    JsonLinesWriter,
    JsonWriter,
    ScanMeta,
    Writer,
)

__all__ = [
    "ASSESSMENT_COLUMNS",
    "CSV_COLUMNS",
    "FORMATS",
    "FORMAT_TABLE",
    "SCHEMA_VERSION",
    "Ending",
    "Format",
    "ScanMeta",
    "Summary",
    "TableReport",
    "TableWriter",
    "Writer",
    "format_for_path",
    "make_writer",
    "printable",
]


@dataclass(frozen=True, slots=True)
class Format:
    """A report format: its name (``--format``), file extensions, and its writer."""

    name: str
    extensions: tuple[str, ...]
    writer: Callable[[TextIO, ScanMeta], Writer]


def _xml_writer(stream: TextIO, meta: ScanMeta) -> Writer:
    from scanner.report.xml import XmlWriter  # its escaping tables cost start-up time

    return XmlWriter(stream, meta)


def _grepable_writer(stream: TextIO, meta: ScanMeta) -> Writer:
    from scanner.report.grepable import GrepableWriter

    return GrepableWriter(stream, meta)


#: Every report format, the one place that maps a name to its extensions and writer.
FORMAT_TABLE: dict[str, Format] = {
    f.name: f
    for f in (
        Format("table", (".txt",), TableWriter),
        Format("csv", (".csv",), CsvWriter),
        Format("json", (".json",), JsonWriter),
        Format("jsonl", (".jsonl", ".ndjson"), JsonLinesWriter),
        Format("xml", (".xml",), _xml_writer),
        Format("grepable", (".gnmap",), _grepable_writer),  # nmap's -oG
    )
}
FORMATS = tuple(FORMAT_TABLE)


def format_for_path(path: str) -> str:
    """The format an output path asks for by its extension; OutputError if unknown."""
    lowered = path.lower()
    for fmt in FORMAT_TABLE.values():
        if lowered.endswith(fmt.extensions):
            return fmt.name
    known = ", ".join(ext for fmt in FORMAT_TABLE.values() for ext in fmt.extensions)
    raise OutputError(
        f"cannot tell the format of {path!r} from its extension ({known}); use --format"
    )


def make_writer(name: str, stream: TextIO, meta: ScanMeta) -> Writer:
    """The streaming writer of format ``name`` on ``stream``; OutputError if unknown."""
    fmt = FORMAT_TABLE.get(name)
    if fmt is None:
        raise OutputError(f"unknown output format {name!r}")
    return fmt.writer(stream, meta)
