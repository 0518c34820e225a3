"""``cnnlab profile NAME``: per-layer params, MACs, FLOPs, memory access and receptive field of
a registered model or of your own module (``path/to/file.py:attr``)."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.common import add_command, add_format_option
from cnnlab.cli.target import add_analysis_options

__all__ = ["add_parser", "run"]

MODEL_HELP = (
    "a registered model (see `cnnlab models`), or path/to/file.py:attr for your own: an "
    "nn.Module instance, or a class or function returning one (called with the --arg values)"
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "profile",
        help="per-layer params, MACs, FLOPs, memory access and receptive field",
        description=(
            "Analyse one forward pass of a model on the meta device (nothing is allocated) and print\n"
            "the cost of each layer. Tables use readable units (15.47 G); csv and json give exact\n"
            "integers and a `complete` field. An INCOMPLETE analysis (an op without a counting\n"
            "rule) is always reported on stderr.\n\n"
            "Exit codes: 0 done, 1 an error in your model's code (one line; --traceback for all),\n"
            "2 bad input."
        ),
    )
    parser.add_argument("name", help=MODEL_HELP)
    add_analysis_options(parser)
    parser.add_argument("--depth", type=int, help="aggregate the table to this module depth, each row with its subtree's totals (0: the "
             "model only; default: every layer)")
    add_format_option(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.common import UsageError, print_rich, warn_incomplete
    from cnnlab.cli.target import analyse

    if args.depth is not None and args.depth < 0:
        raise UsageError(f"--depth must be >= 0, got {args.depth}")
    result = analyse(args, args.name)
    if args.depth is not None:
        result = result.at_depth(args.depth)
    warn_incomplete(result)
    if args.format == "table":
        print_rich(result.to_rich(), result.to_table())
        return 0
    render = {"markdown": result.to_markdown, "csv": result.to_csv, "json": result.to_json}
    print(render[args.format]().rstrip("\n"))
    return 0
