"""The roofline model for a network: how fast each layer could run on this machine at best, how
fast it does run, and which layers are limited by memory rather than arithmetic.

A layer doing F FLOPs and moving B bytes cannot take less than max(F / peak, B / bandwidth)
(Williams, Waterman & Patterson 2009, "Roofline"); it is memory-bound when the second term is the
larger, i.e. when its arithmetic intensity F / B is below peak / bandwidth. F and B come from
``cnnlab.analyze`` (``mem_access`` elements x the dtype's size: every tensor read and written
once), the ceilings from ``cnnlab.bench.ceilings``.

The whole model's bound is the same formula over the network: all its FLOPs, and the bytes that
any runtime must move at least once (the weights and the input). Summing the layers' bounds
instead (``layers_bound_ms``) bounds a runtime that runs the layers one by one from memory, as
eager does; a runtime that fuses BN and ReLU into the convolutions and keeps activations in
cache beats that sum, so it is not the model's bound.

Measured per-layer times come from eager PyTorch: a forward pre-hook and a forward hook on every
module time each call, and a module's own time is its time less its children's, the same "own
cost" split the analyzer's rows use (a block's functional ``x + identity`` belongs to the block).
Hooks are chosen over ``torch.profiler`` because they attribute time to the same module names as
the analysis without matching operator events back to modules. The whole model's time is measured
separately, without hooks, by ``cnnlab.bench`` on the chosen runtime. (The hooks themselves cost
a few microseconds per module, which lands in the containers' own time and inflates the smallest
layers' times: read the per-layer percentages of tiny layers with that in mind.)

``roofline_report`` is ``cnnlab roofline``: ceilings, then each model bounded and timed.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from cnnlab.threads import torch_threads

__all__ = ["LayerBound", "RooflineReport", "RooflineResult", "bound_ms", "layer_times_ms", "model_roofline",
           "plot_roofline", "roofline_report"]

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def bound_ms(flops: float, nbytes: float, gflops: float, gbytes_per_s: float) -> tuple[float, bool]:
    """The roofline's lower bound in milliseconds and whether it is set by memory."""
    compute = flops / (gflops * 1e9) * 1e3
    memory = nbytes / (gbytes_per_s * 1e9) * 1e3
    return max(compute, memory), memory > compute


@dataclass
class LayerBound:
    """One layer (a module's own work): its FLOPs and bytes, bound, eager time and what limits it."""

    name: str
    type: str
    flops: int
    bytes: int
    bound_ms: float
    memory_bound: bool
    measured_ms: float | None = None

    @property
    def intensity(self) -> float | None:
        return self.flops / self.bytes if self.bytes else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "flops": self.flops, "bytes": self.bytes,
                "intensity": self.intensity, "bound_ms": self.bound_ms, "measured_ms": self.measured_ms,
                "memory_bound": self.memory_bound,
                "percent_of_roofline": _percent(self.bound_ms, self.measured_ms)}


def _percent(bound: float, measured: float | None) -> float | None:
    return 100.0 * bound / measured if measured else None


@dataclass
class RooflineResult:
    """One model on one runtime and dtype: its layers, its bound and its measured time."""

    model: str
    runtime: str
    dtype: str
    input_shape: list[int]
    ceilings: dict[str, Any]
    layers: list[LayerBound] = field(default_factory=list)
    measured_ms: float | None = None
    flops: int = 0
    min_bytes: int = 0  # what any runtime must move: the weights and the input, once
    error: str | None = None

    def _model_bound(self) -> tuple[float, bool]:
        return bound_ms(self.flops, self.min_bytes, self.ceilings["gflops"][self.dtype], self.ceilings["gbytes_per_s"])

    @property
    def bound_ms(self) -> float:
        """The whole model's lower bound: max(FLOPs / peak, weights and input bytes / bandwidth)."""
        return self._model_bound()[0]

    @property
    def memory_bound(self) -> bool:
        return self._model_bound()[1]

    @property
    def layers_bound_ms(self) -> float:
        """The sum of the layers' bounds: the least time running them one by one from memory."""
        return sum(layer.bound_ms for layer in self.layers)

    @property
    def achieved_gflops(self) -> float | None:
        return self.flops / (self.measured_ms * 1e6) if self.measured_ms else None

    def by_type(self) -> list[dict[str, Any]]:
        """Per module class: FLOPs, bytes, bound and measured time, and how many of its layers are
        memory-bound; slowest measured first."""
        groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"flops": 0, "bytes": 0, "bound_ms": 0.0,
                                                                 "measured_ms": 0.0, "layers": 0, "memory_bound": 0})
        for layer in self.layers:
            g = groups[layer.type]
            g["flops"] += layer.flops
            g["bytes"] += layer.bytes
            g["bound_ms"] += layer.bound_ms
            g["measured_ms"] += layer.measured_ms or 0.0
            g["layers"] += 1
            g["memory_bound"] += layer.memory_bound
        rows = [{"type": t, **g, "percent_of_roofline": _percent(g["bound_ms"], g["measured_ms"])}
                for t, g in groups.items()]
        return sorted(rows, key=lambda r: -r["measured_ms"])

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "runtime": self.runtime, "dtype": self.dtype, "input_shape": self.input_shape,
                "flops": self.flops, "min_bytes": self.min_bytes, "measured_ms": self.measured_ms,
                "bound_ms": self.bound_ms, "memory_bound": self.memory_bound,
                "percent_of_roofline": _percent(self.bound_ms, self.measured_ms),
                "layers_bound_ms": self.layers_bound_ms,
                "achieved_gflops": self.achieved_gflops, "error": self.error,
                "memory_bound_layers": sum(layer.memory_bound for layer in self.layers),
                "layers": [layer.to_dict() for layer in self.layers], "by_type": self.by_type()}


