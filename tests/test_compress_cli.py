"""``cnnlab compress`` and ``cnnlab decompress``: the JSON and the Table 4 layout, the file on disk,
a checkpoint through compress -> decompress -> ``from_checkpoint``, fine-tuning from the command
line, and every bad input as one line with the right exit code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.compress import load_compressed


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_json_reports_the_file_it_wrote(tmp_path, capsys) -> None:
    out = tmp_path / "lenet5.dc"
    got = _json(capsys, ["compress", "lenet5", "--prune", "0.5", "--bits", "4", "--out", str(out), "--json"])
    assert {"model", "original_bytes", "compressed_bytes", "ratio", "sparsity", "bits", "layers"} <= got.keys()
    assert got["model"] == "lenet5" and got["huffman"] is True and got["file"] == str(out)
    assert got["compressed_bytes"] == out.stat().st_size == got["compressed_bytes_pqh"] < got["compressed_bytes_pq"]
    assert got["ratio"] == pytest.approx(got["original_bytes"] / got["compressed_bytes"])
    assert got["bits"] == {"conv": 4, "fc": 4, "conv_index": 4, "fc_index": 4}
    assert got["sparsity"] == pytest.approx(0.5, abs=1e-3)
    layer = got["layers"][0]
    assert {"name", "weights", "density", "weight_bits", "index_bits", "bytes_pq", "bytes_pqh"} <= layer.keys()
    assert sum(x["weights"] * 4 for x in got["layers"]) < got["original_bytes"]  # biases are stored too
    model = load_compressed(out)
    for x in got["layers"]:
        weight = dict(model.named_parameters())[f"{x['name']}.weight"]
        assert int(torch.count_nonzero(weight)) == x["nonzero"]
        assert torch.unique(weight).numel() <= 16


def test_no_huffman_writes_the_fixed_width_file(tmp_path, capsys) -> None:
    out = tmp_path / "p.dc"
    got = _json(capsys, ["compress", "lenet5", "--no-huffman", "--out", str(out), "--json"])
    assert got["huffman"] is False and got["compressed_bytes"] == got["compressed_bytes_pq"] == out.stat().st_size
    assert got["sparsity"] == 0 and got["bits"]["conv"] == 8 and got["bits"]["fc"] == 5


def test_text_is_table_4_with_the_papers_numbers_beside_ours(tmp_path, capsys) -> None:
    assert main(["compress", "squeezenet1_0", "--layer-sparsity", "paper", "--bits", "6",
                 "--out", str(tmp_path / "s.dc")]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("Layer"))
    for column in ("#Weights", "Weights% (P)", "Weight bits (P+Q+H)", "Index bits (P+Q)", "Compress rate (P+Q+H)"):
        assert column in header
    assert "fire8/e3x3 (features.10.expand3x3)" in out and "30.0% (paper 33%)" in out
    assert any(line.startswith("total") for line in out.splitlines())
    assert "0.47 MB (6 bit)" in out


def test_a_checkpoint_goes_through_compress_and_decompress(tmp_path, capsys) -> None:
    from cnnlab.train import train
    from cnnlab.train.inference import from_checkpoint

    run = train("lenet5", data="digits", epochs=1, out=str(tmp_path / "run"), seed=0, threads=1)
    dc = tmp_path / "lenet5.dc"
    got = _json(capsys, ["compress", "lenet5", "--checkpoint", str(run.checkpoint), "--prune", "0.6",
                         "--out", str(dc), "--json"])
    assert got["source"].startswith("checkpoint ")
    pt = tmp_path / "lenet5.pt"
    info = _json(capsys, ["decompress", str(dc), "--out", str(pt), "--json"])
    assert info["model"] == "lenet5" and info["out"] == str(pt) and info["shared"] == len(got["layers"])
    trained = from_checkpoint(pt, "lenet5")
    assert trained.classes == [str(d) for d in range(10)] and trained.input_size == (1, 32, 32)
    compressed = load_compressed(dc)
    for key, tensor in compressed.state_dict().items():
        assert torch.equal(tensor, trained.model.state_dict()[key]), key
    assert main(["eval", "lenet5", "--checkpoint", str(pt), "--confusion", str(tmp_path / "c.png")]) == 0
    capsys.readouterr()
    # another model's checkpoint: an unusable file, exit 1
    assert main(["compress", "squeezenet1_0", "--checkpoint", str(run.checkpoint), "--out", str(dc)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a lenet5 checkpoint, not squeezenet1_0" in err[0]


def test_finetuning_from_the_command_line_keeps_the_weights_shared(tmp_path, capsys) -> None:
    out = tmp_path / "f.dc"
    got = _json(capsys, ["compress", "lenet5", "--prune", "0.5", "--bits", "3", "--finetune-epochs", "2",
                         "--data", "fake", "--finetune-lr", "0.05", "--batch-size", "64", "--out", str(out), "--json"])
    assert got["finetune"]["epochs"] == 2 and got["finetune"]["data"] == "fake"
    assert all(np.isfinite(got["finetune"]["losses"]))
    for name, p in load_compressed(out).named_parameters():
        if name.endswith("weight"):
            assert torch.unique(p).numel() <= 8, name


@pytest.mark.parametrize("argv, message", [
    (["compress", "alexnet9"], "unknown model 'alexnet9'"),
    (["compress", "lenet5", "--bits", "9"], "argument --bits: must be an integer from 1 to 8, got '9'"),
    (["compress", "lenet5", "--bits", "0"], "must be an integer from 1 to 8"),
    (["compress", "lenet5", "--conv-bits", "five"], "argument --conv-bits: must be an integer from 1 to 8"),
    (["compress", "lenet5", "--prune", "1.0"], "must be in [0, 1), got '1.0'"),
    (["compress", "lenet5", "--prune", "-0.1"], "must be in [0, 1)"),
    (["compress", "lenet5", "--prune", "half"], "must be in [0, 1)"),
    (["compress", "lenet5", "--prune", "0.5", "--layer-sparsity", "paper"], "not allowed with argument"),
    (["compress", "lenet5", "--layer-sparsity", "paper"], "alexnet_2012 and squeezenet1_0, not lenet5"),
    (["compress", "lenet5", "--layer-sparsity", "missing.json"], "no such file"),
    (["compress", "lenet5", "--bits", "4", "--fc-bits", "3"], "not both"),
    (["compress", "lenet5", "--data", "fake"], "give --finetune-epochs"),
    (["compress", "lenet5", "--finetune-epochs", "1"], "needs --data"),
    (["compress", "lenet5", "--finetune-lr", "-0.1"], "argument --finetune-lr: must be a positive number"),
    (["compress", "lenet5", "--finetune-epochs", "1", "--data", "mnist"], "unknown data 'mnist'"),
    (["compress", "lenet5", "--checkpoint", "nope.pt"], "no such checkpoint"),
    (["decompress", "nope.dc"], "nope.dc: no such file"),
])
def test_bad_input_is_one_line(argv, message, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == (1 if message in ("no such checkpoint", "nope.dc: no such file") else 2)
    assert len(err) == 1 and err[0].startswith("cnnlab: error: ") and message in err[0], err
    assert not list(tmp_path.glob("*.dc"))


@pytest.mark.parametrize("content, message", [
    ({"features.c1": 0.5, "fc9": 0.5}, "no convolution or linear layer named 'fc9'"),
    ({"features.c1": 1.5}, "sparsity must be a number in [0, 1), got 1.5"),
    ([0.5], "must be a JSON object"),
    ("{not json", "not JSON"),
])
def test_a_bad_layer_sparsity_file_is_one_line(content, message, tmp_path, capsys) -> None:
    path = tmp_path / "s.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert main(["compress", "lenet5", "--layer-sparsity", str(path), "--out", str(tmp_path / "x.dc")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_layer_sparsity_file_prunes_only_the_named_layers(tmp_path, capsys) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"features.c1": 0.5, "f6.weight": 0.9}))
    got = _json(capsys, ["compress", "lenet5", "--layer-sparsity", str(path), "--out", str(tmp_path / "x.dc"),
                         "--json"])
    density = {layer["name"]: layer["density"] for layer in got["layers"]}
    assert density["features.c1"] == pytest.approx(0.5, abs=0.01) and density["f6"] == pytest.approx(0.1, abs=0.01)
    assert density["features.c3"] == 1.0


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_decompress_of_a_damaged_file_exits_1_with_one_line(damage, tmp_path, capsys) -> None:
    dc = tmp_path / "m.dc"
    assert main(["compress", "lenet5", "--prune", "0.5", "--out", str(dc)]) == 0
    data = dc.read_bytes()
    dc.write_bytes(data[: len(data) - 100] if damage == "truncate" else b"not a model at all")
    capsys.readouterr()
    assert main(["decompress", str(dc), "--out", str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cnnlab: error: {dc}") and "Traceback" not in err[0]
    assert not (tmp_path / "m.pt").exists()
