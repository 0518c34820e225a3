"""The ``cnnlab`` command line. Every model name goes through the registry.

Bad input (unknown model, malformed argument) prints one line on stderr and exits with 2.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import io
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from cnnlab.analysis import Analysis, analyze
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


def _verdict(*checks: bool | None) -> str:
    known = [c for c in checks if c is not None]
    if not known:
        return "-"
    return "yes" if all(known) else "NO"


def models_table(pattern: str | None = None) -> list[list[str]]:
    """Rows of the zoo table: name, family, year, native input, params and MACs (ours and
    reference), and whether every reference count is matched within its tolerance."""
    rows = []
    for name in list_models(pattern):
        info = model_info(name)
        with torch.device("meta"):
            model = create_model(name)
        result = analyze(model, (1, *info.input_size))
        ref = info.reference
        rows.append([
            name, info.family, str(info.year), "x".join(map(str, info.input_size)),
            _fmt_int(result.params), _fmt_int(info.ref_params),
            _fmt_int(result.macs), _fmt_int(info.ref_macs),
            _verdict(ref.params_match(result.params), ref.macs_match(result.macs)) if ref else "-",
        ])
    return rows


def _cmd_models(args: argparse.Namespace) -> int:
    rows = models_table(args.pattern)
    if not rows:
        raise _UsageError(f"no model matches {args.pattern!r}; run `cnnlab models` for the list")
    header = ["name", "family", "year", "input", "params", "params (ref)", "MACs", "MACs (ref)", "match"]
    print(render_table(header, rows, numeric={4, 5, 6, 7}))
    matched = sum(r[-1] == "yes" for r in rows)
    checked = sum(r[-1] != "-" for r in rows)
    print(f"\n{len(rows)} models; {matched} of {checked} with reference counts match them "
          "(params and MACs within models.csv's tolerances; MACs by cnnlab.analyze)")
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



def _parse_input(text: str | None) -> tuple[int, ...] | None:
    """``3x224x224`` (C x H x W), ``224x224`` (H x W) or ``224`` (square); None when not given."""
    if text is None:
        return None
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise _UsageError(f"--input must look like 3x224x224, 224x224 or 224, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise _UsageError(f"--input dimensions must be positive, got {text!r}")
    return dims


def _parse_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            raise _UsageError(f"--arg takes key=value (e.g. --arg dropout=0.2), got {pair!r}")
        try:
            kwargs[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            kwargs[key] = raw  # a bare word is a string
    return kwargs


def _load_user_module(spec: str, kwargs: dict[str, Any]) -> nn.Module:
    """``path/to/file.py:attr``: an nn.Module instance, or a class/function that returns one."""
    path_text, _, attr = spec.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise _UsageError(f"no such file {path_text!r} (expected path/to/file.py:attr)")
    module_spec = importlib.util.spec_from_file_location(f"_cnnlab_user_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise _UsageError(f"cannot import {path_text!r}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report it in one line
        raise _UsageError(f"importing {path_text} failed: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, attr):
        raise _UsageError(f"{path_text} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if isinstance(obj, nn.Module):
        if kwargs:
            raise _UsageError(f"{spec} is a module instance; --arg needs a class or a function")
        return obj
    if callable(obj):
        built = obj(**kwargs)
        if isinstance(built, nn.Module):
            return built
    raise _UsageError(f"{spec} is not an nn.Module, nor a class or function returning one")


def _resolve(spec: str, input_text: str | None, batch: int, kwargs: dict[str, Any], real: bool) -> tuple[nn.Module, tuple[int, ...], str]:
    """The model to analyse, the full input shape (with batch) and a label."""
    given = _parse_input(input_text)
    if batch < 1:
        raise _UsageError(f"--batch must be >= 1, got {batch}")
    device = "cpu" if real else "meta"
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        with torch.device(device):
            model = _load_user_module(spec, kwargs)
        if given is None:
            raise _UsageError(f"give the input size of {spec} with --input, e.g. --input 3x224x224")
        return model, (batch, *given), spec
    info = model_info(spec)
    with torch.device(device):
        model = create_model(spec, **kwargs)
    c, h, w = info.input_size
    if given is None:
        chw = (c, h, w)
    elif len(given) == 1:
        chw = (c, given[0], given[0])
    elif len(given) == 2:
        chw = (c, *given)
    else:
        chw = given
    return model, (batch, *chw), spec


def _analyse(args: argparse.Namespace, spec: str) -> Analysis:
    model, shape, label = _resolve(spec, args.input, args.batch, _parse_kwargs(args.arg), args.real)
    result = analyze(model, shape, device="cpu" if args.real else "meta", fold_bn=args.fold_bn)
    result.model = label
    return result


def _cmd_profile(args: argparse.Namespace) -> int:
    result = _analyse(args, args.name)
    if args.depth is not None:
        result = result.at_depth(args.depth)
    if args.format == "table" and sys.stdout.isatty():
        from rich.console import Console

        table, console = result.to_rich(), Console()
        probe = Console(width=10_000, file=io.StringIO())
        probe.print(table)
        needed = max(len(line.rstrip()) for line in probe.file.getvalue().splitlines())
        # Never cut a number: on a narrow terminal the lines wrap, as the plain table's do.
        Console(width=max(console.width, needed)).print(table)
        return 0
    render = {"table": result.to_table, "markdown": result.to_markdown, "csv": result.to_csv, "json": result.to_json}
    print(render[args.format]().rstrip("\n"))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    results = [_analyse(args, name) for name in args.names]
    metrics = ["params", "macs", "flops", "mem_access", "activations", "peak_activation_bytes"]
    first = results[0].total
    header = ["model", "input", *metrics, "RF"]
    rows = []
    for r in results:
        cells = [r.model, "x".join(map(str, r.input_shape))]
        for m in metrics:
            ratio = r.total[m] / first[m] if first[m] else float("nan")
            cells.append(f"{r.total[m]:,} ({ratio:.2f}x)")
        cells.append(str(r.total["receptive_field"]))
        rows.append(cells)
    print(render_table(header, rows, numeric=set(range(2, len(header)))))
    print(f"\nratios are to {results[0].model}")
    return 0


def _cmd_rf(args: argparse.Namespace) -> int:
    result = _analyse(args, args.name)
    header = ["layer", "type", "output", "receptive field", "jump"]
    rows = [
        [row["name"] or "(model)", row["type"], "x".join(map(str, row["output_shape"] or [])),
         str(row["receptive_field"]), str(row["jump"] if row["jump"] is not None else "-")]
        for row in result.layers if row["receptive_field"] is not None
    ]
    print(render_table(header, rows, numeric={3, 4}))
    print(f"\nreceptive field of the deepest spatial feature map: {result.total['receptive_field']} "
          f"(jump {result.total['jump']}) on a {'x'.join(map(str, result.input_shape))} input")
    return 0


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", help="C x H x W of one sample (3x224x224), H x W, or one side; default: the model's native input")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="architecture argument, repeatable")
    p.add_argument("--fold-bn", action="store_true", help="analyse as if each BatchNorm were folded into its conv")
    p.add_argument("--real", action="store_true", help="run on the CPU with real weights instead of the meta device")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnlab", description="A laboratory for convolutional network architectures.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("models", help="list the zoo with parameter counts against the references")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern, e.g. 'vgg*'")
    p.set_defaults(func=_cmd_models)
    p = sub.add_parser("info", help="paper, input size and reference counts of one model")
    p.add_argument("name")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("profile", help="per-layer params, MACs, FLOPs, memory access and receptive field")
    p.add_argument("name", help="a registered model, or path/to/file.py:attr for your own module")
    _add_analysis_options(p)
    p.add_argument("--depth", type=int, help="aggregate the table to this module depth")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.set_defaults(func=_cmd_profile)
    p = sub.add_parser("compare", help="side-by-side totals, with ratios to the first model")
    p.add_argument("names", nargs="+", metavar="NAME")
    _add_analysis_options(p)
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser("rf", help="receptive field and jump per layer")
    p.add_argument("name")
    _add_analysis_options(p)
    p.set_defaults(func=_cmd_rf)
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
