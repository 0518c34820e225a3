"""The command line's layout: one module per command, lazy imports (no torch for --help and
usage errors), --version, help for every argument and each option's default."""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys

import pytest

from cnnlab.cli import COMMANDS, build_parser, main


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize(
    "argv, code",
    [
        (["--help"], 0),
        (["profile", "--help"], 0),
        (["models", "--help"], 0),
        (["profile"], 2),  # missing model name
        (["profile", "resnet50", "--batch", "x"], 2),
        (["frobnicate"], 2),
        (["--version"], 0),
    ],
)
def test_help_and_usage_errors_import_no_torch(argv, code) -> None:
    proc = _run_python(
        "import sys\n"
        "from cnnlab.cli import main\n"
        f"code = main({argv!r})\n"
        "heavy = sorted(m for m in ('torch', 'rich', 'numpy') if m in sys.modules)\n"
        "print('CODE', code, 'HEAVY', heavy)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"CODE {code} HEAVY []" in proc.stdout


def test_import_cnnlab_is_lazy() -> None:
    proc = _run_python(
        "import sys, cnnlab\n"
        "assert 'torch' not in sys.modules, 'import cnnlab imported torch'\n"
        "assert set(cnnlab.__all__) <= set(dir(cnnlab)) and cnnlab.__version__\n"
        "from cnnlab import create_model, list_models\n"
        "assert 'vgg16' in list_models() and callable(cnnlab.analyze)\n"
        "assert cnnlab.Analysis.__name__ == 'Analysis' and cnnlab.ModelInfo and cnnlab.Paper\n"
        "assert callable(cnnlab.registry.accepted_kwargs) and cnnlab.analysis.analyze is cnnlab.analyze\n"
        "try:\n    cnnlab.nope\nexcept AttributeError as e:\n    print('OK', e)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK module 'cnnlab' has no attribute 'nope'" in proc.stdout


def test_one_module_per_command() -> None:
    for name in COMMANDS:
        module = importlib.import_module(f"cnnlab.cli.{name}")
        assert callable(module.add_parser) and callable(module.run), name
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)


def test_version(capsys) -> None:
    import torch

    import cnnlab

    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"cnnlab {cnnlab.__version__} (torch {torch.__version__.split('+')[0]}")


def test_top_level_arguments_have_help() -> None:
    for action in build_parser()._actions:
        assert action.help, action.dest


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_argument_has_help_and_defaults_are_shown(command, capsys) -> None:
    parser = _subparsers()[command]
    for action in parser._actions:
        assert action.help, f"{command}: {action.dest} has no help"
    assert main([command, "--help"]) == 0
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            assert f"(default: {action.default})" in text, f"{command} {action.option_strings}"
