"""The progress bar: rich, on stderr, only on a terminal, gone before the report prints."""

from __future__ import annotations

import asyncio
from typing import Any

from scanner.cli.app import Environment
from scanner.engine import Scan

__all__ = ["Progress"]


class Progress:
    """A progress bar with an ETA on stderr, shown once a scan has run for a second."""

    DELAY = 1.0

    def __init__(self, scan: Scan, env: Environment) -> None:
        self._scan = scan
        self._env = env
        self._bar: Any = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        await asyncio.sleep(self.DELAY)
        stats = self._scan.stats
        self._bar = Progress(
            TextColumn("scanning"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} probes"),
            TimeRemainingColumn(),
            console=Console(file=self._env.stderr),
            transient=True,
        )
        task = self._bar.add_task("scan", total=stats.total)
        with self._bar:
            while True:
                self._bar.update(task, completed=stats.done)
                await asyncio.sleep(0.2)

    def close(self) -> None:
        self._task.cancel()
