"""The four guideline experiments of ShuffleNet V2 (Ma et al. 2018, Section 2, Tables 1-4), run on
this machine beside the paper's numbers.

Each table is a family of small networks of (nearly) equal FLOPs whose speed differs:

- G1 (Table 1): equal channel width minimises memory access cost. Ten blocks of two 1x1 convs,
  c1 -> c2 -> c1, at c1:c2 = 1:1, 1:2, 1:6, 1:12; the columns x1/x2/x4 scale both widths.
- G2 (Table 2): excessive group convolution increases MAC. Ten 1x1 group convs c -> c stacked,
  with g = 1, 2, 4, 8 and c grown so that c^2 / g stays the same.
- G3 (Table 3): network fragmentation reduces parallelism. Ten blocks of 1, 2 or 4 1x1 convs in
  series or in parallel (the paper's appendix, Fig. 1), at the FLOPs of the 1-fragment block.
- G4 (Table 4): element-wise operations are not free. Ten ResNet bottleneck units with the ReLU
  and the shortcut removed separately.

All use a 56 x 56 input, as the paper says for each table. The paper's own numbers tie its tables
together: Table 2's g=1 row and Table 3's 1-fragment row time the same (ARM 40.0 and 40.2 images/s
at c=64; GPU 2451 and 2446 batches/s at c=128), so both are ten single 1x1 convs c -> c, and Table
2's x2/x4 columns equal Table 3's c=128/c=256 ones (10.2/10.1, 2.3/2.3), so xk multiplies the
widths by k (FLOPs by k^2); Table 1's x1 ARM row (two convs of 32 -> 32 per block, half of
Table 2's g=1 FLOPs) runs at about twice its speed (76.2 against 40.0), as it should.

The paper times batch 8 on a GPU (batches/s) and batch 1 on an ARM core (images/s); here the CPU
runs batch 1 and a GPU, when asked for, batch 8. The paper's numbers live in
``cnnlab/data/guidelines_paper.csv``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

__all__ = ["DEFAULT_MIN_TIME", "GUIDELINES", "Bottleneck", "GuidelineResult", "ParallelFragments", "Table", "build",
           "g3_width", "holds", "paper_numbers", "run_guidelines", "tables"]

GUIDELINES = ("G1", "G2", "G3", "G4")
SIDE = 56  # every table: "Input image size is 56 x 56"
ROUNDS = 3  # interleaved timing rounds per column (see run_guidelines)
DEFAULT_MIN_TIME = 2.0  # seconds of timed calls per network, all rounds together
QUICK_MIN_TIME = 0.6  # the same with --quick (cnnlab guidelines --quick, cnnlab report --quick)
BLOCKS = 10  # G1 "10 building blocks", G3 "stacked for 10 times", G4 "stacked repeatedly for 10 times";
# G2: not sure the paper's text says 10 for Table 2; its g=1 numbers equal G3's 1-fragment ones (ten convs)
PAPER_CSV = Path(__file__).resolve().parents[1] / "data" / "guidelines_paper.csv"


@dataclass(frozen=True)
class Table:
    """One guideline table on one device kind: its rows (settings), its columns and, for each
    (row, column), the network's input channels and a builder of the network."""

    guideline: str
    title: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    channels: Callable[[str, str], str]       # (row, column) -> the channel text shown
    network: Callable[[str, str], Any]        # (row, column) -> an nn.Module
    in_channels: Callable[[str, str], int]
    batch: int
    unit: str
    device_kind: str                           # "gpu" or "arm", the paper's column to compare with


def _convs(widths: Sequence[int], groups: int = 1) -> Any:
    """1x1 convolutions chained through ``widths`` (no bias, no BN, no activation: the tables
    time the convolutions alone)."""
    return [nn.Conv2d(a, b, 1, groups=groups, bias=False) for a, b in zip(widths, widths[1:])]


def _stack(make_block: Callable[[], Any]) -> Any:
    return nn.Sequential(*[make_block() for _ in range(BLOCKS)]).eval()


