"""The ``portprobe`` command line: parse, build a request, run the scan, map errors to exits.

The only package that imports typer or touches the terminal. It stays thin: probing lives
in the engine, assessing in the results pipeline (``scanner.pipeline``), every format in
``scanner.report``. Its rooms, in import order:

- ``app``: the Typer app, the :class:`Environment` (streams), exit statuses, ``main``
  and the console script's ``entry``;
- ``options``: the scan command's option declarations, defaults from the config classes;
- ``habits``: nmap's options with nmap's meaning (aliases, ``-T``, outputs, ``-6``);
- ``request``: options checked and turned into a :class:`ScanRequest` (``--resume`` too);
- ``progress``: the progress bar;
- ``run``: one scan, from the pipeline's results to reports and an exit status;
- ``ping``: ``-sn``, a host discovery into the same outputs;
- ``scan`` and ``commands``: the commands themselves.
"""

from __future__ import annotations

from scanner.cli import commands, scan  # noqa: F401  (they register their commands)
from scanner.cli.app import DiffStatus, Environment, ExitStatus, app, entry, main
from scanner.cli.request import ScanRequest
from scanner.cli.run import run_scan

__all__ = [
    "DiffStatus",
    "Environment",
    "ExitStatus",
    "ScanRequest",
    "app",
    "entry",
    "main",
    "run_scan",
]
