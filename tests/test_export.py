"""``cnnlab export`` and ``cnnlab.export.export_model``: every format loads back in its runtime and
computes what eager computes, at both batches of a dynamic export; BatchNorms are folded unless
--no-fuse; a checkpoint's weights are what is exported; a degenerate output is never a silent pass;
a file that disagrees never replaces the one at --out; and every bad input is one line with the
right exit code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.export import ExportError, ExportMismatch, export_model, rejected_path

NET = textwrap.dedent('''
    import torch
    from torch import nn


    def _stats(bn, generator):
        """Running statistics and affine weights far from the identity, so folding changes numbers."""
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
        bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
        with torch.no_grad():
            bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=generator) * 0.1)


    class Net(nn.Module):
        """conv -> BN2d -> ReLU -> mean -> linear -> BN1d -> ReLU -> head."""

        def __init__(self, num_classes: int = 5):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 16)
            self.bn1 = nn.BatchNorm1d(16)
            self.head = nn.Linear(16, num_classes)
            generator = torch.Generator().manual_seed(3)
            _stats(self.bn, generator)
            _stats(self.bn1, generator)

        def forward(self, x):
            x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
            return self.head(torch.relu(self.bn1(self.fc(x))))


    class Flat(Net):
        """A zeroed head: the logits are its bias whatever the input (degenerate)."""

        def __init__(self):
            super().__init__()
            nn.init.zeros_(self.head.weight)


    class Constant(nn.Module):
        """An output independent of the input and no head to re-initialise: nothing to check on."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            nn.init.zeros_(self.conv.weight)

        def forward(self, x):
            return self.conv(x).mean((2, 3))


    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            if x.sum() > 0:  # torch.export cannot trace a branch on a tensor's value
                return self.conv(x)
            return -self.conv(x)
