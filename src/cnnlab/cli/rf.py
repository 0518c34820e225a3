"""``cnnlab rf NAME``: the receptive field and jump (effective stride) of each layer, and of the
deepest spatial feature map."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.common import add_command, add_format_option
from cnnlab.cli.profile import MODEL_HELP
from cnnlab.cli.target import add_analysis_options

__all__ = ["add_parser", "run"]

_COLUMNS = ("name", "type", "output_shape", "receptive_field", "jump", "whole", "complete")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "rf",
        help="receptive field and jump per layer",
        description=(
            "The receptive field (input pixels that can affect one output position) and jump\n"
            "(input pixels between neighbouring outputs) of each layer with a spatial output.\n"
            "The model's field is that of the deepest spatial feature map. A field that depends on\n"
            "the whole input (after global pooling or attention over positions) is shown as the\n"
            "input's size, marked whole, with no jump; after an op without a counting rule it is\n"
            "unknown, and the INCOMPLETE line on stderr says so."
        ),
    )
    parser.add_argument("name", help=MODEL_HELP)
    add_analysis_options(parser)
    add_format_option(parser)
    return parser


def _whole(field: Any, jump: Any) -> bool:
    """The analysis reports a field that depends on the whole input (after global pooling or
    attention over positions) as the input's extent with no jump."""
    return field is not None and jump is None


def _cell(field: Any, jump: Any) -> str:
    if field is None:
        return "-"
    return f"{field} (whole)" if _whole(field, jump) else str(field)


def summary(result: Any) -> str:
    """The model's field in words: a number, the whole input, unknown, or none at all."""
    shape = "x".join(map(str, result.input_shape))
    field, jump = result.total["receptive_field"], result.total["jump"]
    head = "receptive field of the deepest spatial feature map"
    if len(result.input_shape) < 3:
        return f"no receptive field: the input {shape} has no spatial dimensions"
    if field is None:
        why = "" if result.complete else " (after an op without a counting rule)"
        return f"{head}: unknown{why} on a {shape} input"
    if _whole(field, jump):
        return f"{head}: the whole input ({field}) on a {shape} input"
    return f"{head}: {field} (jump {jump}) on a {shape} input"


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.result import MODEL_ROW, TOTAL_ROW
    from cnnlab.cli.common import print_table, render_records, warn_incomplete
    from cnnlab.cli.target import analyse

    result = analyse(args, args.name)
    warn_incomplete(result)
    layers = [row for row in result.layers if row["receptive_field"] is not None]
    total_rf, total_jump = result.total["receptive_field"], result.total["jump"]
    fields = ("name", "type", "output_shape", "receptive_field", "jump")
    if args.format == "json":
        import json

        print(json.dumps({
            "model": result.model, "input_shape": list(result.input_shape), "complete": result.complete,
            "receptive_field": total_rf, "jump": total_jump, "whole": _whole(total_rf, total_jump),
            "layers": [{**{k: row[k] for k in fields}, "whole": _whole(row["receptive_field"], row["jump"])}
                       for row in layers],
        }, indent=2))
        return 0
    if args.format == "csv":
        records = [{**row, "whole": _whole(row["receptive_field"], row["jump"]), "complete": result.complete}
                   for row in layers]
        records.append({"name": TOTAL_ROW, "type": "", "output_shape": None, "receptive_field": total_rf,
                        "jump": total_jump, "whole": _whole(total_rf, total_jump), "complete": result.complete})
        print(render_records("csv", records, _COLUMNS))
        return 0
    header = ["layer", "type", "output", "RF", "jump"]
    rows = [[row["name"] or MODEL_ROW, row["type"], "x".join(map(str, row["output_shape"] or [])),
             _cell(row["receptive_field"], row["jump"]), "-" if row["jump"] is None else str(row["jump"])]
            for row in layers]
    if args.format == "markdown":
        from cnnlab.textable import render_markdown

        print(render_markdown(header, rows) + "\n\n" + summary(result))
    else:
        print_table(header, rows, numeric={3, 4}, caption=summary(result))
    return 0
