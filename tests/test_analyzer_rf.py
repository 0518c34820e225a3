"""Receptive field through gates, per-pixel Linears, layout changes and operators without a rule.

Every expected value is computed by hand in the comments: a k×k window adds (k − 1)·jump.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.analysis import analyze
from cnnlab.analysis.field import _view_pos


class SEGate(nn.Module):
    """The issue's repro: three 3x3 convs (field 7), an SE gate, one more 3x3 conv: 9."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=1) for _ in range(3)])
        self.fc = nn.Conv2d(8, 8, 1)
        self.c4 = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(x)
        x = x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))
        return self.c4(x)


def test_se_gate_keeps_the_maps_field() -> None:
    a = analyze(SEGate(), (1, 8, 32, 32))
    rows = {r["name"]: r["receptive_field"] for r in a.layers}
    assert [rows[f"c.{i}"] for i in range(3)] == [3, 5, 7]
    assert rows["fc"] == 32  # the gate itself sees the whole input
    assert rows["c4"] == 9 and a.receptive_field == 9 and a.jump == 1


class LinearSE(nn.Module):
    """SE written with Linear layers on the pooled vector, gate reshaped to (N, C, 1, 1) and
    expanded: 3x3 conv (3), gate, 3x3 conv: 5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 4), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        n, c = x.shape[:2]
        gate = self.fc(self.pool(x).flatten(1)).view(n, c, 1, 1)
        return self.conv2(x * gate.expand_as(x))


@pytest.mark.parametrize("batch", [1, 3])
def test_linear_se_gate_keeps_the_maps_field(batch: int) -> None:
    assert analyze(LinearSE(), (batch, 4, 16, 16)).receptive_field == 5


class PerPixelLinear(nn.Module):
    """3x3 conv (3), a Linear on the channel axis of every pixel (NHWC), 3x3 conv: 5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(4, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).permute(0, 2, 3, 1)
        return self.conv2(self.fc(x).permute(0, 3, 1, 2))


@pytest.mark.parametrize("batch", [1, 2])
def test_per_pixel_linear_keeps_each_pixels_field(batch: int) -> None:
    a = analyze(PerPixelLinear(), (batch, 4, 12, 12))
    rows = {r["name"]: r["receptive_field"] for r in a.layers}
    assert rows["fc"] == 3 and rows["conv2"] == 5 and a.receptive_field == 5


class ConvNeXtBlock(nn.Module):
    """torchvision's ConvNeXt block layout: 7x7 depthwise, permute, LayerNorm, Linear, GELU,
    Linear, permute back, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        return x + self.mlp(self.norm(y)).permute(0, 3, 1, 2)


class TinyConvNeXt(nn.Module):
    """Stem 4x4/4 (field 4, jump 4), two blocks (+6·4 each: 52), global mean, LayerNorm, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.blocks = nn.Sequential(ConvNeXtBlock(8), ConvNeXtBlock(8))
        self.head = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


@pytest.mark.parametrize("batch", [1, 2])
def test_convnext_block(batch: int) -> None:
    a = analyze(TinyConvNeXt(), (batch, 3, 64, 64))
    rows = {r["name"]: (r["receptive_field"], r["jump"]) for r in a.layers}
    assert rows["stem"] == (4, 4) and rows["blocks.0"] == (28, 4) and rows["blocks.1"] == (52, 4)
    assert rows["head.1"] == (64, None)  # after global pooling: the whole input
    assert (a.receptive_field, a.jump) == (52, 4)


class FlattenHead(nn.Module):
    """3x3 conv (3), then a Linear on the flattened C·H·W: the Linear mixes every position."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


class TokenAttention(nn.Module):
    """Patches 4x4/4 (field 4), then attention over the tokens: every token sees every patch."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        return self.attn(t, t, t, need_weights=False)[0]


class TokenMixing(nn.Module):
    """MLP-Mixer's token mixing: a Linear across the token axis (here, 4 tokens)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.mix = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(self.patch(x).flatten(2))  # (N, C, tokens) @ (tokens, tokens)


def test_operators_that_mix_positions_see_the_whole_input() -> None:
    flat = analyze(FlattenHead(), (2, 1, 8, 8))
    assert {r["name"]: r["receptive_field"] for r in flat.layers}["fc"] == 8
    assert flat.receptive_field == 3  # the deepest map is the conv's
    for model in (TokenAttention(), TokenMixing()):
        a = analyze(model, (2, 3, 8, 8))
        rows = {r["name"]: r["receptive_field"] for r in a.layers}
        assert rows["patch"] == 4
        assert a.receptive_field == 8  # a map of tokens that each see the whole input
    for device in ("meta", "cpu"):  # the fused CPU path agrees with the math path
        a = analyze(TokenAttention().eval(), (1, 3, 16, 16), device=device)
        assert a.receptive_field == 16 and {r["name"]: r["receptive_field"] for r in a.layers}["attn"] == 16


class Odd(nn.Module):
    """A 3x3 conv (3), an operator without a counting rule, another 3x3 conv, global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.special.bessel_j0(self.conv1(x))).mean((2, 3))


