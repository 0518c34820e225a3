"""MobileNetV3: Tables 1 and 2 read back from the built networks (input, kernel, exp size, #out,
SE, NL, stride per bneck row), the SE and BN settings, the tail, and torchvision's keys at
other widths."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from cnnlab.models.layers import ConvBNAct, InvertedResidual, make_divisible
from zoo import build_meta

# The bneck rows of the paper, column by column: input side, input channels, kernel, exp size,
# #out, SE, NL, s.
TABLE_1 = """
112 16 3 16 16 - RE 1
112 16 3 64 24 - RE 2
56 24 3 72 24 - RE 1
56 24 5 72 40 SE RE 2
28 40 5 120 40 SE RE 1
28 40 5 120 40 SE RE 1
28 40 3 240 80 - HS 2
14 80 3 200 80 - HS 1
14 80 3 184 80 - HS 1
14 80 3 184 80 - HS 1
14 80 3 480 112 SE HS 1
14 112 3 672 112 SE HS 1
14 112 5 672 160 SE HS 2
7 160 5 960 160 SE HS 1
7 160 5 960 160 SE HS 1
"""
TABLE_2 = """
112 16 3 16 16 SE RE 2
56 16 3 72 24 - RE 2
28 24 3 88 24 - RE 1
28 24 5 96 40 SE HS 2
14 40 5 240 40 SE HS 1
14 40 5 240 40 SE HS 1
14 40 5 120 48 SE HS 1
14 48 5 144 48 SE HS 1
14 48 5 288 96 SE HS 2
7 96 5 576 96 SE HS 1
7 96 5 576 96 SE HS 1
"""
# name: (bneck rows, last conv2d 1x1 width, the NBN conv after pooling)
TABLES = {
    "mobilenet_v3_large": (TABLE_1, 960, 1280),
    "mobilenet_v3_small": (TABLE_2, 576, 1024),
}
NL = {"RE": nn.ReLU, "HS": nn.Hardswish}


def _input_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape[1:])))
             for m in model.features]
    model.eval()(torch.empty(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize("name", sorted(TABLES))
def test_tables_read_back(name: str) -> None:
    rows, last_conv, head = TABLES[name]
    model = build_meta(name)
    stem, *blocks, tail = model.features
    shapes = _input_shapes(model)
    assert shapes[0] == (3, 224, 224)
    assert stem.conv.out_channels == 16 and stem.conv.stride == (2, 2) and isinstance(stem.act, nn.Hardswish)
    table = [line.split() for line in rows.strip().splitlines()]
    assert len(blocks) == len(table)
    for block, shape, (side, cin, k, exp, out, se, nl, s) in zip(blocks, shapes[1:], table):
        assert isinstance(block, InvertedResidual)
        assert shape == (int(cin), int(side), int(side))
        assert block.depthwise.conv.kernel_size == (int(k), int(k))
        assert block.depthwise.conv.out_channels == int(exp)
        assert (block.expand is None) == (int(exp) == int(cin))  # no 1x1 when exp size == input
        assert block.project.conv.out_channels == int(out)
        assert block.depthwise.conv.stride == (int(s), int(s))
        assert (block.se is not None) == (se == "SE")
        assert isinstance(block.depthwise.act, NL[nl])
        if block.expand is not None:
            assert isinstance(block.expand.act, NL[nl])
        assert block.project.act is None
        assert block.use_residual == (int(s) == 1 and int(cin) == int(out))
    # conv2d 1x1 (HS) then pool then conv2d 1x1 NBN (HS) then conv2d 1x1 NBN to k.
    assert isinstance(tail, ConvBNAct) and tail.conv.out_channels == last_conv == model.num_features
    assert isinstance(tail.act, nn.Hardswish)
    first, act, _dropout, last = model.classifier
    assert (first.in_features, first.out_features, last.in_features) == (last_conv, head, head)
    assert isinstance(act, nn.Hardswish)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_se_and_batch_norm_settings(name: str) -> None:
    model = build_meta(name)
    ses = [b.se for b in model.features if isinstance(b, InvertedResidual) and b.se is not None]
    assert ses
    for se in ses:
        # §5.3: the SE bottleneck is 1/4 of the expansion (rounded to 8), gated by h-sigmoid.
        assert se.fc1.out_channels == make_divisible(se.fc1.in_channels // 4, 8)
        assert isinstance(se.gate, nn.Hardsigmoid) and isinstance(se.activation, nn.ReLU)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-3 and m.momentum == 0.01 for m in norms)


@pytest.mark.parametrize("name", sorted(TABLES))
@pytest.mark.parametrize("width_mult", [0.75, 1.25])
def test_torchvision_keys_at_other_widths(name: str, width_mult: float) -> None:
    with torch.device("meta"):
        theirs = torchvision.models.get_model(name, width_mult=width_mult)
    ours = build_meta(name, width_mult=width_mult)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]


def test_torchvision_loads_our_state_dict() -> None:
    torch.manual_seed(0)
    ours = build_meta("mobilenet_v3_small").to_empty(device="cpu")
    for p in ours.parameters():
        nn.init.normal_(p, std=0.1)
    theirs = torchvision.models.mobilenet_v3_small()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    assert torch.equal(theirs.features[4].block[2].fc1.weight, ours.features[4].se.fc1.weight)
