"""``cnnlab quantize`` and ``cnnlab.quantize``: for every installed backend the INT8 file is
written, loads back, holds INT8 and keeps the accuracy of a LeNet-5 trained for 4 epochs on the
digits; calibration reads exactly the batches asked for, from the training split; the file
replaces --out only when complete; and every bad input is one line with the right exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.cli import main
from cnnlab.quantize import BACKENDS, QuantizeError, calibration_batches, get_backend, quantize_trained, top1_accuracy
from cnnlab.quantize.backends import OpenVINO
from cnnlab.train import train
from cnnlab.train.inference import evaluate_model, from_checkpoint

CALIBRATION = 3  # batches
MAX_DROP = 0.03  # INT8 top-1 within 3 points of float for the 4-epoch LeNet-5


def _installed(name: str):
    reason = get_backend(name).available()
    return pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=reason or ""))


# Every backend, torch's included: PT2E's inductor compilation of LeNet-5 takes ~35 s on one core
# with a cold cache, and the whole file ~50 s.
ALL = [_installed(name) for name in BACKENDS]
# inductor's INT8 lowering copies a tensor the way torch warns about; nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """LeNet-5 trained for 4 epochs on the digits (a few seconds; 0.904 test top-1). AdamW: with
    the default recipe (SGD 0.05, cosine) 4 epochs stay at chance (0.102), where any INT8 model
    would be "as accurate"."""
    out = tmp_path_factory.mktemp("lenet5")
    return train("lenet5", data="digits", epochs=4, out=str(out), seed=0, threads=1, optimizer="adamw", lr=0.003)


@pytest.fixture(scope="module")
def trained(run):
    return from_checkpoint(run.checkpoint, "lenet5")


@pytest.fixture(scope="module")
def quantized(trained, tmp_path_factory):
    """Each backend's result on the LeNet-5, computed once."""
    folder = tmp_path_factory.mktemp("int8")
    results = {}

    def get(backend: str):
        if backend not in results:
            out = folder / f"lenet5{get_backend(backend).suffix}"
            results[backend] = quantize_trained(trained, out, backend=backend, calibration_batches=CALIBRATION,
                                                calibration_batch_size=16, threads=1, rounds=1, repeat=3, warmup=1)
        return results[backend]

    return get


def _int8_in_file(backend: str, path: Path) -> bool:
    """Whether the file holds quantization nodes and 8-bit integer weights."""
    if backend == "onnxruntime":
        import onnx

        graph = onnx.load(str(path)).graph
        ops = {node.op_type for node in graph.node}
        int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
        return {"QuantizeLinear", "DequantizeLinear"} <= ops and any(t.data_type in int8 for t in graph.initializer)
    if backend == "openvino":
        import openvino

        model = openvino.Core().read_model(str(path))
        ops = {op.get_type_name() for op in model.get_ops()}
        constants = {str(op.get_output_element_type(0)) for op in model.get_ops() if op.get_type_name() == "Constant"}
        return "FakeQuantize" in ops and bool(constants & {"<Type: 'int8_t'>", "<Type: 'uint8_t'>"})
    import torchao  # noqa: F401 - registers the quantized_decomposed operators

    program = torch.export.load(str(path))
    targets = {str(node.target) for node in program.graph.nodes}
    tensors = list(program.state_dict.values()) + list(program.constants.values())
    return ("quantized_decomposed.quantize_per_tensor.default" in targets
            and any(isinstance(t, torch.Tensor) and t.dtype == torch.int8 for t in tensors))


# -- every backend ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ALL)
def test_int8_file_is_written_holds_int8_and_keeps_accuracy(backend, quantized, trained):
    result = quantized(backend)
    files = result.written.files
    assert all(p.is_file() and p.stat().st_size > 0 for p in files)
    assert files[0].suffix == get_backend(backend).suffix
    assert _int8_in_file(backend, files[0])
    assert result.n == 450
    assert result.float_top1 > 0.8  # the 4-epoch LeNet learned something, so the bound below means something
    assert result.int8_top1 >= result.float_top1 - MAX_DROP, (result.float_top1, result.int8_top1)
    # INT8 weights: the file is well under the FP32 one's size (LeNet-5's weights are 61,706 floats)
    assert result.written.bytes < 0.75 * result.written.float_bytes
    assert result.float_ms > 0 and result.int8_ms > 0 and result.speedup == result.float_ms / result.int8_ms


