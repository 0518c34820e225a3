"""ResNets for CIFAR (32x32 inputs, 10 or 100 classes): the 2015 paper's §4.2 networks and the
residual family's later CIFAR networks, all on the blocks of ``resnet.py``.

* He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", 2015,
  https://arxiv.org/abs/1512.03385, §4.2: a 3x3 conv with 16 filters, then 3 stages of n basic
  blocks on 32x32, 16x16 and 8x8 maps with 16, 32 and 64 filters, global average pooling and a
  10-way FC: 6n + 2 weighted layers (ResNet-20 ... ResNet-1202). The shortcuts are identities
  everywhere, "option A" where the width doubles: the input subsampled by 2 and padded with
  zero channels, so the network has no shortcut parameters (§4.2, §3.3).
* He et al. 2016, "Identity Mappings in Deep Residual Networks", https://arxiv.org/abs/1603.05027:
  the same layout with pre-activation units; ResNet-164 and ResNet-1001 use bottlenecks
  (9n + 2 layers, widths 64, 128, 256) with pre-activated projection shortcuts (Appendix).
* Huang et al. 2016, "Deep Networks with Stochastic Depth", https://arxiv.org/abs/1603.09382:
  ResNet-110 whose residual branches drop with linearly rising probability, p_L = 0.5 (§4).
* Zagoruyko & Komodakis 2016, "Wide Residual Networks", https://arxiv.org/abs/1605.07146:
  WRN-d-k, pre-activation basic blocks k times wider (16k, 32k, 64k; Table 1), n = (d - 4) / 6
  blocks per stage, optional dropout between the two convs (§2.4).
* Xie et al. 2017, "Aggregated Residual Transformations", https://arxiv.org/abs/1611.05431,
  §5.3: ResNeXt-29, 3 stages of 3 bottlenecks (outputs 256, 512, 1024) whose grouped 3x3 has
  cardinality c and width d per group, doubling per stage ("8x64d").
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import ConvNet, check_positive_int, check_probability, units_for_depth
from cnnlab.models.layers import init_weights
from cnnlab.models.resnet import (
    PAPER,
    PREACT_PAPER,
    RESNEXT_PAPER,
    SD_PAPER,
    WRN_PAPER,
    BasicBlock,
    BlockFactory,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ShortcutFactory,
    conv3x3,
    drop_path_schedule,
    make_stage,
    projection_shortcut,
)
from cnnlab.registry import register_model, register_pattern

__all__ = [
    "CifarResNet", "ZeroPadShortcut", "preact_resnet_cifar", "resnet_cifar", "resnext_cifar",
    "wide_resnet_cifar",
]

SHORTCUTS = ("A", "B")


class ZeroPadShortcut(nn.Module):
    """Option A (§3.3, §4.2): "the shortcut still performs identity mapping, with extra zero
    entries padded for increasing dimensions", subsampling by taking every ``stride``-th pixel.
    No parameters. The zero channels are appended after the input's, as in fb.resnet.torch."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A cannot reduce {in_channels} channels to {out_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, stride={self.stride}"


