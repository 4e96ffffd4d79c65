"""Where the registry data lives: the shipped data, the user's updated copy, rollback.

Rules:
- The shipped data is ``scanner/data/iana-service-names-port-numbers.csv`` with its
  provenance in ``scanner/data/iana-registry.json``; both are read, never written. It
  merges two sources (today's names, and the 2015 snapshot's full records; see
  ``bench/make_registry.py``), each listed with its date in :attr:`Registry.sources`.
- A user copy lives in the data directory: ``$PORTPROBE_DATA_DIR`` if set, else
  ``$XDG_DATA_HOME/portprobe``, else ``~/.local/share/portprobe``. It is IANA's file as
  given, XML (:data:`XML_NAME`, read with :mod:`scanner.registry.xml`) or CSV
  (:data:`CSV_NAME`), beside a provenance file (:data:`PROVENANCE_NAME`). An update
  tells the two formats apart by content (XML starts with ``<``). An XML copy is dated by
  the registry's own ``<updated>``; a CSV one by the file's modification time (a download
  by the day it was fetched).
- An update's default source is IANA's published XML (:data:`IANA_XML`).
- :func:`load_registry` prefers the user copy, but only one that parses and passes the same
  checks as an update; any other falls back to the shipped data with a warning on the
  ``scanner`` logger. The result is cached: ``load_registry.cache_clear()`` forgets it, and
  update and rollback do that themselves.
- An update is checked in full (parses, at least :data:`MIN_RECORDS` records, netchat on
  2451/tcp and http on 80/tcp) before anything on disk changes. Files are replaced
  atomically (a temporary file, then ``os.replace``); the user copy being replaced (each
  of its files) is kept as ``<name>.previous``. One level only: rollback restores
  ``.previous`` (which then is gone), or, when there is none, removes the user copy so the
  shipped data is used again.
- The only network access in portprobe's registry code is an update from an http(s) URL
  (urllib): at most :data:`MAX_DOWNLOAD` bytes in at most :data:`FETCH_TIMEOUT` seconds for
  the whole download (not per read: a server that drips a byte at a time is cut off),
  following redirects only to http(s) and never from https to http. The provenance names
  the URL the data came from, after redirects. A URL with a control character or a space
  is refused before anything is sent.
- Every registry file is read with :data:`MAX_DOWNLOAD` as its size cap (a local file, the
  user copy, the copy kept for rollback), so a huge file cannot slow every later run; the
  files are written with :func:`scanner.safeio.write_file_atomic` (no planted symlink is
  followed) and the copy kept for rollback is never read through a symlink.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import http.client
import importlib.resources
import json
import logging
import os
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from scanner.registry.index import Registry, Source
from scanner.registry.parse import Registration, RegistryError, parse_registry_csv
from scanner.registry.xml import IanaXml, looks_like_xml, parse_registry_xml
from scanner.safeio import describe_size, read_bounded, write_file_atomic
from scanner.text import escape_controls

__all__ = [
    "CSV_NAME",
    "IANA_XML",
    "MAX_DOWNLOAD",
    "MIN_RECORDS",
    "PROVENANCE_NAME",
    "XML_NAME",
    "UpdateResult",
    "default_data_dir",
    "load_registry",
    "registry_date",
    "rollback_registry",
    "update_registry",
]

CSV_NAME: Final = "iana-service-names-port-numbers.csv"
XML_NAME: Final = "iana-service-names-port-numbers.xml"
PROVENANCE_NAME: Final = "iana-registry.json"
#: Every file of a user copy (one of the two data files is there, and the provenance).
_FILES: Final = (XML_NAME, CSV_NAME, PROVENANCE_NAME)
#: IANA's published registry in its primary format, from which IANA generates the CSV.
IANA_XML: Final = (
    "https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.xml"
)
#: An update with fewer records is refused: IANA's registry has had over 13,000 since 2015.
MIN_RECORDS: Final = 10_000
#: The largest registry file read or downloaded (IANA's CSV is about 1.2 MB, its XML 4 MB).
MAX_DOWNLOAD: Final = 16 * 1024 * 1024
#: The longest a whole download may take, in seconds.
FETCH_TIMEOUT: Final = 30.0
#: The longest one read of a download may wait, in seconds.
READ_TIMEOUT: Final = 10.0
_PREVIOUS: Final = ".previous"
_MAX_PROVENANCE: Final = 1 << 20

log = logging.getLogger("scanner")


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What :func:`update_registry` installed.

    ``path`` is the new user copy, ``records`` its record count, ``previous_records`` the
    count of the data it replaced (the user copy kept as ``.previous``, or the shipped data
    when there was no user copy, or None when the old user copy did not load), and ``source``
    the path or URL it came from.
    """

    path: Path
    records: int
    previous_records: int | None
    source: str


