"""``cnnlab prune`` (``cnnlab.compress.prune_checkpoint``): exact sparsity per layer and under one
global threshold, masks kept through retraining, the written checkpoint read back by ``cnnlab
eval`` with the accuracy ``prune`` printed, the JSON, and every bad input as one line that leaves
an existing --out alone."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnnlab.cli import main
from cnnlab.compress.prune import apply_masks, global_masks, layer_masks, magnitude_mask, plan_layers, pruned_count
from cnnlab.compress.retrain import retrain_masked
from cnnlab.train.checkpoint import load_state
from cnnlab.train.inference import from_checkpoint

LAYERS = ["features.c1", "features.c3", "features.c5", "f6", "output"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """LeNet-5 on the digits after 4 epochs. The lenet5 recipe's SGD with a cosine schedule over
    only 4 epochs stays on its initial plateau (10 %); AdamW at 0.003 reaches about 90 %."""
    from cnnlab.train import train

    out = tmp_path_factory.mktemp("lenet5")
    run = train("lenet5", data="digits", epochs=4, out=str(out), seed=0, threads=1, optimizer="adamw", lr=0.003)
    assert run.test_acc > 0.5
    return run.checkpoint


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _weights(path) -> dict[str, torch.Tensor]:
    state = load_state(path)["model"]
    return {name: state[f"{name}.weight"] for name in LAYERS}


# -- the masks --------------------------------------------------------------------------------
def test_per_layer_pruning_keeps_exactly_the_largest_of_each_layer(trained, tmp_path, capsys) -> None:
    out = tmp_path / "p.pt"
    got = _json(capsys, ["prune", "lenet5", "--checkpoint", str(trained), "--sparsity", "0.9", "--out", str(out),
                         "--json"])
    before, after = _weights(trained), _weights(out)
    assert [layer["name"] for layer in got["layers"]] == LAYERS
    for layer in got["layers"]:
        n = before[layer["name"]].numel()
        assert layer["weights"] == n and layer["weights_kept"] == n - math.floor(0.9 * n + 1e-6)
        assert layer["density"] == pytest.approx(layer["weights_kept"] / n)
        mask = magnitude_mask(before[layer["name"]], 0.9)
        assert torch.equal(after[layer["name"]], torch.where(mask, before[layer["name"]], 0.0))
    state = load_state(out)
    assert state["pruning"] == {layer["name"]: pytest.approx(1 - layer["density"]) for layer in got["layers"]}
    total = sum(t.numel() for t in before.values())
    assert got["sparsity"] == pytest.approx(1 - sum(x["weights_kept"] for x in got["layers"]) / total)


def test_global_pruning_uses_one_threshold_for_all_layers(trained, tmp_path, capsys) -> None:
    out = tmp_path / "g.pt"
    got = _json(capsys, ["prune", "lenet5", "--checkpoint", str(trained), "--sparsity", "0.9", "--global",
                         "--out", str(out), "--json"])
    before, after = _weights(trained), _weights(out)
    total = sum(t.numel() for t in before.values())
    assert sum(x["weights_kept"] for x in got["layers"]) == total - pruned_count(total, 0.9)
    assert got["global"] is True and got["sparsity"] == pytest.approx(0.9, abs=1 / total)
    kept = torch.cat([before[n][after[n] != 0].abs().reshape(-1) for n in LAYERS])
    pruned = torch.cat([before[n][after[n] == 0].abs().reshape(-1) for n in LAYERS])
    assert kept.min() >= pruned.max()  # one threshold
    densities = [x["density"] for x in got["layers"]]
    assert max(densities) - min(densities) > 0.3  # each layer loses what falls below it


def test_global_masks_of_a_model_match_the_mask_of_all_weights_together() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 4))
    with torch.no_grad():
        model[2].weight.mul_(10)  # the linear layer's weights are larger: it keeps more of them
    specs = plan_layers(model, 0.0)
    masks = global_masks(model, specs, 0.75)
    together = magnitude_mask(torch.cat([model[0].weight.reshape(-1), model[2].weight.reshape(-1)]), 0.75)
    assert torch.equal(torch.cat([masks["0.weight"].reshape(-1), masks["2.weight"].reshape(-1)]), together)
    assert masks["2.weight"].float().mean() > masks["0.weight"].float().mean()
    per_layer = layer_masks(model, plan_layers(model, 0.75))
    assert all(int(m.sum()) == m.numel() - pruned_count(m.numel(), 0.75) for m in per_layer.values())


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_pruned_weights_stay_exactly_zero_after_every_step(optimizer) -> None:
    """Momentum, Adam's moments and weight decay would all move a pruned weight; after every step
    (seen at the next forward) each one is still 0, while the survivors train."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 8, generator=g), torch.randint(0, 3, (128,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = layer_masks(model, plan_layers(model, 0.7))
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01) if optimizer == "sgd"
           else torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1))
    params = dict(model.named_parameters())
    steps = []

    def objective(net, images, target):
        for key, mask in masks.items():
            assert torch.all(params[key][~mask] == 0), key
        steps.append(1)
        logits = net(images)
        return nn.functional.cross_entropy(logits, target), logits

    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    losses = retrain_masked(model, masks, loader, objective, opt, epochs=3)
    assert len(steps) == 24 and len(losses) == 3 and losses[-1] < losses[0]
    for key, mask in masks.items():
        weight = params[key].detach()
        assert torch.all(weight[~mask] == 0) and not torch.signbit(weight[~mask]).any()  # +0.0
        assert not torch.equal(weight[mask], start[key][mask])  # the survivors trained


