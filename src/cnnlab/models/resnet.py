"""ResNet: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
https://arxiv.org/abs/1512.03385 (arXiv 2015).

What it contributes: residual learning (§3.1). Each block learns F(x) and outputs F(x) + x
through an identity shortcut, so a deep stack can fall back to the identity and 152 layers train
better than 34 (§4.1). Projection shortcuts (1x1 conv + BN, "option B", §3.3) only where the
width or the grid changes. Deeper nets replace the two-3x3 "basic" block by the 1x1-3x3-1x1
"bottleneck" (§4.1, Figure 5). Table 1 (below as ``TABLE_1``) gives the five ImageNet depths.

The same class builds the family's later members, each marked where it differs:

* v1.5 (torchvision's ``resnet50`` ...): the stride-2 of a downsampling bottleneck on the 3x3
  instead of the first 1x1 (fb.resnet.torch). Same parameters, more MACs (ResNet-50: 4.089 G vs
  Table 1's 3.8 G); ``stride_on_3x3`` selects it. ``resnet50_v1`` ... are the paper's placement.
* ResNeXt (Xie et al. 2017, https://arxiv.org/abs/1611.05431): the bottleneck's 3x3 becomes a
  grouped conv of cardinality ``groups`` and ``base_width`` channels per group at the first stage
  ("32x4d"); Wide ResNet-50-2 (Zagoruyko & Komodakis 2016) is the bottleneck with a 2x wider 3x3
  (``base_width=128``), as torchvision defines it.
* Pre-activation (He et al. 2016, "Identity Mappings in Deep Residual Networks",
  https://arxiv.org/abs/1603.05027, Figure 4(e)): BN and ReLU move in front of each conv, and
  nothing follows the addition, so the shortcut path is a pure identity.
* Stochastic depth (Huang et al. 2016, https://arxiv.org/abs/1603.09382): in training each
  residual branch is dropped for a whole sample with a probability rising linearly with depth
  (§3, eq. 4 "linear decay"); ``drop_path_rate`` is 1 - p_L, the last block's drop probability.
* Squeeze-and-excitation (Hu et al. 2018) inside the blocks: see ``senet.py``.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Sequence

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability
from cnnlab.models.layers import DropPath, SqueezeExcitation, init_weights
from cnnlab.registry import Paper, register_model

__all__ = [
    "BasicBlock", "Bottleneck", "PreActBasicBlock", "PreActBottleneck", "ResNet", "TABLE_1",
    "Variant", "drop_path_schedule", "make_stage", "projection_shortcut", "register_variants",
]

PAPER = Paper(
    "Deep Residual Learning for Image Recognition",
    "He, Zhang, Ren, Sun", 2015, "https://arxiv.org/abs/1512.03385",
)
PREACT_PAPER = Paper(
    "Identity Mappings in Deep Residual Networks",
    "He, Zhang, Ren, Sun", 2016, "https://arxiv.org/abs/1603.05027",
)
RESNEXT_PAPER = Paper(
    "Aggregated Residual Transformations for Deep Neural Networks",
    "Xie, Girshick, Dollar, Tu, He", 2016, "https://arxiv.org/abs/1611.05431",
)
WRN_PAPER = Paper("Wide Residual Networks", "Zagoruyko, Komodakis", 2016, "https://arxiv.org/abs/1605.07146")
SD_PAPER = Paper(
    "Deep Networks with Stochastic Depth",
    "Huang, Sun, Liu, Sedra, Weinberger", 2016, "https://arxiv.org/abs/1603.09382",
)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A 3x3 conv with "same" padding and no bias (BN follows or precedes it)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, groups=groups, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Figure 5 (left): 3x3 conv, BN, ReLU, 3x3 conv, BN, added to the shortcut, then ReLU.

    ``downsample`` is the shortcut for a block that changes width or grid (None: identity).
    ``se_reduction`` adds SENet's squeeze-and-excitation (reduction r) on the branch before the
    addition (Hu et al. 2018, Figure 3); ``drop_path_rate`` drops the whole branch per sample.
    Attribute names are torchvision's.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        se_reduction: int | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcitation(planes, planes // se_reduction) if se_reduction else None
        self.downsample = downsample
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(self.drop_path(out) + shortcut)


class Bottleneck(nn.Module):
    """Figure 5 (right): 1x1 reduce, 3x3, 1x1 expand to ``planes * 4``, each with BN; ReLU after
    the first two and after the addition.

    The 3x3 has ``int(planes * base_width / 64) * groups`` channels in ``groups`` groups (ResNeXt
    Figure 3(c) / Table 1: "32x4d" is ``groups=32, base_width=4``; plain ResNet is 1 and 64).
    ``stride_on_3x3`` puts a downsampling block's stride on the 3x3 (v1.5, torchvision);
    False puts it on the first 1x1 as in the paper (Table 1's FLOPs). ``halve_first_1x1``
    halves the first 1x1's output (SENet-154, Hu et al. 2018, Appendix). ``se_reduction`` and
    ``drop_path_rate`` as in ``BasicBlock``. Attribute names are torchvision's.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        groups: int = 1,
        base_width: int = 64,
        stride_on_3x3: bool = True,
        halve_first_1x1: bool = False,
        se_reduction: int | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        width = int(planes * base_width / 64) * groups
        if width < groups:
            raise ValueError(f"bottleneck width {width} is smaller than groups={groups}")
        reduced = width // 2 if halve_first_1x1 else width
        if reduced % groups:
            raise ValueError(f"first 1x1 width {reduced} does not split into groups={groups}")
        out_channels = planes * self.expansion
        self.conv1 = conv1x1(in_channels, reduced, 1 if stride_on_3x3 else stride)
        self.bn1 = nn.BatchNorm2d(reduced)
        self.conv2 = conv3x3(reduced, width, stride if stride_on_3x3 else 1, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.se = (
            SqueezeExcitation(out_channels, out_channels // se_reduction) if se_reduction else None
        )
        self.downsample = downsample
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return self.relu(self.drop_path(out) + shortcut)


class PreActBasicBlock(nn.Module):
    """Full pre-activation unit (He et al. 2016, Figure 4(e)): BN, ReLU, 3x3 conv, BN, ReLU,
    3x3 conv, added to the shortcut; nothing after the addition.

    ``downsample`` sees the pre-activated input, as the paper's projection shortcuts do
    (Appendix: "these projection shortcuts are also with pre-activation"); so does option A's
    zero-padding shortcut of the CIFAR nets (our choice: the paper does not say). ``dropout`` between
    the two convs is Wide ResNet's wide-dropout block (Zagoruyko & Komodakis 2016, §2.4,
    Figure 1(d)).
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        return self.drop_path(out) + shortcut


class PreActBottleneck(nn.Module):
    """Full pre-activation bottleneck (He et al. 2016, Figure 4(e) with Figure 5's 1x1-3x3-1x1
    of the 2015 paper): BN, ReLU, 1x1; BN, ReLU, 3x3; BN, ReLU, 1x1 to ``planes * 4``.

    ``groups``, ``base_width`` and ``stride_on_3x3`` as in ``Bottleneck``; the shortcut as in
    ``PreActBasicBlock``.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        groups: int = 1,
        base_width: int = 64,
        stride_on_3x3: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        width = int(planes * base_width / 64) * groups
        if width < groups:
            raise ValueError(f"bottleneck width {width} is smaller than groups={groups}")
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv1x1(in_channels, width, 1 if stride_on_3x3 else stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride if stride_on_3x3 else 1, groups)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return self.drop_path(out) + shortcut


# (in_channels, planes, stride, downsample, drop_path_rate=) -> block
BlockFactory = Callable[..., nn.Module]
# (in_channels, out_channels, stride) -> shortcut module
ShortcutFactory = Callable[[int, int, int], nn.Module]


def projection_shortcut(
    in_channels: int, out_channels: int, stride: int, *, kernel_size: int = 1, batch_norm: bool = True
) -> nn.Module:
    """Option B's projection (§3.3): a strided 1x1 conv, then BN (``downsample.0``/``.1`` as in
    torchvision). Without BN for pre-activation units, whose shortcut input is already
    normalised (He et al. 2016, Appendix)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if batch_norm else conv


def drop_path_schedule(drop_path_rate: float, num_blocks: int) -> list[float]:
    """Stochastic depth's linear decay (Huang et al. 2016, eq. 4): block l of L survives with
    p_l = 1 - l/L (1 - p_L), i.e. drops with l/L * ``drop_path_rate`` where the rate is 1 - p_L."""
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    return [drop_path_rate * layer / num_blocks for layer in range(1, num_blocks + 1)]


def make_stage(
    block: BlockFactory,
    in_channels: int,
    planes: int,
    out_channels: int,
    num_blocks: int,
    stride: int,
    shortcut: ShortcutFactory,
    drop_path_rates: Sequence[float],
) -> nn.Sequential:
    """``num_blocks`` blocks; the first one strides and gets a ``shortcut`` if the grid or the
    width changes, the others keep identity shortcuts."""
    blocks = []
    for i in range(num_blocks):
        s = stride if i == 0 else 1
        downsample = shortcut(in_channels, out_channels, s) if s != 1 or in_channels != out_channels else None
        blocks.append(block(in_channels, planes, s, downsample, drop_path_rate=drop_path_rates[i]))
        in_channels = out_channels
    return nn.Sequential(*blocks)


class Table1Column(NamedTuple):
    """One column of Table 1: the block and the number of blocks in conv2_x ... conv5_x."""

    block: type[BasicBlock] | type[Bottleneck]
    blocks: tuple[int, int, int, int]
    flops: float | None  # the "FLOPs" row, 1e9 multiply-adds, stride on the first 1x1


class Table1Row(NamedTuple):
    """A row of Table 1 below conv1: its name, output size at 224x224, the 3x3 width and the
    stride of its first block (conv2_x follows the 3x3/2 max pool; §3.4: "downsampling is
    performed by conv3_1, conv4_1, and conv5_1 with a stride of 2")."""

    layer_name: str
    output_size: int
    planes: int
    stride: int


TABLE_1_ROWS = (
    Table1Row("conv2_x", 56, 64, 1),
    Table1Row("conv3_x", 28, 128, 2),
    Table1Row("conv4_x", 14, 256, 2),
    Table1Row("conv5_x", 7, 512, 2),
)

TABLE_1: dict[int, Table1Column] = {
    18: Table1Column(BasicBlock, (2, 2, 2, 2), 1.8),
    34: Table1Column(BasicBlock, (3, 4, 6, 3), 3.6),
    50: Table1Column(Bottleneck, (3, 4, 6, 3), 3.8),
    101: Table1Column(Bottleneck, (3, 4, 23, 3), 7.6),
    152: Table1Column(Bottleneck, (3, 8, 36, 3), 11.3),
    # Not in Table 1: ResNet-200 of "Identity Mappings" (He et al. 2016, Table 5), with the
    # layout of fb.resnet.torch (and pytorchcv's preresnet200): 3, 24, 36, 3 bottlenecks.
    200: Table1Column(Bottleneck, (3, 24, 36, 3), None),
}

_PREACT = {BasicBlock: PreActBasicBlock, Bottleneck: PreActBottleneck}


class ResNet(ConvNet):
    """The ImageNet ResNet of depth ``depth`` (Table 1), and its relatives by argument.

    ``groups``/``base_width``: ResNeXt's cardinality and per-group width (bottlenecks only).
    ``stride_on_3x3``: v1.5 (True, torchvision) or the paper's v1 (False). ``preact``: He et al.
    2016's pre-activation units with a final BN-ReLU. ``se_reduction``: SENet's r (None: no SE).
    ``deep_stem``, ``halve_first_1x1`` and ``downsample_kernel=3``: SENet-154's changes (see
    ``senet.py``). ``dropout`` before the classifier; ``drop_path_rate`` = 1 - p_L of stochastic
    depth. Module names follow torchvision (``conv1``, ``bn1``, ``layer1`` ... ``fc``), so the
    torchvision-named variants load its state dicts.
    """

    # Every conv and pool pads, and the head pools adaptively: any input of 1x1 or more works.
    min_input_size = 1
    classifier_name = "fc"

    def __init__(
        self,
        *,
        depth: int,
        num_classes: int = 1000,
        in_channels: int = 3,
        groups: int = 1,
        base_width: int = 64,
        stride_on_3x3: bool = True,
        preact: bool = False,
        se_reduction: int | None = None,
        deep_stem: bool = False,
        halve_first_1x1: bool = False,
        downsample_kernel: int = 1,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if depth not in TABLE_1:
            raise ValueError(f"unknown ResNet depth {depth}; choose one of {', '.join(map(str, TABLE_1))}")
        column = TABLE_1[depth]
        bottleneck = column.block is Bottleneck
        if groups < 1 or base_width < 1:
            raise ValueError(f"groups and base_width must be positive, got {groups} and {base_width}")
        if not bottleneck and (groups != 1 or base_width != 64 or halve_first_1x1):
            raise ValueError(
                f"ResNet-{depth} uses basic blocks: groups=1, base_width=64 and no halve_first_1x1 only"
            )
        if preact and (se_reduction or halve_first_1x1 or deep_stem):
            raise ValueError("preact=True supports neither SE, deep_stem nor halve_first_1x1")
        if se_reduction is not None and se_reduction < 1:
            raise ValueError(f"se_reduction must be a positive integer or None, got {se_reduction}")
        if downsample_kernel not in (1, 3):
            raise ValueError(f"downsample_kernel must be 1 or 3, got {downsample_kernel}")
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes = in_channels, num_classes

        # conv1: "7x7, 64, stride 2" then "3x3 max pool, stride 2" (Table 1).
        if deep_stem:
            # SENet-154 (Hu et al. 2018, Appendix): three 3x3 convs (64, 64, 128) replace the 7x7.
            self.conv1: nn.Module = nn.Sequential(
                conv3x3(in_channels, 64, stride=2), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                conv3x3(64, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                conv3x3(64, 128),
            )
            stem_channels = 128
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, padding=3, bias=False)
            stem_channels = 64
        # With preact the stem keeps its BN-ReLU and the first unit pre-activates again, as in
        # pytorchcv's preresnet; the paper does not draw the ImageNet stem.
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        # Deviation for the SENet variants: the released Caffe models (Cadene's port) pool
        # 3x3/2 unpadded in ceil mode; the same 56x56 at 224, with windows shifted by a pixel.
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        if preact:
            block: BlockFactory = functools.partial(
                _PREACT[column.block], **({"groups": groups, "base_width": base_width,
                                             "stride_on_3x3": stride_on_3x3} if bottleneck else {}),
            )
        elif bottleneck:
            block = functools.partial(
                Bottleneck, groups=groups, base_width=base_width, stride_on_3x3=stride_on_3x3,
                halve_first_1x1=halve_first_1x1, se_reduction=se_reduction,
            )
        else:
            block = functools.partial(BasicBlock, se_reduction=se_reduction)

        def shortcut(cin: int, cout: int, stride: int) -> nn.Module:
            # SENet-154 (Appendix): 3x3 stride-2 projections; the stride-1 one of conv2_1 stays 1x1.
            kernel = downsample_kernel if stride > 1 else 1
            return projection_shortcut(cin, cout, stride, kernel_size=kernel, batch_norm=not preact)

        rates = drop_path_schedule(drop_path_rate, sum(column.blocks))
        channels, done = stem_channels, 0
        for index, (row, num_blocks) in enumerate(zip(TABLE_1_ROWS, column.blocks), start=1):
            out_channels = row.planes * column.block.expansion
            stage = make_stage(
                block, channels, row.planes, out_channels, num_blocks, row.stride, shortcut,
                rates[done:done + num_blocks],
            )
            setattr(self, f"layer{index}", stage)
            channels, done = out_channels, done + num_blocks
        self.num_features = channels
        # Pre-activation nets end with BN-ReLU, as nothing follows the last addition (He 2016).
        self.final_bn = nn.BatchNorm2d(channels) if preact else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.final_bn is not None:
            x = self.relu(self.final_bn(x))
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


class Variant(NamedTuple):
    """A registered ImageNet ResNet. Fields set to a value are fixed by the name; ``None``
    leaves the argument a knob of that variant (``groups``/``base_width`` of plain ResNets,
    ``dropout``, ``drop_path_rate``)."""

    depth: int
    paper: Paper
    family: str = "ResNet"
    stride_on_3x3: bool = True
    groups: int | None = None
    base_width: int | None = None
    preact: bool = False
    se_reduction: int | None = None
    deep_stem: bool = False
    halve_first_1x1: bool = False
    downsample_kernel: int = 1
    dropout: float | None = None
    drop_path_rate: float | None = None


_ALWAYS_FIXED = (
    "depth", "stride_on_3x3", "preact", "se_reduction", "deep_stem", "halve_first_1x1", "downsample_kernel",
)
_KNOBS = ("groups", "base_width", "dropout", "drop_path_rate")


def register_variants(variants: dict[str, Variant]) -> None:
    """Register each ``ResNet`` variant at 3x224x224 with 1000 classes."""
    for name, v in variants.items():
        fixed = {key: getattr(v, key) for key in _ALWAYS_FIXED}
        fixed.update({key: getattr(v, key) for key in _KNOBS if getattr(v, key) is not None})
        register_model(name, ResNet, family=v.family, paper=v.paper, input_size=(3, 224, 224), **fixed)


_BASIC = {"groups": 1, "base_width": 64}  # basic blocks have neither knob
_PRE = {"paper": PREACT_PAPER, "family": "Pre-activation ResNet", "stride_on_3x3": False, "preact": True}

_VARIANTS: dict[str, Variant] = {
    # torchvision's v1.5: stride on the 3x3.
    "resnet18": Variant(18, PAPER, **_BASIC),
    "resnet34": Variant(34, PAPER, **_BASIC),
    "resnet50": Variant(50, PAPER),
    "resnet101": Variant(101, PAPER),
    "resnet152": Variant(152, PAPER),
    # The paper's placement: Table 1's 3.8, 7.6 and 11.3 GFLOPs.
    "resnet50_v1": Variant(50, PAPER, stride_on_3x3=False),
    "resnet101_v1": Variant(101, PAPER, stride_on_3x3=False),
    "resnet152_v1": Variant(152, PAPER, stride_on_3x3=False),
    # ResNet-200 with the original units: He et al. 2016, Table 5's baseline.
    "resnet200_v1": Variant(200, PREACT_PAPER, stride_on_3x3=False),
    # Huang et al. 2016, §4 (ImageNet): ResNet-152 with p_L = 0.5; torchvision's v1.5 layout
    # (the paper does not say where the stride sits).
    "resnet152_sd": Variant(152, SD_PAPER, drop_path_rate=0.5),
    # Wide ResNet-50-2 / 101-2 as torchvision defines them: the bottleneck's 3x3 twice as wide.
    "wide_resnet50_2": Variant(50, WRN_PAPER, family="Wide ResNet", groups=1, base_width=128),
    "wide_resnet101_2": Variant(101, WRN_PAPER, family="Wide ResNet", groups=1, base_width=128),
    # ResNeXt (Xie et al. 2017, Table 1 "32x4d" and §5.1's 101-layer variants), stride on the
    # 3x3 as in torchvision and the authors' fb.resnet.torch-based code.
    "resnext50_32x4d": Variant(50, RESNEXT_PAPER, family="ResNeXt", groups=32, base_width=4),
    "resnext101_32x4d": Variant(101, RESNEXT_PAPER, family="ResNeXt", groups=32, base_width=4),
    "resnext101_32x8d": Variant(101, RESNEXT_PAPER, family="ResNeXt", groups=32, base_width=8),
    "resnext101_64x4d": Variant(101, RESNEXT_PAPER, family="ResNeXt", groups=64, base_width=4),
    # Pre-activation (He et al. 2016). Stride on the first 1x1 as in the 2015 paper and pytorchcv's
    # preresnet50 ... (its "b" variants move it to the 3x3).
    "preact_resnet50": Variant(50, **_PRE),
    "preact_resnet101": Variant(101, **_PRE),
    "preact_resnet152": Variant(152, **_PRE),
    "preact_resnet200": Variant(200, **_PRE),
}

register_variants(_VARIANTS)
