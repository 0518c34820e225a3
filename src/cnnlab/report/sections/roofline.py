"""Every model on this machine's roofline (Williams et al. 2009; docs/roofline.md).

The ceilings are ``cnnlab roofline``'s (``cnnlab.bench.ceilings.machine_ceilings``: the best
GEMM/convolution rate across the runtimes, and copy bandwidth; cached). Each model is a point at
its arithmetic intensity (FLOPs over the bytes every op reads and writes, from the analyzer) and
the rate it reached here (FLOPs over its fastest verified batch-1 time, from the zoo section).
Its bound is ``cnnlab roofline``'s whole-model bound: max(FLOPs / peak, (weights + input bytes) /
bandwidth).
"""

from __future__ import annotations

import math
from typing import Any

from cnnlab.report.context import Column, Context, Section, Table

__all__ = ["collect"]


def collect(ctx: Context) -> Section:
    from cnnlab.bench.ceilings import machine_ceilings
    from cnnlab.bench.roofline import bound_ms
    from cnnlab.registry import model_info

    ctx.say("roofline: this machine's ceilings")
    # the full measurement even with --quick (about 5 s): a quick ceiling can sit under what models reach
    ceilings = machine_ceilings(dtypes=("fp32",), remeasure=ctx.remeasure)
    peak, bandwidth = ceilings["gflops"]["fp32"], ceilings["gbytes_per_s"]
    rows = []
    for r in ctx.results["zoo"].data["rows"]:
        ms = r["fastest_ms"] or r["eager_ms"]
        if not ms:
            continue
        input_bytes = 4 * math.prod(model_info(r["model"]).input_size)
        bound, memory = bound_ms(r["flops"], r["model_size_mb"] * 1e6 + input_bytes, peak, bandwidth)
        rows.append({"model": r["model"], "family": r["family"],
                     "intensity": r["flops"] / r["mem_access_bytes"] if r["mem_access_bytes"] else None,
                     "achieved_gflops": r["flops"] / (ms * 1e6), "measured_ms": ms,
                     "runtime": r["fastest_runtime"] or "eager", "bound_ms": bound, "memory_bound": memory,
                     "percent_of_roofline": 100 * bound / ms})
    rows.sort(key=lambda x: -x["percent_of_roofline"])
    section = Section(
        "roofline", "The roofline: how close each model comes to this machine's limits",
        intro=(f"Measured ceilings here: {peak:.0f} GFLOP/s (fp32, {ceilings['sources']['fp32']}) and "
               f"{bandwidth:.1f} GB/s (copy). A model's bound is the larger of its FLOPs at the peak and its "
               "weights and input read once at the bandwidth; 'percent of roofline' is that bound over the "
               "fastest verified time."),
        tables=[Table("roofline", "Percent of roofline per model", [
            Column("model", "model"), Column("runtime", "runtime"),
            Column("intensity", "FLOPs/byte", "float", "FLOPs over every op's bytes read and written"),
            Column("achieved_gflops", "GFLOP/s", "float", "FLOPs over the measured time"),
            Column("measured_ms", "measured ms", "ms"), Column("bound_ms", "bound ms", "ms"),
            Column("percent_of_roofline", "% of roofline", "percent"),
        ], rows)],
        data={"ceilings": ceilings, "rows": rows},
    )
    if rows:
        best = rows[0]
        section.summary = (f"roofline: {peak:.0f} GFLOP/s, {bandwidth:.1f} GB/s; best {best['model']} at "
                           f"{best['percent_of_roofline']:.0f} %")
        above = [r["model"] for r in rows if r["percent_of_roofline"] > 100]
        if above:  # a bound cannot be beaten: the ceiling was measured too low
            section.summary += " (above the measured ceiling: see the notes)"
            section.notes.append(
                f"{', '.join(above)} ran faster than the measured ceilings allow (over 100 %): the ceilings were "
                "measured lower than this machine can reach, usually because the machine was busier then than when "
                "these models were timed. Measure both on a quiet machine: cnnlab report --remeasure.")
        section.figures = [_plot(ctx, rows, peak, bandwidth)]
    return section


def _plot(ctx: Context, rows: list[dict[str, Any]], peak: float, bandwidth: float) -> dict[str, Any]:
    from cnnlab.bench.plots import pyplot

    plt = pyplot()
    points = [r for r in rows if r["intensity"]]
    xs = [r["intensity"] for r in points]
    ridge = peak / bandwidth
    lo, hi = min(min(xs) / 2, ridge / 4), max(max(xs) * 2, ridge * 4)
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    ax.plot([lo, ridge, hi], [lo * bandwidth, peak, peak], color="black", linewidth=1.2,
            label=f"ceilings: {peak:.0f} GFLOP/s, {bandwidth:.1f} GB/s")
    ax.scatter(xs, [r["achieved_gflops"] for r in points], s=18, color="#1f77b4", alpha=0.8,
               label="models (fastest verified runtime, batch 1)")
    shown = points if len(points) <= 40 else points[:10] + points[-10:]
    for r in shown:
        ax.annotate(r["model"], (r["intensity"], r["achieved_gflops"]), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte of memory access)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title("Every model on this machine's roofline", fontsize=10)
    ax.grid(True, which="major", linewidth=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ctx.figure(fig, "roofline", "Every model on this machine's roofline",
                      "Arithmetic intensity against the rate reached: the line is the most this machine allows; "
                      "models far under it lose their time to memory traffic and overheads, not arithmetic.")
