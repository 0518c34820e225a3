"""LeNet-5: LeCun, Bottou, Bengio, Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proceedings of the IEEE 86(11), 1998, http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf.

What it contributes: the convolutional network as we know it (§II.A): local receptive fields,
shared weights (feature maps) and spatial sub-sampling, trained end to end by back-propagation.
§II.B describes LeNet-5 layer by layer on a 32x32 input: C1 (6@28x28), S2 (6@14x14), C3
(16@10x10, partially connected by Table I), S4 (16@5x5), C5 (120 maps of 1x1, a convolution
that is fully connected at this input size), F6 (84 units) and an output layer of Euclidean RBF
units; 60,000 trainable parameters and 340,908 connections.

Two forms:

- ``lenet5_paper``: §II.B as written: trainable sub-sampling, the partial C3 of Table I, the
  scaled tanh f(a) = A tanh(S a), A = 1.7159, S = 2/3 (Appendix A) after every layer up to F6,
  and fixed RBF prototypes (84 = 7x12 bitmaps of +-1) in the output layer.
- ``lenet5``: the form textbooks and tutorials call LeNet-5: full C3, parameter-free 2x2 average
  pooling, plain tanh and a linear output layer (61,706 parameters). Every difference from the
  paper is marked where it is built.

Both take exactly 32x32 inputs (C5 must produce 1x1 maps for F6) and initialise weights from
U(-2.4/F, 2.4/F), F the unit's fan-in (Appendix A). ``forward_features`` returns F6's 84
squashed outputs; ``forward_head`` is the output layer.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models.base import ConvNet, check_positive_int, lookup
from cnnlab.models.layers import initialize
from cnnlab.registry import Paper, register_model

PAPER = Paper(
    "Gradient-Based Learning Applied to Document Recognition",
    "LeCun, Bottou, Bengio, Haffner", 1998, "http://yann.lecun.com/exdb/publis/pdf/lecun-98.pdf",
)

# Table I: the S2 maps each C3 map takes as input (one entry per C3 map, §II.B). "The first six
# C3 feature maps take inputs from every contiguous subsets of three feature maps in S2. The next
# six take input from every contiguous subset of four. The next three take input from some
# discontinuous subsets of four. Finally the last one takes input from all S2 feature maps."
C3_CONNECTIONS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)

# Output-layer prototypes, the digits 0-9 side by side: 7 wide x 12 high, '#' = +1, '.' = -1
# (§II.B: "a stylized image of the corresponding character class drawn on a 7x12 bitmap"). The
# paper's own bitmaps (Fig. 3, an ASCII font) are not reproduced; these digits are ours.
DIGIT_BITMAPS = """
    ....... ....... ....... ....... ....... ....... ....... ....... ....... .......
    ..###.. ...#... .#####. .#####. .....#. ####### ..####. ####### .#####. .#####.
    .#...#. ..##... #.....# #.....# ....##. #...... .#..... ......# #.....# #.....#
    #.....# .#.#... ......# ......# ...#.#. #...... #...... .....#. #.....# #.....#
    #.....# ...#... ......# ......# ..#..#. ######. #...... .....#. #.....# #.....#
    #.....# ...#... .....#. ..####. .#...#. ......# ######. ....#.. .#####. #.....#
    #.....# ...#... ...##.. ......# #....#. ......# #.....# ....#.. #.....# .######
    #.....# ...#... ..#.... ......# ####### ......# #.....# ...#... #.....# ......#
    #.....# ...#... .#..... ......# .....#. ......# #.....# ...#... #.....# ......#
    .#...#. ...#... #...... #.....# .....#. #.....# #.....# ..#.... #.....# .....#.
    ..###.. .#####. ####### .#####. .....#. .#####. .#####. ..#.... .#####. .####..
    ....... ....... ....... ....... ....... ....... ....... ....... ....... .......
