"""Issue 11's training goals on scikit-learn's real handwritten digits, measured on this machine.

Every run is ``cnnlab train ...`` in a fresh process (wall time includes Python's and torch's
start-up), on the fixed stratified split (25 % test, ``cnnlab.train.data.DIGITS_SEED``):

* ``lenet5`` with its default recipe: >= 98.8 % test accuracy, mean of the seeds, each run
  <= 60 s wall.
* the best zoo model: ``resnet20_cifar`` on the digits at 16 x 16 (their native 8 x 8 doubled),
  one input channel, SGD 0.1 with a cosine schedule for 60 epochs and the digits' affine
  augmentation, each run <= 5 min (30 epochs: 0.9978, 0.9933, 0.9911 in ~42 s; 60 epochs: 0.9956,
  0.9956, 0.9978 in ~80 s) -- against scikit-learn's RBF SVM tuned by 5-fold grid search on
  the same training split (the mean over the seeds must beat it; the issue measured 99.1-99.3 %).
* ``lenet5_paper`` (partial C3, RBF output) and ``capsnet``: >= 97 %.

It prints one line per run and a PASS/FAIL line per goal.

    .venv/bin/python benchmarks/train_digits.py [--seeds 0,1,2] [--only lenet5,best,paper,capsnet]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

BEST = ["resnet20_cifar", "--input-size", "16", "--arg", "in_channels=1", "--recipe", "resnet_cifar",
        "--epochs", "60", "--lr", "0.1", "--batch-size", "64", "--scheduler", "cosine", "--weight-decay", "5e-4",
        "--augment"]
GROUPS = {  # name -> (cnnlab train arguments, goal accuracy or None for "beat the SVM", wall-time goal in s)
    "lenet5": (["lenet5"], 0.988, 60.0),
    "best": (BEST, None, 300.0),
    "paper": (["lenet5_paper"], 0.97, None),
    "capsnet": (["capsnet"], 0.97, None),
}


def tuned_svm() -> tuple[float, dict, float]:
    """(test accuracy, best parameters, seconds) of an RBF SVM tuned by 5-fold grid search on the
    training split of cnnlab's digits split, pixels scaled to [0, 1]."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.svm import SVC

    from cnnlab.train.data import DIGITS_SEED, DIGITS_TEST_FRACTION

    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    train, test = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_FRACTION, stratify=y,
                                   random_state=DIGITS_SEED)
    start = time.perf_counter()
    grid = {"C": [1, 3, 10, 30, 100, 300], "gamma": [0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2]}
    search = GridSearchCV(SVC(kernel="rbf"), grid, cv=5).fit(x[train], y[train])
    return float(search.score(x[test], y[test])), search.best_params_, time.perf_counter() - start


def train_once(args: list[str], seed: int, out: str) -> tuple[float, float]:
    """(test accuracy, wall seconds) of ``cnnlab train ARGS --data digits --seed SEED``."""
    command = [sys.executable, "-m", "cnnlab", "train", *args, "--data", "digits", "--seed", str(seed), "--out", out]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    match = re.search(r"^test accuracy: ([0-9.]+)$", done.stdout, re.M)
    if done.returncode or not match:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"cnnlab train {' '.join(args)} failed (exit {done.returncode}): {tail[0]}")
    return float(match.group(1)), seconds


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated of {', '.join(GROUPS)}")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    groups = args.only.split(",")
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown --only {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    from cnnlab.bench import load_warning

    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}" + (f"; {load_warning()}" if load_warning() else ""))
    svm = None
    if "best" in groups:
        svm = tuned_svm()
        print(f"RBF SVM tuned by 5-fold grid search ({svm[1]}): test accuracy {svm[0]:.4f} ({svm[2]:.1f} s)")
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for group in groups:
            train_args, goal, wall_goal = GROUPS[group]
            runs = []
            for seed in seeds:
                acc, seconds = train_once(train_args, seed, os.path.join(tmp, f"{group}-{seed}"))
                runs.append((acc, seconds))
                print(f"{group:8s} seed {seed}: test accuracy {acc:.4f} in {seconds:.1f} s   "
                      f"(cnnlab train {' '.join(train_args)} --data digits)", flush=True)
            mean = statistics.mean(a for a, _ in runs)
            slowest = max(s for _, s in runs)
            target = goal if goal is not None else svm[0]  # type: ignore[index]
            what = f">= {goal:.3f}" if goal is not None else f"> SVM {svm[0]:.4f}"  # type: ignore[index]
            ok = mean > target if goal is None else mean >= target
            line = (f"{verdict(ok)}  {group}: mean test accuracy {mean:.4f} over {len(runs)} seeds (goal {what}); "
                    f"each seed {', '.join(f'{a:.4f}' for a, _ in runs)}")
            if wall_goal is not None:
                line += f"\n{verdict(slowest <= wall_goal)}  {group}: slowest run {slowest:.1f} s (goal <= {wall_goal:.0f} s)"
            lines.append(line)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
