"""``cnnlab.bench.bench``: build each model, verify each runtime against fp32 eager, time it.

The command line (``cnnlab bench``) parses its arguments into this call and prints the result;
``BenchResult.to_dict()`` is the ``--json`` document::

    {"machine": {"cpu", "cores", "threads", "torch", "onnxruntime", "openvino", "python",
                 "platform", "device", "loadavg", "cpu_flags"},
     "results": [{"model", "runtime", "dtype", "batch", "input_shape", "median_ms", "iqr_ms",
                  "images_per_s", "max_rel_diff", "ok", "error",
                  "repeats", "peak_memory_mb", "device", "note"}]}

``input_shape`` is the full input (batch first). A runtime that is not available here, fails
to prepare or run, or disagrees with eager has ``ok: false``, its ``error`` says why, and its
times are null: it is never dropped. ``max_rel_diff`` is ``max |out - ref| / max |ref|``
against fp32 eager (for bf16/fp16 the measured error against fp32).
"""

from __future__ import annotations

import gc
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable, Sequence

from cnnlab.bench.runtimes import DTYPES, RUNTIMES, get_runtime, shared_exports
from cnnlab.bench.timer import time_callable
from cnnlab.bench.verify import WEAK, max_rel_diff, reference_model, tolerance_for
from cnnlab.threads import torch_threads

__all__ = ["BenchResult", "Result", "bench", "load_warning", "machine_info", "one_line"]

RESULT_KEYS = ("model", "runtime", "dtype", "batch", "input_shape", "median_ms", "iqr_ms", "images_per_s",
               "max_rel_diff", "ok", "error")


@dataclass
class Result:
    """One model x input x runtime."""

    model: str
    runtime: str
    dtype: str
    batch: int
    input_shape: list[int]
    median_ms: float | None = None
    iqr_ms: float | None = None
    images_per_s: float | None = None
    max_rel_diff: float | None = None
    ok: bool = False
    error: str | None = None
    repeats: int = 0
    peak_memory_mb: float | None = None
    device: str = "cpu"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["max_rel_diff"] is not None and not math.isfinite(data["max_rel_diff"]):
            data["max_rel_diff"] = None  # JSON has no inf
        return data


@dataclass
class BenchResult:
    machine: dict[str, Any]
    results: list[Result] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": dict(self.machine), "results": [r.to_dict() for r in self.results]}

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), indent=2)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in flags]
    except OSError:
        pass
    return []


def machine_info(device: str = "cpu") -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "onnx": _version("onnx"),
        "python": ".".join(map(str, sys.version_info[:3])),
        "platform": platform.platform(),
        "device": device,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_flags": _cpu_flags(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def load_warning(threshold: float = 0.5) -> str | None:
    """A warning when the 1-minute load average exceeds ``threshold`` per CPU: other processes
    slow the runtimes unevenly (eager suffers most), so ratios taken now mislead."""
    if not hasattr(os, "getloadavg"):
        return None
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load <= threshold * cpus:
        return None
    return (f"the machine is busy (load {load:.2f} on {cpus} CPUs): timings will be noisy and eager slowed "
            "most; measure on a quiet machine")


# -- models and inputs ---------------------------------------------------------------------------
ModelSpec = Any  # a registered name, an nn.Module, or (label, nn.Module)


def _resolve(spec: ModelSpec) -> tuple[str, Any, tuple[int, ...] | None]:
    """(label, model in eval mode on the CPU, native C x H x W or None)."""
    from torch import nn

    if isinstance(spec, str):
        from cnnlab.registry import create_model, model_info

        info = model_info(spec)
        return spec, create_model(spec).eval(), tuple(info.input_size)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], nn.Module):
        return str(spec[0]), spec[1].eval(), None
    if isinstance(spec, nn.Module):
        return type(spec).__name__, spec.eval(), None
    raise TypeError(f"a model is a registered name, an nn.Module or (label, nn.Module); got {type(spec).__name__}")


def _shapes(label: str, native: tuple[int, ...] | None, input: Sequence[int] | None,
            resolutions: Sequence[Any] | None) -> list[tuple[int, ...]]:
    """The sample shapes (no batch) to run ``label`` at."""
    if input is not None:
        base = tuple(int(d) for d in input)
    elif native is not None:
        base = native
    else:
        raise ValueError(f"{label}: give its input shape (input=(3, 224, 224)); it has no native size")
    if not resolutions:
        return [base]
    channels = base[0]
    out = []
    for res in resolutions:
        hw = (int(res), int(res)) if isinstance(res, int) else tuple(int(d) for d in res)
        if len(hw) != 2:
            raise ValueError(f"a resolution is one side or (H, W), got {res!r}")
        out.append((channels, *hw))
    return out


