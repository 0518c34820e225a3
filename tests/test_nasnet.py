"""NASNet-A beyond the generic tests: the cells read back from the built modules (Figure 4), the
stacking of Figure 2 (N normal cells between reductions, reductions halve the resolution), and
the Large model against the paper's published size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.models.layers import DropPath, SeparableConv2d
from cnnlab.models.nasnet import (
    NORMAL_CELL, REDUCTION_CELL, Cell, FactorizedReduction, Op, ReLUConvBN, SeparableBranch, State,
)
from zoo import build_meta, count_params

# name: (N, P, input size) - §4.1, Table 2 (Mobile) and Table 3 (Large).
NETS = {"nasnet_a_mobile": (4, 1056, 224), "nasnet_a_large": (6, 4032, 331)}


def cell_kinds(model: nn.Module) -> list[str]:
    return ["R" if cell.spec.reduction else "N" for cell in model.cells]


@pytest.mark.parametrize("name", sorted(NETS))
def test_cell_stacking(name: str) -> None:
    """Figure 2 (ImageNet): two stem reduction cells, then N normal, reduction, N normal,
    reduction, N normal; per-op filters F, 2F, 4F with 6 x 4F = P at the end."""
    n, p, _ = NETS[name]
    model = build_meta(name)
    assert cell_kinds(model) == list("RR" + "N" * n + "R" + "N" * n + "R" + "N" * n)
    assert len(model.cells) == 3 * n + 4
    normal_widths = [c.out_channels for c in model.cells if not c.spec.reduction]
    f = p // 24
    assert normal_widths == [6 * f] * n + [12 * f] * n + [24 * f] * n
    assert model.num_features == p


@pytest.mark.parametrize("name", sorted(NETS))
def test_reduction_cells_halve_the_resolution(name: str) -> None:
    _, _, size = NETS[name]
    model = build_meta(name).eval()
    sizes: list[int] = []
    for cell in model.cells:
        cell.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
    stem = model.stem(torch.empty(1, 3, size, size, device="meta")).shape[-1]
    model(torch.empty(1, 3, size, size, device="meta"))
    before = [stem] + sizes[:-1]
    for cell, size_in, size_out in zip(model.cells, before, sizes):
        assert size_out == ((size_in + 1) // 2 if cell.spec.reduction else size_in)
    assert sizes[-1] == {224: 7, 331: 11}[size]


def _op_matches(module: nn.Module, op: Op, stride: int) -> bool:
    if op in (Op.SEP_3x3, Op.SEP_5x5, Op.SEP_7x7):
        seps = [m for m in module if isinstance(m, SeparableConv2d)]
        k = {Op.SEP_3x3: 3, Op.SEP_5x5: 5, Op.SEP_7x7: 7}[op]
        # Applied twice, the stride only in the first application (§4 / appendix).
        return (
            isinstance(module, SeparableBranch) and len(seps) == 2
            and all(s.depthwise.kernel_size == (k, k) for s in seps)
            and [s.depthwise.stride for s in seps] == [(stride, stride), (1, 1)]
        )
    if op is Op.AVG_3x3:
        return isinstance(module, nn.AvgPool2d) and module.kernel_size == 3 and module.stride == stride
    if op is Op.MAX_3x3:
        return isinstance(module, nn.MaxPool2d) and module.kernel_size == 3 and module.stride == stride
    return isinstance(module, nn.Identity) and stride == 1


def test_cells_read_back_as_figure_4() -> None:
    """Every combination of every cell is the block of Figure 4 it was built from: its inputs,
    its operations, and stride 2 exactly on a reduction cell's reads of h_i / h_{i-1}."""
    model = build_meta("nasnet_a_mobile")
    for cell in model.cells:
        spec = NORMAL_CELL if not cell.spec.reduction else REDUCTION_CELL
        assert cell.spec == spec
        assert len(cell.combinations) == 5  # B = 5 blocks (§3)
        for combination, block in zip(cell.combinations, spec.blocks):
            assert (combination.left_input, combination.right_input) == (block.left_input, block.right_input)
            for module, state, op in ((combination.left, block.left_input, block.left_op),
                                      (combination.right, block.right_input, block.right_op)):
                stride = 2 if spec.reduction and state in (State.H_I, State.H_PREV) else 1
                assert _op_matches(module, op, stride), (block, op)


