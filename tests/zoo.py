"""Helpers the zoo tests share (imported by the test modules, not collected)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnlab

# Per-model exceptions to the generic tests, in one table (STYLE: no `if name == ...`).
# Parameters that forward(x) cannot reach, by name prefix: CapsNet's reconstruction decoder is
# trained by the reconstruction loss only (tests/test_capsnet.py checks it gets gradients there).
NOT_IN_FORWARD_GRAPH: dict[str, tuple[str, ...]] = {"capsnet": ("decoder.",)}


def build_meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model(name, **kwargs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_linear_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Conv + matmul FLOPs / 2 counted by torch's FlopCounterMode, on the meta device."""
    model = model.eval()
    x = torch.empty(input_shape, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def runs_at(model: nn.Module, size: int) -> bool:
    """Whether the model's layers (input check bypassed) accept a size x size input on meta."""
    x = torch.empty(1, model.in_channels, size, size, device="meta")
    original = model.check_input
    model.check_input = lambda _x: None
    try:
        with torch.no_grad():
            model.eval()(x)
        return True
    except (RuntimeError, ValueError, IndexError):
        return False
    finally:
        model.check_input = original
