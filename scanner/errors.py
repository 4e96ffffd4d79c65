"""The exceptions portprobe raises, and nothing else.

A port that is closed or filtered is *not* an error: it is a ``Result``. These exceptions are
for input a scan cannot start with, and for failures of the scanner's own machinery::

    PortprobeError
    ├── UsageError              bad input from the user; the CLI exits 2
    │   ├── PortSpecError       a port list such as "5-1" or "70000"
    │   ├── TargetError         a target such as "198.18.0.300" or "a..b"
    │   │   └── TargetFileError a targets file that cannot be read or has a bad line
    │   ├── OutputError         an output path that cannot be written
    │   ├── ReportError         a report (diff, merge, --resume) that cannot be read
    │   ├── PolicyError         a policy file (--expect) that cannot be read or parsed
    │   └── RegistryError       registry data that cannot be read, parsed or rolled back
    │                           (defined in scanner.registry)
    └── ScanError               the scan itself failed (e.g. writing results failed midway)
        └── OutputClosed        the reader of standard output went away (``| head -1``)

Every message is one line, fit to show the user as it is.
"""

from __future__ import annotations


class PortprobeError(Exception):
    """Base of every exception portprobe raises on purpose."""


class UsageError(PortprobeError):
    """The user's input cannot be used; the command line exits with status 2."""


class PortSpecError(UsageError):
    """A port specification is malformed or out of range."""


class TargetError(UsageError):
    """A target (address, network, range or hostname) is malformed."""


class TargetFileError(TargetError):
    """A targets file cannot be read, or one of its lines is malformed.

    ``line`` is the 1-based line number, when the fault is on one line.
    """

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class OutputError(UsageError):
    """An output file cannot be created or written."""


class ReportError(UsageError):
    """A report given as input (to ``diff``, ``merge`` or ``--resume``) cannot be read."""


class PolicyError(UsageError):
    """A policy file (``--expect``) cannot be read, or one of its lines is malformed."""


class ScanError(PortprobeError):
    """The scan could not go on (for example, the output became unwritable)."""


class OutputClosed(ScanError):
    """The reader of the output went away (a closed pipe, as after ``| head -1``).

    The command line then stops quietly with status 141, as a tool killed by SIGPIPE
    does; a report being written to a file is still completed.
    """
