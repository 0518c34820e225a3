"""ImageNet ResNets (He et al. 2015): Table 1 read back from the built networks, the v1/v1.5
stride placement, ResNeXt/Wide ResNet widths, pre-activation units and stochastic depth."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.layers import DropPath
from cnnlab.models.resnet import (
    TABLE_1,
    TABLE_1_ROWS,
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ResNet,
)
from zoo import build_meta, count_params

STAGES = ("layer1", "layer2", "layer3", "layer4")
# Table 1's columns under the paper's (v1) stride placement; 18 and 34 have no bottlenecks.
TABLE_1_NAMES = {18: "resnet18", 34: "resnet34", 50: "resnet50_v1", 101: "resnet101_v1", 152: "resnet152_v1"}


@pytest.mark.parametrize("depth, name", TABLE_1_NAMES.items())
def test_table_1_blocks_widths_and_output_sizes(depth: int, name: str) -> None:
    model = build_meta(name).eval()
    column = TABLE_1[depth]
    sizes: dict[str, int] = {}
    for stage in ("maxpool", *STAGES):
        model.get_submodule(stage).register_forward_hook(
            lambda _m, _i, out, stage=stage: sizes.__setitem__(stage, out.shape[-1])
        )
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)  # "7x7, 64, stride 2"
    assert model.conv1.out_channels == 64
    assert sizes["maxpool"] == 56
    weighted = 2  # conv1 and fc
    for stage, row, num_blocks in zip(STAGES, TABLE_1_ROWS, column.blocks):
        blocks = list(model.get_submodule(stage))
        assert len(blocks) == num_blocks
        assert all(type(b) is column.block for b in blocks)
        assert sizes[stage] == row.output_size
        for block in blocks:
            convs = [block.conv1, block.conv2] + ([block.conv3] if column.block is Bottleneck else [])
            weighted += len(convs)
            if column.block is Bottleneck:  # [1x1, w; 3x3, w; 1x1, 4w]
                assert [c.out_channels for c in convs] == [row.planes, row.planes, 4 * row.planes]
                assert [c.kernel_size for c in convs] == [(1, 1), (3, 3), (1, 1)]
            else:  # [3x3, w; 3x3, w]
                assert [c.out_channels for c in convs] == [row.planes, row.planes]
    assert weighted == depth  # the "18-layer" ... "152-layer" headings count conv and fc layers


@pytest.mark.parametrize("depth, name", TABLE_1_NAMES.items())
def test_table_1_flops_row(depth: int, name: str) -> None:
    macs = cnnlab.analyze(build_meta(name), (1, 3, 224, 224)).macs
    # The paper rounds loosely (3.858 G is printed as 3.8, 3.664 G as 3.6).
    assert abs(macs / 1e9 - TABLE_1[depth].flops) < 0.1


def test_v1_and_v1_5_have_equal_params_and_different_macs() -> None:
    v15, v1 = cnnlab.model_info("resnet50"), cnnlab.model_info("resnet50_v1")
    assert count_params(build_meta("resnet50")) == count_params(build_meta("resnet50_v1")) == v15.ref_params
    assert cnnlab.analyze(build_meta("resnet50"), (1, 3, 224, 224)).macs == v15.ref_macs  # 4.089 G
    assert cnnlab.analyze(build_meta("resnet50_v1"), (1, 3, 224, 224)).macs == v1.ref_macs  # 3.858 G
    assert round(v15.ref_macs / 1e9, 3) == 4.089 and round(v1.ref_macs / 1e9, 3) == 3.858
    down_v15, down_v1 = build_meta("resnet50").layer2[0], build_meta("resnet50_v1").layer2[0]
    assert (down_v15.conv1.stride, down_v15.conv2.stride) == ((1, 1), (2, 2))
    assert (down_v1.conv1.stride, down_v1.conv2.stride) == ((2, 2), (1, 1))
    assert down_v1.downsample[0].stride == (2, 2) and down_v1.downsample[0].kernel_size == (1, 1)


@pytest.mark.parametrize(
    "name, groups, width",
    [("resnext50_32x4d", 32, 128), ("resnext101_32x8d", 32, 256), ("resnext101_64x4d", 64, 256),
     ("wide_resnet50_2", 1, 128)],
)
def test_grouped_and_wide_bottleneck_widths(name: str, groups: int, width: int) -> None:
    # ResNeXt Table 1: conv2 stage [1x1, 128; 3x3, 128, C=32; 1x1, 256] for 32x4d; widths double per stage.
    model = build_meta(name)
    for index, stage in enumerate(STAGES):
        block = model.get_submodule(stage)[0]
        assert block.conv2.groups == groups
        assert block.conv2.out_channels == width * 2**index
        assert block.conv3.out_channels == 256 * 2**index


def test_basic_block_depths_reject_bottleneck_arguments() -> None:
    with pytest.raises(ValueError, match="basic blocks"):
        ResNet(depth=18, groups=32)
    with pytest.raises(ValueError, match="unknown ResNet depth 42"):
        ResNet(depth=42)


def test_preact_units_have_no_activation_after_the_addition() -> None:
    model = build_meta("preact_resnet50")
    blocks = [m for m in model.modules() if isinstance(m, (Bottleneck, PreActBottleneck))]
    assert blocks and all(isinstance(b, PreActBottleneck) for b in blocks)
    assert isinstance(model.final_bn, nn.BatchNorm2d)
    # Projection shortcuts act on the pre-activated input: a bare conv, no BN of their own.
    assert isinstance(model.layer2[0].downsample, nn.Conv2d)
    torch.manual_seed(0)
    block = PreActBasicBlock(8, 8).eval()
    x = -torch.rand(2, 8, 4, 4) - 10.0  # negative enough that the small branch cannot lift it to 0
    out = block(x)
    assert (out < 0).any(), "a post-addition ReLU would make every output non-negative"
    assert isinstance(BasicBlock(8, 8).relu, nn.ReLU)


def test_resnet200_depth() -> None:
    model = build_meta("preact_resnet200")
    convs = [m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in n]
    assert len(convs) + 1 == 200


# Stochastic depth (Huang et al. 2016): p_l = 1 - l/L (1 - p_L), p_L = 0.5.


@pytest.mark.parametrize("name, num_blocks", [("resnet152_sd", 50), ("resnet110_cifar_sd", 54)])
def test_stochastic_depth_linear_decay(name: str, num_blocks: int) -> None:
    rates = [m.p for m in build_meta(name).modules() if isinstance(m, DropPath)]
    assert len(rates) == num_blocks  # one per residual block (ResNet-152: 3+8+36+3; 110: 3 x 18)
    survival = [1 - l / num_blocks * (1 - 0.5) for l in range(1, num_blocks + 1)]  # eq. (4)
    assert rates == pytest.approx([1 - p for p in survival])
    assert rates[-1] == pytest.approx(0.5)


def _empirical_drop_rate(block: nn.Module, channels: int, samples: int) -> float:
    """Fraction of samples whose output equals relu(input): the residual branch was dropped."""
    x = torch.rand(samples, channels, 2, 2) + 0.5  # positive, so relu(x) == x
    with torch.no_grad():
        out = block.train()(x)
    unchanged = (out == x).flatten(1).float().mean(dim=1)  # per sample: fraction of outputs == input
    assert ((unchanged == 0) | (unchanged == 1)).all(), "a branch is dropped for a whole sample or not at all"
    return unchanged.mean().item()


def test_stochastic_depth_drops_whole_branches_with_the_configured_probability() -> None:
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet110_cifar_sd")
    samples = 4000
    for block, p in ((model.layer1[0], 0.5 / 54), (model.layer3[-1], 0.5)):
        assert block.drop_path.p == pytest.approx(p)
        rate = _empirical_drop_rate(block, block.conv1.in_channels, samples)
        sigma = (p * (1 - p) / samples) ** 0.5
        assert abs(rate - p) < 5 * sigma + 1e-3, (rate, p)


def test_stochastic_depth_eval_is_deterministic_and_undropped() -> None:
    torch.manual_seed(0)
    sd = cnnlab.create_model("resnet20_cifar", drop_path_rate=0.5).eval()
    plain = cnnlab.create_model("resnet20_cifar").eval()
    plain.load_state_dict(sd.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first, second, reference = sd(x), sd(x), plain(x)
    assert torch.equal(first, second)
    assert torch.allclose(first, reference, atol=1e-6)
    sd.train()
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(sd(x), sd(x)), "training mode drops branches at random"
