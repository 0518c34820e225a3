"""The published per-layer numbers that ``--layer-sparsity paper`` applies and the benchmark
compares against, read from ``cnnlab/data/deep_compression_paper.csv`` (one row per printed
number, each with its source):

* Deep Compression (Han, Mao & Dally, ICLR 2016, arXiv:1510.00149), Table 4: AlexNet per layer --
  #weights, weights kept (P), weight and index bits after quantization (P+Q) and Huffman coding
  (P+Q+H), compress rates; Tables 1 and 7: 240 MB -> 8.9 MB (P+Q) -> 6.9 MB (P+Q+H). The paper's
  AlexNet is Caffe's (grouped conv2/4/5, 61M weights): the zoo's ``alexnet_2012``.
* SqueezeNet (Iandola et al. 2016, arXiv:1602.07360), Table 1: the density kept per squeeze and
  expand layer (the columns headed "sparsity" hold the fraction kept: 100% = not pruned),
  parameters before and after pruning per Fire module; Table 2: 4.8 MB -> 0.66 MB (8 bit) and
  0.47 MB (6 bit). The zoo's ``squeezenet1_0``. One more row is not from a paper: the size of the
  authors' released 0.66 MB model (github.com/songhan/SqueezeNet-Deep-Compression,
  ``compressed_SqueezeNet.net``, 675,763 bytes: 8-bit codes, 4-bit indices, no Huffman coding).
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Any

__all__ = ["PAPER_CSV", "PAPER_MODELS", "paper_layers", "paper_rows", "paper_sparsity", "paper_value"]

PAPER_CSV = Path(__file__).resolve().parent.parent / "data" / "deep_compression_paper.csv"
PAPER_MODELS = ("alexnet_2012", "squeezenet1_0")

# (zoo model, paper layer) -> density in percent used instead of the printed one.
DENSITY_CORRECTIONS = {
    # SqueezeNet Table 1 prints 33% for fire8's e3x3, but its own count after pruning for fire8
    # (77,581, equal to fire9's) and the total 421,098 need 30%, the authors' released
    # compressed_SqueezeNet.net keeps 30.5% of that layer, and 33% would give 82,004 and 425,521.
    ("squeezenet1_0", "fire8/e3x3"): 30.0,
}


@functools.lru_cache(maxsize=1)
def paper_rows() -> tuple[dict[str, Any], ...]:
    """Every row of the CSV in file order, ``value`` as a float."""
    with open(PAPER_CSV, newline="", encoding="utf-8") as f:
        return tuple({**row, "value": float(row["value"])} for row in csv.DictReader(f))


def paper_value(model: str, layer: str, metric: str) -> float | None:
    """One published number (``paper_value("alexnet_2012", "fc6", "density_percent") == 9``)."""
    for row in paper_rows():
        if row["zoo_model"] == model and row["layer"] == layer and row["metric"] == metric:
            return row["value"]
    return None


def paper_layers(model: str) -> dict[str, str]:
    """The zoo module name -> the paper's layer name (``features.0`` -> ``conv1``) of a model
    with published per-layer densities; empty for any other model."""
    return {row["zoo_layer"]: row["layer"] for row in paper_rows()
            if row["zoo_model"] == model and row["zoo_layer"] and row["metric"] == "density_percent"}


def paper_sparsity(model: str) -> dict[str, float]:
    """The zoo module name -> sparsity (fraction pruned) of the paper's per-layer densities for
    ``model``, with the corrections in ``DENSITY_CORRECTIONS``. Raises ValueError for a model
    the papers do not cover."""
    if model not in PAPER_MODELS:
        raise ValueError(f"--layer-sparsity paper: published per-layer sparsities exist for "
                         f"{' and '.join(PAPER_MODELS)}, not {model}")
    out = {}
    for zoo_layer, layer in paper_layers(model).items():
        density = DENSITY_CORRECTIONS.get((model, layer), paper_value(model, layer, "density_percent"))
        out[zoo_layer] = (100.0 - density) / 100.0
    return out
