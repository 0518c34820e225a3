"""The analyzer: the course's worked examples, exactly, and the traps existing counters disagree on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.analysis import analyze
from cnnlab.analysis.result import LAYER_FIELDS, TOTAL_FIELDS


def conv_only(*args, **kwargs) -> nn.Module:
    return nn.Sequential(nn.Conv2d(*args, **kwargs))


# ---------------------------------------------------------------------------------------------
# The course notes' worked examples
# ---------------------------------------------------------------------------------------------


def test_depthwise_5x5_on_3_channels() -> None:
    # 5x5 depthwise conv, 3 channels, 12x12 output: 3*(25+1) = 78 params, 12*12*3*25 MACs.
    a = analyze(conv_only(3, 3, 5, groups=3), (1, 3, 16, 16))
    assert a.params == 78
    assert a.macs == 10_800
    assert list(a.by_type) == ["conv_depthwise"]


def test_standard_vs_depthwise_separable() -> None:
    df, m, n, dk = 112, 64, 128, 3
    standard = analyze(conv_only(m, n, dk, padding=1, bias=False), (1, m, df, df))
    separable = analyze(
        nn.Sequential(nn.Conv2d(m, m, dk, padding=1, groups=m, bias=False), nn.Conv2d(m, n, 1, bias=False)),
        (1, m, df, df),
    )
    assert standard.macs == 924_844_032 == dk * dk * m * n * df * df
    assert separable.macs == 109_985_792 == dk * dk * m * df * df + m * n * df * df
    assert math.isclose(separable.macs / standard.macs, 1 / n + 1 / dk**2, rel_tol=1e-12)
    assert set(separable.by_type) == {"conv_depthwise", "conv1x1"}


def test_resnet_stem_conv() -> None:
    a = analyze(conv_only(3, 64, 7, stride=2, padding=3, bias=False), (1, 3, 224, 224))
    assert a.layers[-1]["output_shape"] == [1, 64, 112, 112]
    assert a.macs == 118_013_952 == 7 * 7 * 3 * 64 * 112 * 112


def test_vgg16_stage_by_stage() -> None:
    """The notes' "Case 1: VGG16": five stages and three FC layers, 15.47 G in total."""
    with torch.device("meta"):
        model = cnnlab.create_model("vgg16")
    a = analyze(model, (1, 3, 224, 224))
    rows = {row["name"]: row["macs"] for row in a.layers}
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    starts = [0] + [p + 1 for p in pools[:-1]]
    stages = [sum(rows.get(f"features.{i}", 0) for i in range(s, p)) for s, p in zip(starts, pools)]
    k = 3 * 3
    assert stages == [
        k * 3 * 64 * 224 * 224 + k * 64 * 64 * 224 * 224,
        k * 64 * 128 * 112 * 112 + k * 128 * 128 * 112 * 112,
        k * 128 * 256 * 56 * 56 + 2 * k * 256 * 256 * 56 * 56,
        k * 256 * 512 * 28 * 28 + 2 * k * 512 * 512 * 28 * 28,
        3 * k * 512 * 512 * 14 * 14,
    ]
    notes = [1.93e9, 2.78e9, 4.63e9, 4.63e9, 1.39e9]  # as printed in the notes (3 digits)
    assert all(math.isclose(ours, theirs, rel_tol=0.005) for ours, theirs in zip(stages, notes))
    fcs = [rows["classifier.0"], rows["classifier.3"], rows["classifier.6"]]
    assert fcs == [7 * 7 * 512 * 4096, 4096 * 4096, 4096 * 1000]
    assert a.macs == sum(stages) + sum(fcs) == 15_470_264_320


@pytest.mark.parametrize("c1, c2", [(64, 64), (32, 128), (128, 32), (16, 256)])
def test_1x1_conv_memory_access_formula_and_bound(c1: int, c2: int) -> None:
    h = w = 28
    a = analyze(conv_only(c1, c2, 1, bias=False), (1, c1, h, w))
    assert a.mem_access == h * w * (c1 + c2) + c1 * c2
    assert a.mem_access_bytes == 4 * a.mem_access
    flops_b = h * w * c1 * c2  # ShuffleNet V2 §2's B
    bound = 2 * math.sqrt(h * w * flops_b) + flops_b / (h * w)
    assert a.mem_access >= bound - 1e-6
    assert math.isclose(a.mem_access, bound) == (c1 == c2)


