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
    assert rows["vgg16"][4] == "138,357,544" and rows["vgg16"][-1] == "yes"
    assert "4 of 4 with a reference count match it" in out[-1]


def test_models_table_covers_the_whole_zoo(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in cnnlab.list_models():
        assert f"\n{name} " in out
    assert " NO" not in out, "a model's parameter count disagrees with its reference"


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
