"""This machine's roofline ceilings: the compute rate (GFLOP/s, per dtype) and the memory bandwidth
(GB/s) that the roofline model (Williams, Waterman & Patterson 2009, "Roofline: an insightful
visual performance model", CACM 52(4)) bounds a layer's time with.

Both are measured, not taken from a data sheet:

- compute, per dtype: the best rate of a large matrix product (``torch.mm``) and of a stack of
  3x3 convolutions run by every runtime available (torch eager and channels-last, ONNX Runtime,
  OpenVINO). torch's own GEMM alone would understate the ceiling: OpenVINO's convolutions run
  well above it on the same cores.
- bandwidth: a copy of a buffer far larger than the caches, counting bytes read plus written.

Beside them, the CPU's theoretical peak where ``/proc/cpuinfo`` tells the cores, clock and vector
units (``theoretical_peak``; the assumptions are reported with it). It is context only: the
roofline uses the measured ceilings.

Each dtype's compute ceiling and the bandwidth are cached in the user cache directory
(``cnnlab.catalog.cache_dir()``) under a key of the device, the CPU's name, its logical CPUs,
torch's threads and the library versions (and the dtype, per entry); ``remeasure=True`` refreshes
them. A quick measurement never replaces a full one in the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from cnnlab.threads import torch_threads

__all__ = ["TheoreticalPeak", "machine_ceilings", "measure_bandwidth", "measure_ceilings", "measure_compute",
           "theoretical_peak"]

CACHE_FORMAT = 2
DTYPES = ("fp32", "bf16")
AMX_BF16_FLOPS_PER_CYCLE = 1024  # Intel: 4th-gen Xeon's AMX tile unit, 1024 BF16 operations per cycle per core


class TheoreticalPeak(NamedTuple):
    """GFLOP/s per dtype (None where it cannot be read) and the assumptions behind them."""

    fp32: float | None
    bf16: float | None
    assumption: str


# -- the theoretical peak ------------------------------------------------------------------------
def _processors(cpuinfo: str) -> list[dict[str, str]]:
    """``/proc/cpuinfo``'s text as one dict per logical processor."""
    blocks: list[dict[str, str]] = []
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            continue
        if key == "processor" or not blocks:
            blocks.append({})
        blocks[-1][key] = value.strip()
    return blocks


def _fp32_per_cycle(flags: set[str], vendor: str, family: int | None, model: int | None) -> tuple[int, str] | None:
    """fp32 FLOPs per cycle per core (two FMA units, multiply + add) and what was assumed."""
    amd = vendor == "AuthenticAMD"
    if amd and family == 23 and model is not None and model < 0x30:
        return 2 * 4 * 2, "two 128-bit FMA units per core (AMD Zen/Zen+)"
    if "avx512f" in flags and not (amd and family is not None and family <= 25):
        return 2 * 16 * 2, "two 512-bit FMA units per core (AVX-512; some CPUs have one)"
    if "avx2" in flags and "fma" in flags:
        why = "AVX-512 runs on 256-bit halves on AMD Zen 4" if "avx512f" in flags else "AVX2"
        return 2 * 8 * 2, f"two 256-bit FMA units per core ({why})"
    return None


def theoretical_peak(cpuinfo: str, cpus: Iterable[int] | None = None,
                     max_mhz: float | None = None) -> TheoreticalPeak:
    """The peak GFLOP/s of the ``cpus`` (logical processor numbers; default all in ``cpuinfo``)
    from ``/proc/cpuinfo``'s text: physical cores x clock x FLOPs per cycle per core.

    Cores are the distinct (physical id, core id) pairs (the logical CPUs when those are missing:
    SMT siblings share one core's FMA units). The clock is ``max_mhz`` (cpufreq's maximum) when
    given, else cpuinfo's "cpu MHz" (a VM's nominal clock; boost clocks may exceed it). FLOPs per
    cycle assume two FMA units per core at the vector width the flags allow; bf16 doubles fp32
    with AVX512_BF16's dot products and is AMX's 1024 per cycle per core with amx_bf16, else
    equals fp32 (bf16 computed in fp32 units). None when the clock or vector flags are missing.
    """
    blocks = _processors(cpuinfo)
    wanted = None if cpus is None else {str(c) for c in cpus}
    chosen = [b for b in blocks if wanted is None or b.get("processor") in wanted] or blocks
    if not chosen:
        return TheoreticalPeak(None, None, "no /proc/cpuinfo to read")
    first = chosen[0]
    try:
        mhz = float(max_mhz) if max_mhz else float(first.get("cpu MHz", ""))
    except ValueError:
        mhz = 0.0
    flags = set(first.get("flags", "").split())
    if not mhz or not flags:
        return TheoreticalPeak(None, None, "cannot read the clock or the vector flags from /proc/cpuinfo")

    def number(key: str) -> int | None:
        text = first.get(key, "")
        return int(text) if text.isdigit() else None

    per_cycle = _fp32_per_cycle(flags, first.get("vendor_id", ""), number("cpu family"), number("model"))
    if per_cycle is None:
        return TheoreticalPeak(None, None, "no AVX2/FMA or AVX-512 flags: vector units not modelled")
    fp32_cycle, units = per_cycle
    if all("physical id" in b and "core id" in b for b in chosen):
        cores, counted = len({(b["physical id"], b["core id"]) for b in chosen}), "physical cores"
    else:
        cores, counted = len(chosen), "logical CPUs (no core ids in cpuinfo)"
    fp32 = cores * mhz / 1000 * fp32_cycle
    if "amx_bf16" in flags:
        bf16, bf16_why = cores * mhz / 1000 * AMX_BF16_FLOPS_PER_CYCLE, f"AMX, {AMX_BF16_FLOPS_PER_CYCLE} per cycle"
    elif "avx512_bf16" in flags:
        bf16, bf16_why = 2 * fp32, "2x fp32 with AVX512_BF16 dot products"
    else:
        bf16, bf16_why = fp32, "as fp32: no bf16 arithmetic units"
    clock = "cpufreq's maximum" if max_mhz else "cpuinfo's 'cpu MHz'; boost may exceed it"
    return TheoreticalPeak(fp32, bf16, f"{cores} {counted} x {mhz:.0f} MHz ({clock}) x {fp32_cycle} fp32 "
                                       f"FLOPs/cycle, {units}; bf16 {bf16_why}")


