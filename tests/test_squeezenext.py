"""SqueezeNext: block widths (Figure 1), stage depths and the published counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.squeezenext import SqnxtBlock, SqueezeNext
from zoo import build_meta, count_params

# pytorchcv's sqnxt23* parameter counts (its _test()); sqnxt23_w1 is also in models.csv.
PYTORCHCV_PARAMS = {
    "sqnxt23_w1": 724_056, "sqnxt23_w3d2": 1_511_824, "sqnxt23_w2": 2_583_752,
    "sqnxt23v5_w1": 921_816, "sqnxt23v5_w3d2": 1_953_616, "sqnxt23v5_w2": 3_366_344,
}
STAGE_DEPTHS = {"sqnxt23_w1": [6, 6, 8, 1], "sqnxt23v5_w1": [2, 4, 14, 1]}


@pytest.mark.parametrize("name, params", PYTORCHCV_PARAMS.items())
def test_parameter_counts(name: str, params: int) -> None:
    assert count_params(build_meta(name)) == params


@pytest.mark.parametrize("name, depths", STAGE_DEPTHS.items())
def test_stage_depths(name: str, depths: list[int]) -> None:
    model = build_meta(name)
    assert [len(stage) for stage in model.stages] == depths
    assert sum(depths) == 21  # + conv1 + FC: the "23" of the name


def _widths(block: SqnxtBlock) -> list[int]:
    return [getattr(block, f"conv{i}").conv.out_channels for i in range(1, 6)]


def test_figure_2_block_widths() -> None:
    # Figure 1: a block of width C squeezes to C/2 then C/4, separable 3x3 at C/2, expands to C.
    model = build_meta("sqnxt23_w1")
    for stage, c in zip(model.stages, (32, 64, 128, 256)):
        for block in list(stage)[1:]:
            assert _widths(block) == [c // 2, c // 4, c // 2, c // 2, c]
            assert isinstance(block.shortcut, nn.Identity)


def test_separable_filters_are_1x3_and_3x1_alternating() -> None:
    blocks = [b for stage in build_meta("sqnxt23_w1").stages for b in stage]
    kernels = [(b.conv3.conv.kernel_size, b.conv4.conv.kernel_size) for b in blocks]
    assert all(set(k) == {(1, 3), (3, 1)} for k in kernels)
    # The authors' prototxt: 3x1 first in the 1st, 3rd, ... block; 1x3 first in the others.
    assert [k[0] for k in kernels] == [(3, 1) if i % 2 == 0 else (1, 3) for i in range(len(blocks))]


def test_downsampling_and_map_sizes() -> None:
    model = build_meta("sqnxt23_w1").eval()
    sizes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    with torch.no_grad():
        model(torch.empty(1, 3, 224, 224, device="meta"))
    # 55x55 after the stem, as in the authors' model (227 crops, unpadded 7x7/2 conv).
    assert sizes == [(32, 55, 55), (64, 28, 28), (128, 14, 14), (256, 7, 7)]
    firsts = [stage[0] for stage in model.stages]
    assert [b.conv1.conv.stride for b in firsts] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert all(b.projection for b in firsts)


def test_width_multiplier_scales_every_layer() -> None:
    w1, w2 = build_meta("sqnxt23_w1"), build_meta("sqnxt23_w2")
    convs1 = [m.out_channels for m in w1.modules() if isinstance(m, nn.Conv2d)]
    convs2 = [m.out_channels for m in w2.modules() if isinstance(m, nn.Conv2d)]
    assert convs2 == [2 * c for c in convs1]
    assert build_meta("sqnxt23_w3d2").num_features == 192


def test_paper_macs_are_those_of_56x56_maps() -> None:
    # Ours (the authors' 55x55 maps) is within 3 % of the paper's 282M; with a "same"-padded
    # stem (56x56 maps) the count is the paper's to 0.1 %, which is what the paper counted.
    model = build_meta("sqnxt23_w1")
    ours = cnnlab.analyze(model, (1, 3, 224, 224)).macs
    assert abs(ours - 282e6) <= 0.03 * 282e6
    model.stem[0].conv.padding = (3, 3)
    assert abs(cnnlab.analyze(model, (1, 3, 224, 224)).macs - 282e6) <= 0.001 * 282e6


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="version"):
        SqueezeNext(version="50")
    with pytest.raises(ValueError, match="width_mult"):
        SqueezeNext(width_mult=0.1)
