"""The analyzer's public API (issue 9): the model's dtype, several and non-tensor inputs, the
caller's modules untouched while other threads use them, and the result's renderings."""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.analysis import analyze
from cnnlab.analysis.inputs import structural_copy
from cnnlab.analysis.result import Analysis, human_count


def conv_bn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


# ---------------------------------------------------------------------------------------------
# dtype: taken from the model
# ---------------------------------------------------------------------------------------------

# conv 4*3*9 + 4, BN 4 + 4 (parameters), running mean and var 4 + 4, num_batches_tracked int64
CONV_BN_FLOATS, INT64_BYTES = 4 * 3 * 9 + 4 + 8 + 8, 8


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_half_precision_model_is_analysed_in_its_dtype(dtype: torch.dtype, device: str) -> None:
    model = conv_bn().to(dtype)
    half = analyze(model, (1, 3, 8, 8), device=device)
    full = analyze(conv_bn(), (1, 3, 8, 8), device=device)
    assert half.model_size_bytes == 2 * CONV_BN_FLOATS + INT64_BYTES
    assert full.model_size_bytes == 4 * CONV_BN_FLOATS + INT64_BYTES
    assert half.mem_access == full.mem_access and half.mem_access_bytes == 2 * half.mem_access
    assert 2 * half.peak_activation_bytes == full.peak_activation_bytes == 4 * (3 * 64 + 2 * 4 * 36)
    assert half.macs == full.macs and next(model.parameters()).dtype == dtype


def test_explicit_dtype_still_casts() -> None:
    model = conv_bn().half()
    a = analyze(model, (1, 3, 8, 8), dtype=torch.float32)
    assert a.model_size_bytes == 4 * CONV_BN_FLOATS + INT64_BYTES
    assert next(model.parameters()).dtype == torch.float16  # the caller's model is not cast


def test_model_without_floating_tensors_gets_float32_input() -> None:
    a = analyze(nn.ReLU(), (2, 4))
    assert a.mem_access_bytes == 4 * a.mem_access == 4 * 16


@pytest.mark.parametrize("train", [True, False])
def test_cpu_analysis_runs_the_callers_tensors_without_a_copy(train: bool) -> None:
    seen: list[tuple[torch.Tensor, torch.dtype]] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3, 3, 3, dtype=torch.bfloat16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((self.weight, x.dtype))
            return F.conv2d(x, self.weight)

    model = Probe().train(train)
    a = analyze(model, (1, 3, 8, 8), device="cpu")
    assert a.macs == 4 * 36 * 27
    assert len(seen) == 1 and seen[0][0] is model.weight and seen[0][1] == torch.bfloat16
    assert model.training == train


# ---------------------------------------------------------------------------------------------
# inputs=: several inputs, non-tensor inputs, keyword inputs, an input constructor
# ---------------------------------------------------------------------------------------------


class ImageAndVector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(5, 4, bias=False)

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return self.conv(image) * self.fc(vector)[:, :, None, None]


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_two_inputs(device: str) -> None:
    image, vector = torch.randn(2, 3, 8, 8), torch.randn(2, 5)
    a = analyze(ImageAndVector(), inputs=(image, vector), device=device)
    assert a.macs == 2 * 4 * 64 * 3 * 9 + 2 * 5 * 4
    assert a.input_shape == [2, 3, 8, 8] and a.input_shapes == [[2, 3, 8, 8], [2, 5]]
    assert a.to_dict()["input_shapes"] == [[2, 3, 8, 8], [2, 5]]
    rows = {r["name"]: r for r in a.layers}
    assert rows["conv"]["receptive_field"] == 3  # the image's dims after the second are spatial
    assert a.receptive_field == 3  # the vector is no spatial map: it gates the conv output
    assert a.peak_activation_bytes >= 4 * (2 * 3 * 64 + 2 * 5)  # both inputs are live
    assert a.complete


class Flagged(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, twice: bool) -> torch.Tensor:
        x = self.conv(x)
        return self.conv(x) if twice else x