# -- G1 -------------------------------------------------------------------------------------------
# Table 1: "(c1, c2) for x1"; x2 and x4 double and quadruple both widths. The paper does not say so
# for Table 1; Tables 2 and 3 fix this reading (see the module docstring), and its ARM columns fall
# about 4x per step (76.2, 21.7, 5.3) as FLOPs growing 4x per step would make them.
G1_CHANNELS = {"gpu": {"1:1": (128, 128), "1:2": (90, 180), "1:6": (52, 312), "1:12": (36, 432)},
               "arm": {"1:1": (32, 32), "1:2": (22, 44), "1:6": (13, 78), "1:12": (9, 108)}}
SCALES = {"x1": 1, "x2": 2, "x4": 4}


def _g1(kind: str) -> Table:
    def widths(row: str, col: str) -> tuple[int, int]:
        c1, c2 = G1_CHANNELS[kind][row]
        return c1 * SCALES[col], c2 * SCALES[col]

    def network(row: str, col: str) -> Any:
        c1, c2 = widths(row, col)
        return _stack(lambda: nn.Sequential(*_convs((c1, c2, c1))))

    return Table("G1", "equal channel width minimises memory access cost", tuple(G1_CHANNELS[kind]),
                 tuple(SCALES), lambda r, c: "%d:%d" % widths(r, c), network, lambda r, c: widths(r, c)[0],
                 *_device(kind))


# -- G2 -------------------------------------------------------------------------------------------
# Deviation: the paper's ARM g=8 width, 180, is not divisible by 8 groups; 184 is the nearest
# width that is (c²/g 3 % above the g=1 row's, where 176 would be 5 % below).
G2_CHANNELS = {"gpu": {1: 128, 2: 180, 4: 256, 8: 360}, "arm": {1: 64, 2: 90, 4: 128, 8: 184}}


def _g2(kind: str) -> Table:
    def width(row: str, col: str) -> int:
        return G2_CHANNELS[kind][int(row[2:])] * SCALES[col]

    def network(row: str, col: str) -> Any:
        c, g = width(row, col), int(row[2:])
        # One group conv per block: the paper's g=1 timings equal G3's 1-fragment block (one conv).
        return _stack(lambda: _convs((c, c), groups=g)[0])

    rows = tuple(f"g={g}" for g in G2_CHANNELS[kind])
    return Table("G2", "excessive group convolution increases memory access cost", rows, tuple(SCALES),
                 lambda r, c: str(width(r, c)), network, width, *_device(kind))


# -- G3 -------------------------------------------------------------------------------------------
G3_ROWS = ("1-fragment", "2-fragment-series", "4-fragment-series", "2-fragment-parallel", "4-fragment-parallel")
G3_CHANNELS = {"gpu": (128, 256, 512), "arm": (64, 128, 256)}


