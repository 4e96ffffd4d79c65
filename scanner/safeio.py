"""Files read and written as root in directories other people share.

Rules and theory:
- portprobe often runs as root and writes reports into directories other users can write
  to. Such a user can plant a symlink at any name root may open. So a file is written
  under a name nobody can guess or pre-empt (:func:`tempfile.mkstemp`: ``O_CREAT |
  O_EXCL``, a random name, in the target's own directory so the rename is atomic), then
  renamed over the target. A rename replaces a symlink at the target; it never writes
  through it. A write that fails removes its temporary file.
- What is at the target is looked at with ``lstat``, never ``stat``: a symlink is a
  symlink, whatever it points at. A device or FIFO at the path itself (``/dev/null``) is
  written through, as ``nmap -oN /dev/null`` does; so is a symlink to one that root or the
  user owns (``/dev/stdout``), as the kernel's ``fs.protected_symlinks`` would follow it;
  so is such a symlink that leads through ``/proc`` to a regular file (``/dev/stdout``
  when the shell redirected it to a file: renaming over it would replace ``/dev/stdout``).
  Any other symlink is replaced, never followed.
- Rewriting a regular file of one's own keeps its permission bits (a 0600 report stays
  0600); a new file gets ``0666 & ~umask``, as ``open(..., "w")`` would have given it.
- Every input file is read with a size cap, whatever it is: a regular file over the cap
  is refused before it is read; a FIFO or device (``/dev/zero``, a FIFO nobody writes) is
  read at most ``limit + 1`` bytes and for at most :data:`INPUT_TIMEOUT` seconds.
  Standard input (``-``) has the size cap only: a person may be typing it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
import sys
import tempfile
import time
from collections.abc import Callable

__all__ = [
    "INPUT_TIMEOUT",
    "TEMP_SUFFIX",
    "TargetKind",
    "create_beside",
    "describe_size",
    "inspect_target",
    "read_bounded",
    "temp_prefix",
    "write_file_atomic",
]

#: The longest a FIFO or device given as an input file may take to deliver all of its data.
INPUT_TIMEOUT = 10.0

#: The ending of every temporary output file's name.
TEMP_SUFFIX = ".part"

_CHUNK = 1 << 16
# A file name may have 255 bytes; the temporary name adds a dot, a random part (8) and
# a suffix, so only a prefix of the target's name is kept in it.
_NAME_KEPT = 200


class TargetKind:
    """What :func:`inspect_target` found at an output path."""

    ABSENT = "absent"
    REGULAR = "regular"  # a regular file (not a symlink)
    SPECIAL = "special"  # a device, FIFO or socket, or a trusted symlink to one
    REPLACE = "replace"  # a symlink, or anything else a rename may replace


def inspect_target(path: str) -> tuple[str, os.stat_result | None]:
    """What is at ``path`` (a :class:`TargetKind`) and its ``lstat``; OSError as the OS says.

    A directory is reported as OSError(EISDIR). A symlink counts as ``SPECIAL`` (with the
    ``stat`` of what it leads to) only when it belongs to root or to the effective user and
    leads to a device or FIFO, or through ``/proc`` to a regular file (``/dev/stdout``
    redirected to a file); a symlink planted by someone else is never followed.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return TargetKind.ABSENT, None
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(21, "it is a directory", path)
    if stat.S_ISREG(mode):
        return TargetKind.REGULAR, info
    if stat.S_ISLNK(mode):
        if info.st_uid in (0, os.geteuid()):
            try:
                followed = os.stat(path)
            except OSError:
                return TargetKind.REPLACE, info
            if _special(followed.st_mode) or (
                stat.S_ISREG(followed.st_mode) and _through_proc(path)
            ):
                return TargetKind.SPECIAL, followed
        return TargetKind.REPLACE, info
    if _special(mode):
        return TargetKind.SPECIAL, info
    return TargetKind.REPLACE, info


def _through_proc(path: str) -> bool:
    """Whether symlink ``path`` leads through ``/proc`` (as ``/dev/stdout`` does)."""
    for _ in range(8):  # a longer chain of links is not /dev/stdout's
        try:
            target = os.path.join(os.path.dirname(path), os.readlink(path))
        except OSError:
            return False
        if target.startswith("/proc/"):
            return True
        path = target
    return False


