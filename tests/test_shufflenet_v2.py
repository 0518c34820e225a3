"""ShuffleNet V2 beyond the generic tests: Table 5's widths and repeats, the channel split and the
two-branch stride-2 unit (Fig. 3c/d), and the large models of Table 6 (v2-50, SE-v2-164)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.layers import SqueezeExcitation, channel_shuffle
from cnnlab.models.shufflenet_v2 import InvertedResidual, ResidualSEUnit, SEShuffleNetV2Outputs
from zoo import build_meta, count_params

# Table 5: output channels of Conv1, Stage2, Stage3, Stage4, Conv5 per width.
TABLE_5 = {
    "shufflenet_v2_x0_5": (24, 48, 96, 192, 1024),
    "shufflenet_v2_x1_0": (24, 116, 232, 464, 1024),
    "shufflenet_v2_x1_5": (24, 176, 352, 704, 1024),
    "shufflenet_v2_x2_0": (24, 244, 488, 976, 2048),
}


@pytest.mark.parametrize("name", sorted(TABLE_5))
def test_table_5_widths_and_repeats(name: str) -> None:
    model = build_meta(name)
    conv1, s2, s3, s4, conv5 = TABLE_5[name]
    assert model.conv1[0].out_channels == conv1 and model.conv1[0].stride == (2, 2)
    for stage, width, repeat in ((model.stage2, s2, 4), (model.stage3, s3, 8), (model.stage4, s4, 4)):
        assert len(stage) == repeat  # Table 5 "Repeat": 1 + 3, 1 + 7, 1 + 3
        for unit in stage:
            assert unit.branch2[-3].out_channels == width // 2  # each branch makes half the width
    assert model.conv5[0].out_channels == conv5 == model.num_features


@pytest.mark.parametrize("name", sorted(TABLE_5))
def test_stride_2_units_have_two_branches(name: str) -> None:
    model = build_meta(name)
    for stage in (model.stage2, model.stage3, model.stage4):
        first, rest = stage[0], list(stage)[1:]
        # Fig. 3d: both branches read the whole input and downsample with a 3x3/2 depthwise conv.
        dw1, dw2 = first.branch1[0], first.branch2[3]
        for dw in (dw1, dw2):
            assert dw.stride == (2, 2) and dw.groups == dw.in_channels
        assert first.branch1[2].in_channels == first.branch2[0].in_channels == dw1.in_channels
        # Fig. 3c: no second branch; branch2 reads half of the channels.
        for unit in rest:
            assert len(unit.branch1) == 0
            assert unit.branch2[0].in_channels == unit.branch2[-3].out_channels
            assert unit.branch2[3].stride == (1, 1)


def _unit_with_random_bn(unit: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in unit.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return unit.eval()


def test_channel_split_passes_one_half_through_and_shuffles_with_two_groups() -> None:
    """§3: split, transform one half, concatenate, shuffle: after a 2-group shuffle the even
    channels are the untouched first half."""
    unit = _unit_with_random_bn(InvertedResidual(16, 16, 1))
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        y = unit(x)
        x1, x2 = x.chunk(2, dim=1)
        expected = channel_shuffle(torch.cat((x1, unit.branch2(x2)), dim=1), 2)
    assert torch.equal(y[:, 0::2], x1)
    assert torch.allclose(y, expected)


def test_no_relu_after_the_depthwise_convs() -> None:
    unit = InvertedResidual(16, 32, 2)
    assert [type(m) for m in unit.branch1] == [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert [type(m) for m in unit.branch2][3:6] == [nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]


def test_shufflenet_v2_50_layout_and_complexity() -> None:
    """Table 6: "ShuffleNet v2-50", 2.3 GFLOPs; built in ResNet-50's 3-4-6-3 layout."""
    model = build_meta("shufflenet_v2_50")
    stages = [model.stage2, model.stage3, model.stage4, model.stage5]
    assert [len(s) for s in stages] == [3, 4, 6, 3]
    assert [s[0].branch2[3].stride for s in stages] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert all(s[0].two_branches for s in stages)
    macs = cnnlab.analyze(model, (1, 3, 224, 224)).macs
    assert round(macs / 1e8) == 23  # 2.3 G


def test_se_shufflenet_v2_164_is_164_layers_and_12_7_gflops() -> None:
    """Table 6: SE-ShuffleNet v2-164 (with residual), 12.7 GFLOPs. 164 weighted layers: 3 stem
    convs + 53 units x 3 main-branch convs + the last conv + FC (the authors' layer count leaves
    out the projection, down-sampling and SE layers)."""
    model = build_meta("se_shufflenet_v2_164")
    units = [u for name in model.stage_names for u in model.get_submodule(name)]
    assert len(units) == 53 and all(isinstance(u, ResidualSEUnit) for u in units)
    main_convs = sum(isinstance(m, nn.Conv2d) for u in units for m in u.main.modules())
    stem_convs = sum(isinstance(m, nn.Conv2d) for m in model.stem.modules())
    assert stem_convs + main_convs + 1 + 1 == 164
    assert all(isinstance(u.se, SqueezeExcitation) for u in units)
    assert [u.first for u in units].count(True) == 4  # residual path everywhere but stage starts
    macs = cnnlab.analyze(model, (1, 3, 224, 224)).macs
    assert 12.7e9 <= macs < 12.8e9  # the authors print 12.7 G for 12.78 G


def test_se_shufflenet_v2_164_aux_heads() -> None:
    """The authors train with three extra heads; their README's 140.7 M parameters include them."""
    model = build_meta("se_shufflenet_v2_164", aux_logits=True, num_classes=10)
    assert round(count_params(build_meta("se_shufflenet_v2_164", aux_logits=True)) / 1e5) == 1407
    out = model.train()(torch.empty(2, 3, 64, 64, device="meta"))
    assert isinstance(out, SEShuffleNetV2Outputs)
    assert all(t.shape == (2, 10) for t in out)
    assert model.eval()(torch.empty(2, 3, 64, 64, device="meta")).shape == (2, 10)
    model.reset_classifier(4)
    out = model.train()(torch.empty(2, 3, 64, 64, device="meta"))
    assert all(t.shape == (2, 4) for t in out)


def test_residual_se_unit_adds_the_odd_half_back() -> None:
    unit = _unit_with_random_bn(ResidualSEUnit(16, 16, 1, first=False))
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        even, odd = x[:, 0::2], x[:, 1::2]
        expected = torch.relu(torch.cat((even, unit.se(unit.main(odd)) + odd), dim=1))
        assert torch.allclose(unit(x), expected, atol=1e-6)


def test_rejects_untabulated_width() -> None:
    from cnnlab.models.shufflenet_v2 import ShuffleNetV2

    with pytest.raises(ValueError, match="Table 5 columns"):
        ShuffleNetV2(width_mult=0.75)
