"""``cnnlab train``: bad arguments are one line and exit 2; a run writes its folder and prints
``test accuracy`` last; unusable checkpoints are one line and exit 1; SIGINT saves a checkpoint,
exits 130, and ``--resume`` continues to the weights of a run never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cnnlab.cli import main
from cnnlab.train import load_checkpoint

FAST = ["--data", "fake", "--epochs", "1", "--batch-size", "32", "--threads", "1"]


@pytest.mark.parametrize("argv, says", [
    (["no_such_model"], "unknown model 'no_such_model'"),
    (["lenet5", "--recipe", "nope"], "unknown recipe 'nope'"),
    (["lenet5", "--input-size", "3x32x32"], "--input-size is H x W"),
    (["lenet5", "--input-size", "big"], "--input-size must look like"),
    (["lenet5", "--epochs", "-1"], "--epochs must be >= 1"),
    (["lenet5", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["lenet5", "--workers", "-2"], "--workers must be >= 0"),
    (["lenet5", "--optimizer", "lbfgs"], "invalid choice"),
    (["lenet5", "--data", "mnist"], "unknown data 'mnist'"),
    (["lenet5", "--arg", "num_classes=3"], "class count comes from the data"),
    (["lenet5", "--arg", "bogus=1", *FAST], "unknown argument 'bogus'"),
    (["capsnet", "--label-smoothing", "0.1", *FAST], "margin loss"),
    ([], "a model is required"),
    (["missing_file.py:Net"], "no such file"),
])
def test_bad_arguments_are_one_line_exit_2(argv, says, tmp_path, capsys):
    assert main(["train", *argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cnnlab: error:") and says in err[-1], err
    assert not any(line.startswith("cnnlab: error:") for line in err[:-1])


def test_resume_without_checkpoint_and_out_that_is_a_file(tmp_path, capsys):
    assert main(["train", "lenet5", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "--resume: no checkpoint at" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert main(["train", "lenet5", "--out", str(tmp_path / "f")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_list_recipes(capsys):
    assert main(["train", "--list-recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("lenet5", "resnet_cifar", "mobilenet_v1", "shufflenet_v2", "densenet_cifar"):
        assert name in out


def test_a_run_on_fake_data_and_its_checkpoint_errors(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "lenet5", *FAST, "--lr", "0.01", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("test accuracy: 0.") and len(lines[-1]) == len("test accuracy: 0.0000")
    assert any(line.startswith("epoch 1: train loss") for line in lines)
    import json

    args = json.loads((out / "args.json").read_text())
    assert (args["recipe"], args["lr"], args["momentum"], args["data"]) == ("lenet5", 0.01, 0.9, "fake")
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1 and state["args"] == args and state["model_name"] == "lenet5"

    # the run is complete: --resume has nothing left to train and says so by its accuracy
    assert main(["train", "lenet5", "--resume", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == lines[-1]
    # other arguments than the run's
    assert main(["train", "lenet5", "--resume", "--lr", "0.5", "--out", str(out)]) == 2
    assert "--resume continues a run with its own arguments" in capsys.readouterr().err
    assert main(["train", "resnet20_cifar", "--resume", "--out", str(out)]) == 1
    assert "holds a lenet5 checkpoint, not resnet20_cifar" in capsys.readouterr().err

    checkpoint = out / "checkpoint.pt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 3])
    assert main(["train", "lenet5", "--resume", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated or corrupt checkpoint" in err[0]
    torch.save({"model": {}}, checkpoint)
    assert main(["train", "lenet5", "--resume", "--out", str(out)]) == 1
    assert "not a cnnlab checkpoint" in capsys.readouterr().err


def test_own_model_file(tmp_path, capsys):
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, num_classes=10, width=8):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                                  nn.Flatten(), nn.Linear(width, num_classes))\n"
        "    def forward(self, x):\n"
        "        return self.body(x)\n"
        "def broken():\n"
        "    return Broken()\n"
        "class Broken(nn.Module):\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('boom')\n"
    )
    spec = f"{tmp_path / 'net.py'}:Net"
    assert main(["train", spec, *FAST, "--arg", "width=4", "--input-size", "16", "--out", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("test accuracy:")
    state = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert state["model"]["body.0.weight"].shape == (4, 3, 3, 3) and state["input_size"] == [3, 16, 16]
    assert main(["train", f"{tmp_path / 'net.py'}:broken", *FAST, "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "RuntimeError at " in err[-1] and "net.py:13: boom" in err[-1]


def _cnnlab(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def test_sigint_saves_a_checkpoint_and_resume_matches_an_unstopped_run(tmp_path):
    common = ["lenet5", "--data", "fake", "--epochs", "3", "--batch-size", "4", "--threads", "1", "--lr", "0.01"]
    whole = _cnnlab(*common, "--out", str(tmp_path / "whole"))
    stopped = _cnnlab(*common, "--out", str(tmp_path / "stopped"))
    metrics = tmp_path / "stopped" / "metrics.csv"
    deadline = time.monotonic() + 120
    while not metrics.exists() and stopped.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    stopped.send_signal(signal.SIGINT)
    _, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 130, err
    assert "interrupted at epoch" in err and "--resume continues" in err
    state = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    assert (state["epoch"], state["step"]) != (3, 0)  # stopped before the end
    resumed = _cnnlab(*common, "--out", str(tmp_path / "stopped"), "--resume")
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    whole_out, whole_err = whole.communicate(timeout=180)
    assert whole.returncode == 0, whole_err
    assert out.strip().splitlines()[-1] == whole_out.strip().splitlines()[-1]
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "stopped" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2", "3"]


def test_cnnlab_help_lists_train():
    out = subprocess.run([sys.executable, "-m", "cnnlab", "--help"], capture_output=True, text=True, check=True).stdout
    assert "train" in out
