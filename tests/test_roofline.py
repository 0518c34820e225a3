"""``cnnlab roofline``: the bound's arithmetic on made-up ceilings, the theoretical peak read from
made-up cpuinfo text, the ceiling cache (written, reused, per dtype, refreshed, corrupt file
ignored), per-layer eager times, the JSON keys, the chart and the command line."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from cnnlab.bench import ceilings as ceilings_module
from cnnlab.bench.ceilings import machine_ceilings, theoretical_peak
from cnnlab.bench.roofline import bound_ms, layer_times_ms, model_roofline, plot_roofline, roofline_report
from cnnlab.cli import main

# Made-up ceilings: 100 GFLOP/s and 10 GB/s, so the ridge is at 10 FLOPs per byte.
MADE_UP = {"gflops": {"fp32": 100.0, "bf16": 200.0}, "gbytes_per_s": 10.0, "theoretical_gflops": {},
           "sources": {}}


def test_bound_is_the_larger_of_compute_and_memory_time():
    # 2 GFLOPs at 100 GFLOP/s = 20 ms; 50 MB at 10 GB/s = 5 ms: compute-bound.
    assert bound_ms(2e9, 50e6, 100, 10) == (pytest.approx(20.0), False)
    # 1 MFLOP = 0.01 ms; 8 MB = 0.8 ms: memory-bound.
    assert bound_ms(1e6, 8e6, 100, 10) == (pytest.approx(0.8), True)


def test_layer_and_model_bounds_by_hand():
    # A 1x1 conv 64 -> 64 on 8x8 then a ReLU, batch 1, fp32, by hand:
    conv_flops = 2 * 64 * 64 * 64                      # 524,288
    conv_bytes = 4 * (64 * 64 + 64 * 64 + 64 * 64)     # input, weight, output: 49,152
    relu_flops, relu_bytes = 64 * 64, 4 * 2 * 64 * 64  # 4,096 and 32,768
    model = nn.Sequential(nn.Conv2d(64, 64, 1, bias=False), nn.ReLU()).eval()
    result = model_roofline(model, (1, 64, 8, 8), MADE_UP, label="tiny", measured_ms=0.01, layer_repeat=1)
    conv, relu = result.layers
    assert (conv.flops, conv.bytes, relu.flops, relu.bytes) == (conv_flops, conv_bytes, relu_flops, relu_bytes)
    assert conv.bound_ms == pytest.approx(max(conv_flops / 100e6, conv_bytes / 10e6))
    assert relu.bound_ms == pytest.approx(relu_bytes / 10e6)
    assert not conv.memory_bound and relu.memory_bound  # 10.7 and 0.125 FLOPs per byte, ridge at 10
    data = result.to_dict()
    assert data["layers_bound_ms"] == pytest.approx(conv.bound_ms + relu.bound_ms)
    # The whole model: 528,384 FLOPs = 5.28 us; weights + input 4 x (4,096 + 4,096) bytes = 3.28 us.
    assert data["min_bytes"] == 4 * (64 * 64 + 64 * 64)
    assert data["bound_ms"] == pytest.approx((conv_flops + relu_flops) / 100e6) and not data["memory_bound"]
    assert data["percent_of_roofline"] == pytest.approx(100 * data["bound_ms"] / 0.01)
    assert data["achieved_gflops"] == pytest.approx((conv_flops + relu_flops) / 0.01e6)
    assert data["memory_bound_layers"] == 1
    assert data["layers"][0]["intensity"] == pytest.approx(conv_flops / conv_bytes)
    by_type = {t["type"]: t for t in data["by_type"]}
    assert set(by_type) == {"Conv2d", "ReLU"} and by_type["ReLU"]["memory_bound"] == 1
    assert by_type["Conv2d"]["bound_ms"] == pytest.approx(conv.bound_ms)


def test_bf16_halves_the_bytes_and_times_in_bf16():
    model = nn.Sequential(nn.ReLU()).eval()
    fp32 = model_roofline(model, (1, 4, 8, 8), MADE_UP, dtype="fp32", layer_repeat=1)
    bf16 = model_roofline(model, (1, 4, 8, 8), MADE_UP, dtype="bf16", layer_repeat=1)
    assert bf16.layers[0].bytes * 2 == fp32.layers[0].bytes
    assert bf16.layers[0].measured_ms is not None
    with pytest.raises(ValueError, match="no fp16 compute ceiling"):
        model_roofline(nn.ReLU(), (1, 4), MADE_UP, dtype="fp16")


def test_layer_times_are_own_times():
    class Slow(nn.Module):
        def forward(self, x):
            time.sleep(0.05)
            return x

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Slow()

        def forward(self, x):
            time.sleep(0.01)
            return self.inner(x)

    times = layer_times_ms(nn.Sequential(Block()), torch.zeros(1), repeat=1, warmup=0)
    assert times["0.inner"] >= 50 and times["0"] >= 10
    # the block's time less its child's: far under the child's 50 ms; the root's own time is nil
    assert times["0"] < times["0.inner"] and times[""] < times["0"]


def _cpuinfo(*cpus, flags="fpu sse avx2 fma avx512f avx512_bf16", mhz="2500.000", vendor="GenuineIntel",
             family=6, model=143):
    """cpuinfo text with one block per (processor, core id)."""
    return "\n".join(
        f"processor\t: {p}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"cpu MHz\t\t: {mhz}\nphysical id\t: 0\ncore id\t\t: {core}\nflags\t\t: {flags}\n"
        for p, core in cpus)


def test_theoretical_peak_from_cpuinfo():
    two_cores = _cpuinfo((0, 0), (1, 1))
    # AVX-512, two FMA units: 2 cores x 2.5 GHz x (2 x 16 lanes x 2) = 320; AVX512_BF16 doubles it.
    peak = theoretical_peak(two_cores)
    assert (peak.fp32, peak.bf16) == (pytest.approx(320.0), pytest.approx(640.0))
    assert "2 physical cores" in peak.assumption and "two 512-bit FMA units" in peak.assumption
    # SMT siblings share a core: four logical CPUs on two cores count twice, not four times.
    assert theoretical_peak(_cpuinfo((0, 0), (1, 1), (2, 0), (3, 1))).fp32 == pytest.approx(320.0)
    # Only the CPUs this process may use; cpufreq's maximum clock replaces cpuinfo's.
    assert theoretical_peak(two_cores, cpus=[1]).fp32 == pytest.approx(160.0)
    assert theoretical_peak(two_cores, max_mhz=3000).fp32 == pytest.approx(2 * 3.0 * 64)
    # AVX2 + FMA: 2 x 8 x 2 = 32 per cycle; no bf16 units: bf16 as fp32.
    avx2 = theoretical_peak(_cpuinfo((0, 0), flags="sse avx2 fma"))
    assert (avx2.fp32, avx2.bf16) == (pytest.approx(2.5 * 32), pytest.approx(2.5 * 32))
    # AMD Zen 4 (family 25) runs AVX-512 on 256-bit halves: 32 per cycle, bf16 dot products 2x.
    zen4 = theoretical_peak(_cpuinfo((0, 0), vendor="AuthenticAMD", family=25, model=17))
    assert (zen4.fp32, zen4.bf16) == (pytest.approx(2.5 * 32), pytest.approx(2.5 * 64))
    # AMX: 1024 bf16 FLOPs per cycle per core.
    amx = theoretical_peak(_cpuinfo((0, 0), flags="avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile"))
    assert amx.bf16 == pytest.approx(2.5 * 1024)
    # Unreadable: None, with the reason.
    for text in (two_cores.replace("cpu MHz", "clock"), "", _cpuinfo((0, 0), flags="fpu sse sse2")):
        peak = theoretical_peak(text)
        assert peak.fp32 is None and peak.bf16 is None and peak.assumption


@pytest.fixture
def fake_measures(tmp_path, monkeypatch):
    """The cache in tmp_path; measurements replaced by counters (each call a new number)."""
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path))
    calls: list[tuple[str, bool]] = []

    def compute(dtype, *, device="cpu", quick=False):
        calls.append((dtype, quick))
        return 50.0 + len(calls), f"fake {dtype}", {f"fake {dtype}": 50.0 + len(calls)}

    def bandwidth(*, device="cpu", quick=False):
        calls.append(("bandwidth", quick))
        return 5.0 + len(calls), "fake copy"

    monkeypatch.setattr(ceilings_module, "measure_compute", compute)
    monkeypatch.setattr(ceilings_module, "measure_bandwidth", bandwidth)
    return calls


def test_ceilings_cached_per_dtype_refreshed_and_a_corrupt_cache_ignored(tmp_path, fake_measures):
    calls = fake_measures
    first = machine_ceilings(dtypes=("fp32",))
    assert calls == [("fp32", False), ("bandwidth", False)]
    assert first["gflops"] == {"fp32": 51.0} and first["gbytes_per_s"] == 7.0
    assert first["sources"]["fp32"] == "fake fp32" and first["sources"]["bandwidth"] == "fake copy"
    assert machine_ceilings(dtypes=("fp32",))["gflops"] == first["gflops"] and len(calls) == 2  # cached
    both = machine_ceilings()  # bf16 measured, fp32 and the bandwidth from the cache
    assert calls[2:] == [("bf16", False)] and both["gflops"] == {"fp32": 51.0, "bf16": 53.0}
    assert machine_ceilings(remeasure=True)["gflops"] == {"fp32": 54.0, "bf16": 55.0} and len(calls) == 6
    (cache,) = tmp_path.glob("roofline-ceilings-*.json")
    cache.write_text("{not json")
    assert machine_ceilings(dtypes=("fp32",))["gflops"]["fp32"] == 57.0
    assert json.loads(cache.read_text())["entries"]["fp32"]["gflops"] == 57.0
    machine_ceilings(dtypes=("fp32",), threads=1)  # another thread count: another key, measured again
    assert calls[-2:] == [("fp32", False), ("bandwidth", False)]


def test_quick_ceilings_never_stand_in_for_full_ones(fake_measures):
    calls = fake_measures
    quick = machine_ceilings(dtypes=("fp32",), quick=True)
    assert quick["quick"] and calls == [("fp32", True), ("bandwidth", True)]
    assert machine_ceilings(dtypes=("fp32",), quick=True) == quick and len(calls) == 2
    full = machine_ceilings(dtypes=("fp32",))
    assert not full["quick"] and calls[2:] == [("fp32", False), ("bandwidth", False)]
    assert machine_ceilings(dtypes=("fp32",), quick=True)["gflops"] == full["gflops"]  # a full one serves quick
    machine_ceilings(dtypes=("fp32",), quick=True, remeasure=True)  # measured, but not cached over the full one
    assert machine_ceilings(dtypes=("fp32",))["gflops"] == full["gflops"] and len(calls) == 6


def test_ceiling_arguments_are_checked():
    with pytest.raises(ValueError, match="CPU only"):
        machine_ceilings("cuda")
    with pytest.raises(ValueError, match="fp16"):
        machine_ceilings(dtypes=("fp16",))


def test_measured_ceilings_are_plausible():
    """A real quick measurement: positive rates from named sources, torch.mm among the candidates,
    the best candidate chosen, and no more than twice the theoretical peak (turbo clocks may beat
    the clock cpuinfo reports, but not by 2x)."""
    gflops, source, candidates = ceilings_module.measure_compute("fp32", quick=True)
    assert gflops == max(candidates.values()) == candidates[source] > 0
    assert any(name.startswith("torch.mm") for name in candidates)
    assert any("conv3x3" in name for name in candidates)
    gbytes, how = ceilings_module.measure_bandwidth(quick=True)
    assert gbytes > 0 and how.startswith("copy of")
    peak = ceilings_module.this_cpu_peak().fp32
    if peak:
        assert gflops <= 2 * peak


def test_plot(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    result = model_roofline(model, (1, 3, 16, 16), MADE_UP, label="my/net", layer_repeat=1)
    png, svg = plot_roofline(result, tmp_path / "plots")
    assert png.name == "roofline_my_net.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in svg.read_bytes()[:500]


def test_report_arguments_are_checked():
    for kwargs, says in (({"dtype": "fp16"}, "fp32 or bf16"), ({"batch": 0}, "batch"),
                         ({"runtime": "tensorrt"}, "unknown runtime")):
        with pytest.raises(ValueError, match=says):
            roofline_report("lenet5", ceilings=MADE_UP, **kwargs)


@pytest.mark.parametrize("argv, says", [
    ([], "--machine"),
    (["resnet18", "--batch", "0"], "--batch"),
    (["resnet18", "--threads", "0"], "--threads"),
    (["resnet18", "--top", "0"], "--top"),
    (["resnet18", "--runtime", "tensorrt"], "unknown runtime"),
    (["resnet18", "--dtype", "int8"], "invalid choice"),
    (["no_such_model"], "no_such_model"),
    (["resnet18", "--input", "4x64x64"], "C = 3"),
    (["resnet18", "--plot", "pyproject.toml"], "--plot takes a folder"),
    (["resnet18", "--json", "src"], "--json takes a file"),
])
def test_bad_arguments_are_one_line_exit_2(argv, says, capsys):
    assert main(["roofline", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in captured.err, captured.err


def test_cli_machine_json(fake_measures, capsys):
    assert main(["roofline", "--machine", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["models"] == [] and data["machine"]["cpu"]
    ceilings = data["ceilings"]
    assert set(ceilings) >= {"gflops", "gbytes_per_s", "theoretical_gflops", "sources"}
    assert set(ceilings["gflops"]) == {"fp32", "bf16"} and set(ceilings["theoretical_gflops"]) == {"fp32", "bf16"}
    assert set(ceilings["sources"]) >= {"fp32", "bf16", "bandwidth", "theoretical"}


def test_cli_run_on_a_small_model(tmp_path, fake_measures, capsys):
    out = tmp_path / "r.json"
    assert main(["roofline", "resnet20_cifar", "--quick", "--json", str(out), "--plot", str(tmp_path)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"machine", "ceilings", "models"}
    assert data["ceilings"]["gflops"]["fp32"] == 51.0  # the fake measurement, through the cache
    (model,) = data["models"]
    assert set(model) >= {"model", "runtime", "dtype", "input_shape", "measured_ms", "bound_ms",
                          "percent_of_roofline", "achieved_gflops", "layers", "by_type"}
    assert model["model"] == "resnet20_cifar" and model["runtime"] == "eager" and model["dtype"] == "fp32"
    assert model["input_shape"] == [1, 3, 32, 32] and model["measured_ms"] > 0
    assert model["percent_of_roofline"] == pytest.approx(100 * model["bound_ms"] / model["measured_ms"])
    for layer in model["layers"]:
        assert set(layer) >= {"name", "type", "flops", "bytes", "intensity", "bound_ms", "measured_ms",
                              "memory_bound"}
    # the layers' bounds add up; the model's bound is compute-bound here: FLOPs / 51 GFLOP/s
    assert model["layers_bound_ms"] == pytest.approx(sum(layer["bound_ms"] for layer in model["layers"]))
    assert model["bound_ms"] == pytest.approx(model["flops"] / 51e6) and not model["memory_bound"]
    # the analyzer's FLOPs (about 41 MMACs)
    assert 70e6 < model["flops"] < 90e6
    assert (tmp_path / "roofline_resnet20_cifar.png").exists() and (tmp_path / "roofline_resnet20_cifar.svg").exists()
    printed = capsys.readouterr().out
    assert "this machine's ceilings" in printed and "51.0 GFLOP/s" in printed and "by layer type" in printed
