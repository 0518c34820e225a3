"""MobileNetV3: Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le & Adam,
"Searching for MobileNetV3", ICCV 2019, https://arxiv.org/abs/1905.02244.

What it contributes: networks found by platform-aware NAS (MnasNet's search, §4) and then
tuned by hand (§5): MobileNetV2's inverted residual ("bneck") with a squeeze-and-excite on
the expanded features whose bottleneck is fixed at 1/4 of the expansion and whose gate is a
hard sigmoid (§5.3), the h-swish non-linearity x * ReLU6(x + 3) / 6 (§5.2) used only in the
deeper half where it is cheap, 5x5 depthwise kernels in places, a 16-channel stem, and a
redesigned cheap tail: the last 1x1 conv runs after global pooling (§5.1, Fig. 5). Table 1
(Large) and Table 2 (Small) are the ``TABLE_1`` and ``TABLE_2`` rows below.

``mobilenet_v3_large`` and ``mobilenet_v3_small`` are torchvision's models of those names (same
state_dict keys and outputs); BN uses eps 0.001 and momentum 0.01 as there and in the
authors' TF code.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_positive, check_probability, lookup
from cnnlab.models.layers import ConvBNAct, InvertedResidual, LayerFactory, init_weights, make_divisible
from cnnlab.models.keys import conv_bn_names, use_torchvision_keys
from cnnlab.registry import Paper, register_model

__all__ = ["Bneck", "MobileNetV3", "MobileNetV3Config", "TABLE_1", "TABLE_2"]

PAPER = Paper(
    "Searching for MobileNetV3",
    "Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam",
    2019, "https://arxiv.org/abs/1905.02244",
)

# The "NL" column: RE = ReLU, HS = h-swish.
RE: LayerFactory = nn.ReLU
HS: LayerFactory = nn.Hardswish


class Bneck(NamedTuple):
    """A "bneck" row of Tables 1-2: one inverted residual."""

    kernel: int  # "bneck, 3x3" / "5x5": the depthwise kernel
    expanded_channels: int  # "exp size"
    out_channels: int  # "#out"
    use_se: bool  # "SE"
    activation: LayerFactory  # "NL"
    stride: int  # "s"


class MobileNetV3Config(NamedTuple):
    """One table: stem conv, the bneck rows, the last 1x1 conv (before pooling) and the 1x1
    "NBN" conv after pooling (a linear layer on the pooled vector)."""

    stem_channels: int
    blocks: tuple[Bneck, ...]
    last_conv_channels: int
    head_channels: int


# Table 1, MobileNetV3-Large.
TABLE_1 = MobileNetV3Config(
    stem_channels=16,  # conv2d 3x3, 16, HS, stride 2
    blocks=(
        Bneck(kernel=3, expanded_channels=16, out_channels=16, use_se=False, activation=RE, stride=1),
        Bneck(kernel=3, expanded_channels=64, out_channels=24, use_se=False, activation=RE, stride=2),
        Bneck(kernel=3, expanded_channels=72, out_channels=24, use_se=False, activation=RE, stride=1),
        Bneck(kernel=5, expanded_channels=72, out_channels=40, use_se=True, activation=RE, stride=2),
        Bneck(kernel=5, expanded_channels=120, out_channels=40, use_se=True, activation=RE, stride=1),
        Bneck(kernel=5, expanded_channels=120, out_channels=40, use_se=True, activation=RE, stride=1),
        Bneck(kernel=3, expanded_channels=240, out_channels=80, use_se=False, activation=HS, stride=2),
        Bneck(kernel=3, expanded_channels=200, out_channels=80, use_se=False, activation=HS, stride=1),
        Bneck(kernel=3, expanded_channels=184, out_channels=80, use_se=False, activation=HS, stride=1),
        Bneck(kernel=3, expanded_channels=184, out_channels=80, use_se=False, activation=HS, stride=1),
        Bneck(kernel=3, expanded_channels=480, out_channels=112, use_se=True, activation=HS, stride=1),
        Bneck(kernel=3, expanded_channels=672, out_channels=112, use_se=True, activation=HS, stride=1),
        Bneck(kernel=5, expanded_channels=672, out_channels=160, use_se=True, activation=HS, stride=2),
        Bneck(kernel=5, expanded_channels=960, out_channels=160, use_se=True, activation=HS, stride=1),
        Bneck(kernel=5, expanded_channels=960, out_channels=160, use_se=True, activation=HS, stride=1),
    ),
    last_conv_channels=960,  # conv2d 1x1, 960, HS
    head_channels=1280,  # pool 7x7, then conv2d 1x1 NBN, 1280, HS
)

# Table 2, MobileNetV3-Small.
TABLE_2 = MobileNetV3Config(
    stem_channels=16,
    blocks=(
        Bneck(kernel=3, expanded_channels=16, out_channels=16, use_se=True, activation=RE, stride=2),
        Bneck(kernel=3, expanded_channels=72, out_channels=24, use_se=False, activation=RE, stride=2),
        Bneck(kernel=3, expanded_channels=88, out_channels=24, use_se=False, activation=RE, stride=1),
        Bneck(kernel=5, expanded_channels=96, out_channels=40, use_se=True, activation=HS, stride=2),
        Bneck(kernel=5, expanded_channels=240, out_channels=40, use_se=True, activation=HS, stride=1),
        Bneck(kernel=5, expanded_channels=240, out_channels=40, use_se=True, activation=HS, stride=1),
        Bneck(kernel=5, expanded_channels=120, out_channels=48, use_se=True, activation=HS, stride=1),
        Bneck(kernel=5, expanded_channels=144, out_channels=48, use_se=True, activation=HS, stride=1),
        Bneck(kernel=5, expanded_channels=288, out_channels=96, use_se=True, activation=HS, stride=2),
        Bneck(kernel=5, expanded_channels=576, out_channels=96, use_se=True, activation=HS, stride=1),
        Bneck(kernel=5, expanded_channels=576, out_channels=96, use_se=True, activation=HS, stride=1),
    ),
    # Deviation: Table 2 marks this conv2d 1x1, 576 with SE; the authors' TF code,
    # torchvision and timm have none there, so we leave it out (an SE of 144 channels would
    # make 2,709,464 parameters instead of torchvision's and models.csv's 2,542,856).
    last_conv_channels=576,
    head_channels=1024,
)

CONFIGS = {"large": TABLE_1, "small": TABLE_2}


class MobileNetV3(ConvNet):
    """MobileNetV3-Large (``config="large"``, Table 1) or -Small (``"small"``, Table 2).

    ``width_mult`` scales every width to ``make_divisible(c * width_mult, 8)``, the head's 1280 /
    1024 included (the authors' code and torchvision); the last 1x1 conv stays 6x the last
    bneck's output (960 = 6 x 160, 576 = 6 x 96). SE squeezes the expansion to
    ``make_divisible(exp / 4, 8)`` (§5.3: "1/4 of the number of channels in expansion layer";
    rounding as in the authors' code). The "NBN" 1x1 convs after pooling are linear layers
    (the same weights on a 1x1 input), laid out as torchvision's ``classifier``.
    """

    classifier_name = "classifier.3"

    def __init__(
        self,
        *,
        config: str,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.2,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        lookup("MobileNetV3", config, CONFIGS)
        check_positive("width_mult", width_mult)
        check_probability("dropout", dropout)
        table = CONFIGS[config]
        self.in_channels, self.num_classes = in_channels, num_classes
        norm = {"norm_layer": partial(nn.BatchNorm2d, momentum=bn_momentum), "eps": bn_eps}

        def scaled(c: int) -> int:
            return make_divisible(c * width_mult, 8)

        channels = scaled(table.stem_channels)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 2, activation=HS, **norm)]
        for row in table.blocks:
            expanded = scaled(row.expanded_channels)
            # Where "exp size" equals the input (the first rows) there is no expansion conv,
            # as in the authors' code: InvertedResidual omits it.
            layers.append(
                InvertedResidual(
                    channels, scaled(row.out_channels), kernel=row.kernel, stride=row.stride,
                    expanded_channels=expanded, activation=row.activation,
                    se_channels=make_divisible(expanded // 4, 8) if row.use_se else None,
                    se_gate=nn.Hardsigmoid, **norm,
                )
            )
            channels = scaled(row.out_channels)
        last_conv = channels * (table.last_conv_channels // table.blocks[-1].out_channels)
        layers.append(ConvBNAct(channels, last_conv, 1, activation=HS, **norm))
        self.features = nn.Sequential(*layers)
        self.num_features = last_conv
        # The tables' "pool, 7x7" at 224; global here, so any input size works (as torchvision).
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        head = scaled(table.head_channels)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, head), nn.Hardswish(inplace=True), nn.Dropout(dropout, inplace=True),
            nn.Linear(head, num_classes),
        )
        init_weights(self)
        use_torchvision_keys(self, self._torchvision_names())

    def _torchvision_names(self) -> dict[nn.Module, str]:
        # torchvision: features.i.block = [Conv2dNormActivation (expand, absent when exp size
        # equals the input), Conv2dNormActivation (depthwise), SqueezeExcitation (when SE),
        # Conv2dNormActivation (projection)].
        names: dict[nn.Module, str] = {}
        for i, layer in enumerate(self.features):
            if isinstance(layer, ConvBNAct):
                names.update(conv_bn_names(layer, f"features.{i}"))
                continue
            parts = [p for p in (layer.expand, layer.depthwise, layer.se, layer.project) if p is not None]
            for j, part in enumerate(parts):
                if isinstance(part, ConvBNAct):
                    names.update(conv_bn_names(part, f"features.{i}.block.{j}"))
                else:  # SqueezeExcitation: fc1 / fc2 inside, as in torchvision's
                    names[part.fc1] = f"features.{i}.block.{j}.fc1"
                    names[part.fc2] = f"features.{i}.block.{j}.fc2"
        return names

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


# Conv + linear MACs at 224: Large 216,589,760 and Small 56,510,400, within 0.2 % and 0.9 % of
# models.csv's 217M / 57M.
for _name, _config in {"mobilenet_v3_large": "large", "mobilenet_v3_small": "small"}.items():
    register_model(
        _name, MobileNetV3, family="MobileNetV3", paper=PAPER, input_size=(3, 224, 224), config=_config,
    )
