"""CIFAR ResNets (He et al. 2015 §4.2), pre-activation (He et al. 2016), Wide ResNets
(Zagoruyko & Komodakis 2016) and ResNeXt-29 (Xie et al. 2017): depth rules, shortcut options,
widths, read back from the built networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.resnet import PreActBasicBlock
from cnnlab.models.resnet_cifar import (
    ZeroPadShortcut,
    preact_resnet_cifar,
    resnet_cifar,
    resnext_cifar,
    wide_resnet_cifar,
)
from zoo import build_meta, count_params

STAGES = ("layer1", "layer2", "layer3")


def weighted_layers(model: nn.Module) -> int:
    """Conv and FC layers outside the shortcuts: what the papers' depths count."""
    return sum(
        isinstance(m, (nn.Conv2d, nn.Linear)) and "downsample" not in name for name, m in model.named_modules()
    )


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110, 1202])
def test_depth_is_6n_plus_2_weighted_layers(depth: int) -> None:
    model = build_meta(f"resnet{depth}_cifar")
    n = (depth - 2) // 6
    assert [len(model.get_submodule(s)) for s in STAGES] == [n, n, n]
    assert weighted_layers(model) == depth
    # §4.2: "numbers of filters are {16, 32, 64}" on maps of 32, 16, 8.
    assert [model.get_submodule(s)[0].conv1.out_channels for s in STAGES] == [16, 32, 64]


def test_cifar_heads_default_to_10_classes_at_32x32() -> None:
    families = {"ResNet", "Pre-activation ResNet", "Wide ResNet", "ResNeXt"}
    names = [n for n in cnnlab.list_models("*_cifar*") if cnnlab.model_info(n).family in families]
    assert len(names) == 18
    for name in names:
        info = cnnlab.model_info(name)
        assert (info.input_size, info.num_classes) == ((3, 32, 32), 10), name
    assert build_meta("resnet20_cifar").fc.out_features == 10


def test_option_a_has_no_shortcut_parameters_and_option_b_does() -> None:
    a = build_meta("resnet20_cifar")
    b = build_meta("resnet20_cifar", shortcut="B")
    shortcuts_a = [m for m in a.modules() if isinstance(m, ZeroPadShortcut)]
    assert len(shortcuts_a) == 2  # where 16 -> 32 and 32 -> 64
    assert all(sum(p.numel() for p in m.parameters()) == 0 for m in shortcuts_a)
    assert count_params(a) == cnnlab.model_info("resnet20_cifar").ref_params  # 0.27M
    # Option B: a 1x1 conv + BN at the same two places, nothing else changes.
    assert count_params(b) - count_params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert isinstance(b.layer2[0].downsample[0], nn.Conv2d) and b.layer2[0].downsample[0].kernel_size == (1, 1)


def test_option_a_subsamples_and_pads_with_zeros() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert not out[:, 16:].any()


@pytest.mark.parametrize("depth", [0, 2, 10, 21, 111])
def test_invalid_cifar_depth_raises_clear_error(depth: int) -> None:
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 2"):
        resnet_cifar(depth=depth)


def test_invalid_shortcut_raises() -> None:
    with pytest.raises(ValueError, match="shortcut must be one of A, B"):
        cnnlab.create_model("resnet20_cifar", shortcut="C")


@pytest.mark.parametrize("name, depth", [("preact_resnet164_cifar", 164), ("preact_resnet1001_cifar", 1001)])
def test_preact_bottleneck_depth_is_9n_plus_2(name: str, depth: int) -> None:
    model = build_meta(name)
    n = (depth - 2) // 9
    assert [len(model.get_submodule(s)) for s in STAGES] == [n, n, n]
    assert weighted_layers(model) == depth
    assert [model.get_submodule(s)[0].conv3.out_channels for s in STAGES] == [64, 128, 256]
    assert isinstance(model.final_bn, nn.BatchNorm2d) and model.bn1 is None
    with pytest.raises(ValueError, match=r"9n \+ 2"):
        preact_resnet_cifar(depth=111, bottleneck=True)


def test_preact_resnet110_uses_basic_units_and_option_a() -> None:
    model = build_meta("preact_resnet110_cifar")
    assert all(isinstance(b, PreActBasicBlock) for s in STAGES for b in model.get_submodule(s))
    assert isinstance(model.layer2[0].downsample, ZeroPadShortcut)
    assert weighted_layers(model) == 110


@pytest.mark.parametrize("name, depth, k", [
    ("wrn28_10_cifar", 28, 10), ("wrn16_10_cifar", 16, 10), ("wrn40_4_cifar", 40, 4),
    ("wrn16_8_cifar", 16, 8), ("wrn28_12_cifar", 28, 12),
])
def test_wrn_depth_and_width(name: str, depth: int, k: int) -> None:
    model = build_meta(name)
    n = (depth - 4) // 6
    assert [len(model.get_submodule(s)) for s in STAGES] == [n, n, n]
    # Table 1: conv2, conv3, conv4 have 16k, 32k, 64k filters after a 16-filter conv1.
    assert model.conv1.out_channels == 16
    assert [model.get_submodule(s)[-1].conv2.out_channels for s in STAGES] == [16 * k, 32 * k, 64 * k]
    assert model.num_features == 64 * k


def test_wrn_any_valid_depth_and_width_builds_and_invalid_depth_raises() -> None:
    with torch.device("meta"):
        model = wide_resnet_cifar(depth=22, width_mult=3)
    assert [len(getattr(model, s)) for s in STAGES] == [3, 3, 3] and model.num_features == 192
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 4"):
        wide_resnet_cifar(depth=26, width_mult=10)
    with pytest.raises(ValueError, match="widening factor"):
        wide_resnet_cifar(depth=28, width_mult=0)


def test_wrn_dropout_sits_between_the_two_convs() -> None:
    model = build_meta("wrn16_8_cifar", dropout=0.3)
    blocks = [b for b in model.modules() if isinstance(b, PreActBasicBlock)]
    assert blocks and all(b.dropout.p == 0.3 for b in blocks)
    torch.manual_seed(0)
    block = PreActBasicBlock(4, 4, dropout=0.5).eval()
    calls: list[str] = []
    for name in ("conv1", "dropout", "conv2"):
        getattr(block, name).register_forward_hook(lambda *_a, name=name: calls.append(name))
    block(torch.randn(1, 4, 3, 3))
    assert calls == ["conv1", "dropout", "conv2"]


@pytest.mark.parametrize("name, c, d", [
    ("resnext29_8x64d_cifar", 8, 64), ("resnext29_16x64d_cifar", 16, 64), ("resnext29_32x4d_cifar", 32, 4),
])
def test_resnext29_cardinality_and_widths(name: str, c: int, d: int) -> None:
    model = build_meta(name)
    assert [len(model.get_submodule(s)) for s in STAGES] == [3, 3, 3]
    assert model.conv1.out_channels == 64
    for index, stage in enumerate(STAGES):
        block = model.get_submodule(stage)[0]
        assert block.conv2.groups == c
        assert block.conv2.out_channels == c * d * 2**index  # the width per group doubles per stage
        assert block.conv3.out_channels == 256 * 2**index
    assert weighted_layers(model) == 29
    with pytest.raises(ValueError, match=r"9n \+ 2"):
        resnext_cifar(depth=30, groups=c, base_width=d)
