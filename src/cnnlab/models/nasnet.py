"""NASNet-A: Zoph, Vasudevan, Shlens, Le, "Learning Transferable Architectures for Scalable Image
Recognition", CVPR 2018, https://arxiv.org/abs/1707.07012.

What it contributes: instead of searching a whole network, an RNN controller searches two
*cells* on CIFAR-10 - a Normal cell (keeps the resolution) and a Reduction cell (halves it) -
which are then stacked into ImageNet networks of any size (§3, Fig. 2): the "NASNet search
space" makes an architecture transferable. Each cell has B = 5 blocks; a block picks two inputs
among the two previous cells' outputs h_i, h_{i-1} and earlier blocks' outputs, applies one
operation to each (separable 3x3/5x5/7x7, 3x3 average or max pooling, identity, ...) and adds
them; the unused block outputs are concatenated (§3). Figure 4 draws NASNet-A's two cells; they
are the tables ``NORMAL_CELL`` and ``REDUCTION_CELL`` below, one typed row per block, reading
like the figure. A network "N @ P" stacks N normal cells between reductions, P being the
filters of the penultimate layer (§4.1, Table 2/3).

Conventions the paper states (§4 and its appendix on the NASNet-A details; the same in TF-slim):
every separable convolution is applied twice, as ReLU -> separable conv -> BN, with the stride
only in the first application; every hidden state entering a cell is first brought to the cell's
width by ReLU -> 1x1 conv -> BN, and one of another resolution by a factorised reduction (two
1x1/2 paths offset by one pixel, concatenated). What the paper leaves open (the ImageNet stem,
which states are concatenated, paddings, BN epsilon) follows the TF-slim reference
(``nets/nasnet/nasnet.py``) as ported by pytorchcv (``nasnet_4a1056``/``nasnet_6a4032``), marked
at the line. NASNet-A Mobile: 5,289,978 parameters (paper: 5.3 M), 563.6 M multiply-adds
(paper: 564 M). NASNet-A Large: 88,753,150 parameters, pytorchcv nasnet_6a4032's count (paper:
88.9 M; the 0.2 % gap is unexplained - the auxiliary head would add millions, not 0.15 M),
23.78 G multiply-adds (paper: 23.8 G).

Deviation (padding): PyTorch pads symmetrically; TF "SAME" puts the extra pixel of an even input
at the bottom/right. Output sizes and counts are identical; only ported TF weights would see the
one-pixel misalignment (pytorchcv emulates TF by padding then cropping, which costs extra MACs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.models.base import ConvNet, check_probability
from cnnlab.models.layers import DropPath, SeparableConv2d, init_weights
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "Learning Transferable Architectures for Scalable Image Recognition",
    "Zoph, Vasudevan, Shlens, Le", 2017, "https://arxiv.org/abs/1707.07012",
)

# Not in the paper: TF-slim's batch-norm epsilon (pytorchcv keeps it).
BN_EPS = 1e-3


# --- The cells as data (Figure 4) ------------------------------------------------------------


class Op(Enum):
    """The operations Figure 4 uses (a subset of §3's list)."""

    SEP_3x3 = "sep 3x3"
    SEP_5x5 = "sep 5x5"
    SEP_7x7 = "sep 7x7"
    AVG_3x3 = "avg 3x3"
    MAX_3x3 = "max 3x3"
    IDENTITY = "identity"


class State(IntEnum):
    """The hidden states a block can read: the two cell inputs, then the blocks' outputs."""

    H_PREV = 0  # h_{i-1}, the output of the cell before the previous one
    H_I = 1  # h_i, the output of the previous cell
    BLOCK_0 = 2
    BLOCK_1 = 3
    BLOCK_2 = 4
    BLOCK_3 = 5
    BLOCK_4 = 6


class Block(NamedTuple):
    """One block of Figure 4: ``left_op(left_input) + right_op(right_input)``."""

    left_input: State
    left_op: Op
    right_input: State
    right_op: Op


@dataclass(frozen=True)
class CellSpec:
    blocks: tuple[Block, ...]
    concat: tuple[State, ...]  # the states concatenated into the cell's output, in order
    reduction: bool  # ops reading h_i / h_{i-1} have stride 2


S = State
# Figure 4 (left), the NASNet-A Normal cell.
NORMAL_CELL = CellSpec(
    blocks=(
        Block(S.H_I, Op.SEP_5x5, S.H_PREV, Op.SEP_3x3),
        Block(S.H_PREV, Op.SEP_5x5, S.H_PREV, Op.SEP_3x3),
        Block(S.H_I, Op.AVG_3x3, S.H_PREV, Op.IDENTITY),
        Block(S.H_PREV, Op.AVG_3x3, S.H_PREV, Op.AVG_3x3),
        Block(S.H_I, Op.SEP_3x3, S.H_I, Op.IDENTITY),
    ),
    # The five blocks and h_{i-1} (TF-slim: used_hiddenstates [1, 0, 0, 0, 0, 0, 0]): output 6x.
    concat=(S.H_PREV, S.BLOCK_0, S.BLOCK_1, S.BLOCK_2, S.BLOCK_3, S.BLOCK_4),
    reduction=False,
)
# Figure 4 (right), the NASNet-A Reduction cell.
REDUCTION_CELL = CellSpec(
    blocks=(
        Block(S.H_I, Op.SEP_5x5, S.H_PREV, Op.SEP_7x7),
        Block(S.H_I, Op.MAX_3x3, S.H_PREV, Op.SEP_7x7),
        Block(S.H_I, Op.AVG_3x3, S.H_PREV, Op.SEP_5x5),
        Block(S.BLOCK_1, Op.IDENTITY, S.BLOCK_0, Op.AVG_3x3),
        Block(S.BLOCK_0, Op.SEP_3x3, S.H_I, Op.MAX_3x3),
    ),
    concat=(S.BLOCK_1, S.BLOCK_2, S.BLOCK_3, S.BLOCK_4),  # block 0 is used inside: output 4x
    reduction=True,
)


# --- Blocks ----------------------------------------------------------------------------------


class ReLUConvBN(nn.Sequential):
    """ReLU -> 1x1 conv -> BN: brings a hidden state to the cell's width (§3 / TF-slim)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),  # the input is a hidden state other blocks still read
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
        )


class FactorizedReduction(nn.Module):
    """ReLU, then two paths - a 1x1/2 subsample and the same shifted by one pixel - each a 1x1
    conv to half the width, concatenated, BN: h_{i-1} at twice h_i's resolution brought to h_i's
    grid (the paper's appendix; TF-slim ``factorized_reduction``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"factorized reduction needs an even width, got {out_channels}")
        self.act = nn.ReLU(inplace=False)
        self.subsample = nn.AvgPool2d(kernel_size=1, stride=2)
        self.path1 = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.path2 = nn.Conv2d(in_channels, out_channels // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]  # one pixel down-right, zero filled
        x = torch.cat((self.path1(self.subsample(x)), self.path2(self.subsample(shifted))), dim=1)
        return self.bn(x)


class SeparableBranch(nn.Sequential):
    """A separable convolution applied twice (§4 / appendix): [ReLU -> SepConv -> BN] x 2, the
    stride in the first, the width change (``in_channels`` -> ``out_channels``) in the first."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),  # reads a hidden state shared with other blocks
            SeparableConv2d(in_channels, out_channels, kernel_size, stride),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.ReLU(inplace=True),
            SeparableConv2d(out_channels, out_channels, kernel_size, 1),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
        )


_KERNEL = {Op.SEP_3x3: 3, Op.SEP_5x5: 5, Op.SEP_7x7: 7}


def make_op(op: Op, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The module of one Figure 4 operation. Pools and identity keep the width, so they need
    ``in_channels == out_channels``; paddings keep "SAME" output sizes, ceil(n / stride)."""
    if op in _KERNEL:
        return SeparableBranch(in_channels, out_channels, _KERNEL[op], stride)
    if in_channels != out_channels:
        raise ValueError(f"{op.value} cannot change the width ({in_channels} -> {out_channels})")
    if op is Op.AVG_3x3:
        # TF "SAME" average pooling divides by the number of real pixels: count_include_pad=False.
        return nn.AvgPool2d(kernel_size=3, stride=stride, padding=1, count_include_pad=False)
    if op is Op.MAX_3x3:
        return nn.MaxPool2d(kernel_size=3, stride=stride, padding=1)
    if stride != 1:
        raise ValueError("an identity cannot have stride 2")
    return nn.Identity()


class Combination(nn.Module):
    """One block: ``left(states[left_input]) + right(states[right_input])``, each path dropped with
    ``drop_path`` (ScheduledDropPath, §4.1) unless it is an identity."""

    def __init__(self, block: Block, left: nn.Module, right: nn.Module, drop_path: float) -> None:
        super().__init__()
        self.left_input, self.right_input = int(block.left_input), int(block.right_input)
        self.left, self.right = left, right
        self.drop_left: nn.Module = DropPath(drop_path) if block.left_op is not Op.IDENTITY else nn.Identity()
        self.drop_right: nn.Module = DropPath(drop_path) if block.right_op is not Op.IDENTITY else nn.Identity()

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        left = self.drop_left(self.left(states[self.left_input]))
        return left + self.drop_right(self.right(states[self.right_input]))


class Cell(nn.Module):
    """A NASNet cell built from a ``CellSpec``.

    ``preprocess_h_i``: ReLU 1x1 conv BN to ``filters``. ``preprocess_h_prev``: a factorized
    reduction when h_{i-1} has twice h_i's resolution, a ReLU 1x1 conv BN when only the width
    differs, nothing when it already matches (TF-slim ``_reduce_prev_layer``), and nothing for
    the first stem cell, whose h_{i-1} is the raw stem conv output (``raw_h_prev``; only its
    separable ops read it, changing its width in their first application).
    """

    def __init__(
        self,
        spec: CellSpec,
        h_i_channels: int,
        h_prev_channels: int,
        filters: int,
        *,
        h_prev_is_larger: bool,
        raw_h_prev: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.preprocess_h_i = ReLUConvBN(h_i_channels, filters)
        if raw_h_prev:
            self.preprocess_h_prev: nn.Module = nn.Identity()
        elif h_prev_is_larger:
            self.preprocess_h_prev = FactorizedReduction(h_prev_channels, filters)
        elif h_prev_channels != filters:
            self.preprocess_h_prev = ReLUConvBN(h_prev_channels, filters)
        else:
            self.preprocess_h_prev = nn.Identity()
        channels = {S.H_PREV: h_prev_channels if raw_h_prev else filters, S.H_I: filters}
        combinations = []
        for k, block in enumerate(spec.blocks):
            paths = []
            for state, op in ((block.left_input, block.left_op), (block.right_input, block.right_op)):
                if state not in channels:
                    raise ValueError(f"block {k} reads {state.name} before it exists")
                stride = 2 if spec.reduction and state in (S.H_I, S.H_PREV) else 1
                paths.append(make_op(op, channels[state], filters, stride))
            combinations.append(Combination(block, paths[0], paths[1], drop_path))
            channels[State(S.BLOCK_0 + k)] = filters
        self.combinations = nn.ModuleList(combinations)
        self.out_channels = filters * len(spec.concat)

    def forward(self, h_i: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess_h_prev(h_prev), self.preprocess_h_i(h_i)]
        for combination in self.combinations:
            states.append(combination(states))
        return torch.cat([states[s] for s in self.spec.concat], dim=1)


# --- The network -------------------------------------------------------------------------------


class NASNetA(ConvNet):
    """NASNet-A "N @ P" for ImageNet (Figure 2, right).

    Stem: 3x3/2 conv (no padding) + BN, then two Reduction cells at 1/4 and 1/2 of the first
    stack's per-op filters (TF-slim ``num_stem_cells=2``, ``filter_scaling_rate=2``). Then three
    stacks of N Normal cells with a Reduction cell between stacks, per-op filters F, 2F, 4F where
    F = P / 24 (the last Normal cells concatenate 6 x 4F = P channels). ReLU, global average
    pooling, dropout, FC.

    ``repeats`` (N) and ``penultimate_filters`` (P); ``stem_filters``: 32 (Mobile) or 96 (Large),
    §4.1 / TF-slim. ``drop_path_rate``: ScheduledDropPath (§4.1), the rate growing linearly with
    the cell's depth (TF-slim); the schedule over training steps is the trainer's business.
    The auxiliary head of §4.1 is not built.
    """

    classifier_name = "fc"
    # The unpadded 3x3/2 stem conv needs 3 pixels; every later stride-2 layer keeps ceil(n / 2).
    min_input_size = 3

    def __init__(
        self,
        *,
        repeats: int,
        penultimate_filters: int,
        stem_filters: int,
        num_classes: int = 1000,
        in_channels: int = 3,
        dropout: float = 0.5,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if repeats < 1:
            raise ValueError(f"repeats (N) must be >= 1, got {repeats}")
        if penultimate_filters % 24:
            raise ValueError(f"penultimate_filters (P) must be a multiple of 24 (6 x 4F), got {penultimate_filters}")
        check_probability("dropout", dropout)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.in_channels, self.num_classes = in_channels, num_classes
        filters = penultimate_filters // 24
        self.stem = nn.Sequential(  # TF-slim conv0: 3x3/2 "VALID", BN, no ReLU (cells start with one)
            nn.Conv2d(in_channels, stem_filters, 3, 2, 0, bias=False),
            nn.BatchNorm2d(stem_filters, eps=BN_EPS),
        )
        # (spec, per-op filters, is a stem cell)
        plan: list[tuple[CellSpec, int, bool]] = [
            (REDUCTION_CELL, filters // 4, True), (REDUCTION_CELL, filters // 2, True),
        ]
        for stack in range(3):
            if stack > 0:
                plan.append((REDUCTION_CELL, filters * 2**stack, False))
            plan += [(NORMAL_CELL, filters * 2**stack, False)] * repeats
        main_cells = len(plan) - 2
        # (channels, resolution level) of h_{i-1} and h_i; the stem conv is level 0.
        h_prev, h_i = (stem_filters, 0), (stem_filters, 0)
        cells = []
        for index, (spec, cell_filters, is_stem) in enumerate(plan):
            rate = 0.0 if is_stem else drop_path_rate * (index - 1) / main_cells
            cell = Cell(
                spec, h_i[0], h_prev[0], cell_filters,
                h_prev_is_larger=h_prev[1] < h_i[1], raw_h_prev=index == 0, drop_path=rate,
            )
            cells.append(cell)
            h_prev, h_i = h_i, (cell.out_channels, h_i[1] + spec.reduction)
        self.cells = nn.ModuleList(cells)
        self.num_features = h_i[0]
        self.act = nn.ReLU(inplace=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(h_i[0], num_classes)
        init_weights(self)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h_prev = h_i = self.stem(x)
        for cell in self.cells:
            h_prev, h_i = h_i, cell(h_i, h_prev)
        return self.act(h_i)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.global_pool(x), 1)))


# --- Registration ------------------------------------------------------------------------------

# name: (N, P, stem filters, input size). §4.1 / Table 2: NASNet-A (4 @ 1056) at 224 ("Mobile")
# and NASNet-A (6 @ 4032) at 331 ("Large").
_VARIANTS = {
    "nasnet_a_mobile": (4, 1056, 32, 224),
    "nasnet_a_large": (6, 4032, 96, 331),
}

for _name, (_n, _p, _stem, _size) in _VARIANTS.items():
    register_model(
        _name, NASNetA, family="NASNet", paper=PAPER, input_size=(3, _size, _size),
        repeats=_n, penultimate_filters=_p, stem_filters=_stem,
    )
