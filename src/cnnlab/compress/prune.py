"""Magnitude pruning, the first stage of Deep Compression (Han, Mao & Dally, ICLR 2016, §2;
https://arxiv.org/abs/1510.00149) and the whole of "Learning both Weights and Connections for
Efficient Neural Networks" (Han, Pool, Tran & Dally, NIPS 2015, §3).

§2: "all connections with weights below a threshold are removed from the network". Here the
threshold is the one that leaves a given fraction of a layer: ``magnitude_mask`` keeps the
``n - floor(sparsity * n)`` weights of largest magnitude. ``global_masks`` applies one threshold
to all the layers at once (the same function on their concatenated weights), so that the total
sparsity is the one asked for and each layer loses what falls below it.

``plan_layers`` says what Deep Compression compresses and ``cnnlab prune`` prunes: every
convolution and linear weight, with its sparsity and the bit widths of the later stages (§3, §2).
``cnnlab compress``, ``cnnlab prune`` and the Python functions behind them share this one copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "DEFAULT_BITS", "DEFAULT_INDEX_BITS", "CompressError", "LayerSpec", "apply_masks", "global_masks", "layer_masks",
    "magnitude_mask", "plan_layers", "pruned_count",
]

DEFAULT_BITS = {"conv": 8, "fc": 5}  # Table 4: 256 shared weights per CONV layer, 32 per FC layer
DEFAULT_INDEX_BITS = 4  # §5.2 and Table 4 (§2's 8/5 are not what the table uses)


class CompressError(ValueError):
    """Bad input to compression or pruning (a sparsity, a bit width, a layer name); one line."""


# -- one layer (§2) ---------------------------------------------------------------------------
def pruned_count(n: int, sparsity: float) -> int:
    """How many of ``n`` weights a layer pruned to ``sparsity`` (a fraction in [0, 1)) loses:
    ``floor(sparsity * n)``, with a 1e-6 tolerance so that 0.8 * 512000 is 409600 whatever
    the rounding of 0.8."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    return min(n, math.floor(sparsity * n + 1e-6))


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Boolean mask of the weights that survive magnitude pruning to ``sparsity`` (§2): the
    ``n - pruned_count(n, sparsity)`` largest in absolute value (ties by position, as
    ``torch.topk`` breaks them)."""
    flat = weight.detach().reshape(-1)
    keep = flat.numel() - pruned_count(flat.numel(), sparsity)
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if keep == flat.numel():
        mask[:] = True
    elif keep > 0:
        mask[torch.topk(flat.abs(), keep, sorted=False).indices] = True
    return mask.reshape(weight.shape)


# -- what to prune ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpec:
    """One weight to compress: its module, state-dict key, kind (conv/fc) and settings."""

    name: str
    key: str
    kind: str  # "conv" or "fc"
    sparsity: float
    weight_bits: int
    index_bits: int


def _check_bits(label: str, bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise CompressError(f"{label} must be an integer from 1 to 8, got {bits!r}")
    return bits


def _check_sparsity(label: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise CompressError(f"{label}: sparsity must be a number in [0, 1), got {value!r}")
    return float(value)


def plan_layers(model: nn.Module, sparsity: float | Mapping[str, float] = 0.0, *,
                conv_bits: int = DEFAULT_BITS["conv"], fc_bits: int = DEFAULT_BITS["fc"],
                conv_index_bits: int = DEFAULT_INDEX_BITS, fc_index_bits: int = DEFAULT_INDEX_BITS) -> list[LayerSpec]:
    """One ``LayerSpec`` per convolution and linear weight of ``model``, in module order.
    ``sparsity`` is one fraction for every layer, or a map from module names (``features.0``, or
    its ``features.0.weight``) to fractions; layers it does not name are not pruned. A name that
    is not such a layer raises CompressError listing some that are."""
    for label, value in (("conv bits", conv_bits), ("fc bits", fc_bits), ("conv index bits", conv_index_bits),
                         ("fc index bits", fc_index_bits)):
        _check_bits(label, value)
    layers = {name: module for name, module in model.named_modules()
              if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and isinstance(module.weight, nn.Parameter)}
    if isinstance(sparsity, Mapping):
        wanted = {str(k).removesuffix(".weight"): _check_sparsity(str(k), v) for k, v in sparsity.items()}
        unknown = [k for k in wanted if k not in layers]
        if unknown:
            shown = ", ".join(list(layers)[:6]) + (", ..." if len(layers) > 6 else "")
            raise CompressError(f"no convolution or linear layer named {unknown[0]!r} in the model "
                                f"(its layers: {shown})")
    else:
        same = _check_sparsity("--prune", sparsity)
        wanted = dict.fromkeys(layers, same)
    specs = []
    for name, module in layers.items():
        kind = "fc" if isinstance(module, nn.Linear) else "conv"
        specs.append(LayerSpec(name, f"{name}.weight" if name else "weight", kind, wanted.get(name, 0.0),
                               conv_bits if kind == "conv" else fc_bits,
                               conv_index_bits if kind == "conv" else fc_index_bits))
    return specs


# -- masks for a whole model ------------------------------------------------------------------
def layer_masks(model: nn.Module, specs: Sequence[LayerSpec]) -> dict[str, torch.Tensor]:
    """State-dict key -> the ``magnitude_mask`` of that weight at its spec's sparsity."""
    params = dict(model.named_parameters())
    return {spec.key: magnitude_mask(params[spec.key], spec.sparsity) for spec in specs}


def global_masks(model: nn.Module, specs: Sequence[LayerSpec], sparsity: float) -> dict[str, torch.Tensor]:
    """State-dict key -> mask, one magnitude threshold over every weight of ``specs`` together:
    ``floor(sparsity * total)`` weights are pruned in all, each layer losing those below the
    threshold (``magnitude_mask`` of the concatenated weights, so ties break by position)."""
    sparsity = _check_sparsity("global sparsity", sparsity)
    params = dict(model.named_parameters())
    weights = [params[spec.key] for spec in specs]
    if not weights:
        return {}
    flat = torch.cat([w.detach().reshape(-1) for w in weights])
    pieces = torch.split(magnitude_mask(flat, sparsity), [w.numel() for w in weights])
    return {spec.key: piece.reshape(w.shape) for spec, w, piece in zip(specs, weights, pieces)}


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Set every weight its mask prunes to +0.0 (in place, outside autograd)."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, mask in masks.items():
            params[key].masked_fill_(~mask.to(params[key].device), 0.0)
