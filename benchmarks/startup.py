"""How long does the ``cnnlab`` command take to start? Fresh processes, side by side, best of N.

Measures, each in a new Python process (best of ``--repeat`` runs, so a busy machine's noise
counts as little as possible):

    bare python          python -c pass
    import cnnlab        python -c "import cnnlab"          (lazy: imports no torch)
    import cnnlab,torch  python -c "import cnnlab, torch"
    --help               cnnlab --help
    usage error          cnnlab frobnicate                   (exit 2)
    profile              cnnlab profile resnet50 --format json
    models (cached)      cnnlab models --format csv          (second run, warm cache: no torch)

and checks issue 9's goals:

* ``cnnlab --help`` and a usage error: at most 0.2 s more than a bare ``python -c pass``.
* ``cnnlab models`` with a warm cache: at most 0.2 s more than a bare ``python -c pass``, like
  ``--help`` ("the second run is instant"): the cache holds the zoo's listing besides the counts,
  so the table is printed from it without importing torch or the registry.
* ``cnnlab profile resnet50 --format json``: at most 0.5 s more than importing cnnlab.
  Baseline: ``python -c "import cnnlab, torch"``. When the goal was written ``import cnnlab``
  imported torch; ``cnnlab/__init__.py`` is now lazy and imports nothing heavy, so the same
  work -- Python, cnnlab and torch loaded -- is ``import cnnlab, torch``. Comparing with the lazy
  ``import cnnlab`` would charge the command for importing torch, which any analysis needs.

``cnnlab`` is run as ``python -m cnnlab`` with this interpreter (the console script does the
same import; ``-m`` only adds runpy, a few milliseconds, which counts against the goals).

    .venv/bin/python benchmarks/startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

PYTHON = sys.executable
CNNLAB = [PYTHON, "-m", "cnnlab"]


@dataclass(frozen=True)
class Case:
    label: str
    argv: list[str]
    expect: int = 0  # the exit code the command must return


CASES = [
    Case("bare python", [PYTHON, "-c", "pass"]),
    Case("import cnnlab", [PYTHON, "-c", "import cnnlab"]),
    Case("import cnnlab,torch", [PYTHON, "-c", "import cnnlab, torch"]),
    Case("cnnlab --help", [*CNNLAB, "--help"]),
    Case("usage error", [*CNNLAB, "frobnicate"], expect=2),
    Case("profile resnet50", [*CNNLAB, "profile", "resnet50", "--format", "json"]),
    Case("models (cached)", [*CNNLAB, "models", "--format", "csv"]),
]

# (what, measured case, baseline case, allowed extra seconds)
GOALS = [
    ("--help within 0.2 s of bare python", "cnnlab --help", "bare python", 0.2),
    ("usage error within 0.2 s of bare python", "usage error", "bare python", 0.2),
    ("profile within 0.5 s of import cnnlab (+torch)", "profile resnet50", "import cnnlab,torch", 0.5),
    # "the second run is instant": with the listing and every count cached, no torch import
    ("cached models within 0.2 s of bare python", "models (cached)", "bare python", 0.2),
]


def _time(case: Case, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(case.argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != case.expect:
        raise SystemExit(f"{case.label}: exit {proc.returncode}, expected {case.expect}\n{proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command; the best counts (default: 5)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CNNLAB_CACHE_DIR": cache}
        print("warming the count cache (one `cnnlab models` run) ...", file=sys.stderr)
        _time(CASES[-1], env)
        best: dict[str, float] = {}
        for _ in range(args.repeat):  # interleaved, so a slow spell hits every command alike
            for case in CASES:
                elapsed = _time(case, env)
                best[case.label] = min(best.get(case.label, elapsed), elapsed)
    base = best["bare python"]
    print(f"start-up, best of {args.repeat} fresh processes ({sys.version.split()[0]}, {os.cpu_count()} CPUs)\n")
    print(f"{'command':<22} {'seconds':>8} {'- bare':>8} {'x bare':>8}")
    for case in CASES:
        t = best[case.label]
        print(f"{case.label:<22} {t:8.3f} {t - base:+8.3f} {t / base:8.1f}")
    print()
    failed = 0
    for what, measured, baseline, allowed in GOALS:
        extra = best[measured] - best[baseline]
        ok = extra <= allowed
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {extra:+.3f} s (allowed +{allowed:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
