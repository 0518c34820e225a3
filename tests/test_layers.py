"""The shared building blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.models.layers import (
    ChannelShuffle, DropPath, LocalResponseNorm, SqueezeExcitation, channel_shuffle, make_divisible,
    output_size, smallest_input,
)


def test_channel_shuffle_notes_example() -> None:
    x = torch.arange(9.0).view(1, 9, 1, 1)
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 3, 6, 1, 4, 7, 2, 5, 8]
    assert torch.equal(ChannelShuffle(3)(x), channel_shuffle(x, 3))
    with pytest.raises(ValueError, match="do not split into 4 groups"):
        channel_shuffle(x, 4)


def test_channel_shuffle_is_a_permutation_inverted_by_the_transposed_shuffle() -> None:
    x = torch.randn(2, 12, 3, 3)
    y = channel_shuffle(x, 3)
    assert sorted(y[0, :, 0, 0].tolist()) == sorted(x[0, :, 0, 0].tolist())
    assert torch.equal(channel_shuffle(y, 4), x)  # (3, 4) then (4, 3) undoes it


@pytest.mark.parametrize(
    "value, divisor, expected", [(32 * 0.35, 8, 16), (24 * 1.4, 8, 32), (1280 * 0.75, 8, 960), (16 * 0.5, 8, 8), (91, 8, 88), (90, 8, 88)]
)
def test_make_divisible(value: float, divisor: int, expected: int) -> None:
    assert make_divisible(value, divisor) == expected
    assert make_divisible(value, divisor) % divisor == 0
    assert make_divisible(value, divisor) >= 0.9 * value


def test_squeeze_excitation_gates_channels() -> None:
    se = SqueezeExcitation(8, 2)
    assert sum(p.numel() for p in se.parameters()) == 8 * 2 + 2 + 2 * 8 + 8
    nn.init.zeros_(se.fc2.weight)
    nn.init.zeros_(se.fc2.bias)
    x = torch.randn(2, 8, 4, 4)
    assert torch.allclose(se(x), x * 0.5)  # sigmoid(0) = 1/2 on every channel
    hard = SqueezeExcitation(8, 2, gate=nn.Hardsigmoid)
    nn.init.zeros_(hard.fc2.weight)
    nn.init.constant_(hard.fc2.bias, 3.0)
    assert torch.allclose(hard(x), x)  # h-sigmoid(3) = 1


def test_lrn_uses_the_papers_alpha() -> None:
    x = torch.rand(1, 7, 3, 3) + 0.5
    ours = LocalResponseNorm(size=5, alpha=1e-2, beta=0.75, k=2.0)(x)
    c = 3
    window = x[0, max(0, c - 2): c + 3, 0, 0]
    expected = x[0, c, 0, 0] / (2.0 + 1e-2 * window.square().sum()) ** 0.75
    assert torch.isclose(ours[0, c, 0, 0], expected)


def test_drop_path() -> None:
    torch.manual_seed(0)
    x = torch.ones(4000, 3)
    y = DropPath(0.25).train()(x)
    kept = (y[:, 0] != 0).float().mean().item()
    assert abs(kept - 0.75) < 0.03
    assert torch.allclose(y[y[:, 0] != 0], torch.full_like(y[y[:, 0] != 0], 1 / 0.75))
    assert torch.equal(DropPath(0.25).eval()(x), x)


def test_output_size_and_smallest_input() -> None:
    assert output_size(224, 11, 4, 2) == 55
    assert output_size(55, 3, 2, ceil_mode=True) == 27
    assert output_size(110, 3, 2, ceil_mode=True) == 55 and output_size(110, 3, 2) == 54
    assert smallest_input([(3, 2, 0, False), (3, 2, 0, False)]) == 7
