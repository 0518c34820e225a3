"""One epoch of training and one pass of evaluation, the loop's two functions (as in
torchvision's ``references/classification/train.py``), and what they report after each step."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from cnnlab.train.distributed import Context
from cnnlab.train.losses import Objective

__all__ = ["EpochSums", "Reporter", "SkipSampler", "StepProgress", "StopRequest", "TrainingError", "evaluate",
           "train_one_epoch"]


class TrainingError(RuntimeError):
    """Training cannot go on (a loss that is not finite); one line."""


@dataclass
class StopRequest:
    """Set ``requested`` (the signal handler does) and the run stops after the current step."""

    requested: bool = False


@dataclass
class StepProgress:
    """What the progress bar shows after each step (running averages over the epoch)."""

    epoch: int  # 1-based
    epochs: int
    step: int  # steps done in this epoch
    steps: int
    loss: float
    acc: float
    images_per_s: float


class Reporter:
    """What a run tells its caller (rank 0 only); the CLI's progress bar subclasses it."""

    def start(self, info: dict[str, Any]) -> None:
        """Before the first step: model, data sizes, steps per epoch, device, world size, out."""

    def note(self, text: str) -> None:
        """Something the user should know (a conversion, a resumed position)."""

    def step(self, progress: StepProgress) -> None:
        """After every optimizer step."""

    def epoch(self, row: dict[str, Any]) -> None:
        """After every epoch: its ``metrics.csv`` row."""


@dataclass
class EpochSums:
    """Running sums of one epoch on this rank (kept in the checkpoint for a mid-epoch resume)."""

    step: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    train_seconds: float = 0.0
    lr: float = 0.0  # the learning rate of the last step


# -- one epoch --------------------------------------------------------------------------------
class SkipSampler(Sampler[int]):
    """``sampler`` without its first ``skip`` indices (a resumed epoch's batches already done)."""

    def __init__(self, sampler: Sampler[int], skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)  # type: ignore[arg-type]


def _to(images: torch.Tensor, target: torch.Tensor, device: torch.device, channels_last: bool
        ) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, target.to(device, non_blocking=True)


def train_one_epoch(
    model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer, scheduler: Any,
    scaler: torch.amp.GradScaler, loader: DataLoader, sums: EpochSums, *, ctx: Context, epoch: int,
    epochs: int, steps: int, amp: bool, channels_last: bool, reporter: Reporter, stop: StopRequest,
) -> bool:
    """Train on ``loader`` (the epoch's remaining batches), adding to ``sums``; the scheduler steps
    after every optimizer step. Returns True when a stop was requested (on any rank)."""
    model.train()
    amp_dtype = torch.float16 if ctx.device.type == "cuda" else torch.bfloat16
    start = time.perf_counter()
    base_seconds = sums.train_seconds
    for images, target in loader:
        images, target = _to(images, target, ctx.device, channels_last)
        with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=amp):
            loss, logits = objective(model, images, target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        sums.lr = optimizer.param_groups[0]["lr"]  # the rate this step used
        if scheduler is not None:
            scheduler.step()
        value = loss.item()
        n = target.shape[0]
        sums.step += 1
        sums.loss_sum += value * n
        sums.correct += (logits.argmax(1) == target).sum().item()
        sums.count += n
        sums.train_seconds = base_seconds + time.perf_counter() - start
        if ctx.is_main:
            reporter.step(StepProgress(
                epoch + 1, epochs, sums.step, steps, sums.loss_sum / sums.count, sums.correct / sums.count,
                sums.count * ctx.world_size / max(sums.train_seconds, 1e-9),
            ))
        stopping, diverged = ctx.any(stop.requested, not math.isfinite(value))  # every rank agrees
        if diverged:
            said = value if not math.isfinite(value) else "not finite on another process"
            raise TrainingError(f"the loss became {said} at epoch {epoch + 1}, step {sums.step}; "
                                "try a lower --lr (or without --amp)")
        if stopping:
            return True
    return False


@torch.no_grad()
def evaluate(model: nn.Module, objective: Objective, loader: DataLoader, *, ctx: Context, amp: bool,
             channels_last: bool) -> tuple[float, float]:
    """(mean loss, top-1 accuracy) over the test set, summed over every rank's share. ``model``
    is the bare module (not the DDP wrapper): evaluation needs no collective in the forward."""
    model.eval()
    amp_dtype = torch.float16 if ctx.device.type == "cuda" else torch.bfloat16
    loss_sum = correct = count = 0.0
    for images, target in loader:
        images, target = _to(images, target, ctx.device, channels_last)
        with torch.autocast(ctx.device.type, dtype=amp_dtype, enabled=amp):
            loss, logits = objective(model, images, target)
        loss_sum += loss.item() * target.shape[0]
        correct += (logits.argmax(1) == target).sum().item()
        count += target.shape[0]
    loss_sum, correct, count = ctx.sum(loss_sum, correct, count)
    return loss_sum / max(count, 1), correct / max(count, 1)
