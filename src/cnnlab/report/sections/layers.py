"""Inside a network: per-layer MACs and memory access for one model (the notes' point that the
depthwise layers are cheap in MACs and dear in memory traffic), and the receptive field's growth
layer by layer for a few classics (the notes' receptive-field arithmetic). From ``cnnlab.analyze``
at the native input, on the meta device."""

from __future__ import annotations

from typing import Any

from cnnlab.report.context import Column, Context, Section, Table

__all__ = ["LAYER_MODEL", "RF_MODELS", "collect"]

LAYER_MODEL = "mobilenet_v2"  # the per-layer chart's model, when selected (else the first selected)
RF_MODELS = ("alexnet", "vgg16", "googlenet", "resnet50", "mobilenet_v1")


def _layers(name: str) -> dict[str, Any]:
    import torch

    from cnnlab.analysis import analyze
    from cnnlab.registry import create_model, model_info

    with torch.device("meta"):
        model = create_model(name)
    result = analyze(model, (1, *model_info(name).input_size))
    keep = ("name", "type", "macs", "mem_access", "receptive_field")
    return {"layers": [{k: row[k] for k in keep} for row in result.layers],
            "receptive_field": result.total["receptive_field"]}


def collect(ctx: Context) -> Section:
    chosen = LAYER_MODEL if LAYER_MODEL in ctx.models else ctx.models[0]
    rf_models = [m for m in RF_MODELS if m in ctx.models] or ctx.models[:3]
    analyses = {}
    for name in dict.fromkeys([chosen, *rf_models]):
        ctx.say(f"layers: {name}")
        analyses[name] = ctx.cache.get("layers", {"model": name}, lambda name=name: _layers(name))
    rows = [{"model": name, "layers": sum(1 for r in a["layers"] if "Conv" in r["type"]),
             "receptive_field": a["receptive_field"]}
            for name, a in analyses.items() if name in rf_models]
    section = Section(
        "layers", "Inside a network: per-layer costs and the receptive field",
        intro=(f"Per-layer MACs and memory access of {chosen} (elements read and written by each layer, "
               "batch 1), and how the receptive field grows with depth in a few classics: the field is the "
               "input window one output position sees, counted by the analyzer from each layer's kernel, "
               "stride and dilation."),
        tables=[Table("receptive-field", "Receptive field of the deepest spatial feature map", [
            Column("model", "model"), Column("layers", "convolutions", "int"),
            Column("receptive_field", "receptive field (px)", "int"),
        ], rows)],
        data={"per_layer_model": chosen, "analyses": analyses},
        summary=f"layers: {chosen} per layer; receptive fields of {', '.join(r['model'] for r in rows)}",
    )
    section.figures = [_per_layer(ctx, chosen, analyses[chosen]), _rf(ctx, {m: analyses[m] for m in rf_models})]
    return section


def _per_layer(ctx: Context, name: str, analysis: dict[str, Any]) -> dict[str, Any]:
    from cnnlab.bench.plots import pyplot

    plt = pyplot()
    layers = [r for r in analysis["layers"] if r["macs"] or r["mem_access"]]
    xs = range(len(layers))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.2), sharex=True)
    # grey: no MACs (normalisation, activations, pooling: memory traffic only); red: depthwise by name
    colours = ["#999999" if not r["macs"] else "#d62728" if "depthwise" in r["name"] or ".dw" in r["name"]
               else "#1f77b4" for r in layers]
    top.bar(xs, [r["macs"] / 1e6 for r in layers], color=colours)
    top.set_ylabel("MMACs")
    bottom.bar(xs, [r["mem_access"] / 1e6 for r in layers], color=colours)
    bottom.set_ylabel("memory access (M elements)")
    bottom.set_xlabel("layer, in execution order")
    top.set_title(f"{name}: MACs and memory access per layer", fontsize=10)
    fig.tight_layout()
    return ctx.figure(fig, "per_layer", f"{name}: per-layer MACs and memory access",
                      f"Each bar is one layer of {name} (red: depthwise convolutions; grey: layers without MACs, "
                      "such as normalisation and activations): the layers that dominate MACs are not the ones "
                      "that dominate memory traffic.")


def _rf(ctx: Context, analyses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from cnnlab.bench.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for name, analysis in analyses.items():
        fields = [r["receptive_field"] for r in analysis["layers"] if "Conv" in r["type"] and r["receptive_field"]]
        ax.plot(range(1, len(fields) + 1), fields, marker=".", markersize=3, linewidth=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("convolution, in execution order")
    ax.set_ylabel("receptive field (pixels, one side)")
    ax.set_title("Receptive field growth per layer", fontsize=10)
    ax.grid(True, which="major", linewidth=0.3)
    ax.legend(fontsize=8)
    return ctx.figure(fig, "receptive_field", "Receptive field growth per layer",
                      "How far each layer sees into the input: stride-2 stages multiply the growth, so deep stacks "
                      "of small kernels reach fields larger than the image.")
