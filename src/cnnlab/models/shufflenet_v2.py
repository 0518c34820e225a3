"""ShuffleNet V2: Ma, Zhang, Zheng, Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", ECCV 2018, https://arxiv.org/abs/1807.11164.

What it contributes: FLOPs are an indirect measure of speed (§1-2); memory access cost and
parallelism matter too. Four guidelines follow (§2): equal input/output widths minimise memory
access (G1), group convolutions cost memory access (G2), fragmentation reduces parallelism
(G3), element-wise operations are not free (G4). The unit that obeys them (§3, Fig. 3c/d):
*channel split* - half of the channels pass through untouched, the other half go through
1x1 conv -> 3x3 depthwise conv -> 1x1 conv, all of the same width and ungrouped; the halves are
*concatenated* (no add) and *channel-shuffled* with 2 groups so that the next unit splits a
mixture. The stride-2 unit (Fig. 3d) has no split: both branches see the whole input (one of
them a 3x3/2 depthwise + 1x1 conv), doubling the width. Table 5 is the network at four widths.

Three families of networks live here:

* ``shufflenet_v2_x0_5`` ... ``x2_0``: Table 5, identical to torchvision's (same module names
  and state-dict keys; ``tests/test_torchvision_compat.py`` compares outputs).
* ``shufflenet_v2_50``: the paper's 50-layer model (the large-model results table, Table 6 in
  the ECCV version: 2.3 GFLOPs, 22.8 % top-1 error), "details in Appendix". The appendix table
  was not available when this was written; what is built is the closest documented form, every
  assumption marked at its line: ShuffleNet V2 units in ResNet-50's layout (3, 4, 6, 3 units at 56, 28, 14,
  7 pixels: "a 50-layer ShuffleNet v2 ... with the counterpart of ... ResNet-50"), the 2x
  model's widths continued by doubling (244 ... 1952) and its 1x1 conv to 2048. It has 2.304 G
  multiply-adds (the paper: 2.3 G) and 16.6 M parameters (the paper gives none).
* ``se_shufflenet_v2_164``: "SE-ShuffleNet v2-164 (ours, with residual)", 12.7 GFLOPs, 18.56 %
  top-1. Built from the authors' released code for it (megvii-model/ShuffleNet-Series,
  ShuffleNetV2.Large/network.py: README 12.7 G FLOPs, 140.7 M params, 18.56 % top-1, and
  3 + 53 x 3 + 1 + 1 = 164 weighted layers). Ours: 12.78 G multiply-adds; 125.1 M parameters,
  140.7 M with the three auxiliary heads of that code (``aux_logits=True``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet, check_probability
from cnnlab.models.layers import ConvBNAct, SqueezeExcitation, channel_shuffle, init_weights
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
    "Ma, Zhang, Zheng, Sun", 2018, "https://arxiv.org/abs/1807.11164",
)


# --- Blocks ----------------------------------------------------------------------------------


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


def _pointwise(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, bias=False)


class InvertedResidual(nn.Module):
    """The ShuffleNet V2 unit (§3, Fig. 3c; Fig. 3d when ``two_branches``).

    Fig. 3c (``two_branches=False``): split the input in halves; ``branch2`` on the second half
    (1x1 conv BN ReLU, 3x3 depthwise BN, 1x1 conv BN ReLU); concatenate with the untouched first
    half; channel shuffle with 2 groups. Fig. 3d (``two_branches=True``, the first unit of a stage):
    no split - ``branch1`` (3x3 depthwise BN, 1x1 conv BN ReLU) and ``branch2`` both take the
    whole input, each producing half of ``out_channels``. The name and the ``nn.Sequential``
    layouts are torchvision's, so state dicts load unchanged.

    Fig. 3d has stride 2; ``two_branches`` with stride 1 is the first unit of the 56x56 stage of
    ``shufflenet_v2_50`` (ResNet-50's conv2_x does not downsample but widens 64 -> 244).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, two_branches: bool | None = None) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleNet V2 unit stride must be 1 or 2, got {stride}")
        two_branches = stride == 2 if two_branches is None else two_branches
        if out_channels % 2:
            raise ValueError(f"ShuffleNet V2 unit width must be even (two halves), got {out_channels}")
        if not two_branches and (stride != 1 or in_channels != out_channels):
            raise ValueError(
                f"a split (Fig. 3c) unit keeps width and resolution, "
                f"got {in_channels} -> {out_channels}, stride {stride}"
            )
        half = out_channels // 2
        self.stride, self.two_branches = stride, two_branches
        if two_branches:
            self.branch1: nn.Module = nn.Sequential(
                _depthwise(in_channels, stride), nn.BatchNorm2d(in_channels),
                _pointwise(in_channels, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()  # the identity half (torchvision keeps an empty Sequential)
        self.branch2 = nn.Sequential(
            _pointwise(in_channels if two_branches else half, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            _depthwise(half, stride), nn.BatchNorm2d(half),  # §3: no ReLU after the depthwise conv
            _pointwise(half, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.two_branches:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        else:
            x1, x2 = x.chunk(2, dim=1)  # channel split (§3)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        return channel_shuffle(out, 2)


class ResidualSEUnit(nn.Module):
    """The unit of SE-ShuffleNet v2-164 (Appendix: "ShuffleNet v2 with SE and residual"), as in
    the authors' ShuffleNetV2.Large code. Facts from that code, not the paper, are marked.

    Split the input into its even and odd channels (the authors' fused shuffle-and-split; the same
    as ``channel_shuffle(x, C / 2)`` and taking halves). The odd half goes through ``main``
    (1x1 conv BN ReLU, 3x3 *group* conv with 8 groups BN ReLU, 1x1 conv BN), then ``se``, then -
    in units without ``proj`` - adds the odd half back (the residual path). The even half passes
    through untouched, or through ``proj`` (3x3 conv BN, stride ``stride``) in a stage's first unit.
    ReLU after the concatenation; after a stride-2 unit a 1x1 conv BN ReLU (``down``) mixes the
    doubled width.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, first: bool, groups: int = 8) -> None:
        super().__init__()
        if in_channels % 2 or out_channels % 2:
            raise ValueError(f"unit widths must be even, got {in_channels} -> {out_channels}")
        half_in, half_out = in_channels // 2, out_channels // 2
        if not first and (stride != 1 or half_in != half_out):
            raise ValueError("only a stage's first unit changes width or resolution")
        self.first = first
        # Authors' code: 3x3 conv + BN, no ReLU, on the passing half of a stage's first unit.
        self.proj: nn.Module = (
            ConvBNAct(half_in, half_out, 3, stride, 1, activation=None) if first else nn.Identity()
        )
        self.main = nn.Sequential(
            ConvBNAct(half_in, half_out, 1),
            # Authors' code: a 3x3 group conv (8 groups) with ReLU, not a depthwise conv.
            ConvBNAct(half_out, half_out, 3, stride, 1, groups=groups),
            ConvBNAct(half_out, half_out, 1, activation=None),
        )
        # Authors' code: SE with two full-width FC layers (no reduction), ReLU and sigmoid.
        self.se = SqueezeExcitation(half_out, half_out)
        self.act = nn.ReLU(inplace=True)
        # Authors' code: 1x1 conv BN ReLU over the concatenation after a stride-2 unit.
        self.down: nn.Module = ConvBNAct(out_channels, out_channels, 1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        passing, x = channel_shuffle(x, x.shape[1] // 2).chunk(2, dim=1)  # even / odd channels
        out = self.se(self.main(x))
        if not self.first:
            out = out + x  # the residual path ("with residual")
        return self.down(self.act(torch.cat((self.proj(passing), out), dim=1)))


class AuxHead(nn.Module):
    """The authors' extra label predictor of ShuffleNetV2.Large: 3x3/2 max-pool, 1x1 conv BN ReLU,
    3x3 conv BN ReLU, global pool, FC. Training only; losses weighted 0.3 / 0.5 / 0.7 at the
    56 / 28 / 14 pixel heads (1.0 for the main classifier)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.conv = nn.Sequential(ConvBNAct(channels, channels, 1), ConvBNAct(channels, channels, 3))
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.pool(x)).mean((2, 3)))


# --- The tables --------------------------------------------------------------------------------


class Stage(NamedTuple):
    """A stage: ``units`` units, the first of which (Fig. 3d) has ``stride`` and two branches."""

    name: str
    out_channels: int
    units: int
    stride: int = 2


class Config(NamedTuple):
    conv1_channels: int  # Conv1, 3x3/2 (then a 3x3/2 max-pool)
    stages: tuple[Stage, ...]
    conv5_channels: int | None  # the 1x1 conv before global pooling (None: none)


def _table5(stage2: int, stage3: int, stage4: int, conv5: int) -> Config:
    # Table 5, "Repeat": 1 + 3, 1 + 7, 1 + 3 units.
    return Config(24, (Stage("stage2", stage2, 4), Stage("stage3", stage3, 8), Stage("stage4", stage4, 4)), conv5)


# Table 5, "Output channels": one column per width.
TABLE_5: dict[float, Config] = {
    #            Stage2 Stage3 Stage4 Conv5
    0.5: _table5(48, 96, 192, 1024),
    1.0: _table5(116, 232, 464, 1024),
    1.5: _table5(176, 352, 704, 1024),
    2.0: _table5(244, 488, 976, 2048),
}

# ShuffleNet v2-50 (Table 6, 2.3 GFLOPs). ASSUMPTIONS (the appendix table is not reproduced here),
# chosen as the closest documented form; together they give 2.304 G multiply-adds, the paper's 2.3 G:
V2_50 = Config(
    conv1_channels=64,  # assumption: ResNet-50's stem width, as a 3x3/2 conv like Table 5's Conv1
    stages=(
        # assumption: ResNet-50's layout, 3-4-6-3 units at 56/28/14/7 ("a 50-layer ShuffleNet v2 ...
        # the counterpart of ... ResNet-50", §5); widths: the 2x model's 244/488/976 (Table 5)
        # continued by doubling.
        Stage("stage2", 244, 3, stride=1),  # ResNet-50's conv2_x keeps 56x56 (after the max-pool)
        Stage("stage3", 488, 4),
        Stage("stage4", 976, 6),
        Stage("stage5", 1952, 3),
    ),
    conv5_channels=2048,  # assumption: Table 5's 2x head (1x1 conv to 2048) before pooling
)


class LargeStage(NamedTuple):
    """A stage of ShuffleNetV2.Large: ``units`` residual SE units, the first with ``stride``."""

    name: str
    out_channels: int
    units: int
    stride: int


# The authors' ShuffleNetV2.Large (= SE-ShuffleNet v2-164): stage_repeats [10, 10, 23, 10],
# units of 2 x mid_outputs [64, 128, 256, 512] per half, stride in all but the first stage.
SE_V2_164_STAGES: tuple[LargeStage, ...] = (
    LargeStage("stage2", 256, 10, stride=1),
    LargeStage("stage3", 512, 10, stride=2),
    LargeStage("stage4", 1024, 23, stride=2),
    LargeStage("stage5", 2048, 10, stride=2),
)
SE_V2_164_STEM: tuple[int, ...] = (64, 64, 128)  # three 3x3 convs, the first with stride 2
SE_V2_164_LAST_CONV = 1280  # 3x3 conv BN ReLU before global pooling
# Heads after these stages, with the authors' loss weights (main classifier: 1.0).
SE_V2_164_AUX: dict[str, float] = {"stage2": 0.3, "stage3": 0.5, "stage4": 0.7}


# --- The models --------------------------------------------------------------------------------


class _ShuffleNetV2Base(ConvNet):
    """Conv1 -> max-pool -> stages of ``InvertedResidual`` -> [Conv5] -> global pool -> FC."""

    min_input_size = 1  # every stride-2 layer is 3x3 with padding 1 (torchvision: min_size 1x1)
    classifier_name = "fc"

    def __init__(self, config: Config, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        channels = config.conv1_channels
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage_names = tuple(stage.name for stage in config.stages)
        for stage in config.stages:
            units = [InvertedResidual(channels, stage.out_channels, stage.stride, two_branches=True)]
            units += [InvertedResidual(stage.out_channels, stage.out_channels, 1) for _ in range(stage.units - 1)]
            self.add_module(stage.name, nn.Sequential(*units))
            channels = stage.out_channels
        if config.conv5_channels is not None:
            self.conv5: nn.Module = nn.Sequential(
                nn.Conv2d(channels, config.conv5_channels, 1, bias=False),
                nn.BatchNorm2d(config.conv5_channels), nn.ReLU(inplace=True),
            )
            channels = config.conv5_channels
        else:
            self.conv5 = nn.Identity()
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        # The stages in registration order (a loop over named children compiles with
        # TorchScript; ``get_submodule(name)`` does not).
        for name, module in self.named_children():
            if name in self.stage_names:
                x = module(x)
        return self.conv5(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))  # GlobalPool


class ShuffleNetV2(_ShuffleNetV2Base):
    """ShuffleNet V2 of Table 5; ``width_mult`` picks the column (0.5, 1, 1.5, 2)."""

    def __init__(self, *, width_mult: float = 1.0, num_classes: int = 1000, in_channels: int = 3) -> None:
        if width_mult not in TABLE_5:
            raise ValueError(f"width_mult must be one of {sorted(TABLE_5)} (Table 5 columns), got {width_mult!r}")
        super().__init__(TABLE_5[width_mult], num_classes, in_channels)


class ShuffleNetV2_50(_ShuffleNetV2Base):
    """ShuffleNet v2-50 (Table 6): ShuffleNet V2 units in ResNet-50's layout (see ``V2_50``)."""

    def __init__(self, *, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__(V2_50, num_classes, in_channels)


class SEShuffleNetV2Outputs(NamedTuple):
    """Training-mode output with ``aux_logits``: the main logits and the three extra heads'."""

    logits: torch.Tensor
    aux_14: torch.Tensor  # after stage4 (14x14 at 224), loss weight 0.7
    aux_28: torch.Tensor  # after stage3, loss weight 0.5
    aux_56: torch.Tensor  # after stage2, loss weight 0.3


class SEShuffleNetV2_164(ConvNet):
    """SE-ShuffleNet v2-164 (Table 6, "with residual"), from the authors' ShuffleNetV2.Large.

    Stem: three 3x3 convs (64/2, 64, 128) and a 3x3/2 max-pool; 53 ``ResidualSEUnit`` s in four
    stages (10, 10, 23, 10); a 3x3 conv to 1280; global pool; dropout 0.2; FC. With ``aux_logits``
    a training-mode forward also returns the three extra heads' logits (``SEShuffleNetV2Outputs``),
    as the authors train it; eval mode and ``aux_logits=False`` return the logits only.
    """

    min_input_size = 1  # all strided layers are 3x3 with padding 1
    classifier_name = "fc"

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        aux_logits: bool = False,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        check_probability("dropout", dropout)
        self.in_channels, self.num_classes, self.aux_logits = in_channels, num_classes, aux_logits
        stem: list[nn.Module] = []
        channels = in_channels
        for i, width in enumerate(SE_V2_164_STEM):
            # Deviation: the authors' BN eps is 1e-9; PyTorch's default 1e-5 here (counts unaffected).
            stem.append(ConvBNAct(channels, width, 3, 2 if i == 0 else 1, 1))
            channels = width
        self.stem = nn.Sequential(*stem)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage_names = tuple(stage.name for stage in SE_V2_164_STAGES)
        for stage in SE_V2_164_STAGES:
            units = []
            for i in range(stage.units):
                units.append(ResidualSEUnit(channels, stage.out_channels, stage.stride if i == 0 else 1, first=i == 0))
                channels = stage.out_channels
            self.add_module(stage.name, nn.Sequential(*units))
            if aux_logits and stage.name in SE_V2_164_AUX:
                self.add_module(f"aux_{stage.name}", AuxHead(stage.out_channels, num_classes))
        self.conv_last = ConvBNAct(channels, SE_V2_164_LAST_CONV, 3)
        self.num_features = SE_V2_164_LAST_CONV
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(SE_V2_164_LAST_CONV, num_classes)
        init_weights(self)

    def _features_and_aux(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.maxpool(self.stem(x))
        aux: list[torch.Tensor] = []
        for name in self.stage_names:
            x = self.get_submodule(name)(x)
            if with_aux and name in SE_V2_164_AUX:
                aux.append(self.get_submodule(f"aux_{name}")(x))
        return self.conv_last(x), aux

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features_and_aux(x, with_aux=False)[0]

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x.mean((2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor | SEShuffleNetV2Outputs:  # type: ignore[override]
        self.check_input(x)
        with_aux = self.aux_logits and self.training
        features, aux = self._features_and_aux(x, with_aux)
        logits = self.forward_head(features)
        if with_aux:
            aux_56, aux_28, aux_14 = aux
            return SEShuffleNetV2Outputs(logits, aux_14, aux_28, aux_56)
        return logits

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final FC and, if present, the auxiliary heads' FCs."""
        super().reset_classifier(num_classes)
        for name in SE_V2_164_AUX:
            if hasattr(self, f"aux_{name}"):
                head = self.get_submodule(f"aux_{name}")
                old = head.fc
                head.fc = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)


# --- Registration ------------------------------------------------------------------------------

for _name, _width in (("shufflenet_v2_x0_5", 0.5), ("shufflenet_v2_x1_0", 1.0),
                      ("shufflenet_v2_x1_5", 1.5), ("shufflenet_v2_x2_0", 2.0)):
    register_model(
        _name, ShuffleNetV2, family="ShuffleNet V2", paper=PAPER, input_size=(3, 224, 224), width_mult=_width
    )
register_model("shufflenet_v2_50", ShuffleNetV2_50, family="ShuffleNet V2", paper=PAPER, input_size=(3, 224, 224))
register_model(
    "se_shufflenet_v2_164", SEShuffleNetV2_164, family="ShuffleNet V2", paper=PAPER, input_size=(3, 224, 224)
)
