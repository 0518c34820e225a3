"""``cnnlab report``: the cache, the cell formatting, a small real report (files, schema, numbers
on the page equal to data.json, figures present and embedded), a second run from the cache, an
interrupted run that leaves the previous page intact, and the command line's errors."""

from __future__ import annotations

import html.parser
import json
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.report import SCHEMA, build_report
from cnnlab.report.cache import ReportCache
from cnnlab.report.render import cell

FAKE_CEILINGS = {"gflops": {"fp32": 100.0}, "gbytes_per_s": 10.0, "theoretical_gflops": {"fp32": None},
                 "sources": {"fp32": "made up", "bandwidth": "made up", "theoretical": ""}, "candidates": {},
                 "threads": 1, "quick": True, "measured_at": {}}


@pytest.fixture()
def small(monkeypatch, tmp_path):
    """Made-up ceilings and tiny guideline networks, so a report of two small models takes
    seconds; the cache in a temporary folder."""
    import cnnlab.bench.ceilings as ceilings
    import cnnlab.report.sections.guidelines as guidelines
    import cnnlab.report.sections.training as training

    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ceilings, "machine_ceilings", lambda **kw: FAKE_CEILINGS)

    def tiny(device, quick):
        from cnnlab.bench.guidelines import run_guidelines

        return {n: r.to_dict() for n, r in run_guidelines(columns=1, side=8, repeat=3, warmup=0).items()}

    monkeypatch.setattr(guidelines, "_run", tiny)
    monkeypatch.setattr(training, "EPOCHS", 2)
    return tmp_path


def _report(folder: Path, train: bool = False, **kw):
    return build_report(folder, models=["lenet5", "squeezenet1_1", "mobilenet_v1"], quick=True, train=train, **kw)


def test_cell_formats() -> None:
    assert cell(15_346_630_656, "count") == ("15.35 G", 15_346_630_656)
    assert cell(61_706, "count")[0] == "61.71 k"
    assert cell(None, "ms") == ("", None)
    assert cell(True, "match") == ("✓", 1)
    assert cell(False, "match", "params 1 vs 2") == ("✗ params 1 vs 2", 0)
    assert cell(12.345, "percent")[0] == "12.3 %"
    assert cell({"text": "Going Deeper", "url": "https://x"}, "link") == ("Going Deeper", "Going Deeper")


def test_cache_hits_misses_refresh_and_corruption(tmp_path) -> None:
    calls = []

    def compute():
        calls.append(1)
        return {"v": (1, 2)}

    cache = ReportCache(tmp_path)
    assert cache.get("latency", {"model": "m"}, compute) == {"v": [1, 2]}  # the same as a later hit
    assert cache.get("latency", {"model": "m"}, compute) == {"v": [1, 2]}
    assert (cache.hits, cache.misses, len(calls)) == (1, 1, 1)
    assert cache.get("latency", {"model": "other"}, compute) and len(calls) == 2  # another key
    ReportCache(tmp_path, refresh=("latency",)).get("latency", {"model": "m"}, compute)
    assert len(calls) == 3  # measured again
    for path in tmp_path.iterdir():
        path.write_text("{not json")
    again = ReportCache(tmp_path)
    assert again.get("latency", {"model": "m"}, compute) == {"v": [1, 2]} and again.misses == 1
    off = ReportCache(tmp_path / "off", enabled=False)
    off.get("latency", {"model": "m"}, compute)
    assert not (tmp_path / "off").exists()


def test_training_code_invalidates_only_entries_that_depend_on_it(tmp_path, monkeypatch) -> None:
    """Editing cnnlab.train (or compress, quantize) keeps the zoo's counts and timings cached and
    trains again; editing the models invalidates both."""
    import cnnlab.catalog

    edits = {"train": 0, "models": 0}

    def fingerprint(skip=("cli",)):
        return f"{edits['models']}-{0 if 'train' in skip else edits['train']}"

    monkeypatch.setattr(cnnlab.catalog, "_code_fingerprint", fingerprint)
    calls = []

    def compute():
        calls.append(1)
        return 1

    def both():
        cache = ReportCache(tmp_path)
        cache.get("latency", {"model": "m"}, compute)
        cache.get("training", {"model": "lenet5"}, compute, all_code=True)

    both()
    assert len(calls) == 2
    edits["train"] += 1
    both()
    assert len(calls) == 3  # only the training ran again
    edits["models"] += 1
    both()
    assert len(calls) == 5


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables, self.images, self.titles = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append(attrs.get("id"))
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "td" and attrs.get("title"):
            self.titles.append(attrs["title"])