# ---------------------------------------------------------------------------------------------
# Convolutions and linear layers
# ---------------------------------------------------------------------------------------------


def test_bias_is_not_a_mac_but_a_flop() -> None:
    with_bias = analyze(conv_only(8, 16, 3, padding=1), (1, 8, 10, 10))
    without = analyze(conv_only(8, 16, 3, padding=1, bias=False), (1, 8, 10, 10))
    assert with_bias.macs == without.macs == 16 * 10 * 10 * 8 * 9
    assert with_bias.flops - without.flops == 16 * 10 * 10
    assert without.flops == 2 * without.macs


def test_grouped_dilated_strided_conv() -> None:
    a = analyze(conv_only(8, 16, 3, stride=2, padding=2, dilation=2, groups=4), (1, 8, 17, 17))
    out = a.layers[-1]["output_shape"]
    assert out == [1, 16, 9, 9]
    assert a.macs == 16 * 9 * 9 * (8 // 4) * 9
    assert list(a.by_type) == ["conv_grouped"]


def test_transposed_conv() -> None:
    model = nn.Sequential(nn.ConvTranspose2d(4, 8, 3, stride=2, padding=1, output_padding=1, groups=2))
    a = analyze(model, (1, 4, 5, 5))
    assert a.macs == 1 * 4 * 5 * 5 * (8 // 2) * 9  # N·Cin·Hin·Win·(Cout/g)·k²


def test_functional_conv_in_custom_module() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(6, 3, 3, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, self.weight, padding=1)

    a = analyze(Custom(), (2, 3, 8, 8))
    assert a.macs == 2 * 6 * 8 * 8 * 3 * 9
    assert a.params == 162 and a.layers[0]["params"] == 162


def test_linear_on_3d_input() -> None:
    a = analyze(nn.Linear(10, 20), (4, 7, 10))
    assert a.macs == 4 * 7 * 10 * 20
    assert a.flops == 2 * a.macs + 4 * 7 * 20
    assert a.layers[0]["output_shape"] == [4, 7, 20]


def test_matmul_operator_and_batch() -> None:
    class MatMul(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ x.transpose(-1, -2)

    a = analyze(MatMul(), (3, 5, 8))
    assert a.macs == 3 * 5 * 5 * 8


def test_broadcast_matmul_is_counted_and_its_unsafe_view_is_free() -> None:
    class Broadcast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(10, 4, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.matmul(x.unsqueeze(1), self.weight)  # (N, 1, 6, 4) @ (10, 4, 8)

    a = analyze(Broadcast(), (2, 6, 4))
    assert a.complete, a.uncounted_ops
    assert a.macs == 2 * 10 * 6 * 4 * 8


def test_batch_scales_linearly() -> None:
    with torch.device("meta"):
        model = cnnlab.create_model("vgg11")
    one, eight = analyze(model, (1, 3, 64, 64)), analyze(model, (8, 3, 64, 64))
    assert eight.macs == 8 * one.macs and eight.flops == 8 * one.flops
    assert eight.activations == 8 * one.activations
    assert eight.params == one.params


# ---------------------------------------------------------------------------------------------
# BN, activations, pooling, elementwise, data movement
# ---------------------------------------------------------------------------------------------


def test_batchnorm_eval_and_folded() -> None:
    n = 2 * 16 * 8 * 8
    plain = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
    biased = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1, bias=True), nn.BatchNorm2d(16))
    conv_flops = 2 * n * 4 * 9
    assert analyze(plain, (2, 4, 8, 8)).flops == conv_flops + 2 * n
    # Folded: the BN vanishes; a bias-less conv gains a bias (one add per element).
    assert analyze(plain, (2, 4, 8, 8), fold_bn=True).flops == conv_flops + n
    assert analyze(biased, (2, 4, 8, 8), fold_bn=True).flops == conv_flops + n
    assert analyze(biased, (2, 4, 8, 8)).flops == conv_flops + n + 2 * n
    folded = analyze(biased, (2, 4, 8, 8), fold_bn=True)
    assert folded.layers[-1]["mem_access"] == 0


@pytest.mark.parametrize("bias", [False, True])
def test_batchnorm_folded_into_linear(bias: bool) -> None:
    # Linear(10 -> 6) then BatchNorm1d on a batch of 3: 180 MACs; a bias-less Linear gains a bias
    # when the BN folds into it (one add per output element, 6 bias values read).
    model = nn.Sequential(nn.Linear(10, 6, bias=bias), nn.BatchNorm1d(6))
    folded = analyze(model, (3, 10), fold_bn=True)
    assert folded.macs == 180
    assert folded.flops == 2 * 180 + 18
    assert folded.layers[-1]["flops"] == (0 if bias else 18)
    assert folded.layers[-1]["mem_access"] == (0 if bias else 6)


ACTIVATIONS = [
    (nn.ReLU(), F.relu), (nn.ReLU(inplace=True), lambda x: F.relu(x, inplace=True)),
    (nn.ReLU6(), F.relu6), (nn.Sigmoid(), torch.sigmoid), (nn.Tanh(), torch.tanh),
    (nn.Hardswish(), F.hardswish), (nn.Hardsigmoid(), F.hardsigmoid), (nn.SiLU(), F.silu),
    (nn.GELU(), F.gelu), (nn.LeakyReLU(0.1), lambda x: F.leaky_relu(x, 0.1)), (nn.ELU(), F.elu),
    (nn.Mish(), F.mish), (nn.PReLU(), None),
]


@pytest.mark.parametrize("module, functional", ACTIVATIONS, ids=lambda v: type(v).__name__)
def test_activations_count_once_in_module_and_functional_form(module, functional) -> None:
    class Functional(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return functional(x)

    shape = (2, 3, 5, 5)
    n = math.prod(shape)
    a = analyze(nn.Sequential(module), shape)
    assert a.complete, a.uncounted_ops
    assert a.flops == n, (a.flops, a.uncounted_ops)
    if functional is not None:
        b = analyze(Functional(), shape)
        assert b.flops == n and b.complete


def test_inplace_activation_adds_no_activation_memory() -> None:
    out_of_place = analyze(nn.Sequential(nn.ReLU()), (1, 4, 8, 8))
    in_place = analyze(nn.Sequential(nn.ReLU(inplace=True)), (1, 4, 8, 8))
    assert out_of_place.activations == 256 and in_place.activations == 0
    assert out_of_place.mem_access == in_place.mem_access == 512


@pytest.mark.parametrize(
    "pool, size, out_size, window",
    [
        (nn.MaxPool2d(3, 2, ceil_mode=True), 112, 56, 9),
        (nn.MaxPool2d(3, 2), 112, 55, 9),
        (nn.AvgPool2d(2), 8, 4, 4),
        (nn.MaxPool2d(3, 1, padding=1), 7, 7, 9),
    ],
)
def test_pooling(pool: nn.Module, size: int, out_size: int, window: int) -> None:
    a = analyze(nn.Sequential(pool), (1, 2, size, size))
    assert a.layers[-1]["output_shape"] == [1, 2, out_size, out_size]
    assert a.flops == window * 2 * out_size * out_size and a.macs == 0


def test_adaptive_pooling() -> None:
    # Global: every input element once. 7 -> 3: windows [0,3) [2,5) [4,7) of size 3 per dim.
    assert analyze(nn.Sequential(nn.AdaptiveAvgPool2d(1)), (1, 4, 7, 7)).flops == 4 * 49
    assert analyze(nn.Sequential(nn.AdaptiveAvgPool2d(3)), (1, 4, 7, 7)).flops == 4 * 9 * 9
    assert analyze(nn.Sequential(nn.AdaptiveMaxPool2d(3)), (1, 4, 7, 7)).flops == 4 * 9 * 9


class Residual(nn.Module):
    def __init__(self, in_place: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.in_place = in_place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.in_place:
            y += x
            return y
        return x + y


@pytest.mark.parametrize("in_place", [False, True])
def test_residual_add(in_place: bool) -> None:
    a = analyze(Residual(in_place), (1, 4, 6, 6))
    n = 4 * 36
    root = next(r for r in a.layers if r["name"] == "")
    assert root["flops"] == n  # the add is charged to the module whose forward ran it
    assert root["mem_access"] == 3 * n
    assert root["activations"] == (0 if in_place else n)


def test_cat_costs_reads_and_writes_but_no_flops() -> None:
    class Cat(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x * 2], dim=1)

    a = analyze(Cat(), (1, 3, 4, 4))
    n = 3 * 16
    assert a.flops == n  # only the multiply
    cat_row = a.layers[0]
    assert cat_row["mem_access"] == (n + n) + (2 * n + 2 * n) + 0 * n
    assert a.complete


def test_interpolate() -> None:
    class Up(nn.Module):
        def __init__(self, mode: str) -> None:
            super().__init__()
            self.mode = mode

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, scale_factor=2, mode=self.mode)

    out = 2 * 3 * 8 * 8
    assert analyze(Up("nearest"), (2, 3, 4, 4)).flops == 0
    assert analyze(Up("bilinear"), (2, 3, 4, 4)).flops == 7 * out
    assert analyze(Up("nearest"), (2, 3, 4, 4)).mem_access == 2 * 3 * 16 + out


def test_channel_shuffle_is_one_copy() -> None:
    class Shuffle(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, c, h, w = x.shape
            return x.view(n, 3, c // 3, h, w).transpose(1, 2).contiguous().view(n, c, h, w)

    a = analyze(Shuffle(), (1, 9, 4, 4))
    assert a.flops == 0 and a.macs == 0
    assert a.mem_access == 2 * 9 * 16  # read once, write once; the views are free
    assert a.activations == 9 * 16 and a.complete


def test_squeeze_excitation_broadcast_multiply() -> None:
    class SE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
            return x * s

    a = analyze(SE(), (1, 8, 5, 5))
    root = next(r for r in a.layers if r["name"] == "")
    n = 8 * 25
    # mean (n) + relu (2) + sigmoid (8) + multiply (n); the gate is read once per element, not n times
    assert root["flops"] == n + 2 + 8 + n
    assert a.macs == 8 * 2 + 2 * 8
    multiply_reads = n + 8
    mean_reads = n
    assert root["mem_access"] == (mean_reads + 8) + (2 + 2) + (8 + 8) + (multiply_reads + n)


def test_softmax_and_uncounted_op() -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.special.bessel_j0(torch.softmax(x, dim=1))

    a = analyze(Odd(), (2, 10))
    assert not a.complete
    assert a.uncounted_ops == [{"op": "special_bessel_j0", "count": 1, "module": ""}]
    assert a.flops == 5 * 20  # never a silent zero: the op is listed, the rest counted


# ---------------------------------------------------------------------------------------------
# Parameters, reuse, model untouched
# ---------------------------------------------------------------------------------------------


def test_reused_module_tied_and_frozen_parameters_and_buffers() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.head = nn.Linear(4, 4)
            self.tail = nn.Linear(4, 4)
            self.tail.weight = self.head.weight  # tied
            self.bn.requires_grad_(False)  # frozen

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.bn(self.block(self.block(x)))
            return self.tail(self.head(x.mean((2, 3))))

    a = analyze(Net(), (1, 4, 6, 6))
    assert a.params == (4 * 4 * 9 + 4) + 8 + (16 + 4) + 4
    assert a.trainable_params == a.params - 8
    assert a.buffers == 4 + 4 + 1
    assert a.model_size_bytes == 4 * (a.params + 8) + 8  # num_batches_tracked is int64
    block = next(r for r in a.layers if r["name"] == "block")
    assert block["calls"] == 2 and block["macs"] == 2 * 4 * 36 * 4 * 9
    assert sum(r["params"] for r in a.layers) == a.params


def test_model_is_not_modified() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = analyze(model, (2, 3, 8, 8))
    assert model.training and a.macs == 2 * 4 * 36 * 27
    assert all(t.device.type == "cpu" for t in model.state_dict().values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    real = analyze(model, (2, 3, 8, 8), device="cpu")
    assert model.training and real.macs == a.macs and real.flops == a.flops


def test_each_modules_training_flag_is_restored() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    model[1].eval()  # a frozen BN inside a training model stays frozen
    analyze(model, (1, 3, 8, 8))
    assert [m.training for m in model] == [True, False, True] and model.training


def test_index_reads_its_index_tensor() -> None:
    class Pick(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("idx", torch.tensor([0, 2, 2, 1]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, self.idx]  # aten.index with indices [None, idx]

    a = analyze(Pick(), (2, 3, 5))
    assert a.mem_access == 2 * 3 * 5 + 4 + 2 * 4 * 5  # x, the 4 indices, the result
    assert a.activations == 2 * 4 * 5 and a.complete


def test_hooks_are_removed_even_when_forward_fails() -> None:
    from torch.nn.modules import module as module_mod

    class Fails(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    before = (len(module_mod._global_forward_pre_hooks), len(module_mod._global_forward_hooks))
    analyze(nn.Sequential(nn.Conv2d(3, 4, 3)), (1, 3, 8, 8))
    with pytest.raises(RuntimeError, match="boom"):
        analyze(nn.Sequential(nn.Conv2d(3, 4, 3), Fails()), (1, 3, 8, 8))
    assert (len(module_mod._global_forward_pre_hooks), len(module_mod._global_forward_hooks)) == before


def test_module_made_during_forward_is_charged_to_its_caller() -> None:
    class MakesOne(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.ReLU()(x)  # not a submodule: no name of its own

    a = analyze(nn.Sequential(MakesOne()), (1, 3, 4, 4))
    assert [(row["name"], row["flops"]) for row in a.layers] == [("0", 48)]


def test_concurrent_analyses_of_one_model_do_not_mix() -> None:
    """Analyses in several threads, and a plain forward pass of the same model in another
    thread (which the module hooks also see), give what one analysis alone gives."""
    import threading

    with torch.device("meta"):
        model = cnnlab.create_model("resnet18").eval()
    expected = {side: analyze(model, (1, 3, side, side)).to_dict() for side in (64, 96, 128, 160)}
    got: dict[int, list[dict]] = {side: [] for side in expected}
    stop = threading.Event()

    def work(side: int) -> None:
        for _ in range(3):
            got[side].append(analyze(model, (1, 3, side, side)).to_dict())

    def plain_forwards() -> None:
        x = torch.empty(1, 3, 64, 64, device="meta")
        while not stop.is_set():
            model(x)

    other = threading.Thread(target=plain_forwards)
    other.start()
    threads = [threading.Thread(target=work, args=(side,)) for side in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    other.join()
    assert got == {side: [d] * 3 for side, d in expected.items()}


def test_meta_analysis_allocates_no_weights() -> None:
    with torch.device("meta"):
        model = cnnlab.create_model("vgg19")
    a = analyze(model, (1, 3, 224, 224))
    assert a.params == 143_667_240
    assert all(p.device.type == "meta" for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Receptive field
# ---------------------------------------------------------------------------------------------


def test_receptive_field_strides_and_dilation() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1),               # rf 3, jump 1
        nn.MaxPool2d(2),                             # rf 4, jump 2
        nn.Conv2d(1, 1, 3, padding=2, dilation=2),   # k_eff 5: rf 4 + 4*2 = 12, jump 2
        nn.Conv2d(1, 1, 3, stride=2, padding=1),     # rf 12 + 2*2 = 16, jump 4
    )
    a = analyze(model, (1, 1, 64, 64))
    assert [(r["receptive_field"], r["jump"]) for r in a.layers] == [(3, 1), (4, 2), (12, 2), (16, 4)]
    assert (a.receptive_field, a.jump) == (16, 4)


def test_receptive_field_merging_branches_takes_max() -> None:
    class TwoBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.small = nn.Conv2d(1, 2, 1)
            self.large = nn.Conv2d(1, 2, 5, padding=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.small(x), self.large(x)], 1) + 0

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.branches = TwoBranch()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.branches(x).mean((2, 3)))

    a = analyze(Head(), (1, 1, 32, 32))
    rows = {r["name"]: r for r in a.layers}
    assert rows["branches.small"]["receptive_field"] == 1
    assert rows["branches"]["receptive_field"] == 5
    assert rows["fc"]["receptive_field"] == 32  # a linear layer sees the whole input
    assert a.receptive_field == 5


# ---------------------------------------------------------------------------------------------
# Schema and renderings
# ---------------------------------------------------------------------------------------------


def test_schema_and_renderings() -> None:
    with torch.device("meta"):
        model = cnnlab.create_model("vgg11_bn")
    a = analyze(model, (1, 3, 64, 64))
    d = a.to_dict()
    assert list(d) == ["model", "input_shape", "input_shapes", "complete", "total", "layers", "by_type", "uncounted_ops"]
    assert list(d["total"]) == list(TOTAL_FIELDS)
    assert all(list(row) == list(LAYER_FIELDS) for row in d["layers"])
    assert all(set(v) == {"macs", "flops", "params", "mem_access"} for v in d["by_type"].values())
    assert d["complete"] is True and d["uncounted_ops"] == []
    assert sum(v["macs"] for v in d["by_type"].values()) == d["total"]["macs"]
    assert sum(v["params"] for v in d["by_type"].values()) == d["total"]["params"]
    import json

    assert json.loads(a.to_json()) == d
    csv_lines = a.to_csv().splitlines()
    # issue 9 §5: a complete column and a final total row
    assert csv_lines[0].split(",") == [*LAYER_FIELDS, "complete"] and len(csv_lines) == len(d["layers"]) + 2
    assert "| layer |" in a.to_markdown() and "total" in a.to_table()
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(a.to_rich())
    rendered = console.export_text()
    assert "features.0" in rendered and f"{a.macs:,}" in rendered


def test_depth_aggregation() -> None:
    with torch.device("meta"):
        model = cnnlab.create_model("vgg11")
    a = analyze(model, (1, 3, 64, 64))
    top = a.at_depth(1)
    # issue 9 §8: the model's row carries the whole tree (the root itself runs only a view)
    assert [r["name"] for r in top.layers] == ["", "features", "avgpool", "classifier"]
    assert top.layers[0]["macs"] == a.macs and top.layers[0]["params"] == a.params
    assert sum(r["macs"] for r in top.layers[1:]) == a.macs
    assert sum(r["params"] for r in top.layers[1:]) == a.params
    assert a.at_depth(0).layers[0]["macs"] == a.macs


@pytest.mark.parametrize("bad", [(3, 224), (0, 3, 8, 8), "1x3x8x8", (1, 3, 2.5, 8)])
def test_bad_input_size(bad) -> None:
    if bad == (3, 224):
        # two dimensions is a valid (N, features) input for a linear model
        assert analyze(nn.Linear(224, 2), bad).macs == 3 * 224 * 2
        return
    with pytest.raises(ValueError, match="input_size"):
        analyze(nn.Linear(8, 2), bad)


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (torch.zeros(1, 3, 8, 8), TypeError, r"got a tensor of shape \(1, 3, 8, 8\); to analyse with that tensor, pass inputs=\(tensor,\)"),
        ((99999999999999999999, 3, 224, 224), ValueError, r"is too large: more than 2\^62 bytes of torch.float32"),
        ((1, 3, 10**9, 10**9), ValueError, "is too large"),
        ((1, 3, "8", 8), ValueError, "must hold positive integers, got str in a shape of length 4"),
        ((1, 3, True, 8), ValueError, "must hold positive integers, got True"),
        ((8,), ValueError, r"full input shape with the batch dimension, e.g. \(1, 3, 224, 224\); got \(8,\)"),
    ],
)
def test_input_size_errors_say_what_was_given(bad, error, message) -> None:
    """Issue 9 §6: a tensor's values are never pasted into the message, a huge size is 'too
    large' (not 'must be the full shape'), and nothing reaches torch's own overflow errors."""
    with pytest.raises(error, match=message) as info:
        analyze(nn.Linear(8, 2), bad)
    assert "\n" not in str(info.value) and "tensor([" not in str(info.value)
