"""Compression: the course notes' comparison of SqueezeNet with compressed AlexNets (Iandola et al.
2016, Table 2; Han, Mao & Dally 2016, Table 4) reproduced by ``cnnlab compress`` with the papers'
published per-layer densities and bit widths, and SqueezeNet's per-layer sparsity table (Iandola
et al. 2016, Table 1). Sizes depend on sparsity, bits and index gaps, not on trained weights, so
the zoo's random initialisation (seed 0) stands in for the papers' ImageNet weights; only the
Huffman-coded sizes depend on the weights' distribution (docs/compression.md)."""

from __future__ import annotations

from typing import Any

from cnnlab.report.context import Column, Context, Section, Table

__all__ = ["MIB", "collect", "wanted"]

MIB = 2**20  # the papers' "MB" are MiB (docs/compression.md)
ALEXNET, SQUEEZENET = "alexnet_2012", "squeezenet1_0"


def wanted(ctx: Context) -> bool:
    return SQUEEZENET in ctx.models  # the quick subset has it; ``--models 'mobilenet*'`` does not


def _run(name: str, conv_bits: int, fc_bits: int) -> dict[str, Any]:
    from cnnlab.compress import compress

    result = compress(name, layer_sparsity="paper", conv_bits=conv_bits, fc_bits=fc_bits)
    return {"original": result.original_bytes, "pq": result.compressed_bytes_pq, "pqh": result.compressed_bytes_pqh,
            "sparsity": result.sparsity,
            "layers": [{"name": layer.name, "paper_name": layer.paper_name, "weights": layer.weights,
                        "nonzero": layer.nonzero} for layer in result.layers]}


def collect(ctx: Context) -> Section:
    from cnnlab.compress.paper import paper_value

    runs = {}
    for key, name, conv_bits, fc_bits in ((ALEXNET, ALEXNET, 8, 5), ("squeezenet8", SQUEEZENET, 8, 8),
                                          ("squeezenet6", SQUEEZENET, 6, 6)):
        ctx.say(f"compression: {name}, {conv_bits}/{fc_bits} bits")
        runs[key] = ctx.cache.get("compression", {"model": name, "conv_bits": conv_bits, "fc_bits": fc_bits},
                                  lambda n=name, c=conv_bits, f=fc_bits: _run(n, c, f), all_code=True)
    alex, sq8, sq6 = runs[ALEXNET], runs["squeezenet8"], runs["squeezenet6"]

    def paper(model: str, metric: str) -> float | None:
        return paper_value(model, "total", metric)

    rows = [
        _row("AlexNet", "none (32 bit)", paper(ALEXNET, "size_original_mb"), alex["original"], 0.0),
        _row("AlexNet", "Deep Compression (P+Q+H), 8-bit conv, 5-bit fc", paper(ALEXNET, "size_pqh_mb"),
             alex["pqh"], alex["sparsity"], alex["original"]),
        _row("SqueezeNet 1.0", "none (32 bit)", paper(SQUEEZENET, "size_original_mb"), sq8["original"], 0.0,
             alex["original"]),
        _row("SqueezeNet 1.0", "Deep Compression, 8 bit (P+Q)", paper(SQUEEZENET, "size_pq8_mb"), sq8["pq"],
             sq8["sparsity"], alex["original"]),
        _row("SqueezeNet 1.0", "Deep Compression, 6 bit (P+Q)", paper(SQUEEZENET, "size_pq6_mb"), sq6["pq"],
             sq6["sparsity"], alex["original"]),
    ]
    comparison = Table("compression", "SqueezeNet vs compressed AlexNet (Iandola et al. 2016, Table 2)", [
        Column("model", "network"), Column("approach", "compression"),
        Column("paper_mib", "paper MB", "float", "the paper's model size (its MB are MiB)"),
        Column("ours_mib", "ours MB", "float", "cnnlab compress with the papers' per-layer densities and bits, MiB"),
        Column("off_percent", "ours vs paper %", "float"),
        Column("vs_alexnet", "smaller than AlexNet ×", "float", "uncompressed AlexNet (ours) / this size"),
        Column("sparsity_percent", "weights pruned %", "float"),
    ], rows, sortable=False)
    layers = _squeezenet_layers(sq8["layers"])
    per_layer = Table("compression-squeezenet", "SqueezeNet's per-layer densities (Iandola et al. 2016, Table 1)", [
        Column("layer", "layer"), Column("weights", "weights", "int"),
        Column("kept", "weights kept (ours)", "int"),
        Column("density", "density % (ours)", "float"), Column("paper_density", "density % (paper)", "float"),
    ], layers, sortable=False)
    worst = max(abs(r["off_percent"]) for r in rows if r["off_percent"] is not None)
    section = Section(
        "compression", "Compression: Deep Compression and SqueezeNet",
        intro=("The notes compare SqueezeNet with compressed AlexNets. `cnnlab compress` prunes each layer to the "
               "papers' published density, shares its weights in 2^bits k-means clusters, stores the survivors "
               "with 4-bit relative indices (filler zeros when a gap overflows) and, for AlexNet, Huffman-codes "
               "both streams. Sizes depend on sparsity, bits and index gaps, so the zoo's random weights stand "
               "in for the papers' trained ones; the Huffman gain depends on the weights and differs most. "
               "SqueezeNet's published sizes are without Huffman coding (the authors' released 8-bit file is "
               "675,763 bytes). Table 1 prints 33 % for fire8's e3x3, but its own parameter counts need 30 %, which "
               "is used."),
        tables=[comparison, per_layer],
        data=runs,
        summary=(f"compression: AlexNet {alex['original'] / MIB:.0f} -> {alex['pqh'] / MIB:.2f} MB "
                 f"({alex['original'] / alex['pqh']:.0f}x; paper 6.9 MB, 35x), SqueezeNet {sq8['pq'] / MIB:.3f} MB "
                 f"at 8 bit (paper 0.66); within {worst:.0f} % of the papers"),
    )
    if ctx.train:
        from cnnlab.report.sections.compression_lenet5 import collect_lenet5

        table, figure, lenet5 = collect_lenet5(ctx)
        section.tables.append(table)
        section.figures.append(figure)
        section.data["lenet5"] = lenet5
        deep, base = lenet5["variants"][-1], lenet5["variants"][0]
        section.summary += (f"; LeNet-5 Deep-Compressed {base['bytes'] / deep['bytes']:.0f}x smaller, "
                            f"{100 * (deep['top1'] - base['top1']):+.2f} points of test accuracy")
        section.intro += (" Below, measured on this machine: LeNet-5 trained on the digits, then pruned, quantized "
                          "to INT8 and Deep-Compressed, each form's size against its test accuracy.")
    return section


def _row(model: str, approach: str, paper_mib: float | None, ours_bytes: int, sparsity: float,
         alexnet_bytes: int | None = None) -> dict[str, Any]:
    ours = ours_bytes / MIB
    return {"model": model, "approach": approach, "paper_mib": paper_mib, "ours_mib": ours,
            "off_percent": (ours / paper_mib - 1) * 100 if paper_mib else None,
            "vs_alexnet": (alexnet_bytes or ours_bytes) / ours_bytes, "sparsity_percent": sparsity * 100}


def _squeezenet_layers(layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from cnnlab.compress.paper import paper_value

    rows = []
    for layer in layers:
        name = layer["paper_name"] or layer["name"]
        rows.append({"layer": name, "weights": layer["weights"], "kept": layer["nonzero"],
                     "density": 100 * layer["nonzero"] / layer["weights"],
                     "paper_density": paper_value(SQUEEZENET, name, "density_percent")})
    return rows