def layer_times_ms(model: Any, example: Any, *, repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Each module's own eager time per forward pass in ms (its time less its children's, summed
    over its calls), the median over ``repeat`` passes, keyed by its qualified name ("" for the
    root)."""
    import statistics

    import torch

    names = {id(m): n for n, m in model.named_modules()}
    children = {n: [names[id(c)] for c in m.children()] for n, m in model.named_modules()}
    starts: dict[str, list[float]] = defaultdict(list)
    totals: dict[str, float] = defaultdict(float)

    def pre(module: Any, _args: Any) -> None:
        starts[names[id(module)]].append(time.perf_counter())

    def post(module: Any, _args: Any, _out: Any) -> None:
        name = names[id(module)]
        totals[name] += time.perf_counter() - starts[name].pop()

    handles = []
    for m in model.modules():
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    runs: list[dict[str, float]] = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeat):
                totals.clear()
                model(example)
                if i >= warmup:
                    runs.append({n: totals[n] - sum(totals.get(c, 0.0) for c in children[n]) for n in totals})
    finally:
        for h in handles:
            h.remove()
    return {n: statistics.median(r.get(n, 0.0) for r in runs) * 1e3 for n in runs[0]}


def model_roofline(model: Any, input_shape: tuple[int, ...], ceilings: dict[str, Any], *, label: str = "model",
                   runtime: str = "eager", dtype: str = "fp32", measured_ms: float | None = None,
                   layer_repeat: int = 5) -> RooflineResult:
    """Bound every layer of ``model`` (an nn.Module on the CPU) at ``input_shape`` (batch
    included) under ``ceilings`` (``cnnlab.bench.ceilings.machine_ceilings``) and time its layers
    in eager mode in ``dtype``. ``measured_ms`` is the whole model's time on ``runtime``, measured
    by the caller (``roofline_report`` times it with ``cnnlab.bench``)."""
    import copy

    import torch

    from cnnlab.analysis import analyze
    from cnnlab.bench.runtimes import torch_dtype

    if dtype not in ceilings["gflops"]:
        raise ValueError(f"no {dtype} compute ceiling measured; measured: {', '.join(ceilings['gflops'])}")
    peak, bandwidth = ceilings["gflops"][dtype], ceilings["gbytes_per_s"]
    analysis = analyze(model, tuple(input_shape))
    size = DTYPE_BYTES[dtype]
    inputs = math.prod(input_shape)
    result = RooflineResult(label, runtime, dtype, list(input_shape), ceilings, flops=analysis.flops,
                            min_bytes=(analysis.total["params"] + inputs) * size, measured_ms=measured_ms)
    for row in analysis.layers:
        nbytes = row["mem_access"] * size
        if not row["flops"] and not nbytes:
            continue
        bound, memory = bound_ms(row["flops"], nbytes, peak, bandwidth)
        result.layers.append(LayerBound(row["name"], row["type"], row["flops"], nbytes, bound, memory))
    timed = model.eval() if dtype == "fp32" else copy.deepcopy(model).eval().to(torch_dtype(dtype))
    example = torch.randn(tuple(input_shape), generator=torch.Generator().manual_seed(0)).to(torch_dtype(dtype))
    times = layer_times_ms(timed, example, repeat=layer_repeat)
    for layer in result.layers:
        layer.measured_ms = times.get(layer.name)
    return result


@dataclass
class RooflineReport:
    """What ``cnnlab roofline`` prints; ``to_dict()`` is its ``--json`` (docs/roofline.md)."""

    machine: dict[str, Any]
    ceilings: dict[str, Any]
    models: list[RooflineResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"machine": dict(self.machine), "ceilings": self.ceilings, "models": [m.to_dict() for m in self.models]}


def roofline_report(models: Any, *, input: tuple[int, ...] | None = None, batch: int = 1, runtime: str = "eager",
                    dtype: str = "fp32", threads: int | None = None, remeasure: bool = False, quick: bool = False,
                    ceilings: dict[str, Any] | None = None, progress: Any = None) -> RooflineReport:
    """The machine's ceilings (cached; ``remeasure``, ``quick`` as ``machine_ceilings`` takes
    them, or the given ``ceilings``), then each model (registered names, nn.Modules or (label,
    nn.Module) pairs, as ``cnnlab.bench.bench`` takes them) at ``input`` (one sample's C x H x W,
    default its native size) and ``batch``: its layers bounded and timed in eager mode, the whole
    model timed by ``cnnlab.bench`` on ``runtime`` in ``dtype``. ``progress(text)`` is told each
    step."""
    import torch

    from cnnlab.bench.ceilings import machine_ceilings
    from cnnlab.bench.run import _resolve, _shapes, bench, machine_info
    from cnnlab.bench.runtimes import get_runtime

    get_runtime(runtime)
    if dtype not in DTYPE_BYTES or dtype == "fp16":
        raise ValueError(f"dtype must be fp32 or bf16, got {dtype!r}")
    for option, value in (("batch", batch), ("threads", threads)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{option} must be an integer >= 1, got {value!r}")
    if isinstance(models, (str, torch.nn.Module)) or (isinstance(models, tuple) and len(models) == 2
                                                       and isinstance(models[1], torch.nn.Module)):
        models = [models]
    say = progress or (lambda text: None)
    with torch_threads(threads):
        if ceilings is None:
            say("ceilings" + (" (measuring)" if remeasure else ""))
            ceilings = machine_ceilings(remeasure=remeasure, quick=quick)
        report = RooflineReport(machine_info("cpu"), ceilings)
        for spec in models:
            label, module, native = _resolve(spec)
            shape = _shapes(label, native, input, None)[0]
            say(f"{label}: {runtime} {dtype}")
            timed = bench([(label, module)], batch=batch, input=shape, runtimes=[runtime], dtype=dtype,
                          repeat=5 if quick else 10).results[0]
            say(f"{label}: layers in eager mode")
            result = model_roofline(module, (batch, *shape), ceilings, label=label, runtime=runtime, dtype=dtype,
                                    measured_ms=timed.median_ms if timed.ok else None,
                                    layer_repeat=3 if quick else 5)
            result.error = None if timed.ok else timed.error
            report.models.append(result)
        return report


def plot_roofline(result: RooflineResult, folder: Any) -> list[Any]:
    """The roofline chart of one model: each layer at (arithmetic intensity, achieved GFLOP/s in
    eager mode), log-log, under the bandwidth slope and the compute ceiling, and the whole model's
    rate on its runtime as a dashed line; saved as ``roofline_<model>.png`` and ``.svg``."""
    from pathlib import Path

    from cnnlab.bench.plots import pyplot
    from cnnlab.fileio import save_figure

    plt = pyplot()
    peak, bandwidth = result.ceilings["gflops"][result.dtype], result.ceilings["gbytes_per_s"]
    points = [(layer.intensity, layer.flops / (layer.measured_ms * 1e6), layer.memory_bound)
              for layer in result.layers if layer.intensity and layer.measured_ms and layer.flops]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    xs = [p[0] for p in points] or [1.0]
    lo, hi = min(min(xs) / 2, peak / bandwidth / 4), max(max(xs) * 2, peak / bandwidth * 4)
    ridge = peak / bandwidth
    ax.plot([lo, ridge, hi], [lo * bandwidth, peak, peak], color="black", linewidth=1.2,
            label=f"ceilings: {peak:.0f} GFLOP/s, {bandwidth:.1f} GB/s")
    for memory, colour, name in ((True, "#d62728", "memory-bound layers"), (False, "#1f77b4", "compute-bound layers")):
        sel = [p for p in points if p[2] == memory]
        if sel:
            ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=12, color=colour, label=name, alpha=0.8)
    if result.achieved_gflops:
        ax.axhline(result.achieved_gflops, color="grey", linestyle="--", linewidth=0.8,
                   label=f"whole model on {result.runtime}: {result.achieved_gflops:.0f} GFLOP/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte)")
    ax.set_ylabel(f"achieved GFLOP/s (eager, {result.dtype})")
    ax.set_title(f"{result.model} {'x'.join(map(str, result.input_shape))}")
    ax.legend(fontsize=8)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in result.model)
    return save_figure(fig, Path(folder) / f"roofline_{safe}")
