"""BN-Inception: Figure 5 of Ioffe & Szegedy (2015) read back from the built network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models.bninception import BNInceptionModule
from zoo import build_meta

MODULES = ["3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b"]
STRIDE_2 = {"3c", "4e"}
# Figure 5's "output size" depth column, (3a) ... (5b).
FIGURE_5_DEPTH = [256, 320, 576, 576, 576, 576, 576, 1024, 1024, 1024]
# The same modules' widths as the sum of Figure 5's branch columns (#1x1 + #3x3 + double #3x3 +
# pool proj, or + the input's width for "pass through"); the paper's depth column disagrees at
# (4c), (4d) and (4e): 160+160+160+128 = 608, 96+192+192+128 = 608, 192+256+608 = 1056.
FIGURE_5_BRANCH_SUMS = [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]


def _traced_shapes() -> dict[str, tuple[int, ...]]:
    model = build_meta("bninception").eval()
    shapes: dict[str, tuple[int, ...]] = {}
    x = torch.empty(1, 3, 224, 224, device="meta")
    for name, layer in model.features.named_children():
        shapes[f"{name}:in"] = tuple(x.shape[1:])
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    return shapes


def test_module_widths_follow_figure_5() -> None:
    shapes = _traced_shapes()
    widths = [shapes[f"inception{m}"][0] for m in MODULES]
    assert widths == FIGURE_5_BRANCH_SUMS
    agree = [i for i, (a, b) in enumerate(zip(FIGURE_5_DEPTH, FIGURE_5_BRANCH_SUMS)) if a == b]
    assert [widths[i] for i in agree] == [FIGURE_5_DEPTH[i] for i in agree]
    assert [MODULES[i] for i in range(len(MODULES)) if i not in agree] == ["4c", "4d", "4e"]


def test_spatial_sizes_follow_figure_5() -> None:
    shapes = _traced_shapes()
    assert shapes["pool2"] == (192, 28, 28)
    assert [shapes[f"inception{m}"][1] for m in MODULES] == [28, 28, 14, 14, 14, 14, 14, 7, 7, 7]


@pytest.mark.parametrize("name", MODULES)
def test_stride_2_modules_halve_resolution_and_have_no_1x1_branch(name: str) -> None:
    model = build_meta("bninception")
    block = model.features.get_submodule(f"inception{name}")
    assert isinstance(block, BNInceptionModule)
    shapes = _traced_shapes()
    _, h_in, _ = shapes[f"inception{name}:in"]
    _, h_out, _ = shapes[f"inception{name}"]
    if name in STRIDE_2:
        assert h_out == h_in // 2
        assert block.branch1x1 is None
        assert isinstance(block.branch_pool, nn.MaxPool2d)  # "max + pass through"
        assert block.out_channels - shapes[f"inception{name}:in"][0] == (
            block.branch3x3[-1].conv.out_channels + block.branch3x3dbl[-1].conv.out_channels
        )
    else:
        assert h_out == h_in
        assert block.branch1x1 is not None and block.branch1x1.conv.kernel_size == (1, 1)


def test_pool_types_follow_figure_5() -> None:
    model = build_meta("bninception")
    pools = []
    for m in MODULES:
        branch = model.features.get_submodule(f"inception{m}").branch_pool
        pool = branch[0] if isinstance(branch, nn.Sequential) else branch
        pools.append("avg" if isinstance(pool, nn.AvgPool2d) else "max")
    assert pools == ["avg", "avg", "max", "avg", "avg", "avg", "avg", "max", "avg", "max"]


def test_no_5x5_kernel_and_bn_after_every_conv() -> None:
    model = build_meta("bninception")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert not any(c.kernel_size == (5, 5) for c in convs)
    assert {c.kernel_size for c in convs} == {(7, 7), (1, 1), (3, 3)}
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)
    # The 5x5 became a double 3x3: three convs in every double-3x3 branch.
    blocks = [m for m in model.modules() if isinstance(m, BNInceptionModule)]
    assert len(blocks) == 10
    assert all([c.conv.kernel_size for c in b.branch3x3dbl] == [(1, 1), (3, 3), (3, 3)] for b in blocks)


def test_bad_module_rows_are_rejected() -> None:
    with pytest.raises(ValueError, match="stride-2 module has no 1x1 branch"):
        BNInceptionModule(256, 64, 128, 160, 64, 96, nn.MaxPool2d, None, stride=2)
    with pytest.raises(ValueError, match="stride-1 module needs"):
        BNInceptionModule(256, 64, 128, 160, 64, 96, nn.AvgPool2d, None)
