"""Bad input and broken user models: every case is one stderr line, no traceback, and the exit
code says whose fault it is (2: the command line or cnnlab's validation, 1: the user's code)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.cli import main

# file name -> source. Line numbers matter: the messages name file:line.
FILES = {
    "fwd_runtime.py": (
        "from torch import nn\n"
        "class Bad(nn.Conv2d):\n"
        "    def forward(self, x):\n"
        "        raise RuntimeError('kaput')\n"  # line 4
        "class Block(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv1 = Bad(3, 3, 3)\n"
        "    def forward(self, x):\n"
        "        return self.conv1(x)\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.layer1 = nn.Conv2d(3, 3, 1)\n"
        "        self.layer2 = nn.Sequential(Block())\n"
        "    def forward(self, x):\n"
        "        return self.layer2(self.layer1(x))\n"
    ),
    "fwd_value.py": (
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.c = nn.Conv2d(3, 4, 3)\n"
        "    def forward(self, x):\n"
        "        raise ValueError('my own check failed')\n"  # line 7
    ),
    "on_import.py": "import torch\nVALUE = {}['missing']\n",
    "syntax.py": "def broken(:\n",
    "branch.py": (
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.c = nn.Conv2d(3, 4, 3)\n"
        "    def forward(self, x):\n"
        "        y = self.c(x)\n"
        "        if y.sum() > 0:\n"  # line 8
        "            return y\n"
        "        return -y\n"
    ),
    "item.py": (
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.c = nn.Conv2d(3, 4, 3)\n"
        "    def forward(self, x):\n"
        "        return self.c(x) * x.mean().item()\n"
    ),
    "factory.py": (
        "from torch import nn\n"
        "def make(width=4):\n"
        "    raise TypeError(f'width {width} is not supported')\n"  # line 3
        "def nested(width=4):\n"
        "    return nn.Sequential(nn.Conv2d(3, width, 3))\n"
        "def not_a_model():\n"
        "    return 3\n"
        "number = 3\n"
        "seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())\n"
    ),
    "inputs.py": (
        "def make_inputs(device, dtype):\n"
        "    raise KeyError('no such input')\n"  # line 2
        "def no_arguments():\n"
        "    return ()\n"
    ),
    # a script's top level that exits (sys.exit, or its own argparse giving up) on import
    "exits.py": "import sys\nfrom torch import nn\nnet = nn.Conv2d(3, 4, 3)\nsys.exit(0)\n",  # line 4
    "script.py": (
        "import argparse\n"
        "from torch import nn\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('--lr', type=float, required=True)\n"
        "args = parser.parse_args()\n"  # line 5: sees its own argv, not cnnlab's
        "net = nn.Conv2d(3, 4, 3)\n"
    ),
    "fwd_exit.py": (
        "import sys\n"
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def forward(self, x):\n"
        "        sys.exit(3)\n"  # line 5
    ),
    "typed.py": "from torch import nn\ndef make(width: int = 8):\n    return nn.Conv2d(3, width, 3)\n",
    "upsample.py": "from torch import nn\nnet = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Upsample(scale_factor=100000))\n",
    "not_python": "from torch import nn\nnet = nn.Conv2d(3, 4, 3)\n",
}


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    for name, source in FILES.items():
        (tmp_path / name).write_text(source)
    (tmp_path / "folder.py").mkdir()
    return tmp_path


# (argv with {d} for the folder of FILES, exit code, needles in the one line, texts that must not appear)
CASES = [
    # the user's code raised: exit 1, the exception, the running module, the file:line
    (["profile", "{d}/fwd_runtime.py:Net", "--input", "3x8x8"], 1,
     ["RuntimeError in module 'layer2.0.conv1' (Bad) at ", "fwd_runtime.py:4: kaput", "input shape 1x3x8x8"], []),
    (["profile", "{d}/fwd_value.py:Net", "--input", "3x8x8"], 1,
     ["ValueError in the model's forward (Net) at ", "fwd_value.py:7: my own check failed"], []),
    (["rf", "{d}/fwd_value.py:Net", "--input", "3x8x8"], 1, ["ValueError", "fwd_value.py:7"], []),
    (["compare", "vgg11", "{d}/fwd_runtime.py:Net", "--input", "3x32x32"], 1, ["RuntimeError", "'layer2.0.conv1'"], []),
    (["profile", "{d}/on_import.py:VALUE", "--input", "3"], 1,
     ["importing ", "on_import.py failed: KeyError at ", "on_import.py:2"], []),
    (["profile", "{d}/syntax.py:broken", "--input", "3"], 1, ["SyntaxError at ", "syntax.py:1"], []),
    (["profile", "{d}/factory.py:make", "--input", "3x8x8"], 1,
     ["TypeError at ", "factory.py:3: width 4 is not supported"], []),
    (["profile", "{d}/inputs.py:make_inputs", "--input", "3"], 2, ["make_inputs() cannot be called without arguments"], []),
    (["profile", "{d}/factory.py:seq", "--inputs", "{d}/inputs.py:make_inputs"], 1, ["KeyError at ", "inputs.py:2"], []),
    (["profile", "{d}/factory.py:seq", "--input", "32"], 1,
     ["RuntimeError in module '0' (Conv2d)", "input shape 1x32 (--batch 1, --input 32)"], []),
    # needs tensor values: suggest --real
    (["profile", "{d}/branch.py:Net", "--input", "3x8x8"], 1,
     ["cannot run on the meta device", "branch.py:8", "rerun with --real"], []),
    (["rf", "{d}/item.py:Net", "--input", "3x8x8", "--format", "json"], 1, ["meta device", "--real"], []),
    # the command line was wrong: exit 2
    (["profile", "{d}/factory.py:nested", "--input", "3x8x8", "--arg", "width=abc"], 2,
     ["--arg width expects a number, got 'abc'"], []),
    (["profile", "{d}/factory.py:nested", "--input", "3x8x8", "--arg", "depth=3"], 2,
     ["--arg depth: nested() does not accept 'depth'; it accepts width"], []),
    (["profile", "{d}/factory.py:seq", "--input", "3x8x8", "--arg", "width=3"], 2, ["module instance"], []),
    (["profile", "{d}/factory.py:number", "--input", "3"], 2, ["factory.py:number is an int, not an nn.Module"], []),
    (["profile", "{d}/factory.py:not_a_model", "--input", "3"], 2, ["returned int, not an nn.Module"], []),
    (["profile", "{d}/factory.py:seq", "--input", "3x8x8", "--inputs", "{d}/inputs.py:make_inputs"], 2, ["not both"], []),
    (["profile", "resnet50", "--inputs", "{d}/inputs.py:make_inputs"], 2, ["--inputs is for your own models"], []),
    (["profile", "resnet50", "--arg", "groups=[1,2]"], 2, ["--arg groups expects an integer, got [1, 2]"], []),
    (["profile", "resnet50", "--arg", "dropout=abc"], 2, ["--arg dropout expects a number, got 'abc'"], []),
    (["profile", "resnet50", "--arg", "num_classes=99999999999999999999999"], 2,
     ["--arg num_classes=99999999999999999999999: too large, torch takes 64-bit integers"], ["Overflow"]),
    (["profile", "resnet50", "--arg", "in_channels=0"], 2, ["in_channels must be a positive integer"], []),
    (["profile", "resnet50", "--input", "3x224x224x5"], 2, ["one image", "4 values"], ["unsqueeze"]),
    (["profile", "resnet50", "--input", "99999999999999999999"], 2, ["too large"], ["full shape"]),
    (["profile", "vgg11", "--input", "3x224"], 2, ["at least 32x32", "got 3x224", "--input 3x224 read as H x W"], []),
    (["profile", "resnet50", "--input", "1x224x224"], 2, ["--arg in_channels=1"], []),
    (["profile", "resnet50", "--input", "224", "--input", "10"], 2, ["takes one input"], []),
    (["profile", "resnet50", "--depth", "-1"], 2, ["--depth must be >= 0"], []),
    (["profile", "resnet50", "--arg", "dropout=0.1", "--arg", "dropout=0.2"], 2, ["given twice"], []),
    (["profile", "{d}/factory.py:Nope!", "--input", "3"], 2, ["after the colon"], []),
    (["rf", "vgg11", "--input", "0"], 2, ["must be positive"], []),
    (["models", "resnet"], 2, ["did you mean 'resnet*'?"], []),
    # the user's code exits: exit 1 with where and why, never cnnlab ending silently
    (["profile", "{d}/exits.py:net", "--input", "3x8x8"], 1,
     ["importing ", "exits.py failed: SystemExit at ", "exits.py:4: the code called sys.exit(0)",
      "if __name__ == '__main__':"], []),
    (["profile", "{d}/script.py:net", "--input", "3x8x8"], 1,
     ["script.py:5: the code called sys.exit(2)", "(it printed: script.py: error: the following arguments are "
      "required: --lr)"], ["usage:"]),
    (["profile", "{d}/fwd_exit.py:Net", "--input", "3x8x8"], 1,
     ["SystemExit in the model's forward (Net) at ", "fwd_exit.py:5: the code called sys.exit(3)"], []),
    (["profile", "{d}/factory.py:make", "--input", "3x8x8", "--arg", "width=5"], 1,
     ["factory.py:make --arg width=5: TypeError at ", "factory.py:3: width 5 is not supported"], []),
    # the user's factory declares its types: checked like a registered model's
    (["profile", "{d}/typed.py:make", "--input", "3x8x8", "--arg", "width=2.5"], 2,
     ["--arg width expects an integer, got 2.5"], []),
    (["profile", "{d}/factory.py:seq", "--inputs", "{d}/inputs.py:no_arguments"], 2,
     ["--inputs ", "inputs.py:no_arguments: the constructor is called as FUNC(device, dtype)"], []),
    (["profile", "{d}/factory.py:seq", "--inputs", "{d}/inputs.py:make_inputs", "--batch", "2"], 2,
     ["with --inputs your constructor makes the tensors, batch included"], []),
    # sizes torch cannot hold: the command line's numbers, never a crash or "the full shape"
    (["profile", "resnet50", "--input", "1000000000"], 2,
     ["an input of 1x3x1000000000x1000000000 is 1.2e+19 bytes, more than a tensor can hold"], []),
    (["profile", "resnet50", "--batch", "99999999999999999999"], 2,
     ["--batch 99999999999999999999 is too large (at most 2,147,483,647)"], ["full input shape"]),
    (["profile", "{d}/upsample.py:net", "--input", "3x100000x100000"], 2,
     ["RuntimeError in module '1' (Upsample)", "the input is too large for this model"], []),
    # names that are not names
    (["profile", "RESNET50"], 2, ["unknown model 'RESNET50'; did you mean 'resnet50'? (names are lower case)"], []),
    (["info", "ResNet50"], 2, ["did you mean 'resnet50'?"], []),
    (["info", "{d}/factory.py:seq"], 2, ["info describes registered models; for your own model run `cnnlab profile "], []),
    (["profile", "{d}/factory.py", "--input", "3"], 2, ["factory.py' is a file: name the model in it, e.g. "], []),
    (["profile", "{d}/nothing.py"], 2, ["nothing.py', nor a registered model"], []),
    (["profile", "{d}/not_python:net", "--input", "3"], 2, ["not_python' is not a .py file"], []),
    (["profile", "{d}/folder.py:Net", "--input", "3"], 2, ["folder.py' is a directory"], []),
    (["profile", "resnet50", "--bogus"], 2, ["unrecognized arguments: --bogus (see `cnnlab profile --help`)"], []),
    (["models", "--format", "xml"], 2, ["invalid choice"], []),
]


@pytest.mark.parametrize("argv, code, needles, absent", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_errors_are_one_line(files, capsys, argv, code, needles, absent) -> None:
    argv = [a.replace("{d}", str(files)) for a in argv]
    assert main(argv) == code
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1, err
    assert err.startswith("cnnlab: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    for text in absent:
        assert text not in err, err


def test_traceback_option_shows_the_whole_trace(files) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "profile", f"{files}/fwd_runtime.py:Net", "--input", "3x8x8", "--traceback"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback") and 'fwd_runtime.py", line 4, in forward' in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cnnlab: error: ") and "--traceback" not in last  # the trace is above it


def test_without_traceback_the_subprocess_prints_one_line(files) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "profile", f"{files}/branch.py:Net", "--input", "3x8x8"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "--real" in proc.stderr


def test_real_runs_a_model_that_branches_on_data(files, capsys) -> None:
    import json

    assert main(["profile", f"{files}/branch.py:Net", "--input", "3x8x8", "--real", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["macs"] == 4 * 6 * 6 * 27
