"""The command-line application: the Typer app, the streams, and the exit statuses.

Exit statuses (:class:`ExitStatus`): 0 success, 1 a scan that could not finish, 2 bad
input (always one line on stderr, never a traceback), 3 a finished scan that found open
ports its policy (``--expect``) does not allow, 130 interrupted by SIGINT or SIGTERM, 141
(quietly) the reader of standard output went away, as a tool killed by SIGPIPE exits
(``portprobe ... | head -1``; a report file is still completed). ``diff`` has its own
(:class:`DiffStatus`): 0 no change, 1 changes (2 bad input).
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import functools
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn, TextIO

import typer
import typer.core
from click import Context, HelpFormatter
from click.exceptions import ClickException, NoSuchOption
from typer.core import TyperGroup

from scanner import __version__
from scanner.errors import OutputClosed, PortprobeError, ScanError, UsageError
from scanner.report import printable
from scanner.targets import Resolver
from scanner.text import escape_unencodable

__all__ = ["DiffStatus", "Environment", "ExitStatus", "app", "env_of", "main", "write_failure"]


@enum.unique
class ExitStatus(enum.IntEnum):
    """How ``portprobe`` exits."""

    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    POLICY = 3  # the scan finished; open ports the policy does not allow
    INTERRUPTED = 130
    OUTPUT_CLOSED = 141  # 128 + SIGPIPE: what a shell shows for `cat` after `| head -1`


@enum.unique
class DiffStatus(enum.IntEnum):
    """How ``portprobe diff`` exits (bad input is :attr:`ExitStatus.USAGE`)."""

    SAME = 0
    CHANGED = 1


@dataclass
class Environment:
    """The streams the command line talks to; tests replace them."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    resolver: Resolver | None = None  # None: the system's resolver
    argv: list[str] = field(default_factory=lambda: sys.argv[1:])

    @property
    def stderr_isatty(self) -> bool:
        """Whether stderr is a terminal (progress bars go only there)."""
        return bool(getattr(self.stderr, "isatty", lambda: False)())

    def say(self, message: str) -> None:
        """One line to stderr, prefixed with the program name.

        Messages quote user input (paths, targets) and errors: control characters are
        escaped, so a message stays one line and cannot drive the terminal.
        """
        self.stderr.write(f"portprobe: {printable(message)}\n")
        self.stderr.flush()


def env_of(ctx: typer.Context) -> Environment:
    """The :class:`Environment` a command runs in (the real one unless a test gave one)."""
    return ctx.obj if isinstance(ctx.obj, Environment) else Environment()


# Typer writes "\\[default: ...]" and "\\[required]" in every help text when rich is
# installed (escaping them for rich's markup even with rich_markup_mode None): our help is
# plain text, so it must not.
typer.core.HAS_RICH = False

#: The scan options ``portprobe --help`` shows (``portprobe scan --help`` shows them all).
MAIN_OPTIONS = (
    "ports", "top", "fast", "tcp", "udp", "ping_scan", "discover", "targets_file", "output",
    "xml_output", "all_outputs", "fmt", "show_all", "timing_template", "verbose", "expect",
    "no_evidence",
)  # fmt: skip

EXAMPLES = (
    ("portprobe 127.0.0.1 -p 22,80,1000-2000", "these ports of one host"),
    ("portprobe 127.0.0.0/29 -F -T4", "the top 100 ports, fast"),
    ("portprobe -sn 127.0.0.0/29", "which hosts are up (no port scan)"),
    ("portprobe -iL hosts.txt -p- -oA audit", "all ports; audit.nmap, .xml and .gnmap"),
    ("portprobe diff week46.xml week47.xml", "what changed (exit 1 if anything did)"),
)


class _DefaultToScan(TyperGroup):
    """A group whose default command is ``scan``: ``portprobe HOST -p 22`` just works."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        roots = ("--help", "-h", "--version", "-V")
        if args and args[0] not in self.commands and args[0] not in roots:
            args = ["scan", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: Context, formatter: HelpFormatter) -> None:
        formatter.write_usage("portprobe", "[OPTIONS] TARGET...  |  portprobe COMMAND [ARGS]...")

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        """The scan's usage, its main options, examples, then the commands."""
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        scan = self.commands.get("scan")
        if scan is not None:
            rows = [
                record
                for param in scan.params
                if param.name in MAIN_OPTIONS and (record := param.get_help_record(ctx)) is not None
            ]
            with formatter.section("Main scan options (portprobe scan --help lists them all)"):
                formatter.write_dl(rows)
        with formatter.section("Examples"):
            formatter.write_dl(list(EXAMPLES))
        self.format_options(ctx, formatter)


