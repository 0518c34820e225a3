"""Inception-ResNet v1 and v2: Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4,
Inception-ResNet and the Impact of Residual Connections on Learning", AAAI 2017,
https://arxiv.org/abs/1602.07261.

What it contributes: Inception modules made residual (§3.2). Each Inception-ResNet block runs
cheaper Inception towers, concatenates them, maps the result back to the block's width with a
linear 1x1 convolution (no BN, no ReLU) and adds it to the block's input; the ReLU comes after
the sum (Figures 10-13, 16-19). §3.3: networks this wide "died" early in training unless the
residuals were scaled down by 0.1-0.3 before the addition (``residual_scale``). Inception-ResNet-v1
(Figure 15) matches Inception-v3's cost, -v2 Inception-v4's; both share Figure 15's layout,
stem, 5/10 x Inception-ResNet-A, Reduction-A (Table 1), 10/20 x -B, Reduction-B, 5/10 x -C, and
Reduction-A's code with Inception-v4 (imported from ``inception_v4``).

The reference counts belong to the released networks, which differ from the figures; every
difference is marked at its row in the tables below:

* ``inception_resnet_v1`` is pytorchcv's ``inceptionresnetv1`` (23,995,624 parameters), itself
  FaceNet's Inception-ResNet-v1 (Schroff et al.'s reimplementation, davidsandberg/facenet): the
  figures' blocks and widths, plus a sixth Inception-ResNet-C without ReLU and a 512-wide
  bottleneck (FC + BN) before the classifier.
* ``inception_resnet_v2`` is the authors' TF-slim release, as ported by timm and pytorchcv
  (55,843,464 parameters, 13.18 GMACs). It does not use Figure 3's stem: it ends Figure 14's stem
  with a max-pool and an Inception-v3-style module ("Mixed_5b", 320 channels), so every later
  width shrinks by 64 (1088 and 2080 channels instead of the paper's 1152 and 2144), adds a 1x1
  convolution to 1536 channels before the pool, and makes the last Inception-ResNet-C linear.
  The figures cannot be built as drawn anyway: Figure 17's and 19's linear 1x1 convolutions
  (1154 and 2048 filters) do not give back the 1152 and 2144 channels their inputs have.

``drop_path_rate`` adds stochastic depth (Huang et al. 2016, not in this paper) to the residual
branches, decaying linearly from the first block to the last.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability, lookup
from cnnlab.models.inception_v4 import (
    BN_EPS,
    PAPER,
    TABLE_1,
    ReductionA,
    Stage,
    StageRow,
    Widths,
    avg_pool_3x3,
    build_stages,
    conv_bn,
    max_pool_3x3_s2,
)
from cnnlab.models.layers import DropPath, init_weights
from cnnlab.registry import register_model


class Conv(NamedTuple):
    """A "k x k Conv (c [stride s] [V])" box: conv, BN, ReLU; ``valid`` is the figures' "V"."""

    out_channels: int
    kernel: int
    stride: int = 1
    valid: bool = False


class MaxPool(NamedTuple):
    """A "3x3 MaxPool (stride 2 V)" box."""


ConvStackLayer = Conv | MaxPool


class ConvStackWidths(NamedTuple):
    """A plain sequence of boxes, such as Figure 14's stem."""

    layers: tuple[ConvStackLayer, ...]

    def out_channels(self, in_channels: int) -> int:
        convs = [layer.out_channels for layer in self.layers if isinstance(layer, Conv)]
        return convs[-1] if convs else in_channels


class ConvStack(nn.Sequential):
    """The layers of a ``ConvStackWidths``, in order."""

    def __init__(self, in_channels: int, widths: ConvStackWidths) -> None:
        layers: list[nn.Module] = []
        for layer in widths.layers:
            if isinstance(layer, MaxPool):
                layers.append(max_pool_3x3_s2())
            else:
                out = layer.out_channels
                layers.append(conv_bn(in_channels, out, layer.kernel, layer.stride, valid=layer.valid))
                in_channels = layer.out_channels
        super().__init__(*layers)


