"""``cnnlab bench NAME|FILE.py:attr ...``: verify each runtime against fp32 eager, then time it.
The work is ``cnnlab.bench.bench``; this module parses, shows progress on stderr and prints the
table (and ``--json``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.common import add_command

__all__ = ["add_parser", "run"]

RUNTIME_NAMES = ("eager", "channels_last", "fused", "compile", "onnxruntime", "openvino")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "bench",
        help="time models on torch eager, channels_last, fused BN, torch.compile, ONNX Runtime, OpenVINO",
        description=(
            "Check every runtime's output against torch eager in fp32 (relative to the output's\n"
            "scale; a degenerate random head is re-initialised with a fixed seed first), then time\n"
            "it: warm-up, repeats or a time budget, median and interquartile range, images/s.\n"
            "A runtime that is missing, fails or disagrees is listed with its reason.\n\n"
            "Exit codes: 0 done (failed runtimes are in the table), 1 an error in your model's\n"
            "code, 2 bad input."
        ),
    )
    parser.add_argument("models", nargs="+", metavar="NAME|FILE.py:attr",
                        help="registered models (see `cnnlab models`) or path/to/file.py:attr for your own")
    parser.add_argument("--batch", default="1", metavar="B[,B...]", help="batch sizes, comma-separated")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--input", metavar="SHAPE",
                       help="a registered model: C x H x W, H x W or one side; your own model: one sample's "
                            "full shape (3x224x224). Default: the registered model's native size")
    shape.add_argument("--resolutions", metavar="R[,R...]",
                       help="H x W sizes to run each model at, e.g. 224,480x640,720x1280")
    parser.add_argument("--runtime", default="eager", metavar="NAME[,NAME...]",
                        help=f"runtimes, comma-separated, or all: {', '.join(RUNTIME_NAMES)}")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="precision; bf16/fp16 report their error against fp32")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run")
    parser.add_argument("--threads", type=int, help="threads for every runtime (default: torch's)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    repeats = parser.add_mutually_exclusive_group()
    repeats.add_argument("--repeat", type=int, help="timed calls (default: 10)")
    repeats.add_argument("--min-time", type=float, metavar="S", help="time each runtime for about S seconds instead")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' for stdout)")
    return parser


def _ints(text: str, option: str) -> list[int]:
    from cnnlab.cli.errors import UsageError

    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and p.isascii() for p in parts) or any(int(p) < 1 for p in parts):
        raise UsageError(f"{option} takes positive integers separated by commas, got {text!r}")
    return [int(p) for p in parts]


def _runtimes(text: str) -> list[str]:
    from cnnlab.cli.errors import UsageError

    names = [p.strip() for p in text.split(",") if p.strip()]
    if "all" in names:
        return list(RUNTIME_NAMES)
    unknown = [n for n in names if n not in RUNTIME_NAMES]
    if unknown or not names:
        raise UsageError(f"unknown runtime {', '.join(unknown) or repr(text)}; choose from "
                         f"{', '.join(RUNTIME_NAMES)} or all")
    return list(dict.fromkeys(names))


def _resolutions(text: str) -> list[tuple[int, int]]:
    from cnnlab.cli.errors import UsageError
    from cnnlab.cli.target import parse_dims

    sizes = []
    for part in text.split(","):
        dims = parse_dims(part.strip(), "--resolutions")
        if len(dims) > 2:
            raise UsageError(f"--resolutions takes H x W or one side per size, got {part.strip()!r}")
        sizes.append((dims[0], dims[0]) if len(dims) == 1 else dims)
    return sizes


def _check(args: argparse.Namespace) -> None:
    from cnnlab.cli.errors import UsageError

    for option, value, least in (("--threads", args.threads, 1), ("--warmup", args.warmup, 0),
                                 ("--repeat", args.repeat, 1)):
        if value is not None and value < least:
            raise UsageError(f"{option} must be >= {least}, got {value}")
    if args.min_time is not None and not args.min_time > 0:
        raise UsageError(f"--min-time must be > 0 seconds, got {args.min_time}")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def run(args: argparse.Namespace) -> int:
    from cnnlab.bench import bench

    _check(args)
    batches = _ints(args.batch, "--batch")
    runtimes = _runtimes(args.runtime)
    resolutions = _resolutions(args.resolutions) if args.resolutions else None
    from cnnlab.cli.target import sample_targets

    models = sample_targets(args.models, args.input, resolutions=bool(args.resolutions))
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            from cnnlab.cli.errors import UsageError

            raise UsageError("--device cuda: no CUDA device here")

    def progress(result: Any) -> None:
        shape = "x".join(map(str, result.input_shape))
        what = (f"{result.median_ms:.2f} ms, {result.images_per_s:.1f} img/s" if result.ok
                else result.error)
        print(f"cnnlab bench: {result.model} {shape} {result.runtime} {result.dtype}: {what}", file=sys.stderr,
              flush=True)

    from cnnlab.bench import load_warning

    warning = load_warning()
    if warning:
        print(f"cnnlab bench: {warning}", file=sys.stderr, flush=True)
    results = []
    machine: dict[str, Any] = {}
    for label, model, shape in models:
        spec = model if isinstance(model, str) else (label, model)
        part = bench([spec], batch=batches, input=shape, resolutions=resolutions, runtimes=runtimes,
                     dtype=args.dtype, device=args.device, threads=args.threads, warmup=args.warmup,
                     repeat=args.repeat if args.repeat is not None else (None if args.min_time else 10),
                     min_time=args.min_time, progress=progress)
        machine = part.machine
        results.extend(part.results)
    from cnnlab.bench import BenchResult

    result = BenchResult(machine, results)
    paper = None
    if resolutions:
        from cnnlab.bench.resolutions import compare

        paper = compare(results)
    if args.json:
        data = result.to_dict()
        if paper is not None:
            data["resolutions_vs_paper"] = paper
        import json

        text = json.dumps(data, indent=2)
        if args.json == "-":
            print(text)
            return 0
        from cnnlab.fileio import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    _print_table(result)
    if paper:
        _print_paper(paper)
    return 0


def _print_paper(rows: list[dict[str, Any]]) -> None:
    """The notes' latency-vs-resolution table beside ours: ms, and each time over the first size's."""
    from cnnlab.cli.common import print_table

    sizes = [f"{r['height']}x{r['width']}" for r in rows[0]["resolutions"]]
    header = ["model", "runtime"] + [h for s in sizes for h in (f"{s} ms", f"{s} paper ms", f"{s} ratio", f"{s} paper ratio")]
    table = []
    for row in rows:
        cells = [row["model"], row["runtime"]]
        for r in row["resolutions"]:
            cells += [_fmt(r["ours_ms"]), _fmt(r["paper_ms"], 1), _fmt(r["ours_ratio"]), _fmt(r["paper_ratio"])]
        table.append(cells)
    print()
    print_table(header, table, set(range(2, len(header))),
                title="latency vs resolution, here and in the notes (ShuffleNet paper, Table 8)",
                caption=f"paper: {rows[0]['source']}; ratio: the time at that size over the time at {sizes[0]}")


def _print_table(result: Any) -> None:
    from cnnlab.cli.common import print_table

    header = ["model", "input", "runtime", "dtype", "median ms", "IQR ms", "images/s", "max rel diff", "peak MiB", "status"]
    rows = []
    for r in result.results:
        rows.append([r.model, "x".join(map(str, r.input_shape)), r.runtime, r.dtype, _fmt(r.median_ms),
                     _fmt(r.iqr_ms), _fmt(r.images_per_s, 1),
                     "" if r.max_rel_diff is None else f"{r.max_rel_diff:.1e}", _fmt(r.peak_memory_mb, 0), "ok" if r.ok else r.error or "failed"])
    m = result.machine
    caption = (f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('threads')} threads, torch {m.get('torch')}, "
               f"onnxruntime {m.get('onnxruntime')}, openvino {m.get('openvino')}; peak MiB: the process's "
               "resident-set high-water mark so far (CPU) or max allocated (CUDA); load "
               + " ".join(f"{x:.2f}" for x in (m.get("loadavg") or [])))
    print_table(header, rows, {4, 5, 6, 7, 8}, caption=caption)
    notes = dict.fromkeys(f"  {r.model}: {r.note}" for r in result.results if r.note)  # in order, once each
    if notes:
        print("notes:", *notes, sep="\n")