class CifarResNet(ConvNet):
    """§4.2's layout: 3x3 stem, three stages (strides 1, 2, 2), global pool, FC.

    ``block`` builds one residual block (``BasicBlock``, ``Bottleneck`` or their pre-activation
    forms, usually a ``functools.partial`` fixing its keyword arguments); ``stage_planes`` are
    the blocks' ``planes`` per stage. With ``preact`` the stem is a bare conv and the features
    end with BN-ReLU (He et al. 2016), otherwise the stem is conv-BN-ReLU. ``shortcut`` is
    "A" (zero-padding identity) or "B" (projection; conv + BN, or a bare conv for pre-activation
    units). Use the builders below (``resnet_cifar`` ...), which check the papers' depth rules.
    """

    # Every conv pads and the head pools adaptively: any input of 1x1 or more works.
    min_input_size = 1
    classifier_name = "fc"

    def __init__(
        self,
        *,
        block: BlockFactory,
        expansion: int,
        blocks_per_stage: int,
        stage_planes: tuple[int, int, int],
        stem_channels: int,
        preact: bool,
        shortcut: str,
        num_classes: int = 10,
        in_channels: int = 3,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        if blocks_per_stage < 1:
            raise ValueError(f"need at least one block per stage, got {blocks_per_stage}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.conv1 = conv3x3(in_channels, stem_channels)
        # Pre-activation: the first unit's BN-ReLU activates the stem conv (He et al. 2016).
        self.bn1 = None if preact else nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        make_shortcut: ShortcutFactory = (
            ZeroPadShortcut if shortcut == "A"
            else functools.partial(projection_shortcut, batch_norm=not preact)
        )
        rates = drop_path_schedule(drop_path_rate, 3 * blocks_per_stage)
        channels = stem_channels
        for index, planes in enumerate(stage_planes):
            out_channels = planes * expansion
            stage = make_stage(
                block, channels, planes, out_channels, blocks_per_stage, 1 if index == 0 else 2,
                make_shortcut, rates[index * blocks_per_stage:(index + 1) * blocks_per_stage],
            )
            setattr(self, f"layer{index + 1}", stage)
            channels = out_channels
        self.num_features = channels
        self.final_bn = nn.BatchNorm2d(channels) if preact else None
        # §4.2: "ends with a global average pooling, a 10-way fully-connected layer, and softmax".
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.final_bn is not None:
            x = self.relu(self.final_bn(x))
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _blocks_per_stage(depth: int, layers_per_block: int, extra: int) -> int:
    """n of a ``depth = 3 * layers_per_block * n + extra`` net: three stages of n blocks."""
    return units_for_depth(depth, 3 * layers_per_block, extra)


def resnet_cifar(
    *,
    depth: int,
    shortcut: str = "A",
    num_classes: int = 10,
    in_channels: int = 3,
    drop_path_rate: float = 0.0,
) -> CifarResNet:
    """He et al. 2015, §4.2: ResNet-``depth`` for CIFAR, depth = 6n + 2 (20, 32, 44, 56, 110,
    1202), widths 16, 32, 64, option A shortcuts unless ``shortcut="B"``."""
    n = _blocks_per_stage(depth, 2, 2)
    return CifarResNet(
        block=BasicBlock, expansion=1, blocks_per_stage=n, stage_planes=(16, 32, 64), stem_channels=16,
        preact=False, shortcut=shortcut, num_classes=num_classes, in_channels=in_channels,
        drop_path_rate=drop_path_rate,
    )


def preact_resnet_cifar(
    *,
    depth: int,
    bottleneck: bool,
    shortcut: str | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    drop_path_rate: float = 0.0,
) -> CifarResNet:
    """He et al. 2016: pre-activation ResNet-``depth`` for CIFAR. Basic blocks: depth = 6n + 2,
    widths 16, 32, 64 (ResNet-110); bottlenecks: depth = 9n + 2, outputs 64, 128, 256 (ResNet-164,
    -1001). ``shortcut`` defaults to the paper's: option A for basic blocks (as in the 2015
    paper), projections ("B") for bottlenecks (Appendix)."""
    if bottleneck:
        n = _blocks_per_stage(depth, 3, 2)
        # Stride on the 3x3, as in the authors' resnet-1k-layers code and pytorchcv.
        block: BlockFactory = functools.partial(PreActBottleneck, stride_on_3x3=True)
    else:
        n = _blocks_per_stage(depth, 2, 2)
        block = PreActBasicBlock
    return CifarResNet(
        block=block, expansion=4 if bottleneck else 1, blocks_per_stage=n, stage_planes=(16, 32, 64),
        stem_channels=16, preact=True, shortcut=shortcut or ("B" if bottleneck else "A"),
        num_classes=num_classes, in_channels=in_channels, drop_path_rate=drop_path_rate,
    )


def wide_resnet_cifar(
    *,
    depth: int,
    width_mult: int,
    dropout: float = 0.0,
    num_classes: int = 10,
    in_channels: int = 3,
    drop_path_rate: float = 0.0,
) -> CifarResNet:
    """Zagoruyko & Komodakis 2016: WRN-``depth``-k with k = ``width_mult`` (Table 1: stages of
    16k, 32k, 64k filters after a 16-filter 3x3 stem), depth = 6n + 4, pre-activation basic
    blocks B(3,3) with projection shortcuts where the width changes, ``dropout`` between the two
    convs of each block (§2.4; 0.3 in the paper's CIFAR dropout experiments, §3)."""
    n = _blocks_per_stage(depth, 2, 4)
    check_positive_int("width_mult (the widening factor k)", width_mult)
    check_probability("dropout", dropout)
    k = width_mult
    return CifarResNet(
        block=functools.partial(PreActBasicBlock, dropout=dropout), expansion=1, blocks_per_stage=n,
        stage_planes=(16 * k, 32 * k, 64 * k), stem_channels=16, preact=True, shortcut="B",
        num_classes=num_classes, in_channels=in_channels, drop_path_rate=drop_path_rate,
    )


def resnext_cifar(
    *,
    depth: int,
    groups: int,
    base_width: int,
    num_classes: int = 10,
    in_channels: int = 3,
    drop_path_rate: float = 0.0,
) -> CifarResNet:
    """Xie et al. 2017, §5.3: ResNeXt-``depth`` (9n + 2; 29) with cardinality ``groups`` and
    ``base_width`` channels per group in the first stage, doubling per stage ("8x64d":
    grouped 3x3s of 512, 1024, 2048 channels), outputs 256, 512, 1024, a 64-filter 3x3 stem
    and projection shortcuts (conv + BN)."""
    n = _blocks_per_stage(depth, 3, 2)
    if groups < 1 or base_width < 1:
        raise ValueError(f"groups and base_width must be positive, got {groups} and {base_width}")
    # Bottleneck's 3x3 width is int(planes * base_width / 64) * groups: planes 64, 128, 256
    # give base_width, 2 * base_width, 4 * base_width per group.
    block = functools.partial(Bottleneck, groups=groups, base_width=base_width, stride_on_3x3=True)
    return CifarResNet(
        block=block, expansion=4, blocks_per_stage=n, stage_planes=(64, 128, 256), stem_channels=64,
        preact=False, shortcut="B", num_classes=num_classes, in_channels=in_channels,
        drop_path_rate=drop_path_rate,
    )


_CIFAR = {"input_size": (3, 32, 32), "num_classes": 10}

for _depth in (20, 32, 44, 56, 110, 1202):
    register_model(f"resnet{_depth}_cifar", resnet_cifar, family="ResNet", paper=PAPER, **_CIFAR, depth=_depth)
# Huang et al. 2016, §4 (CIFAR-10): ResNet-110 with p_L = 0.5.
register_model(
    "resnet110_cifar_sd", resnet_cifar, family="ResNet", paper=SD_PAPER, **_CIFAR,
    depth=110, drop_path_rate=0.5,
)

for _depth, _bottleneck in ((110, False), (164, True), (1001, True)):
    register_model(
        f"preact_resnet{_depth}_cifar", preact_resnet_cifar, family="Pre-activation ResNet",
        paper=PREACT_PAPER, **_CIFAR, depth=_depth, bottleneck=_bottleneck,
    )

# WRN-d-k of the paper's CIFAR tables; any 6n + 4 depth and k builds with wide_resnet_cifar.
for _depth, _k in ((28, 10), (16, 10), (40, 4), (16, 8), (28, 12)):
    register_model(
        f"wrn{_depth}_{_k}_cifar", wide_resnet_cifar, family="Wide ResNet", paper=WRN_PAPER,
        **_CIFAR, depth=_depth, width_mult=_k,
    )

# ResNeXt-29 "c x d" (§5.3, Table 7 and Figure 7).
for _groups, _width in ((8, 64), (16, 64), (32, 4)):
    register_model(
        f"resnext29_{_groups}x{_width}d_cifar", resnext_cifar, family="ResNeXt", paper=RESNEXT_PAPER,
        **_CIFAR, depth=29, groups=_groups, base_width=_width,
    )

# Any valid depth (and width, cardinality) by name: resnet{6n+2}_cifar, wrn{6n+4}_{k}_cifar,
# resnext{9n+2}_{c}x{d}d_cifar. ``check`` rejects an invalid depth as soon as the name is looked
# up (``model_info`` too), with the builders' one-line error; the other integers are all valid.
register_pattern(
    "resnet{depth}_cifar", resnet_cifar, family="ResNet", paper=PAPER, **_CIFAR,
    check=lambda depth: _blocks_per_stage(depth, 2, 2),
)
register_pattern(
    "wrn{depth}_{width_mult}_cifar", wide_resnet_cifar, family="Wide ResNet", paper=WRN_PAPER, **_CIFAR,
    check=lambda depth, width_mult: _blocks_per_stage(depth, 2, 4),
)
register_pattern(
    "resnext{depth}_{groups}x{base_width}d_cifar", resnext_cifar, family="ResNeXt", paper=RESNEXT_PAPER,
    **_CIFAR, check=lambda depth, groups, base_width: _blocks_per_stage(depth, 3, 2),
)
