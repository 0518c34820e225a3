"""SqueezeNext: Gholami, Kwon, Wu, Tai, Yue, Jin, Zhao, Keutzer, "SqueezeNext: Hardware-Aware
Neural Network Design", CVPR Workshops 2018, https://arxiv.org/abs/1803.10615.

What it contributes: SqueezeNet's ideas pushed further and checked against a hardware
simulator. The SqueezeNext block (Figure 1) squeezes twice with 1x1 convolutions
(to 1/2, then 1/4 of the input width), replaces the 3x3 filter by a separable pair 1x3 and 3x1
(low-rank filters), expands back with a 1x1 and adds a ResNet-style shortcut, so
the block has far fewer parameters than a ResNet bottleneck. The network is a 7x7
stem conv and max-pool, four stages of blocks (widths 32, 64, 128, 256), a 1x1 conv to 128
channels, global pooling and a fully connected layer. 1.0-SqNxt-23 has blocks [6, 6, 8, 1];
the hardware-tuned 1.0-SqNxt-23v5 (found with the simulator) moves blocks out of the early, poorly
utilised stages: [2, 4, 14, 1]. "1.5-" / "2.0-" scale every width.

Facts the paper leaves open (the widths inside the first block of a stage, the order of the 1x3
and 3x1 filters, the stem's padding) follow the authors' Caffe release
(github.com/amirgholami/SqueezeNext, ``1.0-SqNxt-23/train_val.prototxt``). Parameter counts
follow pytorchcv's ``sqnxt23_*`` port (1.0-SqNxt-23: 724,056), which adds biases the authors'
model does not have; that and the other deviations are marked at the line.

MACs: 275.9M for 1.0-SqNxt-23 at 224x224, 2.2 % below the paper's 282M. The authors' model sees
55x55 maps after the stem (227 crop, unpadded 7x7/2 conv, ceil-mode pool), and so does ours at
224 with a 1-pixel stem padding; the paper's 282M is what 56x56 maps give (a "same"-padded stem:
281.9M). Our count is the authors' network; the paper's figure counts slightly larger maps.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_positive
from cnnlab.models.layers import ConvBNAct, init_weights, smallest_input
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "SqueezeNext: Hardware-Aware Neural Network Design",
    "Gholami, Kwon, Wu, Tai, Yue, Jin, Zhao, Keutzer", 2018, "https://arxiv.org/abs/1803.10615",
)


# --- Blocks ----------------------------------------------------------------------------------


def _conv(
    in_channels: int, out_channels: int, kernel: int | tuple[int, int], stride: int = 1, padding: int | None = None
) -> ConvBNAct:
    # Conv -> BN -> ReLU everywhere (Figure 1). Deviation: the convolutions keep a bias next
    # to BN as in pytorchcv, whose 724,056 parameters are the reference; the authors' Caffe
    # convolutions have none (bias_term: false): 5,776 parameters; with the FC bias below the
    # authors' model has 6,776 fewer, 717,280 (both round to the paper's "0.72M").
    return ConvBNAct(in_channels, out_channels, kernel, stride, padding, bias=True)


class SqnxtBlock(nn.Module):
    """The SqueezeNext block (Figure 1): 1x1 squeeze, 1x1 squeeze, 3x1 and 1x3, 1x1 expand,
    each followed by BN and ReLU, plus a shortcut; ReLU after the addition.

    A block that keeps its width C squeezes in two stages (Figure 1): C/2, C/4, C/2, C/2, C. The
    paper leaves the other blocks open; we follow the authors' code: a stage's first block
    (stride 2) does not squeeze at the first 1x1 (C, C/2, C, C) and the block that narrows the
    stem's 64 channels to stage 1's 32 squeezes by 4 (C/4, C/8, C/4, C/4). Both put a 1x1 conv
    (stride ``stride``, BN, ReLU) on the shortcut. In the authors' code the separable pair
    alternates from block to block: 3x1 then 1x3 in the 1st, 3rd, ... block of the network,
    1x3 then 3x1 in the 2nd, 4th, ... (``vertical_first``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, vertical_first: bool = True) -> None:
        super().__init__()
        if stride == 2:
            reduction, self.projection = 1, True
        elif in_channels > out_channels:
            reduction, self.projection = 4, True
        else:
            reduction, self.projection = 2, in_channels != out_channels
        squeeze1 = in_channels // reduction
        squeeze2 = in_channels // (2 * reduction)
        self.conv1 = _conv(in_channels, squeeze1, 1, stride)  # first 1x1 squeeze (and the stride)
        self.conv2 = _conv(squeeze1, squeeze2, 1)  # second 1x1 squeeze
        first, second = ((3, 1), (1, 3)) if vertical_first else ((1, 3), (3, 1))
        self.conv3 = _conv(squeeze2, squeeze1, first)  # the 3x3 separated into 3x1 and 1x3 ...
        self.conv4 = _conv(squeeze1, squeeze1, second)  # ... low-rank filters
        self.conv5 = _conv(squeeze1, out_channels, 1)  # 1x1 expansion to the block's width
        self.shortcut = _conv(in_channels, out_channels, 1, stride) if self.projection else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(x)))))
        return self.act(out + self.shortcut(x))