def _allowed_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _max_mhz(cpu: int) -> float | None:
    text = _read(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq").strip()
    return int(text) / 1000 if text.isdigit() else None  # kHz


def this_cpu_peak() -> TheoreticalPeak:
    """``theoretical_peak`` of the CPUs this process may run on."""
    cpus = _allowed_cpus()
    return theoretical_peak(_read("/proc/cpuinfo"), cpus, _max_mhz(cpus[0]) if cpus else None)


# -- measurement ---------------------------------------------------------------------------------
def _best_rate(fn: Callable[[], Any], work: float, repeat: int) -> float:
    """``work`` units per second at the fastest of ``repeat`` calls (after one warm-up call): a
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


def _check_device(device: str) -> None:
    if device != "cpu":
        raise ValueError(f"the ceilings are measured on the CPU only, got device {device!r}")


def measure_compute(dtype: str, *, device: str = "cpu", quick: bool = False) -> tuple[float, str, dict[str, float]]:
    """This dtype's compute ceiling now (no cache): (GFLOP/s, what reached it, every candidate's
    GFLOP/s). Candidates: ``torch.mm`` of two n x n matrices (n = 2048, 1024 quick) and four 3x3
    convolutions (256 channels at 56x56; 128 at 28x28 quick) on each available runtime."""
    import torch
    from torch import nn

    from cnnlab.analysis import analyze
    from cnnlab.bench.runtimes import get_runtime, torch_dtype

    _check_device(device)
    if dtype not in DTYPES:
        raise ValueError(f"no compute ceiling for dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    repeat, n = (3, 1024) if quick else (5, 2048)
    channels, side = (128, 28) if quick else (256, 56)
    candidates: dict[str, float] = {}
    a = torch.randn(n, n, dtype=torch_dtype(dtype))
    b = torch.randn(n, n, dtype=torch_dtype(dtype))
    candidates[f"torch.mm {n}x{n}"] = _best_rate(lambda: torch.mm(a, b), 2 * n**3, repeat) / 1e9
    del a, b
    stack = nn.Sequential(*[nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(4)]).eval()
    example = torch.randn(1, channels, side, side)
    flops = analyze(stack, tuple(example.shape)).flops
    for name in ("eager", "channels_last", "onnxruntime", "openvino"):
        runtime = get_runtime(name)
        if runtime.available(device, dtype) is not None:
            continue
        try:
            fn = runtime.prepare(stack, example, dtype=dtype, device=device, threads=torch.get_num_threads())
            rate = _best_rate(fn, flops, repeat) / 1e9
        except Exception:  # noqa: BLE001 - a runtime that cannot run the stack gives no candidate
            continue
        candidates[f"{name} 4x conv3x3 {channels}ch {side}x{side}"] = rate
    best = max(candidates, key=candidates.__getitem__)
    return candidates[best], best, candidates


def measure_bandwidth(*, device: str = "cpu", quick: bool = False) -> tuple[float, str]:
    """The memory bandwidth now (no cache): (GB/s, how) from copying 512 MiB (128 MiB quick),
    bytes read plus bytes written, best of a few copies."""
    import torch

    _check_device(device)
    mib = 128 if quick else 512
    src = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    rate = _best_rate(lambda: dst.copy_(src), 2 * mib * 2**20, 3 if quick else 5) / 1e9
    return rate, f"copy of {mib} MiB (read + write)"


def measure_ceilings(device: str = "cpu", *, dtypes: Iterable[str] = DTYPES, quick: bool = False,
                     threads: int | None = None) -> dict[str, Any]:
    """Measure every ceiling now, without the cache (``machine_ceilings`` caches): the dict
    ``machine_ceilings`` returns. About 5 s for fp32 and bf16 on a 2-core machine, 4 s quick."""
    def measure() -> dict[str, Any]:
        compute = {d: _compute_entry(*measure_compute(d, device=device, quick=quick), quick) for d in dtypes}
        return _assemble(compute, _bandwidth_entry(*measure_bandwidth(device=device, quick=quick), quick), threads)

    with torch_threads(threads):
        return measure()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _compute_entry(gflops: float, source: str, candidates: dict[str, float], quick: bool) -> dict[str, Any]:
    return {"gflops": gflops, "source": source, "candidates": candidates, "quick": quick, "measured_at": _now()}


def _bandwidth_entry(gbytes: float, source: str, quick: bool) -> dict[str, Any]:
    return {"gbytes_per_s": gbytes, "source": source, "quick": quick, "measured_at": _now()}


def _assemble(compute: dict[str, dict[str, Any]], bandwidth: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """The ceilings as ``cnnlab roofline --json`` documents them."""
    import torch

    peak = this_cpu_peak()
    sources = {d: e["source"] for d, e in compute.items()}
    sources.update(bandwidth=bandwidth["source"], theoretical=peak.assumption)
    return {
        "gflops": {d: e["gflops"] for d, e in compute.items()},
        "gbytes_per_s": bandwidth["gbytes_per_s"],
        "theoretical_gflops": {"fp32": peak.fp32, "bf16": peak.bf16},
        "sources": sources,
        "candidates": {d: e["candidates"] for d, e in compute.items()},
        "threads": threads if threads is not None else torch.get_num_threads(),
        "quick": any(e["quick"] for e in (*compute.values(), bandwidth)),
        "measured_at": {**{d: e["measured_at"] for d, e in compute.items()}, "bandwidth": bandwidth["measured_at"]},
    }


# -- the cache -----------------------------------------------------------------------------------
def _cache_key(device: str, threads: int) -> dict[str, Any]:
    from cnnlab.bench.run import machine_info

    info = machine_info(device)
    return {"format": CACHE_FORMAT, "device": device, "cpu": info.get("cpu"), "cpus": len(_allowed_cpus()),
            "threads": threads, "torch": info.get("torch"), "onnxruntime": info.get("onnxruntime"),
            "openvino": info.get("openvino")}


def _cache_path(key: dict[str, Any]) -> Path:
    from cnnlab.catalog import cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"roofline-ceilings-{digest}.json"


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _valid(name: str, entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
        return False
    if name == "bandwidth":
        return _positive(entry.get("gbytes_per_s"))
    return _positive(entry.get("gflops")) and isinstance(entry.get("candidates"), dict)


def _load(path: Path, key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The cached entries (per dtype, and "bandwidth") that are whole and were made under ``key``;
    nothing from a missing or corrupt file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("entries"), dict):
        return {}
    return {name: entry for name, entry in data["entries"].items() if _valid(name, entry)}


def machine_ceilings(device: str = "cpu", *, dtypes: Iterable[str] = DTYPES, remeasure: bool = False,
                     quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """This machine's ceilings from the cache, measuring (and caching) the ones missing, unreadable
    or asked for with ``remeasure``; a cached quick one serves only ``quick`` calls, and a quick
    measurement never replaces a full one in the cache. Returns ``{"gflops": {dtype: GFLOP/s},
    "gbytes_per_s", "theoretical_gflops": {dtype: GFLOP/s or None}, "sources": {dtype,
    "bandwidth", "theoretical": what reached or was assumed for each}, "candidates": {dtype:
    {what: GFLOP/s}}, "threads", "quick", "measured_at": {dtype, "bandwidth"}}``."""
    import torch

    from cnnlab.fileio import atomic_write_text

    _check_device(device)
    dtypes = list(dict.fromkeys(dtypes))
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f"no compute ceiling for dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    n_threads = threads if threads is not None else torch.get_num_threads()
    key = _cache_key(device, n_threads)
    path = _cache_path(key)
    entries = _load(path, key)
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        d: (lambda d=d: _compute_entry(*measure_compute(d, device=device, quick=quick), quick)) for d in dtypes}
    measures["bandwidth"] = lambda: _bandwidth_entry(*measure_bandwidth(device=device, quick=quick), quick)
    got, changed = {}, False
    for name, measure in measures.items():
        entry = entries.get(name)
        if entry is None or remeasure or (entry.get("quick") and not quick):
            with torch_threads(threads):
                entry = measure()
            old = entries.get(name)
            if not (entry["quick"] and old is not None and not old.get("quick")):
                entries[name], changed = entry, True
        got[name] = entry
    if changed:
        try:
            atomic_write_text(path, json.dumps({"key": key, "entries": entries}, indent=2) + "\n")
        except OSError:
            pass  # an unwritable cache is never an error
    bandwidth = got.pop("bandwidth")
    return _assemble(got, bandwidth, n_threads)