def test_tensor_and_python_flag() -> None:
    x, one = torch.zeros(1, 3, 8, 8), 3 * 64 * 3 * 9
    assert analyze(Flagged(), inputs=(x, True)).macs == 2 * one
    assert analyze(Flagged(), inputs=(x, False)).macs == one
    by_name = analyze(Flagged(), inputs={"x": x, "twice": True})
    assert by_name.macs == 2 * one and by_name.input_shapes == [[1, 3, 8, 8]]


def test_keyword_only_inputs_keep_integer_and_bool_dtypes_on_meta() -> None:
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)

        def forward(self, *, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.embed(ids) * mask[..., None]

    ids, mask = torch.tensor([[1, 2, 3]]), torch.tensor([[True, False, True]])
    a = analyze(Masked(), inputs={"ids": ids, "mask": mask})
    assert a.complete and a.input_shapes == [[1, 3], [1, 3]]
    assert a.layers[-1]["output_shape"] == [1, 3, 4]
    assert a.receptive_field is None  # no floating input with spatial dims


def test_input_constructor_gets_the_device_and_the_models_dtype() -> None:
    calls: list[tuple[torch.device, torch.dtype]] = []

    def build(device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        calls.append((device, dtype))
        return {"input": torch.empty(1, 3, 8, 8, device=device, dtype=dtype)}

    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert analyze(model, inputs=build).macs == analyze(model, (1, 3, 8, 8)).macs == 4 * 36 * 27
    analyze(model.half(), inputs=build, device="cpu")
    assert calls == [(torch.device("meta"), torch.float32), (torch.device("cpu"), torch.float16)]
    tuple_built = analyze(model, inputs=lambda device, dtype: (torch.zeros(2, 3, 8, 8, dtype=dtype),))
    assert tuple_built.input_shape == [2, 3, 8, 8]


def test_inputs_equal_input_size_and_floating_inputs_take_the_analysis_dtype_on_meta() -> None:
    model = conv_bn()
    x = torch.randn(1, 3, 8, 8)
    assert analyze(model, inputs=(x,)).to_dict() == analyze(model, (1, 3, 8, 8)).to_dict()
    assert analyze(model, inputs=x).to_dict() == analyze(model, (1, 3, 8, 8)).to_dict()
    half = analyze(model.half(), inputs=(x,))  # an fp32 tensor for an fp16 model, on meta
    assert half.mem_access_bytes == 2 * half.mem_access


def test_cpu_inputs_are_used_as_given_and_left_unmarked() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) if x.sum() > 0 else x  # data-dependent: needs the real values

    ones = torch.ones(1, 3, 4, 4)
    assert analyze(Branchy(), inputs=(ones,), device="cpu").macs == 3 * 16 * 3
    assert analyze(Branchy(), inputs=(-ones,), device="cpu").macs == 0
    assert not [k for k in vars(ones) if k.startswith("_cnnlab")]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({}, ValueError, "exactly one of input_size"),
        ({"input_size": (1, 3, 8, 8), "inputs": (torch.zeros(1, 3, 8, 8),)}, ValueError, "exactly one of input_size"),
        ({"inputs": 42}, TypeError, "inputs must be a tuple of positional arguments"),
        ({"inputs": lambda device, dtype: 42}, TypeError, "constructor must return a tuple"),
        ({"inputs": {0: torch.zeros(1, 3, 8, 8)}}, TypeError, "argument names"),
    ],
    ids=["neither", "both", "int", "constructor-int", "int-keys"],
)
def test_input_errors(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        analyze(nn.Sequential(nn.Conv2d(3, 4, 3)), **kwargs)


# ---------------------------------------------------------------------------------------------
# The caller's modules are never touched
# ---------------------------------------------------------------------------------------------


def test_plain_forward_in_another_thread_stays_in_training_mode() -> None:
    flags: list[tuple[int, bool]] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flags.append((threading.get_ident(), self.training))
            return x

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(), Probe()).train()
    with torch.device("meta"):
        meta_model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), Probe()).train()
    expected = (analyze(model, (1, 3, 8, 8), device="cpu").to_dict(), analyze(meta_model, (1, 3, 8, 8)).to_dict())
    stop, failures = threading.Event(), []

    def plain_forwards() -> None:
        x = torch.zeros(1, 3, 8, 8)
        while not stop.is_set():
            model(x)
            if not all(m.training for m in model.modules()):
                failures.append("a module was in eval mode")

    other = threading.Thread(target=plain_forwards)
    other.start()
    try:
        got = [(analyze(model, (1, 3, 8, 8), device="cpu").to_dict(), analyze(meta_model, (1, 3, 8, 8)).to_dict())
               for _ in range(20)]
    finally:
        stop.set()
        other.join()
    assert got == [expected] * 20 and not failures
    plain = [flag for ident, flag in flags if ident == other.ident]
    analysed = [flag for ident, flag in flags if ident == threading.get_ident()]
    assert plain and all(plain) and analysed and not any(analysed)


