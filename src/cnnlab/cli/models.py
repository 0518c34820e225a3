"""``cnnlab models [PATTERN]``: the zoo with our parameter and MAC counts next to the published
ones. The table comes from ``cnnlab.catalog.zoo_rows`` (cached per model, cnnlab and torch
version, with the zoo's listing, so a cached run imports no torch); this module parses and
prints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.common import UsageError, add_command, add_format_option, print_table, render_records

__all__ = ["add_parser", "run"]

_COLUMNS = ("name", "family", "year", "input_size", "params", "ref_params", "macs", "ref_macs",
            "complete", "match")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "models",
        help="list the zoo with parameter and MAC counts against the references",
        description=(
            "List the registered models with the parameters and MACs cnnlab.analyze counts at each\n"
            "model's native input, next to the published reference counts. Counts are cached in\n"
            "$CNNLAB_CACHE_DIR, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab."
        ),
    )
    parser.add_argument(
        "pattern", nargs="?",
        help="fnmatch pattern, case-insensitive, e.g. 'vgg*' or 'ResNet?0' (default: every model)",
    )
    add_format_option(parser)
    parser.add_argument("--no-cache", action="store_true", help="recompute every count; do not read or write the cache")
    return parser


def _progress_bar() -> tuple[Any, Any]:
    """A rich progress bar on stderr when stderr is a terminal (quiet when piped): the
    ``progress(done, total, name)`` callback and a function that closes the bar."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("analysing {task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=Console(file=sys.stderr), transient=True)
    state: dict[str, Any] = {}

    def progress(done: int, total: int, name: str) -> None:
        if "task" not in state:
            bar.start()
            state["task"] = bar.add_task(name, total=total)
        bar.update(state["task"], completed=done, description=name)

    return progress, bar.stop


def run(args: argparse.Namespace) -> int:
    # with a warm cache nothing here imports torch: the table comes from the cache file
    from cnnlab.catalog import pattern_hint, zoo_names, zoo_rows
    from cnnlab.textable import human_count

    progress, close = _progress_bar()
    try:
        rows = zoo_rows(args.pattern, use_cache=not args.no_cache, progress=progress)
    finally:
        close()
    if args.pattern is not None and not rows:
        hint = pattern_hint(args.pattern, names=zoo_names(use_cache=not args.no_cache))
        raise UsageError(f"no model matches {args.pattern!r}; {hint}")
    incomplete = [r.name for r in rows if not r.complete]
    if incomplete:
        print(f"cnnlab: warning: INCOMPLETE counts (an op without a counting rule) for {', '.join(incomplete)}; "
              "run `cnnlab profile NAME` for details", file=sys.stderr)
    if args.format in ("csv", "json"):
        print(render_records(args.format, [r.to_dict() for r in rows], _COLUMNS))
        return 0
    verdict = {True: "yes", False: "NO", None: "-"}
    header = ["name", "family", "year", "input", "params", "params (ref)", "MACs", "MACs (ref)", "match"]
    table = [
        [r.name, r.family, str(r.year), "x".join(map(str, r.input_size)), human_count(r.params),
         human_count(r.ref_params), human_count(r.macs) + ("" if r.complete else " (incomplete)"),
         human_count(r.ref_macs), verdict[r.match]]
        for r in rows
    ]
    matched = sum(r.match is True for r in rows)
    checked = sum(r.match is not None for r in rows)
    summary = (f"{len(rows)} models; {matched} of {checked} with reference counts match them "
               "(params and MACs within models.csv's tolerances; MACs by cnnlab.analyze)")
    if args.format == "markdown":
        from cnnlab.textable import render_markdown

        print(render_markdown(header, table) + "\n\n" + summary)
    else:
        print_table(header, table, numeric={4, 5, 6, 7}, caption=summary)
    return 0