class Mixed5bWidths(NamedTuple):
    """TF-slim's "Mixed_5b", the last layer of its Inception-ResNet-v2 stem (not in the paper)."""

    branch1x1: int
    branch5x5_reduce: int
    branch5x5: int
    branch3x3dbl_reduce: int
    branch3x3dbl: int
    pool_proj: int

    def out_channels(self, in_channels: int) -> int:
        return self.branch1x1 + self.branch5x5 + self.branch3x3dbl + self.pool_proj


class Mixed5b(nn.Module):
    """Inception-v3's 35x35 module (1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1), as
    TF-slim's Inception-ResNet-v2 uses it to end the stem (see ``INCEPTION_RESNET_V2``)."""

    def __init__(self, in_channels: int, widths: Mixed5bWidths) -> None:
        super().__init__()
        w = widths
        self.branch1x1 = conv_bn(in_channels, w.branch1x1, 1)
        self.branch5x5 = nn.Sequential(
            conv_bn(in_channels, w.branch5x5_reduce, 1), conv_bn(w.branch5x5_reduce, w.branch5x5, 5)
        )
        self.branch3x3dbl = nn.Sequential(
            conv_bn(in_channels, w.branch3x3dbl_reduce, 1),
            conv_bn(w.branch3x3dbl_reduce, w.branch3x3dbl, 3),
            conv_bn(w.branch3x3dbl, w.branch3x3dbl, 3),
        )
        self.branch_pool = nn.Sequential(avg_pool_3x3(), conv_bn(in_channels, w.pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch5x5(x), self.branch3x3dbl(x), self.branch_pool(x)], 1)


class ResidualBlock(nn.Module):
    """What Figures 10-13 and 16-19 share: towers, concatenation, a linear 1x1 convolution back
    to the input width ("1x1 Conv (c Linear)": bias, no BN, no ReLU, §3.2), the residual scaled
    by ``residual_scale`` (§3.3, Figure 20), optional stochastic depth, the sum, then ReLU.

    ``relu=False`` drops the ReLU after the sum (the reference implementations' last block).
    Subclasses build their towers and ``linear`` and implement ``_towers`` (the concatenation).
    """

    linear: nn.Conv2d

    def __init__(
        self, in_channels: int, linear: int, residual_scale: float, drop_path_rate: float, relu: bool
    ) -> None:
        super().__init__()
        if linear != in_channels:
            raise ValueError(
                f"{type(self).__name__}: the linear 1x1 conv must give back the block's {in_channels} "
                f"input channels, got {linear}"
            )
        if not 0.0 <= residual_scale <= 1.0:
            raise ValueError(f"residual_scale must be in [0, 1], got {residual_scale}")
        self.residual_scale = residual_scale
        self.drop_path = DropPath(drop_path_rate)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def _towers(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.linear(self._towers(x)) * self.residual_scale
        return self.act(x + self.drop_path(residual))

    def extra_repr(self) -> str:
        return f"residual_scale={self.residual_scale}"


class InceptionResNetAWidths(NamedTuple):
    """Figure 10 (v1) and Figure 16 (v2), the 35x35 grid."""

    branch1x1: int
    branch3x3_reduce: int
    branch3x3: int
    branch3x3dbl_reduce: int
    branch3x3dbl: tuple[int, int]
    linear: int

    def out_channels(self, in_channels: int) -> int:
        return in_channels


class InceptionResNetA(ResidualBlock):
    """Inception-ResNet-A: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3, then linear 1x1."""

    def __init__(
        self, in_channels: int, widths: InceptionResNetAWidths, *,
        residual_scale: float, drop_path_rate: float = 0.0, relu: bool = True,
    ) -> None:
        w = widths
        super().__init__(in_channels, w.linear, residual_scale, drop_path_rate, relu)
        a, b = w.branch3x3dbl
        self.branch1x1 = conv_bn(in_channels, w.branch1x1, 1)
        self.branch3x3 = nn.Sequential(
            conv_bn(in_channels, w.branch3x3_reduce, 1), conv_bn(w.branch3x3_reduce, w.branch3x3, 3)
        )
        self.branch3x3dbl = nn.Sequential(
            conv_bn(in_channels, w.branch3x3dbl_reduce, 1),
            conv_bn(w.branch3x3dbl_reduce, a, 3),
            conv_bn(a, b, 3),
        )
        self.linear = nn.Conv2d(w.branch1x1 + w.branch3x3 + b, w.linear, 1)

    def _towers(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch3x3dbl(x)], 1)


