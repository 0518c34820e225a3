"""cnnlab.bench: the timing loop (once, on fake models and a fake clock), output verification
(a runtime that disagrees, one that is missing, the degenerate-logits trap) and the JSON keys."""

from __future__ import annotations

import copy
import json
import time

import pytest
import torch
from torch import nn

from cnnlab.bench import RESULT_KEYS, RUNTIMES, Runtime, bench, time_callable
from cnnlab.bench.verify import is_degenerate, is_ill_conditioned, max_rel_diff, nondegenerate


# -- the timer ------------------------------------------------------------------------------------
class FakeClock:
    """A clock that only moves when the fake model runs: exact timings."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_timer_median_iqr_and_repeats_on_a_fake_clock():
    clock = FakeClock()
    durations = iter([9.0, 9.0] + [0.001, 0.002, 0.003, 0.004, 0.005])  # 2 warm-ups, then 1..5 ms
    calls = []

    def fn():
        calls.append(1)
        clock.now += next(durations)

    timing = time_callable(fn, batch=4, warmup=2, repeat=5, clock=clock)
    assert len(calls) == 7 and timing.repeats == 5
    assert timing.median_ms == pytest.approx(3.0)
    assert timing.iqr_ms == pytest.approx(2.0)  # inclusive quartiles of 1..5 ms: 2 and 4
    assert timing.images_per_s == pytest.approx(4 * 1000 / 3.0)
    assert timing.peak_memory_mb > 0


def test_timer_min_time_budget_on_a_fake_clock():
    clock = FakeClock()

    def fn():
        clock.now += 0.010

    timing = time_callable(fn, warmup=0, repeat=None, min_time=0.1, clock=clock)
    assert 10 <= timing.repeats <= 11  # stops once 0.1 s is spent
    few = time_callable(fn, warmup=0, repeat=None, min_time=0.001, clock=clock)
    assert few.repeats == 3  # at least MIN_SAMPLES even when one call exceeds the budget


def test_timer_on_a_sleeping_model():
    def fn():
        time.sleep(0.02)

    start = time.perf_counter()
    timing = time_callable(fn, warmup=1, repeat=5)
    assert timing.repeats == 5
    assert 18 <= timing.median_ms <= 200  # generous: a shared, loaded machine
    assert 0 <= timing.iqr_ms < 200
    budget = time_callable(fn, warmup=0, repeat=None, min_time=0.2)
    assert budget.repeats >= 3 and sum(budget.samples_ms) >= 200
    assert time.perf_counter() - start < 10


def test_timer_runs_under_inference_mode():
    seen = []
    time_callable(lambda: seen.append(torch.is_inference_mode_enabled()), warmup=1, repeat=2)
    assert seen == [True, True, True]


@pytest.mark.parametrize("kwargs", [dict(repeat=0), dict(warmup=-1), dict(repeat=None, min_time=0)])
def test_timer_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        time_callable(lambda: None, **kwargs)


# -- verification ---------------------------------------------------------------------------------
class Small(nn.Module):
    def __init__(self, head_scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            self.fc.weight.mul_(head_scale)  # 1e-9: logits are the bias, whatever the input

    def forward(self, x):
        return self.fc(self.features(x))


class Perturbed(Runtime):
    """A wrong runtime: its first convolution's weights are off by 10 %."""

    name = "perturbed"

    def prepare(self, model, example, *, dtype="fp32", device="cpu", threads=None):
        wrong = copy.deepcopy(model).eval()
        conv = next(m for m in wrong.modules() if isinstance(m, nn.Conv2d))
        with torch.no_grad():
            conv.weight.mul_(1.1)
        return lambda: wrong(example)


class Retried(Perturbed):
    """Wrong as prepared first, right with its ``fallback`` (or wrong again: ``stays_wrong``)."""

    name = "retried"
    fallback = "prepared the safe way"
    stays_wrong = False

    def prepare(self, model, example, *, fallback=False, **kwargs):
        if fallback and not self.stays_wrong:
            right = copy.deepcopy(model).eval()
            return lambda: right(example)
        return super().prepare(model, example, **kwargs)


class Missing(Runtime):
    name = "missing"

    def available(self, device="cpu", dtype="fp32"):
        return "not installed on this machine"


class Broken(Runtime):
    name = "broken"

    def prepare(self, model, example, **kwargs):
        raise RuntimeError("cannot lower aten::conv2d")


class Wide(nn.Module):
    """Models of one class and widths: one ``forward`` code object, as every zoo model has."""

    def __init__(self, width: int) -> None:
        super().__init__()
        torch.manual_seed(width)
        self.conv, self.fc = nn.Conv2d(3, width, 3), nn.Linear(width, 10)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


class NotTraced(Wide):
    @torch._dynamo.disable
    def forward(self, x):
        return super().forward(x)


