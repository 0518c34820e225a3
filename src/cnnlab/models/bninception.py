"""BN-Inception: Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift", ICML 2015, https://arxiv.org/abs/1502.03167.

What it contributes: batch normalization (§3), applied to a new variant of the Inception
network (§4.2, appendix Figure 5) with which ImageNet trains 14 times faster. Against GoogLeNet
(appendix) the variant replaces every 5x5 convolution by two stacked 3x3 ("double #3x3"), has
three 28x28 modules instead of two, uses average or max pooling in the pool branch as each row
says, and has no pooling layers between modules: the stride-2 modules (3c) and (4e) downsample
with stride-2 3x3 convolutions and a stride-2 max-pool that is passed through unprojected,
and have no 1x1 branch. Figure 5 is the ``FIGURE_5`` table below.

The numbers the paper leaves open (which convolutions have a bias, BN's eps, the stem) follow
pytorchcv's ``bninception`` (osmr/imgclsmob), whose 11,295,240 parameters are the reference.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability
from cnnlab.models.layers import ConvBNAct, init_weights
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
    "Ioffe, Szegedy", 2015, "https://arxiv.org/abs/1502.03167",
)

# Deviation (reference implementation): every convolution keeps a bias although BN follows it;
# §3.2 notes the bias "can be ignored" because BN's mean subtraction cancels it. pytorchcv (and
# the Caffe model it was converted from) keep it, and its 11,295,240 parameters count it.
# BN eps is PyTorch's and pytorchcv's 1e-5; the paper does not give one.
_conv = partial(ConvBNAct, bias=True, eps=1e-5)

AVG, MAX = nn.AvgPool2d, nn.MaxPool2d
PASS_THROUGH = None  # Figure 5's "max + pass through": the pooled input, unprojected


class BNInceptionModule(nn.Module):
    """One Inception module of Figure 5.

    The arguments are Figure 5's columns: ``#1x1``, ``#3x3 reduce``, ``#3x3``,
    ``double #3x3 reduce``, ``double #3x3`` and ``Pool +proj`` (``pool`` is ``nn.AvgPool2d`` or
    ``nn.MaxPool2d``; ``pool_proj`` the 1x1 projection's width, or ``None`` for "pass
    through"). A ``stride=2`` module has no 1x1 branch (``ch1x1=0``), puts the stride on the
    last 3x3 of both 3x3 branches and on the pool, and passes the pooled input through.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch3x3dblred: int,
        ch3x3dbl: int,
        pool: type[nn.AvgPool2d] | type[nn.MaxPool2d],
        pool_proj: int | None,
        *,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if stride == 2 and (ch1x1 != 0 or pool_proj is not None):
            raise ValueError("a stride-2 module has no 1x1 branch (ch1x1=0) and passes the pool through")
        if stride == 1 and (ch1x1 < 1 or pool_proj is None or pool_proj < 1):
            raise ValueError("a stride-1 module needs a 1x1 branch and a pool projection")
        if min(in_channels, ch3x3red, ch3x3, ch3x3dblred, ch3x3dbl) < 1:
            raise ValueError("BNInceptionModule widths must be positive")
        self.branch1x1 = _conv(in_channels, ch1x1, 1) if ch1x1 else None
        self.branch3x3 = nn.Sequential(_conv(in_channels, ch3x3red, 1), _conv(ch3x3red, ch3x3, 3, stride))
        # Appendix: "The 5x5 convolutional layers are replaced by two consecutive 3x3".
        self.branch3x3dbl = nn.Sequential(
            _conv(in_channels, ch3x3dblred, 1),
            _conv(ch3x3dblred, ch3x3dbl, 3),
            _conv(ch3x3dbl, ch3x3dbl, 3, stride),
        )
        # Deviation (stride 2 only): pytorchcv/Caffe pool 3x3/2 with no padding, rounding up;
        # that matches the stride-2 convs' output only on even maps (all of them at 224). Padding
        # 1, rounding down, gives the convs' size on every map; the windows shift by one pixel.
        pool_layer = pool(kernel_size=3, stride=stride, padding=1)
        self.branch_pool = (
            pool_layer if pool_proj is None else nn.Sequential(pool_layer, _conv(in_channels, pool_proj, 1))
        )
        self.stride = stride
        self.out_channels = ch1x1 + ch3x3 + ch3x3dbl + (in_channels if pool_proj is None else pool_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)]
        if self.branch1x1 is not None:
            branches.insert(0, self.branch1x1(x))
        return torch.cat(branches, 1)


