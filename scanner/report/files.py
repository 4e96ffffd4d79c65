"""Output files that are never seen half-written, and never written through a planted link.

Rules:
- A report is written to a temporary file beside its destination and renamed into place
  when it is closed, whether the scan finished, was interrupted or failed: the
  destination only ever holds a complete document. The temporary file is made by
  :func:`scanner.safeio.create_beside` (``O_EXCL``, an unguessable name), so a symlink
  planted in a shared directory cannot redirect root's write; a symlink at the
  destination itself is replaced by the rename, never followed.
- A destination that is a device, FIFO or socket (``/dev/null``, a terminal, or a symlink
  of root's or one's own to one, such as ``/dev/stdout``) is written directly: renaming
  over it would replace a device node or a pipe with a file. See :mod:`scanner.safeio`.
- Rewriting a report of one's own keeps its mode.
- The destination is checked before the scan starts (its folder exists and is writable),
  so a bad path costs nothing and fails with :class:`~scanner.errors.OutputError`.
- A write that fails (disk full, I/O error) raises :class:`~scanner.errors.ScanError` and
  removes the temporary file. A temporary file left by a crash (SIGKILL, power loss) keeps
  its results: :func:`find_partial` finds it for ``--resume``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import TextIO

from scanner.errors import OutputError, ScanError
from scanner.safeio import TEMP_SUFFIX, TargetKind, create_beside, inspect_target, temp_prefix

__all__ = ["AtomicOutput", "find_partial"]


class AtomicOutput:
    """A text file written under a temporary name and renamed to ``path`` on close."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        #: None when writing directly to a special file (no temporary, no rename).
        self._temp: Path | None = None
        try:
            kind, info = inspect_target(path)
            if kind == TargetKind.SPECIAL:
                fd = _open_special(path, regular=info is not None and stat.S_ISREG(info.st_mode))
            else:
                fd, temp = create_beside(path, info if kind == TargetKind.REGULAR else None)
                self._temp = Path(temp)
            self.stream: TextIO = open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            if self._temp is not None:
                with contextlib.suppress(OSError):
                    self._temp.unlink()
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
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
            return
        self.discard()
        if isinstance(exc, OSError):  # a write failed (disk full): one line, not a traceback
            raise ScanError(f"writing {self.path} failed: {exc.strerror or exc}") from exc


def _open_special(path: str, *, regular: bool = False) -> int:
    """Open the device or FIFO at ``path`` for writing; OSError if it is now anything else.

    ``lstat`` and ``open`` are two calls: a regular file swapped in between is refused
    here rather than written without a temporary file and a rename. ``regular``: a
    trusted link through ``/proc`` to a regular file (``/dev/stdout`` redirected to a
    file), written from its start as the shell's ``>`` would.
    """
    if regular:
        return os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOCTTY | os.O_CLOEXEC)
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    os.close(fd)
    raise OSError(16, "it changed while being opened; try again", path)


def find_partial(path: str) -> str | None:
    """The newest temporary file a crashed scan left beside report ``path``, or None.

    Only a non-empty regular file (not a symlink) of the effective user's counts: one
    planted by someone else is not a scan of ours.
    """
    folder = os.path.dirname(path) or "."
    prefix = temp_prefix(path)
    found: list[tuple[float, str]] = []
    pattern = os.path.join(glob.escape(folder), glob.escape(prefix) + "*" + TEMP_SUFFIX)
    for candidate in glob.glob(pattern, include_hidden=True):
        try:
            info = os.lstat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and info.st_size:
            found.append((info.st_mtime, candidate))
    return max(found)[1] if found else None
