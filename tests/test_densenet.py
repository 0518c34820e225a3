"""DenseNet (Huang et al. 2017): Table 1 and Table 2 read back from the built networks, the
paper's compression, dropout placement, and memory-efficient (checkpointed) training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.densenet import DenseBlock, DenseLayer, Transition, densenet_bc_cifar, densenet_cifar
from zoo import build_meta, count_params

# Table 1: growth rate k and dense layers per block ("[1x1 conv, 3x3 conv] x n"); DenseNet-161
# (k = 48) is the authors' released model, not in the table.
TABLE_1 = {
    "densenet121": (32, (6, 12, 24, 16)),
    "densenet169": (32, (6, 12, 32, 32)),
    "densenet201": (32, (6, 12, 48, 32)),
    "densenet264": (32, (6, 12, 64, 48)),
    "densenet161": (48, (6, 12, 36, 24)),
}
# Table 1's "Output Size" column at 224x224: dense block i runs at 56 / 2^(i-1).
TABLE_1_BLOCK_SIZES = (56, 28, 14, 7)

# Table 2 (C10): (bottleneck and theta = 0.5, depth L, growth rate k, params in millions).
TABLE_2 = {
    "densenet40_k12_cifar": (False, 40, 12, 1.0),
    "densenet100_k12_cifar": (False, 100, 12, 7.0),
    "densenet100_k24_cifar": (False, 100, 24, 27.2),
    "densenet_bc100_k12_cifar": (True, 100, 12, 0.8),
    "densenet_bc250_k24_cifar": (True, 250, 24, 15.3),
    "densenet_bc190_k40_cifar": (True, 190, 40, 25.6),
}
# §3: "The feature-map sizes in the three dense blocks are 32x32, 16x16, and 8x8".
CIFAR_BLOCK_SIZES = (32, 16, 8)


def blocks_and_transitions(model: nn.Module) -> tuple[list[DenseBlock], list[Transition]]:
    modules = list(model.features.children())
    return (
        [m for m in modules if isinstance(m, DenseBlock)],
        [m for m in modules if isinstance(m, Transition)],
    )


def block_input_sizes(model: nn.Module, size: int) -> list[int]:
    """Spatial size of the input of each dense block, from a meta-device forward."""
    sizes: list[int] = []
    blocks, _ = blocks_and_transitions(model)
    handles = [b.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[-1])) for b in blocks]
    with torch.no_grad():
        model.eval()(torch.empty(1, 3, size, size, device="meta"))
    for h in handles:
        h.remove()
    return sizes


def expected_widths(
    initial: int, k: int, layers: tuple[int, ...], theta: float
) -> list[tuple[int, int | None]]:
    """(channels after block i, channels after transition i) by §3's arithmetic: a block adds
    k maps per layer, a transition keeps floor(theta * m)."""
    out: list[tuple[int, int | None]] = []
    channels = initial
    for i, n in enumerate(layers):
        channels += n * k
        trans = math.floor(theta * channels) if i < len(layers) - 1 else None
        out.append((channels, trans))
        channels = trans if trans is not None else channels
    return out


@pytest.mark.parametrize("name", TABLE_1)
def test_table_1_blocks_and_widths(name: str) -> None:
    k, layers = TABLE_1[name]
    model = build_meta(name)
    blocks, transitions = blocks_and_transitions(model)
    assert tuple(len(b) for b in blocks) == layers
    assert model.features.conv0.out_channels == 2 * k  # §3: "2k convolutions of size 7x7, stride 2"
    assert model.features.conv0.kernel_size == (7, 7) and model.features.conv0.stride == (2, 2)
    widths = expected_widths(2 * k, k, layers, theta=0.5)
    assert [b.out_channels for b in blocks] == [w for w, _ in widths]
    assert [t.conv.out_channels for t in transitions] == [t for _, t in widths[:-1]]
    assert model.num_features == widths[-1][0] == model.classifier.in_features
    for block in blocks:
        for layer in block.values():  # DenseNet-B: 1x1 conv to 4k maps, then 3x3 conv to k
            assert layer.conv1.kernel_size == (1, 1) and layer.conv1.out_channels == 4 * k
            assert layer.conv2.kernel_size == (3, 3) and layer.conv2.out_channels == k
    assert block_input_sizes(model, 224) == list(TABLE_1_BLOCK_SIZES)


def test_densenet264_depth_is_table_1s_265_weight_layers() -> None:
    # Table 1's 6-12-64-48 blocks: 2 * 130 dense convs + conv0 + 3 transitions + fc = 265.
    model = build_meta("densenet264")
    weight_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert weight_layers == 265
    for name in ("densenet121", "densenet169", "densenet201", "densenet161"):
        model = build_meta(name)
        assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == int(name[8:])


@pytest.mark.parametrize("name", TABLE_2)
def test_table_2_depth_widths_and_params(name: str) -> None:
    bc, depth, k, paper_millions = TABLE_2[name]
    model = build_meta(name)
    # L counts every weight layer (conv0, dense-layer convs, transitions, classifier).
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == depth
    n = (depth - 4) // (6 if bc else 3)
    blocks, transitions = blocks_and_transitions(model)
    assert tuple(len(b) for b in blocks) == (n, n, n)
    initial = 2 * k if bc else 16  # §3: "16 (or twice the growth rate for DenseNet-BC)"
    assert model.features.conv0.out_channels == initial
    widths = expected_widths(initial, k, (n, n, n), theta=0.5 if bc else 1.0)
    assert [b.out_channels for b in blocks] == [w for w, _ in widths]
    assert [t.conv.out_channels for t in transitions] == [t for _, t in widths[:-1]]
    assert all(hasattr(layer, "conv2") == bc for b in blocks for layer in b.values())  # B: two convs
    # Table 2 gives parameters to 0.1M: 1,019,722 -> 1.0M, 6,979,642 -> 7.0M, 27,249,082 -> 27.2M,
    # 769,162 -> 0.8M, 15,324,406 -> 15.3M, 25,624,430 -> 25.6M (C10 head).
    assert round(count_params(model) / 1e6, 1) == paper_millions
    assert block_input_sizes(model, 32) == list(CIFAR_BLOCK_SIZES)


def test_compression_sets_transition_widths() -> None:
    # DenseNet-40 (k = 12, 16 initial maps) with theta < 1 is DenseNet-C: each transition keeps
    # floor(theta * m) of the block's m maps (§3, "Compression"); theta = 1 keeps them all.
    for theta in (1.0, 0.5, 0.3):
        model = build_meta("densenet40_k12_cifar", compression=theta)
        _, transitions = blocks_and_transitions(model)
        widths = expected_widths(16, 12, (12, 12, 12), theta)
        assert [t.conv.out_channels for t in transitions] == [t for _, t in widths[:-1]]
        assert [t.conv.in_channels for t in transitions] == [w for w, _ in widths[:-1]]
    # theta = 1 turns DenseNet-BC into DenseNet-B, which starts from 16 maps like the plain net.
    assert build_meta("densenet_bc100_k12_cifar", compression=1.0).num_features == 16 + 3 * 16 * 12


def test_dropout_follows_every_conv_but_the_first() -> None:
    # §4.2: "we add a dropout layer after each convolutional layer (except the first one)".
    for name in ("densenet40_k12_cifar", "densenet_bc100_k12_cifar"):
        model = build_meta(name, dropout=0.2)
        convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
        drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        assert len(drops) == convs - 1 and all(d.p == 0.2 for d in drops)
    model = cnnlab.create_model("densenet40_k12_cifar", dropout=0.2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), model(x))
        torch.manual_seed(0)
        a = model.train()(x)
        torch.manual_seed(1)
        assert not torch.allclose(a, model(x))


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="3n \\+ 4"):
        densenet_cifar(depth=41, growth_rate=12)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        densenet_bc_cifar(depth=40 + 3, growth_rate=12)
    with pytest.raises(ValueError, match="compression"):
        cnnlab.create_model("densenet_bc100_k12_cifar", compression=0.0)
    with pytest.raises(ValueError, match="growth_rate"):
        cnnlab.create_model("densenet121", growth_rate=0)


def test_imagenet_growth_rate_knob_follows_k() -> None:
    model = build_meta("densenet121", growth_rate=16)
    assert model.features.conv0.out_channels == 32  # 2k
    assert model.num_features == expected_widths(32, 16, (6, 12, 24, 16), 0.5)[-1][0]


def _norm1_calls(model: nn.Module) -> list[int]:
    """Count the runs of each dense layer's first BN (on the concatenation). (Not conv1: the
    non-reentrant checkpoint stops recomputing inside conv1 once its input is saved again, so
    conv1's forward hooks do not fire during the recomputation.)"""
    calls = [0]
    for m in model.modules():
        if isinstance(m, DenseLayer):
            m.norm1.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_memory_efficient_same_outputs_gradients_and_running_stats() -> None:
    torch.manual_seed(0)
    plain = cnnlab.create_model("densenet_bc100_k12_cifar").train()
    efficient = cnnlab.create_model("densenet_bc100_k12_cifar", memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    calls = _norm1_calls(efficient)
    out1, out2 = plain(x1), efficient(x2)
    assert torch.allclose(out1, out2, atol=1e-6, rtol=0)
    target = torch.randn_like(out1)
    (out1 * target).sum().backward()
    layers = 3 * 16
    assert calls[0] == layers  # forward only: nothing recomputed yet
    (out2 * target).sum().backward()
    assert calls[0] == 2 * layers  # each concatenation + bottleneck recomputed once in backward
    assert torch.allclose(x1.grad, x2.grad, atol=1e-6, rtol=0)
    grads2 = dict(efficient.named_parameters())
    for name, p in plain.named_parameters():
        assert torch.allclose(p.grad, grads2[name].grad, atol=1e-5, rtol=1e-4), name
    # The recomputation must not update BN's running statistics a second time.
    buffers2 = dict(efficient.named_buffers())
    for name, b in plain.named_buffers():
        assert torch.allclose(b.float(), buffers2[name].float(), atol=1e-6, rtol=0), name


def test_memory_efficient_skips_checkpoint_without_grad() -> None:
    model = cnnlab.create_model("densenet_bc100_k12_cifar", memory_efficient=True)
    calls = _norm1_calls(model)
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 32, 32))
    assert calls[0] == 3 * 16
    meta = build_meta("densenet_bc100_k12_cifar", memory_efficient=True)
    ref = cnnlab.model_info("densenet_bc100_k12_cifar").reference
    assert ref is not None and ref.macs_match(cnnlab.analyze(meta, (1, 3, 32, 32)).macs)
