"""The roofline model for a network: how fast each layer could run on this machine at best, how
fast it does run, and which layers are limited by memory rather than arithmetic.

A layer doing F FLOPs and moving B bytes cannot take less than max(F / peak, B / bandwidth)
(Williams, Waterman & Patterson 2009, "Roofline"); it is memory-bound when the second term is the
larger, i.e. when its arithmetic intensity F / B is below peak / bandwidth. F and B come from
``cnnlab.analyze`` (``mem_access`` elements x the dtype's size: every tensor read and written
once), the ceilings from ``cnnlab.bench.ceilings``.

Measured per-layer times come from eager PyTorch: a forward pre-hook and a forward hook on every
module time each call, and a module's own time is its time less its children's, the same "own
cost" split the analyzer's rows use (a block's functional ``x + identity`` belongs to the block).
Hooks are chosen over ``torch.profiler`` because they attribute time to the same module names as
the analysis without matching operator events back to modules. The whole model's time is measured
separately, without hooks, by ``cnnlab.bench`` on the chosen runtime.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LayerBound", "RooflineResult", "bound_ms", "layer_times_ms", "roofline"]

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def bound_ms(flops: float, nbytes: float, gflops: float, gbytes_per_s: float) -> tuple[float, bool]:
    """The roofline's lower bound in milliseconds and whether it is set by memory."""
    compute = flops / (gflops * 1e9) * 1e3
    memory = nbytes / (gbytes_per_s * 1e9) * 1e3
    return max(compute, memory), memory > compute


@dataclass
class LayerBound:
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
    model: str
    runtime: str
    dtype: str
    input_shape: list[int]
    ceilings: dict[str, Any]
    layers: list[LayerBound] = field(default_factory=list)
    measured_ms: float | None = None
    flops: int = 0
    error: str | None = None

    @property
    def bound_ms(self) -> float:
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
                "flops": self.flops, "measured_ms": self.measured_ms, "bound_ms": self.bound_ms,
                "percent_of_roofline": _percent(self.bound_ms, self.measured_ms),
                "achieved_gflops": self.achieved_gflops, "error": self.error,
                "layers": [layer.to_dict() for layer in self.layers], "by_type": self.by_type()}


def layer_times_ms(model: Any, example: Any, *, repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Each module's own eager time per call in ms (its time less its children's), the median
    over ``repeat`` forwards, keyed by the module's qualified name ("" for the root)."""
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


def roofline(model: Any, input_shape: tuple[int, ...], ceilings: dict[str, Any], *, label: str = "model",
             runtime: str = "eager", dtype: str = "fp32", measured_ms: float | None = None,
             layer_repeat: int = 5) -> RooflineResult:
    """Bound every layer of ``model`` (an nn.Module in eval mode on the CPU) at ``input_shape``
    (batch included) under ``ceilings`` (see ``cnnlab.bench.ceilings``) and time its layers in
    eager mode. ``measured_ms``, the whole model's time on ``runtime``, is filled in by the
    caller (``cnnlab roofline`` times it with ``cnnlab.bench``)."""
    import torch

    from cnnlab.analysis import analyze

    if dtype not in ceilings["gflops"]:
        raise ValueError(f"no {dtype} compute ceiling measured; measured: {', '.join(ceilings['gflops'])}")
    peak, bandwidth = ceilings["gflops"][dtype], ceilings["gbytes_per_s"]
    analysis = analyze(model, input_shape)
    size = DTYPE_BYTES[dtype]
    result = RooflineResult(label, runtime, dtype, list(input_shape), ceilings, flops=analysis.flops,
                            measured_ms=measured_ms)
    for row in analysis.layers:
        nbytes = row["mem_access"] * size
        if not row["flops"] and not nbytes:
            continue
        bound, memory = bound_ms(row["flops"], nbytes, peak, bandwidth)
        result.layers.append(LayerBound(row["name"], row["type"], row["flops"], nbytes, bound, memory))
    example = torch.randn(input_shape)
    times = layer_times_ms(model, example, repeat=layer_repeat)
    for layer in result.layers:
        layer.measured_ms = times.get(layer.name)
    return result


def plot_roofline(result: RooflineResult, folder: Any) -> list[Any]:
    """The roofline chart of one model: each layer at (arithmetic intensity, achieved GFLOP/s in
    eager mode), log-log, under the bandwidth slope and the compute ceiling; saved as
    ``roofline_<model>.png`` and ``.svg``."""
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
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte)")
    ax.set_ylabel(f"achieved GFLOP/s (eager, {result.dtype})")
    ax.set_title(f"{result.model} {'x'.join(map(str, result.input_shape))}")
    ax.legend(fontsize=8)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in result.model)
    return save_figure(fig, Path(folder) / f"roofline_{safe}")