# --- The model -------------------------------------------------------------------------------


class Stage(NamedTuple):
    """One stage of the network: ``blocks`` SqueezeNext blocks of width ``out_channels``; every
    stage but the first starts with a stride-2 block."""

    out_channels: int
    blocks: int


STEM_CHANNELS = 64  # 7x7 conv, 64 filters, stride 2, then 3x3/2 max-pool
FINAL_CHANNELS = 128  # 1x1 conv to 128 before the pooling and the FC layer

# The stage depths of the two networks. Both networks have 21 blocks; with the first conv and the FC
# layer that is the "23" of the name.
CONFIGS: dict[str, tuple[Stage, ...]] = {
    "23": (Stage(32, 6), Stage(64, 6), Stage(128, 8), Stage(256, 1)),
    "23v5": (Stage(32, 2), Stage(64, 4), Stage(128, 14), Stage(256, 1)),
}


class SqueezeNext(ConvNet):
    """``width_mult``-SqNxt-``version``: ``version`` "23" or "23v5", any ``width_mult`` (the
    paper's 1.0, 1.5 and 2.0 are registered); widths are ``int(width * width_mult)`` as in
    pytorchcv."""

    def __init__(
        self,
        *,
        version: str = "23",
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if version not in CONFIGS:
            raise ValueError(f"unknown SqueezeNext version {version!r}; choose one of {', '.join(CONFIGS)}")
        check_positive("width_mult", width_mult)
        self.in_channels, self.num_classes = in_channels, num_classes

        def scaled(c: int) -> int:
            width = int(c * width_mult)
            if width < 8:
                raise ValueError(f"width_mult={width_mult} makes a {c}-channel layer {width} wide (need >= 8)")
            return width

        stem = scaled(STEM_CHANNELS)
        # Not in the paper: the authors' stem conv is unpadded on 227x227 crops (111 -> max-pool
        # 55). Padding 1 at 224 gives the same 55x55 maps (110 -> 55), as pytorchcv does.
        self.stem = nn.Sequential(
            _conv(in_channels, stem, 7, 2, padding=1),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        )
        windows = [(7, 2, 1, False), (3, 2, 0, True)]
        stages: list[nn.Module] = []
        channels, block_index = stem, 0
        for i, stage in enumerate(CONFIGS[version]):
            blocks = []
            width = scaled(stage.out_channels)
            for j in range(stage.blocks):
                stride = 2 if j == 0 and i > 0 else 1
                blocks.append(SqnxtBlock(channels, width, stride, vertical_first=block_index % 2 == 0))
                block_index += 1
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final_conv = _conv(channels, scaled(FINAL_CHANNELS), 1)
        self.num_features = scaled(FINAL_CHANNELS)
        # Deviation: the authors pool with a fixed 7x7 window (224 inputs only); adaptive pooling
        # is the same at 224 and lets any input >= min_input_size through.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # Deviation: the authors' fc1000 has no bias (bias_term: false); pytorchcv's, counted in
        # the reference 724,056, has one.
        self.fc = nn.Linear(self.num_features, num_classes)
        self.min_input_size = smallest_input(windows)  # 1x1 stride-2 convs never empty a map
        init_weights(self)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))


_VARIANTS = {
    # name: (version, width_mult); pytorchcv's names ("w3d2" = width 3/2)
    "sqnxt23_w1": ("23", 1.0),
    "sqnxt23_w3d2": ("23", 1.5),
    "sqnxt23_w2": ("23", 2.0),
    "sqnxt23v5_w1": ("23v5", 1.0),
    "sqnxt23v5_w3d2": ("23v5", 1.5),
    "sqnxt23v5_w2": ("23v5", 2.0),
}

for _name, (_version, _width) in _VARIANTS.items():
    register_model(
        _name, SqueezeNext, family="SqueezeNext", paper=PAPER, input_size=(3, 224, 224),
        version=_version, width_mult=_width,
    )
