"""CondenseNet beyond the generic tests: Table 1's layout, the converted learned group convolution
(index -> BN-ReLU -> group conv -> permute, Fig. 3), and the paper's FLOPs once the authors'
counting convention is applied."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.condensenet import CondensedConv1x1, DenseLayer
from cnnlab.models.layers import ChannelShuffle
from zoo import build_meta, count_params

# Table 5 of the paper: (FLOPs, parameters) of CondenseNet-74 at C = G = 4 and 8.
PAPER = {"condensenet74_c4_g4": (529e6, 4.8e6), "condensenet74_c8_g8": (274e6, 2.9e6)}
GROUPS = {"condensenet74_c4_g4": 4, "condensenet74_c8_g8": 8}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_table_1_layout(name: str) -> None:
    """Five dense blocks of 4, 6, 8, 10, 8 layers, growth rates 8 ... 128, pooled in between."""
    g = GROUPS[name]
    model = build_meta(name)
    blocks = [model.get_submodule(f"block{i}") for i in range(1, 6)]
    layers = [[m for m in b if isinstance(m, DenseLayer)] for b in blocks]
    assert [len(ls) for ls in layers] == [4, 6, 8, 10, 8]
    assert [ls[0].conv2[2].out_channels for ls in layers] == [8, 16, 32, 64, 128]
    assert [isinstance(b[0], nn.AvgPool2d) for b in blocks] == [False, True, True, True, True]
    assert 2 + sum(2 * len(ls) for ls in layers) == 74  # stem + 2 convs per layer + FC
    for layer in (l for ls in layers for l in ls):
        k = layer.conv2[2].out_channels
        assert layer.conv1.conv.out_channels == 4 * k  # bottleneck 4k
        assert layer.conv1.conv.groups == g and layer.conv2[2].groups == g
        assert isinstance(layer.conv1.shuffle, ChannelShuffle) and layer.conv1.shuffle.groups == g
        assert layer.conv1.index.numel() == layer.conv1.conv.in_channels  # C = G: all inputs, reordered


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_complexity_with_the_authors_counting(name: str) -> None:
    """The paper's FLOPs come from the authors' ``measure_model``, which adds one operation per
    ReLU input element, per pooling-window element and per FC bias to the conv + FC
    multiply-adds: with them both models round to Table 5's figures."""
    model = build_meta(name).eval()
    extra = 0

    def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal extra
        if isinstance(module, nn.ReLU):
            extra += inputs[0].numel()
        elif isinstance(module, nn.AvgPool2d):
            extra += out.numel() * module.kernel_size**2
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            extra += inputs[0].numel()
        elif isinstance(module, nn.Linear):
            extra += module.out_features

    for m in model.modules():
        m.register_forward_hook(hook)
    macs = cnnlab.analyze(model, (1, 3, 224, 224)).macs
    flops, params = PAPER[name]
    assert round((macs + extra) / 1e6) == flops / 1e6
    assert round(count_params(model) / 1e5) == params / 1e5


def test_index_layer_selects_and_permutes_the_inputs() -> None:
    """Converted form (Fig. 3): the learned selection lives in ``index``; a permuted index is the
    same layer applied to the permuted input."""
    torch.manual_seed(0)
    layer = CondensedConv1x1(8, 16, groups=4, condense_factor=4).eval()
    x = torch.randn(1, 8, 4, 4)
    perm = torch.randperm(8)
    with torch.no_grad():
        plain = layer(x[:, perm])
        layer.index.copy_(perm)
        assert torch.allclose(layer(x), plain)
    # Condensation keeps 1/C of the inputs per group: G * in / C channels are selected.
    assert CondensedConv1x1(16, 32, groups=4, condense_factor=8).index.numel() == 8


def test_converted_index_survives_a_state_dict_round_trip() -> None:
    model = cnnlab.create_model("condensenet74_c8_g8")
    state = model.state_dict()
    assert any(k.endswith("conv1.index") for k in state) and "classifier.index" in state
    assert model.classifier.linear.in_features == model.num_features // 2  # the authors' pruned FC