def test_structural_copy_shares_tensors_keeps_names_and_ties() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(4, 4)
            self.tail = nn.Linear(4, 4)
            self.tail.weight = self.head.weight
            self.shared = self.head  # one module under two names
            self.register_buffer("scale", torch.ones(4))
            object.__setattr__(self, "helpers", [self.tail])  # a plain list holding a submodule

    model = Net()
    tensors = [*model.parameters(), *model.buffers()]
    clone = structural_copy(model, tensors)
    assert clone is not None and clone is not model
    assert [n for n, _ in clone.named_modules(remove_duplicate=False)] == [
        n for n, _ in model.named_modules(remove_duplicate=False)
    ]
    assert all(c is not m for c, m in zip(clone.modules(), model.modules()))
    assert all(c is m for c, m in zip(clone.parameters(), model.parameters()))
    assert clone.scale is model.scale and clone.tail.weight is clone.head.weight
    assert clone.shared is clone.head and clone.helpers[0] is clone.tail
    clone.eval()
    assert model.training and all(m.training for m in model.modules())


def test_tied_and_shared_modules_count_once_in_training_mode() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(6, 6, bias=False)
            self.out = nn.Linear(6, 6, bias=False)
            self.out.weight = self.embed.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.embed(x))

    model = Tied().train()
    a = analyze(model, (2, 6))
    assert a.params == 36 and a.macs == 2 * 2 * 36
    assert a.to_dict() == analyze(Tied().eval(), (2, 6)).to_dict()
    assert model.training


def _scripted(module: nn.Module, trace: bool = False) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script and trace are deprecated
        return torch.jit.trace(module, torch.zeros(1, 3, 8, 8)) if trace else torch.jit.script(module)


# conv_bn on 1x3x8x8: 4x6x6 = 144 outputs. MACs 144·27 = 3,888; FLOPs: conv 2·3,888 + 144 (bias)
# = 7,920, eval BN 2·144 = 288: 8,208 (BN in training mode, 7·144, would make it 8,928).
CONV_BN_MACS, CONV_BN_FLOPS = 3888, 8208


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("trace", [False, True])
def test_scripted_or_traced_model_runs_in_eval_mode_and_is_left_as_it_was(trace: bool, device: str) -> None:
    # A trace records the mode it was traced in (its graph is fixed): trace in eval mode, then
    # set the flag; a scripted module switches its compiled forward with the flag.
    model = _scripted(conv_bn().eval(), trace).train()
    bn = getattr(model, "1")
    running_mean = bn.running_mean.clone()
    a = analyze(model, (1, 3, 8, 8), device=device)
    assert (a.macs, a.flops, a.complete) == (CONV_BN_MACS, CONV_BN_FLOPS, True)
    assert a.params == 4 * 27 + 4 + 8
    assert model.training and bn.training and "training" not in model.__dict__
    assert torch.equal(bn.running_mean, running_mean) and bn.running_mean.device.type == "cpu"
    model.eval()  # the compiled flag and the attribute still agree
    assert not model.training and not model._c.getattr("training")


def test_scripted_model_in_its_dtype_on_meta() -> None:
    a = analyze(_scripted(conv_bn().eval().half()), (1, 3, 8, 8))
    assert a.model_size_bytes == 2 * CONV_BN_FLOATS + INT64_BYTES and a.macs == CONV_BN_MACS


