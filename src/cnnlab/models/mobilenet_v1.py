"""MobileNet (V1): Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam, "MobileNets:
Efficient Convolutional Neural Networks for Mobile Vision Applications", 2017,
https://arxiv.org/abs/1704.04861.

What it contributes: a network built almost entirely from depthwise separable convolutions
(§3.1, Figure 2): a 3x3 depthwise convolution filters each channel on its own, a 1x1 pointwise
convolution combines them, each followed by BN and ReLU (Figure 3). That costs
D_K^2 M D_F^2 + M N D_F^2 multiply-adds instead of D_K^2 M N D_F^2 -- 8 to 9 times less for
3x3 filters (eq. 5) -- and puts 95 % of the computation into 1x1 convolutions, which map to
plain GEMMs (Table 2). Two global hyper-parameters trade accuracy for size (§3.3-§3.4): the
width multiplier alpha thins every layer (cost ~ alpha^2) and the resolution multiplier rho
shrinks the input (cost ~ rho^2). Table 1 is the table below; Table 4 compares the same net
with full convolutions (``mobilenet_v1_conv``) and Table 5 a shallower one
(``mobilenet_v1_shallow``, the five 14x14x512 separable layers removed).

Width rounding and BN epsilon are not in the paper; they follow the authors' TF-slim
implementation (tensorflow/models research/slim/nets/mobilenet_v1.py), whose published counts
(4.24M / 569M MACs at alpha=1, 224) we reproduce; marked at the line.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_positive, check_probability
from cnnlab.models.layers import ConvBNAct, init_weights, smallest_input
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    "Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam", 2017,
    "https://arxiv.org/abs/1704.04861",
)

# Not in the paper: TF-slim's batch_norm epsilon in mobilenet_v1_arg_scope.
BN_EPS = 1e-3
# Not in the paper: TF-slim's ``min_depth``; no layer is thinned below 8 channels.
MIN_DEPTH = 8


# --- Blocks ----------------------------------------------------------------------------------


class DepthwiseSeparableConv(nn.Module):
    """Figure 3 (right): 3x3 depthwise conv -> BN -> ReLU, then 1x1 pointwise conv -> BN -> ReLU.

    Unlike Xception's ``SeparableConv2d`` there is a BN and ReLU between the two steps (§3.1:
    "We use both batchnorm and ReLU nonlinearities for both layers").
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, eps=BN_EPS)
        self.pointwise = ConvBNAct(in_channels, out_channels, 1, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


# --- The model -------------------------------------------------------------------------------


class Conv(NamedTuple):
    """A full 3x3 convolution row of Table 1 ("Conv / s2, 3x3x3x32")."""

    out_channels: int
    stride: int


class DepthwiseSeparable(NamedTuple):
    """A "Conv dw / s<stride>" row and the "Conv / s1, 1x1" row after it, ``repeats`` times."""

    out_channels: int
    stride: int
    repeats: int = 1


# Table 1, one row per depthwise + pointwise pair; input sizes at 224x224.
MIDDLE_512 = DepthwiseSeparable(512, stride=1, repeats=5)  # "5x", 14x14x512; gone in Table 5's shallow net
TABLE_1: tuple[Conv | DepthwiseSeparable, ...] = (
    Conv(32, stride=2),  # 224x224x3
    DepthwiseSeparable(64, stride=1),  # 112x112x32
    DepthwiseSeparable(128, stride=2),  # 112x112x64
    DepthwiseSeparable(128, stride=1),  # 56x56x128
    DepthwiseSeparable(256, stride=2),  # 56x56x128
    DepthwiseSeparable(256, stride=1),  # 28x28x256
    DepthwiseSeparable(512, stride=2),  # 28x28x256
    MIDDLE_512,  # 14x14x512
    DepthwiseSeparable(1024, stride=2),  # 14x14x512
    # Deviation: Table 1 prints "Conv dw / s2" here, but its input and output are both 7x7x1024;
    # a typo, stride 1 as in the authors' TF-slim code and every implementation.
    DepthwiseSeparable(1024, stride=1),  # 7x7x1024
)


class MobileNetV1(ConvNet):
    """MobileNet with width multiplier ``width_mult`` (alpha, §3.3) at any input resolution
    (rho, §3.4: every layer is padded and the pooling is global, so any H, W >= 1 works).

    ``separable=False`` replaces every depthwise separable pair by one full 3x3 convolution
    (Table 4's "Conv MobileNet"); ``shallow=True`` removes the five 14x14x512 separable layers
    (Table 5's "Shallow MobileNet").
    """

    classifier_name = "fc"

    def __init__(
        self,
        *,
        width_mult: float = 1.0,
        separable: bool = True,
        shallow: bool = False,
        dropout: float = 0.0,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_positive("width_mult", width_mult)
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes, self.width_mult = in_channels, num_classes, width_mult

        def depth(channels: int) -> int:
            # §3.3: "the number of input channels M becomes alpha M"; rounded down and never below
            # 8, as TF-slim's depth() does (not in the paper).
            return max(int(channels * width_mult), MIN_DEPTH)

        rows = [row for row in TABLE_1 if not (shallow and row is MIDDLE_512)]
        layers: list[nn.Module] = []
        windows: list[tuple[int, int, int, bool]] = []
        channels = in_channels
        for row in rows:
            repeats = row.repeats if isinstance(row, DepthwiseSeparable) else 1
            for _ in range(repeats):
                out = depth(row.out_channels)
                if isinstance(row, Conv) or not separable:
                    layers.append(ConvBNAct(channels, out, 3, row.stride, eps=BN_EPS))
                else:
                    layers.append(DepthwiseSeparableConv(channels, out, row.stride))
                # Deviation: TF pads "SAME", i.e. (0, 1) at stride 2 on even sizes; PyTorch pads
                # 1 on both sides. Output sizes (ceil(n / stride)) and MACs are the same.
                windows.append((3, row.stride, 1, False))
                channels = out
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.min_input_size = smallest_input(windows)
        # Table 1: "Avg Pool / s1, Pool 7x7" -- global pooling at 224, adaptive for any rho.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # The paper mentions no dropout (§3.2: "less regularization"), hence 0 by default; TF-slim
        # keeps 0.999 of the activations here (dropout=0.001).
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)  # Table 1: "FC / s1, 1024 x 1000"
        init_weights(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


_VARIANTS = {
    # name: fixed arguments (Table 6: width multipliers; Table 4: full convolutions; Table 5: shallow)
    "mobilenet_v1": {},
    "mobilenet_v1_075": {"width_mult": 0.75},
    "mobilenet_v1_050": {"width_mult": 0.5},
    "mobilenet_v1_025": {"width_mult": 0.25},
    "mobilenet_v1_conv": {"separable": False},
    "mobilenet_v1_shallow": {"shallow": True},
}

for _name, _fixed in _VARIANTS.items():
    register_model(
        _name, MobileNetV1, family="MobileNet V1", paper=PAPER, input_size=(3, 224, 224), **_fixed
    )
