"""The scan engine: concurrency, pacing, retries and adaptive timeouts. It never prints.

Rooms, each with its own "rules and theory" (arrows: may import):

```
base  <-  rtt, deadlines  <-  udp_pacing  <-  core  <-  fanout (+ records)  <-  scan
```

- ``base``: hosts, counters, attempts, the descriptor cap and the outbox of results.
- ``rtt``: RTT estimates (RFC 6298) and the timeouts they give.
- ``deadlines``: the attempts in flight (young ones in a queue, the rest in a heap), and
  the one timer at the earliest deadline.
- ``udp_pacing``: UDP probes at the pace of each host's ICMP budget (``scanner.pacing``).
- ``core``: the sweep: sending, answers, retries and timeouts, in one process.
- ``records``, ``fanout``: worker processes and their binary record stream.
- ``scan``: :class:`Scan`, the public entry point, which picks the runner.
"""

from __future__ import annotations

from scanner.engine.base import (
    MAX_BUFFERED,
    HostTable,
    ScanStats,
    fit_concurrency,
    rare_collections,
)
from scanner.engine.core import SEND_BATCH
from scanner.engine.scan import Scan
from scanner.transport import FD_RESERVE

__all__ = [
    "FD_RESERVE",
    "MAX_BUFFERED",
    "SEND_BATCH",
    "HostTable",
    "Scan",
    "ScanStats",
    "fit_concurrency",
    "rare_collections",
]
