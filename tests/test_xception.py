"""Xception beyond the generic tests: the separable convolutions are what §1.2 says they are, the
flows have Figure 5's shape, and the grid sizes at 299 are the reference implementation's."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.layers import SeparableConv2d
from cnnlab.models.xception import XceptionBlock
from zoo import build_meta


def separable_convs(model: nn.Module) -> list[SeparableConv2d]:
    return [m for m in model.modules() if isinstance(m, SeparableConv2d)]


def test_depthwise_convs_are_depthwise() -> None:
    model = build_meta("xception")
    seps = separable_convs(model)
    # Figure 5: 2 + 2 + 2 (entry) + 8 x 3 (middle) + 2 + 2 (exit) separable convolutions.
    assert len(seps) == 34
    for sep in seps:
        dw, pw = sep.depthwise, sep.pointwise
        assert dw.groups == dw.in_channels == dw.out_channels  # depth multiplier 1
        assert dw.kernel_size == (3, 3)
        assert pw.kernel_size == (1, 1) and pw.groups == 1
        assert pw.in_channels == dw.out_channels
    # 34 separable + 2 stem convs = Figure 5's 36 convolutional layers.
    stem_convs = [m for m in model.stem.modules() if isinstance(m, nn.Conv2d)]
    assert len(seps) + len(stem_convs) == 36


def test_no_activation_between_depthwise_and_pointwise() -> None:
    """§1.2: unlike an Inception module, no non-linearity between the two steps."""
    for sep in separable_convs(build_meta("xception")):
        children = list(sep.named_children())
        assert [name for name, _ in children] == ["depthwise", "pointwise"]
        assert all(type(child) is nn.Conv2d for _, child in children)


def test_middle_flow_is_eight_identity_residual_blocks() -> None:
    model = build_meta("xception")
    blocks = list(model.middle_flow)
    assert len(blocks) == 8
    for block in blocks:
        assert isinstance(block, XceptionBlock)
        assert isinstance(block.shortcut, nn.Identity)
        kinds = [type(m) for m in block.residual]
        assert kinds == [nn.ReLU, SeparableConv2d, nn.BatchNorm2d] * 3
        assert all(sep.pointwise.out_channels == 728 for sep in separable_convs(block))


def test_identity_shortcut_adds_the_untouched_input() -> None:
    """The block's first ReLU must not overwrite the input the shortcut adds back."""
    torch.manual_seed(0)
    block = build_meta("xception").middle_flow[0].to_empty(device="cpu")
    for p in block.parameters():
        nn.init.normal_(p, 0.0, 0.05)
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    block.eval()
    x = torch.randn(1, 728, 5, 5)
    with torch.no_grad():
        expected = block.residual(x.clone()) + x
        got = block(x.clone())
    assert torch.allclose(got, expected, atol=1e-6)


def test_entry_and_exit_blocks_match_figure_5() -> None:
    model = build_meta("xception")
    entry = list(model.entry_flow)
    assert [b.shortcut.conv.out_channels for b in entry] == [128, 256, 728]
    for block in entry + [model.exit_flow[0]]:
        conv = block.shortcut.conv  # "Conv 1x1, stride=2x2" (+ BN) on the shortcut
        assert conv.kernel_size == (1, 1) and conv.stride == (2, 2)
        assert block.shortcut.act is None
        assert isinstance(block.residual[-1], nn.MaxPool2d)
    # The first block follows the stem's ReLU and starts with the separable conv.
    assert isinstance(entry[0].residual[0], SeparableConv2d)
    assert all(isinstance(b.residual[0], nn.ReLU) for b in entry[1:])
    # Exit flow: 728 -> 728 -> 1024, then SepConv 1536, SepConv 2048.
    widths = [sep.pointwise.out_channels for sep in separable_convs(model.exit_flow)]
    assert widths == [728, 1024, 1536, 2048]
    assert model.num_features == 2048


def test_spatial_sizes_at_299() -> None:
    model = build_meta("xception").eval()
    sizes: dict[str, int] = {}

    def record(name: str):
        return lambda _m, _i, out: sizes.__setitem__(name, out.shape[-1])

    model.stem[0].register_forward_hook(record("stem_conv1"))
    model.stem.register_forward_hook(record("stem"))
    model.entry_flow.register_forward_hook(record("entry"))
    for i, block in enumerate(model.middle_flow):
        block.register_forward_hook(record(f"middle{i}"))
    model.exit_flow.register_forward_hook(record("exit"))
    model(torch.empty(1, 3, 299, 299, device="meta"))
    assert sizes["stem_conv1"] == 149  # 3x3/2, unpadded
    assert sizes["stem"] == 147  # then 3x3/1, unpadded
    assert sizes["entry"] == 19
    assert all(sizes[f"middle{i}"] == 19 for i in range(8))
    assert sizes["exit"] == 10
