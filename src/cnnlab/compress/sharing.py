"""Trained quantization and weight sharing, the second stage of Deep Compression (Han, Mao &
Dally, ICLR 2016, §3; https://arxiv.org/abs/1510.00149).

* §3.1, eq. (2): 1-D k-means over the surviving weights of one layer (``kmeans_linear``); each
  weight is replaced by its nearest centroid (``nearest_centroid``, ``share_weights``).
* §3.2, §6.2, Figure 8: centroids initialised linearly between the survivors' min and max
  ("linear initialization works best").
* §3.3, eq. (3), Figure 3: fine-tuning of the centroids, the gradient of a centroid being the sum
  of the gradients of the weights it codes (``finetune_centroids``).

Codebook entry 0 is the weight 0: with 2**bits codes a layer has 2**bits - 1 centroids plus zero,
the value of the filler entries of Figure 2 and of every pruned position. The paper does not say
how a filler's weight is coded; the authors' released models do exactly this (their
``decode.py`` fills the layer with code 0 and ``compressed_SqueezeNet.net`` stores codebook[0] =
0.0), so a layer still has at most 2**bits distinct values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from cnnlab.compress.epochs import fine_tune_epochs
from cnnlab.compress.prune import LayerSpec, magnitude_mask

__all__ = [
    "KMEANS_ITERATIONS", "SharedLayer", "compress_module", "finetune_centroids", "kmeans_linear", "nearest_centroid",
    "share_weights",
]

KMEANS_ITERATIONS = 100  # Lloyd iterations at most; 1-D k-means converges in far fewer


# -- k-means (§3.1, §3.2) -----------------------------------------------------------------------
def kmeans_linear(values: np.ndarray, k: int, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """1-D k-means (§3.1, eq. 2: minimise the within-cluster sum of squares) of ``values`` into
    ``k`` clusters, centroids initialised linearly between min and max (§3.2). Lloyd's
    iterations on the sorted values: clusters are runs between centroid midpoints (found by
    ``searchsorted``), means come from a cumulative sum; an empty cluster keeps its centroid.
    Stops when no boundary moves. Returns the ``k`` centroids, ascending (float64)."""
    data = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if len(data) == 0:
        return np.zeros(k)
    centroids = np.linspace(data[0], data[-1], k)
    sums = np.r_[0.0, np.cumsum(data)]
    edges = None
    for _ in range(iterations):
        cut = np.searchsorted(data, (centroids[1:] + centroids[:-1]) / 2, side="left")
        if edges is not None and np.array_equal(cut, edges):
            break
        edges = cut
        lo, hi = np.r_[0, cut], np.r_[cut, len(data)]
        filled = hi > lo
        centroids = np.where(filled, (sums[hi] - sums[lo]) / np.maximum(hi - lo, 1), centroids)
    return centroids


def nearest_centroid(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The index of the nearest of the ascending ``centroids`` for each value (a value on a
    midpoint goes to the lower one)."""
    c = np.asarray(centroids, dtype=np.float64)
    return np.searchsorted((c[1:] + c[:-1]) / 2, np.asarray(values, dtype=np.float64), side="left")


