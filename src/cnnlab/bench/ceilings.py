"""This machine's roofline ceilings: the compute rate (GFLOP/s, per dtype) and the memory bandwidth
(GB/s) that the roofline model (Williams, Waterman & Patterson 2009) bounds a layer's time with.

Both are measured, not taken from a data sheet:

- compute: the best rate of a large matrix product (``torch.mm``) and of a stack of 3x3
  convolutions run by every runtime available (torch, ONNX Runtime, OpenVINO). torch's own GEMM
  alone would understate the ceiling: OpenVINO's convolutions run well above it on the same cores.
- bandwidth: a copy of a buffer far larger than the caches, counting the bytes read plus the
  bytes written.

Beside them, the CPU's theoretical peak, where ``/proc/cpuinfo`` tells the clock and vector width:
logical CPUs x clock x FLOPs per cycle per CPU, assuming two FMA units per core (32 fp32 FLOPs per
cycle with AVX2, 64 with AVX-512, twice that for BF16 with AVX512_BF16's dot products). It is an
upper bound for context only; the roofline uses the measured ceilings.

The measurement is cached per (device, CPU, logical CPUs, threads, library versions) in the user
cache directory (``cnnlab.catalog.cache_dir()``); ``measure_ceilings(remeasure=True)`` refreshes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable

__all__ = ["Ceilings", "ceilings", "measure_ceilings", "theoretical_peak"]

Ceilings = dict  # {"gflops": {dtype: float}, "gbytes_per_s": float, "theoretical_gflops": {...}, "sources": {...}}
CACHE_FORMAT = 1


def _best_rate(fn: Callable[[], Any], work: float, repeat: int) -> float:
    """``work`` units per second at the fastest of ``repeat`` calls (after one warm-up call): the
    ceiling is what the machine can reach, so the best call counts, not the median."""
    import torch

    with torch.inference_mode():
        fn()
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return work / best


def theoretical_peak(cpuinfo: str, cpus: int) -> dict[str, float | None]:
    """GFLOP/s per dtype from ``/proc/cpuinfo``'s text: ``cpus`` x the clock ("cpu MHz", the
    first processor's) x FLOPs per cycle from the vector flags (two FMA units assumed). None where
    the clock or the flags cannot be read, or where the unit is not modelled (AMX)."""
    mhz = flags = None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "cpu MHz" and mhz is None:
            try:
                mhz = float(value)
            except ValueError:
                pass
        elif key == "flags" and flags is None:
            flags = set(value.split())
    if not mhz or not flags:
        return {"fp32": None, "bf16": None}
    if "avx512f" in flags:
        fp32_per_cycle = 2 * 16 * 2  # two FMA units x 16 lanes x (multiply + add)
    elif "avx2" in flags and "fma" in flags:
        fp32_per_cycle = 2 * 8 * 2
    else:
        return {"fp32": None, "bf16": None}
    fp32 = cpus * mhz / 1000 * fp32_per_cycle
    bf16 = None if "amx_bf16" in flags else (2 * fp32 if "avx512_bf16" in flags else fp32)
    return {"fp32": fp32, "bf16": bf16}


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def _conv_stack(channels: int) -> Any:
    from torch import nn

    return nn.Sequential(*[nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(4)]).eval()


def measure_ceilings(device: str = "cpu", *, quick: bool = False, threads: int | None = None,
                     dtypes: tuple[str, ...] = ("fp32", "bf16")) -> Ceilings:
    """Measure the ceilings now (no cache). ``quick`` uses smaller problems and fewer repeats
    (about 5 s on a 2-core machine instead of about 20 s)."""
    import torch

    from cnnlab.analysis import analyze
    from cnnlab.bench.runtimes import get_runtime, torch_dtype

    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    repeat = 3 if quick else 5
    n = 1024 if quick else 2048
    gflops: dict[str, float] = {}
    sources: dict[str, str] = {}
    channels, side = (128, 28) if quick else (256, 56)
    stack = _conv_stack(channels)
    example = torch.randn(1, channels, side, side)
    conv_flops = analyze(stack, tuple(example.shape)).flops
    for dtype in dtypes:
        candidates: dict[str, float] = {}
        t = torch_dtype(dtype)
        a = torch.randn(n, n, dtype=t, device=device)
        b = torch.randn(n, n, dtype=t, device=device)
        candidates[f"torch.mm {n}x{n}"] = _best_rate(lambda: torch.mm(a, b), 2 * n**3, repeat)
        del a, b
        for name in ("eager", "onnxruntime", "openvino"):
            runtime = get_runtime(name)
            if runtime.available(device, dtype) is not None:
                continue
            try:
                fn = runtime.prepare(stack, example.to(device), dtype=dtype, device=device, threads=threads)
            except Exception:  # noqa: BLE001 - a runtime that cannot run the stack gives no ceiling
                continue
            label = f"{name} 4x conv3x3 {channels}ch {side}x{side}"
            candidates[label] = _best_rate(fn, conv_flops, repeat)
        source = max(candidates, key=candidates.__getitem__)
        gflops[dtype] = candidates[source] / 1e9
        sources[dtype] = source
    # Bandwidth: a copy far beyond the last-level cache; read + write.
    mib = 128 if quick else 512
    src = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    bytes_moved = 2 * src.numel() * src.element_size()
    gbytes = _best_rate(lambda: dst.copy_(src), bytes_moved, repeat) / 1e9
    sources["bandwidth"] = f"copy of {mib} MiB (read + write)"
    return {
        "gflops": gflops,
        "gbytes_per_s": gbytes,
        "theoretical_gflops": theoretical_peak(_read_cpuinfo(), _cpus()) if device == "cpu" else {},
        "sources": sources,
        "threads": threads,
        "quick": quick,
    }


def _cache_key(device: str, threads: int) -> dict[str, Any]:
    from cnnlab.bench.run import machine_info

    info = machine_info(device)
    return {"format": CACHE_FORMAT, "device": device, "cpu": info.get("cpu"), "gpu": info.get("gpu"),
            "cpus": _cpus(), "threads": threads, "torch": info.get("torch"),
            "onnxruntime": info.get("onnxruntime"), "openvino": info.get("openvino")}


def _cache_path(key: dict[str, Any]) -> Any:
    from cnnlab.catalog import cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"roofline-ceilings-{digest}.json"


def ceilings(device: str = "cpu", *, remeasure: bool = False, quick: bool = False,
             threads: int | None = None) -> Ceilings:
    """The cached ceilings for this machine, measured (and cached) when missing, unreadable or
    ``remeasure``. A quick measurement never replaces a full one in the cache; a full one
    replaces a quick one."""
    import torch

    from cnnlab.fileio import atomic_write_text

    if threads is not None:
        torch.set_num_threads(threads)
    key = _cache_key(device, torch.get_num_threads())
    path = _cache_path(key)
    if not remeasure:
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key and (quick or not cached["ceilings"].get("quick")):
                return cached["ceilings"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # missing or corrupt: measure again
    measured = measure_ceilings(device, quick=quick)
    measured["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        atomic_write_text(path, json.dumps({"key": key, "ceilings": measured}, indent=2) + "\n")
    except OSError:
        pass  # an unwritable cache is never an error
    return measured
