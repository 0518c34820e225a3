"""Where does every zoo model stand against this machine's compute ceiling?

Measures the ceilings (``cnnlab.bench.ceilings``, full measurement, cached), then for each model at
batch 1 and its native input times the verified runtimes through ``cnnlab.bench`` and prints the
fastest one's achieved GFLOP/s (the analyzer's FLOPs / median time) as a percentage of the fp32
compute ceiling. Issue 10's goal: resnet50 FP32 at >= 80 % of the measured ceiling on the fastest
runtime. Measure on a quiet machine; the load is printed.

    .venv/bin/python benchmarks/roofline_zoo.py [--models PATTERN | --all] [--runtimes eager,onnxruntime,openvino]
        [--repeat 10] [--remeasure]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

import cnnlab
from cnnlab.bench import bench
from cnnlab.bench.ceilings import ceilings
from cnnlab.catalog import match_models

QUICK = ("resnet50", "mobilenet_v2", "shufflenet_v2_x1_0", "vgg16", "googlenet", "alexnet", "squeezenet1_0",
         "densenet121", "mobilenet_v3_large", "xception")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="a pattern over the registered names (default: a representative ten)")
    parser.add_argument("--all", action="store_true", help="every registered model (long)")
    parser.add_argument("--runtimes", default="eager,onnxruntime,openvino")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--remeasure", action="store_true", help="measure the ceilings again")
    args = parser.parse_args()
    names = match_models(None) if args.all else match_models(args.models) if args.models else list(QUICK)
    print(f"load before {' '.join(f'{v:.2f}' for v in os.getloadavg())}, threads {torch.get_num_threads()}",
          flush=True)
    limits = ceilings(remeasure=args.remeasure)
    peak = limits["gflops"]["fp32"]
    print(f"fp32 ceiling {peak:.1f} GFLOP/s ({limits['sources']['fp32']}), bandwidth {limits['gbytes_per_s']:.1f} GB/s, "
          f"theoretical {limits['theoretical_gflops'].get('fp32')}\n", flush=True)
    print(f"{'model':28s} {'GFLOPs':>8s} {'fastest':>12s} {'ms':>9s} {'GFLOP/s':>8s} {'% ceiling':>9s}  failures")
    standing = {}
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
            print(f"{name:28s} {flops / 1e9:8.2f} {'-':>12s}  {failures}", flush=True)
            continue
        best = min(ok, key=lambda r: r.median_ms)
        achieved = flops / (best.median_ms * 1e6)
        standing[name] = 100 * achieved / peak
        print(f"{name:28s} {flops / 1e9:8.2f} {best.runtime:>12s} {best.median_ms:9.2f} {achieved:8.1f} "
              f"{standing[name]:8.1f}%  {failures}", flush=True)
    print(f"\n{len(standing)} of {len(names)} models timed in {time.perf_counter() - start:.0f} s; "
          f"load after {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if "resnet50" in standing:
        verdict = "PASS" if standing["resnet50"] >= 80 else "FAIL"
        print(f"goal: resnet50 FP32 >= 80 % of the measured compute ceiling: {standing['resnet50']:.1f} % {verdict}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
