"""MnasNet: Tan, Chen, Pang, Vasudevan, Sandler, Howard & Le, "MnasNet: Platform-Aware Neural
Architecture Search for Mobile", CVPR 2019, https://arxiv.org/abs/1807.11626.

What it contributes: a multi-objective architecture search whose reward is accuracy times
(latency / target)^w, latency measured on a real phone (§3), over a factorized hierarchical
space in which every stage picks its own block, kernel, expansion, SE and depth (§4, Fig. 4)
instead of repeating one cell. The result mixes 3x3 and 5x5 kernels and MBConv3 / MBConv6
(MobileNetV2's inverted residual with expansion 3 or 6) blocks.

Two networks, one class, a ``Stage`` table each:

* ``mnasnet_a1``: MnasNet-A1 of Figure 7(a), squeeze-and-excitation in three stages (3.9M
  parameters, 312M multiply-adds, Table 1).
* ``mnasnet0_5`` ... ``mnasnet1_3``: MnasNet-B1, the search result without SE of the authors'
  TF code (``mnasnet_b1``), at depth multipliers 0.5, 0.75, 1.0, 1.3: torchvision's
  ``mnasnet*`` (same state_dict keys and outputs).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_positive, check_probability, lookup
from cnnlab.models.layers import ConvBNAct, InvertedResidual, init_weights, make_divisible
from cnnlab.models.keys import use_torchvision_keys
from cnnlab.registry import Paper, register_model

__all__ = ["A1", "B1", "MnasNet", "MnasNetConfig", "Stage"]

PAPER = Paper(
    "MnasNet: Platform-Aware Neural Architecture Search for Mobile",
    "Tan, Chen, Pang, Vasudevan, Sandler, Howard, Le", 2019, "https://arxiv.org/abs/1807.11626",
)


class Stage(NamedTuple):
    """A block of Figure 7: ``repeats`` x "MBConv<expansion> (k<kernel>x<kernel>)[, SE]";
    "SepConv" is ``expansion=1`` (depthwise then linear pointwise, no expansion conv). The
    first block has ``stride`` (read off the resolution change), the rest stride 1."""

    expansion: int
    kernel: int
    out_channels: int
    repeats: int
    stride: int
    use_se: bool = False


class MnasNetConfig(NamedTuple):
    """Stem conv 3x3 / 2, the stages, a 1x1 conv before pooling, then the classifier."""

    stem_channels: int
    stages: tuple[Stage, ...]
    head_channels: int


# Figure 7(a), MnasNet-A1 (224x224x3 input).
A1 = MnasNetConfig(
    stem_channels=32,  # Conv3x3, 112x112x32
    stages=(
        Stage(expansion=1, kernel=3, out_channels=16, repeats=1, stride=1),  # SepConv (k3x3)
        Stage(expansion=6, kernel=3, out_channels=24, repeats=2, stride=2),
        Stage(expansion=3, kernel=5, out_channels=40, repeats=3, stride=2, use_se=True),
        Stage(expansion=6, kernel=3, out_channels=80, repeats=4, stride=2),
        Stage(expansion=6, kernel=3, out_channels=112, repeats=2, stride=1, use_se=True),
        Stage(expansion=6, kernel=5, out_channels=160, repeats=3, stride=2, use_se=True),
        Stage(expansion=6, kernel=3, out_channels=320, repeats=1, stride=1),
    ),
    # The 1x1 conv to 1280 before pooling is the authors' TF code's (and torchvision's, and
    # pytorchcv's); the paper's 3.9M parameters include it.
    head_channels=1280,
)

# MnasNet-B1: the authors' TF code (mnasnet_b1), torchvision's MNASNet. No SE.
B1 = MnasNetConfig(
    stem_channels=32,
    stages=(
        Stage(expansion=1, kernel=3, out_channels=16, repeats=1, stride=1),  # SepConv (k3x3)
        Stage(expansion=3, kernel=3, out_channels=24, repeats=3, stride=2),
        Stage(expansion=3, kernel=5, out_channels=40, repeats=3, stride=2),
        Stage(expansion=6, kernel=5, out_channels=80, repeats=3, stride=2),
        Stage(expansion=6, kernel=3, out_channels=96, repeats=2, stride=1),
        Stage(expansion=6, kernel=5, out_channels=192, repeats=4, stride=2),
        Stage(expansion=6, kernel=3, out_channels=320, repeats=1, stride=1),
    ),
    head_channels=1280,
)

CONFIGS = {"a1": A1, "b1": B1}


class MnasNet(ConvNet):
    """MnasNet-A1 or -B1 (``config``) at depth multiplier ``width_mult``.

    Widths up to the last stage are ``make_divisible(c * width_mult, 8)`` (torchvision's
    ``_get_depths``); the 1280-channel 1x1 conv is not scaled. SE squeezes the expanded
    features to a quarter of the block's *input* channels with ReLU and a sigmoid gate
    (``se_ratio=0.25`` of ``input_filters`` in the authors' code). ``layers`` holds the stem,
    one ``nn.Sequential`` per stage and the head conv; ``classifier`` is dropout then the
    linear layer. BN momentum defaults to torchvision's 1 - 0.9997.
    """

    classifier_name = "classifier.1"
    # torchvision's MNASNet reads a version-1 checkpoint as its old stem layout; our state
    # dict has the version-2 layout, so say so for torchvision to load it unchanged.
    _version = 2

    def __init__(
        self,
        *,
        config: str,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.2,
        bn_eps: float = 1e-5,
        bn_momentum: float = 1 - 0.9997,
    ) -> None:
        super().__init__()
        lookup("MnasNet", config, CONFIGS)
        check_positive("width_mult", width_mult)
        check_probability("dropout", dropout)
        table = CONFIGS[config]
        self.in_channels, self.num_classes = in_channels, num_classes
        norm = {"norm_layer": partial(nn.BatchNorm2d, momentum=bn_momentum), "eps": bn_eps}
        channels = make_divisible(table.stem_channels * width_mult, 8)
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, 3, 2, **norm)]
        for stage in table.stages:
            out_channels = make_divisible(stage.out_channels * width_mult, 8)
            blocks = []
            for i in range(stage.repeats):
                blocks.append(
                    InvertedResidual(
                        channels, out_channels, kernel=stage.kernel, stride=stage.stride if i == 0 else 1,
                        expanded_channels=channels * stage.expansion, activation=nn.ReLU,
                        se_channels=max(1, channels // 4) if stage.use_se else None, **norm,
                    )
                )
                channels = out_channels
            layers.append(nn.Sequential(*blocks))
        layers.append(ConvBNAct(channels, table.head_channels, 1, **norm))
        self.layers = nn.Sequential(*layers)
        self.num_features = table.head_channels
        # Figure 7's "Pooling" is global: any input size works.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout, inplace=True), nn.Linear(self.num_features, num_classes)
        )
        init_weights(self)
        if not any(stage.use_se for stage in table.stages):  # B1, which torchvision has
            use_torchvision_keys(self, self._torchvision_names())

    def _torchvision_names(self) -> dict[nn.Module, str]:
        # torchvision's ``layers`` is flat up to the stages: conv, BN, ReLU of the stem (0-2),
        # the SepConv's depthwise conv, BN, ReLU (3-5) and projection conv, BN (6-7); then one
        # entry per stage (8-13), each block an 8-entry ``layers`` [conv, BN, ReLU] x 2 +
        # [conv, BN]; then the head conv, BN, ReLU (14-16).
        names: dict[nn.Module, str] = {}

        def number(parts: list[ConvBNAct], path: str, index: int) -> int:
            for part in parts:
                names[part.conv], names[part.bn] = f"{path}.{index}", f"{path}.{index + 1}"
                index += 2 if part.act is None else 3
            return index

        stem, sepconv, *stages, head = self.layers
        sepconv = sepconv[0]
        index = number([stem, sepconv.depthwise, sepconv.project], "layers", 0)
        for stage in stages:
            for j, block in enumerate(stage):
                number([block.expand, block.depthwise, block.project], f"layers.{index}.{j}.layers", 0)
            index += 1
        number([head], "layers", index)
        return names

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


_VARIANTS: dict[str, dict[str, object]] = {
    # name: the fixed arguments; ``mnasnet_a1`` leaves ``width_mult`` to the user, torchvision's
    # names carry their depth multiplier.
    "mnasnet_a1": {"config": "a1"},
    "mnasnet0_5": {"config": "b1", "width_mult": 0.5},
    "mnasnet0_75": {"config": "b1", "width_mult": 0.75},
    "mnasnet1_0": {"config": "b1", "width_mult": 1.0},
    "mnasnet1_3": {"config": "b1", "width_mult": 1.3},
}

for _name, _fixed in _VARIANTS.items():
    register_model(_name, MnasNet, family="MnasNet", paper=PAPER, input_size=(3, 224, 224), **_fixed)