@pytest.mark.slow
def test_compile_compiles_every_model_though_they_share_one_forward():
    """With dynamo's recompile limit at 1, the second model of a class would run eagerly under
    the compile runtime's name unless each model starts from empty caches; a model dynamo does
    not trace at all is an error, not an eager timing called compiled. The code inductor generated
    for one model (with its weights) is let go of when the next one compiles."""
    reason = RUNTIMES["compile"].available()
    if reason:
        pytest.skip(reason)
    import sys

    from torch._inductor.codecache import PyCodeCache

    models = [("w4", Wide(4)), ("w6", Wide(6)), ("w8", Wide(8)), ("eager only", NotTraced(5))]
    limit = torch._dynamo.config.recompile_limit
    with torch._dynamo.config.patch(recompile_limit=1):  # (monkeypatch would delete the entry on undo)
        first = bench(models[:1], input=(3, 10, 10), runtimes="compile", warmup=0, repeat=1)
        generated = [m.__name__ for m in PyCodeCache.modules]  # w4's code, holding its weights
        assert generated and all(name in sys.modules for name in generated)
        rest = bench(models[1:], input=(3, 10, 10), runtimes="compile", warmup=0, repeat=1)
    assert torch._dynamo.config.recompile_limit == limit
    results = first.results + rest.results
    assert [r.ok for r in results] == [True, True, True, False], [r.error for r in results]
    assert "captured no graph" in results[-1].error
    assert not any(name in sys.modules for name in generated)  # let go of once the next model compiles


@pytest.fixture
def fakes(monkeypatch):
    for runtime in (Perturbed(), Retried(), Missing(), Broken()):
        monkeypatch.setitem(RUNTIMES, runtime.name, runtime)


def _run(model, runtimes):
    return bench([("small", model)], input=(3, 12, 12), runtimes=runtimes, warmup=0, repeat=2)


def test_disagreeing_missing_and_failing_runtimes_are_reported(fakes):
    result = _run(Small(), ["eager", "perturbed", "missing", "broken"])
    by_name = {r.runtime: r for r in result.results}
    assert list(by_name) == ["eager", "perturbed", "missing", "broken"]  # none dropped
    assert by_name["eager"].ok and by_name["eager"].max_rel_diff == 0 and by_name["eager"].median_ms > 0
    wrong = by_name["perturbed"]
    assert not wrong.ok and "disagrees" in wrong.error and wrong.max_rel_diff > 1e-3
    assert wrong.median_ms is None  # a wrong runtime is not timed
    assert not by_name["missing"].ok and "not installed on this machine" in by_name["missing"].error
    assert not by_name["broken"].ok and "cannot lower aten::conv2d" in by_name["broken"].error


def test_a_disagreeing_runtime_with_a_fallback_is_retried_and_says_so(fakes, monkeypatch):
    retried = _run(Small(), ["retried"]).results[0]
    assert retried.ok and retried.max_rel_diff < 1e-6 and retried.median_ms > 0
    assert retried.note.startswith("prepared the safe way (max relative difference ")
    monkeypatch.setattr(Retried, "stays_wrong", True)
    again = _run(Small(), ["retried"]).results[0]
    assert not again.ok and "disagrees" in again.error and again.median_ms is None
    assert "prepared the safe way" in again.note
    perturbed = _run(Small(), ["perturbed"]).results[0]  # no fallback: no retry, no note
    assert not perturbed.ok and perturbed.note == ""


def test_degenerate_logits_trap(fakes):
    model = Small(head_scale=1e-9).eval()
    x = torch.randn(1, 3, 12, 12)
    with torch.no_grad():
        right, wrong = model(x), Perturbed().prepare(model, x)()
    # the trap: the logits are the bias, a wrong network passes a naive check
    assert torch.allclose(right, wrong, rtol=1e-5, atol=1e-6)
    assert max_rel_diff(wrong, right) < 1e-6
    assert is_degenerate(model, x)
    fixed, note = nondegenerate(model, x)
    assert fixed is not model and "re-initialised" in note and not is_degenerate(fixed, x)
    assert model.fc.weight.abs().max() < 1e-8  # the user's model is untouched
    by_name = {r.runtime: r for r in _run(model, ["eager", "perturbed"]).results}
    assert by_name["eager"].ok
    assert not by_name["perturbed"].ok and "disagrees" in by_name["perturbed"].error


