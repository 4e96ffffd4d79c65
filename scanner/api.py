"""The one-call library entry point: targets and ports as text in, results out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

from scanner.engine import Scan
from scanner.errors import PortSpecError
from scanner.models import Port, Proto, Result, ScanConfig
from scanner.ports import MAX_PORT, MIN_PORT, parse_port_spec
from scanner.targets import build_targets


async def scan(
    targets: Iterable[str],
    ports: str | Sequence[int | Port],
    config: ScanConfig = ScanConfig(),
    *,
    exclude: Iterable[str] = (),
) -> AsyncIterator[Result]:
    """Scan ``targets`` (addresses, networks, ranges, names) on ``ports``.

    ``ports`` is an nmap-style spec (``"22,80,1000-2000"``, ``"T:22,U:53"``) or a sequence
    of numbers (TCP) and :class:`~scanner.models.Port` s. Names that do not resolve are
    skipped. Raises :class:`~scanner.errors.UsageError`
    subclasses for malformed targets or ports, before anything is sent.
    """
    if isinstance(ports, str):
        port_list = parse_port_spec(ports)
    else:
        given = {p if isinstance(p, Port) else Port(Proto.TCP, p) for p in ports}
        port_list = sorted(given, key=lambda p: (p.protocol is not Proto.TCP, p.number))
    bad = [port for port in port_list if not MIN_PORT <= port.number <= MAX_PORT]
    if bad:
        raise PortSpecError(f"port {bad[0].number} is out of range {MIN_PORT}-{MAX_PORT}")
    hosts, _unresolved = await build_targets(targets, exclude=exclude)
    async for result in Scan(hosts, port_list, config):
        yield result
