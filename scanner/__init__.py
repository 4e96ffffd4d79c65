"""portprobe: an asyncio port scanner that reports what really listens.

The engine is a library. Scan hosts and ports as an async iterator of results::

    import asyncio
    import scanner

    async def main() -> None:
        async for result in scanner.scan(["198.18.0.2"], "22,80,443"):
            a = result.assessment
            print(result.host, result.port, result.state, a.label, a.evidence, a.verdict)

    asyncio.run(main())

Each result carries what the command line shows: the IANA label, the evidence of what an
open port speaks, the verdict and its warning (``scanner.pipeline`` joins them). The
command line (``portprobe``) is a thin layer over this.
"""

from __future__ import annotations

__version__ = "0.1.0"

from scanner.api import scan
from scanner.engine import Scan, ScanStats
from scanner.errors import (
    OutputError,
    PortprobeError,
    PortSpecError,
    ScanError,
    TargetError,
    TargetFileError,
    UsageError,
)
from scanner.models import (
    Assessment,
    EvidenceConfig,
    Port,
    PortState,
    Proto,
    Reason,
    Result,
    ScanConfig,
    Timing,
)
from scanner.pipeline import Pipeline

__all__ = [
    "Assessment",
    "EvidenceConfig",
    "OutputError",
    "Pipeline",
    "Port",
    "PortSpecError",
    "PortState",
    "PortprobeError",
    "Proto",
    "Reason",
    "Result",
    "Scan",
    "ScanConfig",
    "ScanError",
    "ScanStats",
    "TargetError",
    "TargetFileError",
    "Timing",
    "UsageError",
    "__version__",
    "scan",
]
