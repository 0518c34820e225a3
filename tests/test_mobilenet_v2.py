"""MobileNetV2: Table 2 read back from the built network, the width multiplier's rounding and
last-conv rule, residuals, torchvision keys at other widths, and the shared InvertedResidual."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import cnnlab
from cnnlab.models.layers import ConvBNAct, InvertedResidual
from zoo import build_meta

# Table 2, one line per operator: input (side, channels) and the operator's t, c, n, s.
TABLE_2_INPUTS = [(224, 3), (112, 32), (112, 16), (56, 24), (28, 32), (14, 64), (14, 96), (7, 160), (7, 320)]
TABLE_2_TCNS = [
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


def _input_shapes(model: nn.Module, size: int = 224) -> list[tuple[int, ...]]:
    """The input shape of every element of ``model.features``, on the meta device."""
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape[1:])))
             for m in model.features]
    model.eval()(torch.empty(1, 3, size, size, device="meta"))
    for h in hooks:
        h.remove()
    return shapes


def _blocks(model: nn.Module) -> list[InvertedResidual]:
    return [m for m in model.features if isinstance(m, InvertedResidual)]


def test_table_2_read_back() -> None:
    model = build_meta("mobilenet_v2")
    shapes = _input_shapes(model)
    blocks = _blocks(model)
    assert len(blocks) == sum(n for _t, _c, n, _s in TABLE_2_TCNS) == 17
    # The first block of each row sees Table 2's input; the row's other blocks see its output.
    start = 1
    for (side, channels), (t, c, n, s) in zip(TABLE_2_INPUTS[1:], TABLE_2_TCNS):
        assert shapes[start] == (channels, side, side)
        for i in range(n):
            block = blocks[start - 1 + i]
            assert block.depthwise.conv.stride == ((s, s) if i == 0 else (1, 1))
            assert block.depthwise.conv.kernel_size == (3, 3)
            assert block.project.conv.out_channels == c
            in_channels = channels if i == 0 else c
            assert block.depthwise.conv.in_channels == t * in_channels
            assert (block.expand is None) == (t == 1)
            assert isinstance(block.depthwise.act, nn.ReLU6)
            assert block.project.act is None  # linear bottleneck (§3.2)
        start += n
    assert shapes[-1] == (320, 7, 7)
    assert model.features[-1].conv.out_channels == model.num_features == 1280
    assert model.classifier[1].in_features == 1280


@pytest.mark.parametrize("width_mult", [0.35, 0.5, 0.75, 1.0, 1.3, 1.4])
def test_width_mult_rounding_and_last_conv(width_mult: float) -> None:
    model = build_meta("mobilenet_v2", width_mult=width_mult)
    blocks = _blocks(model)
    built = [(32, model.features[0].conv.out_channels)]
    for (_t, c, n, _s), first in zip(TABLE_2_TCNS, [0, 1, 3, 6, 10, 13, 16]):
        built.append((c, blocks[first].project.conv.out_channels))
    for paper, width in built:
        # The TF reference rounding: the nearest multiple of 8 (at least 8), one step up when
        # that would be more than 10 % narrower than paper * width_mult.
        value = paper * width_mult
        nearest = max(8, int(value + 4) // 8 * 8)
        assert width == (nearest if nearest >= 0.9 * value else nearest + 8)
    if width_mult <= 1.0:
        assert model.num_features == 1280  # §6.1: the last conv is not narrowed
    else:
        assert model.num_features % 8 == 0 and abs(model.num_features - 1280 * width_mult) <= 4


def test_residual_only_at_stride_1_with_equal_channels() -> None:
    for width_mult in (0.35, 1.0, 1.4):
        for b in _blocks(build_meta("mobilenet_v2", width_mult=width_mult)):
            in_channels = (b.expand or b.depthwise).conv.in_channels
            expected = b.depthwise.conv.stride == (1, 1) and in_channels == b.project.conv.out_channels
            assert b.use_residual == expected
    # At width 1: n - 1 residual blocks per row.
    assert sum(b.use_residual for b in _blocks(build_meta("mobilenet_v2"))) == sum(
        n - 1 for _t, _c, n, _s in TABLE_2_TCNS
    )


@pytest.mark.parametrize("width_mult", [0.35, 0.5, 1.4])
def test_torchvision_keys_at_other_widths(width_mult: float) -> None:
    # state_dict() speaks torchvision's keys, in torchvision's order, with the same shapes.
    with torch.device("meta"):
        theirs = torchvision.models.mobilenet_v2(width_mult=width_mult)
    ours = build_meta("mobilenet_v2", width_mult=width_mult)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]


def test_torchvision_outputs_at_half_width_both_ways() -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.mobilenet_v2(width_mult=0.5).eval()
    ours = cnnlab.create_model("mobilenet_v2", width_mult=0.5).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    torch.manual_seed(1)
    theirs.load_state_dict(cnnlab.create_model("mobilenet_v2", width_mult=0.5).state_dict(), strict=True)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_load_state_dict_also_accepts_our_module_paths() -> None:
    torch.manual_seed(0)
    source = cnnlab.create_model("mobilenet_v2", width_mult=0.35).eval()
    ours_keys = {**dict(source.named_parameters()), **dict(source.named_buffers())}
    assert "features.1.depthwise.conv.weight" in ours_keys
    target = cnnlab.create_model("mobilenet_v2", width_mult=0.35).eval()
    target.load_state_dict(ours_keys, strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


# The shared block -------------------------------------------------------------------------


def test_inverted_residual_adds_the_input_back() -> None:
    torch.manual_seed(0)
    block = InvertedResidual(8, 8, expanded_channels=48).eval()
    assert block.use_residual
    x = torch.randn(2, 8, 5, 5)
    nn.init.zeros_(block.project.bn.weight)  # the residual branch now outputs 0
    with torch.no_grad():
        assert torch.equal(block(x), x)
    strided = InvertedResidual(8, 8, expanded_channels=48, stride=2)
    assert not strided.use_residual
    assert not InvertedResidual(8, 16, expanded_channels=48).use_residual


def test_inverted_residual_parts() -> None:
    plain = InvertedResidual(16, 24, expanded_channels=16, kernel=5)
    assert plain.expand is None and plain.se is None and plain.shuffle is None
    assert plain.depthwise.conv.groups == 16 and plain.depthwise.conv.kernel_size == (5, 5)
    forced = InvertedResidual(16, 24, expanded_channels=16, expand=True, linear_expansion=True)
    assert forced.expand is not None and forced.expand.act is None
    se = InvertedResidual(16, 24, expanded_channels=64, se_channels=16, se_gate=nn.Hardsigmoid)
    assert se.se.fc1.out_channels == 16 and isinstance(se.se.gate, nn.Hardsigmoid)
    grouped = InvertedResidual(16, 24, expanded_channels=96, groups=2)
    assert grouped.expand.conv.groups == grouped.project.conv.groups == 2
    assert grouped.shuffle.groups == 2 and grouped.unshuffle.groups == 12
    assert isinstance(plain.depthwise, ConvBNAct)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stride": 3}, "stride must be 1 or 2"),
        ({"kernel": 4}, "kernel must be odd"),
        ({"expand": False}, "without an expansion conv"),
        ({"groups": 3}, "do not split into 3 groups"),
    ],
)
def test_inverted_residual_validates(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InvertedResidual(16, 16, expanded_channels=32, **kwargs)


def test_bad_width_mult_raises() -> None:
    with pytest.raises(ValueError, match="width_mult must be positive"):
        cnnlab.create_model("mobilenet_v2", width_mult=0.0)
