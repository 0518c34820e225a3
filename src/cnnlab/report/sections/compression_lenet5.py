"""The compression section's measured part: LeNet-5 trained on the bundled digits, then pruned,
quantized to INT8 and Deep-Compressed on this machine (``cnnlab.compress.variants``), as a table
and a figure of size vs test accuracy. Trained like the training section (same recipe and seed);
cached with all the code; left out with ``--no-train``."""

from __future__ import annotations

import tempfile
from typing import Any

from cnnlab.report.context import Column, Context, Table

__all__ = ["MODEL", "collect_lenet5"]

MODEL = "lenet5"
EPOCHS: int | None = None  # None: the recipe's (tests shorten it)
PRUNE_EPOCHS, CENTROID_EPOCHS = 30, 10  # tests shorten them


def _run() -> dict[str, Any]:
    from cnnlab.compress.variants import compression_variants
    from cnnlab.train import train

    with tempfile.TemporaryDirectory() as folder:
        run = train(MODEL, data="digits", out=f"{folder}/train", seed=0, epochs=EPOCHS)
        variants = compression_variants(run.checkpoint, MODEL, folder, prune_epochs=PRUNE_EPOCHS,
                                        centroid_epochs=CENTROID_EPOCHS)
    return {"model": MODEL, "variants": [v.to_dict() for v in variants]}


def collect_lenet5(ctx: Context) -> tuple[Table, dict[str, Any], dict[str, Any]]:
    """The table, the figure and the data of LeNet-5's four forms."""
    ctx.say(f"compression: {MODEL} on digits, pruned, INT8 and Deep-Compressed")
    run = ctx.cache.get("compression", {"model": MODEL, "variants": True, "epochs": EPOCHS,
                                        "prune_epochs": PRUNE_EPOCHS, "centroid_epochs": CENTROID_EPOCHS},
                        _run, machine=True, all_code=True)
    base = run["variants"][0]
    rows = [{"form": v["label"], "kib": v["bytes"] / 1024, "ratio": base["bytes"] / v["bytes"],
             "top1": 100 * v["top1"], "drop": 100 * (base["top1"] - v["top1"])} for v in run["variants"]]
    table = Table("compression-lenet5", f"{MODEL} on digits: size and accuracy of each form (measured here)", [
        Column("form", "form"), Column("kib", "size KiB", "float", "bytes stored / 1024"),
        Column("ratio", "smaller ×", "float", "float32 size / this size"),
        Column("top1", "test top-1 %", "float"), Column("drop", "points below float", "float"),
    ], rows, sortable=False)
    return table, _figure(ctx, run), run


def _figure(ctx: Context, run: dict[str, Any]) -> dict[str, Any]:
    from cnnlab.bench.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    base = run["variants"][0]
    colours = {"float": "#1f77b4", "pruned": "#ff7f0e", "int8": "#2ca02c", "deep": "#d62728"}
    for i, v in enumerate(run["variants"]):
        kib, top1 = v["bytes"] / 1024, 100 * v["top1"]
        ax.scatter([kib], [top1], s=60, color=colours.get(v["key"], "#555555"), zorder=3)
        short = v["label"].split(" (")[0].replace(" + retrained", "")  # the table has the whole label
        ax.annotate(f"{short}\n{kib:.1f} KiB, {base['bytes'] / v['bytes']:.1f}×", (kib, top1),
                    textcoords="offset points", xytext=(-20, 10 if i % 2 == 0 else -28), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("size stored (KiB, log scale)")
    ax.set_ylabel("test top-1 (%)")
    tops = [100 * v["top1"] for v in run["variants"]]
    ax.set_ylim(min(tops) - 1.5, max(tops) + 1.0)
    sizes = [v["bytes"] / 1024 for v in run["variants"]]
    ax.set_xlim(min(sizes) / 2, max(sizes) * 3)
    ax.grid(True, which="both", linewidth=0.3)
    ax.set_title(f"{run['model']} on digits: size vs accuracy", fontsize=10)
    fig.tight_layout()
    return ctx.figure(fig, "compression_lenet5", f"{run['model']}: size vs accuracy",
                      "The same trained LeNet-5 as a float32 model, pruned to 8 % of its weights and retrained, "
                      "quantized to INT8, and Deep-Compressed (pruning, 4-bit shared weights with fine-tuned "
                      "centroids, Huffman coding): test accuracy on the digits against the bytes stored.")