class _ReadsValues(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return x * 2
        return x


def test_scripted_model_that_cannot_run_on_meta_says_so_in_one_line() -> None:
    with pytest.raises(ValueError) as info:
        analyze(_scripted(_ReadsValues()), (1, 3, 4, 4))
    assert str(info.value) == 'this RecursiveScriptModule cannot run on the meta device; analyse it with device="cpu"'
    # zeros on cpu: the sum (48) and the comparison (1), then x is returned as it is
    assert analyze(_scripted(_ReadsValues()), (1, 3, 4, 4), device="cpu").flops == 48 + 1


def test_zoo_resnet18_scripted_counts_as_eager() -> None:
    eager = analyze(cnnlab.create_model("resnet18"), (1, 3, 64, 64))
    scripted = _scripted(cnnlab.create_model("resnet18").train())
    for device in ("meta", "cpu"):
        a = analyze(scripted, (1, 3, 64, 64), device=device)
        assert (a.macs, a.flops, a.mem_access, a.receptive_field) == (
            eager.macs, eager.flops, eager.mem_access, eager.receptive_field)


# ---------------------------------------------------------------------------------------------
# Result: units, CSV total row and complete column, warning, depth view, calls, unknown field
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "-"), (0, "0"), (999, "999"), (12.5, "12.5"), (1000, "1.00 k"), (3200, "3.20 k"),
        (999_999, "1.00 M"), (138_357_544, "138.36 M"), (15_470_264_320, "15.47 G"),
        (1_500_000_000_000, "1.50 T"), (-3200, "-3.20 k"),
    ],
)
def test_human_count(value: int | float | None, text: str) -> None:
    assert human_count(value) == text
    assert cnnlab.analysis.human_count is human_count


def test_tables_show_si_units_and_exports_exact_integers() -> None:
    with torch.device("meta"):
        model = cnnlab.create_model("vgg16")
    a = analyze(model, (1, 3, 224, 224))
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(a.to_rich())
    for text in (a.to_table(), a.to_markdown(), console.export_text()):
        assert "138.36 M" in text and "15.47 G" in text
    assert a.to_dict()["total"]["macs"] == 15_470_264_320
    assert a.to_csv().splitlines()[-1].split(",")[:6] == ["(total)", "", "1x3x224x224", "", "138357544", "15470264320"]


class Odd(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x)


def test_csv_has_complete_column_and_total_row() -> None:
    a = analyze(nn.Sequential(OrderedDict(fc=nn.Linear(10, 5), stn=Odd())), (2, 10))
    lines = a.to_csv().splitlines()
    assert lines[0].endswith(",calls,complete")
    assert [line.split(",")[0] for line in lines[1:]] == ["fc", "stn", "(total)"]
    assert all(line.endswith(",false") for line in lines[1:])
    total = dict(zip(lines[0].split(","), lines[-1].split(",")))
    assert total["params"] == "55" and total["macs"] == "100" and total["calls"] == ""
    complete = analyze(nn.Sequential(nn.Linear(10, 5)), (2, 10)).to_csv().splitlines()
    assert all(line.endswith(",true") for line in complete[1:])


def test_warning_line() -> None:
    assert analyze(nn.Sequential(nn.Linear(10, 5)), (2, 10)).warning is None
    a = analyze(nn.Sequential(OrderedDict(fc=nn.Linear(10, 5), stn=Odd())), (2, 10))
    assert a.warning == "INCOMPLETE: no counting rule for special_bessel_j0 x1 (first in module 'stn'); totals exclude them"
    root = analyze(Odd(), (2, 10))
    assert root.warning == "INCOMPLETE: no counting rule for special_bessel_j0 x1 (first in module '(model)'); totals exclude them"
    assert root.warning in root.to_table() and root.warning in root.to_markdown()
    unknown = Analysis(
        "Net", [1, 3, 8, 8], False, {**a.total, "receptive_field": None, "jump": None}, [], {},
        [{"op": "grid_sampler_2d", "count": 1, "module": "stn"}],
    )
    assert unknown.warning == (
        "INCOMPLETE: no counting rule for grid_sampler_2d x1 (first in module 'stn'); totals exclude them; "
        "receptive field unknown"
    )


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.b = nn.Conv2d(4, 4, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + x


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.block1, self.block2 = Block(), Block()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(self.stem(x))).mean((2, 3)))


