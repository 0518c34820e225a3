"""The training objective of each architecture: cross-entropy (with label smoothing) on the
logits, plus what a paper adds.

* GoogLeNet (Szegedy et al. 2015, §5): "during training, their loss gets added to the total loss
  of the network with a discount weight (the losses of the auxiliary classifiers were weighted by
  0.3)" -- the zoo's ``googlenet``/``googlenet_paper`` built with ``aux_logits=True`` return
  ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`` in training mode.
* Inception v3 (Szegedy et al. 2016, §4) has one auxiliary head but the paper gives no weight;
  0.4 is the weight of Google's own training code (TF-slim's ``train_image_classifier.py``:
  ``softmax_cross_entropy(end_points['AuxLogits'], weights=0.4)``). ``InceptionOutputs``.
* SE-ShuffleNet v2-164 (Ma et al. 2018, Table 6, the authors' code): three extra heads weighted
  0.7, 0.5 and 0.3 (``SEShuffleNetV2Outputs``).
* CapsNet (Sabour et al. 2017): the margin loss of eq. 4 (m+ = 0.9, m- = 0.1, lambda = 0.5) plus
  0.0005 x the summed squared error of the decoder's reconstruction (§4.1); the decoder is fed the
  true class's capsule, so the forward takes the target (``forward(x, target)``). The
  reconstruction is compared with the image in [0, 1] (the normalisation undone).
* LeNet-5 with RBF outputs (``lenet5_paper``) returns minus the RBF penalties; cross-entropy on
  them is the paper's MAP criterion (LeCun et al. 1998, eq. 9) without its constant j.

The auxiliary heads and the decoder exist only in training mode (``model.train()``); evaluation
(``model.eval()``) uses the main logits alone, and so do dropout and stochastic depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["AUX_WEIGHTS", "Objective", "make_objective"]

# Training-mode output type (by class name) -> weight of each field after the first (the logits).
AUX_WEIGHTS: dict[str, dict[str, float]] = {
    "GoogLeNetOutputs": {"aux_logits2": 0.3, "aux_logits1": 0.3},  # GoogLeNet §5
    "InceptionOutputs": {"aux_logits": 0.4},  # TF-slim's weight; the v3 paper gives none
    "SEShuffleNetV2Outputs": {"aux_14": 0.7, "aux_28": 0.5, "aux_56": 0.3},  # the authors' code
}


@dataclass
class Objective:
    """``objective(model, images, target) -> (loss, logits)``: runs the forward the way the
    architecture trains (the target passed to CapsNet) and returns the total loss and the main
    logits (for accuracy)."""

    label_smoothing: float = 0.0
    capsule: bool = False  # the model is a CapsNet: margin loss + reconstruction
    mean: Sequence[float] = (0.0,)
    std: Sequence[float] = (1.0,)
    num_classes: int | None = None  # checked against the logits (a user's model may disagree)
    label: str = "the model"

    def __post_init__(self) -> None:
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

    def __call__(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.capsule:
            loss, logits = self._capsule(model, images, target)
        else:
            output = model(images)
            if isinstance(output, torch.Tensor):
                self._check(output, images)
                loss, logits = self.cross_entropy(output, target), output
            else:
                loss, logits = self._with_aux(output, target)
        return loss, logits

    def _check(self, logits: torch.Tensor, images: torch.Tensor) -> None:
        if logits.dim() != 2 or logits.shape[0] != images.shape[0] or (
                self.num_classes is not None and logits.shape[1] != self.num_classes):
            classes = "" if self.num_classes is None else f" for {self.num_classes} classes"
            raise ValueError(f"{self.label} returned {tuple(logits.shape)} for a batch of {tuple(images.shape)}; "
                             f"training needs logits (N, classes){classes}")

    def _with_aux(self, output: Any, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kind = type(output).__name__
        weights = AUX_WEIGHTS.get(kind)
        if weights is None or not hasattr(output, "_fields"):
            known = ", ".join(AUX_WEIGHTS)
            raise TypeError(
                f"the model returned {kind}, not a logits tensor; cnnlab.train knows the training outputs "
                f"{known} (add the type's auxiliary weights to cnnlab.train.losses.AUX_WEIGHTS)"
            )
        logits = output[0]
        loss = self.cross_entropy(logits, target)
        for name, weight in weights.items():
            loss = loss + weight * self.cross_entropy(getattr(output, name), target)
        return loss, logits

    def _capsule(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        from cnnlab.models.capsnet import margin_loss, reconstruction_loss

        inner = getattr(model, "module", model)  # under DistributedDataParallel
        if getattr(inner, "decoder", None) is None:
            lengths = model(images)
            return margin_loss(lengths, target), lengths
        lengths, reconstruction = model(images, target)
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        pixels = images * std + mean  # the decoder's sigmoid predicts intensities in [0, 1]
        return margin_loss(lengths, target) + reconstruction_loss(reconstruction.float(), pixels.float()), lengths


def make_objective(model: nn.Module, *, label_smoothing: float = 0.0, mean: Sequence[float] = (0.0,),
                   std: Sequence[float] = (1.0,), num_classes: int | None = None, label: str = "the model"
                   ) -> Objective:
    """The objective for ``model``: CapsNet's losses for a ``CapsNet``, cross-entropy with label
    smoothing (and weighted auxiliary heads) for everything else. Label smoothing does not apply
    to the margin loss."""
    from cnnlab.models.capsnet import CapsNet

    capsule = isinstance(model, CapsNet)
    if capsule and label_smoothing:
        raise ValueError("label smoothing applies to cross-entropy; CapsNet trains with the margin loss")
    return Objective(label_smoothing=label_smoothing, capsule=capsule, mean=tuple(mean), std=tuple(std),
                     num_classes=num_classes, label=label)
