"""What the analysis commands understand of --input/--inputs/--arg, and that every command and
format carries INCOMPLETE."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cnnlab.cli import main

USER = (
    "import torch\n"
    "from torch import nn\n"
    "import helper\n"  # a sibling module: the file's folder is on sys.path while importing
    "WIDTH = int(torch.tensor([2, 2]).sum())\n"  # computed from a tensor at import: not on meta
    "def conv(width=WIDTH):\n"
    "    return nn.Sequential(nn.Conv2d(3, width, 3))\n"
    "class Two(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.c = nn.Conv2d(3, 4, 3)\n"
    "        self.fc = nn.Linear(10, 4)\n"
    "    def forward(self, x, v):\n"
    "        return self.c(x).mean((2, 3)) + self.fc(v)\n"
    "def two_inputs(device, dtype):\n"
    "    return (torch.zeros(2, 3, 8, 8, device=device, dtype=dtype), torch.zeros(2, 10, device=device, dtype=dtype))\n"
    "def keyword_inputs(device, dtype):\n"
    "    return {'v': torch.zeros(1, 10, device=device, dtype=dtype), 'x': torch.zeros(1, 3, 8, 8, device=device, dtype=dtype)}\n"
    "class Bessel(nn.Module):\n"  # an op without a counting rule (special_bessel_j0): INCOMPLETE
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.c = nn.Conv2d(3, 4, 3)\n"
    "    def forward(self, x):\n"
    "        return self.c(torch.special.bessel_j0(x))\n"
    "identity = nn.Sequential(nn.ReLU())\n"
    "class Attention(nn.Module):\n"  # attention over all positions: the field is the whole input
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.c = nn.Conv2d(3, 16, 3, padding=1)\n"
    "        self.a = nn.MultiheadAttention(16, 2, batch_first=True)\n"
    "    def forward(self, x):\n"
    "        y = self.c(x)\n"
    "        t = y.flatten(2).transpose(1, 2)\n"
    "        t, _ = self.a(t, t, t)\n"
    "        return t.transpose(1, 2).reshape(y.shape)\n"
    "mlp = nn.Sequential(nn.Linear(32, 2))\n"
    "class Chatty(nn.Module):\n"  # prints while it runs: stdout must stay the table/JSON
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        print('building')\n"
    "        self.c = nn.Conv2d(3, 4, 3)\n"
    "    def forward(self, x):\n"
    "        print('running')\n"
    "        return self.c(x)\n"
)


@pytest.fixture()
def user(tmp_path: Path) -> Path:
    (tmp_path / "helper.py").write_text("SCALE = 1\n")
    (tmp_path / "user.py").write_text(USER)
    return tmp_path / "user.py"


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "argv, shape",
    [
        (["resnet50"], [1, 3, 224, 224]),
        (["resnet50", "--input", "160"], [1, 3, 160, 160]),
        (["resnet50", "--input", "224x112"], [1, 3, 224, 112]),  # two values are H x W
        (["resnet50", "--input", "3x128x96", "--batch", "2"], [2, 3, 128, 96]),
        (["resnet50", "--arg", "in_channels=1"], [1, 1, 224, 224]),  # channels of the built model
        (["resnet50", "--arg", "in_channels=1", "--input", "64"], [1, 1, 64, 64]),
        (["lenet5"], [1, 1, 32, 32]),
    ],
)
def test_registered_model_input(capsys, argv, shape) -> None:
    assert main(["profile", *argv, "--format", "json"]) == 0
    assert _json(capsys)["input_shape"] == shape


def test_two_values_that_look_like_channels_are_read_as_h_x_w_and_said(capsys) -> None:
    assert main(["profile", "resnet50", "--input", "3x224", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["input_shape"] == [1, 3, 3, 224]
    assert "--input 3x224 read as H x W, an input of 1x3x3x224" in captured.err


def test_user_model_sibling_import_and_tensor_at_import(user, capsys) -> None:
    assert main(["profile", f"{user}:conv", "--input", "3x8x8", "--format", "json"]) == 0
    assert _json(capsys)["total"]["macs"] == 4 * 6 * 6 * 27  # WIDTH = 4, computed at import


def test_user_model_several_inputs(user, capsys) -> None:
    assert main(["profile", f"{user}:Two", "--input", "3x8x8", "--input", "10", "--batch", "2", "--format", "json"]) == 0
    by_repeat = _json(capsys)
    assert main(["profile", f"{user}:Two", "--inputs", f"{user}:two_inputs", "--format", "json"]) == 0
    by_constructor = _json(capsys)
    expected = 2 * (4 * 6 * 6 * 27 + 10 * 4)
    assert by_repeat["total"]["macs"] == by_constructor["total"]["macs"] == expected
    assert main(["profile", f"{user}:Two", "--inputs", f"{user}:keyword_inputs", "--format", "json"]) == 0
    assert _json(capsys)["total"]["macs"] == expected // 2


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
@pytest.mark.parametrize("command", ["profile", "rf", "compare"])
def test_incomplete_is_never_hidden(user, capsys, command, fmt) -> None:
    assert main([command, f"{user}:Bessel", "--input", "3x8x8", "--format", fmt]) == 0
    captured = capsys.readouterr()
    assert "INCOMPLETE" in captured.err and "special_bessel_j0" in captured.err
    if fmt == "json":
        data = json.loads(captured.out)
        record = data["models"][0] if command == "compare" else data
        assert record["complete"] is False
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(captured.out)))
        assert rows and all(r["complete"].lower() == "false" for r in rows)
    elif command == "compare":
        assert captured.out.splitlines()[0].strip(" |").split()[-1] == "complete"


def test_complete_analyses_print_no_warning(capsys) -> None:
    for command in ("profile", "rf", "compare"):
        assert main([command, "vgg11", "--input", "32", "--format", "csv"]) == 0
        assert capsys.readouterr().err == ""


def test_compare_formats_and_zero_baseline(user, capsys) -> None:
    assert main(["compare", f"{user}:identity", "vgg11", "--input", "3x32x32"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "0 (-)" in out and "ratios are to " in out
    header = out.splitlines()[0]
    for name in ("params", "MACs", "FLOPs", "mem access", "RF", "jump", "complete"):
        assert name in header  # the names `cnnlab profile` uses
    assert main(["compare", "vgg11", "vgg13", "--input", "32", "--format", "json"]) == 0
    data = _json(capsys)
    profile_keys = None
    assert data["baseline"] == "vgg11" and [m["model"] for m in data["models"]] == ["vgg11", "vgg13"]
    assert data["models"][0]["ratio"]["macs"] == 1.0 and data["models"][1]["complete"] is True
    assert main(["profile", "vgg11", "--input", "32", "--format", "json"]) == 0
    profile_keys = set(_json(capsys)["total"])
    assert set(data["models"][0]["total"]) == profile_keys
    assert main(["compare", "vgg11", "vgg13", "--input", "32", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[1]["model"] == "vgg13" and rows[1]["complete"] == "true" and rows[0]["macs"].isdigit()
    assert main(["compare", "vgg11", "vgg13", "--input", "32", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| model | input | params | MACs")


def test_rf_formats(capsys) -> None:
    assert main(["rf", "vgg16", "--format", "json"]) == 0
    data = _json(capsys)
    assert data["receptive_field"] == 212 and data["jump"] == 32 and data["complete"] is True
    assert data["layers"][0]["name"] == "features.0" and data["layers"][0]["receptive_field"] == 3
    assert main(["rf", "vgg16", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[-1]["name"] == "(total)" and rows[-1]["receptive_field"] == "212"
    assert main(["rf", "vgg16", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| layer | type | output | RF | jump |")


def test_tables_use_readable_units_and_json_exact_integers(capsys) -> None:
    assert main(["profile", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert "15.47 G" in out
    assert main(["profile", "vgg16", "--format", "json"]) == 0
    assert _json(capsys)["total"]["macs"] == 15_470_264_320


def test_rf_says_whole_and_no_field(user, capsys) -> None:
    assert main(["rf", f"{user}:Attention", "--input", "3x8x8"]) == 0
    out = capsys.readouterr().out
    assert "8 (whole)" in out
    assert out.rstrip().endswith("receptive field of the deepest spatial feature map: the whole input (8) on a 1x3x8x8 input")
    assert main(["rf", f"{user}:Attention", "--input", "3x8x8", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["name"], r["receptive_field"], r["whole"]) for r in rows] == [
        ("c", "3", "false"), ("a", "8", "true"), ("(total)", "8", "true")]
    assert main(["rf", f"{user}:Attention", "--input", "3x8x8", "--format", "json"]) == 0
    data = _json(capsys)
    assert data["whole"] is True and data["receptive_field"] == 8 and data["jump"] is None
    assert main(["rf", f"{user}:mlp", "--input", "32"]) == 0
    assert "no receptive field: the input 1x32 has no spatial dimensions" in capsys.readouterr().out


def test_compare_marks_whole_fields_and_tiny_ratios(user, capsys) -> None:
    assert main(["compare", "vgg11", f"{user}:Attention", "--input", "3x32x32"]) == 0
    row = capsys.readouterr().out.splitlines()[3]
    assert row.startswith(f"{user}:Attention") and "32 (whole)" in row and "(<0.01x)" in row and "0.00x" not in row


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_what_the_user_code_prints_goes_to_stderr(user, capsys, fmt) -> None:
    assert main(["profile", f"{user}:Chatty", "--input", "3x8x8", "--format", fmt]) == 0
    captured = capsys.readouterr()
    assert "building" not in captured.out and "running" not in captured.out
    assert "building" in captured.err and "running" in captured.err
    if fmt == "json":
        assert json.loads(captured.out)["total"]["macs"] == 4 * 6 * 6 * 27