def test_report_files_schema_and_page(small) -> None:
    out = small / "report"
    result = _report(out, train=True)
    data = json.loads((out / "data.json").read_text())
    assert data["schema"] == SCHEMA and data["quick"] is True
    assert {"cnnlab", "torch", "onnxruntime", "openvino"} <= set(data["versions"])
    ids = [s["id"] for s in data["sections"]]
    assert ids == ["zoo", "roofline", "guidelines", "mobilenet-grid", "layers", "training"]
    grid = {(r["width_mult"], r["resolution"]): r for r in data["sections"][3]["tables"][0]["rows"]}
    assert len(grid) == 16 and round(grid[(1.0, 224)]["macs_m"]) == 569 and grid[(1.0, 224)]["top1"] > 70
    run = data["sections"][-1]["data"]
    assert sum(map(sum, run["confusion"])) == 450 and len(run["metrics"]) == 2  # the digits' test split
    assert run["test_acc"] == pytest.approx(sum(run["confusion"][i][i] for i in range(10)) / 450, abs=1e-6)
    zoo = data["sections"][0]
    rows = {r["model"]: r for r in zoo["tables"][0]["rows"]}
    assert set(rows) == {"lenet5", "squeezenet1_1", "mobilenet_v1"}
    assert rows["lenet5"]["params"] == 61_706 and rows["lenet5"]["macs"] == 416_520  # the reference counts
    assert rows["lenet5"]["match"] is True and rows["squeezenet1_1"]["match"] is True
    assert rows["lenet5"]["eager_ms"] > 0 and rows["lenet5"]["fastest_runtime"] in ("onnxruntime", "openvino")
    figures = [f for s in data["sections"] for f in s["figures"]]
    names = {f["name"] for f in figures}
    assert {"params_vs_macs", "macs_vs_latency", "roofline", "guideline_G1", "guideline_G4", "per_layer",
            "receptive_field", "training_curve", "confusion_matrix", "mobilenet_grid"} <= names
    for f in figures:
        assert (out / f["png"]).stat().st_size > 1000 and (out / f["svg"]).read_text().lstrip().startswith("<?xml")
    page = (out / "index.html").read_text()
    assert "{{" not in page and "{%" not in page
    parser = _Page()
    parser.feed(page)
    assert "zoo" in parser.tables and "roofline" in parser.tables
    assert len(parser.images) == len(figures) and all(s.startswith("data:image/png;base64,") for s in parser.images)
    # every exact count on the page is data.json's
    assert f"{rows['squeezenet1_1']['macs']:,}" in parser.titles
    assert f"{rows['lenet5']['params']:,}" in parser.titles
    for line in data["summary"]:
        assert line in page
    md = (out / "README.md").read_text()
    assert "| lenet5 |" in md and "![" in md
    assert result.cache_misses > 0