"""
BITMAP_WIDTH, BITMAP_HEIGHT = 7, 12
RBF_CODE_SEED = 1998


def rbf_prototypes(num_classes: int) -> list[list[float]]:
    """The fixed +-1 prototype of each class, 84 values each (7x12 bitmap, row by row).

    Classes 0-9 are the digit bitmaps. Deviation: for classes 10 and up the paper used the
    bitmaps of the other printable ASCII characters; we use a deterministic pseudo-random +-1
    code (seeded ``random.Random``), the same for a class whatever ``num_classes`` is.
    """
    check_positive_int("num_classes", num_classes)
    rows = [line.split() for line in DIGIT_BITMAPS.strip().splitlines()]
    glyphs = [glyph for row in rows for glyph in row]
    if (
        len(rows) != BITMAP_HEIGHT or any(len(row) != 10 for row in rows)
        or any(len(g) != BITMAP_WIDTH or set(g) - {"#", "."} for g in glyphs)
    ):
        raise ValueError("DIGIT_BITMAPS must be 12 rows of ten 7-character glyphs of '#' and '.'")
    codes = [[1.0 if c == "#" else -1.0 for row in rows for c in row[digit]] for digit in range(10)]
    rng = random.Random(RBF_CODE_SEED)
    while len(codes) < num_classes:
        codes.append([rng.choice((-1.0, 1.0)) for _ in range(BITMAP_WIDTH * BITMAP_HEIGHT)])
    return codes[:num_classes]


class ScaledTanh(nn.Module):
    """The squashing function f(a) = A tanh(S a) of §II.B (A = 1.7159) and Appendix A (S = 2/3),
    chosen so that f(1) = 1, f(-1) = -1 and the second derivative is largest at +-1, the RBF targets."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0) -> None:
        super().__init__()
        self.amplitude, self.slope = amplitude, slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4f}"


