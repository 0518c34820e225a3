"""``cnnlab compare A B ...``: the totals of several models side by side, with ratios to the
first. Column names are those of ``cnnlab profile`` (tables) and of its JSON (csv, json)."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.common import add_command, add_format_option
from cnnlab.cli.target import add_analysis_options

__all__ = ["add_parser", "run", "METRICS"]

# (JSON/CSV field, table header as `cnnlab profile` names it)
METRICS = (
    ("params", "params"),
    ("macs", "MACs"),
    ("flops", "FLOPs"),
    ("mem_access", "mem access"),
    ("activations", "activations"),
    ("peak_activation_bytes", "peak activation bytes"),
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "compare",
        help="side-by-side totals, with ratios to the first model",
        description=(
            "Analyse several models with the same options and print their totals side by side,\n"
            "with each count's ratio to the first model's ('-' where the first is 0). The\n"
            "`complete` column says whether every op had a counting rule."
        ),
    )
    parser.add_argument(
        "names", nargs="+", metavar="NAME",
        help="registered models or path/to/file.py:attr; the first is the baseline of the ratios",
    )
    add_analysis_options(parser)
    add_format_option(parser)
    return parser


def _ratio(value: Any, base: Any) -> str:
    """``2.25x``; ``<0.01x`` rather than a ratio rounded to 0 that is not 0; '-' without a base."""
    if value is None or base is None or not base:
        return "-"
    ratio = value / base
    return "<0.01x" if 0 < ratio < 0.005 else f"{ratio:.2f}x"


def _cell(value: Any) -> str:
    """A jump: the number as it is, '-' when unknown or not spatial."""
    return "-" if value is None else str(value)


def _field(total: dict[str, Any]) -> str:
    """The model's receptive field as ``cnnlab rf`` shows it: '-' when unknown, ``224 (whole)``
    when it depends on the whole input (reported as the input's size with no jump)."""
    field, jump = total["receptive_field"], total["jump"]
    if field is None:
        return "-"
    return f"{field} (whole)" if jump is None else str(field)


def run(args: argparse.Namespace) -> int:
    from cnnlab.analysis.result import TOTAL_FIELDS, human_count
    from cnnlab.cli.common import print_table, render_records, warn_incomplete
    from cnnlab.cli.target import analyse

    results = [analyse(args, name) for name in args.names]
    for result in results:
        warn_incomplete(result)
    first = results[0].total
    if args.format in ("csv", "json"):
        records = []
        for r in results:
            record: dict[str, Any] = {"model": r.model, "input_shape": list(r.input_shape), "complete": r.complete}
            if args.format == "json":
                record["total"] = {k: r.total[k] for k in TOTAL_FIELDS}
                record["ratio"] = {
                    k: (r.total[k] / first[k] if first[k] else None) for k, _ in METRICS
                }
                record["warning"] = getattr(r, "warning", None)
            else:
                record.update({k: r.total[k] for k in TOTAL_FIELDS})
            records.append(record)
        if args.format == "json":
            import json

            print(json.dumps({"baseline": results[0].model, "models": records}, indent=2))
        else:
            print(render_records("csv", records, ["model", "input_shape", "complete", *TOTAL_FIELDS]))
        return 0
    header = ["model", "input", *(title for _, title in METRICS), "RF", "jump", "complete"]
    rows = []
    for r in results:
        t = r.total
        rows.append([
            r.model, "x".join(map(str, r.input_shape)),
            *(f"{human_count(t[k])} ({_ratio(t[k], first[k])})" for k, _ in METRICS),
            _field(t), _cell(t["jump"]),
            "yes" if r.complete else "NO",
        ])
    caption = f"ratios are to {results[0].model}"
    if args.format == "markdown":
        from cnnlab.textable import render_markdown

        print(render_markdown(header, rows) + "\n\n" + caption)
    else:
        print_table(header, rows, numeric=set(range(2, len(header) - 1)), caption=caption)
    return 0
