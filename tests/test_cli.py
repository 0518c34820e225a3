"""The command line: the zoo table, the analysis commands and their formats."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

import cnnlab
from cnnlab.cli import main


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch) -> None:
    """Every test gets its own empty count cache."""
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))


def test_models_table_lists_and_checks(capsys) -> None:
    assert main(["models", "vgg1?"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["name", "family", "year", "input"]
    rows = {line.split()[0]: line for line in out[2:] if line and not line[0].isdigit()}
    assert set(rows) == {"vgg11", "vgg13", "vgg16", "vgg19"}
    assert "138.36 M" in rows["vgg16"] and "15.47 G" in rows["vgg16"]  # readable units
    assert rows["vgg16"].split()[-1] == "yes"
    assert "4 of 4 with reference counts match them" in out[-1]


def test_models_csv_and_json_are_exact(capsys) -> None:
    assert main(["models", "vgg16", "--format", "csv"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["params"] == "138357544" and row["macs"] == "15470264320"
    assert row["complete"] == "true" and row["match"] == "true" and row["input_size"] == "3x224x224"
    assert main(["models", "vgg16", "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["macs"] == 15470264320 and record["complete"] is True and record["match"] is True


def test_models_table_covers_the_whole_zoo(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in cnnlab.list_models():
        assert f"\n{name} " in out
    assert " NO" not in out, "a model's parameter or MAC count disagrees with its reference"


def test_info(capsys) -> None:
    assert main(["info", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert "Very Deep Convolutional Networks" in out and "15,470,264,320 (15.47 G)" in out


def test_info_lists_the_arguments_arg_accepts(capsys) -> None:
    assert main(["info", "resnet50"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.strip().startswith("--arg"))
    for knob in ("num_classes=1000 (int)", "in_channels=3 (int)", "groups=1 (int)", "dropout=0.0 (float)"):
        assert knob in line
    assert "depth" not in line  # fixed by the variant
    assert main(["info", "lenet5"]) == 0
    assert "in_channels=1" in capsys.readouterr().out  # the variant's own default


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
    assert main(["profile", "vgg11", "--input", "64", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_shape"] == [1, 3, 64, 64] and data["model"] == "vgg11" and data["complete"] is True
    assert main(["profile", "vgg11", "--depth", "1", "--batch", "2", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["name"] for r in rows if r["name"]][:3] == ["features", "avgpool", "classifier"]
    assert all(r["complete"] == "true" for r in rows)
    assert main(["profile", "vgg11_bn", "--fold-bn", "--arg", "dropout=0.1"]) == 0
    assert "7.61 G" in capsys.readouterr().out  # MACs do not change when BN is folded
    assert main(["profile", "vgg11_bn", "--fold-bn", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["macs"] == 7_609_090_048


def test_profile_user_module(tmp_path, capsys) -> None:
    source = tmp_path / "net.py"
    source.write_text(
        "import torch.nn as nn\n"
        "def make(width=4):\n    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU())\n"
        "instance = make()\n"
    )
    assert main(["profile", f"{source}:make", "--input", "3x10x10", "--arg", "width=8", "--format", "json"]) == 0
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
