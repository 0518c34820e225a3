"""IGCV3: Sun, Li, Liu & Wang, "IGCV3: Interleaved Low-Rank Group Convolutions for Efficient
Deep Neural Networks", BMVC 2018, https://arxiv.org/abs/1806.00178.

What it contributes: IGCV1/IGCV2's interleaved group convolutions (a product of structured
sparse kernels, with permutations between them so that every output depends on every input)
combined with MobileNetV2's low-rank inverted bottleneck. The block is a *group* 1x1
convolution that expands the width, a permutation, a channel-wise (depthwise) 3x3
convolution, and a *group* 1x1 convolution that reduces the width back, then a permutation
(the "loose complementary condition" over super-channels). With two groups the pointwise
convolutions cost half of MobileNetV2's, which pays for more blocks: IGCV3-D ("deeper") has
MobileNetV2's widths with 4/6/8/6/6 blocks where MobileNetV2 has 2/3/4/3/3 (3.5M parameters,
318M multiply-adds).

The table is the authors' code's (``symbols/igcv3.py``, ``bottleneck_params_list``); widths
0.75 / 0.5 / 0.25 follow pytorchcv's ``igcv3_w3d4`` / ``igcv3_wd2`` / ``igcv3_wd4``.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_positive, check_positive_int
from cnnlab.models.layers import ConvBNAct, InvertedResidual, init_weights
from cnnlab.models.mobilenet_v2 import Bottleneck  # the same t, c, n, s rows as Table 2
from cnnlab.registry import Paper, register_model

__all__ = ["Bottleneck", "IGCV3", "TABLE"]

PAPER = Paper(
    "IGCV3: Interleaved Low-Rank Group Convolutions for Efficient Deep Neural Networks",
    "Sun, Li, Liu, Wang", 2018, "https://arxiv.org/abs/1806.00178",
)


# IGCV3-D: conv 3x3 / 2 to 32, these rows, conv 1x1 to 1280, global pool, linear.
STEM_CHANNELS = 32
TABLE = [
    Bottleneck(expansion=1, out_channels=16, repeats=1, stride=1),
    Bottleneck(expansion=6, out_channels=24, repeats=4, stride=2),
    Bottleneck(expansion=6, out_channels=32, repeats=6, stride=2),
    Bottleneck(expansion=6, out_channels=64, repeats=8, stride=2),
    Bottleneck(expansion=6, out_channels=96, repeats=6, stride=1),
    Bottleneck(expansion=6, out_channels=160, repeats=6, stride=2),
    Bottleneck(expansion=6, out_channels=320, repeats=1, stride=1),
]
LAST_CHANNELS = 1280


def _even(value: float) -> int:
    """pytorchcv's width rounding: truncate, then round odd counts up (two groups)."""
    n = int(value)
    return n + n % 2


class IGCV3(ConvNet):
    """IGCV3-D at width ``width_mult`` with ``groups`` groups in both pointwise convolutions.

    Every block is our ``InvertedResidual`` with ``groups`` (a channel shuffle after the
    expansion, its inverse after the projection, as in the authors' code), a linear
    expansion and ReLU6 after the depthwise conv only (the authors' code; pytorchcv agrees).
    Even the t = 1 block keeps its (group) 1x1 conv, as in the authors' code. The last conv
    keeps 1280 channels for ``width_mult <= 1`` and widens above (as MobileNetV2, §6.1).

    pytorchcv leaves out the permutation after the projection (P2); we keep it, as the authors'
    code and the paper's interleaving do. It has no parameters and no MACs, so the counts agree.
    Widths round as pytorchcv's (``_even``); the authors' ``int(round(.))`` then even gives the
    same widths at 1, 0.75, 0.5 and 0.25.
    """

    classifier_name = "classifier"

    def __init__(
        self,
        *,
        width_mult: float = 1.0,
        groups: int = 2,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_positive("width_mult", width_mult)
        check_positive_int("groups", groups)
        self.in_channels, self.num_classes = in_channels, num_classes
        channels = _even(STEM_CHANNELS * width_mult)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 2, activation=nn.ReLU6)]
        for row in TABLE:
            out_channels = _even(row.out_channels * width_mult)
            for i in range(row.repeats):
                layers.append(
                    InvertedResidual(
                        channels, out_channels, kernel=3, stride=row.stride if i == 0 else 1,
                        expanded_channels=channels * row.expansion, expand=True, groups=groups,
                        linear_expansion=True, activation=nn.ReLU6,
                    )
                )
                channels = out_channels
        self.num_features = LAST_CHANNELS if width_mult <= 1.0 else _even(LAST_CHANNELS * width_mult)
        layers.append(ConvBNAct(channels, self.num_features, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        # Global pooling (the authors' code pools globally too): any input size works.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.num_features, num_classes)
        init_weights(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


# IGCV3-D 1.0 has 3,491,688 parameters (models.csv, pytorchcv igcv3_w1: exact) and 312,970,176
# conv + linear MACs at 224, 1.6 % below the paper's 318M. The architecture is the authors'
# (its parameters match exactly); the paper does not say what else its 318M counts (BN alone
# would add 11.7M), so we keep the exact conv + linear count, within models.csv's 3 %.
_VARIANTS: dict[str, dict[str, float]] = {
    # name: the fixed arguments; ``igcv3`` (IGCV3-D 1.0) leaves ``width_mult`` to the user.
    "igcv3": {},
    "igcv3_w3d4": {"width_mult": 0.75},
    "igcv3_wd2": {"width_mult": 0.5},
    "igcv3_wd4": {"width_mult": 0.25},
}

for _name, _fixed in _VARIANTS.items():
    register_model(_name, IGCV3, family="IGCV3", paper=PAPER, input_size=(3, 224, 224), **_fixed)
