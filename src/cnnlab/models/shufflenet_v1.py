"""ShuffleNet (V1): Zhang, Zhou, Lin, Sun, "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018, https://arxiv.org/abs/1707.01083.

What it contributes: two operations that make 1x1 convolutions cheap enough for 10-150 MFLOPs
budgets. Pointwise *group* convolutions (§3.1) cut the cost of the 1x1 layers, which dominate a
ResNeXt/MobileNet-style bottleneck, by the number of groups g; a *channel shuffle* after them
(§3.1, Fig. 1: reshape the channels to (g, n), transpose, flatten) lets the next group
convolution see channels from every group, so information still flows across groups. The
ShuffleNet unit (§3.2, Fig. 2) is a residual bottleneck: 1x1 GConv -> BN ReLU -> shuffle ->
3x3 depthwise conv -> BN (no ReLU after the depthwise conv, §3.2) -> 1x1 GConv -> BN, added to
the input and followed by ReLU; the stride-2 unit (Fig. 2c) puts a 3x3/2 average pool on the
shortcut and *concatenates* instead of adding. Table 1 is the network for g = 1, 2, 3, 4, 8
(output widths chosen so that all keep ~140 MFLOPs); "ShuffleNet s×" scales every width by s
(§4.1), giving Tables 2 and 5's 0.25x ... 2x models.

The paper's "FLOPs" are multiply-adds (Table 1 caption). Facts the paper leaves
open follow the authors' code (megvii-model/ShuffleNet-Series, ShuffleNetV1/), and are marked at
the line: the stem width at other scales, the classifier without bias, and the divisibility
rounding for widths the authors never released. How each published complexity is reproduced,
and the residuals, are in ``tests/test_shufflenet_v1.py``:

* Table 1 (1x): 143/140/137/133/137 M are matched to the million when the FC layer is left out
  (ours with FC: 143.1/140.8/137.5/134.3/138.4 M, the models.csv values).
* Table 5 and the authors' README (with FC): 2x g=3 524 M, 1.5x g=3 292 M, 2x g=8 522 M,
  1.5x g=8 290 M, 1x g=3/g=8 138 M, 0.5x g=3 38 M, 0.5x g=8 40 M, all within 1 M.
* Table 2 (one budget per row: 1x ~140 M, 0.5x ~38 M, 0.25x ~13 M) within the row's own spread
  (Table 1 shows the 1x row spans 133-143 M), except g=8 at 0.5x (40.5 M: the authors' code for
  this very network, their README says 40 M) and at 0.25x (15.7 M: a 16-channel stem, see
  ``conv1_width``; the paper does not say what it used).
* SE (Table 5, 2x g=3 "with SE", 527 M): 526.5 M with SENet's placement and ratio (assumed).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from cnnlab.models.base import ConvNet
from cnnlab.models.layers import ChannelShuffle, ConvBNAct, SqueezeExcitation, init_weights
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
    "Zhang, Zhou, Lin, Sun", 2017, "https://arxiv.org/abs/1707.01083",
)


# --- Blocks ----------------------------------------------------------------------------------


class ShuffleUnit(nn.Module):
    """The ShuffleNet unit (§3.2, Fig. 2b; Fig. 2c when ``stride`` is 2).

    ``gconv1`` (1x1 GConv, BN, ReLU) -> ``shuffle`` -> ``dwconv`` (3x3 depthwise, BN, no ReLU)
    -> ``gconv2`` (1x1 GConv, BN) -> [``se``] -> add the input (stride 1) or concatenate the 3x3/2
    average-pooled input (stride 2) -> ReLU. With stride 2 the residual branch produces
    ``out_channels - in_channels`` channels so that the concatenation has ``out_channels``.

    ``bottleneck_channels``: §3.3, "we set the number of bottleneck channels to 1/4 of the output
    channels for each ShuffleNet unit" (computed by the model, see ``bottleneck_width``).
    ``group_first_pointwise=False`` for the first unit of Stage 2 (Table 1 caption: no group
    convolution on the first pointwise layer, whose input has only 24 channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bottleneck_channels: int,
        groups: int,
        stride: int,
        group_first_pointwise: bool = True,
        use_se: bool = False,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleNet unit stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"a stride-1 ShuffleNet unit keeps its width, got {in_channels} -> {out_channels}")
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        first_groups = groups if group_first_pointwise else 1
        for name, channels, g in (
            ("input", in_channels, first_groups),
            ("bottleneck", bottleneck_channels, groups),
            ("residual branch", branch_channels, groups),
        ):
            if channels < 1 or channels % g:
                raise ValueError(f"ShuffleNet unit: {name} width {channels} does not split into {g} groups")
        self.stride = stride
        self.gconv1 = ConvBNAct(in_channels, bottleneck_channels, 1, groups=first_groups)
        # §3.1: the shuffle lets the next GConv see every group. After an ungrouped 1x1 conv there
        # is nothing to mix, so the first unit of Stage 2 has none (the authors' code shuffles
        # there anyway; a fixed permutation of a dense layer's outputs changes nothing).
        self.shuffle: nn.Module = ChannelShuffle(groups) if first_groups > 1 else nn.Identity()
        self.dwconv = ConvBNAct(
            bottleneck_channels, bottleneck_channels, 3, stride, 1,
            groups=bottleneck_channels, activation=None,  # §3.2: no ReLU after the depthwise conv
        )
        self.gconv2 = ConvBNAct(bottleneck_channels, branch_channels, 1, groups=groups, activation=None)
        # Table 5, "ShuffleNet 2x (with SE [13], g = 3)": the paper gives no placement or ratio.
        # Assumption: SENet's (Hu et al. 2018, Fig. 3) - on the residual branch before the
        # addition/concatenation, reduction 16. It gives 527 M at 2x g = 3, Table 5's number.
        self.se: nn.Module = (
            SqueezeExcitation(branch_channels, max(1, branch_channels // 16)) if use_se else nn.Identity()
        )
        self.shortcut: nn.Module = (
            nn.AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.se(self.gconv2(self.dwconv(self.shuffle(self.gconv1(x)))))
        if self.stride == 2:
            return self.act(torch.cat((self.shortcut(x), branch), dim=1))
        return self.act(branch + x)


# --- The table ---------------------------------------------------------------------------------


class Stage(NamedTuple):
    """A stage of Table 1: one stride-2 unit followed by ``units - 1`` stride-1 units."""

    name: str
    units: int
    width_factor: int  # output channels relative to Stage 2 (x1, x2, x4: widths double per stage)


# Table 1, "Repeat" column: 1 + 3, 1 + 7, 1 + 3 units.
STAGES: tuple[Stage, ...] = (
    Stage("stage2", units=1 + 3, width_factor=1),
    Stage("stage3", units=1 + 7, width_factor=2),
    Stage("stage4", units=1 + 3, width_factor=4),
)

# Table 1, "Output channels (g groups)" of Stage 2 at 1x (Stage 3 and 4 double it).
STAGE2_CHANNELS: dict[int, int] = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}

# Table 1's Conv1 (3x3/2) has 24 channels at 1x. Other scales: the authors' code
# (ShuffleNet-Series/ShuffleNetV1/network.py) uses 12 at 0.5x, 24 at 1.5x, 48 at 2x; the stem is
# not simply scaled. 0.25x is not in the code: 12 reproduces Table 2's 13 MFLOPs for
# g = 1, 2, 3 (6 channels would give 11 MFLOPs).
CONV1_CHANNELS: dict[float, int] = {0.25: 12, 0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}


def stage_widths(groups: int, width_mult: float) -> tuple[int, ...]:
    """Output channels of Stages 2-4: Table 1's widths scaled by s ("ShuffleNet s×", §4.1)."""
    return tuple(int(STAGE2_CHANNELS[groups] * width_mult) * s.width_factor for s in STAGES)


def conv1_width(groups: int, width_mult: float) -> int:
    """Conv1's width: ``CONV1_CHANNELS`` widened until the first stride-2 unit's residual branch
    (Stage 2 width - Conv1 width) splits into ``groups`` groups. This is the authors' own choice
    for g = 8 at 0.5x (16 channels, not 12), and leaves every other published stem unchanged."""
    width = CONV1_CHANNELS[width_mult]
    while (stage_widths(groups, width_mult)[0] - width) % groups:
        width += 1
    return width


def bottleneck_width(out_channels: int, groups: int) -> int:
    """§3.3: 1/4 of the output channels. Rounded down to a multiple of g so that the group convs
    are defined. Only scaled widths need it (0.5x g=2: 25 -> 24; 0.5x g=4: 34 -> 32); every
    width of Table 1 and of the authors' code is already divisible (an assumption, as the
    paper trains g = 2, 4 at 0.5x and 0.25x without saying how it rounds)."""
    return max(groups, out_channels // 4 // groups * groups)


# --- The model ---------------------------------------------------------------------------------


class ShuffleNetV1(ConvNet):
    """ShuffleNet g groups, s× (Table 1 scaled by ``width_mult``; §4.1).

    ``groups``: g of Table 1 (1, 2, 3, 4, 8). ``width_mult``: s of Tables 2 and 5 (0.25, 0.5, 1,
    1.5, 2). ``use_se``: Table 5's "with SE" variant. ``classifier_bias``: the authors' code has
    none (default); the models.csv 1x rows count one (pytorchcv's form), see the variant table.
    """

    min_input_size = 1  # every stride-2 layer is 3x3 with padding 1: a 1x1 map stays 1x1
    classifier_name = "fc"

    def __init__(
        self,
        *,
        groups: int = 3,
        width_mult: float = 1.0,
        use_se: bool = False,
        classifier_bias: bool = False,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(groups, bool) or groups not in STAGE2_CHANNELS:
            raise ValueError(f"groups must be one of {sorted(STAGE2_CHANNELS)} (Table 1), got {groups!r}")
        if width_mult not in CONV1_CHANNELS:
            raise ValueError(f"width_mult must be one of {sorted(CONV1_CHANNELS)} (Tables 2, 5), got {width_mult!r}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.groups, self.width_mult = groups, width_mult
        channels = conv1_width(groups, width_mult)
        self.conv1 = ConvBNAct(in_channels, channels, 3, 2, 1)  # Table 1: Conv1 3x3/2
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # Table 1: MaxPool 3x3/2
        for stage, width in zip(STAGES, stage_widths(groups, width_mult)):
            units: list[nn.Module] = []
            for i in range(stage.units):
                units.append(
                    ShuffleUnit(
                        channels, width, bottleneck_width(width, groups), groups,
                        stride=2 if i == 0 else 1,
                        group_first_pointwise=not (stage.name == "stage2" and i == 0),
                        use_se=use_se,
                    )
                )
                channels = width
            self.add_module(stage.name, nn.Sequential(*units))
        self.num_features = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Table 1: GlobalPool 7x7 (adaptive: any input size)
        # Deviation from a plain FC: the authors' code has no bias (nn.Linear(..., bias=False)).
        self.fc = nn.Linear(channels, num_classes, bias=classifier_bias)
        init_weights(self)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.stage4(self.stage3(self.stage2(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --- Registration ------------------------------------------------------------------------------

# name: fixed arguments. The 1x rows of models.csv (1,531,936 ... 2,434,768 parameters, "pytorchcv
# shufflenet_g*_w1") count an FC bias of 1000 parameters; the g3_x2_0 row (5,449,776, "FC without
# bias") does not. The two rows disagree by exactly that bias: the authors' code, which the 2x row
# follows, has none, so the registered 1x variants keep it only to match their reference rows.
_VARIANTS: dict[str, dict[str, object]] = {
    "shufflenet_v1": {},  # every argument free: any g x s of Tables 1, 2, 5
    "shufflenet_v1_g1": {"groups": 1, "width_mult": 1.0, "classifier_bias": True},
    "shufflenet_v1_g2": {"groups": 2, "width_mult": 1.0, "classifier_bias": True},
    "shufflenet_v1_g3": {"groups": 3, "width_mult": 1.0, "classifier_bias": True},
    "shufflenet_v1_g4": {"groups": 4, "width_mult": 1.0, "classifier_bias": True},
    "shufflenet_v1_g8": {"groups": 8, "width_mult": 1.0, "classifier_bias": True},
    "shufflenet_v1_g3_x2_0": {"groups": 3, "width_mult": 2.0, "classifier_bias": False},
}

for _name, _fixed in _VARIANTS.items():
    register_model(
        _name, ShuffleNetV1, family="ShuffleNet", paper=PAPER, input_size=(3, 224, 224), **_fixed
    )
