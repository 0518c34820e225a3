"""Inception-v4: Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and the
Impact of Residual Connections on Learning", AAAI 2017, https://arxiv.org/abs/1602.07261.

What it contributes: a "streamlined", uniform Inception network (§3.1) without the legacy
choices of Inception-v3: one stem (Figure 3), then three grids of identical modules (4 x
Inception-A at 35x35, Figure 4; 7 x Inception-B at 17x17, Figure 5; 3 x Inception-C at 8x8,
Figure 6), joined by explicit reduction modules (Reduction-A, Figure 7, whose widths k, l, m, n
Table 1 gives per network; Reduction-B, Figure 8). Figure 9 is the whole network; its boxes
are the rows of ``INCEPTION_V4`` below. The stem and Reduction-A are shared with the
Inception-ResNet networks of the same paper (``inception_resnet.py`` imports them from here).

Facts the figures leave open are taken from the authors' TF-slim release (as ported by timm's
``inception_v4``): batch norm (eps 1e-3) after every convolution, which then has no bias; the
3x3 average pools of the Inception modules are same-padded and do not count the padding.
Convolutions not marked "V" in the figures are same-padded (§3.1).
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Protocol

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability
from cnnlab.models.layers import ConvBNAct, init_weights
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
    "Szegedy, Ioffe, Vanhoucke, Alemi", 2016, "https://arxiv.org/abs/1602.07261",
)

# Not in the paper: the epsilon of TF-slim's batch norm, which the released networks use.
BN_EPS = 1e-3


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int = 1,
    *,
    valid: bool = False,
) -> ConvBNAct:
    """One "k x k Conv (c)" box of the figures: convolution, batch norm, ReLU.

    ``valid=True`` is the figures' "V" (no padding, the grid shrinks); otherwise the convolution
    is same-padded (§3.1).
    """
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, 0 if valid else None, eps=BN_EPS)


def max_pool_3x3_s2() -> nn.MaxPool2d:
    """"3x3 MaxPool (stride 2 V)"."""
    return nn.MaxPool2d(kernel_size=3, stride=2)


def avg_pool_3x3() -> nn.AvgPool2d:
    """The "Avg Pooling" box of Figures 4-6: 3x3, stride 1, same-padded (padding not counted)."""
    return nn.AvgPool2d(kernel_size=3, stride=1, padding=1, count_include_pad=False)


class Widths(Protocol):
    """The widths of one block type; knows how many channels the block outputs."""

    def out_channels(self, in_channels: int) -> int: ...


class Stage(NamedTuple):
    """One box of Figure 9 (or 15): ``count`` blocks of type ``block`` with the figure's widths.

    ``out_channels`` is the depth the figure prints beside the box ("35x35x384"); it is checked
    against the widths when the network is built.
    """

    block: type[nn.Module]
    count: int
    widths: Widths
    out_channels: int


class StageRow(Protocol):
    """What ``build_stages`` reads from a row (``Stage`` here, ``ResidualStage`` in
    ``inception_resnet.py``)."""

    @property
    def block(self) -> type[nn.Module]: ...

    @property
    def count(self) -> int: ...

    @property
    def widths(self) -> Widths: ...

    @property
    def out_channels(self) -> int: ...


class StemWidths(NamedTuple):
    """Figure 3, bottom to top."""

    conv: tuple[int, int, int]  # 3x3/2 V, 3x3 V, 3x3: 32, 32, 64
    conv_stride2: int  # 3x3/2 V beside the first max-pool: 96
    branch3x3_reduce: int  # left: 1x1 64 ...
    branch3x3: int  # ... then 3x3 V 96
    branch7x7_reduce: int  # right: 1x1 64 ...
    branch7x7: int  # ... then 7x1 64 and 1x7 64 ...
    branch7x7_3x3: int  # ... then 3x3 V 96
    conv_last: int  # 3x3/2 V beside the last max-pool: 192

    def out_channels(self, in_channels: int) -> int:
        return self.conv_last + self.branch3x3 + self.branch7x7_3x3


class Stem(nn.Module):
    """The stem of Inception-v4 and Inception-ResNet-v2 (Figure 3): 299x299x3 -> 35x35x384.

    Three plain convolutions, then three filter concatenations: a 3x3/2 max-pool beside a
    3x3/2 convolution, two convolution towers (one factorised into 7x1 and 1x7), and a 3x3/2
    convolution beside a 3x3/2 max-pool.
    """

    def __init__(self, in_channels: int, widths: StemWidths) -> None:
        super().__init__()
        c1, c2, c3 = widths.conv
        self.conv = nn.Sequential(
            conv_bn(in_channels, c1, 3, 2, valid=True),
            conv_bn(c1, c2, 3, valid=True),
            conv_bn(c2, c3, 3),
        )
        self.pool_a = max_pool_3x3_s2()
        self.conv_a = conv_bn(c3, widths.conv_stride2, 3, 2, valid=True)
        mid = c3 + widths.conv_stride2
        self.branch3x3 = nn.Sequential(
            conv_bn(mid, widths.branch3x3_reduce, 1),
            conv_bn(widths.branch3x3_reduce, widths.branch3x3, 3, valid=True),
        )
        w = widths.branch7x7
        self.branch7x7 = nn.Sequential(
            conv_bn(mid, widths.branch7x7_reduce, 1),
            # Figure 3 draws 7x1 before 1x7; TF-slim/timm apply 1x7 first (same params and MACs).
            conv_bn(widths.branch7x7_reduce, w, (7, 1)),
            conv_bn(w, w, (1, 7)),
            conv_bn(w, widths.branch7x7_3x3, 3, valid=True),
        )
        # Figure 3 marks this convolution "192 V" without a stride, but the 71x71 -> 35x35 it
        # prints (and the max-pool beside it) needs stride 2, as in TF-slim and timm.
        self.conv_b = conv_bn(widths.branch3x3 + widths.branch7x7_3x3, widths.conv_last, 3, 2, valid=True)
        self.pool_b = max_pool_3x3_s2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = torch.cat([self.pool_a(x), self.conv_a(x)], 1)
        x = torch.cat([self.branch3x3(x), self.branch7x7(x)], 1)
        return torch.cat([self.conv_b(x), self.pool_b(x)], 1)


class InceptionAWidths(NamedTuple):
    """Figure 4 (35x35 grid)."""

    branch1x1: int
    branch3x3_reduce: int
    branch3x3: int
    branch3x3dbl_reduce: int
    branch3x3dbl: int
    pool_proj: int

    def out_channels(self, in_channels: int) -> int:
        return self.branch1x1 + self.branch3x3 + self.branch3x3dbl + self.pool_proj


class InceptionA(nn.Module):
    """Inception-A (Figure 4): 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, in_channels: int, widths: InceptionAWidths) -> None:
        super().__init__()
        w = widths
        self.branch1x1 = conv_bn(in_channels, w.branch1x1, 1)
        self.branch3x3 = nn.Sequential(
            conv_bn(in_channels, w.branch3x3_reduce, 1), conv_bn(w.branch3x3_reduce, w.branch3x3, 3)
        )
        self.branch3x3dbl = nn.Sequential(
            conv_bn(in_channels, w.branch3x3dbl_reduce, 1),
            conv_bn(w.branch3x3dbl_reduce, w.branch3x3dbl, 3),
            conv_bn(w.branch3x3dbl, w.branch3x3dbl, 3),
        )
        self.branch_pool = nn.Sequential(avg_pool_3x3(), conv_bn(in_channels, w.pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class ReductionAWidths(NamedTuple):
    """Figure 7's filter-bank sizes, the columns of Table 1."""

    k: int  # 1x1 at the start of the tower
    l: int  # noqa: E741 - the paper's name; the tower's 3x3
    m: int  # the tower's 3x3/2 V
    n: int  # the lone 3x3/2 V

    def out_channels(self, in_channels: int) -> int:
        return in_channels + self.n + self.m  # the max-pool passes the input through


class ReductionA(nn.Module):
    """Reduction-A (Figure 7), 35x35 -> 17x17: max-pool | 3x3/2 n | 1x1 k -> 3x3 l -> 3x3/2 m.

    Shared by Inception-v4, Inception-ResNet-v1 and -v2 with Table 1's k, l, m, n.
    """

    def __init__(self, in_channels: int, widths: ReductionAWidths) -> None:
        super().__init__()
        k, l, m, n = widths  # noqa: E741
        self.branch_pool = max_pool_3x3_s2()
        self.branch3x3 = conv_bn(in_channels, n, 3, 2, valid=True)
        self.branch3x3dbl = nn.Sequential(
            conv_bn(in_channels, k, 1), conv_bn(k, l, 3), conv_bn(l, m, 3, 2, valid=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_pool(x), self.branch3x3(x), self.branch3x3dbl(x)], 1)



class InceptionBWidths(NamedTuple):
    """Figure 5 (17x17 grid)."""

    branch1x1: int
    branch7x7_reduce: int
    branch7x7: tuple[int, int]  # 1x7, 7x1
    branch7x7dbl_reduce: int
    branch7x7dbl: tuple[int, int, int, int]  # 1x7, 7x1, 1x7, 7x1
    pool_proj: int

    def out_channels(self, in_channels: int) -> int:
        return self.branch1x1 + self.branch7x7[-1] + self.branch7x7dbl[-1] + self.pool_proj


class InceptionB(nn.Module):
    """Inception-B (Figure 5): 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> (1x7 -> 7x1) x 2 | avg pool -> 1x1."""

    def __init__(self, in_channels: int, widths: InceptionBWidths) -> None:
        super().__init__()
        w = widths
        self.branch1x1 = conv_bn(in_channels, w.branch1x1, 1)
        a, b = w.branch7x7
        self.branch7x7 = nn.Sequential(
            conv_bn(in_channels, w.branch7x7_reduce, 1),
            conv_bn(w.branch7x7_reduce, a, (1, 7)),
            conv_bn(a, b, (7, 1)),
        )
        a, b, c, d = w.branch7x7dbl
        # Figure 5 starts this tower with 1x7; TF-slim/timm start it with 7x1 (same params, MACs).
        self.branch7x7dbl = nn.Sequential(
            conv_bn(in_channels, w.branch7x7dbl_reduce, 1),
            conv_bn(w.branch7x7dbl_reduce, a, (1, 7)),
            conv_bn(a, b, (7, 1)),
            conv_bn(b, c, (1, 7)),
            conv_bn(c, d, (7, 1)),
        )
        self.branch_pool = nn.Sequential(avg_pool_3x3(), conv_bn(in_channels, w.pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch7x7(x), self.branch7x7dbl(x), self.branch_pool(x)], 1)


class ReductionBWidths(NamedTuple):
    """Figure 8."""

    branch3x3_reduce: int  # 1x1 ...
    branch3x3: int  # ... then 3x3/2 V
    branch7x7x3_reduce: int  # 1x1 ...
    branch7x7x3: tuple[int, int, int]  # ... then 1x7, 7x1, 3x3/2 V

    def out_channels(self, in_channels: int) -> int:
        return in_channels + self.branch3x3 + self.branch7x7x3[-1]


class ReductionB(nn.Module):
    """Reduction-B of Inception-v4 (Figure 8), 17x17 -> 8x8."""

    def __init__(self, in_channels: int, widths: ReductionBWidths) -> None:
        super().__init__()
        w = widths
        self.branch_pool = max_pool_3x3_s2()
        self.branch3x3 = nn.Sequential(
            conv_bn(in_channels, w.branch3x3_reduce, 1),
            conv_bn(w.branch3x3_reduce, w.branch3x3, 3, 2, valid=True),
        )
        a, b, c = w.branch7x7x3
        self.branch7x7x3 = nn.Sequential(
            conv_bn(in_channels, w.branch7x7x3_reduce, 1),
            conv_bn(w.branch7x7x3_reduce, a, (1, 7)),
            conv_bn(a, b, (7, 1)),
            conv_bn(b, c, 3, 2, valid=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_pool(x), self.branch3x3(x), self.branch7x7x3(x)], 1)


class InceptionCWidths(NamedTuple):
    """Figure 6 (8x8 grid)."""

    branch1x1: int
    branch3x3_reduce: int  # 1x1, then split into 1x3 and 3x1 ...
    branch3x3: int  # ... of this width each
    branch3x3dbl_reduce: int  # 1x1 ...
    branch3x3dbl: tuple[int, int]  # ... 1x3, 3x1, then split into 1x3 and 3x1 ...
    branch3x3dbl_split: int  # ... of this width each
    pool_proj: int

    def out_channels(self, in_channels: int) -> int:
        return self.branch1x1 + 2 * self.branch3x3 + 2 * self.branch3x3dbl_split + self.pool_proj


class InceptionC(nn.Module):
    """Inception-C (Figure 6): the 8x8 module whose towers end in parallel 1x3 and 3x1 convs."""

    def __init__(self, in_channels: int, widths: InceptionCWidths) -> None:
        super().__init__()
        w = widths
        self.branch1x1 = conv_bn(in_channels, w.branch1x1, 1)
        self.branch3x3_reduce = conv_bn(in_channels, w.branch3x3_reduce, 1)
        self.branch3x3_a = conv_bn(w.branch3x3_reduce, w.branch3x3, (1, 3))
        self.branch3x3_b = conv_bn(w.branch3x3_reduce, w.branch3x3, (3, 1))
        a, b = w.branch3x3dbl
        # Figure 6 draws 1x3 then 3x1; TF-slim/timm apply 3x1 first (same params and MACs).
        self.branch3x3dbl = nn.Sequential(
            conv_bn(in_channels, w.branch3x3dbl_reduce, 1),
            conv_bn(w.branch3x3dbl_reduce, a, (1, 3)),
            conv_bn(a, b, (3, 1)),
        )
        self.branch3x3dbl_a = conv_bn(b, w.branch3x3dbl_split, (1, 3))
        self.branch3x3dbl_b = conv_bn(b, w.branch3x3dbl_split, (3, 1))
        self.branch_pool = nn.Sequential(avg_pool_3x3(), conv_bn(in_channels, w.pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.branch3x3_reduce(x)
        d = self.branch3x3dbl(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_a(t), self.branch3x3_b(t),
                self.branch3x3dbl_a(d), self.branch3x3dbl_b(d),
                self.branch_pool(x),
            ],
            1,
        )


def build_stages(
    stages: Mapping[str, StageRow],
    in_channels: int,
    make_block: Callable[[StageRow, int], nn.Module] | None = None,
) -> tuple[nn.Sequential, int]:
    """``features``: one ``nn.Sequential`` of ``count`` blocks per named row; and its width.

    ``make_block(row, in_channels)`` builds one block (default ``row.block(in_channels,
    row.widths)``). Checks each row's ``out_channels`` against what its widths produce (the
    figures' depths).
    """
    features = nn.Sequential()
    channels = in_channels
    for name, row in stages.items():
        if row.count < 1:
            raise ValueError(f"{name}: a stage needs at least one block, got count={row.count}")
        blocks = []
        for _ in range(row.count):
            blocks.append(make_block(row, channels) if make_block else row.block(channels, row.widths))
            channels = row.widths.out_channels(channels)
        if channels != row.out_channels:
            raise ValueError(
                f"{name}: widths {row.widths} give {channels} channels, the row says {row.out_channels}"
            )
        features.add_module(name, nn.Sequential(*blocks))
    return features, channels


class InceptionV4(ConvNet):
    """Inception-v4 (Figure 9): stem, 4 x A, Reduction-A, 7 x B, Reduction-B, 3 x C, average
    pool, dropout (keep 0.8), fully connected classifier.

    ``features`` holds one ``nn.Sequential`` per row of ``INCEPTION_V4`` (``stem``,
    ``inception_a``, ``reduction_a`` ...).
    """

    min_input_size = 75  # the valid-padded 3x3/2 convolutions and pools of the stem and reductions
    classifier_name = "fc"

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.features, self.num_features = build_stages(INCEPTION_V4, in_channels)
        # Deviation: Figure 9's "Average Pooling" is 8x8 at 299; we pool adaptively so that any
        # input >= min_input_size works. At 299 the two are the same.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)  # Figure 9: "Dropout (keep 0.8)"
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


# Table 1: the number of filters of Reduction-A (Figure 7) in each network.
TABLE_1: dict[str, ReductionAWidths] = {
    "inception_v4": ReductionAWidths(k=192, l=224, m=256, n=384),
    "inception_resnet_v1": ReductionAWidths(k=192, l=192, m=256, n=384),
    "inception_resnet_v2": ReductionAWidths(k=256, l=256, m=384, n=384),
}

STEM = StemWidths(
    conv=(32, 32, 64), conv_stride2=96, branch3x3_reduce=64, branch3x3=96,
    branch7x7_reduce=64, branch7x7=64, branch7x7_3x3=96, conv_last=192,
)

# Figure 9, bottom to top; out_channels is the depth printed beside each box (at 299x299 the
# grids are 35x35, 35x35, 17x17, 17x17, 8x8, 8x8).
INCEPTION_V4: dict[str, Stage] = {
    "stem": Stage(Stem, 1, STEM, out_channels=384),  # Figure 3
    "inception_a": Stage(
        InceptionA, 4,
        InceptionAWidths(
            branch1x1=96, branch3x3_reduce=64, branch3x3=96, branch3x3dbl_reduce=64, branch3x3dbl=96,
            pool_proj=96,
        ),
        out_channels=384,
    ),  # Figure 4
    "reduction_a": Stage(ReductionA, 1, TABLE_1["inception_v4"], out_channels=1024),  # Figure 7
    "inception_b": Stage(
        InceptionB, 7,
        InceptionBWidths(
            branch1x1=384, branch7x7_reduce=192, branch7x7=(224, 256),
            branch7x7dbl_reduce=192, branch7x7dbl=(192, 224, 224, 256), pool_proj=128,
        ),
        out_channels=1024,
    ),  # Figure 5
    "reduction_b": Stage(
        ReductionB, 1,
        ReductionBWidths(
            branch3x3_reduce=192, branch3x3=192, branch7x7x3_reduce=256, branch7x7x3=(256, 320, 320)
        ),
        out_channels=1536,
    ),  # Figure 8
    "inception_c": Stage(
        InceptionC, 3,
        InceptionCWidths(
            branch1x1=256, branch3x3_reduce=384, branch3x3=256, branch3x3dbl_reduce=384,
            branch3x3dbl=(448, 512), branch3x3dbl_split=256, pool_proj=256,
        ),
        out_channels=1536,
    ),  # Figure 6
}

register_model("inception_v4", InceptionV4, family="Inception", paper=PAPER, input_size=(3, 299, 299))
