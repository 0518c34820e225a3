"""CondenseNet: Huang, Liu, van der Maaten, Weinberger, "CondenseNet: An Efficient DenseNet using
Learned Group Convolutions", CVPR 2018, https://arxiv.org/abs/1711.09224.

What it contributes: DenseNet's 1x1 bottleneck convolutions read every earlier feature map, and
most of those connections are redundant. A *learned group convolution* (§3, Fig. 3) splits the
1x1 conv's filters into G groups and, during training, prunes for each group the input channels
with small weights ("condensation", in C - 1 stages, keeping 1/C of the inputs per group), so the
groups learn which inputs they need instead of being assigned fixed ones. After training the
network is *converted* (Fig. 3, right): an index layer gathers, for each group, the input
channels it kept - a permutation (with possible repetitions) of the concatenated features - and a
standard group convolution follows; a permute layer (channel shuffle) after it lets the 3x3 group
convolution of the next step see every group. The 3x3 convolutions are ordinary group
convolutions with G groups. §4 adds an exponentially increasing growth rate (8, 16, 32, 64, 128
on ImageNet) and, for ImageNet, five dense blocks separated by 2x2 average pooling (Table 1).

Only the converted, inference-time network is built here (the index is a buffer that a
converted checkpoint fills; until then it is the identity). CondenseNet-74 (C = G = 4): 4.8 M
parameters, 529 M FLOPs; (C = G = 8): 2.9 M, 274 M (Table 5 of the paper). Ours: 4,773,944 and
2,935,416 parameters (pytorchcv's counts), 516.6 M and 261.5 M conv + FC multiply-adds. The gap
(12.7 M in both) is the authors' FLOP counter (``measure_model`` in their ``utils.py``), which
also counts one operation per ReLU input element (11.0 M), per pooling window element (1.7 M)
and per FC bias: 516.6 + 12.7 = 529.3 M and 261.5 + 12.7 = 274.2 M, the paper's numbers.
Facts the paper leaves open follow the authors' code (ShichenLiu/CondenseNet) as ported by
pytorchcv (``condensenet74_c4_g4``, ``condensenet74_c8_g8``), marked at the line.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_positive_int
from cnnlab.models.layers import ChannelShuffle, init_weights, smallest_input
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "CondenseNet: An Efficient DenseNet using Learned Group Convolutions",
    "Huang, Liu, van der Maaten, Weinberger", 2017, "https://arxiv.org/abs/1711.09224",
)


# --- Blocks ----------------------------------------------------------------------------------


class CondensedConv1x1(nn.Module):
    """A learned group 1x1 convolution after conversion (Fig. 3, right): index layer -> BN -> ReLU
    -> 1x1 group conv (``groups`` = G) -> permute (channel shuffle with G groups).

    Each of the G groups kept ``in_channels / condense_factor`` inputs, so the index selects
    ``G * in_channels / C`` channels (all of them, reordered, when C = G). ``index`` is a buffer:
    loading a converted model writes the learned selection; a new model selects the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, condense_factor: int) -> None:
        super().__init__()
        if in_channels % condense_factor:
            raise ValueError(f"{in_channels} input channels do not condense by a factor {condense_factor}")
        selected = in_channels // condense_factor * groups
        if out_channels % groups:
            raise ValueError(f"{out_channels} output channels do not split into {groups} groups")
        # From a Python list: ``torch.arange(...) % n`` under ``torch.device("meta")`` runs a
        # torch._refs op that imports torch._dynamo (see ``layers.initialize``).
        index = [i % in_channels for i in range(selected)]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long))
        self.bn = nn.BatchNorm2d(selected)
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(selected, out_channels, 1, groups=groups, bias=False)
        self.shuffle = ChannelShuffle(groups)  # Fig. 3: the permute layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.index_select(x, 1, self.index)
        return self.shuffle(self.conv(self.act(self.bn(x))))


