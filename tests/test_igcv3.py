"""IGCV3: the IGCV3-D table read back, group pointwise convolutions with permutations that
interleave the groups, the width variants against pytorchcv's counts, and the groups knob."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.layers import InvertedResidual
from zoo import build_meta, count_params

# IGCV3-D, t c n s (the authors' code, symbols/igcv3.py): MobileNetV2's rows, deeper.
TABLE = [
    (1, 16, 1, 1), (6, 24, 4, 2), (6, 32, 6, 2), (6, 64, 8, 2), (6, 96, 6, 1), (6, 160, 6, 2), (6, 320, 1, 1),
]

# pytorchcv's own checks in pytorchcv/models/igcv3.py (_test): igcv3_w3d4, igcv3_wd2, igcv3_wd4.
PYTORCHCV_PARAMS = {"igcv3_w3d4": 2_638_084, "igcv3_wd2": 1_985_528, "igcv3_wd4": 1_534_020}


@pytest.mark.parametrize("name", sorted(PYTORCHCV_PARAMS))
def test_width_variants_match_pytorchcv(name: str) -> None:
    assert count_params(build_meta(name)) == PYTORCHCV_PARAMS[name]


def test_table_read_back() -> None:
    model = build_meta("igcv3")
    blocks = [m for m in model.features if isinstance(m, InvertedResidual)]
    assert len(blocks) == sum(n for _t, _c, n, _s in TABLE) == 32
    i, in_channels = 0, 32
    for t, c, n, s in TABLE:
        for j in range(n):
            block = blocks[i + j]
            assert block.project.conv.out_channels == c
            assert block.depthwise.conv.stride == ((s, s) if j == 0 else (1, 1))
            assert block.depthwise.conv.out_channels == t * in_channels
            # Every block, the t = 1 one included, expands with a group 1x1 conv, linearly.
            assert block.expand is not None and block.expand.act is None
            assert block.expand.conv.groups == block.project.conv.groups == 2
            assert block.depthwise.conv.groups == block.depthwise.conv.in_channels
            assert isinstance(block.depthwise.act, nn.ReLU6) and block.project.act is None
            assert block.use_residual == (j > 0)
            in_channels = c
        i += n
    assert model.num_features == 1280


def test_permutations_make_every_output_see_every_input() -> None:
    # One block with two groups: without the permutation after the expansion, each half of
    # the output would depend on one half of the input only.
    torch.manual_seed(0)
    block = InvertedResidual(8, 8, expanded_channels=48, expand=True, groups=2, linear_expansion=True).eval()

    def dependence(b: nn.Module) -> torch.Tensor:
        jacobian = torch.autograd.functional.jacobian(b, torch.randn(1, 8, 5, 5))
        return (jacobian.abs().sum(dim=(0, 2, 3, 4, 6, 7)) > 0).float()  # [output, input] channel

    assert dependence(block).all()
    block.shuffle = None
    no_shuffle = dependence(block)
    # Each output then sees its own group's 4 inputs (and itself, through the residual).
    assert (no_shuffle.sum(dim=1) <= 5).all()


def test_groups_knob() -> None:
    dense = build_meta("igcv3", groups=1)
    block = dense.features[2]
    assert block.expand.conv.groups == 1 and block.shuffle is None and block.unshuffle is None
    four = build_meta("igcv3", groups=4)
    assert four.features[2].project.conv.groups == 4
    assert count_params(four) < count_params(build_meta("igcv3")) < count_params(dense)
    with pytest.raises(ValueError, match="do not split into 3 groups"):
        cnnlab.create_model("igcv3", groups=3)


def test_last_conv_only_widens() -> None:
    assert build_meta("igcv3", width_mult=0.5).num_features == 1280
    assert build_meta("igcv3", width_mult=1.5).num_features == 1920