class ParallelFragments(nn.Module):
    """The parallel-fragment block: ``k`` 1x1 convs on the same input, c -> c/k each, concatenated
    back to c channels. The merge is our reading of the appendix's Fig. 1 (not sure: it could be
    an addition of k convs c/sqrt(k) wide): concatenation keeps the FLOPs of the 1-fragment block
    exactly and adds no element-wise op, which G4 measures separately."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(c, c // k, 1, bias=False) for _ in range(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


def g3_width(c: int, row: str) -> int:
    """The series blocks' width at the 1-fragment block's FLOPs (Table 3: "the channel number in
    other fragmented structures is adjusted so that the FLOPs are the same as 1-fragment"): k convs
    of w -> w cost k·w² = c², so w = c / sqrt(k); the paper gives no widths, we take the integer
    whose k·w² is nearest c²."""
    k = int(row[0])
    if row == "1-fragment" or row.endswith("parallel"):
        return c
    low = math.isqrt(c * c // k)
    return min((low, low + 1), key=lambda w: abs(k * w * w - c * c))


def _g3(kind: str) -> Table:
    cols = tuple(f"c={c}" for c in G3_CHANNELS[kind])

    def network(row: str, col: str) -> Any:
        c, k = int(col[2:]), int(row[0])
        w = g3_width(c, row)
        if row.endswith("parallel"):
            return _stack(lambda: ParallelFragments(c, k))
        return _stack(lambda: nn.Sequential(*_convs((w,) * (k + 1))))

    return Table("G3", "network fragmentation reduces parallelism", G3_ROWS, cols,
                 lambda r, c: str(g3_width(int(c[2:]), r)), network, lambda r, c: g3_width(int(c[2:]), r),
                 *_device(kind))


# -- G4 -------------------------------------------------------------------------------------------
G4_ROWS = ("relu=yes shortcut=yes", "relu=yes shortcut=no", "relu=no shortcut=yes", "relu=no shortcut=no")
G4_CHANNELS = (32, 64, 128)


class Bottleneck(nn.Module):
    """ResNet's bottleneck unit (He et al. 2016, Fig. 5): 1x1 c -> c/4, 3x3 c/4 -> c/4, 1x1 c/4 -> c,
    a ReLU after each (the last after the shortcut's addition). Without BN: a deployed unit has
    its BN folded into the convs (the paper does not say whether its unit had BN)."""

    def __init__(self, c: int, relu: bool, shortcut: bool) -> None:
        super().__init__()
        m = c // 4
        self.relu, self.shortcut = relu, shortcut
        self.convs = nn.ModuleList([nn.Conv2d(c, m, 1, bias=False), nn.Conv2d(m, m, 3, padding=1, bias=False),
                                    nn.Conv2d(m, c, 1, bias=False)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, conv in enumerate(self.convs):
            y = conv(y)
            if i < 2 and self.relu:
                y = torch.relu(y)
        if self.shortcut:
            y = y + x
        return torch.relu(y) if self.relu else y


def _g4(kind: str) -> Table:
    def network(row: str, col: str) -> Any:
        relu, shortcut = "relu=yes" in row, "shortcut=yes" in row
        return _stack(lambda: Bottleneck(int(col[2:]), relu, shortcut))

    return Table("G4", "element-wise operations are not negligible", G4_ROWS, tuple(f"c={c}" for c in G4_CHANNELS),
                 lambda r, c: c[2:], network, lambda r, c: int(c[2:]), *_device(kind))


def _device(kind: str) -> tuple[int, str, str]:
    return (8, "batches/s", "gpu") if kind == "gpu" else (1, "images/s", "arm")


_BUILDERS = {"G1": _g1, "G2": _g2, "G3": _g3, "G4": _g4}


def tables(device: str = "cpu") -> dict[str, Table]:
    """The four tables with the paper's channels for ``device``'s kind: the GPU columns on CUDA,
    the ARM columns (the paper's CPU) otherwise."""
    kind = "gpu" if str(device).startswith("cuda") else "arm"
    return {g: _BUILDERS[g](kind) for g in GUIDELINES}


def build(table: Table, row: str, column: str) -> Any:
    """The network of one cell, in eval mode on the CPU."""
    return table.network(row, column)


# -- the paper's numbers and the guideline's direction ---------------------------------------------
def paper_numbers(path: Path = PAPER_CSV) -> dict[tuple[str, str, str, str], float]:
    """``{(guideline, device_kind, setting, column): value}`` from the packaged CSV."""
    with open(path, newline="") as f:
        return {(r["guideline"], r["device"], r["setting"], r["column"]): float(r["value"]) for r in csv.DictReader(f)}


def holds(guideline: str, speeds: dict[str, float]) -> bool:
    """Whether one column of speeds (row -> throughput, higher is faster; rows in the table's
    order) goes the paper's way: G1 the 1:1 row is the fastest; G2 the throughput never rises as g
    grows (g=1 >= g=2 >= g=4 >= g=8); G3 the 1-fragment block is the fastest; G4 the unit without
    ReLU and shortcut is at least as fast as the unit with both. Ties count as holding (the
    paper's own CPU columns tie)."""
    rows = list(speeds)
    if guideline == "G1":
        return speeds["1:1"] >= max(speeds.values())
    if guideline == "G2":
        return all(speeds[a] >= speeds[b] for a, b in zip(rows, rows[1:]))
    if guideline == "G3":
        return speeds["1-fragment"] >= max(speeds.values())
    if guideline == "G4":
        return speeds["relu=no shortcut=no"] >= speeds["relu=yes shortcut=yes"]
    raise ValueError(f"unknown guideline {guideline!r}: choose from {', '.join(GUIDELINES)}")


# -- running -------------------------------------------------------------------------------------
@dataclass
class GuidelineResult:
    """One table's run: its rows as the JSON has them (docs/guidelines.md) and the direction per
    column, ours and the paper's."""

    table: Table
    rows: list[dict[str, Any]] = field(default_factory=list)
    holds_by_column: dict[str, bool] = field(default_factory=dict)
    paper_holds_by_column: dict[str, bool] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return all(self.holds_by_column.values())

    def to_dict(self) -> dict[str, Any]:
        t = self.table
        return {"title": t.title, "unit": t.unit, "batch": t.batch, "paper_device": t.device_kind,
                "columns": list(self.holds_by_column), "rows": self.rows, "holds": self.holds,
                "holds_by_column": self.holds_by_column, "paper_holds_by_column": self.paper_holds_by_column}


def run_guidelines(
    which: Sequence[str] = GUIDELINES,
    *,
    device: str = "cpu",
    columns: int | None = None,
    side: int = SIDE,
    warmup: int = 2,
    repeat: int | None = None,
    min_time: float | None = None,
    rounds: int = ROUNDS,
    progress: Callable[[str, str, str], None] | None = None,
) -> dict[str, GuidelineResult]:
    """Time every cell of the chosen tables. ``columns`` keeps the first N columns (``--quick``:
    1); ``side`` is the input's side (56 in the paper; tests pass less). The FLOPs of each cell come
    from ``cnnlab.analyze``; the timing is ``cnnlab.bench.timer.time_callable`` (under
    ``torch.inference_mode``).

    A column's networks are timed in ``rounds`` interleaved rounds (every row, then every row
    again, ...), so that a burst of load from other processes falls on all rows of the column
    rather than on one; ``repeat`` timed calls or ``min_time`` seconds per network (default
    ``DEFAULT_MIN_TIME``) are split over the rounds, each round starts with ``warmup`` calls, and a
    cell's speed is taken at the median of all its calls. ``progress(guideline, row, column)`` is
    called as each cell is built."""
    from cnnlab.analysis import analyze
    from cnnlab.bench.timer import Timing, time_callable

    unknown = [g for g in which if g not in GUIDELINES]
    if unknown:
        raise ValueError(f"unknown guideline {unknown[0]!r}: choose from {', '.join(GUIDELINES)}")
    if columns is not None and columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if repeat is not None and min_time is not None:
        raise ValueError("give repeat or min_time, not both")
    if repeat is not None and repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if min_time is not None and not min_time > 0:
        raise ValueError(f"min_time must be > 0 seconds, got {min_time}")
    if repeat is None and min_time is None:
        min_time = DEFAULT_MIN_TIME
    if repeat is not None:
        rounds = min(rounds, repeat)
    per_round = {"repeat": None if repeat is None else math.ceil(repeat / rounds),
                 "min_time": None if min_time is None else min_time / rounds}
    paper = paper_numbers()
    out: dict[str, GuidelineResult] = {}
    for name, table in tables(device).items():
        if name not in which:
            continue
        cols = table.columns[:columns] if columns else table.columns
        result = out[name] = GuidelineResult(table)
        entries = {row: {"setting": row, "channels": {}, "flops": {}, "ours": {}, "paper": {}} for row in table.rows}
        for col in cols:
            calls: dict[str, Callable[[], Any]] = {}
            for row in table.rows:
                if progress is not None:
                    progress(name, row, col)
                model = build(table, row, col).to(device)
                shape = (table.batch, table.in_channels(row, col), side, side)
                entry = entries[row]
                entry["channels"][col] = table.channels(row, col)
                entry["flops"][col] = analyze(model, shape).flops
                entry["paper"][col] = paper.get((name, table.device_kind, row, col))
                x = torch.randn(shape, device=device)
                calls[row] = lambda model=model, x=x: model(x)
            samples: dict[str, list[float]] = {row: [] for row in table.rows}
            for _ in range(rounds):
                for row, call in calls.items():
                    timing = time_callable(call, batch=table.batch, warmup=warmup, device=device, **per_round)
                    samples[row].extend(timing.samples_ms)
            speeds = {}
            for row in table.rows:
                images_per_s = Timing(tuple(samples[row]), table.batch).images_per_s
                # images/s on the CPU, batches/s on a GPU, as the paper's columns
                per_batch = table.batch if table.device_kind == "gpu" else 1
                speeds[row] = entries[row]["ours"][col] = images_per_s / per_batch
            result.holds_by_column[col] = holds(name, speeds)
            result.paper_holds_by_column[col] = holds(name, {r: paper[(name, table.device_kind, r, col)]
                                                               for r in table.rows})
        result.rows = list(entries.values())
    return out
