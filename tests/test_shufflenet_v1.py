"""ShuffleNet V1 beyond the generic tests: the published complexities of every groups x scale the
paper tabulates (the paper's "FLOPs" are multiply-adds, Table 1 caption), and the unit's
structure (§3.2-3.3, Fig. 2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.layers import ChannelShuffle, SqueezeExcitation
from cnnlab.models.shufflenet_v1 import STAGE2_CHANNELS, ShuffleNetV1, ShuffleUnit

GROUPS = (1, 2, 3, 4, 8)


def macs(**kwargs) -> int:
    with torch.device("meta"):
        model = ShuffleNetV1(**kwargs)
    return cnnlab.analyze(model, (1, 3, 224, 224)).macs


# Table 1, "Complexity" row (1x).
TABLE_1_MFLOPS = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}


@pytest.mark.parametrize("groups", GROUPS)
def test_table_1_complexity_is_the_convolutions(groups: int) -> None:
    """Table 1 rounds to the million exactly when the 1000-way FC layer is left out: with it the
    totals are 143.1 / 140.8 / 137.5 / 134.3 / 138.4 M (models.csv), without it 142.5 / 140.0 /
    136.5 / 133.3 / 136.8 M -> 143 / 140 / 137 / 133 / 137."""
    with torch.device("meta"):
        model = ShuffleNetV1(groups=groups)
    fc = model.fc.in_features * model.fc.out_features
    assert model.fc.in_features == 4 * STAGE2_CHANNELS[groups]  # Table 1: Stage 4 = 4 x Stage 2
    assert round((macs(groups=groups) - fc) / 1e6) == TABLE_1_MFLOPS[groups]


# Table 2, "Complexity (MFLOPs)": one budget per row, all five g columns.
TABLE_2_MFLOPS = {1.0: 140, 0.5: 38, 0.25: 13}
# The paper's own spread within a row: Table 1 shows the 1x row's "140" is 133 ... 143 M (5 %).
ROW_SPREAD = max(abs(v - TABLE_2_MFLOPS[1.0]) for v in TABLE_1_MFLOPS.values()) / TABLE_2_MFLOPS[1.0]

# Pairs off the budget by more than the row's spread, and why (strict xfail: they must stay off).
TABLE_2_RESIDUALS = {
    # The authors' code for this very network (Conv1 widened to 16 so that the first stride-2
    # unit's branch, 192 - 16, splits into 8 groups) gives 40.5 M; their README says 40 M
    # (checked in test_published_complexity).
    (0.5, 8): "the authors' own 0.5x g=8 is 40 M",
    # The same stem rule at 0.25x rounds Conv1 from 12 up to 16 (96 - Conv1 must split into 8
    # groups); the stem conv alone then costs 5.4 M of 15.7 M. The paper does not say what it
    # used (8 channels would give 12.4 M) and the authors' code has no 0.25x.
    (0.25, 8): "stem width at 0.25x g=8 unknown",
}
TABLE_2_PAIRS = [
    pytest.param(s, g, marks=pytest.mark.xfail(strict=True, reason=TABLE_2_RESIDUALS[(s, g)]))
    if (s, g) in TABLE_2_RESIDUALS else pytest.param(s, g)
    for s in TABLE_2_MFLOPS for g in GROUPS
]


@pytest.mark.parametrize("width_mult, groups", TABLE_2_PAIRS)
def test_table_2_complexity(width_mult: float, groups: int) -> None:
    """Every g x s of Table 2 within the row's own spread of its budget (plus the budget's
    rounding), except the two g = 8 residuals above."""
    budget = TABLE_2_MFLOPS[width_mult]
    assert abs(macs(groups=groups, width_mult=width_mult) / 1e6 - budget) <= ROW_SPREAD * budget + 0.5


# Complexities printed with every digit that matters: Table 5 ("ShuffleNet vs. MobileNet") and the
# authors' README (megvii-model/ShuffleNet-Series/ShuffleNetV1, the g = 3 / g = 8 models at 0.5x ...
# 2x). The paper's Table 3 (channel shuffle on/off) has no complexity column; Table 5's 1x (g = 8)
# "140" and 0.5x (g = 4) "38" repeat Table 2's row budgets and are checked there.
# (groups, width_mult, use_se, MFLOPs, source)
PUBLISHED = [
    (3, 2.0, False, 524, "Table 5"),
    (3, 2.0, True, 527, "Table 5, with SE"),
    (3, 1.5, False, 292, "Table 5"),
    (3, 1.0, False, 138, "README"),
    (3, 0.5, False, 38, "README"),
    (8, 2.0, False, 522, "README"),
    (8, 1.5, False, 290, "README"),
    (8, 1.0, False, 138, "README"),
    (8, 0.5, False, 40, "README"),
]


@pytest.mark.parametrize("groups, width_mult, use_se, mflops, source", PUBLISHED)
def test_published_complexity(groups: int, width_mult: float, use_se: bool, mflops: int, source: str) -> None:
    """Within one unit of the printed last digit (the README rounds 137.5 M up to 138; the SE
    network is 526.5 M against 527)."""
    assert abs(macs(groups=groups, width_mult=width_mult, use_se=use_se) / 1e6 - mflops) < 1.0, source


def test_stem_widths_of_the_authors_code() -> None:
    """ShuffleNetV1/network.py: stage_out_channels[1] is 12 / 24 / 24 / 48 at 0.5x / 1x / 1.5x /
    2x for g = 3, and 16 / 24 / 24 / 48 for g = 8."""
    expected = {3: (12, 24, 24, 48), 8: (16, 24, 24, 48)}
    for groups, widths in expected.items():
        for width_mult, width in zip((0.5, 1.0, 1.5, 2.0), widths):
            with torch.device("meta"):
                model = ShuffleNetV1(groups=groups, width_mult=width_mult)
            assert model.conv1.conv.out_channels == width


@pytest.mark.parametrize("groups", GROUPS)
def test_unit_structure(groups: int) -> None:
    with torch.device("meta"):
        model = ShuffleNetV1(groups=groups)
    units = [u for stage in (model.stage2, model.stage3, model.stage4) for u in stage]
    assert [len(s) for s in (model.stage2, model.stage3, model.stage4)] == [4, 8, 4]  # Table 1
    for i, unit in enumerate(units):
        first_of_stage = i in (0, 4, 12)
        out = unit.gconv2.conv.out_channels + (unit.gconv1.conv.in_channels if first_of_stage else 0)
        # §3.3: bottleneck = 1/4 of the output channels.
        assert unit.gconv1.conv.out_channels == out // 4
        # Table 1 caption: the first pointwise layer of Stage 2 is not grouped.
        assert unit.gconv1.conv.groups == (1 if i == 0 else groups)
        assert unit.gconv2.conv.groups == groups
        assert isinstance(unit.shuffle, ChannelShuffle) == (i != 0 and groups > 1)
        # §3.2: depthwise 3x3, BN, no ReLU.
        dw = unit.dwconv
        assert dw.conv.groups == dw.conv.in_channels and dw.conv.kernel_size == (3, 3)
        assert dw.act is None and unit.gconv2.act is None
        assert dw.conv.stride == ((2, 2) if first_of_stage else (1, 1))
        assert isinstance(unit.shortcut, nn.AvgPool2d) == first_of_stage


def _random_unit(in_channels: int, out_channels: int, stride: int) -> ShuffleUnit:
    torch.manual_seed(0)
    unit = ShuffleUnit(in_channels, out_channels, out_channels // 4, groups=2, stride=stride).eval()
    for m in unit.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return unit


def test_stride_2_unit_concatenates_the_average_pooled_input() -> None:
    """Fig. 2c: 3x3/2 average pool on the shortcut, concatenation, ReLU."""
    unit = _random_unit(8, 24, stride=2)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        y = unit(x)
        pooled = nn.functional.avg_pool2d(x, 3, 2, 1)
        branch = unit.gconv2(unit.dwconv(unit.shuffle(unit.gconv1(x))))
    assert y.shape == (1, 24, 3, 3)
    assert torch.allclose(y[:, :8], torch.relu(pooled))
    assert torch.allclose(y[:, 8:], torch.relu(branch))


def test_stride_1_unit_adds_the_input() -> None:
    unit = _random_unit(16, 16, stride=1)
    x = torch.randn(1, 16, 5, 5)
    with torch.no_grad():
        branch = unit.gconv2(unit.dwconv(unit.shuffle(unit.gconv1(x))))
        assert torch.allclose(unit(x.clone()), torch.relu(branch + x))


def test_se_option_puts_se_on_every_residual_branch() -> None:
    with torch.device("meta"):
        model = ShuffleNetV1(groups=3, width_mult=2.0, use_se=True)
    units = [u for stage in (model.stage2, model.stage3, model.stage4) for u in stage]
    assert all(isinstance(u.se, SqueezeExcitation) for u in units)
    assert all(u.se.fc1.in_channels == u.gconv2.conv.out_channels for u in units)


def test_classifier_bias() -> None:
    """The authors' code has no FC bias; the 1x reference rows of models.csv count one."""
    for name, has_bias in (("shufflenet_v1", False), ("shufflenet_v1_g3_x2_0", False), ("shufflenet_v1_g3", True)):
        with torch.device("meta"):
            assert (cnnlab.create_model(name).fc.bias is not None) == has_bias


def test_rejects_untabulated_arguments() -> None:
    with pytest.raises(ValueError, match="groups must be one of"):
        ShuffleNetV1(groups=5)
    with pytest.raises(ValueError, match="width_mult must be one of"):
        ShuffleNetV1(width_mult=0.75)
    with pytest.raises(TypeError, match="'groups' is fixed"):
        cnnlab.create_model("shufflenet_v1_g3", groups=8)
