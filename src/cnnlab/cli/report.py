"""``cnnlab report``: the course's tables and plots reproduced on this machine, as one web page.
The work is ``cnnlab.report.build_report``; this module parses, shows progress and prints the
summary."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.common import add_command

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "report",
        help="build the report: the zoo, its costs and speed here, the roofline and guidelines, as a web page",
        description=(
            "Build every selected model, count it exactly against the reference numbers, time it here\n"
            "(eager and the fastest verified runtime), place it on this machine's roofline, run\n"
            "ShuffleNet V2's guideline experiments and draw the course's figures. Writes\n"
            "OUT/index.html (one self-contained page), OUT/README.md, OUT/data.json (every number) and\n"
            "OUT/figures/*.png|svg. Measurements are cached: a second run only redoes what changed.\n\n"
            "Exit codes: 0 done, 2 bad input, 130 interrupted (the previous page is left as it was)."
        ),
    )
    parser.add_argument("--out", default="report", metavar="DIR", help="the report folder")
    parser.add_argument("--quick", action="store_true",
                        help="a representative subset of 16 models, fewer repeats, quick ceilings and guidelines")
    parser.add_argument("--models", metavar="PATTERN",
                        help="only the models matching PATTERN (case-insensitive wildcards, e.g. 'mobilenet*')")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to measure")
    parser.add_argument("--no-train", action="store_true", help="leave out the training section")
    parser.add_argument("--no-cache", action="store_true", help="measure everything; neither read nor write the cache")
    parser.add_argument("--remeasure", action="store_true",
                        help="time everything again (a quiet machine's numbers replace the cached ones)")
    parser.add_argument("--open", action="store_true", help="open the page in the web browser when done")
    return parser


class _Progress:
    """A rich progress bar over the sections on a terminal (stderr), plain lines otherwise."""

    def __init__(self) -> None:
        from cnnlab.cli.common import _is_terminal

        self.bar = None
        if _is_terminal(sys.stderr):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.fields[section]:<11}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.description}"),
                                console=Console(file=sys.stderr), transient=True)
            self.task = self.bar.add_task("", total=1, section="")
            self.bar.start()

    def step(self, section: str, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total, section=section, description="")
        else:
            print(f"cnnlab report: [{done + 1 if done < total else done}/{total}] {section}", file=sys.stderr,
                  flush=True)

    def say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.errors import UsageError

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device here")
    from cnnlab.bench import load_warning
    from cnnlab.report import build_report

    warning = load_warning()
    if warning:
        print(f"cnnlab report: {warning}", file=sys.stderr, flush=True)
    progress = _Progress()
    try:
        try:
            result = build_report(args.out, quick=args.quick, models=args.models, device=args.device,
                                  train=not args.no_train, use_cache=not args.no_cache, remeasure=args.remeasure,
                                  say=progress.say, step=progress.step)
        except ValueError as exc:  # a pattern that matches nothing, an --out that is a file
            raise UsageError(str(exc)) from None
    finally:
        progress.close()
    for line in result.data["summary"][:5]:
        print(line)
    print(f"report: {result.index.resolve()} ({result.seconds:.0f} s; {result.cache_hits} cached, "
          f"{result.cache_misses} measured)")
    if args.open:
        import webbrowser

        webbrowser.open(result.index.resolve().as_uri())
    return 0
