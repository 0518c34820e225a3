"""Building blocks shared by the zoo: one copy of each.

Layer types are passed as classes or callables (``norm_layer=nn.BatchNorm2d``), never as strings.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from cnnlab.models.base import check_positive_int

__all__ = [
    "ChannelShuffle", "ConvBNAct", "DropPath", "InvertedResidual", "LocalResponseNorm", "SeparableConv2d",
    "SqueezeExcitation", "channel_shuffle", "init_weights", "initialize", "make_divisible", "output_size",
    "smallest_input",
]

LayerFactory = Callable[..., nn.Module]


class ConvBNAct(nn.Module):
    """Conv2d, then an optional norm layer, then an optional activation.

    Submodules are named ``conv``, ``bn`` and ``act`` so that state dicts match torchvision's
    ``BasicConv2d`` (GoogLeNet, Inception v3). With a norm layer the conv has no bias, as the
    BN's beta takes its place; without one, the conv keeps its bias (the pre-BN papers).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | None = None,
        *,
        groups: int = 1,
        dilation: int = 1,
        bias: bool | None = None,
        norm_layer: LayerFactory | None = nn.BatchNorm2d,
        activation: LayerFactory | None = nn.ReLU,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if padding is None:  # "same" padding for odd kernels at stride 1
            k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            padding = (dilation * (k[0] - 1) // 2, dilation * (k[1] - 1) // 2)
        if bias is None:
            bias = norm_layer is None
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding,
            dilation=dilation, groups=groups, bias=bias,
        )
        self.bn = norm_layer(out_channels, eps=eps) if norm_layer is not None else None
        self.act = activation(inplace=True) if activation is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