def _special(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _default_mode() -> int:
    """``0666 & ~umask``: the mode a plain ``open(..., "w")`` gives a new file."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def create_beside(path: str, existing: os.stat_result | None) -> tuple[int, str]:
    """A new, empty temporary file in ``path``'s directory: ``(descriptor, its path)``.

    Its mode is that of ``existing`` (a regular file the effective user owns, being
    replaced), else ``0666 & ~umask``. OSError as the OS says.
    """
    folder = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(dir=folder, prefix=temp_prefix(path), suffix=TEMP_SUFFIX)
    try:
        if existing is not None and existing.st_uid == os.geteuid():
            os.fchmod(fd, stat.S_IMODE(existing.st_mode) & 0o777)
        else:
            os.fchmod(fd, _default_mode())
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return fd, temp


def temp_prefix(path: str) -> str:
    """The start of the names of ``path``'s temporary files: a dot and (a prefix of) its name.

    File names have at most 255 bytes, and the temporary name adds a random part and
    :data:`TEMP_SUFFIX`: a long name is cut to fit, so any valid output name works.
    """
    name = os.path.basename(path).encode("utf-8", "surrogateescape")[:_NAME_KEPT]
    return "." + name.decode("utf-8", "ignore") + "."


def write_file_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (see the module rules).

    A symlink at ``path`` is replaced, not followed; the mode of a file of one's own is
    kept; a failed write leaves ``path`` as it was and no temporary file. OSError on failure.
    """
    kind, info = inspect_target(path)
    fd, temp = create_beside(path, info if kind == TargetKind.REGULAR else None)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def describe_size(limit: int) -> str:
    """``limit`` bytes in words: ``64 MiB``, ``512 KiB``, ``100 bytes``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


def read_bounded(path: str, limit: int, error: Callable[[str], Exception]) -> bytes:
    """The bytes of input file ``path`` (``-``: standard input), at most ``limit`` of them.

    Any fault raises ``error(message)``, the message one line without the path (the
    caller's error names it): a file that cannot be opened, one larger than ``limit``, a
    FIFO or device that gives more than ``limit`` bytes or does not end within
    :data:`INPUT_TIMEOUT` seconds.
    """
    too_big = f"larger than {describe_size(limit)}, the most accepted here"
    if path == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        try:
            if buffer is None:  # a test replaced stdin with a StringIO
                data = sys.stdin.read(limit + 1).encode("utf-8")
            else:
                data = buffer.read(limit + 1)
        except OSError as exc:
            raise error(f"cannot read: {exc.strerror or exc}") from None
        if len(data) > limit:
            raise error(too_big)
        return bytes(data)
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to would otherwise block for ever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the name: no file can have it
        raise error("cannot read: the name holds a NUL character") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"cannot read: {os.strerror(errno.EISDIR)}")
        if stat.S_ISREG(info.st_mode):
            if info.st_size > limit:
                raise error(too_big)
            os.set_blocking(fd, True)
            return _read_regular(fd, limit, error, too_big)
        return _read_stream(fd, limit, error, too_big)
    finally:
        os.close(fd)


def _read_regular(fd: int, limit: int, error: Callable[[str], Exception], too_big: str) -> bytes:
    # One read gets a whole regular file (Linux reads up to 2 GiB at once): no copy.
    return _read_chunks(fd, limit, error, too_big, size=limit + 1, deadline=None)


def _read_stream(fd: int, limit: int, error: Callable[[str], Exception], too_big: str) -> bytes:
    """A FIFO, device or socket: ``limit`` bytes and :data:`INPUT_TIMEOUT` seconds at most."""
    deadline = time.monotonic() + INPUT_TIMEOUT
    return _read_chunks(fd, limit, error, too_big, size=_CHUNK, deadline=deadline)


def _read_chunks(
    fd: int,
    limit: int,
    error: Callable[[str], Exception],
    too_big: str,
    *,
    size: int,
    deadline: float | None,
) -> bytes:
    """Read ``fd`` to its end, ``size`` bytes at a time; error past ``limit`` or ``deadline``
    (None: a regular file, which never blocks)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    raise error(
                        f"not a regular file, and its data did not end within {INPUT_TIMEOUT:g} s"
                    )
            try:
                chunk = os.read(fd, min(size, limit + 1 - total))
            except BlockingIOError:
                continue
            if not chunk:
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # a regular file that grew while being read, or a stream
                raise error(too_big)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}") from None
