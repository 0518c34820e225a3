"""The notes' latency-vs-resolution table beside ``cnnlab bench --resolutions``, and the busy-machine
warning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import cnnlab
from cnnlab.bench import Result, load_warning
from cnnlab.bench import run as run_module
from cnnlab.bench.resolutions import compare, paper_latencies
from cnnlab.cli import main

NOTES = Path(__file__).resolve().parents[2] / "shared" / "course-notes" / "003_8386f7907c994ac0.txt"
SIZES = [(224, 224), (480, 640), (720, 1280)]


def test_paper_table_is_complete_and_names_buildable_models():
    table = paper_latencies()
    assert list(table) == ["shufflenet_v1(width_mult=0.5,groups=3)", "shufflenet_v1_g3", "shufflenet_v1_g3_x2_0",
                           "alexnet", "mobilenet_v1"]
    for entry in table.values():
        assert list(entry["ms"]) == SIZES and entry["source"] == "Zhang et al. 2018, Table 8"
        kwargs = dict(kv.split("=") for kv in entry["zoo_args"].split(",")) if entry["zoo_args"] else {}
        kwargs = {k: float(v) if "." in v else int(v) for k, v in kwargs.items()}
        with __import__("torch").device("meta"):
            model = cnnlab.create_model(entry["zoo_model"], **kwargs)
        macs = cnnlab.analyze(model, (1, 3, 224, 224)).macs / 1e6
        # the paper's "FLOPs" are multiply-adds, rounded (its AlexNet 720 M is ours 714 M)
        assert abs(macs / entry["mflops"] - 1) < 0.02, (entry["paper_model"], macs)


@pytest.mark.skipif(not NOTES.exists(), reason="the course notes are not beside this checkout")
def test_paper_table_equals_the_notes():
    text = NOTES.read_text(encoding="utf-8")
    for entry in paper_latencies().values():
        ms = " ".join(f"{v}ms" for v in entry["ms"].values())
        line = next(x for x in text.splitlines() if x.replace("\t", " ").endswith(ms.replace(".0ms", ".0ms")))
        assert f"{entry['mflops']:g}M" in line, line
    assert re.search(r"224 × 224\t480 × 640\t720 × 1280", text)


def _result(model, hw, ms, runtime="eager", ok=True):
    return Result(model, runtime, "fp32", 1, [1, 3, *hw], median_ms=ms if ok else None, ok=ok)


def test_compare_gives_ratios_here_and_in_the_paper():
    results = [_result("alexnet", (224, 224), 10.0), _result("alexnet", (480, 640), 35.0),
               _result("alexnet", (720, 1280), 80.0), _result("resnet50", (224, 224), 5.0),
               _result("alexnet", (300, 300), 20.0)]
    (row,) = compare(results)
    assert row["model"] == "alexnet" and row["paper_model"] == "AlexNet"
    sizes = row["resolutions"]
    assert [(r["height"], r["width"]) for r in sizes] == SIZES  # 300x300 is not in the paper
    assert [r["ours_ratio"] for r in sizes] == [1.0, 3.5, 8.0]
    assert sizes[2]["paper_ms"] == 3633.9 and sizes[2]["paper_ratio"] == pytest.approx(3633.9 / 184.0)


def test_compare_keeps_a_failed_runtime_without_ratio():
    rows = compare([_result("mobilenet_v1", (224, 224), None, ok=False), _result("mobilenet_v1", (480, 640), 9.0)])
    (row,) = rows
    assert row["resolutions"][0]["ours_ms"] is None and row["resolutions"][1]["ours_ratio"] is None


def test_load_warning(monkeypatch):
    monkeypatch.setattr(run_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(run_module.os, "getloadavg", lambda: (0.9, 0.5, 0.5))
    assert load_warning() is None
    monkeypatch.setattr(run_module.os, "getloadavg", lambda: (1.5, 0.5, 0.5))
    assert "busy (load 1.50 on 2 CPUs)" in load_warning()


def test_cli_resolutions_show_the_paper(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", "shufflenet_v1_g3", "--resolutions", "224,480x640", "--repeat", "1", "--warmup", "0",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    (row,) = data["resolutions_vs_paper"]
    assert row["model"] == "shufflenet_v1_g3" and [r["paper_ms"] for r in row["resolutions"]] == [37.8, 222.2]
    assert row["resolutions"][1]["ours_ratio"] > 1
    printed = capsys.readouterr().out
    assert "latency vs resolution" in printed and "222.2" in printed
