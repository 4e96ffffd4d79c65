"""The commands beside ``scan``: ``port``, ``local``, ``diff``, ``merge`` and ``registry``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated

import typer

from scanner import __version__
from scanner.cli.app import DiffStatus, Environment, app, env_of
from scanner.errors import ScanError, UsageError
from scanner.registry.store import IANA_XML
from scanner.report import FORMATS, format_for_path, printable
from scanner.report.files import AtomicOutput

if TYPE_CHECKING:
    from scanner.report.merge import Merged


@app.command("port", help="A reference card for one port: registry, attestation, local listeners.")
def port_command(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="The port number, 0-65535.", show_default=False)],
) -> None:
    from scanner.localinfo import listeners
    from scanner.portcard import build_card
    from scanner.registry import load_registry

    env = env_of(ctx)
    if not number.isascii() or not number.isdigit() or int(number) > 65535:
        raise UsageError(f"port must be a number from 0 to 65535, not {number!r}")
    port = int(number)
    try:
        found, hidden = listeners(port)
        can_list = True
    except PermissionError:
        found, hidden, can_list = [], False, False
    lines = build_card(port, load_registry(), found, hidden, can_list=can_list)
    env.stdout.write("\n".join(printable(line) for line in lines) + "\n")


@app.command("local", help="This machine's listening TCP and UDP sockets, with labels.")
def local_command(ctx: typer.Context) -> None:
    from tabulate import tabulate

    from scanner.localinfo import listeners
    from scanner.registry import attestation, load_registry

    env = env_of(ctx)
    registry = load_registry()
    try:
        found, hidden = listeners()
    except PermissionError as exc:
        raise ScanError(f"{exc}; run as root") from exc
    rows = []
    for item in found:
        label = registry.label(item.port, item.protocol)
        rows.append(
            (
                item.protocol,
                item.address,
                str(item.port),
                str(item.pid or "-"),
                printable(item.process or "-"),
                printable(label.service if label is not None else "-"),
                attestation(item.port, item.protocol, registry),
            )
        )
    headers = ("PROTO", "ADDRESS", "PORT", "PID", "PROCESS", "LABEL", "ATTESTATION")
    env.stdout.write(tabulate(rows, headers=headers, disable_numparse=True) + "\n")
    if hidden:
        env.stdout.write("Some owners are hidden: run as root to see other users' processes.\n")


@app.command(
    "diff",
    help="What changed between two reports (any format), among the ports both probed: "
    "exit 0 none, 1 some.",
)
def diff_command(
    ctx: typer.Context,
    old: Annotated[
        str, typer.Argument(metavar="OLD", help="The earlier report.", show_default=False)
    ],
    new: Annotated[
        str, typer.Argument(metavar="NEW", help="The later report.", show_default=False)
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            show_default=False,
            help="Output: table (the default), csv or json.",
        ),
    ] = "table",
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", metavar="FILE", help="Write the diff to FILE."),
    ] = None,
) -> None:
    from scanner.report.diff import DIFF_FORMATS, diff_reports, write_diff
    from scanner.report.read import open_report

    env = env_of(ctx)
    if fmt not in DIFF_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(DIFF_FORMATS)}, not {fmt!r}")
    with open_report(old) as before, open_report(new) as after:  # streamed, read once each
        found = diff_reports(before, after, old_name=old, new_name=new)
    if output is None:
        write_diff(found, fmt, env.stdout, old=old, new=new)
    else:
        with AtomicOutput(output) as sink:
            write_diff(found, fmt, sink.stream, old=old, new=new)
    if fmt != "table" or output is not None:
        # The table ends with them; other outputs keep to their format: stderr says them.
        for warning in found.warnings:
            env.say(f"warning: {warning}")
    raise typer.Exit(DiffStatus.CHANGED if found.changes else DiffStatus.SAME)


@app.command("merge", help="Join the reports of a sharded scan into one report.")
def merge_command(
    ctx: typer.Context,
    files: Annotated[list[str], typer.Argument(help="Shard reports.", show_default=False)],
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Write the merged report to FILE (format by extension).",
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="Report format: table, csv, json, jsonl, xml or grepable.",
        ),
    ] = None,
) -> None:
    from scanner.report.merge import merge_reports
    from scanner.report.read import open_report

    env = env_of(ctx)
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt is None:
        fmt = format_for_path(output) if output is not None else "table"
    with contextlib.ExitStack() as stack:
        # Streamed: each report is read once, into the merge's external sort.
        inputs = [(name, stack.enter_context(open_report(name))) for name in files]
        merged = stack.enter_context(merge_reports(inputs))
        _write_merge(env, merged, files, fmt, output)


def _write_merge(
    env: Environment, merged: Merged, files: list[str], fmt: str, output: str | None
) -> None:
    from scanner.report.merge import write_merged

    if merged.missing:
        env.say(f"warning: {merged.missing}: the merged report is marked incomplete")
    sink = AtomicOutput(output) if output is not None else None
    try:
        write_merged(
            merged,
            fmt,
            sink.stream if sink is not None else env.stdout,
            version=__version__,
            command=["portprobe", *env.argv],
        )
    except BaseException:
        if sink is not None:
            sink.discard()
        raise
    if sink is not None:
        sink.commit()
        env.say(f"merged {len(files)} reports, {merged.count} results -> {output}")


registry_app = typer.Typer(help="The shipped IANA port registry: show, update, roll back.")
app.add_typer(registry_app, name="registry")


@registry_app.command("info", help="Where the registry data comes from, and how much of it.")
def registry_info(ctx: typer.Context) -> None:
    from scanner.registry import load_registry

    env = env_of(ctx)
    registry = load_registry()
    lines = [f"{len(registry)} records; {registry.source}; dated {registry.date}", "sources:"]
    lines += [f"  {s.date}  {s.name}: {s.fields}" for s in registry.sources]
    env.stdout.write("\n".join(printable(line) for line in lines) + "\n")


@registry_app.command(
    "update", help="Refresh the registry from IANA's XML or CSV (default: IANA's XML)."
)
def registry_update(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Option("--from", help="A file or URL of IANA's XML or CSV.", show_default=False),
    ] = IANA_XML,
) -> None:
    from scanner.registry import update_registry

    env = env_of(ctx)
    result = update_registry(source)
    before = f" (was {result.previous_records})" if result.previous_records is not None else ""
    env.stdout.write(f"registry updated: {result.records} records{before} -> {result.path}\n")


@registry_app.command("rollback", help="Go back to the registry data used before the last update.")
def registry_rollback(ctx: typer.Context) -> None:
    from scanner.registry import load_registry, rollback_registry

    env = env_of(ctx)
    path = rollback_registry()
    load_registry.cache_clear()
    registry = load_registry()
    env.stdout.write(f"registry rolled back to {path}: {len(registry)} records\n")