app = typer.Typer(
    cls=_DefaultToScan,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Scan TCP and UDP ports: exact states, each open port's IANA label, what it was seen to "
        "speak, and whether the two agree. 'portprobe TARGET... [OPTIONS]' runs the scan "
        "command; nmap's options work with nmap's meaning."
    ),
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"portprobe {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """portprobe: what really listens on your hosts."""


def write_failure(exc: BaseException) -> ScanError:
    """A failed write (disk full, a closed pipe) as the one-line error the user sees
    (:class:`OutputClosed` for a closed pipe: not shown, see :class:`ExitStatus`)."""
    if isinstance(exc, ScanError):
        return exc
    if isinstance(exc, BrokenPipeError):
        return OutputClosed("the output was closed")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ScanError(f"writing the report failed: {reason}")


def _configure_logging(env: Environment) -> None:
    handler = logging.StreamHandler(env.stderr)
    handler.setFormatter(logging.Formatter("portprobe: warning: %(message)s"))
    logger = logging.getLogger("scanner")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> NoReturn:
    """The console script: run the command line and exit with its status.

    ``argv`` defaults to ``sys.argv[1:]``; ``env`` (the streams and resolver) to the real ones.
    """
    if sys.stdout is None or sys.stderr is None:  # started with `>&-`: the fd was closed
        if sys.stderr is not None:
            with contextlib.suppress(OSError):
                sys.stderr.write("portprobe: error: standard output is closed\n")
        sys.exit(int(ExitStatus.USAGE))
    env = env if env is not None else Environment()
    if argv is not None:
        env.argv = list(argv)
    # Output never depends on the locale: what the terminal cannot show is escaped.
    for stream in (sys.stdout, sys.stderr, env.stdout, env.stderr):
        escape_unencodable(stream)
    _configure_logging(env)
    command = typer.main.get_command(app)
    for sub in getattr(command, "commands", {}).values():
        sub.callback = _closed_pipe_is_output_closed(sub.callback)
    if not (list(argv) if argv is not None else sys.argv[1:]):
        # Help, and one line saying why (Click would print the help as the error message).
        env.stdout.write(command.get_help(Context(command, info_name="portprobe")) + "\n")
        env.say("error: no command or target given")
        sys.exit(int(ExitStatus.USAGE))
    try:
        _refuse_nmap_options(command, list(argv) if argv is not None else sys.argv[1:])
        status = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="portprobe",
            standalone_mode=False,
            obj=env,
        )
    except NoSuchOption as exc:
        # Click suggests the option closest in spelling, often an unrelated one (--reason
        # -> --resume, --min-rate -> --rate): say the option is unknown, and where to look.
        env.say(f"error: no such option: {exc.option_name} (portprobe scan --help lists them)")
        status = ExitStatus.USAGE
    except ClickException as exc:
        env.say(f"error: {exc.format_message()}")
        status = ExitStatus.USAGE
    except (OutputClosed, BrokenPipeError):
        status = ExitStatus.OUTPUT_CLOSED  # quietly: the reader went away on purpose
    except PortprobeError as exc:
        env.say(f"error: {exc}")
        status = ExitStatus.USAGE if isinstance(exc, UsageError) else ExitStatus.ERROR
    except (KeyboardInterrupt, typer.Abort):
        env.say("interrupted")
        status = ExitStatus.INTERRUPTED
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        status = ExitStatus.OUTPUT_CLOSED
    except OSError as exc:  # a full disk: the output is lost, so say so
        env.say(f"error: {write_failure(exc)}")
        status = ExitStatus.ERROR
        _discard_stdout()
    except ValueError:
        pass  # stdout was closed: nothing buffered to lose
    if status == ExitStatus.OUTPUT_CLOSED:
        _discard_stdout()  # or the interpreter's last flush would complain on stderr
    sys.exit(int(status) if isinstance(status, int) else 0)


def _closed_pipe_is_output_closed(callback: Any) -> Any:
    """``callback`` with a closed pipe raised as :class:`OutputClosed`: Click turns any
    EPIPE that leaves a command into exit status 1, and ``portprobe ... | head -1`` must
    end as a pipe's writer does (141, quietly)."""
    if callback is None:
        return None

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except BrokenPipeError as exc:
            raise OutputClosed("the output was closed") from exc

    return wrapper


def entry() -> NoReturn:
    """The console script (``portprobe``, ``python -m scanner``): :func:`main`, then a quick
    exit.

    By the time :func:`main` exits, every report is written and closed and the streams are
    flushed. The interpreter's teardown would then free a large scan's objects one by one,
    about 0.1 s that only delays the prompt: the exit handlers run, and the process ends
    with ``os._exit``. (Tests call :func:`main`, which exits as usual.)
    """
    try:
        main()
    except SystemExit as done:
        code = done.code
    if isinstance(code, str):  # as the interpreter does with sys.exit("message")
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(code + "\n")
    atexit._run_exitfuncs()  # logging's flush, temporary files' cleanup
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # (None if closed)
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _refuse_nmap_options(command: Any, args: list[str]) -> None:
    """UsageError for an nmap option portprobe lacks, saying what to use instead (a scan's
    arguments only; the other commands have their own options)."""
    from scanner.nmap_options import refuse_unsupported

    if args and args[0] in getattr(command, "commands", {}) and args[0] != "scan":
        return
    scan = command.commands.get("scan")
    known = frozenset(
        name
        for param in getattr(scan, "params", ())
        for name in (*param.opts, *param.secondary_opts)
    )
    refuse_unsupported(args, known)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
