"""``cnnlab rf NAME``: the receptive field and jump (effective stride) of each layer, and of the
deepest spatial feature map."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.common import add_command, add_format_option
from cnnlab.cli.profile import MODEL_HELP
from cnnlab.cli.target import add_analysis_options

__all__ = ["add_parser", "run"]

_COLUMNS = ("name", "type", "output_shape", "receptive_field", "jump", "complete")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "rf",
        help="receptive field and jump per layer",
        description=(
            "The receptive field (input pixels that can affect one output position) and jump\n"
            "(input pixels between neighbouring outputs) of each layer with a spatial output.\n"
            "The model's field is that of the deepest spatial feature map; after an op without a\n"
            "counting rule it is unknown, and the INCOMPLETE line on stderr says so."
        ),
    )
    parser.add_argument("name", help=MODEL_HELP)
    add_analysis_options(parser)
    add_format_option(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.result import MODEL_ROW, TOTAL_ROW
    from cnnlab.cli.common import print_table, render_records, warn_incomplete
    from cnnlab.cli.target import analyse

    result = analyse(args, args.name)
    warn_incomplete(result)
    layers = [row for row in result.layers if row["receptive_field"] is not None]
    total_rf, total_jump = result.total["receptive_field"], result.total["jump"]
    if args.format == "json":
        import json

        print(json.dumps({
            "model": result.model, "input_shape": list(result.input_shape), "complete": result.complete,
            "receptive_field": total_rf, "jump": total_jump,
            "layers": [{k: row[k] for k in ("name", "type", "output_shape", "receptive_field", "jump")} for row in layers],
        }, indent=2))
        return 0
    if args.format == "csv":
        records = [{**row, "complete": result.complete} for row in layers]
        records.append({"name": TOTAL_ROW, "type": "", "output_shape": None, "receptive_field": total_rf,
                        "jump": total_jump, "complete": result.complete})
        print(render_records("csv", records, _COLUMNS))
        return 0
    cell = lambda v: "-" if v is None else str(v)  # noqa: E731
    header = ["layer", "type", "output", "RF", "jump"]
    rows = [[row["name"] or MODEL_ROW, row["type"], "x".join(map(str, row["output_shape"] or [])),
             cell(row["receptive_field"]), cell(row["jump"])] for row in layers]
    shape = "x".join(map(str, result.input_shape))
    if total_rf is None:
        summary = f"receptive field of the deepest spatial feature map: unknown on a {shape} input"
    else:
        summary = (f"receptive field of the deepest spatial feature map: {total_rf} "
                   f"(jump {cell(total_jump)}) on a {shape} input")
    if args.format == "markdown":
        from cnnlab.textable import render_markdown

        print(render_markdown(header, rows) + "\n\n" + summary)
    else:
        print_table(header, rows, numeric={3, 4}, caption=summary)
    return 0
