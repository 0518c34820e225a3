"""MnasNet: Figure 7(a) (A1) and the B1 table read back from the built networks, A1's SE, and
torchvision reading our B1 state dicts (keys, version metadata, outputs)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision
from torch import nn

import cnnlab
from cnnlab.models.layers import InvertedResidual
from zoo import build_meta

# Per stage: block ("SepConv" or "MBConv<t>"), kernel, SE, repeats, output side x channels.
FIGURE_7A = """
SepConv 3 - 1 112 16
MBConv6 3 - 2 56 24
MBConv3 5 SE 3 28 40
MBConv6 3 - 4 14 80
MBConv6 3 SE 2 14 112
MBConv6 5 SE 3 7 160
MBConv6 3 - 1 7 320
"""
# MnasNet-B1, the authors' TF code's mnasnet_b1 (torchvision's MNASNet).
B1 = """
SepConv 3 - 1 112 16
MBConv3 3 - 3 56 24
MBConv3 5 - 3 28 40
MBConv6 5 - 3 14 80
MBConv6 3 - 2 14 96
MBConv6 5 - 4 7 192
MBConv6 3 - 1 7 320
"""


def _stage_outputs(model: nn.Module) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda _m, _a, out: shapes.append(tuple(out.shape[1:])))
             for m in model.layers]
    model.eval()(torch.empty(1, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize("name, table", [("mnasnet_a1", FIGURE_7A), ("mnasnet1_0", B1)])
def test_stages_read_back(name: str, table: str) -> None:
    model = build_meta(name)
    shapes = _stage_outputs(model)
    stem, *stages, head = model.layers
    assert shapes[0] == (32, 112, 112) and stem.conv.stride == (2, 2)
    rows = [line.split() for line in table.strip().splitlines()]
    assert len(stages) == len(rows)
    in_channels, in_side = 32, 112
    for stage, shape, (kind, k, se, repeats, side, out) in zip(stages, shapes[1:], rows):
        assert shape == (int(out), int(side), int(side))
        assert len(stage) == int(repeats)
        expansion = 1 if kind == "SepConv" else int(kind.removeprefix("MBConv"))
        for block in stage:
            assert isinstance(block, InvertedResidual)
            assert block.depthwise.conv.kernel_size == (int(k), int(k))
            assert block.depthwise.conv.out_channels == expansion * in_channels
            assert (block.expand is None) == (expansion == 1)
            assert isinstance(block.depthwise.act, nn.ReLU) and block.project.act is None
            if se == "SE":
                # A quarter of the block's input channels (se_ratio 0.25 of input_filters).
                assert block.se.fc1.out_channels == in_channels // 4
                assert isinstance(block.se.gate, nn.Sigmoid)
            else:
                assert block.se is None
            stride_1 = block.depthwise.conv.stride == (1, 1)
            assert stride_1 == (block is not stage[0] or int(side) == in_side)
            assert block.use_residual == (stride_1 and in_channels == int(out))
            in_channels = int(out)
        in_side = int(side)
    assert shapes[-1] == (1280, 7, 7) and head.conv.kernel_size == (1, 1)


@pytest.mark.parametrize("name", ["mnasnet0_5", "mnasnet0_75", "mnasnet1_3"])
def test_torchvision_keys_at_every_depth_multiplier(name: str) -> None:
    with torch.device("meta"):
        theirs = torchvision.models.get_model(name)
    ours = build_meta(name)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]


def test_torchvision_loads_our_b1_state_dict() -> None:
    # torchvision's MNASNet treats a state dict without version 2 metadata as its old
    # layout (and rebuilds its stem for alpha != 1): ours must say version 2.
    torch.manual_seed(0)
    ours = cnnlab.create_model("mnasnet0_5").eval()
    theirs = torchvision.models.mnasnet0_5().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_a1_keeps_its_own_keys_and_builds_at_other_widths() -> None:
    keys = build_meta("mnasnet_a1").state_dict()
    assert "layers.3.0.se.fc1.weight" in keys and "layers.0.conv.weight" in keys
    narrow = build_meta("mnasnet_a1", width_mult=0.5)
    assert narrow.layers[1][0].project.conv.out_channels == 8
    assert narrow.num_features == 1280  # the head conv is not scaled


def test_bn_momentum_is_an_argument() -> None:
    default = build_meta("mnasnet1_0")
    norms = [m for m in default.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == pytest.approx(1 - 0.9997) for m in norms)
    custom = build_meta("mnasnet_a1", bn_momentum=0.1, bn_eps=1e-3)
    assert all(m.momentum == 0.1 and m.eps == 1e-3 for m in custom.modules() if isinstance(m, nn.BatchNorm2d))