def test_second_run_from_cache_and_interrupted_run_keeps_page(small, monkeypatch) -> None:
    out = small / "report"
    _report(out)
    before = (out / "index.html").read_bytes()
    second = _report(out)
    assert second.cache_misses == 0 and second.cache_hits >= 4
    import cnnlab.report.sections.layers as layers

    def boom(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(layers, "collect", boom)
    with pytest.raises(KeyboardInterrupt):
        _report(out)
    assert (out / "index.html").read_bytes() != b"" and (out / "index.html").read_bytes()[:100] == before[:100]
    assert json.loads((out / "data.json").read_text())["sections"]
    assert not [p for p in out.rglob("*.tmp")]


def test_remeasure_times_again(small) -> None:
    out = small / "report"
    _report(out)
    again = _report(out, remeasure=True)
    assert again.cache_misses >= 2  # the latencies (and guidelines) measured again; counts cached


@pytest.mark.parametrize("argv, message", [
    (["report", "--models", "zzz*"], "matches no registered model"),
    (["report", "--device", "tpu"], "invalid choice"),
])
def test_cli_errors(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_cli_out_is_a_file(tmp_path, capsys) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    assert main(["report", "--models", "lenet5", "--out", str(path)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert path.read_text() == "x"


def test_files_are_world_readable(small) -> None:
    out = small / "report"
    _report(out)
    import os

    mask = os.umask(0)
    os.umask(mask)
    for name in ("index.html", "data.json", "figures/roofline.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~mask  # as open() makes them, not mkstemp's 0600


def _browser() -> str:
    """The system Chromium Playwright drives, or a skip saying how to get it."""
    import shutil

    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: `make test` installs it")
    for name in ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name) or (name if Path(name).is_file() else None)
        if path:
            return path
    pytest.skip("no Chromium here: `make test` installs Debian's chromium (apt-get install chromium)")


def test_page_in_headless_chromium(small) -> None:
    """The page in a real browser: every table and figure displayed, sorting by a header works,
    no console errors, and a screenshot that is not blank."""
    from playwright.sync_api import sync_playwright

    executable = _browser()
    out = small / "report"
    _report(out)
    data = json.loads((out / "data.json").read_text())
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "index.html").resolve().as_uri())
        page.wait_for_load_state("load")
        tables = [t["id"] for s in data["sections"] for t in s["tables"]]
        for table_id in tables:
            assert page.locator(f"table#{table_id}").is_visible(), table_id
        figures = [f for s in data["sections"] for f in s["figures"]]
        widths = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == len(figures) and min(widths) > 100
        # sort the zoo table by MACs, both ways
        header = page.locator("table#zoo th", has_text="MACs")
        column = [c["key"] for c in data["sections"][0]["tables"][0]["columns"]].index("macs")
        read = f"rows => rows.map(r => Number(r.cells[{column}].dataset.sort))"
        header.click()
        ascending = page.eval_on_selector_all("table#zoo tbody tr", read)
        header.click()
        descending = page.eval_on_selector_all("table#zoo tbody tr", read)
        assert ascending == sorted(ascending) and descending == sorted(ascending, reverse=True)
        assert ascending != descending
        shot = page.screenshot(full_page=True)
        browser.close()
    assert not errors, errors
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.height > 900 and len(image.getcolors(maxcolors=1 << 20) or []) > 50  # a rendered page, not blank


def test_compression_section_reproduces_the_papers_sizes(tmp_path, monkeypatch) -> None:
    """The notes' Table 2 within 15 % of the papers, SqueezeNet's Table 1 densities applied, and
    LeNet-5's four forms measured (training shortened: the table's plumbing, not its accuracy)."""
    import cnnlab.report.sections.compression_lenet5 as lenet5

    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(lenet5, "EPOCHS", 1)
    monkeypatch.setattr(lenet5, "PRUNE_EPOCHS", 1)
    monkeypatch.setattr(lenet5, "CENTROID_EPOCHS", 1)
    result = build_report(tmp_path / "out", quick=True, models=["squeezenet1_0"], sections=("compression",),
                          train=True)
    (section,) = result.data["sections"]
    comparison, layers, forms = section["tables"]
    variants = section["data"]["lenet5"]["variants"]
    assert [v["key"] for v in variants] == ["float", "pruned", "int8", "deep"]
    assert [r["ratio"] for r in forms["rows"]] == pytest.approx([variants[0]["bytes"] / v["bytes"] for v in variants])
    assert forms["rows"][0]["ratio"] == 1 and forms["rows"][-1]["ratio"] > 20  # 92 % pruned, 4-bit codes
    assert [f["name"] for f in section["figures"]] == ["compression_lenet5"]
    assert (tmp_path / "out" / "figures" / "compression_lenet5.png").stat().st_size > 1000
    assert [r["paper_mib"] for r in comparison["rows"]] == [240, 6.9, 4.8, 0.66, 0.47]
    for row in comparison["rows"]:
        assert abs(row["off_percent"]) <= 15, row
    assert comparison["rows"][1]["vs_alexnet"] > 25 and comparison["rows"][3]["vs_alexnet"] > 300
    for row in layers["rows"]:
        expected = 30.0 if row["layer"] == "fire8/e3x3" else row["paper_density"]  # Table 1's misprint
        assert abs(row["density"] - expected) < 0.05, row
    assert "Compression" in (tmp_path / "out" / "README.md").read_text()


def test_roofline_flags_models_above_the_measured_ceiling(small, monkeypatch) -> None:
    """A bound cannot be beaten: a model faster than the ceilings allow says they were measured
    too low."""
    import cnnlab.bench.ceilings as ceilings

    low = {**FAKE_CEILINGS, "gflops": {"fp32": 1e-3}, "gbytes_per_s": 1e-3}
    monkeypatch.setattr(ceilings, "machine_ceilings", lambda **kw: low)
    result = build_report(small / "out", models=["lenet5"], quick=True, sections=("zoo", "roofline"), train=False)
    roofline = result.data["sections"][1]
    assert roofline["tables"][0]["rows"][0]["percent_of_roofline"] > 100
    assert any("faster than the measured ceilings allow" in n for n in roofline["notes"])
    assert "above the measured ceiling" in roofline["summary"]
