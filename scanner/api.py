"""The one-call library entry point: targets and ports as text in, assessed results out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING

from scanner.engine import Scan
from scanner.errors import PortSpecError
from scanner.models import EvidenceConfig, Port, Proto, Result, ScanConfig
from scanner.pipeline import Pipeline
from scanner.ports import MAX_PORT, MIN_PORT, parse_port_spec
from scanner.targets import build_targets

if TYPE_CHECKING:
    from scanner.policy import Policy

__all__ = ["scan"]


async def scan(
    targets: Iterable[str],
    ports: str | Sequence[int | Port],
    config: ScanConfig = ScanConfig(),
    *,
    exclude: Iterable[str] = (),
    evidence: bool = True,
    evidence_config: EvidenceConfig = EvidenceConfig(),
    policy: Policy | None = None,
) -> AsyncIterator[Result]:
    """Scan ``targets`` (addresses, networks, ranges, names) on ``ports``: every port's result,
    assessed as the command line shows it.

    ``ports`` is an nmap-style spec (``"22,80,1000-2000"``, ``"T:22,U:53"``) or a sequence
    of numbers (TCP) and :class:`~scanner.models.Port` s. Every result carries its
    :class:`~scanner.models.Assessment`: the IANA label and attestation, and for an open
    port the evidence of what it speaks (unless ``evidence`` is False), the verdict, the
    warning, and the ``policy`` mark if a policy is given. Open ports come out once their
    evidence is in. Names that do not resolve are skipped. Raises
    :class:`~scanner.errors.UsageError` subclasses for malformed targets or ports, before
    anything is sent.
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
    pipeline = Pipeline(
        evidence=evidence, evidence_config=evidence_config, closed=True, policy=policy
    )
    engine = Scan(hosts, port_list, config)
    try:
        async for result in pipeline.run(engine):
            yield result
    finally:
        engine.stop()
