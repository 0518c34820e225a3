"""Inception-v4 and Inception-ResNet v1/v2 (Szegedy et al. 2016): the paper's tables and figures
read back from the built networks, residual scaling (§3.3) and stochastic depth."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.inception_resnet import (
    InceptionResNetA,
    InceptionResNetAWidths,
    InceptionResNetB,
    InceptionResNetBWidths,
    InceptionResNetC,
    ResidualBlock,
)
from cnnlab.models.inception_resnet import ReductionB as ResNetReductionB
from cnnlab.models.inception_v4 import InceptionA, InceptionB, InceptionC, ReductionA
from cnnlab.models.inception_v4 import ReductionB as V4ReductionB
from cnnlab.models.layers import DropPath
from zoo import build_meta

NAMES = ["inception_v4", "inception_resnet_v1", "inception_resnet_v2"]
RESIDUAL = ["inception_resnet_v1", "inception_resnet_v2"]


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


# Table 1: Reduction-A's filter bank sizes (k, l, m, n).
TABLE_1 = {
    "inception_v4": (192, 224, 256, 384),
    "inception_resnet_v1": (192, 192, 256, 384),
    "inception_resnet_v2": (256, 256, 384, 384),
}


@pytest.mark.parametrize("name", NAMES)
def test_reduction_a_filters_are_table_1(name: str) -> None:
    (block,) = [m for m in build_meta(name).modules() if isinstance(m, ReductionA)]
    k, l, m, n = TABLE_1[name]  # noqa: E741
    lone = block.branch3x3.conv
    assert (lone.out_channels, lone.kernel_size, lone.stride, lone.padding) == (n, (3, 3), (2, 2), (0, 0))
    tower = [c.conv for c in block.branch3x3dbl]
    assert [c.out_channels for c in tower] == [k, l, m]
    assert [c.kernel_size for c in tower] == [(1, 1), (3, 3), (3, 3)]
    assert [c.stride for c in tower] == [(1, 1), (1, 1), (2, 2)]
    assert tower[2].padding == (0, 0)  # "V"


# Figures 9 and 15: (grid, depth) after each row at 299x299; the released Inception-ResNet-v2
# has other depths (see inception_resnet.py), so only its grids are the paper's.
FIGURE_SHAPES = {
    "inception_v4": {
        "stem": (35, 384), "inception_a": (35, 384), "reduction_a": (17, 1024),
        "inception_b": (17, 1024), "reduction_b": (8, 1536), "inception_c": (8, 1536),
    },
    "inception_resnet_v1": {
        "stem": (35, 256), "inception_resnet_a": (35, 256), "reduction_a": (17, 896),
        "inception_resnet_b": (17, 896), "reduction_b": (8, 1792), "inception_resnet_c": (8, 1792),
    },
    "inception_resnet_v2": {
        "inception_resnet_a": (35, None), "reduction_a": (17, None),
        "inception_resnet_b": (17, None), "reduction_b": (8, None), "inception_resnet_c": (8, None),
    },
}


@pytest.mark.parametrize("name", NAMES)
def test_grids_are_35_17_8_at_299(name: str) -> None:
    model = build_meta(name).eval()
    seen: dict[str, list[tuple[int, ...]]] = {}
    for stage in FIGURE_SHAPES[name]:
        for block in model.features.get_submodule(stage):
            block.register_forward_hook(
                lambda _m, _i, out, s=stage: seen.setdefault(s, []).append(tuple(out.shape))
            )
    model(torch.empty(1, 3, 299, 299, device="meta"))
    for stage, (grid, depth) in FIGURE_SHAPES[name].items():
        for shape in seen[stage]:
            assert shape[2:] == (grid, grid), f"{stage}: {shape}"
            if depth is not None:
                assert shape[1] == depth, f"{stage}: {shape}"
    features = {"inception_v4": 1536, "inception_resnet_v1": 1792, "inception_resnet_v2": 1536}
    assert model.num_features == features[name]


# Figures 9 and 15: how many blocks of each kind. Inception-ResNet-v1's reference
# (pytorchcv/FaceNet) has one Inception-ResNet-C more than Figure 15's five: the last, linear one.
BLOCK_COUNTS = {
    "inception_v4": {InceptionA: 4, ReductionA: 1, InceptionB: 7, V4ReductionB: 1, InceptionC: 3},
    "inception_resnet_v1": {
        InceptionResNetA: 5, ReductionA: 1, InceptionResNetB: 10, ResNetReductionB: 1,
        InceptionResNetC: 5 + 1,
    },
    "inception_resnet_v2": {
        InceptionResNetA: 10, ReductionA: 1, InceptionResNetB: 20, ResNetReductionB: 1, InceptionResNetC: 10,
    },
}


@pytest.mark.parametrize("name", NAMES)
def test_block_counts(name: str) -> None:
    model = build_meta(name)
    for kind, count in BLOCK_COUNTS[name].items():
        assert sum(isinstance(m, kind) for m in model.modules()) == count, kind.__name__
    if name == "inception_v4":
        assert not residual_blocks(model)
    else:
        # Only the reference's last block skips the ReLU after the sum.
        relus = [isinstance(b.act, nn.ReLU) for b in residual_blocks(model)]
        assert relus == [True] * (len(relus) - 1) + [False]


@pytest.mark.parametrize("name", NAMES)
def test_head_is_pool_dropout_keep_0_8(name: str) -> None:
    model = build_meta(name)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == pytest.approx(0.2)
    assert model.get_classifier().out_features == 1000


def test_v1_bottleneck_head_and_v2_plain_head() -> None:
    v1, v2 = build_meta("inception_resnet_v1"), build_meta("inception_resnet_v2")
    fc, bn = v1.bottleneck
    assert (fc.in_features, fc.out_features, fc.bias) == (1792, 512, None)
    assert isinstance(bn, nn.BatchNorm1d) and v1.fc.in_features == 512
    assert isinstance(v2.bottleneck, nn.Identity) and v2.fc.in_features == 1536


@pytest.mark.parametrize("name", RESIDUAL)
def test_default_residual_scales_are_in_the_papers_range(name: str) -> None:
    blocks = residual_blocks(build_meta(name))
    # §3.3: "scaling factors between 0.1 and 0.3"; the last (linear) block is unscaled.
    assert all(0.1 <= b.residual_scale <= 0.3 for b in blocks[:-1])
    assert blocks[-1].residual_scale == 1.0


@pytest.mark.parametrize("name", RESIDUAL)
def test_residual_scale_argument_sets_every_block(name: str) -> None:
    blocks = residual_blocks(build_meta(name, residual_scale=0.25))
    assert [b.residual_scale for b in blocks] == [0.25] * len(blocks)
    with pytest.raises(ValueError, match="residual_scale"):
        build_meta(name, residual_scale=-0.1)


A_V1 = InceptionResNetAWidths(
    branch1x1=32, branch3x3_reduce=32, branch3x3=32, branch3x3dbl_reduce=32, branch3x3dbl=(32, 32), linear=256
)


def small_block(scale: float, *, relu: bool = True, drop_path_rate: float = 0.0) -> InceptionResNetA:
    torch.manual_seed(0)
    return InceptionResNetA(256, A_V1, residual_scale=scale, relu=relu, drop_path_rate=drop_path_rate).eval()


def test_scale_zero_makes_the_block_identity_plus_relu() -> None:
    x = torch.randn(2, 256, 5, 5)  # negative entries: the ReLU after the sum shows
    with torch.no_grad():
        assert torch.equal(small_block(0.0)(x), torch.relu(x))
        assert torch.equal(small_block(0.0, relu=False)(x), x)  # the last, linear block
        assert not torch.allclose(small_block(0.17)(x), torch.relu(x))


def test_scale_multiplies_the_residual_before_the_sum() -> None:
    x = torch.randn(2, 256, 5, 5)
    with torch.no_grad():
        r1 = small_block(0.1, relu=False)(x) - x
        r2 = small_block(0.2, relu=False)(x) - x  # same seed, same weights
    assert r1.abs().max() > 0
    torch.testing.assert_close(r2, 2 * r1)


def test_linear_conv_must_restore_the_block_width() -> None:
    # Figure 17 prints "1x1 Conv (1154 Linear)" on a 1152-channel input: not buildable.
    widths = InceptionResNetBWidths(branch1x1=192, branch7x7_reduce=128, branch7x7=(160, 192), linear=1154)
    with torch.device("meta"), pytest.raises(ValueError, match="1152 input channels, got 1154"):
        InceptionResNetB(1152, widths, residual_scale=0.1)


@pytest.mark.parametrize("name", RESIDUAL)
def test_drop_path_rates_decay_linearly(name: str) -> None:
    assert all(b.drop_path.p == 0.0 for b in residual_blocks(build_meta(name)))
    blocks = residual_blocks(build_meta(name, drop_path_rate=0.3))
    n = len(blocks)
    assert [b.drop_path.p for b in blocks] == pytest.approx([0.3 * i / n for i in range(1, n + 1)])
    with pytest.raises(ValueError, match="drop_path_rate"):
        build_meta(name, drop_path_rate=1.0)


def test_drop_path_drops_whole_samples_in_training_only() -> None:
    torch.manual_seed(0)
    drop = DropPath(0.25)
    x = torch.ones(4000, 3, 2, 2)
    assert torch.equal(drop.eval()(x), x)
    y = drop.train()(x)
    per_sample = y.flatten(1)
    assert torch.equal(per_sample.amin(1), per_sample.amax(1))  # a sample is kept or dropped whole
    kept = per_sample[:, 0] != 0
    torch.testing.assert_close(per_sample[kept, 0], torch.full((int(kept.sum()),), 1 / 0.75))
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert torch.equal(DropPath(0.0).train()(x), x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_drop_path_in_a_block() -> None:
    x = torch.randn(16, 256, 5, 5)
    with torch.no_grad():
        # Eval: identity, whatever the rate.
        torch.testing.assert_close(small_block(0.17, drop_path_rate=0.5)(x), small_block(0.17)(x))
        # Training: each sample either keeps its residual or gets relu(x) exactly.
        block = small_block(0.17, drop_path_rate=0.5).train()
        torch.manual_seed(1)
        out = block(x)
    dropped = [torch.equal(out[i], torch.relu(x[i])) for i in range(len(x))]
    assert 0 < sum(dropped) < len(x)


def test_inception_v4_has_no_residual_knobs() -> None:
    with pytest.raises(TypeError, match="unknown argument 'drop_path_rate'"):
        cnnlab.create_model("inception_v4", drop_path_rate=0.1)
