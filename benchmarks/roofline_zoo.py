"""Where does every zoo model stand against this machine's compute ceiling?

Measures the ceilings (``cnnlab.bench.ceilings.machine_ceilings``: full measurement, cached; fp32),
then for each registered model at batch 1 and its native input times the runtimes through
``cnnlab.bench`` (each verified against fp32 eager first) and prints the fastest verified one's
achieved GFLOP/s (the analyzer's FLOPs / median time) as a percentage of the fp32 compute ceiling.
Issue 10's goal: resnet50 FP32 at >= 80 % of the measured ceiling on the fastest runtime. The load
average is printed before and after: on a busy machine every number is low.

    .venv/bin/python benchmarks/roofline_zoo.py                  # all registered models (long)
    .venv/bin/python benchmarks/roofline_zoo.py --quick          # a representative few
    .venv/bin/python benchmarks/roofline_zoo.py --models 'resnet*' [--runtimes eager,openvino]
        [--repeat 10] [--remeasure]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

import cnnlab
from cnnlab.bench import bench, load_warning
from cnnlab.bench.ceilings import machine_ceilings
from cnnlab.catalog import match_models

QUICK = ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0", "vgg16", "googlenet", "alexnet", "squeezenet1_0",
         "densenet121")
# torch.compile is left out by default: it compiles each model for minutes
RUNTIMES = "eager,channels_last,fused,onnxruntime,openvino"


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    choose = parser.add_mutually_exclusive_group()
    choose.add_argument("--models", metavar="PATTERN", help="a wildcard pattern over the registered names")
    choose.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--runtimes", default=RUNTIMES, help="comma-separated runtimes to try")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per runtime")
    parser.add_argument("--remeasure", action="store_true", help="measure the ceilings again")
    args = parser.parse_args()
    names = list(QUICK) if args.quick else match_models(args.models)
    if not names:
        parser.error(f"no registered model matches {args.models!r}")
    print(f"load before {_load()}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}", flush=True)
    warning = load_warning()
    if warning:
        print(f"warning: {warning}", flush=True)
    limits = machine_ceilings(dtypes=("fp32",), remeasure=args.remeasure)
    peak = limits["gflops"]["fp32"]
    print(f"fp32 ceiling {peak:.1f} GFLOP/s ({limits['sources']['fp32']}); candidates: "
          + ", ".join(f"{k} {v:.0f}" for k, v in limits["candidates"]["fp32"].items()), flush=True)
    print(f"bandwidth {limits['gbytes_per_s']:.1f} GB/s; theoretical fp32 {limits['theoretical_gflops']['fp32']} "
          f"GFLOP/s ({limits['sources']['theoretical']})\n", flush=True)
    print(f"{'model':28s} {'GFLOPs':>8s} {'fastest':>13s} {'ms':>9s} {'GFLOP/s':>8s} {'% ceiling':>9s}  failures")
    standing: dict[str, float] = {}
    start = time.perf_counter()
    for name in names:
        shape = tuple(cnnlab.model_info(name).input_size)
        with torch.device("meta"):
            meta = cnnlab.create_model(name)
        flops = cnnlab.analyze(meta, (1, *shape)).flops
        results = bench([name], input=shape, runtimes=args.runtimes.split(","), repeat=args.repeat).results
        ok = [r for r in results if r.ok]
        failures = "; ".join(f"{r.runtime}: {r.error}" for r in results if not r.ok)
        if not ok:
            print(f"{name:28s} {flops / 1e9:8.2f} {'-':>13s}  {failures}", flush=True)
            continue
        best = min(ok, key=lambda r: r.median_ms)
        achieved = flops / (best.median_ms * 1e6)
        standing[name] = 100 * achieved / peak
        print(f"{name:28s} {flops / 1e9:8.2f} {best.runtime:>13s} {best.median_ms:9.2f} {achieved:8.1f} "
              f"{standing[name]:8.1f}%  {failures}", flush=True)
    print(f"\n{len(standing)} of {len(names)} models timed in {time.perf_counter() - start:.0f} s; "
          f"load after {_load()}")
    if "resnet50" in standing:
        verdict = "PASS" if standing["resnet50"] >= 80 else "FAIL"
        print(f"goal: resnet50 FP32 >= 80 % of the measured compute ceiling: {standing['resnet50']:.1f} % {verdict}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