class DenseLayer(nn.Module):
    """A CondenseNet layer (Fig. 3): the condensed 1x1 group conv to 4k channels (DenseNet-B's
    bottleneck width, §3), BN-ReLU, a 3x3 group conv to k (the growth rate), concatenated to the
    input (dense connectivity)."""

    def __init__(
        self, in_channels: int, growth_rate: int, groups: int, condense_factor: int, bottleneck: int = 4
    ) -> None:
        super().__init__()
        width = bottleneck * growth_rate
        if growth_rate % groups:
            raise ValueError(f"growth rate {growth_rate} does not split into {groups} groups")
        self.conv1 = CondensedConv1x1(in_channels, width, groups, condense_factor)
        self.conv2 = nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, growth_rate, 3, padding=1, groups=groups, bias=False),  # §3: 3x3 group conv
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv2(self.conv1(x))), dim=1)


class CondensedLinear(nn.Module):
    """The classifier of the authors' code: the FC layer is pruned too, keeping a fixed fraction
    of the input features (``keep``, 0.5 in the code), selected by an index buffer."""

    def __init__(self, in_features: int, out_features: int, keep: float = 0.5) -> None:
        super().__init__()
        kept = int(in_features * keep)
        self.register_buffer("index", torch.arange(kept))
        self.linear = nn.Linear(kept, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.index_select(x, 1, self.index))


# --- The table ---------------------------------------------------------------------------------


class DenseBlock(NamedTuple):
    """A dense block of Table 1: ``layers`` CondenseNet layers of growth rate ``growth_rate``."""

    layers: int
    growth_rate: int


# Table 1 (ImageNet), CondenseNet-74: a 3x3/2 conv with 16 channels, then five dense blocks at
# 112, 56, 28, 14, 7 pixels, 2x2/2 average pooling between them, growth rates doubling (§4).
STEM_CHANNELS = 16
CONDENSENET_74: tuple[DenseBlock, ...] = (
    DenseBlock(layers=4, growth_rate=8),
    DenseBlock(layers=6, growth_rate=16),
    DenseBlock(layers=8, growth_rate=32),
    DenseBlock(layers=10, growth_rate=64),
    DenseBlock(layers=8, growth_rate=128),
)


# --- The model ---------------------------------------------------------------------------------


class CondenseNet(ConvNet):
    """CondenseNet-74 in converted form (Table 1). ``groups``: G; ``condense_factor``: C (the
    paper's ImageNet models use C = G = 4 or 8, Table 5).

    Layout: ``stem`` (3x3/2 conv), ``block1`` ... ``block5`` (``pool`` then layers, except in
    block1), ``norm`` (BN-ReLU before pooling, pre-activation style), global average pool,
    ``classifier`` (the condensed FC).
    """

    # The 3x3/2 conv (padding 1), then four unpadded 2x2/2 average pools.
    min_input_size = smallest_input([(3, 2, 1, False)] + [(2, 2, 0, False)] * 4)
    classifier_name = "classifier.linear"

    def __init__(
        self,
        *,
        groups: int = 4,
        condense_factor: int = 4,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        for name, value in (("groups", groups), ("condense_factor", condense_factor)):
            check_positive_int(name, value)
        self.in_channels, self.num_classes = in_channels, num_classes
        channels = STEM_CHANNELS
        # No BN/ReLU after the stem: every layer begins with its own BN-ReLU (pre-activation).
        self.stem = nn.Conv2d(in_channels, channels, 3, 2, 1, bias=False)
        for i, block in enumerate(CONDENSENET_74, start=1):
            layers: list[nn.Module] = []
            if i > 1:
                # Transition: pooling only. Authors' code: no 1x1 compression conv (§4's ImageNet
                # networks keep every feature; DenseNet-BC's 0.5 compression is not used).
                layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
            for _ in range(block.layers):
                layers.append(DenseLayer(channels, block.growth_rate, groups, condense_factor))
                channels += block.growth_rate
            self.add_module(f"block{i}", nn.Sequential(*layers))
        self.num_features = channels
        self.norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Table 1: 7x7 global average pool
        self.classifier = CondensedLinear(channels, num_classes)
        init_weights(self)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, len(CONDENSENET_74) + 1):
            x = self.get_submodule(f"block{i}")(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))


# --- Registration ------------------------------------------------------------------------------

for _name, _g in (("condensenet74_c4_g4", 4), ("condensenet74_c8_g8", 8)):
    register_model(
        _name, CondenseNet, family="CondenseNet", paper=PAPER, input_size=(3, 224, 224),
        groups=_g, condense_factor=_g,
    )
