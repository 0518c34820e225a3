"""``cnnlab info NAME``: a registered model's paper, native input, reference counts and the
keyword arguments ``--arg`` accepts (from ``cnnlab.catalog.model_knobs``)."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.cli.common import UsageError, add_command

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "info",
        help="paper, input size, reference counts and --arg keywords of one model",
        description="Show where a registered model comes from, its native input and reference counts,\n"
                    "and the keyword arguments --arg accepts (with their defaults).",
    )
    parser.add_argument("name", help="a registered model name (see `cnnlab models`)")
    return parser


def _count(value: int | None) -> str:
    from cnnlab.analysis.result import human_count

    return "-" if value is None else f"{value:,} ({human_count(value)})"


def run(args: argparse.Namespace) -> int:
    from cnnlab.catalog import model_knobs
    from cnnlab.cli.target import is_user_spec, registered_info

    if is_user_spec(args.name):
        raise UsageError(
            f"info describes registered models; for your own model run `cnnlab profile {args.name} --input ...`"
        )
    info = registered_info(args.name)
    knobs = model_knobs(args.name)
    print(f"{info.name}: {info.paper.title} ({info.paper.authors}, {info.year})")
    print(f"  family       {info.family}")
    print(f"  paper        {info.paper.url}")
    print(f"  input        {'x'.join(map(str, info.input_size))}, {info.num_classes} classes")
    print(f"  params (ref) {_count(info.ref_params)}  {info.ref_source}")
    print(f"  MACs (ref)   {_count(info.ref_macs)}")
    if info.fixed:
        print("  variant      " + ", ".join(f"{k}={v!r}" for k, v in info.fixed.items()))
    print("  --arg        " + ", ".join(
        f"{k.name}={k.default!r}" + (f" ({k.annotation})" if k.annotation else "") for k in knobs
    ))
    return 0
