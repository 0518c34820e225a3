"""The zoo: every selected model's exact costs at its native input against the reference counts,
its batch-1 latency here (eager, and the fastest runtime that `cnnlab bench` verified), and the
ImageNet top-1 its paper reports; with the notes' history and resource figures.

Counts come from ``cnnlab.analyze`` on the meta device (cached per model and code version),
latencies from ``cnnlab.bench.bench`` (cached per model and machine), top-1 from
``cnnlab/data/paper_accuracy.csv`` through ``cnnlab.paper_data``.
"""

from __future__ import annotations

from typing import Any

from cnnlab.report.context import Column, Context, Section, Table

__all__ = ["LATENCY_RUNTIMES", "collect"]

# eager is the baseline; the fastest of the others that agrees with it is the "fastest" column.
LATENCY_RUNTIMES = ("eager", "onnxruntime", "openvino")


def _counts(name: str) -> dict[str, Any]:
    import torch

    from cnnlab.analysis import analyze
    from cnnlab.registry import create_model, model_info

    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name)
    total = analyze(model, (1, *info.input_size)).total
    ref = info.reference
    params_ok = ref.params_match(total["params"]) if ref else None
    macs_ok = ref.macs_match(total["macs"]) if ref else None
    known = [v for v in (params_ok, macs_ok) if v is not None]
    why = ""
    if known and not all(known):
        parts = [f"params {total['params']:,} vs {ref.params:,}" if params_ok is False else "",
                 f"MACs {total['macs']:,} vs {ref.macs:,}" if macs_ok is False else ""]
        why = "; ".join(p for p in parts if p) + (f" ({ref.notes})" if ref.notes else "")
    return {
        **{k: total[k] for k in ("params", "macs", "flops", "mem_access_bytes", "activations",
                                 "model_size_bytes", "receptive_field")},
        "ref_params": ref.params if ref else None, "ref_macs": ref.macs if ref else None,
        "ref_source": ref.source if ref else "",
        "match": all(known) if known else None, "match_why": why,
    }


