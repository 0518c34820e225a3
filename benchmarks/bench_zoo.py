"""Does every zoo model run on every runtime? ``cnnlab bench --runtime all`` over the whole zoo at
batch 1 and each model's native input, with every failure explained.

For each registered model (or those matching ``--models``) it verifies and times each runtime
through ``cnnlab.bench.bench`` (a short timing: ``--repeat`` calls after one warm-up, since the
question here is "does it run and agree", not the last per cent), prints one line per model, and
ends with a per-runtime tally and every failure grouped by its reason. Results are appended to a
JSON-lines file as they come (``--out``), so an interrupted run keeps what it measured and
``--resume`` skips the models already there.

    .venv/bin/python benchmarks/bench_zoo.py [--runtimes all|eager,onnxruntime,...] [--models 'mobilenet*']
        [--repeat 3] [--out bench_zoo.jsonl] [--resume]

``torch.compile`` takes 20-90 s per model on a 2-core CPU; leave it out (``--runtimes`` without
``compile``) for a run that fits in an hour.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time

import cnnlab
from cnnlab.bench import bench, load_warning
from cnnlab.bench.runtimes import RUNTIMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtimes", default="all", help="comma-separated runtimes or all")
    parser.add_argument("--models", default=None, help="a cnnlab.list_models pattern (default: the whole zoo)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="bench_zoo.jsonl", help="JSON lines, one per model x runtime")
    parser.add_argument("--resume", action="store_true", help="skip models already in --out")
    args = parser.parse_args()
    runtimes = list(RUNTIMES) if args.runtimes == "all" else args.runtimes.split(",")
    names = cnnlab.list_models(args.models)
    done: set[str] = set()
    if args.resume and os.path.exists(args.out):
        with open(args.out) as f:
            done = {json.loads(line)["model"] for line in f if line.strip()}
    elif os.path.exists(args.out):
        os.remove(args.out)
    warning = load_warning()
    print(f"{len(names)} models x {', '.join(runtimes)}; {len(done)} already measured"
          + (f"; {warning}" if warning else ""))
    start = time.perf_counter()
    for i, name in enumerate(names, 1):
        if name in done:
            continue
        t0 = time.perf_counter()
        try:
            rows = [r.to_dict() for r in bench(name, runtimes=runtimes, warmup=1, repeat=args.repeat).results]
        except Exception as exc:  # noqa: BLE001 - the model itself failed to build or run: reported
            rows = [{"model": name, "runtime": rt, "ok": False, "median_ms": None,
                     "error": f"model: {type(exc).__name__}: {exc}".splitlines()[0]} for rt in runtimes]
        with open(args.out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        cells = " ".join(f"{r['runtime']}={r['median_ms']:.1f}" if r["ok"] else f"{r['runtime']}=FAIL" for r in rows)
        print(f"[{i:3d}/{len(names)}] {name:28s} {time.perf_counter() - t0:6.1f} s  {cells}", flush=True)
    summarise(args.out, runtimes)
    print(f"total {time.perf_counter() - start:.0f} s")


def summarise(path: str, runtimes: list[str]) -> None:
    """Per runtime: how many models ran and agreed; then each failure reason with its models."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print("\nruntime          ok   failed")
    reasons: dict[str, list[str]] = collections.defaultdict(list)
    for runtime in runtimes:
        mine = [r for r in rows if r["runtime"] == runtime]
        failed = [r for r in mine if not r["ok"]]
        print(f"{runtime:14s} {len(mine) - len(failed):4d} {len(failed):8d}")
        for r in failed:
            reasons[f"{runtime}: {r['error'] or 'no reason given'}"].append(r["model"])
    unexplained = [k for k in reasons if k.endswith("no reason given")]
    print(f"\nfailures, by reason ({len(reasons)} distinct; {len(unexplained)} without a reason)")
    for reason, models in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(models):3d} x {reason[:160]}\n        {', '.join(models)}")
    # a runtime that ran only after its fallback (its note, beyond what eager's says about the model)
    eager_note = {r["model"]: r.get("note", "") for r in rows if r["runtime"] == "eager"}
    fallbacks: dict[str, list[str]] = collections.defaultdict(list)
    for r in rows:
        note = r.get("note", "")
        if r["ok"] and note and note != eager_note.get(r["model"], ""):
            fallbacks[f"{r['runtime']}: {note}"].append(r["model"])
    for reason, models in fallbacks.items():
        print(f"  ok after a fallback, {len(models)} x {reason[:160]}\n        {', '.join(models)}")


if __name__ == "__main__":
    main()
