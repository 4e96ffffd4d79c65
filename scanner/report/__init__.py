"""Reports: the terminal table, CSV, JSON, JSON Lines, nmap-style XML and grepable output,
and the summary.

Writers take an open stream and a fixed, documented column list; they never decide which
results to include (the caller does) and never print anything themselves.
"""

from __future__ import annotations

from typing import TextIO

from scanner.errors import OutputError
from scanner.report.summary import Summary
from scanner.report.table import TableReport, printable
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
    "SCHEMA_VERSION",
    "Ending",
    "ScanMeta",
    "Summary",
    "TableReport",
    "Writer",
    "format_for_path",
    "make_writer",
    "printable",
]

FORMATS = ("table", "csv", "json", "jsonl", "xml", "grepable")

_EXTENSIONS = {
    ".csv": "csv",
    ".gnmap": "grepable",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "table",
    ".xml": "xml",
}


def format_for_path(path: str) -> str:
    """The format an output path asks for by its extension; OutputError if unknown."""
    lowered = path.lower()
    for extension, name in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return name
    known = ", ".join(_EXTENSIONS)
    raise OutputError(
        f"cannot tell the format of {path!r} from its extension ({known}); use --format"
    )


def make_writer(name: str, stream: TextIO, meta: ScanMeta) -> Writer:
    """The streaming writer for a machine-readable format (not ``table``)."""
    if name == "csv":
        return CsvWriter(stream, meta)
    if name == "json":
        return JsonWriter(stream, meta)
    if name == "jsonl":
        return JsonLinesWriter(stream, meta)
    if name == "xml":
        from scanner.report.xml import XmlWriter

        return XmlWriter(stream, meta)
    if name == "grepable":
        from scanner.report.grepable import GrepableWriter

        return GrepableWriter(stream, meta)
    raise OutputError(f"unknown output format {name!r}")