class InceptionResNetBWidths(NamedTuple):
    """Figure 11 (v1) and Figure 17 (v2), the 17x17 grid."""

    branch1x1: int
    branch7x7_reduce: int
    branch7x7: tuple[int, int]  # 1x7, 7x1
    linear: int

    def out_channels(self, in_channels: int) -> int:
        return in_channels


class InceptionResNetB(ResidualBlock):
    """Inception-ResNet-B: 1x1 | 1x1 -> 1x7 -> 7x1, then linear 1x1."""

    def __init__(
        self, in_channels: int, widths: InceptionResNetBWidths, *,
        residual_scale: float, drop_path_rate: float = 0.0, relu: bool = True,
    ) -> None:
        w = widths
        super().__init__(in_channels, w.linear, residual_scale, drop_path_rate, relu)
        a, b = w.branch7x7
        self.branch1x1 = conv_bn(in_channels, w.branch1x1, 1)
        self.branch7x7 = nn.Sequential(
            conv_bn(in_channels, w.branch7x7_reduce, 1),
            conv_bn(w.branch7x7_reduce, a, (1, 7)),
            conv_bn(a, b, (7, 1)),
        )
        self.linear = nn.Conv2d(w.branch1x1 + b, w.linear, 1)

    def _towers(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch7x7(x)], 1)


class InceptionResNetCWidths(NamedTuple):
    """Figure 13 (v1) and Figure 19 (v2), the 8x8 grid."""

    branch1x1: int
    branch3x3_reduce: int
    branch3x3: tuple[int, int]  # 1x3, 3x1
    linear: int

    def out_channels(self, in_channels: int) -> int:
        return in_channels


class InceptionResNetC(ResidualBlock):
    """Inception-ResNet-C: 1x1 | 1x1 -> 1x3 -> 3x1, then linear 1x1."""

    def __init__(
        self, in_channels: int, widths: InceptionResNetCWidths, *,
        residual_scale: float, drop_path_rate: float = 0.0, relu: bool = True,
    ) -> None:
        w = widths
        super().__init__(in_channels, w.linear, residual_scale, drop_path_rate, relu)
        a, b = w.branch3x3
        self.branch1x1 = conv_bn(in_channels, w.branch1x1, 1)
        self.branch3x3 = nn.Sequential(
            conv_bn(in_channels, w.branch3x3_reduce, 1),
            conv_bn(w.branch3x3_reduce, a, (1, 3)),
            conv_bn(a, b, (3, 1)),
        )
        self.linear = nn.Conv2d(w.branch1x1 + b, w.linear, 1)

    def _towers(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x)], 1)


class ReductionBWidths(NamedTuple):
    """Figure 12 (v1) and Figure 18 (v2)."""

    branch3x3_reduce: int  # 1x1, then 3x3/2 V ...
    branch3x3: int
    branch3x3b_reduce: int  # 1x1, then 3x3/2 V ...
    branch3x3b: int
    branch3x3dbl_reduce: int  # 1x1, then 3x3, then 3x3/2 V
    branch3x3dbl: tuple[int, int]

    def out_channels(self, in_channels: int) -> int:
        return in_channels + self.branch3x3 + self.branch3x3b + self.branch3x3dbl[-1]


