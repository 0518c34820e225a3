"""The ``cnnlab`` command line. Every model name goes through the registry.

Bad input (unknown model, malformed argument) prints one line on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import torch

from cnnlab.registry import create_model, list_models, model_info
from cnnlab.textable import render_table

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


class _UsageError(Exception):
    pass


def _fmt_int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _params_match(ours: int, ref: int | None, tol: float) -> str:
    if ref is None:
        return "-"
    ok = ours == ref if tol == 0 else abs(ours - ref) <= tol * ref
    return "yes" if ok else "NO"


def models_table(pattern: str | None = None) -> list[list[str]]:
    """Rows of the zoo table: name, family, year, native input, params (ours, reference), match."""
    from cnnlab.registry import reference_rows

    tolerance = {row.name: row.params_tol for row in reference_rows()}
    rows = []
    for name in list_models(pattern):
        info = model_info(name)
        with torch.device("meta"):
            model = create_model(name)
        ours = sum(p.numel() for p in model.parameters())
        rows.append([
            name, info.family, str(info.year), "x".join(map(str, info.input_size)),
            _fmt_int(ours), _fmt_int(info.ref_params),
            _params_match(ours, info.ref_params, tolerance.get(name, 0.0)),
        ])
    return rows


def _cmd_models(args: argparse.Namespace) -> int:
    rows = models_table(args.pattern)
    if not rows:
        raise _UsageError(f"no model matches {args.pattern!r}; run `cnnlab models` for the list")
    header = ["name", "family", "year", "input", "params", "params (ref)", "match"]
    print(render_table(header, rows, numeric={4, 5}))
    matched = sum(r[-1] == "yes" for r in rows)
    checked = sum(r[-1] != "-" for r in rows)
    print(f"\n{len(rows)} models; {matched} of {checked} with a reference count match it")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    info = model_info(args.name)
    print(f"{info.name}: {info.paper.title} ({info.paper.authors}, {info.year})")
    print(f"  family       {info.family}")
    print(f"  paper        {info.paper.url}")
    print(f"  input        {'x'.join(map(str, info.input_size))}, {info.num_classes} classes")
    print(f"  params (ref) {_fmt_int(info.ref_params)}  {info.ref_source}")
    print(f"  MACs (ref)   {_fmt_int(info.ref_macs)}")
    if info.fixed:
        print("  variant      " + ", ".join(f"{k}={v!r}" for k, v in info.fixed.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description="A laboratory for convolutional network architectures.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("models", help="list the zoo with parameter counts against the references")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern, e.g. 'vgg*'")
    p.set_defaults(func=_cmd_models)
    p = sub.add_parser("info", help="paper, input size and reference counts of one model")
    p.add_argument("name")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cnnlab`` console script and ``python -m cnnlab``."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (_UsageError, ValueError, TypeError) as exc:
        print(f"cnnlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
