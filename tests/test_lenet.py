"""LeNet-5 as LeCun et al. 1998 §II.B describes it, read back from the built networks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.lenet import EuclideanRBF, PartialConv2d, ScaledTanh, TrainableSubsampling
from zoo import build_meta, conv_linear_macs, count_params

# Table I of the paper, as printed: rows are S2 maps 0-5, columns C3 maps 0-15.
TABLE_I = """
X . . . X X X . . X X X X . X X
X X . . . X X X . . X X X X . X
X X X . . . X X X . . X . X X X
. X X X . . X X X X . . X . X X
. . X X X . . X X X X . X X . X
. . . X X X . . X X X X . X X X
"""


def table_i() -> list[set[int]]:
    """The S2 maps feeding each C3 map, from the printed table."""
    rows = [line.split() for line in TABLE_I.strip().splitlines()]
    return [{i for i, row in enumerate(rows) if row[j] == "X"} for j in range(16)]


def paper_model(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    return cnnlab.create_model("lenet5_paper", **kwargs).eval()


def test_trainable_parameters_and_fixed_rbf_weights() -> None:
    model = build_meta("lenet5_paper")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 60_000  # §II.B
    buffers = dict(model.named_buffers())
    assert list(buffers) == ["output.prototypes"]
    assert buffers["output.prototypes"].numel() == 840  # 10 classes x 84
    assert not any("output" in name for name, _ in model.named_parameters())


def test_layer_parameters_as_in_section_ii_b() -> None:
    model = build_meta("lenet5_paper")
    f = model.features
    counts = {name: count_params(m) for name, m in [
        ("C1", f.c1), ("S2", f.s2), ("C3", f.c3), ("S4", f.s4), ("C5", f.c5), ("F6", model.f6),
    ]}
    assert counts == {"C1": 156, "S2": 12, "C3": 1516, "S4": 32, "C5": 48120, "F6": 10164}
    assert isinstance(f.s2, TrainableSubsampling) and isinstance(f.s4, TrainableSubsampling)


def test_connections_match_the_paper() -> None:
    """§II.B: 340,908 connections (a weight use per unit, biases counted; RBF: 84 per class)."""
    model = build_meta("lenet5_paper").eval()
    total = 0

    def hook(module: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        units = out[0].numel()
        if isinstance(module, nn.Conv2d):
            total += units * (module.weight[0].numel() + 1)
        elif isinstance(module, TrainableSubsampling):
            total += units * (module.kernel**2 + 1)
        elif isinstance(module, nn.Linear):
            total += units * (module.in_features + 1)
        elif isinstance(module, EuclideanRBF):
            total += units * module.in_features

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, TrainableSubsampling, nn.Linear, EuclideanRBF)):
            m.register_forward_hook(hook)
    model(torch.empty(1, 1, 32, 32, device="meta"))
    assert total == 340_908


def test_c3_connection_table_is_table_i() -> None:
    c3 = build_meta("lenet5_paper").features.c3
    assert isinstance(c3, PartialConv2d)
    assert sum(len(inputs) for inputs in c3.table) == 60
    assert [set(inputs) for inputs in c3.table] == table_i()
    # Maps 0-5 take 3 contiguous inputs, 6-11 four contiguous, 12-14 four discontinuous, 15 all.
    assert [len(t) for t in c3.table] == [3] * 6 + [4] * 9 + [6]


def test_c3_outputs_depend_only_on_their_table_inputs() -> None:
    c3 = paper_model().features.c3
    x = torch.randn(1, 6, 14, 14)
    with torch.no_grad():
        base = c3(x)
        for i in range(6):
            bumped = x.clone()
            bumped[:, i] += 1.0
            changed = (c3(bumped) - base).abs().amax(dim=(0, 2, 3)) > 0
            expected = [i in inputs for inputs in table_i()]
            assert changed.tolist() == expected, f"S2 map {i}"


def test_scaled_tanh_constants() -> None:
    model = build_meta("lenet5_paper")
    acts = [m for m in model.modules() if isinstance(m, ScaledTanh)]
    assert len(acts) == 6  # after C1, S2, C3, S4, C5 and F6
    for act in acts:
        assert act.amplitude == 1.7159 and act.slope == pytest.approx(2 / 3)
    f = ScaledTanh()
    x = torch.tensor([-1.0, 0.0, 1.0, 100.0])
    assert torch.allclose(f(x), torch.tensor([-1.0, 0.0, 1.0, 1.7159]), atol=2e-4)  # f(+-1) = +-1
    assert not any(isinstance(m, nn.Tanh) for m in model.modules())


def test_output_is_negative_squared_distance_by_hand() -> None:
    model = paper_model()
    protos = model.output.prototypes
    assert set(protos.unique().tolist()) == {-1.0, 1.0}
    # x = 0: every penalty is sum_j (0 - (+-1))^2 = 84.
    assert torch.equal(model.forward_head(torch.zeros(1, 84)), torch.full((1, 10), -84.0))
    # x = prototype of class 3: zero penalty for 3, 4 per differing pixel for the others.
    got = model.forward_head(protos[3:4].clone())[0]
    for k in range(10):
        differing = sum(int(a != b) for a, b in zip(protos[3].tolist(), protos[k].tolist()))
        assert got[k].item() == -4.0 * differing
    # x = 0.5 everywhere: (0.5 - 1)^2 = 0.25 per +1 pixel, (0.5 + 1)^2 = 2.25 per -1 pixel.
    got = model.forward_head(torch.full((1, 84), 0.5))[0]
    for k in range(10):
        plus = sum(v == 1.0 for v in protos[k].tolist())
        assert got[k].item() == pytest.approx(-(0.25 * plus + 2.25 * (84 - plus)))


def test_argmax_is_the_prototype_nearest_to_f6() -> None:
    model = paper_model()
    x = torch.randn(8, 1, 32, 32)
    with torch.no_grad():
        f6 = model.forward_features(x)
        logits = model(x)
    assert f6.shape == (8, 84)
    nearest = torch.cdist(f6, model.output.prototypes).argmin(dim=1)
    assert torch.equal(logits.argmax(dim=1), nearest)


def test_prototypes_are_distinct_7x12_digits_and_deterministic() -> None:
    protos = paper_model().output.prototypes
    assert protos.shape == (10, 7 * 12)
    assert len({tuple(p.tolist()) for p in protos}) == 10
    # Every digit's ink stays off the first and last bitmap rows (a 12-row glyph with margins).
    grid = protos.view(10, 12, 7)
    assert (grid[:, 0] == -1).all() and (grid[:, -1] == -1).all()
    assert torch.equal(protos, paper_model().output.prototypes)


def test_reset_classifier_rebuilds_prototypes() -> None:
    model = paper_model()
    digits = model.output.prototypes.clone()
    model.reset_classifier(15)
    assert model.num_classes == 15
    assert model.output.prototypes.shape == (15, 84)
    assert torch.equal(model.output.prototypes[:10], digits)
    assert set(model.output.prototypes[10:].unique().tolist()) == {-1.0, 1.0}
    assert count_params(model) == 60_000  # the new output layer adds no trainable weights
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 15)
    model.reset_classifier(4)
    assert torch.equal(model.output.prototypes, digits[:4])
    # Codes for extra classes do not depend on how many classes are asked for.
    a, b = paper_model(num_classes=12), paper_model(num_classes=20)
    assert torch.equal(a.output.prototypes, b.output.prototypes[:12])
    with pytest.raises(ValueError, match="positive integer"):
        model.reset_classifier(0)


def test_lenet5_textbook_form() -> None:
    model = build_meta("lenet5")
    assert count_params(model) == 61_706
    assert conv_linear_macs(model, (1, 1, 32, 32)) == 416_520
    f = model.features
    assert isinstance(f.c3, nn.Conv2d) and f.c3.in_channels == 6 and f.c3.groups == 1  # full C3
    assert isinstance(f.s2, nn.AvgPool2d) and isinstance(model.output, nn.Linear)
    assert not list(model.buffers())
    assert not any(isinstance(m, ScaledTanh) for m in model.modules())


def test_lecun_uniform_init() -> None:
    model = paper_model()
    bound = 2.4 / 25  # C1: fan-in 5x5
    assert model.features.c1.weight.abs().max().item() <= bound
    assert model.features.c1.weight.abs().max().item() > bound / 2
    assert model.f6.weight.abs().max().item() <= 2.4 / 120


@pytest.mark.parametrize("name", ["lenet5", "lenet5_paper"])
def test_only_32x32(name: str) -> None:
    model = build_meta(name)
    assert model.fixed_input_size == 32
    with pytest.raises(ValueError, match="takes 32x32 inputs only"):
        model(torch.empty(1, 1, 28, 28, device="meta"))
    assert math.prod(model(torch.empty(1, 1, 32, 32, device="meta")).shape) == 10