def share_weights(weight: torch.Tensor, mask: torch.Tensor, bits: int,
                  iterations: int = KMEANS_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """Weight sharing of one layer (§3.1, Figure 3): the surviving nonzero weights are clustered
    into ``2**bits - 1`` centroids and each is replaced by its nearest. Returns the flat codes
    (0 = pruned, i = codebook[i]) and the fp32 codebook of ``2**bits`` entries, entry 0 = 0."""
    flat = weight.detach().to("cpu", torch.float32).reshape(-1).numpy()
    keep = mask.detach().cpu().reshape(-1).numpy() & (flat != 0)
    codebook = np.zeros(1 << bits, dtype=np.float32)
    codes = np.zeros(flat.size, dtype=np.int64)
    values = flat[keep]
    if values.size:
        centroids = kmeans_linear(values, (1 << bits) - 1, iterations).astype(np.float32)
        codebook[1:] = centroids
        codes[keep] = 1 + nearest_centroid(values, centroids)
    return codes, codebook


# -- a model's shared layers ------------------------------------------------------------------
@dataclass
class SharedLayer:
    """A pruned, quantized layer: flat codes (0 = pruned) into a codebook whose entry 0 is 0."""

    spec: LayerSpec
    shape: tuple[int, ...]
    codes: np.ndarray  # (numel,) int64
    codebook: np.ndarray  # (2**weight_bits,) float32

    def weight(self) -> torch.Tensor:
        """The shared weight tensor: ``codebook[codes]`` in the layer's shape (fp32)."""
        return torch.from_numpy(self.codebook[self.codes].reshape(self.shape))


def compress_module(model: nn.Module, specs: Sequence[LayerSpec], *, iterations: int = KMEANS_ITERATIONS,
                    progress: Callable[[str], None] | None = None) -> list[SharedLayer]:
    """Prune (``cnnlab.compress.prune``) and quantize every layer of ``specs`` in ``model``; the
    model's weights become the shared weights (in place). Returns the shared layers."""
    params = dict(model.named_parameters())
    layers = []
    for spec in specs:
        if progress:
            progress(f"pruning and clustering {spec.name}")
        weight = params[spec.key]
        codes, codebook = share_weights(weight, magnitude_mask(weight, spec.sparsity), spec.weight_bits, iterations)
        layer = SharedLayer(spec, tuple(weight.shape), codes, codebook)
        with torch.no_grad():
            weight.copy_(layer.weight())
        layers.append(layer)
    return layers


# -- centroid fine-tuning (§3.3) ---------------------------------------------------------------
def finetune_centroids(model: nn.Module, layers: Sequence[SharedLayer], loader: Any, objective: Callable[..., Any], *,
                       epochs: int, lr: float = 1e-3, momentum: float = 0.9,
                       progress: Callable[[str], None] | None = None) -> list[float]:
    """Fine-tune the centroids (§3.3, eq. 3, Figure 3): the gradient of centroid k is the sum of
    the gradients of the weights coded k; SGD updates the centroids and the weights are rewritten
    from them, so every layer keeps its codes and at most 2**bits values (code 0, pruned, stays
    0). ``objective(model, images, target) -> (loss, logits)`` as ``cnnlab.train.losses``.
    Only the centroids change. Returns the mean training loss of each epoch."""
    params = dict(model.named_parameters())
    weights = [params[layer.spec.key] for layer in layers]
    codes = [torch.from_numpy(layer.codes) for layer in layers]
    centroids = [nn.Parameter(torch.from_numpy(layer.codebook[1:].copy())) for layer in layers]
    optimizer = torch.optim.SGD(centroids, lr=lr, momentum=momentum)
    trainable = {name: p.requires_grad for name, p in params.items()}
    for p in params.values():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(True)

    def update() -> None:
        for w, c, idx in zip(weights, centroids, codes):
            grad = torch.zeros(len(c) + 1, dtype=torch.float64)
            grad.index_add_(0, idx, w.grad.reshape(-1).to(torch.float64))  # eq. (3): group by, reduce
            c.grad = grad[1:].to(c.dtype)
        optimizer.step()
        with torch.no_grad():
            for w, c, idx in zip(weights, centroids, codes):
                w.copy_(torch.cat([c.new_zeros(1), c])[idx].reshape(w.shape))

    try:
        losses = fine_tune_epochs(model, loader, objective, update, epochs=epochs, what="fine-tuning centroids",
                                  progress=progress)
    finally:
        for name, p in params.items():
            p.grad = None
            p.requires_grad_(trainable[name])
    for layer, c in zip(layers, centroids):
        layer.codebook[1:] = c.detach().numpy()
    return losses
