"""How fast is cnnlab's analyzer next to fvcore, ptflops and thop? One run, side by side.

Each tool analyses the same zoo models at 224 (batch 1) and at 1024 (batch 8). cnnlab works on
the meta device, so it never runs a convolution; the others run the real forward pass on the CPU,
as their users do. Prints seconds per tool, the ratio of the fastest other tool to cnnlab
(goals: >= 2x at 224, >= 20x at 1024/batch 8), the MACs each tool reports, and the time to
analyse the whole zoo at native input (goal: < 60 s).

    .venv/bin/python benchmarks/analyzer_speed.py [--models alexnet googlenet ...] [--repeat 3]
                                                  [--settings 224 1024]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from typing import Callable

import torch
from torch import nn

import cnnlab

DEFAULT_MODELS = ["alexnet", "vgg11", "googlenet", "inception_v3", "xception"]


def _cnnlab(model: nn.Module, shape: tuple[int, ...]) -> int:
    return cnnlab.analyze(model, shape).macs


def _fvcore(model: nn.Module, shape: tuple[int, ...]) -> int:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, torch.randn(shape))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(analysis.total())


def _ptflops(model: nn.Module, shape: tuple[int, ...]) -> int:
    from ptflops import get_model_complexity_info

    macs, _ = get_model_complexity_info(
        model, tuple(shape[1:]), as_strings=False, print_per_layer_stat=False, verbose=False,
        input_constructor=lambda _res: {"x": torch.randn(shape)}, backend="pytorch",
    )
    return int(macs)


def _thop(model: nn.Module, shape: tuple[int, ...]) -> int:
    from thop import profile

    macs, _ = profile(model, inputs=(torch.randn(shape),), verbose=False)
    return int(macs)


TOOLS: dict[str, Callable[[nn.Module, tuple[int, ...]], int]] = {
    "cnnlab": _cnnlab, "fvcore": _fvcore, "ptflops": _ptflops, "thop": _thop,
}


def _time(fn: Callable[[], int], repeat: int) -> tuple[float, int | None]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value = fn()
            except Exception as exc:  # a tool that cannot handle a model: report, go on
                return float("nan"), f"failed: {type(exc).__name__}"  # type: ignore[return-value]
        best = min(best, time.perf_counter() - start)
    return best, value


SETTINGS = {"224": ("224, batch 1", 224, 1, 2.0), "1024": ("1024, batch 8", 1024, 8, 20.0)}


def run(models: list[str], repeat: int, settings: list[str]) -> None:
    torch.set_grad_enabled(False)
    for label, size, batch, goal in (SETTINGS[key] for key in settings):
        print(f"\n== {label} ==")
        print(f"{'model':<14}" + "".join(f"{t:>12}" for t in TOOLS) + f"{'speed-up':>10}  MACs (cnnlab / fvcore / ptflops / thop)")
        for name in models:
            c = cnnlab.model_info(name).input_size[0]
            shape = (batch, c, size, size)
            real = cnnlab.create_model(name).eval()
            with torch.device("meta"):
                meta = cnnlab.create_model(name).eval()
            times, macs = {}, {}
            for tool, fn in TOOLS.items():
                model = meta if tool == "cnnlab" else real
                # Best of `repeat` for every tool at 224; the real forwards at 1024 run once.
                runs = repeat if tool == "cnnlab" or size <= 224 else 1
                times[tool], macs[tool] = _time(lambda: fn(model, shape), runs)
            others = [t for tool, t in times.items() if tool != "cnnlab" and t == t]
            ratio = min(others) / times["cnnlab"] if others else float("nan")
            flag = "ok" if ratio >= goal else f"< {goal:g}x"
            cells = "".join(f"{times[t]:>11.3f}s" for t in TOOLS)
            print(f"{name:<14}{cells}{ratio:>9.1f}x  {' / '.join(f'{m:,}' if isinstance(m, int) else str(m) for m in macs.values())}  [{flag}]")
    start = time.perf_counter()
    names = cnnlab.list_models()
    for name in names:
        with torch.device("meta"):
            model = cnnlab.create_model(name)
        cnnlab.analyze(model, (1, *cnnlab.model_info(name).input_size))
    elapsed = time.perf_counter() - start
    print(f"\nwhole zoo ({len(names)} models) built and analysed at native input on meta: {elapsed:.2f} s (goal < 60 s)")
    print(_resnet50_at_2048())


def _resnet50_at_2048() -> str:
    """Time and memory of analysing resnet50 at 2048x2048 on meta, in a fresh process so the
    peak resident memory it reports belongs to this analysis alone."""
    import subprocess
    import sys

    code = (
        "import time, torch, torchvision, cnnlab\n"
        "def kib(field):\n"
        "    with open('/proc/self/status') as f:\n"
        "        return next(int(l.split()[1]) for l in f if l.startswith(field))\n"
        "with torch.device('meta'):\n    m = torchvision.models.resnet50()\n"
        "before = kib('VmRSS:')\n"
        "open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to now\n"
        "t = time.perf_counter(); a = cnnlab.analyze(m, (1, 3, 2048, 2048)); t = time.perf_counter() - t\n"
        "after = kib('VmHWM:')\n"
        "print(f'{t:.3f} {(after - before) / 1024:.1f} {after / 1024:.1f} {a.macs}')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    seconds, grown, peak, macs = float(out[0]), float(out[1]), float(out[2]), int(out[3])
    return (
        f"torchvision resnet50 at 2048x2048 on meta: {seconds:.3f} s (goal < 2 s), peak RSS grew by "
        f"{grown:.1f} MiB during the analysis ({peak:.0f} MiB for the whole process with torch; goal < 500 MB); "
        f"{macs:,} MACs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=cnnlab.list_models(), metavar="NAME")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repeats for cnnlab, and for every tool at 224 (best time is kept)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                        help="which input settings to time (default: all)")
    args = parser.parse_args()
    run(args.models, args.repeat, args.settings)


if __name__ == "__main__":
    main()
