"""The progress bar: rich, on stderr, only on a terminal, gone before the report prints.

It names its phase: ``probing`` while the scan sends probes, then ``identifying services``
while the evidence of open ports is still coming. :meth:`Progress.close` stops it at once
and clears its line, so that nothing printed after it starts on the bar's line.
"""

from __future__ import annotations

import asyncio
from typing import Any

from scanner.cli.app import Environment
from scanner.engine import Scan
from scanner.pipeline import Pipeline

__all__ = ["Progress"]


class Progress:
    """A progress bar with an ETA on stderr, shown once a scan has run for a second."""

    DELAY = 1.0

    def __init__(self, scan: Scan, env: Environment, pipeline: Pipeline | None = None) -> None:
        self._scan = scan
        self._pipeline = pipeline
        self._env = env
        self._bar: Any = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    def phase(self) -> str:
        """What the scan is doing now."""
        stats = self._scan.stats
        if stats.done >= stats.total and self._pipeline is not None:
            pending = self._pipeline.pending_evidence
            if pending:
                return f"identifying services ({pending} open port{'s' if pending != 1 else ''})"
        return "probing"

    async def _run(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        await asyncio.sleep(self.DELAY)
        stats = self._scan.stats
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} probes"),
            TimeRemainingColumn(),
            console=Console(file=self._env.stderr),
            transient=True,
        )
        task = self._bar.add_task(self.phase(), total=stats.total)
        self._bar.start()
        while True:
            self._bar.update(task, completed=stats.done, description=self.phase())
            await asyncio.sleep(0.2)

    def close(self) -> None:
        """Stop the bar now and clear its line (transient), then end its task."""
        self._task.cancel()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