def default_data_dir() -> Path:
    """The directory of the user's registry copy (see the module rules)."""
    override = os.environ.get("PORTPROBE_DATA_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative paths
        return Path(xdg) / "portprobe"
    return Path.home() / ".local" / "share" / "portprobe"


@functools.cache
def load_registry() -> Registry:
    """The registry to use: the user's updated copy if it loads, else the shipped snapshot.

    Cached; ``load_registry.cache_clear()`` makes the next call read the files again.
    """
    directory = default_data_dir()
    try:
        present = _data_file(directory) is not None
    except OSError:  # e.g. a directory we may not search: reading it will say why
        present = True
    if present:
        try:
            return _load_user_copy(directory)
        except RegistryError as exc:
            log.warning("ignoring the registry copy %s; using the shipped data", exc)
    return _load_shipped()


def registry_date() -> str:
    """The date of the registry data a scan will use, read from provenance files only.

    Cheap (no CSV is parsed), for report headers written before the registry is loaded.
    A user copy without a readable provenance is dated by its modification time, as
    :func:`load_registry` dates it.
    """
    directory = default_data_dir()
    try:
        path = _data_file(directory)
        if path is not None:
            date = _read_provenance(directory / PROVENANCE_NAME).get("snapshot_date")
            if isinstance(date, str):
                return date
            return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date().isoformat()
    except OSError:
        pass
    data = importlib.resources.files("scanner") / "data"
    shipped = json.loads((data / PROVENANCE_NAME).read_text(encoding="utf-8"))
    return str(shipped["snapshot_date"])


def _data_file(directory: Path) -> Path | None:
    """The data file of the user copy in ``directory`` (XML or CSV), or None."""
    for name in (XML_NAME, CSV_NAME):
        if (directory / name).exists():
            return directory / name
    return None


def _load_shipped() -> Registry:
    """The data shipped in the package."""
    data = importlib.resources.files("scanner") / "data"
    provenance = json.loads((data / PROVENANCE_NAME).read_text(encoding="utf-8"))
    sources = [Source(item["name"], item["date"], item["fields"]) for item in provenance["sources"]]
    return Registry(
        _shipped_records(),
        source=provenance["source"],
        date=provenance["snapshot_date"],
        sources=sources,
    )


def _shipped_records() -> list[Registration]:
    """The records of the shipped snapshot."""
    data = importlib.resources.files("scanner") / "data"
    return parse_registry_csv((data / CSV_NAME).read_text(encoding="utf-8"))


def _load_user_copy(directory: Path) -> Registry:
    """The user copy in ``directory``; RegistryError unless it is complete.

    Its provenance file names the source and date only if its checksum matches the CSV.
    """
    path = _data_file(directory) or directory / CSV_NAME
    text = _read_text(path)
    parsed = _checked(text, str(path))
    provenance = _read_provenance(directory / PROVENANCE_NAME)
    source, date = provenance.get("source"), provenance.get("snapshot_date")
    matches = provenance.get("sha256") == hashlib.sha256(text.encode("utf-8")).hexdigest()
    if not (matches and isinstance(source, str) and isinstance(date, str)):
        mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        source, date = f"IANA registry copy at {path}", mtime.date().isoformat()
        if parsed.updated:
            date = parsed.updated
    return Registry(
        parsed.records,
        source=source,
        date=date,
        sources=[Source(source, date)],
        people=parsed.people,
    )


def update_registry(source: str = IANA_XML, *, data_dir: Path | None = None) -> UpdateResult:
    """Install a new copy of IANA's registry, XML or CSV, from a local file or an http(s) URL.

    The new data is checked in full before anything is replaced; a RegistryError leaves the
    current data as it was. The user copy it replaces (if any) is kept for
    :func:`rollback_registry`. The cache of :func:`load_registry` is cleared.
    """
    directory = data_dir if data_dir is not None else default_data_dir()
    date = dt.datetime.now(dt.UTC).date().isoformat()
    if source.startswith(("http://", "https://")):
        text, final = _fetch(source)
        how, basis = f"downloaded from {final}", "the download date"
    else:
        path = Path(source)
        text = _read_text(path)
        with contextlib.suppress(OSError):
            date = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).date().isoformat()
        how, basis = f"copied from {path.resolve()}", "the file's modification date"
    parsed = _checked(text, source)
    records = parsed.records
    if parsed.updated:  # IANA's XML says when the registry was last changed
        date, basis = parsed.updated, "the registry's <updated> element"
    kind = "XML" if looks_like_xml(text) else "CSV"
    previous = _record_count(directory)
    encoded = text.encode("utf-8")
    provenance = {
        "source": f"IANA registry {kind} of {date}, {how}",
        "snapshot_date": date,
        "snapshot_date_basis": basis,
        "format": kind,
        "newest_record_date": _newest_date(records),
        "records": len(records),
        "people": len(parsed.people),
        "sha256": hashlib.sha256(encoded).hexdigest(),
        "installed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    target = directory / (XML_NAME if kind == "XML" else CSV_NAME)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if _data_file(directory) is not None:
            for name in _FILES:
                if _is_regular(directory / name):  # never a copy read through a symlink
                    kept = _read_bytes(directory / name, follow=False)
                    _write_atomic(directory / (name + _PREVIOUS), kept)
                else:
                    (directory / (name + _PREVIOUS)).unlink(missing_ok=True)
        else:  # rollback after this update goes back to the shipped data, not a stale copy
            for name in _FILES:
                (directory / (name + _PREVIOUS)).unlink(missing_ok=True)
        _write_atomic(target, encoded)
        for name in (XML_NAME, CSV_NAME):  # the other format's file is the old data
            if name != target.name:
                (directory / name).unlink(missing_ok=True)
        _write_atomic(directory / PROVENANCE_NAME, _json_bytes(provenance))
    except OSError as exc:
        raise RegistryError(f"cannot write the registry copy in {directory}: {exc}") from exc
    finally:
        load_registry.cache_clear()
    return UpdateResult(path=target, records=len(records), previous_records=previous, source=source)


def rollback_registry(*, data_dir: Path | None = None) -> Path:
    """Undo the last update: restore the previous user copy, or fall back to the shipped data.

    Returns the path of the restored copy, or of the shipped CSV when the user copy was
    removed. Raises RegistryError when there is no user copy to roll back.
    """
    directory = data_dir if data_dir is not None else default_data_dir()
    try:
        if any((directory / (name + _PREVIOUS)).exists() for name in (XML_NAME, CSV_NAME)):
            for name in _FILES:
                kept = directory / (name + _PREVIOUS)
                if kept.exists():
                    os.replace(kept, directory / name)
                else:
                    (directory / name).unlink(missing_ok=True)
            restored = _data_file(directory)
            assert restored is not None
            return restored
        if _data_file(directory) is not None:
            for name in _FILES:
                (directory / name).unlink(missing_ok=True)
            return Path(str(importlib.resources.files("scanner") / "data" / CSV_NAME))
    except OSError as exc:
        raise RegistryError(f"cannot roll back the registry copy in {directory}: {exc}") from exc
    finally:
        load_registry.cache_clear()
    raise RegistryError(f"nothing to roll back: no updated registry copy in {directory}")


def _checked(text: str, origin: str) -> IanaXml:
    """Parse ``text`` (XML or CSV) and check it is a whole registry; RegistryError naming
    ``origin``. CSV data comes back without people or date."""
    try:
        if looks_like_xml(text):
            parsed = parse_registry_xml(text)
        else:
            parsed = IanaXml(parse_registry_csv(text))
    except RegistryError as exc:
        raise RegistryError(f"{origin}: {exc}") from exc
    records = parsed.records
    if len(records) < MIN_RECORDS:
        raise RegistryError(
            f"{origin}: only {len(records)} records, a whole registry has over {MIN_RECORDS}"
        )
    for service, port, transport in (("netchat", 2451, "tcp"), ("http", 80, "tcp")):
        if not any(
            r.service == service and r.covers(port) and r.transport in (transport, "")
            for r in records
        ):
            raise RegistryError(f"{origin}: no {service} record for {port}/{transport}")
    return parsed


def _is_regular(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (``lstat``: a symlink is not)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _read_bytes(path: Path, *, follow: bool = True) -> bytes:
    """A registry file's bytes, at most :data:`MAX_DOWNLOAD`; RegistryError on any fault.

    ``follow=False`` refuses a symlink (the copy kept for rollback is never read through
    one someone planted).
    """

    def fault(message: str) -> RegistryError:
        return RegistryError(f"cannot read {path}: {message}")

    if not follow and path.is_symlink():
        raise fault("it is a symbolic link")
    return read_bounded(str(path), MAX_DOWNLOAD, fault)


def _read_text(path: Path) -> str:
    """A local file as UTF-8 text; RegistryError if it cannot be read or decoded."""
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only, and never from https down to http."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme = newurl.partition(":")[0].lower()
        if scheme not in ("http", "https") or (
            req.full_url.lower().startswith("https:") and scheme != "https"
        ):
            raise urllib.error.URLError(f"refused a redirect to {newurl[:200]!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str) -> tuple[str, str]:
    """The body of ``url`` as UTF-8 text and the URL it came from (after redirects).

    At most :data:`MAX_DOWNLOAD` bytes, in at most :data:`FETCH_TIMEOUT` seconds in all.
    """
    if any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        raise RegistryError(f"{url}: a URL may not contain control characters or spaces")
    opener = urllib.request.build_opener(_SafeRedirects)
    deadline = time.monotonic() + FETCH_TIMEOUT
    chunks: list[bytes] = []
    size = 0
    try:
        with opener.open(url, timeout=min(READ_TIMEOUT, FETCH_TIMEOUT)) as response:
            final = str(response.geturl())
            # read1: one read from the socket at a time, so the deadline is seen often.
            while chunk := response.read1(1 << 16):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    raise RegistryError(f"{url}: larger than {describe_size(MAX_DOWNLOAD)}")
                if time.monotonic() > deadline:
                    raise RegistryError(
                        f"cannot fetch {url}: not finished within {FETCH_TIMEOUT:g} s"
                    )
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # URLError and timeouts are OSErrors; a malformed URL or reply is one of the others.
        raise RegistryError(f"cannot fetch {url}: {_reason(exc)}") from exc
    try:
        return b"".join(chunks).decode("utf-8"), final
    except UnicodeDecodeError as exc:
        raise RegistryError(f"{url}: not UTF-8 text (byte {exc.start})") from exc


def _reason(exc: BaseException) -> str:
    """A one-line reason for a failed fetch."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason).replace("\n", " ")
    return str(exc).replace("\n", " ")


def _read_provenance(path: Path) -> dict[str, Any]:
    """A provenance JSON object, or an empty dict when it is missing or unreadable."""
    try:
        value = json.loads(read_bounded(str(path), _MAX_PROVENANCE, RegistryError))
    except (RegistryError, ValueError, RecursionError):
        return {}
    if not isinstance(value, dict):
        return {}
    # Shown by ``registry info`` and written into every report: text only, escaped.
    return {k: escape_controls(v) if isinstance(v, str) else v for k, v in value.items()}


def _record_count(directory: Path) -> int | None:
    """How many records the data in use has: the user copy in ``directory`` if there is one,
    else the shipped data; None when the user copy does not load."""
    path = _data_file(directory)
    if path is None:
        return len(_shipped_records())
    try:
        return len(_checked(_read_text(path), str(path)).records)
    except RegistryError:
        return None


def _newest_date(records: list[Registration]) -> str:
    """The latest registration or modification date in ``records`` ("" if none)."""
    return max((d for r in records for d in (r.registered, r.modified)), default="")


def _json_bytes(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    write_file_atomic(str(path), data)
