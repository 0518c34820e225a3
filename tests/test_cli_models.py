"""`cnnlab models`: the count cache, case-insensitive patterns with a hint, progress only on a
terminal, and rich tables that respect COLUMNS and NO_COLOR."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from cnnlab import catalog
from cnnlab.cli import main
from cnnlab.cli import models as models_command
from cnnlab.cli.common import print_table


# The cache's fingerprint of cnnlab's files, fixed: others editing the tree while the tests run
# must not make a cached entry stale between two runs of a test (test_code_fingerprint checks it).
_FINGERPRINT = "fixed-for-tests"


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(folder))
    monkeypatch.setattr(catalog, "_code_fingerprint", lambda: _FINGERPRINT)
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
    from importlib import metadata

    import cnnlab

    catalog.zoo_rows("alexnet")
    path = _cache_file(cache)
    torch_version = metadata.version("torch")  # the same string without importing torch
    assert f"cnnlab{cnnlab.__version__}-torch{torch_version}.json" in path.name
    data = json.loads(path.read_text())
    assert "alexnet" in data["models"] and data["torch"] == torch_version


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
@pytest.mark.parametrize("pattern", ["vgg1?", "densenet100_k12_cifar"])  # the second has no reference
def test_cached_and_computed_output_are_identical(cache, capsys, monkeypatch, fmt, pattern) -> None:
    assert main(["models", pattern, "--format", fmt]) == 0
    computed = capsys.readouterr()
    monkeypatch.setattr(catalog, "_count", _no_analysis)
    monkeypatch.setattr(catalog, "_registry_listing", lambda: pytest.fail("the listing was not cached"))
    assert main(["models", pattern, "--format", fmt]) == 0
    assert capsys.readouterr() == computed
    monkeypatch.undo()
    assert main(["models", pattern, "--format", fmt, "--no-cache"]) == 0
    assert capsys.readouterr() == computed


def test_the_whole_listing_is_cached_with_the_counts_of_the_models_shown(cache) -> None:
    from cnnlab.registry import list_models

    catalog.zoo_rows("vgg1?")
    data = json.loads(_cache_file(cache).read_text())
    assert [entry["name"] for entry in data["listing"]] == list_models()
    assert set(data["models"]) == {"vgg11", "vgg13", "vgg16", "vgg19"}
    catalog.zoo_rows("alexnet")  # one more model analysed, the others kept
    counted = json.loads(_cache_file(cache).read_text())["models"]
    assert set(counted) == {"alexnet", "vgg11", "vgg13", "vgg16", "vgg19"}


_WRAPPER = """
import json, sys
from cnnlab import catalog
from cnnlab.cli import main
catalog._code_fingerprint = lambda: sys.argv[2]
codes = [main(argv) for argv in json.loads(sys.argv[1])]
print(json.dumps({"codes": codes, "loaded": sorted(m for m in ("torch", "cnnlab.registry", "cnnlab.models",
                                                             "cnnlab.analysis") if m in sys.modules)}))
"""


def test_a_cached_run_imports_no_torch(cache, capsys) -> None:
    import subprocess
    import sys

    runs = [["models", "vgg1?"], ["models", "VGG1?", "--format", "csv"], ["models", "vgg"]]
    for argv in runs[:2]:
        assert main(argv) == 0  # warms the cache (this process has torch already)
    expected = capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(runs), _FINGERPRINT], capture_output=True, text=True,
                          env={**os.environ, "CNNLAB_CACHE_DIR": str(cache)}, timeout=60)
    *output, status = proc.stdout.rstrip("\n").split("\n")
    assert json.loads(status) == {"codes": [0, 0, 2], "loaded": []}, proc.stderr
    assert "\n".join(output) + "\n" == expected
    assert "no model matches 'vgg'; did you mean 'vgg*'?" in proc.stderr  # the hint from the cached names


def test_code_fingerprint(tmp_path, monkeypatch) -> None:
    """Sizes and mtimes of the library's files, sources and data; not the CLI's, not bytecode."""
    import cnnlab

    package = tmp_path / "cnnlab"
    files = {name: package / name for name in
             ("__init__.py", "models/vgg.py", "data/reference_models.csv", "cli/models.py",
              "models/__pycache__/vgg.cpython-311.pyc")}
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    monkeypatch.setattr(cnnlab, "__file__", str(files["__init__.py"]))
    before = catalog._code_fingerprint()
    for name in ("cli/models.py", "models/__pycache__/vgg.cpython-311.pyc"):
        files[name].write_text("changed")
        assert catalog._code_fingerprint() == before, name
    for name in ("models/vgg.py", "data/reference_models.csv"):
        files[name].write_text("changed")
        after = catalog._code_fingerprint()
        assert after != before, name
        before = after


def _edit_cache(folder: Path, **changes) -> None:
    path = _cache_file(folder)
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    "changes",
    [{"code": "0123456789abcdef"}, {"torch": "0.0.1"}, {"format": 1}, {"listing": [{"name": "vgg11"}]},
     {"listing": None}],
    ids=["code changed", "torch version", "old format", "bad listing", "no listing"],
)
def test_a_stale_cache_is_recomputed_and_rewritten(cache, capsys, changes) -> None:
    assert main(["models", "alexnet", "--format", "json"]) == 0
    first = capsys.readouterr().out
    good = json.loads(_cache_file(cache).read_text())
    _edit_cache(cache, **changes)
    assert main(["models", "alexnet", "--format", "json"]) == 0
    assert capsys.readouterr().out == first
    assert json.loads(_cache_file(cache).read_text()) == good


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
def test_a_pattern_that_matches_nothing_gets_a_hint(cache, capsys, pattern, hint) -> None:
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
