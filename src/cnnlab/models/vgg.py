"""VGG: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015, https://arxiv.org/abs/1409.1556.

What it contributes: depth from stacks of small 3x3 convolutions (two 3x3 see what one 5x5
sees, three see a 7x7, with fewer parameters and more non-linearities), five max-pooled stages
and three FC layers. Table 1 of the paper gives configurations A to E; they are the table below.
The BN variants (``vgg11_bn`` ...) are torchvision's later addition, not in the paper.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability, lookup
from cnnlab.models.layers import LocalResponseNorm, init_weights
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "Very Deep Convolutional Networks for Large-Scale Image Recognition",
    "Simonyan, Zisserman", 2014, "https://arxiv.org/abs/1409.1556",
)


class Conv(NamedTuple):
    """A "conv<kernel>-<out_channels>" cell of Table 1 (stride 1, padding kernel // 2, ReLU)."""

    kernel: int
    out_channels: int


class _LRN(NamedTuple):
    """The LRN cell of configuration A-LRN (Krizhevsky's parameters, paper §2.1)."""


LRN = _LRN()
Layer = Conv | _LRN


def conv3(c: int) -> Conv:
    return Conv(3, c)


def conv1(c: int) -> Conv:
    return Conv(1, c)


# Table 1, one column per configuration, one inner list per stage; every stage ends in a
# 2x2/2 max-pool. Stage widths: 64, 128, 256, 512, 512.
CONFIGS: dict[str, list[list[Layer]]] = {
    "A": [[conv3(64)], [conv3(128)], [conv3(256)] * 2, [conv3(512)] * 2, [conv3(512)] * 2],
    "A-LRN": [[conv3(64), LRN], [conv3(128)], [conv3(256)] * 2, [conv3(512)] * 2, [conv3(512)] * 2],
    "B": [[conv3(64)] * 2, [conv3(128)] * 2, [conv3(256)] * 2, [conv3(512)] * 2, [conv3(512)] * 2],
    "C": [
        [conv3(64)] * 2, [conv3(128)] * 2,
        [conv3(256), conv3(256), conv1(256)],
        [conv3(512), conv3(512), conv1(512)],
        [conv3(512), conv3(512), conv1(512)],
    ],
    "D": [[conv3(64)] * 2, [conv3(128)] * 2, [conv3(256)] * 3, [conv3(512)] * 3, [conv3(512)] * 3],
    "E": [[conv3(64)] * 2, [conv3(128)] * 2, [conv3(256)] * 4, [conv3(512)] * 4, [conv3(512)] * 4],
}


class VGG(ConvNet):
    """VGG configuration ``config`` (Table 1), optionally with BN after every conv.

    ``features`` and ``classifier`` are flat ``nn.Sequential`` s laid out exactly like
    torchvision's, so ``vgg11``/``vgg13``/``vgg16``/``vgg19`` and their ``_bn`` forms load
    torchvision state dicts.
    """

    min_input_size = 32  # five 2x2/2 max-pools
    classifier_name = "classifier.6"

    def __init__(
        self,
        *,
        config: str,
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        lookup("VGG", config, CONFIGS)
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes = in_channels, num_classes
        layers: list[nn.Module] = []
        channels = in_channels
        for stage in CONFIGS[config]:
            for cell in stage:
                if isinstance(cell, _LRN):
                    layers.append(LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0))
                    continue
                # Conv keeps its bias even with BN, as in torchvision's vgg*_bn.
                layers.append(nn.Conv2d(channels, cell.out_channels, cell.kernel, padding=cell.kernel // 2))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(cell.out_channels))
                layers.append(nn.ReLU(inplace=True))
                channels = cell.out_channels
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        # Deviation: the paper's FC6 expects exactly 7x7 (224 input); like torchvision we pool
        # adaptively to 7x7 so any input >= 32 works. At 224 this is the identity.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        init_weights(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


_VARIANTS = {
    # name: (config, batch_norm)
    "vgg11": ("A", False),
    "vgg11_lrn": ("A-LRN", False),
    "vgg13": ("B", False),
    "vgg16_c": ("C", False),
    "vgg16": ("D", False),
    "vgg19": ("E", False),
    "vgg11_bn": ("A", True),
    "vgg13_bn": ("B", True),
    "vgg16_c_bn": ("C", True),
    "vgg16_bn": ("D", True),
    "vgg19_bn": ("E", True),
}

for _name, (_config, _bn) in _VARIANTS.items():
    register_model(
        _name, VGG, family="VGG", paper=PAPER, input_size=(3, 224, 224),
        config=_config, batch_norm=_bn,
    )
