"""Optimizer and learning-rate schedule from a run's arguments.

Every schedule is stepped once per optimizer step, over ``epochs x steps_per_epoch`` steps, so
that a run stopped mid-epoch resumes on the same learning rate; "step" schedules still change the
rate at epoch boundaries (``milestones`` are fractions of the epochs: ResNet's "divide by 10 at
32k and 48k of 64k iterations" is (0.5, 0.75); ``step_epochs`` decays every that many epochs:
Inception's x0.94 every 2 epochs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from cnnlab.train.config import TrainConfig

__all__ = ["depthwise_weights", "make_optimizer", "make_scheduler", "param_groups"]


def depthwise_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights of depthwise convolutions (``groups == in_channels > 1``): MobileNet's
    "depthwise filters" (Howard et al. 2017, §3.2)."""
    return [m.weight for m in model.modules()
            if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]


def param_groups(model: nn.Module, weight_decay: float, depthwise_weight_decay: float | None) -> list[dict[str, Any]]:
    """One group with ``weight_decay``, or two when the depthwise filters get their own decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if depthwise_weight_decay is None or depthwise_weight_decay == weight_decay:
        return [{"params": params, "weight_decay": weight_decay}]
    special = {id(p) for p in depthwise_weights(model)}
    groups = [{"params": [p for p in params if id(p) not in special], "weight_decay": weight_decay},
              {"params": [p for p in params if id(p) in special], "weight_decay": depthwise_weight_decay}]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), RMSprop (TensorFlow-style alpha and eps, momentum) or AdamW."""
    groups = param_groups(model, config.weight_decay, config.depthwise_weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=config.lr, alpha=config.rmsprop_alpha, eps=config.rmsprop_eps,
                                   momentum=config.momentum)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> Any:
    """The schedule over the whole run, stepped per optimizer step; None for "none"."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.scheduler == "none":
        return None
    if config.scheduler == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.scheduler == "linear":  # ShuffleNet: "linear-decay learning rate policy (decreased from 0.5 to 0)"
        return lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=total)
    if config.scheduler == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total)
    if config.scheduler == "step":
        if config.milestones:
            epochs = sorted({round(m * config.epochs) for m in config.milestones} - {0})
            return lr_scheduler.MultiStepLR(optimizer, [e * steps_per_epoch for e in epochs], gamma=config.gamma)
        step = max(1, round(float(config.step_epochs or 1) * steps_per_epoch))
        return lr_scheduler.StepLR(optimizer, step_size=step, gamma=config.gamma)
    raise ValueError(f"unknown scheduler {config.scheduler!r}")