def test_field_after_an_operator_without_a_rule_is_unknown() -> None:
    a = analyze(Odd(), (1, 1, 16, 16), device="cpu")
    rows = {r["name"]: (r["receptive_field"], r["jump"]) for r in a.layers}
    assert not a.complete and a.uncounted_ops[0]["op"] == "special_bessel_j0"
    assert rows["conv1"] == (3, 1) and rows["conv2"] == (None, None)
    assert (a.receptive_field, a.jump) == (None, None)


def test_reshape_positions() -> None:
    # (N·H·W, C) rows split back into (N, H, W, C); H·W flattened and split again.
    assert _view_pos((20, 1), (40, 3), (2, 4, 5, 3)) == (1, 4, 5, 1)
    assert _view_pos((1, 1, 4, 5), (2, 3, 4, 5), (2, 3, 20)) == (1, 1, 20)
    # Capsules × positions merged with classes, then split: the positions stay with capsules.
    assert _view_pos((1, 36), (1, 11520), (1, 1152, 10)) == (1, 36, 1)


# -- the zoo and torchvision: SE blocks do not reset the field --------------------------------


def _without(model: nn.Module, block: type) -> nn.Module:
    """``model`` with every ``block`` replaced by an identity: the plain counterpart."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, block):
                setattr(module, child_name, nn.Identity())
    return model


@pytest.mark.parametrize("name", ["se_resnet50", "se_resnext50_32x4d", "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet_a1"])
def test_zoo_se_models_have_their_plain_counterparts_field(name: str) -> None:
    from cnnlab.models.layers import SqueezeExcitation

    shape = (1, *cnnlab.model_info(name).input_size)
    with torch.device("meta"):
        se, plain = cnnlab.create_model(name), _without(cnnlab.create_model(name), SqueezeExcitation)
    assert any(isinstance(m, SqueezeExcitation) for m in se.modules())
    field = analyze(se, shape).receptive_field
    assert field == analyze(plain, shape).receptive_field and field > 224


@pytest.mark.parametrize(("se", "plain"), [("se_resnet18", "resnet18"), ("se_resnext50_32x4d", "resnext50_32x4d")])
def test_zoo_se_resnets_match_resnets(se: str, plain: str) -> None:
    fields = []
    for name in (se, plain):
        with torch.device("meta"):
            fields.append(analyze(cnnlab.create_model(name), (1, 3, 224, 224)).receptive_field)
    assert fields[0] == fields[1] > 224


def test_torchvision_models() -> None:
    tv = pytest.importorskip("torchvision")
    from torchvision.ops.misc import SqueezeExcitation

    def field(build) -> int:  # noqa: ANN001
        with torch.device("meta"):
            model = build()
        return analyze(model, (1, 3, 224, 224)).receptive_field

    # ConvNeXt-T: stem 4/4 (4); stages of 3, 3, 9, 3 blocks (+6·jump each) with 2x2/2
    # downsamples (+jump): 4 + 72 + 4 + 144 + 8 + 864 + 16 + 576 = 1688.
    assert field(lambda: tv.models.convnext_tiny(weights=None)) == 1688
    for build in (tv.models.efficientnet_b0, tv.models.mobilenet_v3_large):
        with_se = field(lambda: build(weights=None))
        assert with_se == field(lambda: _without(build(weights=None), SqueezeExcitation)) > 224


class PaddedBatch(nn.Module):
    """An image written into a larger zero buffer, as torchvision's detection transform batches
    images (``buffer[..., :h, :w].copy_(image)``) or as ``buffer[..., 2:18, 2:18] = image``, then
    two 3x3 convs: the buffer holds the image, so the fields are 3 and 5, not none."""

    def __init__(self, assign: bool) -> None:
        super().__init__()
        self.assign = assign
        self.c = nn.Conv2d(3, 4, 3)
        self.d = nn.Conv2d(4, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        buffer = x.new_zeros(1, 3, 20, 20)
        if self.assign:
            buffer[:, :, 2:18, 2:18] = x
        else:
            buffer[:, :, :16, :16].copy_(x)
        return self.d(self.c(buffer))


@pytest.mark.parametrize("device", ["meta", "cpu"])
@pytest.mark.parametrize("assign", [False, True])
def test_a_write_into_a_view_reaches_its_base(assign: bool, device: str) -> None:
    a = analyze(PaddedBatch(assign), (1, 3, 16, 16), device=device)
    rows = {r["name"]: r["receptive_field"] for r in a.layers}
    assert (rows["c"], rows["d"], a.receptive_field, a.jump) == (3, 5, 5, 1)
