"""``cnnlab guidelines``: the four ShuffleNet V2 constructions have the paper's channels and equal
FLOPs, the paper's numbers are all there and equal the notes', the direction test goes the paper's
way on the paper's own numbers, and a tiny run gives the documented JSON, tables and charts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import cnnlab
from cnnlab.bench.guidelines import GUIDELINES, build, g3_width, holds, paper_numbers, run_guidelines, tables
from cnnlab.cli import main

NOTES = Path(__file__).resolve().parents[2] / "shared" / "course-notes" / "003_8386f7907c994ac0.txt"
KINDS = {"cpu": "arm", "cuda": "gpu"}


def cells(table):
    return [(row, col) for col in table.columns for row in table.rows]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("name", ["G1", "G2", "G3"])
def test_rows_of_a_column_have_equal_flops(device, name):
    """Equal FLOPs within 6 %: the paper rounds its widths to integers (G1's 1:2 row is 5.5 %
    under 1:1 in the paper's own numbers: 90·180 = 16,200 against 128² = 16,384; ARM's 22·44 = 968
    against 1,024)."""
    table = tables(device)[name]
    for col in table.columns:
        flops = [cnnlab.analyze(build(table, row, col), (1, table.in_channels(row, col), 56, 56)).flops
                 for row in table.rows]
        assert all(abs(f / flops[0] - 1) <= 0.06 for f in flops), (col, flops)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_g4_units_have_equal_macs_and_lose_the_elementwise_flops(device):
    table = tables(device)["G4"]
    for col in table.columns:
        c = int(col[2:])
        runs = {row: cnnlab.analyze(build(table, row, col), (1, c, 56, 56)) for row in table.rows}
        m = c // 4
        macs = 10 * 56 * 56 * (c * m + 9 * m * m + m * c)  # ten bottlenecks, by hand
        assert all(r.macs == macs for r in runs.values())
        relus = 10 * 56 * 56 * (2 * m + c)  # three ReLUs per unit, one FLOP per element
        adds = 10 * 56 * 56 * c
        full = runs["relu=yes shortcut=yes"].flops
        assert full - runs["relu=no shortcut=yes"].flops == relus
        assert full - runs["relu=yes shortcut=no"].flops == adds
        assert full - runs["relu=no shortcut=no"].flops == relus + adds


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_g2_g1_row_is_g3_one_fragment_as_the_papers_timings_say(device):
    """The paper times Table 2's g=1 row and Table 3's 1-fragment row alike in every column (ARM
    40.0/40.2, 10.2/10.1, 2.3/2.3; GPU 2451/2446, 1289/1274, 437/434): the same network, ten 1x1
    convs c -> c, with Table 2's xk column at Table 3's k-th width. Ours must be too."""
    numbers, t = paper_numbers(), tables(device)
    kind = KINDS[device]
    for x, c in zip(t["G2"].columns, t["G3"].columns):
        g2, g3 = numbers[("G2", kind, "g=1", x)], numbers[("G3", kind, "1-fragment", c)]
        assert abs(g2 / g3 - 1) < 0.015, (x, c)  # the paper's premise for this test
        a, b = build(t["G2"], "g=1", x), build(t["G3"], "1-fragment", c)
        width = t["G2"].in_channels("g=1", x)
        assert width == t["G3"].in_channels("1-fragment", c)
        assert cnnlab.analyze(a, (1, width, 56, 56)).flops == cnnlab.analyze(b, (1, width, 56, 56)).flops
        assert cnnlab.analyze(a, (1, width, 56, 56)).macs == 10 * 56 * 56 * width * width  # by hand


def test_g2_group_conv_macs_and_g3_widths_by_hand():
    table = tables("cpu")["G2"]
    # ten 1x1 group convs: h·w·c²/g MACs each
    assert cnnlab.analyze(build(table, "g=4", "x1"), (1, 128, 56, 56)).macs == 10 * 56 * 56 * 128 * 128 // 4
    assert cnnlab.analyze(build(table, "g=8", "x2"), (1, 368, 56, 56)).macs == 10 * 56 * 56 * 368 * 368 // 8
    # series fragments: k convs of w -> w with k·w² nearest c²
    assert g3_width(64, "2-fragment-series") == 45     # 2·45² = 4050, 2·46² = 4232; 64² = 4096
    assert g3_width(128, "2-fragment-series") == 91    # 2·91² = 16562, 2·90² = 16200; 128² = 16384
    assert g3_width(256, "4-fragment-series") == 128
    assert g3_width(64, "4-fragment-parallel") == 64   # parallel branches take the whole input


def test_tables_carry_the_papers_channels():
    paper_channels = {}
    import csv

    from cnnlab.bench.guidelines import PAPER_CSV

    with open(PAPER_CSV, newline="") as f:
        for r in csv.DictReader(f):
            if r["channels"]:
                paper_channels[(r["guideline"], r["device"], r["setting"], r["column"])] = r["channels"]
    for device, kind in KINDS.items():
        for name, table in tables(device).items():
            for row, col in cells(table):
                key = (name, kind, row, col)
                if key in paper_channels and key != ("G2", "arm", "g=8", "x1"):
                    # G3's c is the 1-fragment block's; the other blocks' widths follow from its FLOPs
                    ours = col[2:] if name == "G3" else table.channels(row, col)
                    assert ours == paper_channels[key], key
    # The one deviation: 180 channels cannot split into 8 groups.
    assert paper_channels[("G2", "arm", "g=8", "x1")] == "180"
    assert tables("cpu")["G2"].channels("g=8", "x1") == "184"


def test_paper_csv_is_complete():
    numbers = paper_numbers()
    for device, kind in KINDS.items():
        for name, table in tables(device).items():
            for row, col in cells(table):
                assert (name, kind, row, col) in numbers
    assert len(numbers) == 2 * (4 * 3 + 4 * 3 + 5 * 3 + 4 * 3)


def _notes_label(name: str, setting: str) -> str:
    if name == "G2":
        return setting[2:]
    if name == "G4":
        return "\t".join(part.split("=")[1] for part in setting.split())
    return setting


@pytest.mark.skipif(not NOTES.exists(), reason="the course notes are not beside this checkout")
def test_paper_csv_equals_the_notes_tables():
    lines = NOTES.read_text(encoding="utf-8").splitlines()
    numbers = paper_numbers()
    for name, table in tables("cpu").items():
        for row in table.rows:
            label = _notes_label(name, row)
            line = next(x for x in lines if x.startswith(label + "\t"))
            found = [float(v) for v in re.findall(r"\d+(?:\.\d+)?", line[len(label):])]
            expected = [numbers[(name, kind, row, col)] for kind, device in (("gpu", "cuda"), ("arm", "cpu"))
                        for col in tables(device)[name].columns]
            it = iter(found)  # the notes interleave channel numbers: ours must be a subsequence
            assert all(any(v == e for v in it) for e in expected), (name, row, line)


@pytest.mark.parametrize("kind", ["gpu", "arm"])
@pytest.mark.parametrize("name", GUIDELINES)
def test_direction_holds_on_the_papers_own_numbers(name, kind):
    numbers = paper_numbers()
    table = tables("cuda" if kind == "gpu" else "cpu")[name]
    for col in table.columns:
        assert holds(name, {row: numbers[(name, kind, row, col)] for row in table.rows})


@pytest.mark.parametrize("name, speeds", [
    ("G1", {"1:1": 10.0, "1:2": 10.0, "1:6": 9.0, "1:12": 8.0}),
    ("G2", {"g=1": 10.0, "g=2": 9.0, "g=4": 9.0, "g=8": 8.0}),
    ("G3", {"1-fragment": 5.0, "2-fragment-series": 4.0, "4-fragment-series": 4.5,
            "2-fragment-parallel": 1.0, "4-fragment-parallel": 5.0}),
    ("G4", {"relu=yes shortcut=yes": 10.0, "relu=yes shortcut=no": 9.0, "relu=no shortcut=yes": 12.0,
            "relu=no shortcut=no": 10.5}),
])
def test_direction_holds_on_made_up_timings(name, speeds):
    assert holds(name, speeds)  # ties hold; G4 compares only the full unit with the bare one


@pytest.mark.parametrize("name, speeds", [
    ("G1", {"1:1": 10.0, "1:2": 11.0, "1:6": 9.0, "1:12": 8.0}),
    ("G2", {"g=1": 10.0, "g=2": 9.0, "g=4": 7.0, "g=8": 8.0}),
    ("G2", {"g=1": 10.0, "g=2": 7.0, "g=4": 8.0, "g=8": 6.0}),  # first fastest, last slowest, not monotone
    ("G3", {"1-fragment": 5.0, "2-fragment-series": 6.0, "4-fragment-series": 1.0,
            "2-fragment-parallel": 1.0, "4-fragment-parallel": 1.0}),
    ("G4", {"relu=yes shortcut=yes": 10.0, "relu=yes shortcut=no": 12.0, "relu=no shortcut=yes": 12.0,
            "relu=no shortcut=no": 9.0}),
])
def test_direction_fails_on_counterexamples(name, speeds):
    assert not holds(name, speeds)


def test_tiny_run_and_chart(tmp_path):
    results = run_guidelines(["G1", "G4"], side=8, columns=1, warmup=0, repeat=1)
    assert list(results) == ["G1", "G4"]
    g1 = results["G1"].to_dict()
    assert g1["columns"] == ["x1"] and g1["unit"] == "images/s" and g1["batch"] == 1
    assert [r["setting"] for r in g1["rows"]] == ["1:1", "1:2", "1:6", "1:12"]
    row = g1["rows"][1]
    assert row["channels"] == {"x1": "22:44"} and row["paper"] == {"x1": 72.9}
    assert row["flops"]["x1"] == 2 * (10 * 2 * 8 * 8 * 22 * 44) and row["ours"]["x1"] > 0
    assert g1["paper_holds_by_column"] == {"x1": True} and isinstance(g1["holds"], bool)
    from cnnlab.bench.plots import guideline_chart

    paths = guideline_chart("G4", results["G4"], tmp_path)
    assert [p.name for p in paths] == ["guideline_G4.png", "guideline_G4.svg"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and b"<svg" in paths[1].read_bytes()[:500]


def test_unknown_guideline_in_the_api():
    with pytest.raises(ValueError, match="G5"):
        run_guidelines(["G5"])


@pytest.mark.parametrize("argv, says", [
    (["G5"], "unknown guideline"),
    (["G1,", "--repeat", "0"], "--repeat"),
    (["--min-time", "0"], "--min-time"),
    (["--threads", "0"], "--threads"),
    (["--device", "tpu"], "invalid choice"),
    (["--repeat", "3", "--min-time", "1"], "not allowed with"),
])
def test_bad_arguments_are_one_line_exit_2(argv, says, capsys):
    assert main(["guidelines", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], captured.err


def test_cuda_without_a_gpu_is_a_usage_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    assert main(["guidelines", "G1", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_cli_json_and_table(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert main(["guidelines", "g4", "--quick", "--repeat", "1", "--json", str(out), "--plot", str(tmp_path)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"machine", "G4"}
    assert set(data["G4"]) >= {"rows", "holds", "holds_by_column", "paper_holds_by_column", "columns", "unit"}
    assert data["G4"]["columns"] == ["c=32"]
    assert (tmp_path / "guideline_G4.svg").exists()
    printed = capsys.readouterr().out
    assert "G4: element-wise operations are not negligible" in printed and "66.3" in printed


def test_rounds_interleave_rows_and_made_up_timings_reach_the_verdict(monkeypatch):
    """Each column's rows are timed round-robin (every row, then every row again), the repeats
    split over the rounds, and a cell's speed is its median call: with made-up timings (the full
    unit 4 ms, then 3, 2 and 1 ms), G4 holds and the speeds are 1000/ms."""
    import cnnlab.bench.timer as timer

    calls = []

    def fake(fn, *, batch, warmup, repeat, min_time, device):
        calls.append(repeat)
        ms = 4.0 - (len(calls) - 1) % 4
        return timer.Timing((ms,) * repeat, batch)

    monkeypatch.setattr(timer, "time_callable", fake)
    g4 = run_guidelines(["G4"], side=8, columns=1, repeat=6)["G4"].to_dict()
    assert calls == [2] * 12  # 3 rounds x 4 rows, 6 calls split into 2 per round
    assert [r["ours"]["c=32"] for r in g4["rows"]] == [250.0, 1000 / 3, 500.0, 1000.0]
    assert g4["holds_by_column"] == {"c=32": True} and g4["holds"]


def test_repeat_and_min_time_are_exclusive_in_the_api():
    with pytest.raises(ValueError, match="not both"):
        run_guidelines(["G4"], repeat=3, min_time=1.0)