def test_apply_masks_leaves_a_model_with_exactly_the_kept_weights() -> None:
    model = nn.Sequential(nn.Linear(10, 10))
    masks = layer_masks(model, plan_layers(model, 0.5))
    apply_masks(model, masks)
    assert int(torch.count_nonzero(model[0].weight)) == 50


# -- fine-tuning, the checkpoint, eval --------------------------------------------------------
def test_finetuned_checkpoint_keeps_the_masks_and_eval_gives_the_printed_accuracy(trained, tmp_path, capsys) -> None:
    out = tmp_path / "f.pt"
    got = _json(capsys, ["prune", "lenet5", "--checkpoint", str(trained), "--sparsity", "0.8", "--finetune-epochs",
                         "1", "--out", str(out), "--json"])
    before, after = _weights(trained), _weights(out)
    for layer in got["layers"]:
        mask = magnitude_mask(before[layer["name"]], 0.8)
        weight = after[layer["name"]]
        assert torch.all(weight[~mask] == 0) and int(torch.count_nonzero(weight)) == layer["weights_kept"]
        assert not torch.equal(weight[mask], before[layer["name"]][mask])  # retrained
    tune = got["finetune"]
    assert tune["epochs"] == 1 and tune["optimizer"] == "adamw" and tune["lr"] == 0.003  # the checkpoint's recipe
    assert got["accuracy"]["finetuned"] > got["accuracy"]["pruned"]
    evaluated = _json(capsys, ["eval", "lenet5", "--checkpoint", str(out), "--json",
                               "--confusion", str(tmp_path / "c.png")])
    assert evaluated["top1"] == got["accuracy"]["finetuned"]
    source, state = load_state(trained), load_state(out)
    for key in ("model_name", "args", "classes", "mean", "std", "input_size"):
        assert state[key] == source[key], key
    model = from_checkpoint(out, "lenet5").model  # cnnlab predict's loader
    assert int(torch.count_nonzero(model.f6.weight)) == got["layers"][3]["weights_kept"]
    dc = _json(capsys, ["compress", "lenet5", "--checkpoint", str(out), "--out", str(tmp_path / "f.dc"), "--json"])
    assert dc["sparsity"] == pytest.approx(got["sparsity"])