def _latency(name: str, quick: bool) -> dict[str, Any]:
    """``{runtime: {"median_ms", "iqr_ms", "ok", "error", "max_rel_diff"}, "_load": 1-minute load
    average when measured}``."""
    import os

    from cnnlab.bench import bench

    result = bench(name, runtimes=LATENCY_RUNTIMES, warmup=2 if quick else 3, repeat=5 if quick else 10)
    out: dict[str, Any] = {r.runtime: {"median_ms": r.median_ms, "iqr_ms": r.iqr_ms, "ok": r.ok, "error": r.error,
                                       "max_rel_diff": r.max_rel_diff} for r in result.results}
    out["_load"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return out


def _top1(name: str) -> tuple[float | None, str]:
    from cnnlab.paper_data import top1

    found = top1(name)
    return (found[0], found[1]) if found else (None, "")


def row(name: str, counts: dict[str, Any], latency: dict[str, Any]) -> dict[str, Any]:
    """One zoo table row from a model's counts and latencies (as cached)."""
    from cnnlab.registry import model_info

    info = model_info(name)
    load = latency.get("_load")
    latency = {rt: r for rt, r in latency.items() if not rt.startswith("_")}
    eager = latency.get("eager", {})
    fast = {rt: r for rt, r in latency.items() if rt != "eager" and r["ok"]}
    best = min(fast, key=lambda rt: fast[rt]["median_ms"]) if fast else None
    top1, source = _top1(name)
    failed = [f"{rt}: {r['error']}" for rt, r in latency.items() if not r["ok"]]
    return {
        "model": name, "family": info.family, "year": info.year,
        "paper": {"text": f"{info.paper.authors.split(',')[0].strip()} et al. {info.year}"
                  if "," in info.paper.authors else f"{info.paper.authors} {info.year}", "url": info.paper.url},
        "paper_hint": info.paper.title,
        "input": "×".join(map(str, info.input_size)),
        **{k: counts[k] for k in ("params", "macs", "flops", "mem_access_bytes", "activations", "receptive_field")},
        "model_size_mb": counts["model_size_bytes"] / 1e6,
        "match": counts["match"], "match_why": counts["match_why"] or counts["ref_source"],
        "eager_ms": eager.get("median_ms") if eager.get("ok") else None,
        "fastest_ms": fast[best]["median_ms"] if best else None, "fastest_runtime": best or "",
        "speedup": (eager["median_ms"] / fast[best]["median_ms"]) if best and eager.get("ok") else None,
        "top1": top1, "top1_hint": source,
        "latency_errors": failed, "load": load,
    }


COLUMNS = [
    Column("model", "model"), Column("family", "family"), Column("year", "year", "int"),
    Column("paper", "paper", "link", "the paper (its title on hover)"), Column("input", "input", help="C×H×W, the paper's native size"),
    Column("params", "params", "count"), Column("macs", "MACs", "count", "multiply-accumulates, batch 1"),
    Column("flops", "FLOPs", "count", "every floating-point operation (docs/counting_rules.md)"),
    Column("mem_access_bytes", "memory access B", "count", "bytes read and written by every op, batch 1"),
    Column("model_size_mb", "size MB", "float", "parameters and buffers, fp32, 10^6 bytes"),
    Column("match", "reference", "match", "params and MACs equal to the reference counts"),
    Column("eager_ms", "eager ms", "ms", "torch eager, batch 1, this machine"),
    Column("fastest_ms", "fastest ms", "ms", "the fastest runtime whose output agrees with eager"),
    Column("fastest_runtime", "runtime"),
    Column("speedup", "speed-up", "float", "eager ms / fastest ms"),
    Column("top1", "top-1 %", "float", "ImageNet top-1 accuracy the paper reports (source on hover)"),
]


def collect(ctx: Context) -> Section:
    rows = []
    for i, name in enumerate(ctx.models, 1):
        ctx.say(f"zoo: {name} ({i}/{len(ctx.models)})")
        counts = ctx.cache.get("counts", {"model": name}, lambda: _counts(name))
        latency = ctx.cache.get("latency", {"model": name, "runtimes": LATENCY_RUNTIMES, "quick": ctx.quick},
                                lambda: _latency(name, ctx.quick), machine=True)
        rows.append(row(name, counts, latency))
    section = Section(
        "zoo", "The zoo",
        intro=("Every model below is built from its paper's tables and counted exactly by cnnlab's analyzer at "
               "its native input (batch 1); the reference column compares with the published counts. "
               "Latencies are measured on this machine at batch 1: torch eager, and the fastest of ONNX Runtime "
               "and OpenVINO whose output agrees with eager."),
        tables=[Table("zoo", "Models", COLUMNS, rows, caption="Click a header to sort; type in the box to filter.")],
        data={"rows": rows},
    )
    matched = [r for r in rows if r["match"]]
    refs = [r for r in rows if r["match"] is not None]
    timed = [r for r in rows if r["speedup"]]
    median_speedup = sorted(r["speedup"] for r in timed)[len(timed) // 2] if timed else None
    section.summary = (f"{len(rows)} models: {len(matched)}/{len(refs)} match their reference counts"
                       + (f"; fastest runtime {median_speedup:.1f}x eager (median)" if median_speedup else ""))
    section.notes = [f"{r['model']}: {e}" for r in rows for e in r["latency_errors"]]
    import os

    busy = [r["model"] for r in rows if r["load"] is not None and r["load"] > 0.5 * (os.cpu_count() or 1)]
    if busy:
        section.notes.append(f"timed while the machine was busy (load above half a CPU per core), so slower "
                             f"and noisier than it can be, eager most: {', '.join(busy)}; rerun with "
                             "--remeasure on a quiet machine")
    section.figures = _figures(ctx, rows)
    return section


# -- figures ------------------------------------------------------------------------------------
def _families(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, str]]:
    """A colour and a marker per family, stable in the families' first-year order."""
    from cnnlab.bench.plots import pyplot

    plt = pyplot()
    order = sorted({r["family"]: r["year"] for r in rows}.items(), key=lambda kv: (kv[1], kv[0]))
    cmap = plt.get_cmap("tab20")
    markers = "osD^v<>ph*"
    return {fam: (cmap(i % 20), markers[(i // 20 + i) % len(markers)]) for i, (fam, _) in enumerate(order)}


def _scatter(ctx: Context, rows: list[dict[str, Any]], x: str, y: str, *, name: str, title: str, caption: str,
             xlabel: str, ylabel: str, logx: bool = True, logy: bool = True, label_points: bool = False) -> dict | None:
    from cnnlab.bench.plots import pyplot

    points = [r for r in rows if r.get(x) and r.get(y)]
    if not points:
        return None
    plt = pyplot()
    styles = _families(points)
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    for fam, (colour, marker) in styles.items():
        sel = [r for r in points if r["family"] == fam]
        ax.scatter([r[x] for r in sel], [r[y] for r in sel], color=colour, marker=marker, s=28, label=fam,
                   alpha=0.85, edgecolors="none")
    if label_points:  # every model when few, else the first of each family
        shown = points if len(points) <= 40 else list({r["family"]: r for r in reversed(points)}.values())
        for r in shown:
            ax.annotate(r["model"], (r[x], r[y]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", linewidth=0.3)
    ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return ctx.figure(fig, name, title, caption)


def _figures(ctx: Context, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        r["_mmacs"] = r["macs"] / 1e6
        r["_mparams"] = r["params"] / 1e6
    made = [
        _scatter(ctx, rows, "year", "top1", name="timeline", title="The architectures' history: year and ImageNet top-1",
                 caption="Each model at its paper's year and the top-1 accuracy its paper reports: the notes' timeline.",
                 xlabel="year", ylabel="paper top-1 (%)", logx=False, logy=False, label_points=True),
        _scatter(ctx, rows, "_mparams", "_mmacs", name="params_vs_macs", title="Parameters against MACs",
                 caption="The notes' resource table as a picture: size and compute do not go together "
                         "(VGG is large in both, SqueezeNet small in size only, MobileNets small in both).",
                 xlabel="parameters (millions)", ylabel="MACs (millions, native input)"),
        _scatter(ctx, rows, "_mmacs", "top1", name="top1_vs_macs", title="Accuracy against complexity",
                 caption="Paper top-1 against exact MACs: the lightweight networks reach AlexNet's and VGG's "
                         "accuracy with a fraction of their compute.",
                 xlabel="MACs (millions)", ylabel="paper top-1 (%)", logy=False, label_points=True),
        _scatter(ctx, rows, "_mmacs", "eager_ms", name="macs_vs_latency", title="MACs against measured latency (eager)",
                 caption="Where FLOPs mislead: models with the same MACs differ in latency here, by memory "
                         "access, fragmentation and element-wise work (ShuffleNet V2's guidelines).",
                 xlabel="MACs (millions)", ylabel="latency, batch 1 (ms, torch eager)", label_points=True),
    ]
    for r in rows:
        del r["_mmacs"], r["_mparams"]
    return [m for m in made if m is not None]

