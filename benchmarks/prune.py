"""Issue 13's pruning goal, measured on this machine: LeNet-5 trained on scikit-learn's digits
(``cnnlab train lenet5 --data digits``, the default recipe, about 98.9 %) pruned to 90 % sparsity
and fine-tuned with the mask kept stays within 0.5 points of the float model's test accuracy.

Both ways of pruning are measured, each from the same trained checkpoint:

* per layer: every conv and linear weight loses its 90 % of smallest magnitude
  (``cnnlab prune lenet5 --sparsity 0.9``);
* global: one magnitude threshold over all of them, 90 % of all the weights pruned
  (``cnnlab prune lenet5 --sparsity 0.9 --global``).

Fine-tuning is ``--finetune-epochs N`` (default 30, the recipe's own length) with the checkpoint's
recipe and learning rate (``--lr`` replaces it). It prints one line per seed and way, and a
PASS/FAIL line per way (every seed must pass).

    .venv/bin/python benchmarks/prune.py [--seeds 0] [--epochs 30] [--lr LR] [--checkpoint FILE]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

GOAL = 0.005  # at most 0.5 points below the float model
SPARSITY = 0.9
WAYS = {"per layer": False, "global": True}


def trained_checkpoint(seed: int, folder: str) -> tuple[str, float]:
    """``cnnlab train lenet5 --data digits --seed SEED`` in this process: (checkpoint, seconds)."""
    from cnnlab.train import train

    start = time.perf_counter()
    run = train("lenet5", data="digits", seed=seed, out=os.path.join(folder, f"lenet5-{seed}"))
    return str(run.checkpoint), time.perf_counter() - start


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    parser.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs (default 30)")
    parser.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the recipe's)")
    parser.add_argument("--checkpoint", help="prune this lenet5 digits checkpoint instead of training one")
    args = parser.parse_args()
    from cnnlab.bench import load_warning
    from cnnlab.compress import prune_checkpoint

    warning = load_warning()
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}" + (f"; {warning}" if warning else ""))
    seeds = [int(s) for s in args.seeds.split(",")] if args.checkpoint is None else [None]
    results: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            if args.checkpoint is None:
                checkpoint, seconds = trained_checkpoint(seed, tmp)
                print(f"seed {seed}: cnnlab train lenet5 --data digits in {seconds:.1f} s", flush=True)
            else:
                checkpoint = args.checkpoint
            for way, global_threshold in WAYS.items():
                start = time.perf_counter()
                result = prune_checkpoint("lenet5", checkpoint, sparsity=SPARSITY, global_threshold=global_threshold,
                                          finetune_epochs=args.epochs, finetune_lr=args.lr)
                acc = result.accuracy
                tune = result.finetune or {}
                densities = ", ".join(f"{layer.name} {100 * layer.density:.1f}%" for layer in result.layers)
                print(f"  {way:9s} sparsity {100 * result.sparsity:.1f}%: float {acc['float']:.4f}  pruned "
                      f"{acc['pruned']:.4f}  fine-tuned {acc['finetuned']:.4f} ({args.epochs} epochs, "
                      f"{tune.get('optimizer')} lr {tune.get('lr'):g}, {time.perf_counter() - start:.1f} s)",
                      flush=True)
                print(f"            kept: {densities}")
                results[way].append((acc["float"], acc["finetuned"]))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    for way, runs in results.items():
        worst = max(before - after for before, after in runs)
        print(f"{verdict(worst <= GOAL + 1e-9)}  LeNet-5 {way} at {SPARSITY:.0%} sparsity, fine-tuned: "
              f"largest drop from float {100 * worst:.2f} points (goal <= {100 * GOAL:.1f}); "
              + ", ".join(f"{before:.4f} -> {after:.4f}" for before, after in runs))


if __name__ == "__main__":
    main()