def test_figure_4_operations() -> None:
    """Figure 4 as drawn: the normal cell uses only separable 3x3/5x5, 3x3 average pooling and
    identities and concatenates h_{i-1} with its five blocks; the reduction cell adds 7x7
    separable convs and max pooling and concatenates four blocks."""
    normal_ops = {op for b in NORMAL_CELL.blocks for op in (b.left_op, b.right_op)}
    reduction_ops = {op for b in REDUCTION_CELL.blocks for op in (b.left_op, b.right_op)}
    assert normal_ops == {Op.SEP_3x3, Op.SEP_5x5, Op.AVG_3x3, Op.IDENTITY}
    assert reduction_ops == {Op.SEP_3x3, Op.SEP_5x5, Op.SEP_7x7, Op.AVG_3x3, Op.MAX_3x3, Op.IDENTITY}
    assert len(NORMAL_CELL.concat) == 6 and State.H_PREV in NORMAL_CELL.concat
    assert len(REDUCTION_CELL.concat) == 4 and State.BLOCK_0 not in REDUCTION_CELL.concat


def test_inputs_are_adjusted_to_the_cell_width() -> None:
    model = build_meta("nasnet_a_mobile")
    kinds = [type(c.preprocess_h_prev) for c in model.cells]
    # Stem cell 0 reads the raw stem conv; stem cell 1 and each first normal cell after a
    # reduction read an h_{i-1} of twice the resolution (factorised reduction); the rest a 1x1.
    n = 4
    expected = [nn.Identity, FactorizedReduction, FactorizedReduction] + [ReLUConvBN] * (n - 1)
    expected += [ReLUConvBN, FactorizedReduction] + [ReLUConvBN] * (n - 1)
    expected += [ReLUConvBN, FactorizedReduction] + [ReLUConvBN] * (n - 1)
    assert kinds == expected
    assert all(isinstance(c.preprocess_h_i, ReLUConvBN) for c in model.cells)


def test_large_model_against_the_paper() -> None:
    """Table 3 / §4.1: NASNet-A (6 @ 4032), 88.9 M parameters, 23.8 G mult-adds at 331. Ours
    (= pytorchcv nasnet_6a4032) is 0.17 % smaller in parameters."""
    model = build_meta("nasnet_a_large")
    assert abs(count_params(model) / 88.9e6 - 1) < 0.002
    assert round(cnnlab.analyze(model, (1, 3, 331, 331)).macs / 1e8) == 238


def test_scheduled_drop_path_grows_with_depth() -> None:
    model = build_meta("nasnet_a_mobile", drop_path_rate=0.3)
    rates = [max((m.p for m in c.modules() if isinstance(m, DropPath)), default=0.0) for c in model.cells]
    assert rates[:2] == [0.0, 0.0]  # stem cells
    assert rates[2:] == sorted(rates[2:]) and rates[-1] == pytest.approx(0.3)
    # Identities are never dropped.
    for cell in model.cells:
        for comb in cell.combinations:
            if isinstance(comb.left, nn.Identity):
                assert isinstance(comb.drop_left, nn.Identity)


def test_cell_forward_is_the_sum_of_its_blocks() -> None:
    torch.manual_seed(0)
    cell = Cell(NORMAL_CELL, 12, 12, 4, h_prev_is_larger=False).eval()
    h_i, h_prev = torch.randn(1, 12, 5, 5), torch.randn(1, 12, 5, 5)
    with torch.no_grad():
        out = cell(h_i, h_prev)
        p, c = cell.preprocess_h_prev(h_prev), cell.preprocess_h_i(h_i)
        block2 = nn.functional.avg_pool2d(c, 3, 1, 1, count_include_pad=False) + p
    assert out.shape == (1, 24, 5, 5)
    assert torch.allclose(out[:, :4], p)  # h_{i-1} comes first in the concatenation
    assert torch.allclose(out[:, 12:16], block2, atol=1e-6)  # block 2: avg 3x3(h_i) + h_{i-1}