def test_deep_eval_mode_batch_norm_that_overflows_is_calibrated():
    """Fresh running statistics (mean 0, variance 1) normalise nothing: 40 residual blocks that
    each double their input overflow float32, as preact_resnet1001_cifar does in the zoo."""
    class Deep(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1))
                                        for _ in range(40))
            for block in self.blocks:
                nn.init.constant_(block[1].weight, 0.2)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = x.repeat(1, 4, 1, 1)[:, :4]
            for block in self.blocks:
                x = x + block(x) * 1e3
            return self.fc(x.mean((2, 3)))

    model = Deep().eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert not torch.isfinite(model(x)).all()
    fixed, note = nondegenerate(model, x)
    assert "batch-norm statistics calibrated" in note and fixed is not model
    with torch.no_grad():
        assert torch.isfinite(fixed(x)).all()
    assert not is_degenerate(fixed, x) and not fixed.training
    assert model.blocks[0][0].running_var.eq(1).all()  # the user's model is untouched


def test_ill_conditioned_output_is_calibrated():
    """A batch norm with fresh statistics passes activations of 1e5 into a sine: a rounding-level
    input change moves the output by ~10 %, so every runtime would "disagree" (se_resnet152's
    random-init logits reach 9e3 the same way). Calibrated statistics make it smooth."""
    class Chaotic(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm, self.fc = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(torch.sin(self.norm(self.conv(x) * 1e5)).mean((2, 3)))

    torch.manual_seed(0)
    model = Chaotic().eval()
    x = torch.randn(1, 3, 10, 10)
    assert not is_degenerate(model, x) and is_ill_conditioned(model, x)
    fixed, note = nondegenerate(model, x)
    assert note.startswith("ill-conditioned output: batch-norm statistics calibrated"), note
    assert not is_ill_conditioned(fixed, x) and not is_degenerate(fixed, x)


def test_moderately_ill_conditioned_output_widens_the_tolerance():
    """No batch norm to calibrate: a sine of large activations whose output moves by ~1e-3 under
    rounding-level input changes is compared at 10x that, and says so."""
    from cnnlab.bench.verify import reference_model, sensitivity, tolerance_for

    class Wobbly(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(torch.sin(self.conv(x) * 3e4).mean((2, 3)))

    torch.manual_seed(0)
    model = Wobbly().eval()
    x = torch.randn(1, 3, 10, 10)
    moved = sensitivity(model, x)
    assert 1e-4 < moved < 1e-2, moved
    found = reference_model(model, x)
    assert found.model is model and found.sensitivity == moved
    assert "runtimes are compared at" in found.note and not found.note.startswith("weak")
    assert tolerance_for("fp32", moved) == 10 * moved > 1e-3
    (result,) = _run(model, ["eager"]).results
    assert result.ok and "compared at" in result.note


def test_output_without_a_head_that_ignores_the_input_is_not_verified():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return self.bias.expand(x.shape[0], 4) + 0 * x.mean()

    (result,) = _run(Constant(), ["eager"]).results
    assert not result.ok and "weak verification" in result.error and "hardly depends" in result.error


def test_bf16_reports_its_error_against_fp32():
    (result,) = bench([("small", Small())], input=(3, 12, 12), runtimes=["eager"], dtype="bf16",
                      warmup=0, repeat=1).results
    assert result.dtype == "bf16" and result.ok
    assert 0 < result.max_rel_diff < 0.08


# -- the JSON -------------------------------------------------------------------------------------
def test_json_keys(fakes):
    result = _run(Small(), ["eager", "missing"])
    data = json.loads(result.to_json())
    assert set(data) == {"machine", "results"}
    assert {"cpu", "cores", "threads", "torch", "onnxruntime", "openvino"} <= set(data["machine"])
    assert len(data["results"]) == 2
    for row in data["results"]:
        assert set(RESULT_KEYS) <= set(row)
        assert row["model"] == "small" and row["batch"] == 1 and row["input_shape"] == [1, 3, 12, 12]
    ok, missing = data["results"]
    assert ok["ok"] is True and ok["error"] is None and ok["images_per_s"] > 0
    assert missing["ok"] is False and missing["median_ms"] is None and missing["error"]


def test_batches_resolutions_and_threads():
    before = torch.get_num_threads()
    result = bench([("small", Small())], batch=[1, 2], input=(3, 12, 12), resolutions=[10, (12, 14)],
                   runtimes="eager", warmup=0, repeat=1, threads=1)
    shapes = [r.input_shape for r in result.results]
    assert shapes == [[1, 3, 10, 10], [2, 3, 10, 10], [1, 3, 12, 14], [2, 3, 12, 14]]
    assert result.machine["threads"] == 1 and torch.get_num_threads() == before


def test_torch_threads_sets_the_count_and_restores_it_even_on_an_error():
    from cnnlab.threads import torch_threads

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other) as n:
        assert n == other == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with torch_threads(None) as n:  # None leaves torch's own count
        assert n == before


@pytest.mark.parametrize("kwargs", [dict(runtimes=["nope"]), dict(dtype="int8"), dict(batch=[0]),
                                    dict(device="tpu"), dict(threads=0)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        bench([("small", Small())], **{"input": (3, 12, 12), "repeat": 1, **kwargs})
