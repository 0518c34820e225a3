"""The interface every cnnlab model shares.

``forward(x) = forward_head(forward_features(x))``. ``forward_features`` first checks the input
(4-D, the right number of channels, at least ``min_input_size`` pixels on each side) so that an
image too small for the network fails with one clear ``ValueError`` before any convolution runs,
instead of a shape error from deep inside torch.
"""

# No ``from __future__ import annotations`` here: TorchScript reads ``ConvNet``'s class-level
# attribute annotations (``in_channels: int`` ...) as they are and cannot resolve strings, and
# every zoo model inherits them.
from typing import Mapping, Optional, TypeVar

import torch
from torch import nn

T = TypeVar("T")

__all__ = [
    "ConvNet", "check_positive", "check_positive_int", "check_probability", "lookup", "units_for_depth",
]


def check_probability(name: str, value: float) -> None:
    """A dropout or drop-path rate: a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_positive(name: str, value: float) -> None:
    """A multiplier such as ``width_mult``: a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def check_positive_int(name: str, value: int) -> None:
    """A count such as ``groups`` or ``num_classes``: an int >= 1 (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def units_for_depth(depth: int, step: int, offset: int, note: str = "") -> int:
    """n for a network of ``depth = step * n + offset`` layers (n >= 1): ResNet's 6n + 2 on
    CIFAR, WRN's 6n + 4, DenseNet's 3n + 4 ... Otherwise a one-line ``ValueError`` naming the
    rule and the valid depths around ``depth``: "depth must be 6n + 2 with n >= 1 (..., 20, 26,
    ...), got 21". ``note`` follows the rule (e.g. " (bottleneck)")."""
    smallest = step + offset
    if isinstance(depth, bool) or not isinstance(depth, int):
        valid = f"{smallest}, {smallest + step}, ..."
    elif depth >= smallest and (depth - offset) % step == 0:
        return (depth - offset) // step
    elif depth < smallest:
        valid = f"{smallest}, {smallest + step}, ..."
    else:
        below = depth - (depth - offset) % step
        valid = f"..., {below}, {below + step}, ..."
    raise ValueError(f"depth must be {step}n + {offset}{note} with n >= 1 ({valid}), got {depth!r}")


def lookup(kind: str, key: str, table: Mapping[str, T]) -> T:
    """``table[key]``, or a one-line error naming the valid keys."""
    if key not in table:
        raise ValueError(f"unknown {kind} config {key!r}; choose one of {', '.join(table)}")
    return table[key]


class ConvNet(nn.Module):
    """Base class of the zoo's image classifiers.

    Subclasses set ``in_channels``, ``num_classes``, ``num_features`` (channels of the tensor
    ``forward_features`` returns), ``min_input_size`` (smallest height and width accepted),
    optionally ``fixed_input_size`` (the only size accepted, for nets with a flatten-to-FC head
    such as LeNet-5), ``classifier_name`` (dotted path of the final layer) and implement
    ``forward_head`` and, unless the body is a module named ``features``, ``_forward_features``.
    """

    in_channels: int
    num_classes: int
    num_features: int
    min_input_size: int = 1
    fixed_input_size: Optional[int] = None
    classifier_name: str = "fc"

    @torch.jit.unused
    def check_input(self, x: torch.Tensor) -> None:
        """Raise a one-line ``ValueError`` for an input this network cannot take.

        Eager only: ``forward_features`` skips it in a ``torch.jit.script``-ed model, where the
        Python checks cannot be compiled (TorchScript still fails on a wrong shape, less clearly).
        """
        if isinstance(x, torch.fx.Proxy):  # symbolic tracing: shapes are not known
            return
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} expects a tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(
                f"{name} expects a 4-D input (N, C, H, W), got shape {tuple(x.shape)}; "
                "add a batch dimension with x.unsqueeze(0)"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} expects {self.in_channels} input channels, got {x.shape[1]} "
                f"(shape {tuple(x.shape)}); build it with in_channels={x.shape[1]}"
            )
        h, w = int(x.shape[2]), int(x.shape[3])
        if self.fixed_input_size is not None:
            s = self.fixed_input_size
            if (h, w) != (s, s):
                raise ValueError(f"{name} takes {s}x{s} inputs only, got {h}x{w}; resize the images")
        elif min(h, w) < self.min_input_size:
            s = self.min_input_size
            raise ValueError(
                f"{name} needs inputs of at least {s}x{s} pixels, got {h}x{w}; resize or pad the images"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The features before the classifier head (after the input check)."""
        if not torch.jit.is_scripting():
            self.check_input(x)
        return self._forward_features(x)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """By default the ``features`` module, where most families keep their body."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a freshly initialised one for ``num_classes`` outputs.

        Handles a final ``nn.Linear`` or a 1x1 ``nn.Conv2d`` classifier (NiN, SqueezeNet);
        models with another kind of head override this.
        """
        check_positive_int("num_classes", num_classes)
        old = self.get_classifier()
        factory = {"device": old.weight.device, "dtype": old.weight.dtype}
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **factory)
        elif isinstance(old, nn.Conv2d):
            new = nn.Conv2d(
                old.in_channels, num_classes, old.kernel_size, old.stride, old.padding,
                bias=old.bias is not None, **factory,
            )
        else:
            raise TypeError(f"{type(self).__name__} must override reset_classifier")
        parent_name, _, child = self.classifier_name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, child, new)
        self.num_classes = num_classes