@pytest.mark.parametrize("backend", ALL)
def test_calibration_reads_exactly_the_batches_asked_for(backend, quantized):
    result = quantized(backend)
    assert result.written.batches_used == CALIBRATION
    assert result.to_dict()["calibration"] == {"split": "train", "batches": CALIBRATION, "batch_size": 16,
                                                "images": CALIBRATION * 16}


@pytest.mark.parametrize("backend", ALL)
def test_the_file_reloads_with_any_batch(backend, quantized, trained):
    result = quantized(backend)
    run = get_backend(backend).load(result.written.files[0], threads=1)
    x = torch.randn(5, *trained.input_size)
    logits = torch.as_tensor(run(x))
    assert logits.shape == (5, len(trained.classes)) and torch.isfinite(logits).all()


def test_float_accuracy_is_cnnlab_evals(quantized, trained):
    """The float column is the number ``cnnlab eval`` prints: same split, same loop."""
    result = quantized("onnxruntime" if get_backend("onnxruntime").available() is None else "openvino")
    assert result.float_top1 == pytest.approx(evaluate_model(trained).top1, abs=1.5 / result.n)


# -- calibration and evaluation helpers ---------------------------------------------------------
def test_calibration_batches_come_from_the_dataset_without_repeats():
    data = torch.arange(100, dtype=torch.float32).view(100, 1)
    dataset = torch.utils.data.TensorDataset(data, torch.zeros(100, dtype=torch.long))
    batches = calibration_batches(dataset, 3, 8, seed=1)
    assert [tuple(b.shape) for b in batches] == [(8, 1)] * 3
    values = torch.cat(batches).flatten().tolist()
    assert len(set(values)) == 24
    assert torch.equal(torch.cat(batches), torch.cat(calibration_batches(dataset, 3, 8, seed=1)))  # seeded
    with pytest.raises(ValueError, match="training split has 100"):
        calibration_batches(dataset, 13, 8)


def test_top1_accuracy_takes_any_callable():
    x = torch.eye(4)
    dataset = torch.utils.data.TensorDataset(x, torch.tensor([0, 1, 2, 0]))
    got = top1_accuracy(lambda batch: batch.numpy(), dataset, batch_size=3)  # a numpy array is fine too
    assert (got.correct, got.n, got.top1) == (3, 4, 0.75)


