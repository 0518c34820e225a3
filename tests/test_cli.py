"""The command line: the zoo table and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cnnlab
from cnnlab.cli import main


def test_models_table_lists_and_checks(capsys) -> None:
    assert main(["models", "vgg1?"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["name", "family", "year", "input"]
    rows = {line.split()[0]: line.split() for line in out[2:] if line and not line[0].isdigit()}
    assert set(rows) == {"vgg11", "vgg13", "vgg16", "vgg19"}
    assert rows["vgg16"][4] == "138,357,544" and rows["vgg16"][6] == "15,470,264,320"
    assert rows["vgg16"][-1] == "yes"
    assert "4 of 4 with reference counts match them" in out[-1]


def test_models_table_covers_the_whole_zoo(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in cnnlab.list_models():
        assert f"\n{name} " in out
    assert " NO" not in out, "a model's parameter or MAC count disagrees with its reference"


def test_info(capsys) -> None:
    assert main(["info", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert "Very Deep Convolutional Networks" in out and "15,470,264,320" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["info", "vgg17"], "unknown model 'vgg17'"),
        (["models", "zzz*"], "no model matches"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
        (["models", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(capsys, argv, needle) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cnnlab: error:") and needle in err


def test_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "info", "nonexistent"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("cnnlab: error: unknown model") and "Traceback" not in proc.stderr


def test_profile_formats(capsys) -> None:
    import json

    assert main(["profile", "vgg11", "--input", "64", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_shape"] == [1, 3, 64, 64] and data["model"] == "vgg11"
    assert main(["profile", "vgg11", "--depth", "1", "--batch", "2", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["features", "avgpool", "classifier"]
    assert main(["profile", "vgg11_bn", "--fold-bn", "--arg", "dropout=0.1"]) == 0
    assert "7,609,090,048" in capsys.readouterr().out  # MACs do not change when BN is folded


def test_profile_user_module(tmp_path, capsys) -> None:
    source = tmp_path / "net.py"
    source.write_text(
        "import torch.nn as nn\n"
        "def make(width=4):\n    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU())\n"
        "instance = make()\n"
    )
    assert main(["profile", f"{source}:make", "--input", "3x10x10", "--arg", "width=8", "--format", "json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["total"]["macs"] == 8 * 8 * 8 * 27
    assert main(["profile", f"{source}:instance"]) == 2
    assert "--input" in capsys.readouterr().err
    assert main(["profile", f"{source}:missing", "--input", "8"]) == 2
    assert "no attribute 'missing'" in capsys.readouterr().err


def test_compare_and_rf(capsys) -> None:
    assert main(["compare", "vgg11", "vgg16", "--input", "64"]) == 0
    out = capsys.readouterr().out
    assert "(1.00x)" in out and "ratios are to vgg11" in out
    assert main(["rf", "vgg16"]) == 0
    assert "receptive field of the deepest spatial feature map: 212 (jump 32)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["profile", "vgg11", "--input", "3xax4"], "--input must look like"),
        (["profile", "vgg11", "--input", "8"], "at least 32x32"),
        (["profile", "vgg11", "--arg", "nokey"], "--arg takes key=value"),
        (["profile", "vgg11", "--arg", "dropuot=0.1"], "unknown argument 'dropuot'"),
        (["profile", "vgg11", "--batch", "0"], "--batch must be >= 1"),
        (["profile", "nope.py:net"], "no such file"),
        (["profile", "vgg11", "--format", "xml"], "invalid choice"),
        (["compare"], "required"),
    ],
)
def test_analysis_commands_bad_input(capsys, argv, needle) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
