"""MobileNetV2: Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", CVPR 2018, https://arxiv.org/abs/1801.04381.

What it contributes: the inverted residual with a linear bottleneck (§3.2-3.3, Fig. 3(b),
Table 1): the shortcut joins the thin bottlenecks, a 1x1 conv expands them t times, a 3x3
depthwise conv filters the wide tensor, and a 1x1 projection back to the bottleneck has no
non-linearity, because ReLU on a low-dimensional manifold loses information. Table 2 is the
network: a 3x3 stem of 32 channels, seventeen bottlenecks in seven ``t, c, n, s`` rows, a
1x1 conv to 1280, global pooling and a classifier. The width multiplier (§6.1, 0.35-1.4)
rounds every width to a multiple of 8 but does not narrow the last conv below 1280.

``mobilenet_v2`` is torchvision's ``mobilenet_v2`` (same state_dict keys, same outputs).

Our one ``InvertedResidual`` names its parts where torchvision numbers them; ``keys.py`` makes
the state dict speak torchvision's keys.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_positive, check_probability
from cnnlab.models.keys import conv_bn_names, use_torchvision_keys
from cnnlab.models.layers import ConvBNAct, InvertedResidual, init_weights, make_divisible
from cnnlab.registry import Paper, register_model

__all__ = ["Bottleneck", "MobileNetV2", "TABLE_2"]

PAPER = Paper(
    "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    "Sandler, Howard, Zhu, Zhmoginov, Chen", 2018, "https://arxiv.org/abs/1801.04381",
)


class Bottleneck(NamedTuple):
    """A "bottleneck" row of Table 2: ``n`` inverted residuals, the first with stride ``s``."""

    expansion: int  # t
    out_channels: int  # c
    repeats: int  # n
    stride: int  # s


# Table 2: input 224^2 x 3 -> conv2d 3x3, 32 channels, stride 2, then these rows; then
# conv2d 1x1 to 1280, avgpool 7x7, conv2d 1x1 to k (a linear layer on the pooled vector).
STEM_CHANNELS = 32
TABLE_2 = [
    Bottleneck(expansion=1, out_channels=16, repeats=1, stride=1),
    Bottleneck(expansion=6, out_channels=24, repeats=2, stride=2),
    Bottleneck(expansion=6, out_channels=32, repeats=3, stride=2),
    Bottleneck(expansion=6, out_channels=64, repeats=4, stride=2),
    Bottleneck(expansion=6, out_channels=96, repeats=3, stride=1),
    Bottleneck(expansion=6, out_channels=160, repeats=3, stride=2),
    Bottleneck(expansion=6, out_channels=320, repeats=1, stride=1),
]
LAST_CHANNELS = 1280


class MobileNetV2(ConvNet):
    """MobileNetV2 (Table 2) at width ``width_mult`` (§6.1: 0.35 to 1.4 in the paper).

    Widths are ``make_divisible(c * width_mult, 8)`` as in the authors' TF-slim code; the last
    1x1 conv keeps 1280 channels for ``width_mult < 1`` and widens for ``width_mult > 1``
    (§6.1: for multipliers below one the multiplier applies to every layer but the last
    convolutional one). ``features`` holds the stem, the 17 blocks and the last conv with
    torchvision's indices; ``classifier`` is dropout then the linear layer.
    """

    classifier_name = "classifier.1"

    def __init__(
        self,
        *,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        check_positive("width_mult", width_mult)
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes = in_channels, num_classes
        channels = make_divisible(STEM_CHANNELS * width_mult, 8)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 2, activation=nn.ReLU6)]
        for row in TABLE_2:
            out_channels = make_divisible(row.out_channels * width_mult, 8)
            for i in range(row.repeats):
                layers.append(
                    InvertedResidual(
                        channels, out_channels, kernel=3, stride=row.stride if i == 0 else 1,
                        expanded_channels=int(round(channels * row.expansion)), activation=nn.ReLU6,
                    )
                )
                channels = out_channels
        self.num_features = make_divisible(LAST_CHANNELS * max(1.0, width_mult), 8)
        layers.append(ConvBNAct(channels, self.num_features, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        # Table 2's "avgpool 7x7" at 224; global here, so any input size works (as torchvision).
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        init_weights(self)
        use_torchvision_keys(self, self._torchvision_names())

    def _torchvision_names(self) -> dict[nn.Module, str]:
        # torchvision: features.i.conv = [Conv2dNormActivation (expand), Conv2dNormActivation
        # (depthwise), Conv2d, BatchNorm2d] (no expand entry when t = 1).
        names: dict[nn.Module, str] = {}
        for i, layer in enumerate(self.features):
            if isinstance(layer, ConvBNAct):
                names.update(conv_bn_names(layer, f"features.{i}"))
                continue
            parts = [p for p in (layer.expand, layer.depthwise) if p is not None]
            for j, part in enumerate(parts):
                names.update(conv_bn_names(part, f"features.{i}.conv.{j}"))
            j = len(parts)
            names[layer.project.conv] = f"features.{i}.conv.{j}"
            names[layer.project.bn] = f"features.{i}.conv.{j + 1}"
        return names

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


_VARIANTS: dict[str, dict[str, float]] = {
    # name: the fixed arguments; ``mobilenet_v2`` leaves ``width_mult`` to the user.
    "mobilenet_v2": {},
    # Deviation from the paper's Table 4 "6.9M" parameters for MobileNetV2 (1.4): no
    # implementation has that many. Table 2 at 1.4 with the rounding above has 6,108,776,
    # as torchvision's mobilenet_v2(width_mult=1.4) and models.csv (582M MACs; the paper's
    # 585M within 1 %).
    "mobilenet_v2_140": {"width_mult": 1.4},
}

for _name, _fixed in _VARIANTS.items():
    register_model(_name, MobileNetV2, family="MobileNetV2", paper=PAPER, input_size=(3, 224, 224), **_fixed)
