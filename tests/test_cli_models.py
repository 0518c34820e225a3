"""`cnnlab models`: the count cache, case-insensitive patterns with a hint, progress only on a
terminal, and rich tables that respect COLUMNS and NO_COLOR."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cnnlab import catalog
from cnnlab.cli import main
from cnnlab.cli import models as models_command
from cnnlab.cli.common import print_table


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(folder))
    return folder


def _cache_file(folder: Path) -> Path:
    (path,) = folder.glob("zoo-counts-*.json")
    return path


def _no_analysis(name: str, input_size) -> dict:
    raise AssertionError(f"{name} was analysed again instead of read from the cache")


def test_second_run_reads_the_cache(cache, capsys, monkeypatch) -> None:
    assert main(["models", "vgg1?", "--format", "json"]) == 0
    first = capsys.readouterr().out
    path = _cache_file(cache)
    assert set(json.loads(path.read_text())["models"]) == {"vgg11", "vgg13", "vgg16", "vgg19"}
    monkeypatch.setattr(catalog, "_count", _no_analysis)
    assert main(["models", "vgg1?", "--format", "json"]) == 0
    assert capsys.readouterr().out == first
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left behind


def test_cache_key_has_model_cnnlab_and_torch_versions(cache) -> None:
    import torch

    import cnnlab

    catalog.zoo_rows("alexnet")
    path = _cache_file(cache)
    assert cnnlab.__version__ in path.name and torch.__version__ in path.name
    assert "alexnet" in json.loads(path.read_text())["models"]


@pytest.mark.parametrize("garbage", ["{not json", "[]", '{"format": 1, "models": {"vgg11": "x"}}', ""])
def test_a_corrupt_cache_is_ignored_and_rewritten(cache, capsys, garbage) -> None:
    catalog.zoo_rows("vgg11")
    path = _cache_file(cache)
    path.write_text(garbage)
    assert main(["models", "vgg11", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "138357544" not in captured.out  # vgg11 has 132,863,336 parameters
    assert "132863336" in captured.out and captured.err == ""
    assert json.loads(path.read_text())["models"]["vgg11"]["params"] == 132_863_336


def test_an_unwritable_cache_dir_is_not_an_error(tmp_path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(blocker / "cache"))  # a folder below a file
    assert main(["models", "alexnet"]) == 0
    assert capsys.readouterr().err == ""


def test_cache_dir_follows_xdg(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CNNLAB_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert catalog.cache_dir() == tmp_path / "cnnlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert catalog.cache_dir() == Path.home() / ".cache" / "cnnlab"


def test_no_cache_recomputes(cache, capsys, monkeypatch) -> None:
    catalog.zoo_rows("alexnet")
    calls = []
    real = catalog._count
    monkeypatch.setattr(catalog, "_count", lambda name, size: calls.append(name) or real(name, size))
    assert main(["models", "alexnet", "--no-cache"]) == 0
    assert calls == ["alexnet"]


def test_patterns_are_case_insensitive(cache, capsys) -> None:
    assert catalog.match_models("VGG1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert main(["models", "VGG16", "--format", "json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["vgg16"]


@pytest.mark.parametrize(
    "pattern, hint",
    [("resnet", "did you mean 'resnet*'?"), ("Mobilenet", "did you mean 'Mobilenet*'?"),
     ("net_v", "did you mean '*net_v*'?"), ("zzz*", "run `cnnlab models` for the list")],
)
def test_a_pattern_that_matches_nothing_gets_a_hint(capsys, pattern, hint) -> None:
    assert main(["models", pattern]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no model matches {pattern!r}; {hint}" in err


def test_progress_is_quiet_when_stderr_is_not_a_terminal(cache, capsys) -> None:
    assert main(["models", "alexnet"]) == 0
    assert capsys.readouterr().err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal(cache, monkeypatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    progress, close = models_command._progress_bar()
    assert progress is not None
    seen = []
    catalog.zoo_rows("alexnet", progress=lambda d, t, n: (seen.append((d, t, n)), progress(d, t, n)))
    close()
    assert seen == [(0, 1, "alexnet"), (1, 1, "")]
    assert "alexnet" in terminal.getvalue()


def test_rich_tables_respect_columns_and_no_color(monkeypatch) -> None:
    header, rows = ["name", "MACs"], [["vgg16", "15.47 G"], ["alexnet", "714.21 M"]]
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    wide = _Terminal()
    print_table(header, rows, numeric={1}, file=wide)
    text = wide.getvalue()
    assert "┃" in text or "│" in text  # rich's box drawing on a terminal
    assert "36m" not in text and ";36" not in text  # the cyan header is not coloured
    monkeypatch.delenv("NO_COLOR")
    coloured = _Terminal()
    print_table(header, rows, numeric={1}, file=coloured)
    assert "36m" in coloured.getvalue() or ";36" in coloured.getvalue()
    assert max(map(len, text.splitlines())) <= 100
    monkeypatch.setenv("COLUMNS", "12")  # too narrow: the plain table, numbers never cut
    narrow = _Terminal()
    print_table(header, rows, numeric={1}, file=narrow)
    assert "15.47 G" in narrow.getvalue() and "714.21 M" in narrow.getvalue() and "│" not in narrow.getvalue()
