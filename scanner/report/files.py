"""Output files that are never seen half-written.

Rules:
- A report is written to a hidden temporary file beside its destination and renamed into
  place when it is closed, whether the scan finished, was interrupted or failed: the
  destination only ever holds a complete document.
- A destination that exists and is not a regular file (``/dev/stdout``, a FIFO, a
  terminal, ``/dev/null``) is written directly: renaming over it would replace a device
  node or a pipe with a file (as root, ``-o /dev/null`` would have replaced /dev/null).
- The destination is checked before the scan starts (its folder exists and is writable),
  so a bad path costs nothing and fails with :class:`~scanner.errors.OutputError`.
- A write that fails mid-scan (disk full, I/O error) raises :class:`~scanner.errors.ScanError`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import TextIO

from scanner.errors import OutputError, ScanError


class AtomicOutput:
    """A text file written under a temporary name and renamed to ``path`` on close."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise OutputError(f"cannot write {path}: it is a directory")
        folder = self.path.parent
        try:
            special = not stat.S_ISREG(os.stat(self.path).st_mode)
        except OSError:
            special = False  # nothing there yet (or unreadable: the open below says why)
        #: None when writing directly to a special file (no temporary, no rename).
        self._temp: Path | None = (
            None if special else folder / f".{self.path.name}.{os.getpid()}.part"
        )
        try:
            self.stream: TextIO = open(  # noqa: SIM115
                self._temp or self.path, "w", encoding="utf-8", newline=""
            )
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self._closed = False

    def flush(self) -> None:
        """Push buffered records to the operating system."""
        try:
            self.stream.flush()
        except OSError as exc:
            raise ScanError(f"writing {self.path} failed: {exc.strerror or exc}") from exc

    def commit(self) -> None:
        """Flush, sync and rename the file into place."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stream.flush()
            if self._temp is not None:
                os.fsync(self.stream.fileno())
            self.stream.close()
            if self._temp is not None:
                os.replace(self._temp, self.path)
        except OSError as exc:
            self.discard()
            raise ScanError(f"writing {self.path} failed: {exc.strerror or exc}") from exc

    def discard(self) -> None:
        """Give up: close and remove the temporary file."""
        self._closed = True
        with contextlib.suppress(OSError):
            self.stream.close()
        if self._temp is not None:
            with contextlib.suppress(OSError):
                self._temp.unlink()

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
