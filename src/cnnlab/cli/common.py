"""What every command shares: the parser classes, the top-level error handler and the output
helpers (tables that respect the terminal, the INCOMPLETE warning).

Importing this module imports no torch (``cnnlab --help`` must stay fast); the helpers that
need torch or rich import them when called.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence, TextIO

from cnnlab.cli.errors import TRACE_HINT, Failure, UsageError, classify

__all__ = [
    "FORMATS",
    "CnnlabParser",
    "HelpFormatter",
    "Outcome",
    "UsageError",
    "add_command",
    "add_format_option",
    "print_table",
    "render_records",
    "report_errors",
    "warn_incomplete",
]

FORMATS = ("table", "markdown", "csv", "json")


class CnnlabParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised as UsageError), not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; each option's help ends with its default, unless the
    default is "nothing" (None, False, an empty list) or the help already mentions it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def add_command(subparsers: Any, name: str, *, help: str, description: str) -> CnnlabParser:
    """A command's sub-parser with the shared formatter and the ``--traceback`` option."""
    parser = subparsers.add_parser(
        name, help=help, description=description, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--traceback", action="store_true",
        help="on an error, print the whole Python traceback instead of one line",
    )
    return parser


def add_format_option(parser: argparse.ArgumentParser) -> None:
    """``--format table|markdown|csv|json``."""
    parser.add_argument(
        "--format", choices=FORMATS, default="table",
        help="table (readable units), markdown, csv or json (exact integers)",
    )


# -- errors -----------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What ``report_errors`` decided: the exit code, and the parsed arguments once known."""

    code: int = 0
    args: argparse.Namespace | None = field(default=None, repr=False)


class report_errors:  # noqa: N801 - used as a context manager, like contextlib's helpers
    """Turn whatever a command raises into one line on stderr and an exit code.

    ``--help``'s SystemExit becomes its code; UsageError and cnnlab's validation errors exit 2;
    an error in the user's code (classified by ``cnnlab.cli.errors``) exits 1. With
    ``--traceback`` the whole trace is printed before the line.
    """

    def __init__(self, argv: Sequence[str] | None) -> None:
        self.outcome = Outcome()
        self.argv = list(sys.argv[1:] if argv is None else argv)

    def __enter__(self) -> Outcome:
        return self.outcome

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        if isinstance(exc, SystemExit):
            code = exc.code
            self.outcome.code = code if isinstance(code, int) else (0 if code is None else 2)
            return True
        if isinstance(exc, KeyboardInterrupt):
            print("cnnlab: interrupted", file=sys.stderr)
            self.outcome.code = 130
            return True
        if isinstance(exc, BrokenPipeError):  # `cnnlab models | head`: not an error
            _silence_stdout()
            self.outcome.code = 0
            return True
        if not isinstance(exc, Exception):
            return False
        failure = exc if isinstance(exc, Failure) else classify(exc)
        message = failure.message
        if self._wants_traceback():
            import traceback

            cause = failure.cause if failure.cause is not None else exc
            traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
            message = message.replace(TRACE_HINT, "")  # it was just printed
        print(f"cnnlab: error: {message}", file=sys.stderr)
        self.outcome.code = failure.code
        return True

    def _wants_traceback(self) -> bool:
        args = self.outcome.args
        if args is not None:
            return bool(getattr(args, "traceback", False))
        return "--traceback" in self.argv


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at devnull so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests' capture)
        pass


# -- output -----------------------------------------------------------------------------------
def warn_incomplete(result: Any, label: str | None = None) -> None:
    """The analysis' INCOMPLETE line on stderr, whatever the output format; nothing when the
    analysis is complete."""
    line = getattr(result, "warning", None)
    if line is None and not getattr(result, "complete", True):
        line = "INCOMPLETE: " + ", ".join(
            f"{u['op']} x{u['count']}" for u in getattr(result, "uncounted_ops", [])
        )
    if line:
        print(f"cnnlab: warning: {label or result.model}: {line}", file=sys.stderr)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def print_rich(table: Any, fallback: str, *, file: TextIO | None = None) -> None:
    """A rich table on a terminal when it fits the width (``COLUMNS`` or the terminal's;
    colours off under ``NO_COLOR``), else ``fallback`` — a plain table whose long lines the
    terminal wraps: a number is never cut to fit."""
    stream = sys.stdout if file is None else file
    if not _is_terminal(stream):
        print(fallback, file=stream)
        return
    import io

    from rich.console import Console

    console = Console(file=stream)  # reads COLUMNS and NO_COLOR itself
    probe = Console(width=100_000, file=io.StringIO(), no_color=True)
    probe.print(table)
    needed = max((len(line.rstrip()) for line in probe.file.getvalue().splitlines()), default=0)
    if needed > console.width:
        print(fallback, file=stream)
    else:
        console.print(table)


def print_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: set[int],
    *,
    title: str | None = None,
    caption: str | None = None,
    file: TextIO | None = None,
) -> None:
    """Rows as a rich table on a terminal (see ``print_rich``), as plain text otherwise."""
    from cnnlab.textable import render_table

    plain = render_table(header, rows, numeric)
    if title:
        plain = f"{title}\n\n{plain}"
    if caption:
        plain = f"{plain}\n\n{caption}"
    stream = sys.stdout if file is None else file
    if not _is_terminal(stream):
        print(plain, file=stream)
        return
    from rich.table import Table

    table = Table(title=title, caption=caption, header_style="bold cyan")
    for i, name in enumerate(header):
        table.add_column(name, justify="right" if i in numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(*map(str, row))
    print_rich(table, plain, file=stream)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value))
    return "" if value is None else value


def render_records(fmt: str, records: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """``records`` (exact values) as CSV or JSON; in CSV shapes (lists) become ``1x3x224x224``,
    None an empty cell and booleans ``true``/``false`` (as in ``profile``'s CSV and JSON)."""
    if fmt == "json":
        import json

        return json.dumps(records, indent=2)
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow(_csv_cell(record.get(c)) for c in columns)
    return buffer.getvalue().rstrip("\n")