class TrainableSubsampling(nn.Module):
    """S2 / S4 (§II.B): per map, the sum of each non-overlapping 2x2 window times a trainable
    coefficient plus a trainable bias (2 parameters per map). The squashing follows separately."""

    def __init__(self, channels: int, kernel: int = 2) -> None:
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window_sum = F.avg_pool2d(x, self.kernel, self.kernel, divisor_override=1)
        return window_sum * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv2d(nn.Module):
    """A convolution with a connection table: output map j sees only input maps ``table[j]``.

    Built as one small convolution per output map over its selected inputs, so exactly the
    table's weights exist (C3: 60 connections x 25 + 16 biases = 1,516 parameters).
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], in_channels: int, kernel: int) -> None:
        super().__init__()
        for inputs in table:
            valid = all(0 <= i < in_channels for i in inputs) and len(set(inputs)) == len(inputs)
            if not inputs or not valid:
                raise ValueError(f"bad connection table entry {inputs} for {in_channels} input maps")
        self.table = table
        self.in_channels, self.out_channels = in_channels, len(table)
        self.convs = nn.ModuleList(nn.Conv2d(len(inputs), 1, kernel) for inputs in table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x[:, list(inputs)]) for conv, inputs in zip(self.convs, self.table)], 1)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels} maps, {sum(map(len, self.table))} connections"


class EuclideanRBF(nn.Module):
    """Output layer (§II.B): y_i = sum_j (x_j - w_ij)^2 with fixed w_ij = +-1.

    The prototypes are a buffer, not parameters: "the parameter vectors of these units were
    chosen by hand and kept fixed (at least initially)". Returns the penalties y (lower = better).
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        if in_features != BITMAP_WIDTH * BITMAP_HEIGHT:
            raise ValueError(f"RBF prototypes are 7x12 bitmaps: in_features must be 84, got {in_features}")
        self.in_features, self.num_classes = in_features, num_classes
        self.register_buffer("prototypes", torch.tensor(rbf_prototypes(num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(1) - self.prototypes).square().sum(-1)


@dataclass(frozen=True)
class LeNetSpec:
    """How a LeNet-5 form builds the layers the paper and the textbook disagree on.

    ``c3_connections``: Table I, or ``None`` for a fully connected C3.
    """

    c3_connections: tuple[tuple[int, ...], ...] | None
    activation: Callable[[], nn.Module]
    trainable_subsampling: bool
    rbf_output: bool


class LeNet5(ConvNet):
    """LeNet-5 form ``config`` (a key of ``VARIANTS``) on 32x32 inputs: C1, S2, C3, S4, C5 in
    ``features``, then ``f6`` and ``output``."""

    fixed_input_size = 32  # C5 yields 1x1 maps only at 32x32 (§II.B); F6 is fully connected
    classifier_name = "output"

    def __init__(self, *, config: str, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        lookup("LeNet-5", config, VARIANTS)
        self.spec = spec = VARIANTS[config]
        self.in_channels, self.num_classes = in_channels, num_classes
        act = spec.activation
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["c1"] = nn.Conv2d(in_channels, 6, 5)  # 6@28x28
        layers["c1_act"] = act()
        layers["s2"] = self._subsampling(6)  # 6@14x14
        if spec.trainable_subsampling:  # §II.B: S2's result "is passed through a sigmoidal function"
            layers["s2_act"] = act()
        # Deviation (lenet5): C3 fully connected instead of Table I's 60 connections.
        layers["c3"] = (
            nn.Conv2d(6, 16, 5) if spec.c3_connections is None else PartialConv2d(spec.c3_connections, 6, 5)
        )  # 16@10x10
        layers["c3_act"] = act()
        layers["s4"] = self._subsampling(16)  # 16@5x5
        if spec.trainable_subsampling:
            layers["s4_act"] = act()
        layers["c5"] = nn.Conv2d(16, 120, 5)  # 120@1x1
        layers["c5_act"] = act()
        self.features = nn.Sequential(layers)
        self.f6 = nn.Linear(120, 84)
        self.f6_act = act()
        self.num_features = 84
        # Deviation (lenet5): a linear output layer instead of the fixed Euclidean RBF units.
        self.output: nn.Module = (
            EuclideanRBF(84, num_classes) if spec.rbf_output else nn.Linear(84, num_classes)
        )
        self._init_lecun()

    def _subsampling(self, channels: int) -> nn.Module:
        if self.spec.trainable_subsampling:
            return TrainableSubsampling(channels)
        # Deviation (lenet5): parameter-free 2x2 average pooling, and no squashing after it.
        return nn.AvgPool2d(2, 2)

    def _init_lecun(self) -> None:
        """Appendix A: weights (and biases) ~ U(-2.4/F, 2.4/F), F the fan-in of the unit."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            elif isinstance(m, nn.Linear):
                fan_in = m.in_features
            elif isinstance(m, TrainableSubsampling):
                fan_in = m.kernel * m.kernel
            else:
                continue
            bound = 2.4 / fan_in
            initialize(nn.init.uniform_, m.weight, -bound, bound)
            initialize(nn.init.uniform_, m.bias, -bound, bound)

    def _forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.f6_act(self.f6(torch.flatten(self.features(x), 1)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.rbf_output:
            # Deviation: the RBF units output penalties (lower is better, §II.B); we return
            # their negatives so that, like every other model's logits, argmax is the prediction.
            return -self.output(x)
        return self.output(x)

    def reset_classifier(self, num_classes: int) -> None:
        """A new output layer for ``num_classes``: new fixed prototypes for the RBF form."""
        if not self.spec.rbf_output:
            super().reset_classifier(num_classes)
            return
        check_positive_int("num_classes", num_classes)
        device = self.output.prototypes.device
        self.output = EuclideanRBF(84, num_classes).to(device)
        self.num_classes = num_classes


VARIANTS: dict[str, LeNetSpec] = {
    "lenet5_paper": LeNetSpec(
        c3_connections=C3_CONNECTIONS, activation=ScaledTanh, trainable_subsampling=True, rbf_output=True,
    ),
    # Deviation: plain tanh instead of the scaled 1.7159 tanh(2/3 a) (Appendix A).
    "lenet5": LeNetSpec(
        c3_connections=None, activation=nn.Tanh, trainable_subsampling=False, rbf_output=False,
    ),
}

for _name in VARIANTS:
    register_model(
        _name, LeNet5, family="LeNet", paper=PAPER, input_size=(1, 32, 32), num_classes=10, config=_name,
    )
