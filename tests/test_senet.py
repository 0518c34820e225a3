"""SENet (Hu et al. 2018): SE blocks with r = 16 on every residual branch, before the addition;
SENet-154's Appendix changes; the parameter cost of eq. (5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models.layers import SqueezeExcitation
from cnnlab.models.resnet import BasicBlock, Bottleneck
from zoo import build_meta, count_params

SE_NAMES = [
    "se_resnet18", "se_resnet34", "se_resnet50", "se_resnet101", "se_resnet152",
    "se_resnext50_32x4d", "se_resnext101_32x4d", "senet154",
]
STAGES = ("layer1", "layer2", "layer3", "layer4")


def blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]


@pytest.mark.parametrize("name", SE_NAMES)
def test_every_block_has_one_se_with_reduction_16(name: str) -> None:
    model = build_meta(name)
    all_blocks = blocks(model)
    assert all_blocks
    assert sum(isinstance(m, SqueezeExcitation) for m in model.modules()) == len(all_blocks)
    for block in all_blocks:
        channels = block.bn3.num_features if isinstance(block, Bottleneck) else block.bn2.num_features
        assert (block.se.fc1.in_channels, block.se.fc1.out_channels) == (channels, channels // 16)
        assert block.se.fc2.out_channels == channels


def test_se_parameter_cost_is_equation_5() -> None:
    # eq. (5): 2/r * sum_s N_s * C_s^2 weights, plus the FC biases (C_s/r + C_s per block).
    stages = [(3, 256), (4, 512), (6, 1024), (3, 2048)]  # ResNet-50: N_s blocks of C_s output channels
    weights = sum(2 * n * c * c // 16 for n, c in stages)
    biases = sum(n * (c // 16 + c) for n, c in stages)
    assert count_params(build_meta("se_resnet50")) - count_params(build_meta("resnet50_v1")) == weights + biases


class ClosedGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_se_acts_on_the_residual_branch_before_the_addition() -> None:
    torch.manual_seed(0)
    block = Bottleneck(256, 64, se_reduction=16).eval()
    x = torch.rand(2, 256, 4, 4)
    assert not torch.allclose(block(x), x)
    block.se.gate = ClosedGate()  # the branch contributes nothing
    assert torch.equal(block(x), x)  # relu(0 + x) with x >= 0: only the identity shortcut remains


def test_stride_placement_of_the_released_models() -> None:
    # SE-ResNets: stride on the first 1x1 (Caffe); SE-ResNeXts and SENet-154: on the grouped 3x3.
    se_resnet = build_meta("se_resnet50").layer2[0]
    assert (se_resnet.conv1.stride, se_resnet.conv2.stride) == ((2, 2), (1, 1))
    for name in ("se_resnext50_32x4d", "senet154"):
        block = build_meta(name).layer2[0]
        assert (block.conv1.stride, block.conv2.stride) == ((1, 1), (2, 2))


def test_senet154_appendix_changes() -> None:
    model = build_meta("senet154")
    # (2) three 3x3 convs replace the 7x7: 64, 64, 128 filters, the first with stride 2.
    stem = [m for m in model.conv1.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.out_channels) for c in stem] == [
        ((3, 3), (2, 2), 64), ((3, 3), (1, 1), 64), ((3, 3), (1, 1), 128)
    ]
    # ResNeXt-152 layout, 64x4d.
    assert [len(model.get_submodule(s)) for s in STAGES] == [3, 8, 36, 3]
    for index, stage in enumerate(STAGES):
        first = model.get_submodule(stage)[0]
        assert first.conv2.groups == 64 and first.conv2.out_channels == 256 * 2**index
        # (1) the first 1x1 has half the 3x3's channels.
        assert first.conv1.out_channels == first.conv2.out_channels // 2
        # (3) downsampling projections are 3x3 stride 2; the stride-1 one of layer1 stays 1x1.
        projection = first.downsample[0]
        expected = ((1, 1), (1, 1)) if index == 0 else ((3, 3), (2, 2))
        assert (projection.kernel_size, projection.stride) == expected
    # (4) dropout 0.2 before the classifier.
    assert model.dropout.p == 0.2
