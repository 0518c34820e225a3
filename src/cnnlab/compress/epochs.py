"""The one fine-tuning loop of the compression stages: retraining a pruned network with its masks
kept (``retrain.retrain_masked``) and fine-tuning shared centroids (``sharing.finetune_centroids``)
differ only in what happens between ``loss.backward()`` and the next batch."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from cnnlab.compress.prune import CompressError

__all__ = ["fine_tune_epochs"]


def fine_tune_epochs(model: nn.Module, loader: Any, objective: Callable[..., Any], update: Callable[[], None], *,
                     epochs: int, what: str = "fine-tuning",
                     progress: Callable[[str], None] | None = None) -> list[float]:
    """``epochs`` passes over ``loader`` in training mode: gradients cleared, ``objective(model,
    images, target) -> (loss, logits)`` (as ``cnnlab.train.losses``) backpropagated, then
    ``update()`` (the optimizer step and whatever keeps the compression's constraint). Returns
    each epoch's mean training loss; a loss that is not finite raises CompressError. The model is
    left in eval mode."""
    losses: list[float] = []
    model.train()
    try:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for images, target in loader:
                model.zero_grad(set_to_none=True)
                loss, _ = objective(model, images, target)
                if not torch.isfinite(loss):
                    raise CompressError(f"{what} diverged (loss {float(loss.detach())}) in epoch {epoch + 1}: "
                                        "give a smaller --finetune-lr")
                loss.backward()
                update()
                total += float(loss.detach()) * len(target)
                count += len(target)
            losses.append(total / max(count, 1))
            if progress:
                progress(f"{what}: epoch {epoch + 1}/{epochs}, loss {losses[-1]:.4f}")
    finally:
        model.eval()
    return losses
