"""``cnnlab roofline``: the bound's arithmetic on made-up ceilings, the theoretical peak read from
cpuinfo text, the ceiling cache (written, reused, refreshed, corrupt file ignored), per-layer
eager times, the JSON keys, the chart and the command line's errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab.bench import ceilings as ceilings_module
from cnnlab.bench.ceilings import ceilings, theoretical_peak
from cnnlab.bench.roofline import bound_ms, layer_times_ms, plot_roofline, roofline
from cnnlab.cli import main

# Made-up ceilings: 100 GFLOP/s and 10 GB/s, so the ridge is at 10 FLOPs per byte.
MADE_UP = {"gflops": {"fp32": 100.0, "bf16": 200.0}, "gbytes_per_s": 10.0, "theoretical_gflops": {}, "sources": {}}


def test_bound_is_the_larger_of_compute_and_memory_time():
    # 2 GFLOPs at 100 GFLOP/s = 20 ms; 50 MB at 10 GB/s = 5 ms: compute-bound.
    assert bound_ms(2e9, 50e6, 100, 10) == (pytest.approx(20.0), False)
    # 1 MFLOP = 0.01 ms; 8 MB = 0.8 ms: memory-bound.
    assert bound_ms(1e6, 8e6, 100, 10) == (pytest.approx(0.8), True)


def test_model_bound_layer_by_layer():
    # A 1x1 conv 64 -> 64 on 8x8 then a ReLU, batch 1, fp32, by hand:
    conv_flops = 2 * 64 * 64 * 64                      # 524,288
    conv_bytes = 4 * (64 * 64 + 64 * 64 + 64 * 64)     # input, weight, output: 49,152
    relu_flops, relu_bytes = 64 * 64, 4 * 2 * 64 * 64  # 4,096 and 32,768
    model = nn.Sequential(nn.Conv2d(64, 64, 1, bias=False), nn.ReLU()).eval()
    result = roofline(model, (1, 64, 8, 8), MADE_UP, label="tiny", measured_ms=0.01, layer_repeat=1)
    conv, relu = result.layers
    assert (conv.flops, conv.bytes, relu.flops, relu.bytes) == (conv_flops, conv_bytes, relu_flops, relu_bytes)
    assert conv.bound_ms == pytest.approx(max(conv_flops / 100e6, conv_bytes / 10e6))
    assert not conv.memory_bound and relu.memory_bound  # 10.7 and 0.125 FLOPs per byte, ridge at 10
    total = conv.bound_ms + relu.bound_ms
    data = result.to_dict()
    assert data["bound_ms"] == pytest.approx(total)
    assert data["percent_of_roofline"] == pytest.approx(100 * total / 0.01)
    assert data["achieved_gflops"] == pytest.approx((conv_flops + relu_flops) / 0.01e6)
    assert [t["type"] for t in data["by_type"]] and {t["type"] for t in data["by_type"]} == {"Conv2d", "ReLU"}
    assert set(data) >= {"model", "runtime", "dtype", "input_shape", "measured_ms", "bound_ms",
                         "percent_of_roofline", "achieved_gflops", "layers", "by_type"}
    assert set(data["layers"][0]) >= {"name", "type", "flops", "bytes", "intensity", "bound_ms", "measured_ms",
                                      "memory_bound"}


def test_bf16_halves_the_bytes():
    model = nn.Sequential(nn.ReLU()).eval()
    fp32 = roofline(model, (1, 4, 8, 8), MADE_UP, dtype="fp32", layer_repeat=1).layers[0]
    bf16 = roofline(model, (1, 4, 8, 8), MADE_UP, dtype="bf16", layer_repeat=1).layers[0]
    assert bf16.bytes * 2 == fp32.bytes


def test_layer_times_are_own_times():
    class Slow(nn.Module):
        def forward(self, x):
            import time

            time.sleep(0.02)
            return x

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Slow()

        def forward(self, x):
            import time

            time.sleep(0.01)
            return self.inner(x)

    model = nn.Sequential(Block())
    times = layer_times_ms(model, torch.zeros(1), repeat=1, warmup=0)
    assert times["0.inner"] >= 20 and 10 <= times["0"] < 20 and times[""] < 5


CPUINFO = """processor\t: 0
model name\t: Some CPU
cpu MHz\t\t: 2500.000
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16
processor\t: 1
cpu MHz\t\t: 1200.000
"""


def test_theoretical_peak_from_cpuinfo():
    assert theoretical_peak(CPUINFO, 2) == {"fp32": 2 * 2.5 * 64, "bf16": 2 * 2 * 2.5 * 64}
    avx2 = CPUINFO.replace(" avx512f avx512_bf16", "")
    assert theoretical_peak(avx2, 4) == {"fp32": 4 * 2.5 * 32, "bf16": 4 * 2.5 * 32}
    assert theoretical_peak(CPUINFO.replace("cpu MHz", "clock"), 2) == {"fp32": None, "bf16": None}
    assert theoretical_peak("", 2) == {"fp32": None, "bf16": None}


def test_ceilings_are_cached_refreshed_and_survive_a_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path))
    calls = []

    def fake(device, *, quick=False, **_):
        calls.append(quick)
        return {"gflops": {"fp32": 50.0 + len(calls)}, "gbytes_per_s": 5.0, "sources": {}, "quick": quick}

    monkeypatch.setattr(ceilings_module, "measure_ceilings", fake)
    first = ceilings(quick=True)
    assert ceilings(quick=True) == first and len(calls) == 1          # from the cache
    assert ceilings()["gflops"]["fp32"] == 52.0 and calls == [True, False]  # quick never stands for full
    assert ceilings(quick=True)["gflops"]["fp32"] == 52.0             # a full one serves quick calls
    assert ceilings(remeasure=True)["gflops"]["fp32"] == 53.0
    (cache,) = tmp_path.glob("roofline-ceilings-*.json")
    cache.write_text("{not json")
    assert ceilings()["gflops"]["fp32"] == 54.0
    assert json.loads(cache.read_text())["ceilings"]["gflops"]["fp32"] == 54.0


def test_measured_ceilings_are_plausible():
    """A real (quick) measurement: positive rates from named sources, the bandwidth far below the
    compute rate in bytes, and nothing above the theoretical peak where one can be read."""
    measured = ceilings_module.measure_ceilings(quick=True, dtypes=("fp32",))
    assert measured["gflops"]["fp32"] > 0 and measured["gbytes_per_s"] > 0
    assert measured["sources"]["fp32"] and measured["sources"]["bandwidth"].startswith("copy of")
    peak = measured["theoretical_gflops"].get("fp32")
    if peak:
        assert measured["gflops"]["fp32"] <= 1.25 * peak  # turbo clocks may exceed the base clock read


def test_plot(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    result = roofline(model, (1, 3, 16, 16), MADE_UP, label="my/net", layer_repeat=1)
    png, svg = plot_roofline(result, tmp_path)
    assert png.name == "roofline_my_net.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert b"<svg" in svg.read_bytes()[:500]


def test_unknown_dtype_ceiling():
    with pytest.raises(ValueError, match="no fp16 compute ceiling"):
        roofline(nn.ReLU(), (1, 4), MADE_UP, dtype="fp16")


@pytest.mark.parametrize("argv, says", [
    ([], "--machine"),
    (["resnet18", "--batch", "0"], "--batch"),
    (["resnet18", "--top", "0"], "--top"),
    (["resnet18", "--runtime", "tensorrt"], "unknown runtime"),
    (["resnet18", "--dtype", "int8"], "invalid choice"),
    (["no_such_model"], "no_such_model"),
    (["resnet18", "--input", "4x64x64"], "C = 3"),
])
def test_bad_arguments_are_one_line_exit_2(argv, says, capsys):
    assert main(["roofline", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], captured.err


def test_cli_run_on_a_small_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ceilings_module, "measure_ceilings", lambda device, **_: dict(MADE_UP, quick=True))
    out = tmp_path / "r.json"
    assert main(["roofline", "resnet20_cifar", "--quick", "--json", str(out), "--plot", str(tmp_path)]) == 0
    data = json.loads(out.read_text())
    assert data["ceilings"]["gflops"]["fp32"] == 100.0
    (model,) = data["models"]
    assert model["model"] == "resnet20_cifar" and model["input_shape"] == [1, 3, 32, 32]
    assert model["measured_ms"] > 0 and model["percent_of_roofline"] > 0 and model["layers"]
    assert (tmp_path / "roofline_resnet20_cifar.svg").exists()
    printed = capsys.readouterr().out
    assert "this machine's ceilings" in printed and "100.0 GFLOP/s" in printed and "memory-bound" in printed
