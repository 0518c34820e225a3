"""``cnnlab bench``: bad arguments are one line and exit 2; an end-to-end run on a small input
verifies every runtime or says why not, and writes the JSON."""

from __future__ import annotations

import json
import textwrap

import pytest

from cnnlab.cli import main


@pytest.mark.parametrize("argv, says", [
    (["resnet18", "--batch", "0"], "--batch"),
    (["resnet18", "--batch", "1,x"], "--batch"),
    (["resnet18", "--runtime", "tensorrt"], "unknown runtime"),
    (["resnet18", "--repeat", "0"], "--repeat"),
    (["resnet18", "--min-time", "-1"], "--min-time"),
    (["resnet18", "--warmup", "-1"], "--warmup"),
    (["resnet18", "--threads", "0"], "--threads"),
    (["resnet18", "--repeat", "3", "--min-time", "1"], "not allowed with"),
    (["resnet18", "--input", "3x64x64", "--resolutions", "224"], "not allowed with"),
    (["resnet18", "--resolutions", "224,3x480x640"], "--resolutions"),
    (["resnet18", "--input", "4x64x64"], "C = 3"),
    (["resnet18", "--dtype", "int8"], "invalid choice"),
    (["no_such_model"], "no_such_model"),
    (["missing_file.py:Net", "--input", "3x8x8"], "no such file"),
])
def test_bad_arguments_are_one_line_exit_2(argv, says, capsys):
    assert main(["bench", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error:") and says in lines[0], captured.err
    assert captured.out == ""


def test_end_to_end_resnet18(tmp_path, capsys):
    out = tmp_path / "out.json"
    runtimes = ["eager", "channels_last", "onnxruntime", "openvino"]
    code = main(["bench", "resnet18", "--input", "3x64x64", "--runtime", ",".join(runtimes), "--repeat", "3",
                 "--warmup", "1", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(out.read_text())
    assert [r["runtime"] for r in data["results"]] == runtimes
    for row in data["results"]:
        assert row["model"] == "resnet18" and row["input_shape"] == [1, 3, 64, 64]
        if row["ok"]:
            assert row["error"] is None and row["median_ms"] > 0 and row["max_rel_diff"] <= 1e-3
        else:  # a runtime that cannot run here says why
            assert row["error"]
    assert data["results"][0]["ok"]  # eager always runs
    progress = [line for line in captured.err.splitlines() if line.startswith("cnnlab bench: resnet18")]
    assert len(progress) == len(runtimes)
    for name in runtimes:
        assert name in captured.out  # the table


def test_own_module_and_json_to_stdout(tmp_path, capsys, monkeypatch):
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3)
                self.fc = nn.Linear(4, 5)
            def forward(self, x):
                return self.fc(self.conv(x).mean((2, 3)))
    """))
    monkeypatch.chdir(tmp_path)
    code = main(["bench", "net.py:Net", "--input", "3x16x16", "--runtime", "eager,fused", "--repeat", "2",
                 "--warmup", "0", "--batch", "1,2", "--json", "-"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert [(r["runtime"], r["batch"]) for r in data["results"]] == [
        ("eager", 1), ("fused", 1), ("eager", 2), ("fused", 2)]
    assert all(r["ok"] or r["error"] for r in data["results"])
    assert data["results"][0]["ok"] and data["results"][0]["model"] == "net.py:Net"


def test_user_model_needs_an_input(tmp_path, capsys, monkeypatch):
    (tmp_path / "net.py").write_text("from torch import nn\nnet = nn.Conv2d(3, 4, 3)\n")
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "net.py:net"]) == 2
    assert "--input" in capsys.readouterr().err


def test_a_runtime_retried_with_its_fallback_is_noted_under_the_table(tmp_path, capsys, monkeypatch):
    import copy

    import torch

    from cnnlab.bench.runtimes import RUNTIMES, Runtime

    class Retried(Runtime):
        name, fallback = "retried", "prepared the safe way"

        def prepare(self, model, example, *, fallback=False, **kwargs):
            copied = copy.deepcopy(model).eval()
            if not fallback:
                with torch.no_grad():
                    next(copied.parameters()).mul_(1.5)
            return lambda: copied(example)

    monkeypatch.setitem(RUNTIMES, "retried", Retried())
    monkeypatch.setattr("cnnlab.cli.bench.RUNTIME_NAMES", (*RUNTIMES,))
    (tmp_path / "net.py").write_text("from torch import nn\nnet = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())\n")
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "net.py:net", "--input", "3x8x8", "--runtime", "eager,retried", "--repeat", "1",
                 "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    notes = out[out.index("\nnotes:\n"):].splitlines()
    assert len(notes) == 3 and notes[2].startswith("  net.py:net: prepared the safe way (max relative difference ")