# -- atomic writes --------------------------------------------------------------------------------
def test_a_failing_backend_leaves_out_as_it_was(trained, tmp_path, monkeypatch):
    backend = get_backend("onnxruntime")
    if backend.available():
        pytest.skip(backend.available())
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")

    def fail(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(type(backend), "quantize", fail)
    with pytest.raises(QuantizeError, match=r"^the onnxruntime backend failed on lenet5: RuntimeError: boom$"):
        quantize_trained(trained, out, backend="onnxruntime", calibration_batches=1, threads=1)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left


# -- the command line ------------------------------------------------------------------------------
def _ort_or_skip() -> None:
    if get_backend("onnxruntime").available():
        pytest.skip(get_backend("onnxruntime").available())


def test_cli_prints_the_table_and_writes_the_file(run, tmp_path, capsys):
    _ort_or_skip()
    out = tmp_path / "q.onnx"
    argv = ["quantize", "lenet5", "--checkpoint", str(run.checkpoint), "--backend", "onnxruntime", "--out", str(out),
            "--calibration-batches", "2", "--repeat", "2", "--threads", "1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert "INT8 with onnxruntime" in lines[0] and "calibrated on 2 x 32 training images of digits" in lines[0]
    float_row = next(line for line in lines if line.startswith("float32"))
    int8_row = next(line for line in lines if line.startswith("int8"))
    assert "onnxruntime fp32" in float_row and "onnxruntime int8" in int8_row
    assert lines[-1] == f"wrote {out}" and out.is_file()


def test_cli_json(run, tmp_path, capsys):
    _ort_or_skip()
    out = tmp_path / "q.onnx"
    argv = ["quantize", "lenet5", "--checkpoint", str(run.checkpoint), "--backend", "onnxruntime", "--out", str(out),
            "--calibration-batches", "2", "--calibration-batch-size", "8", "--repeat", "2", "--threads", "1", "--json"]
    assert main(argv) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["model"] == "lenet5" and got["backend"] == "onnxruntime" and got["data"] == "digits"
    assert got["out"] == str(out) and got["files"] == [str(out)] and got["test_images"] == 450
    assert got["calibration"] == {"split": "train", "batches": 2, "batch_size": 8, "images": 16}
    for side in ("float", "int8"):
        assert set(got[side]) == {"top1", "correct", "bytes", "size_mb", "median_ms", "runtime"}
    assert got["int8"]["bytes"] == out.stat().st_size
    assert got["speedup"] == pytest.approx(got["float"]["median_ms"] / got["int8"]["median_ms"])


def _one_line_error(capsys, argv, code: int) -> str:
    assert main(argv) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


@pytest.mark.parametrize("extra, code, message", [
    (["--backend", "tflite"], 2, "invalid choice: 'tflite'"),
    (["--calibration-batches", "0"], 2, "--calibration-batches must be >= 1, got 0"),
    (["--calibration-batch-size", "-1"], 2, "--calibration-batch-size must be >= 1"),
    (["--threads", "0"], 2, "--threads must be >= 1"),
    (["--data", "mnist"], 2, "unknown data 'mnist'"),
])
def test_cli_bad_options(run, tmp_path, capsys, extra, code, message):
    argv = ["quantize", "lenet5", "--checkpoint", str(run.checkpoint), "--out", str(tmp_path / "q.xml"), *extra]
    assert message in _one_line_error(capsys, argv, code)


@pytest.mark.parametrize("backend, out, message", [
    ("openvino", "q.onnx", "the openvino backend writes a .xml file"),
    ("onnxruntime", "q.xml", "the onnxruntime backend writes a .onnx file"),
    ("torch", "q.onnx", "the torch backend writes a .pt2 file"),
    ("onnxruntime", "missing/q.onnx", "does not exist"),
])
def test_cli_out_must_suit_the_backend(run, tmp_path, capsys, backend, out, message):
    argv = ["quantize", "lenet5", "--checkpoint", str(run.checkpoint), "--backend", backend,
            "--out", str(tmp_path / out)]
    assert message in _one_line_error(capsys, argv, 2)


def test_cli_unusable_checkpoints_exit_1(run, tmp_path, capsys):
    out = str(tmp_path / "q.xml")

    def argv(name, checkpoint):
        return ["quantize", name, "--checkpoint", str(checkpoint), "--out", out]

    assert "nope.pt" in _one_line_error(capsys, argv("lenet5", tmp_path / "nope.pt"), 1)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    assert "corrupt.pt" in _one_line_error(capsys, argv("lenet5", corrupt), 1)
    other = _one_line_error(capsys, argv("resnet20_cifar", run.checkpoint), 1)
    assert "holds a lenet5 checkpoint, not resnet20_cifar" in other
    assert not Path(out).exists()


def test_cli_more_calibration_than_the_training_split_holds(run, tmp_path, capsys):
    argv = ["quantize", "lenet5", "--checkpoint", str(run.checkpoint), "--out", str(tmp_path / "q.xml"),
            "--calibration-batches", "1000"]
    assert "the training split has 1347: ask for at most 42 batches" in _one_line_error(capsys, argv, 2)


def test_cli_backend_not_installed_says_how_to_install(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(OpenVINO, "packages", ("openvino", "nncf_is_not_here"))
    argv = ["quantize", "lenet5", "--checkpoint", str(run.checkpoint), "--out", str(tmp_path / "q.xml")]
    line = _one_line_error(capsys, argv, 1)
    assert "the openvino backend needs nncf_is_not_here, which is not installed here: pip install" in line


def test_cli_backend_failing_on_the_model_is_one_line(run, tmp_path, capsys, monkeypatch):
    _ort_or_skip()

    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operator Foo\nmore detail")

    monkeypatch.setattr(type(get_backend("onnxruntime")), "quantize", fail)
    argv = ["quantize", "lenet5", "--checkpoint", str(run.checkpoint), "--backend", "onnxruntime",
            "--out", str(tmp_path / "q.onnx"), "--calibration-batches", "1"]
    line = _one_line_error(capsys, argv, 1)
    assert "the onnxruntime backend failed on lenet5: RuntimeError: unsupported operator Foo" in line


def test_help_and_usage_errors_import_no_torch():
    code = ("import sys\nfrom cnnlab.cli import main\n"
            "codes = [main(['quantize', '--help']),\n"
            "         main(['quantize', 'lenet5', '--checkpoint', 'c.pt', '--out', 'a.onnx'])]\n"
            "heavy = ('torch', 'numpy', 'openvino', 'onnxruntime')\n"
            "print('CODES', codes, sorted(m for m in heavy if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "CODES [0, 2] []" in done.stdout, done.stderr