class LocalResponseNorm(nn.LocalResponseNorm):
    """Local response normalisation in the papers' convention (AlexNet §3.3).

    b = a / (k + alpha * sum_{n neighbours} a^2) ** beta. PyTorch's ``nn.LocalResponseNorm``
    divides ``alpha`` by ``size``; we multiply it back so the constants read as in the papers
    (AlexNet: k=2, n=5, alpha=1e-4, beta=0.75).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> None:
        super().__init__(size=size, alpha=alpha * size, beta=beta, k=k)
        self.paper_alpha = alpha

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.paper_alpha} (paper convention), beta={self.beta}, k={self.k}"


class SeparableConv2d(nn.Module):
    """Depthwise k x k conv followed by a pointwise 1x1 conv, nothing in between.

    Xception (Chollet 2017, §2) notes that, unlike Inception, its separable convolutions have no
    non-linearity between the depthwise and pointwise steps. Callers add norm and activation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        *,
        dilation: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, stride, padding,
            dilation=dilation, groups=in_channels, bias=bias,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class DropPath(nn.Module):
    """Stochastic depth on a residual branch (Huang et al. 2016, "Deep Networks with Stochastic
    Depth", §3): in training, drop the branch of each sample with probability ``p`` and scale
    the kept ones by 1 / (1 - p); the identity in eval mode or when ``p`` is 0.

    Deviation: the paper keeps training outputs unscaled and multiplies the branch by its
    survival probability at test time (§3, "Test time"); scaling at training time instead is
    the same in expectation and leaves eval a plain forward.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep) / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNet V2/V3, MnasNet).

    The nearest multiple, never below ``min_value`` (default ``divisor``) and never more than
    10 % below ``value`` — the rule of the TF reference code that torchvision also follows.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle (Zhang et al. 2017, §3.1, Fig. 1): reshape the channels to
    (groups, C/groups), transpose, flatten. [0..8] with 3 groups -> [0 3 6 1 4 7 2 5 8]."""
    n, c = x.shape[0], x.shape[1]
    if c % groups:
        raise ValueError(f"channel shuffle: {c} channels do not split into {groups} groups")
    # The trailing (spatial) dimensions are folded into one so that TorchScript, which cannot
    # unpack ``*x.shape[2:]``, compiles this; the copy made by the last reshape is the same.
    return x.reshape(n, groups, c // groups, -1).transpose(1, 2).reshape(x.shape)


class ChannelShuffle(nn.Module):
    """``channel_shuffle`` as a module (so it shows up in the analyzer's per-layer table)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018, §3, Fig. 2): global average pool, a bottleneck
    of two fully connected layers (here 1x1 convs with bias: the same weights, applicable to
    the pooled map), then a gate that rescales each channel.

    ``squeeze_channels`` is C/r in SENet's notation. ``activation`` is ReLU in SENet; ``gate``
    is the sigmoid in SENet and h-sigmoid in MobileNetV3. Submodules ``fc1``/``fc2`` match
    torchvision's ``SqueezeExcitation`` state-dict keys.
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        *,
        activation: LayerFactory = nn.ReLU,
        gate: LayerFactory = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = activation()
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, ceil_mode: bool = False) -> int:
    """torch's output size of a conv or pooling layer along one side (may be < 1: too small).

    In ceil mode a last window that would start beyond the (left-padded) input is dropped, as
    ``torch.nn.functional.max_pool2d`` does.
    """
    out = (size + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def smallest_input(windows: Iterable[tuple[int, int, int, bool]]) -> int:
    """The smallest square input for which every (kernel, stride, padding, ceil_mode) window,
    applied in order, leaves an output of at least 1x1."""
    windows = list(windows)

    def fits(size: int) -> bool:
        for kernel, stride, padding, ceil_mode in windows:
            size = output_size(size, kernel, stride, padding, ceil_mode)
            if size < 1:
                return False
        return True

    size = 1
    while not fits(size):
        size += 1
    return size


def initialize(init: Callable[..., torch.Tensor], tensor: torch.Tensor, *args: Any, **kwargs: Any) -> None:
    """``init(tensor, *args, **kwargs)`` (an ``nn.init`` function), skipped on the meta device.

    The zoo's one way to initialise a tensor. A meta tensor has no values to set, and on meta
    ``nn.init.normal_`` (so ``kaiming_normal_`` too) runs through ``torch._refs``, whose
    ``torch._disable_dynamo`` wrapper imports ``torch._dynamo`` on first use: about 1.5 s of
    start-up for building a model the analyzer only needs the shapes of. On a real device the
    call, and so the random stream, is exactly ``init``'s.
    """
    if not tensor.is_meta:
        init(tensor, *args, **kwargs)


def init_weights(module: nn.Module) -> None:
    """He (fan-out) init for convs, N(0, 0.01) for linear layers, unit/zero for norms.

    Does nothing to meta tensors (see ``initialize``).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            initialize(nn.init.kaiming_normal_, m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                initialize(nn.init.zeros_, m.bias)
        elif isinstance(m, nn.Linear):
            initialize(nn.init.normal_, m.weight, 0.0, 0.01)
            if m.bias is not None:
                initialize(nn.init.zeros_, m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
            initialize(nn.init.ones_, m.weight)
            initialize(nn.init.zeros_, m.bias)


class InvertedResidual(nn.Module):
    """The inverted residual with a linear bottleneck (Sandler et al. 2018, MobileNetV2, §3.3,
    Table 1, Fig. 3(b)): a 1x1 expansion to ``expanded_channels``, a ``kernel`` x ``kernel``
    depthwise conv that carries the ``stride``, an optional squeeze-and-excitation on the
    expanded features, and a linear 1x1 projection (BN, no activation: §3.2, a ReLU in the
    narrow bottleneck destroys information). The input is added back when ``stride`` is 1 and
    ``in_channels == out_channels``.

    One class for four papers (torchvision keeps four copies):

    * MobileNetV2: ``expanded_channels = t * in_channels``, ReLU6; no expansion conv when t = 1.
    * MobileNetV3's "bneck" (Howard et al. 2019, Tables 1-2): the "exp size" column, ReLU or
      h-swish, SE with an h-sigmoid gate (``se_gate=nn.Hardsigmoid``, §5.2-5.3).
    * MnasNet's MBConv and SepConv (Tan et al. 2019, Fig. 7), SE with a sigmoid gate.
    * IGCV3 (Sun et al. 2018): ``groups`` > 1 makes both pointwise convs group convolutions,
      with a channel permutation after each (P1 after the expansion, P2 after the projection,
      as in the authors' code) so that the next group convolution sees every group;
      ``linear_expansion=True`` leaves the expansion without activation, as IGCV3 does.

    Submodules, in forward order: ``expand`` (a ``ConvBNAct``; absent when ``expanded_channels
    == in_channels`` unless ``expand=True``), ``shuffle``, ``depthwise``, ``se``, ``project``,
    ``unshuffle`` (absent ones are ``None``). ``norm_layer`` is called as
    ``norm_layer(channels, eps=eps)``; pass e.g. ``partial(nn.BatchNorm2d, momentum=0.01)``
    for another momentum.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        expanded_channels: int,
        kernel: int = 3,
        stride: int = 1,
        se_channels: int | None = None,
        activation: LayerFactory = nn.ReLU6,
        linear_expansion: bool = False,
        expand: bool | None = None,
        groups: int = 1,
        se_activation: LayerFactory = nn.ReLU,
        se_gate: LayerFactory = nn.Sigmoid,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"inverted residual: stride must be 1 or 2, got {stride}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"inverted residual: kernel must be odd and positive, got {kernel}")
        check_positive_int("inverted residual: groups", groups)
        if expand is None:
            expand = expanded_channels != in_channels
        if not expand and expanded_channels != in_channels:
            raise ValueError(
                f"inverted residual: without an expansion conv expanded_channels ({expanded_channels}) "
                f"must equal in_channels ({in_channels})"
            )
        if any(c % groups for c in (in_channels, expanded_channels, out_channels)):
            raise ValueError(
                f"inverted residual: channels {in_channels}/{expanded_channels}/{out_channels} "
                f"do not split into {groups} groups"
            )
        self.use_residual = stride == 1 and in_channels == out_channels
        norm = {"norm_layer": norm_layer, "eps": eps}
        self.expand = (
            ConvBNAct(
                in_channels, expanded_channels, 1, groups=groups,
                activation=None if linear_expansion else activation, **norm,
            )
            if expand else None
        )
        self.shuffle = ChannelShuffle(groups) if groups > 1 and expand else None
        self.depthwise = ConvBNAct(
            expanded_channels, expanded_channels, kernel, stride, groups=expanded_channels,
            activation=activation, **norm,
        )
        self.se = (
            SqueezeExcitation(expanded_channels, se_channels, activation=se_activation, gate=se_gate)
            if se_channels else None
        )
        self.project = ConvBNAct(expanded_channels, out_channels, 1, groups=groups, activation=None, **norm)
        # P2, the inverse of the g-group shuffle: the authors' code reshapes to (C/2, 2).
        self.unshuffle = ChannelShuffle(out_channels // groups) if groups > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Spelled out rather than a loop over a tuple of optional modules, which TorchScript
        # cannot compile.
        out = x
        if self.expand is not None:
            out = self.expand(out)
        if self.shuffle is not None:
            out = self.shuffle(out)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        if self.unshuffle is not None:
            out = self.unshuffle(out)
        return x + out if self.use_residual else out