def test_json_and_text_report_the_same_numbers(trained, tmp_path, capsys) -> None:
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"features.c5": 0.95, "f6.weight": 0.5}))
    argv = ["prune", "lenet5", "--checkpoint", str(trained), "--layer-sparsity", str(spec), "--out",
            str(tmp_path / "l.pt")]
    got = _json(capsys, [*argv, "--json"])
    assert {"model", "sparsity", "layers", "accuracy"} <= got.keys()
    assert set(got["accuracy"]) == {"float", "pruned", "finetuned"} and got["accuracy"]["finetuned"] is None
    assert all({"name", "params", "kept", "density"} <= layer.keys() for layer in got["layers"])
    layers = {layer["name"]: layer for layer in got["layers"]}
    assert layers["features.c1"]["density"] == 1.0 and layers["features.c5"]["density"] == pytest.approx(0.05)
    assert layers["f6"] == {"name": "f6", "params": 84 * 120 + 84, "kept": 84 * 60 + 84, "density": 0.5,
                            "weights": 84 * 120, "weights_kept": 84 * 60}
    assert main(argv) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("Layer"))
    assert "#Parameters before pruning" in header and "#Parameters after pruning" in header and "Density" in header
    f6 = next(line for line in text.splitlines() if line.startswith("f6 "))
    assert f6.split() == ["f6", "10,164", "5,124", "50.0%"]
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert f"{sum(x['params'] for x in got['layers']):,}" in total
    assert f"float {got['accuracy']['float']:.4f} | pruned {got['accuracy']['pruned']:.4f}" in text


# -- bad input --------------------------------------------------------------------------------
def _imagefolder(root) -> str:
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(root / name / f"{i}.png")
    return f"imagefolder:{root}"


@pytest.mark.parametrize("extra, message, code", [
    (["--sparsity", "1.0"], "must be in [0, 1), got '1.0'", 2),
    (["--sparsity", "-0.1"], "must be in [0, 1)", 2),
    ([], "give --sparsity S or --layer-sparsity", 2),
    (["--sparsity", "0.5", "--layer-sparsity", "paper"], "not allowed with argument", 2),
    (["--layer-sparsity", "LAYERS", "--global"], "--global prunes to one total sparsity", 2),
    (["--layer-sparsity", "LAYERS"], "no convolution or linear layer named 'fc9'", 2),
    (["--layer-sparsity", "paper"], "alexnet_2012 and squeezenet1_0, not lenet5", 2),
    (["--layer-sparsity", "missing.json"], "no such file", 2),
    (["--sparsity", "0.5", "--finetune-epochs", "-1"], "must be a non-negative integer, got '-1'", 2),
    (["--sparsity", "0.5", "--finetune-lr", "0"], "must be a positive number", 2),
    (["--sparsity", "0.5", "--data", "mnist"], "unknown data 'mnist'", 2),
    (["--sparsity", "0.5", "--data", "IMAGEFOLDER"], "has 2 classes", 2),
    (["--sparsity", "0.5", "--finetune-epochs", "1", "--finetune-lr", "1e12"], "fine-tuning diverged", 2),
    (["--sparsity", "0.5", "--model", "squeezenet1_0"], "holds a lenet5 checkpoint, not squeezenet1_0", 1),
    (["--sparsity", "0.5", "--model", "lenet55"], "unknown model 'lenet55'", 2),
    (["--sparsity", "0.5", "--checkpoint", "nope.pt"], "no such checkpoint", 1),
    (["--sparsity", "0.5", "--checkpoint", "CORRUPT"], "truncated or corrupt", 1),
    (["--sparsity", "0.5", "--out", "."], "is a folder", 2),
])
def test_bad_input_is_one_line_and_leaves_out_alone(extra, message, code, trained, tmp_path, monkeypatch,
                                                     capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "layers.json").write_text(json.dumps({"features.c1": 0.5, "fc9": 0.5}))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(trained.read_bytes()[:5000])
    replace = {"LAYERS": "layers.json", "CORRUPT": str(corrupt), "IMAGEFOLDER": _imagefolder(tmp_path / "pets")}
    extra = [replace.get(a, a) for a in extra]
    model = "lenet5"
    if "--model" in extra:
        i = extra.index("--model")
        model = extra[i + 1]
        del extra[i:i + 2]
    out = tmp_path / "out.pt"
    out.write_bytes(b"the previous run")
    argv = ["prune", model, "--checkpoint", str(trained), "--out", str(out), *extra]
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnlab: error: ") and message in err[0], err
    assert out.read_bytes() == b"the previous run"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.pt")] == []  # no temporary left


def test_checkpoint_and_out_are_required(tmp_path, capsys) -> None:
    assert main(["prune", "lenet5", "--sparsity", "0.5", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["prune", "lenet5", "--sparsity", "0.5", "--checkpoint", "x.pt"]) == 2
    assert "--out" in capsys.readouterr().err