''')


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "net.py"
    path.write_text(NET)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from cnnlab.train import train

    out = tmp_path_factory.mktemp("run")
    return train("lenet5", data="fake", epochs=1, batch_size=32, threads=1, out=str(out)).checkpoint


def _export(capsys, argv: list[str]) -> dict:
    assert main(["export", *argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _runner(path: Path, fmt: str):
    """The exported file, loaded here independently of cnnlab, as a function of a tensor."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    if fmt == "openvino":
        import openvino

        compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return lambda x: torch.from_numpy(np.asarray(compiled(x.numpy())[compiled.output(0)]))
    module = torch.export.load(str(path)).module()
    return lambda x: module(x).detach()


def _user_model(path: Path, attr: str) -> torch.nn.Module:
    """``attr`` of the user's file built as the command builds it (after torch.manual_seed(0))."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_test_export_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return getattr(module, attr)().eval()


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max()).item()


def _bn_ops(path: Path, fmt: str) -> int:
    if fmt == "onnx":
        import onnx

        return sum(n.op_type == "BatchNormalization" for n in onnx.load(str(path)).graph.node)
    program = torch.export.load(str(path))
    return sum("batch_norm" in str(n.target) for n in program.graph.nodes if n.op == "call_function")


# -- round trips --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("openvino", ".xml"), ("pt2", ".pt2")])
def test_every_format_round_trips_with_a_dynamic_batch(tmp_path, capsys, fmt, suffix) -> None:
    out = tmp_path / f"squeezenet{suffix}"
    got = _export(capsys, ["squeezenet1_1", "--input", "3x64x64", "--batch", "dynamic", "--out", str(out)])
    assert got["ok"] and got["written"] and got["format"] == fmt and got["batch"] is None
    assert set(got["max_rel_diff"]) == {"1", "3"} and max(got["max_rel_diff"].values()) <= 1e-3
    files = [Path(p) for p in got["files"]]
    assert files[0] == out and got["bytes"] == sum(p.stat().st_size for p in files)
    if fmt == "openvino":
        assert files[1] == out.with_suffix(".bin") and got["weights"] == "fp32"
        assert got["bytes"] > 4 * 1_200_000  # FP32: 1.24M parameters, 4 bytes each
    assert not list(tmp_path.glob(".*"))  # the staging folder is gone
    torch.manual_seed(0)
    model = cnnlab.create_model("squeezenet1_1").eval()
    run = _runner(out, fmt)
    for batch in (1, 2):  # 2: the batch it was traced at, which the command does not check
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            assert _rel(run(x), model(x)) < 1e-4


def test_the_summary_line(tmp_path, capsys) -> None:
    out = tmp_path / "lenet.onnx"
    assert main(["export", "lenet5", "--out", str(out), "--opset", "17"]) == 0
    captured = capsys.readouterr()
    line = captured.out.strip()
    assert "\n" not in line and line.startswith(f"wrote {out} (0.2 MiB, opset 17, batch 1, FP32 weights)")
    assert "onnxruntime" in line and "max relative difference" in line and line.endswith("at batch 1")
    assert captured.err == ""


def test_a_fixed_batch_file_takes_only_that_batch(tmp_path, capsys) -> None:
    out = tmp_path / "lenet.onnx"
    got = _export(capsys, ["lenet5", "--batch", "2", "--out", str(out)])
    assert got["batch"] == 2 and list(got["max_rel_diff"]) == ["2"]
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 1, 32, 32]
    session.run(None, {"input": np.zeros((2, 1, 32, 32), np.float32)})
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"input": np.zeros((3, 1, 32, 32), np.float32)})


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("pt2", ".pt2")])
def test_batchnorms_are_folded_unless_no_fuse(tmp_path, capsys, net, fmt, suffix) -> None:
    spec = f"{net}:Net"
    fused = _export(capsys, [spec, "--input", "3x16x16", "--out", str(tmp_path / f"fused{suffix}")])
    kept = _export(capsys, [spec, "--input", "3x16x16", "--out", str(tmp_path / f"kept{suffix}"), "--no-fuse"])
    assert (fused["bn_folded"], fused["bn_total"], fused["fused"]) == (2, 2, True)
    assert (kept["bn_folded"], kept["fused"]) == (0, False)
    assert _bn_ops(tmp_path / f"fused{suffix}", fmt) == 0
    # torch.onnx folds a BN after a conv itself; the one after the linear layer stays
    assert _bn_ops(tmp_path / f"kept{suffix}", fmt) == (1 if fmt == "onnx" else 2)
    model = _user_model(net, "Net")
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        for name in ("fused", "kept"):
            assert _rel(_runner(tmp_path / f"{name}{suffix}", fmt)(x), model(x)) < 1e-4


def test_a_checkpoint_is_exported_with_its_weights(tmp_path, capsys, checkpoint) -> None:
    from cnnlab.train.inference import from_checkpoint

    out = tmp_path / "trained.xml"
    got = _export(capsys, ["lenet5", "--checkpoint", str(checkpoint), "--out", str(out), "--batch", "dynamic"])
    assert got["input_shape"] == [1, 32, 32] and got["ok"]
    trained = from_checkpoint(checkpoint, "lenet5").model
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert _rel(_runner(out, "openvino")(x), trained(x)) < 1e-4
    # the same file from the random initialisation differs: the weights are the checkpoint's
    assert main(["export", "lenet5", "--out", str(tmp_path / "random.onnx")]) == 0
    with torch.no_grad():
        assert _rel(_runner(tmp_path / "random.onnx", "onnx")(x[:1]), trained(x[:1])) > 1e-2
    # another model's checkpoint: an unusable file, exit 1, one line
    capsys.readouterr()
    assert main(["export", "squeezenet1_1", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "s.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a lenet5 checkpoint, not squeezenet1_1" in err
    assert not (tmp_path / "s.onnx").exists()


# -- what the check says --------------------------------------------------------------------------
def test_degenerate_logits_are_checked_on_a_usable_copy(tmp_path, capsys, net) -> None:
    out = tmp_path / "flat.onnx"
    assert main(["export", f"{net}:Flat", "--input", "3x16x16", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert "degenerate logits, so a copy (head re-initialised (seed 0)) was exported the same way" in line
    got = _export(capsys, [f"{net}:Flat", "--input", "3x16x16", "--out", str(out)])
    assert got["ok"] and not got["weak"] and max(got["reference_max_rel_diff"].values()) <= 1e-3
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():  # the real, zeroed head was exported, not the copy's
        assert torch.allclose(_runner(out, "onnx")(x), _user_model(net, "Flat")(x))


def test_a_check_that_proves_nothing_says_so(tmp_path, capsys, net) -> None:
    got = _export(capsys, [f"{net}:Constant", "--input", "3x8x8", "--out", str(tmp_path / "c.pt2")])
    assert got["weak"] and got["note"].startswith("weak verification")
    assert main(["export", f"{net}:Constant", "--input", "3x8x8", "--out", str(tmp_path / "c.pt2")]) == 0
    assert "weak verification: the output hardly depends on the input" in capsys.readouterr().out


def test_a_file_that_disagrees_never_replaces_the_old_one(tmp_path, capsys, monkeypatch) -> None:
    from cnnlab import export

    out = tmp_path / "lenet.onnx"
    out.write_bytes(b"the good file")
    loader = export._Onnx.load
    monkeypatch.setattr(export._Onnx, "load", lambda self, path: (lambda x: loader(self, path)(x) * 1.01))
    assert main(["export", "lenet5", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnlab: error: the exported file disagrees with torch eager")
    assert "max relative difference 1.0e-02 at batch 1 (tolerance 1e-03)" in err and "Traceback" not in err
    assert out.read_bytes() == b"the good file"
    assert rejected_path(out).exists() and str(rejected_path(out)) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.onnx", "lenet.rejected.onnx"]
    assert main(["export", "lenet5", "--out", str(out), "--json"]) == 1  # the numbers, then the line
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is False and captured.err.count("\n") == 1
    # the same from Python: ExportMismatch carries the numbers
    with pytest.raises(ExportMismatch) as caught:
        export_model(cnnlab.create_model("lenet5"), (1, 1, 32, 32), "onnx", out)
    assert not caught.value.result.ok and caught.value.result.max_rel_diff[1] == pytest.approx(0.01, rel=1e-3)
    assert out.read_bytes() == b"the good file"


# -- the Python API -------------------------------------------------------------------------------
def test_export_model_returns_what_it_wrote(tmp_path) -> None:
    model = cnnlab.create_model("lenet5")
    result = export_model(model, torch.randn(2, 1, 32, 32), "pt2", tmp_path / "l.pt2", dynamic_batch=True)
    assert result.path == tmp_path / "l.pt2" and result.bytes == result.path.stat().st_size
    assert result.ok and result.dynamic_batch and sorted(result.max_rel_diff) == [1, 3]
    assert result.runtime_version == torch.__version__.split("+")[0] or result.runtime_version == torch.__version__
    assert model.training  # the model given is left as it was
    with pytest.raises(ValueError, match="pt2 files end in .pt2"):
        export_model(model, (1, 1, 32, 32), "pt2", tmp_path / "l.onnx")
    with pytest.raises(ValueError, match="unknown format"):
        export_model(model, (1, 1, 32, 32), "tflite", tmp_path / "l.tflite")


# -- bad input --------------------------------------------------------------------------------------
BAD = [
    (["lenet5", "--format", "tflite"], "invalid choice: 'tflite'"),
    (["lenet6"], "unknown model 'lenet6'"),
    (["lenet5", "--batch", "0"], "--batch: must be a positive integer or dynamic, got '0'"),
    (["lenet5", "--batch", "-3"], "--batch: must be a positive integer or dynamic, got '-3'"),
    (["lenet5", "--batch", "dynamical"], "must be a positive integer or dynamic"),
    (["lenet5", "--opset", "99"], "--opset 99 is out of range"),
    (["lenet5", "--opset", "3"], "--opset 3 is out of range"),
    (["lenet5", "--format", "pt2", "--opset", "18"], "--opset is for --format onnx"),
    (["lenet5", "--format", "openvino"], "openvino files end in .xml"),
    (["lenet5", "--fp16-weights"], "--fp16-weights is for --format openvino"),
    (["squeezenet1_1", "--input", "3x8x8"], "at least 17x17"),
    (["lenet5", "--input", "3x32x32"], "built for 1 input channel"),
]


@pytest.mark.parametrize("extra, message", BAD)
def test_bad_input_is_one_line_and_touches_nothing(tmp_path, capsys, extra, message) -> None:
    out = tmp_path / "keep.onnx"
    out.write_bytes(b"keep me")
    assert main(["export", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: ") and err.count("\n") == 1 and message in err, err
    assert out.read_bytes() == b"keep me" and [p.name for p in tmp_path.iterdir()] == ["keep.onnx"]


@pytest.mark.parametrize("out, message", [
    ("missing/folder/m.onnx", "the folder"),
    ("m.txt", "give --format onnx|openvino|pt2, or an --out ending in .onnx, .xml or .pt2"),
    ("folder.onnx", "is a directory"),
])
def test_a_bad_out_path(tmp_path, capsys, out, message) -> None:
    (tmp_path / "folder.onnx").mkdir()
    assert main(["export", "lenet5", "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["folder.onnx"]


def test_your_module_needs_an_input_and_its_errors_are_yours(tmp_path, capsys, net) -> None:
    assert main(["export", f"{net}:Net", "--out", str(tmp_path / "n.onnx")]) == 2
    assert "give the input of" in capsys.readouterr().err
    assert main(["export", f"{net}:Net", "--input", "4x16x16", "--out", str(tmp_path / "n.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError" in err and "'conv' (Conv2d)" in err
    # torch.export cannot trace a branch on a value: the export fails, exit 1, nothing written
    assert main(["export", f"{net}:DataDependent", "--input", "3x8x8", "--out", str(tmp_path / "d.pt2")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnlab: error: pt2 export failed: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt, package", [("onnx", "onnxruntime"), ("openvino", "openvino")])
def test_a_missing_runtime_says_how_to_install_it(tmp_path, capsys, monkeypatch, fmt, package) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if it were not installed
    assert main(["export", "lenet5", "--format", fmt, "--out", str(tmp_path / f"m{'.xml' if fmt == 'openvino' else '.onnx'}")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pip install {package}" in err
    with pytest.raises(ExportError, match=f"pip install {package}"):
        export_model(cnnlab.create_model("lenet5"), (1, 1, 32, 32), fmt,
                     tmp_path / ("m.xml" if fmt == "openvino" else "m.onnx"))


def test_help_imports_no_torch_and_shows_defaults(capsys) -> None:
    code = ("import sys\nfrom cnnlab.cli import main\ncode = main(['export', '--help'])\n"
            "print('CODE', code, 'TORCH', 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "CODE 0 TORCH False" in proc.stdout, proc.stderr
    assert main(["export", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 1)" in text and "(default: 0)" in text and "NAME.rejected.EXT" in text