class InceptionRow(NamedTuple):
    """An "inception" row of Figure 5."""

    name: str
    stride: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch3x3dblred: int
    ch3x3dbl: int
    pool: type[nn.AvgPool2d] | type[nn.MaxPool2d]
    pool_proj: int | None


# Figure 5 from inception (3a) to (5b); the stem above and the head below are code.
# Note: Figure 5's "output size" column says 576 for (4c) and (4d) and 1024 for (4e), but its
# own branch columns add up to 608, 608 and 1056 (e.g. 4c: 160 + 160 + 160 + 128). We follow the
# branch columns, as pytorchcv and the Caffe model do; TF-slim's inception_v2 instead shrinks the
# pool projections of (4c), (4d) to 96 to reach 576 (and fewer parameters).
FIGURE_5: tuple[InceptionRow, ...] = (
    #            name stride #1x1 #3x3red #3x3 dbl_red dbl  pool +proj
    InceptionRow("3a", 1, 64, 64, 64, 64, 96, AVG, 32),
    InceptionRow("3b", 1, 64, 64, 96, 64, 96, AVG, 64),
    InceptionRow("3c", 2, 0, 128, 160, 64, 96, MAX, PASS_THROUGH),
    InceptionRow("4a", 1, 224, 64, 96, 96, 128, AVG, 128),
    InceptionRow("4b", 1, 192, 96, 128, 96, 128, AVG, 128),
    InceptionRow("4c", 1, 160, 128, 160, 128, 160, AVG, 128),
    InceptionRow("4d", 1, 96, 128, 192, 160, 192, AVG, 128),
    InceptionRow("4e", 2, 0, 128, 192, 192, 256, MAX, PASS_THROUGH),
    InceptionRow("5a", 1, 352, 192, 320, 160, 224, AVG, 128),
    InceptionRow("5b", 1, 352, 192, 320, 192, 224, MAX, 128),
)


class BNInception(ConvNet):
    """The Inception variant of the BN paper (Figure 5) with BN after every convolution.

    ``features`` holds the stem (``conv1``, ``pool1``, ``conv2_reduce``, ``conv2``, ``pool2``)
    and ``inception3a`` ... ``inception5b``; the head is a global average pool and one linear
    layer (§4.2: "other than the top softmax layer, has no fully-connected layers").
    """

    min_input_size = 7  # below this pool2 (3x3/2, ceil mode) has no output
    classifier_name = "fc"

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes = in_channels, num_classes
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        # Deviation: Figure 5's "convolution*" is, per the appendix, a separable convolution
        # with depth multiplier 8; pytorchcv (the reference count) uses a plain 7x7/2 conv.
        layers["conv1"] = _conv(in_channels, 64, 7, stride=2, padding=3)
        # Ceil-mode pools as in pytorchcv and the Caffe GoogLeNet: 112 -> 56 -> 28 at 224.
        layers["pool1"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        layers["conv2_reduce"] = _conv(64, 64, 1)  # Figure 5 "convolution 3x3/1": #3x3 reduce 64
        layers["conv2"] = _conv(64, 192, 3)  # ... #3x3 192
        layers["pool2"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = 192
        for row in FIGURE_5:
            block = BNInceptionModule(channels, *row[2:], stride=row.stride)
            layers[f"inception{row.name}"] = block
            channels = block.out_channels
        self.features = nn.Sequential(layers)
        self.num_features = channels
        # Deviation: Figure 5's "avg pool 7x7/1" is an adaptive average pool to 1x1, the same at
        # 224 and usable at other input sizes.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        # §4.2.1 "Remove Dropout": off by default, a knob for those who want it back.
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


register_model("bninception", BNInception, family="BN-Inception", paper=PAPER, input_size=(3, 224, 224))
