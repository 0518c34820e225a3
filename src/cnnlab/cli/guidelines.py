"""``cnnlab guidelines [G1,G2,...]``: the four ShuffleNet V2 guideline experiments on this machine,
beside the paper's numbers. The work is ``cnnlab.bench.guidelines``; this module parses and prints."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cnnlab.cli.common import add_command

__all__ = ["add_parser", "run"]

NAMES = ("G1", "G2", "G3", "G4")
QUICK_MIN_TIME = 0.6  # seconds per network with --quick
FULL_MIN_TIME = 2.0  # cnnlab.bench.guidelines.DEFAULT_MIN_TIME (not imported: no torch for --help)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "guidelines",
        help="ShuffleNet V2's four guideline experiments (Tables 1-4) on this machine",
        description=(
            "Time the networks of Ma et al. 2018's Tables 1-4 (equal FLOPs, different speed): G1 channel\n"
            "ratios, G2 group counts, G3 fragmentation, G4 element-wise operations. Prints each table\n"
            "with the paper's numbers beside ours and says whether the guideline's direction holds here.\n"
            "CPU: batch 1, images/s (the paper's ARM columns); CUDA: batch 8, batches/s (its GPU columns).\n\n"
            "Exit codes: 0 done, 2 bad input."
        ),
    )
    parser.add_argument("which", nargs="?", default=",".join(NAMES), metavar="G1,G2,...",
                        help="guidelines to run, comma-separated (default: all four)")
    parser.add_argument("--quick", action="store_true",
                        help=f"only each table's first column, {QUICK_MIN_TIME:g} s per network")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    repeats = parser.add_mutually_exclusive_group()
    repeats.add_argument("--repeat", type=int, help="timed calls per network, split over 3 interleaved rounds")
    repeats.add_argument("--min-time", type=float, metavar="S",
                         help=f"seconds of timed calls per network (default: {FULL_MIN_TIME:g}, "
                              f"{QUICK_MIN_TIME:g} with --quick)")
    parser.add_argument("--plot", metavar="DIR", help="write a bar chart per guideline (PNG and SVG) into DIR")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-' for stdout)")
    return parser


def _which(text: str) -> list[str]:
    from cnnlab.cli.errors import UsageError

    names = [p.strip().upper() for p in text.split(",") if p.strip()]
    bad = [n for n in names if n not in NAMES]
    if bad or not names:
        raise UsageError(f"unknown guideline {', '.join(bad) or repr(text)}; choose from {', '.join(NAMES)}")
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.errors import UsageError

    which = _which(args.which)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    if args.repeat is not None and args.repeat < 1:
        raise UsageError(f"--repeat must be >= 1, got {args.repeat}")
    if args.min_time is not None and not args.min_time > 0:
        raise UsageError(f"--min-time must be > 0 seconds, got {args.min_time}")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from cnnlab.bench import load_warning, machine_info
    from cnnlab.bench.guidelines import run_guidelines

    def progress(name: str, row: str, col: str) -> None:
        print(f"cnnlab guidelines: {name} {row} {col}", file=sys.stderr, flush=True)

    warning = load_warning()
    if warning:
        print(f"cnnlab guidelines: {warning}", file=sys.stderr, flush=True)
    min_time = args.min_time
    if args.repeat is None and min_time is None:
        min_time = QUICK_MIN_TIME if args.quick else FULL_MIN_TIME
    results = run_guidelines(which, device=args.device, columns=1 if args.quick else None, repeat=args.repeat,
                             min_time=min_time, progress=progress if sys.stderr.isatty() else None)
    data: dict[str, Any] = {"machine": machine_info(args.device)}
    data.update({name: r.to_dict() for name, r in results.items()})
    if args.plot:
        from cnnlab.bench.plots import guideline_chart

        for name, r in results.items():
            guideline_chart(name, r, args.plot)
    if args.json:
        import json

        text = json.dumps(data, indent=2)
        if args.json == "-":
            print(text)
            return 0
        from cnnlab.fileio import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    _print(data, which)
    return 0


def _print(data: dict[str, Any], which: list[str]) -> None:
    from cnnlab.cli.common import print_table

    for name in which:
        table = data[name]
        cols = table["columns"]
        header = ["setting"] + [h for c in cols for h in (f"{c} channels", f"{c} ours", f"{c} paper")]
        rows = []
        for r in table["rows"]:
            cells = [r["setting"]]
            for c in cols:
                paper = r["paper"][c]
                cells += [r["channels"][c], f"{r['ours'][c]:.1f}", "" if paper is None else f"{paper:g}"]
            rows.append(cells)
        verdict = ", ".join(f"{c}: {'holds' if ok else 'does not hold'}" for c, ok in table["holds_by_column"].items())
        print_table(header, rows, set(range(1, len(header))),
                    title=f"{name}: {table['title']} ({table['unit']}, batch {table['batch']})",
                    caption=f"{name} here: {verdict}. Paper's column: {table['paper_device'].upper()}.")
        print()
