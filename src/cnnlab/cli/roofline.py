"""``cnnlab roofline [NAME|FILE.py:attr ...]``: this machine's ceilings, and each model's layers
against them. The work is ``cnnlab.bench.ceilings`` and ``cnnlab.bench.roofline``; this module
parses and prints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.bench import RUNTIME_NAMES
from cnnlab.cli.common import add_command

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "roofline",
        help="this machine's compute and bandwidth ceilings, and each layer's time against them",
        description=(
            "Measure (once, then cached) this machine's compute ceiling in GFLOP/s per dtype (the best of\n"
            "large GEMMs and convolutions over torch, ONNX Runtime and OpenVINO, beside the CPU's theoretical\n"
            "peak) and its memory bandwidth (a large copy), then bound each layer of the models:\n"
            "max(FLOPs / peak, bytes / bandwidth).\n"
            "Prints the bound, the measured time (per layer in eager mode, the whole model on --runtime),\n"
            "the percent of the roofline reached, and which layers are memory-bound.\n\n"
            "Exit codes: 0 done, 1 an error in your model's code, 2 bad input."
        ),
    )
    parser.add_argument("models", nargs="*", metavar="NAME|FILE.py:attr",
                        help="registered models (see `cnnlab models`) or path/to/file.py:attr for your own")
    parser.add_argument("--machine", action="store_true", help="print the ceilings (measuring them if needed)")
    parser.add_argument("--remeasure", action="store_true", help="measure the ceilings again instead of using the cache")
    parser.add_argument("--quick", action="store_true", help="a quicker, smaller ceiling measurement and fewer repeats")
    parser.add_argument("--input", metavar="SHAPE",
                        help="a registered model: C x H x W, H x W or one side; your own model: one sample's "
                             "full shape (3x224x224). Default: the registered model's native size")
    parser.add_argument("--batch", type=int, default=1, help="batch size")
    parser.add_argument("--runtime", default="eager", metavar="NAME",
                        help=f"the runtime that times the whole model, one of {', '.join(RUNTIME_NAMES)} "
                             "(per-layer times are always eager's)")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="precision of the ceiling and run")
    parser.add_argument("--threads", type=int, help="threads for every runtime (default: torch's)")
    parser.add_argument("--top", type=int, default=10, help="layers to list per model, slowest first")
    parser.add_argument("--plot", metavar="DIR", help="write roofline_<model>.png/.svg into DIR")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' for stdout)")
    return parser


def _check(args: argparse.Namespace) -> None:
    from pathlib import Path

    from cnnlab.bench.runtimes import RUNTIMES
    from cnnlab.cli.errors import UsageError

    if not args.models and not args.machine:
        raise UsageError("give one or more models, or --machine for the ceilings alone")
    for option, value in (("--batch", args.batch), ("--threads", args.threads), ("--top", args.top)):
        if value is not None and value < 1:
            raise UsageError(f"{option} must be >= 1, got {value}")
    if args.runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {args.runtime!r}; choose from {', '.join(RUNTIMES)}")
    if args.plot and Path(args.plot).exists() and not Path(args.plot).is_dir():
        raise UsageError(f"--plot takes a folder; {args.plot} is a file")
    if args.json and args.json != "-" and Path(args.json).is_dir():
        raise UsageError(f"--json takes a file name or -; {args.json} is a folder")


def run(args: argparse.Namespace) -> int:
    _check(args)
    from cnnlab.cli.target import sample_targets

    targets = sample_targets(args.models, args.input)
    from cnnlab.bench.ceilings import machine_ceilings
    from cnnlab.bench.roofline import RooflineReport, plot_roofline, roofline_report

    def say(text: str) -> None:
        print(f"cnnlab roofline: {text}", file=sys.stderr, flush=True)

    say("ceilings" + (" (measuring)" if args.remeasure else ""))
    limits = machine_ceilings(remeasure=args.remeasure, quick=args.quick, threads=args.threads)
    report = None
    for label, model, shape in targets:
        spec = model if isinstance(model, str) else (label, model)
        part = roofline_report([spec], input=shape, batch=args.batch, runtime=args.runtime, dtype=args.dtype,
                               threads=args.threads, quick=args.quick, ceilings=limits, progress=say)
        report = part if report is None else RooflineReport(report.machine, limits, report.models + part.models)
    if report is None:
        from cnnlab.bench import machine_info

        report = RooflineReport(machine_info("cpu"), limits)
    if args.plot:
        for result in report.models:
            for path in plot_roofline(result, args.plot):
                say(f"wrote {path}")
    if args.json:
        import json

        text = json.dumps(report.to_dict(), indent=2)
        if args.json == "-":
            print(text)
            return 0
        from cnnlab.fileio import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    _print_machine(limits)
    for result in report.models:
        _print_model(result, args.top)
    return 0


def _num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _print_machine(limits: dict[str, Any]) -> None:
    from cnnlab.cli.common import print_table

    theory = limits.get("theoretical_gflops") or {}
    rows = [[f"compute {d}", f"{v:.1f} GFLOP/s", limits["sources"].get(d, ""), _num(theory.get(d), 1)]
            for d, v in limits["gflops"].items()]
    rows.append(["memory bandwidth", f"{limits['gbytes_per_s']:.1f} GB/s", limits["sources"].get("bandwidth", ""), ""])
    print_table(["ceiling", "measured", "best of", "theoretical GFLOP/s"], rows, {1, 3},
                title="this machine's ceilings",
                caption=f"{limits.get('threads')} threads" + (" (quick measurement)" if limits.get("quick") else "")
                        + f"; theoretical: {limits['sources'].get('theoretical', 'not read')}")
    print()


def _print_model(result: Any, top: int) -> None:
    from cnnlab.cli.common import print_table

    d = result.to_dict()
    layers = sorted(d["layers"], key=lambda r: -(r["measured_ms"] or 0))[:top]
    header = ["layer", "type", "MFLOPs", "MB", "FLOPs/byte", "bound ms", "eager ms", "% of roofline", "limited by"]
    rows = [[r["name"] or "(model)", r["type"], _num(r["flops"] / 1e6), _num(r["bytes"] / 1e6),
             _num(r["intensity"]), _num(r["bound_ms"], 3), _num(r["measured_ms"], 3),
             _num(r["percent_of_roofline"], 0), "memory" if r["memory_bound"] else "compute"] for r in layers]
    limit = "memory-bound: weights and input / bandwidth" if d["memory_bound"] else "compute-bound: FLOPs / peak"
    total = (f"{d['model']} on {d['runtime']} ({d['dtype']}): measured {_num(d['measured_ms'])} ms, roofline bound "
             f"{_num(d['bound_ms'])} ms ({limit}), {_num(d['percent_of_roofline'], 0)} % of the roofline, "
             f"{_num(d['achieved_gflops'], 1)} GFLOP/s achieved"
             + (f" ({d['error']})" if d["error"] else "")
             + f"; the layers' bounds add up to {_num(d['layers_bound_ms'])} ms")
    memory = sum(r["memory_bound"] for r in d["layers"])
    print_table(header, rows, set(range(2, 8)), title=f"{d['model']} {'x'.join(map(str, d['input_shape']))}: "
                f"the {len(layers)} slowest layers in eager mode",
                caption=f"{total}. {memory} of {len(d['layers'])} layers are memory-bound. A layer over 100 %: its "
                        "data stayed in cache, above the DRAM bandwidth ceiling.")
    print()
    by_type = [[t["type"], str(t["layers"]), _num(t["flops"] / 1e6), _num(t["bound_ms"], 3), _num(t["measured_ms"], 3),
                _num(t["percent_of_roofline"], 0), str(t["memory_bound"])] for t in d["by_type"]]
    print_table(["type", "layers", "MFLOPs", "bound ms", "eager ms", "% of roofline", "memory-bound"], by_type,
                {1, 2, 3, 4, 5, 6}, title=f"{d['model']} by layer type")
    print()
