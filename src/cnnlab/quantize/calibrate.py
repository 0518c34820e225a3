"""The data a quantization reads: calibration batches from the training split, the test split
for accuracy, and the accuracy loop itself (any ``batch -> logits`` callable: torch, ONNX
Runtime, OpenVINO, an INT8 file).

The splits are read as ``cnnlab eval`` reads them (``cnnlab.train.data.load_data`` at the
checkpoint's input size and channels, without augmentation; the data's classes must be the
checkpoint's; items normalised with other statistics than the checkpoint's are brought to the
checkpoint's: ``cnnlab.train.inference.trained_splits``), so the float accuracy here is
``cnnlab eval``'s top-1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab.train.data import DataError

__all__ = ["Accuracy", "calibration_batches", "top1_accuracy"]


@dataclass(frozen=True)
class Accuracy:
    """Top-1 on a test split: ``correct`` of ``n``."""

    correct: int
    n: int

    @property
    def top1(self) -> float:
        return self.correct / self.n if self.n else float("nan")


def calibration_batches(dataset: Dataset, batches: int, batch_size: int, *, seed: int = 0) -> list[torch.Tensor]:
    """``batches`` batches of ``batch_size`` images drawn without replacement from ``dataset``
    (a seeded permutation, so every class is likely represented); a ``ValueError`` when the
    dataset holds fewer images than that."""
    if batches < 1 or batch_size < 1:
        raise ValueError(f"calibration needs at least one batch of one image (got {batches} of {batch_size})")
    wanted, available = batches * batch_size, len(dataset)  # type: ignore[arg-type]
    if wanted > available:
        raise ValueError(f"{batches} calibration batches of {batch_size} need {wanted} training images; the training "
                         f"split has {available}: ask for at most {available // batch_size} batches")
    order = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:wanted].tolist()
    images = torch.stack([dataset[i][0] for i in order])
    return list(images.split(batch_size))


def top1_accuracy(predict: Callable[[torch.Tensor], Any], dataset: Dataset, *, batch_size: int = 256) -> Accuracy:
    """Top-1 of ``predict`` (a float32 batch -> logits, as a tensor or an array) on ``dataset``,
    in order, in batches of ``batch_size``."""
    correct = n = 0
    with torch.inference_mode():
        for images, target in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            logits = torch.as_tensor(predict(images.contiguous()))
            correct += int((logits.argmax(dim=1) == target).sum())
            n += int(target.shape[0])
    if n == 0:
        raise DataError("the test split is empty")
    return Accuracy(correct, n)