class ReductionB(nn.Module):
    """Reduction-B of the Inception-ResNets (Figures 12, 18), 17x17 -> 8x8: max-pool and three
    convolution towers ending in 3x3/2 V."""

    def __init__(self, in_channels: int, widths: ReductionBWidths) -> None:
        super().__init__()
        w = widths
        a, b = w.branch3x3dbl
        self.branch_pool = max_pool_3x3_s2()
        self.branch3x3 = nn.Sequential(
            conv_bn(in_channels, w.branch3x3_reduce, 1),
            conv_bn(w.branch3x3_reduce, w.branch3x3, 3, 2, valid=True),
        )
        self.branch3x3b = nn.Sequential(
            conv_bn(in_channels, w.branch3x3b_reduce, 1),
            conv_bn(w.branch3x3b_reduce, w.branch3x3b, 3, 2, valid=True),
        )
        self.branch3x3dbl = nn.Sequential(
            conv_bn(in_channels, w.branch3x3dbl_reduce, 1),
            conv_bn(w.branch3x3dbl_reduce, a, 3),
            conv_bn(a, b, 3, 2, valid=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        towers = [self.branch_pool(x), self.branch3x3(x), self.branch3x3b(x), self.branch3x3dbl(x)]
        return torch.cat(towers, 1)


class ResidualStage(NamedTuple):
    """A row of Figure 15 made of residual blocks: ``Stage`` plus the residual scale (§3.3) of
    the reference implementation and whether a ReLU follows the sum."""

    block: type[ResidualBlock]
    count: int
    widths: Widths
    out_channels: int
    residual_scale: float
    relu: bool = True


class Config(NamedTuple):
    """One network: its rows, the optional bottleneck before the classifier and the smallest
    input its valid-padded layers accept."""

    stages: dict[str, Stage | ResidualStage]
    bottleneck: int | None
    min_input_size: int


class InceptionResNet(ConvNet):
    """Inception-ResNet ``config`` ("v1" or "v2"): Figure 15 with the rows of ``CONFIGS``.

    ``residual_scale`` (§3.3) replaces the reference implementation's per-row scales (0.17 for
    A, 0.10 for B, 0.20 for C, 1.0 for the last, linear, C block) by one value for every block;
    ``None`` keeps them. ``drop_path_rate`` is the stochastic-depth drop probability of the last
    residual block; block i of N drops with ``drop_path_rate * i / N`` (Huang et al.'s linear
    decay). ``features`` holds one ``nn.Sequential`` per row (``stem``, ``inception_resnet_a``,
    ``reduction_a`` ...).
    """

    classifier_name = "fc"

    def __init__(
        self,
        *,
        config: str,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.2,
        residual_scale: float | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        lookup("Inception-ResNet", config, CONFIGS)
        check_probability("dropout", dropout)
        if residual_scale is not None and not 0.0 <= residual_scale <= 1.0:
            raise ValueError(f"residual_scale must be in [0, 1] or None, got {residual_scale}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        spec = CONFIGS[config]
        self.in_channels, self.num_classes = in_channels, num_classes
        self.min_input_size = spec.min_input_size
        total = sum(row.count for row in spec.stages.values() if isinstance(row, ResidualStage))
        done = 0

        def make_block(row: StageRow, channels: int) -> nn.Module:
            nonlocal done
            if not isinstance(row, ResidualStage):
                return row.block(channels, row.widths)
            done += 1
            return row.block(
                channels, row.widths,
                residual_scale=row.residual_scale if residual_scale is None else residual_scale,
                drop_path_rate=drop_path_rate * done / total,
                relu=row.relu,
            )

        self.features, self.num_features = build_stages(spec.stages, in_channels, make_block)
        # Deviation: Figure 15's "Average Pooling" is 8x8 at 299; we pool adaptively so that any
        # input >= min_input_size works. At 299 the two are the same.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)  # Figure 15: "Dropout (keep 0.8)"
        width = self.num_features
        if spec.bottleneck is None:
            self.bottleneck: nn.Module = nn.Identity()
        else:
            # Deviation (v1 only): not in Figure 15. FaceNet's embedding bottleneck, an FC
            # without bias and a BN, which pytorchcv's inceptionresnetv1 (the reference count)
            # keeps in front of the classifier.
            self.bottleneck = nn.Sequential(
                nn.Linear(width, spec.bottleneck, bias=False), nn.BatchNorm1d(spec.bottleneck, eps=BN_EPS)
            )
            width = spec.bottleneck
        self.fc = nn.Linear(width, num_classes)
        init_weights(self)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bottleneck(self.dropout(torch.flatten(self.avgpool(x), 1))))


# Figure 14, bottom to top: 299x299x3 -> 35x35x256.
STEM_V1 = ConvStackWidths((
    Conv(32, 3, stride=2, valid=True),
    Conv(32, 3, valid=True),
    Conv(64, 3),
    MaxPool(),
    Conv(80, 1),
    Conv(192, 3, valid=True),
    Conv(256, 3, stride=2, valid=True),
))

C_V1 = InceptionResNetCWidths(branch1x1=192, branch3x3_reduce=192, branch3x3=(192, 192), linear=1792)

# Figure 15 for Inception-ResNet-v1, bottom to top; out_channels is the depth beside each box.
INCEPTION_RESNET_V1: dict[str, Stage | ResidualStage] = {
    "stem": Stage(ConvStack, 1, STEM_V1, out_channels=256),  # Figure 14
    "inception_resnet_a": ResidualStage(
        InceptionResNetA, 5,
        InceptionResNetAWidths(
            branch1x1=32, branch3x3_reduce=32, branch3x3=32, branch3x3dbl_reduce=32, branch3x3dbl=(32, 32),
            linear=256,
        ),
        out_channels=256, residual_scale=0.17,
    ),  # Figure 10
    "reduction_a": Stage(ReductionA, 1, TABLE_1["inception_resnet_v1"], out_channels=896),  # Figure 7
    "inception_resnet_b": ResidualStage(
        InceptionResNetB, 10,
        InceptionResNetBWidths(branch1x1=128, branch7x7_reduce=128, branch7x7=(128, 128), linear=896),
        out_channels=896, residual_scale=0.10,
    ),  # Figure 11
    "reduction_b": Stage(
        ReductionB, 1,
        ReductionBWidths(
            branch3x3_reduce=256, branch3x3=384, branch3x3b_reduce=256, branch3x3b=256,
            branch3x3dbl_reduce=256, branch3x3dbl=(256, 256),
        ),
        out_channels=1792,
    ),  # Figure 12
    "inception_resnet_c": ResidualStage(
        InceptionResNetC, 5, C_V1, out_channels=1792, residual_scale=0.20
    ),  # Figure 13
    # Deviation: a sixth Inception-ResNet-C, unscaled and without the ReLU after the sum, that
    # Figure 15 does not have (it has 5). FaceNet's and pytorchcv's Inception-ResNet-v1 end
    # with it, and the reference count 23,995,624 includes it (and the bottleneck head, see
    # InceptionResNet): with 5 blocks and Figure 15's head the network has 22,756,328.
    "inception_resnet_c_last": ResidualStage(
        InceptionResNetC, 1, C_V1, out_channels=1792, residual_scale=1.0, relu=False
    ),
}

C_V2 = InceptionResNetCWidths(branch1x1=192, branch3x3_reduce=192, branch3x3=(224, 256), linear=2080)

# Figure 15 for Inception-ResNet-v2 as the authors released it (TF-slim; timm and pytorchcv,
# the reference 55,843,464 parameters), bottom to top.
INCEPTION_RESNET_V2: dict[str, Stage | ResidualStage] = {
    # Deviation: Figure 15 uses Figure 3's stem (Inception-v4's, 35x35x384). The release uses
    # Figure 14's stem with a max-pool in place of its last convolution, then an Inception-v3
    # 35x35 module ("Mixed_5b"): 35x35x320. Every width below follows from that 320.
    "stem": Stage(
        ConvStack, 1,
        ConvStackWidths((
            Conv(32, 3, stride=2, valid=True),
            Conv(32, 3, valid=True),
            Conv(64, 3),
            MaxPool(),
            Conv(80, 1),
            Conv(192, 3, valid=True),
            MaxPool(),
        )),
        out_channels=192,
    ),
    "mixed_5b": Stage(
        Mixed5b, 1,
        Mixed5bWidths(
            branch1x1=96, branch5x5_reduce=48, branch5x5=64, branch3x3dbl_reduce=64, branch3x3dbl=96,
            pool_proj=64,
        ),
        out_channels=320,
    ),
    "inception_resnet_a": ResidualStage(
        InceptionResNetA, 10,
        InceptionResNetAWidths(
            branch1x1=32, branch3x3_reduce=32, branch3x3=32, branch3x3dbl_reduce=32, branch3x3dbl=(48, 64),
            linear=320,  # Figure 16: 384, the width of Figure 3's stem
        ),
        out_channels=320, residual_scale=0.17,
    ),  # Figure 16
    # Figure 7 with Table 1's k, l, m, n: 320 + 384 + 384 = 1088 (the paper: 384 + 768 = 1152).
    "reduction_a": Stage(ReductionA, 1, TABLE_1["inception_resnet_v2"], out_channels=1088),
    "inception_resnet_b": ResidualStage(
        InceptionResNetB, 20,
        InceptionResNetBWidths(
            branch1x1=192, branch7x7_reduce=128, branch7x7=(160, 192),
            linear=1088,  # Figure 17: 1154, which matches no input width (a typo for 1152)
        ),
        out_channels=1088, residual_scale=0.10,
    ),  # Figure 17
    "reduction_b": Stage(
        ReductionB, 1,
        ReductionBWidths(
            branch3x3_reduce=256, branch3x3=384, branch3x3b_reduce=256, branch3x3b=288,
            branch3x3dbl_reduce=256, branch3x3dbl=(288, 320),
        ),
        out_channels=2080,  # Figure 18's widths on 1088 channels (the paper: 2144)
    ),  # Figure 18
    # Figure 19 (linear 1x1: 2048 there, which matches neither 2080 nor the paper's 2144). Ten
    # blocks as in Figure 15, but the release makes the last one unscaled and without the ReLU.
    "inception_resnet_c": ResidualStage(InceptionResNetC, 9, C_V2, out_channels=2080, residual_scale=0.20),
    "inception_resnet_c_last": ResidualStage(
        InceptionResNetC, 1, C_V2, out_channels=2080, residual_scale=1.0, relu=False
    ),
    # Deviation: not in Figure 15: the release's 1x1 conv (BN, ReLU) to 1536 channels before
    # the average pool ("Conv2d_7b_1x1").
    "conv_7b": Stage(ConvStack, 1, ConvStackWidths((Conv(1536, 1),)), out_channels=1536),
}

CONFIGS: dict[str, Config] = {
    "v1": Config(INCEPTION_RESNET_V1, bottleneck=512, min_input_size=75),
    "v2": Config(INCEPTION_RESNET_V2, bottleneck=None, min_input_size=75),
}

for _name, _config in (("inception_resnet_v1", "v1"), ("inception_resnet_v2", "v2")):
    register_model(
        _name, InceptionResNet, family="Inception-ResNet", paper=PAPER, input_size=(3, 299, 299),
        config=_config,
    )
