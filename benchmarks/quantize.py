"""``cnnlab quantize``'s goals, measured on this machine, side by side, with a PASS/FAIL line each.

* Accuracy: LeNet-5 (its default recipe) and CIFAR ResNet-20 (16 x 16, one channel, SGD 0.1
  cosine, 30 epochs, augmentation) trained on scikit-learn's digits with ``cnnlab train``, then
  quantized by every backend (10 calibration batches of 32 training images): the INT8 test top-1
  within 0.5 points of the float one, per backend.
* Latency: resnet50 and mobilenet_v2 (random init, 224 x 224, batch 1, calibrated on a few
  FakeData batches -- accuracy is not the point there): each backend's INT8 file >= 1.5x faster
  than the fastest FP32 runtime of ONNX Runtime and OpenVINO as ``cnnlab bench`` runs them. All
  contenders of a model are timed in alternating rounds (a change of the machine's load hits them
  alike), with the same number of threads; torch.compile's FP32 is shown beside PT2E's INT8.

It prints the CPU's INT8-relevant extensions (avx512_vnni, avx_vnni, amx_int8) first.

    .venv/bin/python benchmarks/quantize.py [--threads 1] [--rounds 3] [--repeat 10]
        [--backends openvino,onnxruntime,torch] [--runs DIR] [--only accuracy,latency]

``--runs DIR`` keeps the trained checkpoints in DIR (DIR/lenet5, DIR/resnet20_cifar) and reuses
them when present.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from cnnlab.bench import load_warning, machine_info
from cnnlab.bench.runtimes import get_runtime
from cnnlab.bench.timer import time_callable
from cnnlab.quantize import BACKENDS, calibration_batches, get_backend, quantize_checkpoint, quantize_model
from cnnlab.registry import create_model
from cnnlab.train.data import load_data

RESNET20 = ["resnet20_cifar", "--input-size", "16", "--arg", "in_channels=1", "--recipe", "resnet_cifar",
            "--epochs", "30", "--lr", "0.1", "--batch-size", "64", "--scheduler", "cosine", "--weight-decay", "5e-4",
            "--augment"]
TRAINED = {"lenet5": ["lenet5"], "resnet20_cifar": RESNET20}
LATENCY_MODELS = ("resnet50", "mobilenet_v2")
MAX_DROP = 0.005  # 0.5 points of top-1
MIN_SPEEDUP = 1.5
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "avx512_bf16")


def cpu_flags() -> list[str]:
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    return [flag for flag in INT8_FLAGS if flag in flags]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def checkpoint(name: str, runs: Path) -> Path:
    """``runs/NAME/checkpoint.pt``, trained on digits with ``cnnlab train`` when absent."""
    path = runs / name / "checkpoint.pt"
    if not path.exists():
        start = time.perf_counter()
        command = [sys.executable, "-m", "cnnlab", "train", *TRAINED[name], "--data", "digits",
                   "--out", str(path.parent)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"cnnlab train {name} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        print(f"  trained {name} in {time.perf_counter() - start:.0f} s: {done.stdout.strip().splitlines()[-1]}")
    return path


def accuracy(backends: list[str], runs: Path, threads: int, folder: Path) -> list[str]:
    print("\nAccuracy on digits (test split, 450 images): float vs INT8 top-1")
    print(f"  {'model':<16}{'backend':<13}{'float':>8}{'int8':>8}{'drop (pt)':>11}"
          f"{'fp32 ms':>9}{'int8 ms':>9}{'MB fp32':>9}{'MB int8':>9}{'total s':>9}")
    goals = []
    for name in TRAINED:
        path = checkpoint(name, runs)
        for backend in backends:
            out = folder / f"{name}{get_backend(backend).suffix}"
            start = time.perf_counter()
            r = quantize_checkpoint(path, name, out, backend=backend, threads=threads, repeat=20)
            seconds = time.perf_counter() - start
            drop = r.float_top1 - r.int8_top1
            print(f"  {name:<16}{backend:<13}{r.float_top1:>8.4f}{r.int8_top1:>8.4f}{100 * drop:>11.2f}"
                  f"{r.float_ms:>9.3f}{r.int8_ms:>9.3f}{r.written.float_bytes / 1e6:>9.3f}"
                  f"{r.written.bytes / 1e6:>9.3f}{seconds:>9.1f}", flush=True)
            goals.append(f"  {verdict(drop <= MAX_DROP)}  {name} {backend}: INT8 {r.int8_top1:.4f} vs float "
                         f"{r.float_top1:.4f} (drop {100 * drop:.2f} <= 0.5 points)")
    return goals


def latency(backends: list[str], threads: int, rounds: int, repeat: int, folder: Path) -> list[str]:
    print(f"\nLatency at batch 1, 3x224x224, {threads} thread(s), median ms of {rounds} x {repeat} calls")
    fake = load_data("fake", input_size=(224, 224), channels=3)
    batches = calibration_batches(fake.train, 4, 8)
    goals = []
    for name in LATENCY_MODELS:
        torch.manual_seed(0)
        model = create_model(name).eval()
        example = fake.test[0][0].unsqueeze(0)
        fns, notes = {}, {}
        for runtime in ("onnxruntime", "openvino") + (("compile",) if "torch" in backends else ()):
            start = time.perf_counter()
            fns[f"{runtime} fp32"] = get_runtime(runtime).prepare(model, example, threads=threads)
            notes[f"{runtime} fp32"] = f"prepared in {time.perf_counter() - start:.0f} s"
        for backend in backends:
            form = get_backend(backend)
            out = folder / f"{name}{form.suffix}"
            start = time.perf_counter()
            written = quantize_model(model, example, batches, out, backend=backend, label=name)
            quantized = time.perf_counter() - start
            fns[f"{backend} int8"] = form.bind(out, example, threads)
            notes[f"{backend} int8"] = (f"quantized in {quantized:.0f} s, prepared in "
                                        f"{time.perf_counter() - start - quantized:.0f} s; "
                                        f"{written.float_bytes / 1e6:.1f} -> {written.bytes / 1e6:.1f} MB")
        samples: dict[str, list[float]] = {key: [] for key in fns}
        for _ in range(rounds):
            for key, fn in fns.items():
                samples[key].extend(time_callable(fn, warmup=3, repeat=repeat).samples_ms)
        medians = {key: statistics.median(values) for key, values in samples.items()}
        fastest_fp32 = min(medians["onnxruntime fp32"], medians["openvino fp32"])
        print(f"  {name}")
        for key, ms in medians.items():
            print(f"    {key:<18}{ms:>9.2f} ms  {fastest_fp32 / ms:>5.2f}x the fastest ORT/OV fp32   {notes[key]}")
        for backend in backends:
            speedup = fastest_fp32 / medians[f"{backend} int8"]
            goals.append(f"  {verdict(speedup >= MIN_SPEEDUP)}  {name} {backend} INT8: {speedup:.2f}x the fastest "
                         f"ORT/OpenVINO fp32 ({medians[f'{backend} int8']:.2f} vs {fastest_fp32:.2f} ms; >= 1.5x)")
    return goals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads of every runtime (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (default 3)")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per round (default 10)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all)")
    parser.add_argument("--runs", help="folder that keeps the trained checkpoints (default: a temporary one)")
    parser.add_argument("--only", default="accuracy,latency", help="accuracy, latency or both (default)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # the libraries' deprecation notes, between the table's lines
    logging.disable(logging.WARNING)
    backends = [b for b in args.backends.split(",") if b]
    for backend in backends:
        missing = get_backend(backend).available()
        if missing:
            raise SystemExit(missing)
    torch.set_num_threads(args.threads)
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, onnxruntime {info['onnxruntime']}, "
          f"openvino {info['openvino']}; load {os.getloadavg()[0]:.2f}")
    flags = cpu_flags()
    print(f"INT8/BF16 extensions: {', '.join(flags) or 'none'} (no AMX)" if not any(f.startswith("amx") for f in flags)
          else f"INT8/BF16 extensions: {', '.join(flags)}")
    warning = load_warning()
    if warning:
        print(f"warning: {warning}")
    goals: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-quantize-") as scratch:
        runs = Path(args.runs) if args.runs else Path(scratch) / "runs"
        if "accuracy" in args.only:
            goals += accuracy(backends, runs, args.threads, Path(scratch))
        if "latency" in args.only:
            goals += latency(backends, args.threads, args.rounds, args.repeat, Path(scratch))
    print(f"\nGoals (load {os.getloadavg()[0]:.2f} at the end):")
    print("\n".join(goals))


if __name__ == "__main__":
    main()
