"""Xception: Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions",
CVPR 2017, https://arxiv.org/abs/1610.02357.

What it contributes: the "extreme Inception" hypothesis, that cross-channel and spatial
correlations can be mapped entirely separately (§1.1-1.2), so every Inception module becomes a
depthwise separable convolution: a depthwise k x k conv, then a pointwise 1x1 conv, with no
non-linearity in between (§1.2; §4.7 measures that an intermediate ReLU hurts). The network
(§3, Figure 5) is a linear stack of 36 such convolutions in 14 modules, all but the first and
last with residual connections: an entry flow that downsamples, a middle flow repeated eight
times, and an exit flow. Every convolution is followed by batch normalisation (Figure 5 caption);
separable convolutions use depth multiplier 1. Table 3 gives 22,855,952 parameters.

The flows are the table below, one typed row per Figure 5 box. Facts the figure leaves open
(padding, BN epsilon) follow the author's own Keras implementation
(``keras.applications.xception``); they are marked at the line.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability
from cnnlab.models.layers import ConvBNAct, SeparableConv2d, init_weights
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "Xception: Deep Learning with Depthwise Separable Convolutions",
    "Chollet", 2016, "https://arxiv.org/abs/1610.02357",
)

# Not given in the paper: Keras's BatchNormalization default, which the author's reference
# implementation uses. timm's and pytorchcv's ports use PyTorch's default 1e-5 instead.
BN_EPS = 1e-3


# --- Blocks ----------------------------------------------------------------------------------


class XceptionBlock(nn.Module):
    """One Figure 5 module: [ReLU] SepConv 3x3 -> BN, repeated, an optional 3x3/2 max-pool, plus
    a shortcut (identity, or 1x1/stride conv -> BN where the shape changes).

    ``grow_first``: the first separable conv goes to ``out_channels`` (entry and middle flow);
    otherwise the last one does (the exit flow's 728 -> 728 -> 1024).
    ``starts_with_relu=False`` for the first entry-flow module, which follows the stem's ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        separable_convs: int,
        stride: int,
        starts_with_relu: bool,
        grow_first: bool,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(separable_convs):
            last = i == separable_convs - 1
            out = out_channels if (grow_first or last) else in_channels
            if i > 0 or starts_with_relu:
                # The first ReLU must not work in place: its input is also the shortcut's.
                layers.append(nn.ReLU(inplace=i > 0))
            layers += [SeparableConv2d(channels, out, 3), nn.BatchNorm2d(out, eps=BN_EPS)]
            channels = out
        if stride != 1:
            # Figure 5: "MaxPooling 3x3, stride=2x2". Padding 1 gives Keras's padding="same"
            # output size, ceil(n / 2).
            layers.append(nn.MaxPool2d(kernel_size=3, stride=stride, padding=1))
        self.residual = nn.Sequential(*layers)
        if in_channels == out_channels and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            # Figure 5: "Conv 1x1, stride=2x2" (+ BN) on the shortcut.
            self.shortcut = ConvBNAct(
                in_channels, out_channels, 1, stride, 0, activation=None, eps=BN_EPS
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class SeparableConvBNReLU(nn.Sequential):
    """Exit flow's "SeparableConv 3x3 -> (BN) -> ReLU", no shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            SeparableConv2d(in_channels, out_channels, 3),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.ReLU(inplace=True),
        )


# --- The table ---------------------------------------------------------------------------------


class Block(NamedTuple):
    """A module of Figure 5 with a shortcut, repeated ``repeats`` times."""

    out_channels: int
    separable_convs: int
    stride: int
    starts_with_relu: bool
    grow_first: bool = True
    repeats: int = 1


class SepConv(NamedTuple):
    """A separable convolution of the exit flow without a shortcut, then BN and ReLU."""

    out_channels: int


Row = Block | SepConv

# The stem (Figure 5, entry flow): conv 32 3x3/2 -> ReLU, conv 64 3x3 -> ReLU, both unpadded as
# in Keras (299 -> 149 -> 147; the figure gives no padding), each followed by BN.
STEM: tuple[tuple[int, int], ...] = ((32, 2), (64, 1))  # (out_channels, stride), kernel 3

# Figure 5, one entry per flow, one row per box.
FLOWS: dict[str, tuple[Row, ...]] = {
    #                  out  sepconvs stride starts_with_relu
    "entry_flow": (
        Block(128, 2, 2, starts_with_relu=False),  # 147 -> 74
        Block(256, 2, 2, starts_with_relu=True),  # -> 37
        Block(728, 2, 2, starts_with_relu=True),  # -> 19
    ),
    "middle_flow": (
        Block(728, 3, 1, starts_with_relu=True, repeats=8),  # "repeated 8 times", identity shortcut
    ),
    "exit_flow": (
        Block(1024, 2, 2, starts_with_relu=True, grow_first=False),  # 728 -> 728 -> 1024, 19 -> 10
        SepConv(1536),
        SepConv(2048),
    ),
}


# --- The model ---------------------------------------------------------------------------------


class Xception(ConvNet):
    """Xception (Figure 5): stem, ``entry_flow``, ``middle_flow`` (8 blocks), ``exit_flow``,
    global average pooling, dropout, logistic regression (``fc``).

    ``dropout``: §4.3 puts a dropout layer of rate 0.5 before the logistic regression layer in
    the ImageNet experiments. Figure 5's "optional fully-connected layer(s)" are left out:
    Table 3's 22,855,952 parameters are those of the network without them.
    """

    # Two unpadded 3x3 convs (7 -> 3 -> 1); every later layer is padded and keeps >= 1 pixel.
    # (Keras's Xception asks for at least 71, a convention, not a constraint of the layers.)
    min_input_size = 7
    classifier_name = "fc"

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes = in_channels, num_classes
        stem: list[nn.Module] = []
        channels = in_channels
        for out, stride in STEM:
            stem.append(ConvBNAct(channels, out, 3, stride, 0, eps=BN_EPS))
            channels = out
        self.stem = nn.Sequential(*stem)
        for flow, rows in FLOWS.items():
            modules: list[nn.Module] = []
            for row in rows:
                if isinstance(row, SepConv):
                    modules.append(SeparableConvBNReLU(channels, row.out_channels))
                    channels = row.out_channels
                    continue
                if row.separable_convs < 1 or row.repeats < 1 or row.stride not in (1, 2):
                    raise ValueError(f"invalid Xception row {row}")
                for _ in range(row.repeats):
                    modules.append(
                        XceptionBlock(
                            channels, row.out_channels, row.separable_convs, row.stride,
                            row.starts_with_relu, row.grow_first,
                        )
                    )
                    channels = row.out_channels
            self.add_module(flow, nn.Sequential(*modules))
        self.num_features = channels
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.exit_flow(self.middle_flow(self.entry_flow(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.global_pool(x), 1)))


# --- Registration ------------------------------------------------------------------------------

register_model("xception", Xception, family="Xception", paper=PAPER, input_size=(3, 299, 299))