# By hand, input 1x1x8x8, every map 4x8x8 = 256 elements:
# stem: MACs 256*9 = 2304, params 36, FLOPs 4608, memory 64 + 36 + 256 = 356, field 3
# block: two convs (MACs 256*4*9 = 9216, params 144, FLOPs 18432, memory 256 + 144 + 256 = 656)
#        and an add (FLOPs 256, memory 3*256): MACs 18432, params 288, FLOPs 37120, memory 2080,
#        activations 3*256; fields 3 -> 5 -> 7 (block1), 7 -> 9 -> 11 (block2)
# root: the mean (FLOPs 256, memory 256 + 4, activations 4)
# head: MACs 8, params 10, FLOPs 18, memory 4 + 8 + 2 + 2 = 16, activations 2
BLOCK = {"params": 288, "macs": 18_432, "flops": 37_120, "mem_access": 2_080, "activations": 768}
TOTAL = {"params": 622, "macs": 39_176, "flops": 79_122, "mem_access": 4_792, "activations": 1_798}


def test_depth_view_parent_rows_carry_subtree_totals() -> None:
    a = analyze(Nested(), (1, 1, 8, 8))
    assert {k: a.total[k] for k in TOTAL} == TOTAL and (a.receptive_field, a.jump) == (11, 1)

    (model_row,) = a.at_depth(0).layers
    assert {k: model_row[k] for k in TOTAL} == TOTAL
    assert (model_row["receptive_field"], model_row["jump"]) == (11, 1)  # the total's field

    one = {r["name"]: r for r in a.at_depth(1).layers}
    assert list(one) == ["", "stem", "block1", "block2", "head"]
    assert one[""] == model_row
    for name, field in (("block1", 7), ("block2", 11)):
        assert {k: one[name][k] for k in BLOCK} == BLOCK and one[name]["receptive_field"] == field
    assert one["stem"]["macs"] == 2304 and one["head"]["params"] == 10

    two = [r["name"] for r in a.at_depth(2).layers]
    assert two == ["", "stem", "block1", "block1.a", "block1.b", "block2", "block2.a", "block2.b", "head"]
    rows = {r["name"]: r for r in a.at_depth(2).layers}
    assert rows["block1.a"]["macs"] == 9216 and rows["block1"]["macs"] == BLOCK["macs"]
    assert a.at_depth(1).at_depth(2).layers == a.at_depth(2).layers  # always from the full table
    with pytest.raises(ValueError, match="depth"):
        a.at_depth(-1)


def test_module_called_several_times_shows_its_calls() -> None:
    class Reuse(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(self.conv(self.conv(x)))

    a = analyze(Reuse(), (1, 2, 8, 8))
    (row,) = a.layers
    assert row["calls"] == 3 and row["macs"] == 3 * 128 * 2 * 9
    assert row["receptive_field"] == 3 and a.receptive_field == 7  # the row: its first call's field
    for text in (a.to_table(), a.to_markdown(), a.at_depth(1).to_table()):
        assert "conv (x3)" in text and "(xN): a module called N times" in text
    single = analyze(nn.Sequential(nn.Conv2d(2, 2, 3)), (1, 2, 8, 8))
    assert "(x" not in single.to_table()


def test_unknown_receptive_field_renders_as_dash_and_null() -> None:
    a = analyze(nn.Sequential(nn.Linear(10, 5)), (2, 10))
    assert a.layers[0]["receptive_field"] is None and a.receptive_field is None
    assert "| 0 | Linear | 2x5 | 55 | 100 | 210 | 85 | - | - |" in a.to_markdown()
    assert '"receptive_field": null' in a.to_json()