# -- the benchmark -------------------------------------------------------------------------------
def _check(runtimes: Iterable[str] | str, dtype: str, device: str, batch: Sequence[int],
           warmup: int, repeat: int | None, min_time: float | None, threads: int | None) -> list[str]:
    names = list(RUNTIMES) if runtimes == "all" else [runtimes] if isinstance(runtimes, str) else list(runtimes)
    if "all" in names:
        names = list(RUNTIMES)
    for name in names:
        get_runtime(name)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    if not batch or any(b < 1 for b in batch):
        raise ValueError(f"batch sizes must be >= 1, got {list(batch)}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if min_time is None and (repeat is None or repeat < 1):
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if min_time is not None and min_time <= 0:
        raise ValueError(f"min_time must be > 0, got {min_time}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return list(dict.fromkeys(names))


def bench(
    models: Sequence[ModelSpec] | ModelSpec,
    *,
    batch: Sequence[int] | int = (1,),
    input: Sequence[int] | None = None,
    resolutions: Sequence[Any] | None = None,
    runtimes: Iterable[str] | str = ("eager",),
    dtype: str = "fp32",
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 3,
    repeat: int | None = 10,
    min_time: float | None = None,
    progress: Callable[[Result], None] | None = None,
    seed: int = 0,
) -> BenchResult:
    """Verify and time each model on each runtime, for each input shape and batch size.

    ``models``: registered names, nn.Modules or (label, nn.Module) pairs. ``input``: one
    sample's shape (C, H, W), default the registered model's native size; ``resolutions``: H x W
    sizes (``224`` or ``(480, 640)``) to run instead, with ``input``'s (or the native) channels.
    ``runtimes``: names from ``RUNTIMES`` or ``"all"``. ``repeat`` timed calls, or as many as
    fit in ``min_time`` seconds, after ``warmup`` calls. ``progress(result)`` is called after
    each model/runtime.
    """
    import torch

    if isinstance(models, (str, torch.nn.Module)) or (isinstance(models, tuple) and len(models) == 2
                                                       and isinstance(models[1], torch.nn.Module)):
        models = [models]
    batches = [batch] if isinstance(batch, int) else list(batch)
    names = _check(runtimes, dtype, device, batches, warmup, repeat, min_time, threads)
    with torch_threads(threads) as n_threads:
        out = BenchResult(machine_info(device))
        for spec in models:
            label, model, native = _resolve(spec)
            for shape in _shapes(label, native, input, resolutions):
                for size in batches:
                    for result in _bench_one(label, model, (size, *shape), names, dtype, device, n_threads,
                                             warmup, repeat, min_time, seed):
                        out.results.append(result)
                        if progress is not None:
                            progress(result)
        return out


def one_line(exc: BaseException) -> str:
    """``Type: first non-empty line of the message`` (torch's messages run over many lines)."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _bench_one(label: str, model: Any, shape: tuple[int, ...], names: list[str], dtype: str, device: str,
               threads: int, warmup: int, repeat: int | None, min_time: float | None,
               seed: int) -> Iterable[Result]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(shape, generator=generator)
    try:
        found = reference_model(model, example, seed)
        model, note = found.model, found.note
        with torch.inference_mode():
            reference = model(example)
        weak = note.startswith(WEAK)
        tolerance = tolerance_for(dtype, found.sensitivity if math.isfinite(found.sensitivity) else 0.0)
    except Exception as exc:  # noqa: BLE001 - the reference itself fails: every runtime says so
        for name in names:
            yield Result(label, name, dtype, shape[0], list(shape), device=device,
                         error=f"the fp32 eager reference failed: {one_line(exc)}")
        return
    with shared_exports():  # one ONNX export for ONNX Runtime and OpenVINO
        for name in names:
            runtime = get_runtime(name)
            result = Result(label, name, dtype, shape[0], list(shape), device=device, note=note)
            reason = runtime.available(device, dtype)
            if reason is not None:
                result.error = f"not available: {reason}"
                yield result
                continue
            fn = None
            try:
                fn = runtime.prepare(model, example, dtype=dtype, device=device, threads=threads)
                with torch.inference_mode():
                    diff = max_rel_diff(fn(), reference)
                if not diff <= tolerance and runtime.fallback:
                    fn = None
                    fn = runtime.prepare(model, example, dtype=dtype, device=device, threads=threads, fallback=True)
                    result.note = "; ".join(filter(None, [note, f"{runtime.fallback} (max relative difference "
                                                                f"{diff:.3g})"]))
                    with torch.inference_mode():
                        diff = max_rel_diff(fn(), reference)
                result.max_rel_diff = diff
                if not result.max_rel_diff <= tolerance:
                    result.error = (f"disagrees with fp32 eager: max relative difference {result.max_rel_diff:.3g} "
                                    f"> {tolerance:g}")
                elif weak:
                    result.error = note
                else:
                    timing = time_callable(fn, batch=shape[0], warmup=warmup, repeat=repeat, min_time=min_time,
                                           device=device)
                    result.median_ms, result.iqr_ms = timing.median_ms, timing.iqr_ms
                    result.images_per_s, result.repeats = timing.images_per_s, timing.repeats
                    result.peak_memory_mb = timing.peak_memory_mb
                    result.ok = True
            except Exception as exc:  # noqa: BLE001 - reported, never dropped
                result.error = f"failed: {one_line(exc)}"
            finally:
                del fn
                gc.collect()
            yield result
