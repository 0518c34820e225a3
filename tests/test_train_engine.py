"""The training engine: recipes resolve, schedules and parameter groups follow the papers, the
architecture losses weigh what the papers say, checkpoints are atomic and fail in one line, and a
stopped run resumes to the same weights bit for bit (on the CPU, ``workers=0``)."""

from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from cnnlab.registry import create_model
from cnnlab.train import (
    CheckpointError, Data, Interrupted, ModelBuilder, Reporter, StopRequest, TrainingError, load_checkpoint,
    load_data, resolve_config, save_checkpoint, train,
)
from cnnlab.train.config import resumed_config
from cnnlab.train.losses import AUX_WEIGHTS, make_objective
from cnnlab.train.optim import depthwise_weights, make_optimizer, make_scheduler
from cnnlab.train.recipes import RECIPES, default_recipe


# -- recipes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("model, recipe", [
    ("lenet5", "lenet5"), ("lenet5_paper", "lenet5_paper"), ("capsnet", "capsnet"), ("resnet20_cifar", "resnet_cifar"),
    ("densenet40_k12_cifar", "densenet_cifar"), ("mobilenet_v1", "mobilenet_v1"), ("mobilenet_v2", "mobilenet_v1"),
    ("shufflenet_v2_x1_0", "shufflenet_v2"), ("resnet50", "resnet_imagenet"), ("my.py:Net", "resnet_imagenet"),
])
def test_default_recipe_per_family(model, recipe):
    assert default_recipe(model) == recipe


def test_resnet_cifar_recipe_is_the_papers():
    r = RECIPES["resnet_cifar"]
    assert (r.optimizer, r.lr, r.momentum, r.weight_decay) == ("sgd", 0.1, 0.9, 1e-4)
    assert (r.scheduler, r.milestones, r.gamma, r.batch_size) == ("step", (0.5, 0.75), 0.1, 128)


def test_explicit_choices_override_the_recipe():
    config = resolve_config("resnet20_cifar", lr=0.05, epochs=4, batch_size=None)
    assert (config.recipe, config.lr, config.epochs) == ("resnet_cifar", 0.05, 4)
    assert (config.batch_size, config.momentum) == (128, 0.9)
    assert resolve_config("resnet20_cifar", recipe="densenet_cifar").nesterov is True
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        resolve_config("lenet5", recipe="nope")
    with pytest.raises(ValueError, match="--epochs must be >= 1"):
        resolve_config("lenet5", epochs=-1)


def test_resume_keeps_the_saved_arguments():
    saved = resolve_config("lenet5", epochs=3, out="x").to_dict()
    assert resumed_config(saved, model="lenet5", workers=2).epochs == 3
    with pytest.raises(ValueError, match="lr=0.1 .the run has 0.05"):
        resumed_config(saved, model="lenet5", lr=0.1)
    with pytest.raises(ValueError, match="model='resnet20_cifar'"):
        resumed_config(saved, model="resnet20_cifar")


def _lrs(config, steps_per_epoch):
    model = nn.Linear(2, 2)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    lrs = []
    for _ in range(config.epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    lrs = _lrs(resolve_config("resnet20_cifar", epochs=8), steps_per_epoch=3)
    per_epoch = [lrs[e * 3] for e in range(8)]
    assert per_epoch == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    assert len(set(lrs[12:15])) == 1  # changes at epoch boundaries only


def test_linear_and_cosine_schedules_reach_zero():
    for scheduler in ("linear", "cosine"):
        lrs = _lrs(resolve_config("lenet5", epochs=2, scheduler=scheduler, lr=0.5), steps_per_epoch=5)
        assert lrs[0] == 0.5 and lrs[-1] < 0.5 / 5 and all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_mobilenet_recipe_has_no_weight_decay_on_depthwise_filters():
    model = create_model("mobilenet_v1_025", num_classes=10)
    config = resolve_config("mobilenet_v1_025")
    optimizer = make_optimizer(model, config)
    assert isinstance(optimizer, torch.optim.RMSprop)
    decays = {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    depthwise = {id(p) for p in depthwise_weights(model)}
    assert len(depthwise) == 13 and decays[0.0] == depthwise and decays[4e-5].isdisjoint(depthwise)


# -- losses -----------------------------------------------------------------------------------
def test_googlenet_aux_heads_weigh_point_three():
    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=5, aux_logits=True).train()
    images, target = torch.randn(2, 3, 224, 224), torch.tensor([1, 3])
    torch.manual_seed(1)
    loss, logits = make_objective(model)(model, images, target)
    torch.manual_seed(1)
    out = model(images)
    ce = nn.functional.cross_entropy
    expected = ce(out.logits, target) + 0.3 * ce(out.aux_logits1, target) + 0.3 * ce(out.aux_logits2, target)
    assert torch.allclose(loss, expected) and torch.equal(logits, out.logits)
    model.eval()
    with torch.no_grad():
        loss, logits = make_objective(model)(model, images, target)  # no heads in eval mode
    assert torch.allclose(loss, ce(logits, target))


def test_aux_weights_table():
    assert AUX_WEIGHTS["InceptionOutputs"] == {"aux_logits": 0.4}
    assert AUX_WEIGHTS["SEShuffleNetV2Outputs"] == {"aux_14": 0.7, "aux_28": 0.5, "aux_56": 0.3}


def test_capsnet_margin_plus_reconstruction():
    from cnnlab.models.capsnet import margin_loss, reconstruction_loss

    torch.manual_seed(0)
    model = create_model("capsnet", num_classes=10).train()
    images, target = torch.randn(2, 1, 28, 28), torch.tensor([4, 7])
    objective = make_objective(model, mean=(0.5,), std=(0.25,))
    loss, lengths = objective(model, images, target)
    ref_lengths, recon = model(images, target)
    expected = margin_loss(ref_lengths, target) + reconstruction_loss(recon, images * 0.25 + 0.5)
    assert torch.allclose(loss, expected) and lengths.shape == (2, 10)
    with pytest.raises(ValueError, match="margin loss"):
        make_objective(model, label_smoothing=0.1)


def test_label_smoothing_goes_through_cross_entropy():
    model = nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    loss, _ = make_objective(model, label_smoothing=0.2)(model, x, y)
    assert torch.allclose(loss, nn.functional.cross_entropy(model(x), y, label_smoothing=0.2))


# -- checkpoints ------------------------------------------------------------------------------
def test_checkpoint_round_trip_and_errors(tmp_path):
    model = create_model("lenet5", num_classes=10)
    path = save_checkpoint(tmp_path / "c.pt", {"model_name": "lenet5", "model": model.state_dict(), "args": {}})
    other = create_model("lenet5", num_classes=10)
    state = load_checkpoint(path, other, model_name="lenet5")
    assert state["model_name"] == "lenet5"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    with pytest.raises(CheckpointError, match="holds a lenet5 checkpoint, not resnet20_cifar"):
        load_checkpoint(path, model_name="resnet20_cifar")
    with pytest.raises(CheckpointError, match="does not fit this model: weights .*of another shape"):
        load_checkpoint(path, create_model("lenet5", num_classes=3))
    with pytest.raises(CheckpointError, match="does not fit this model: weights .*missing"):
        load_checkpoint(path, create_model("resnet20_cifar"))
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"weights": 1}, tmp_path / "plain.pt")
    torch.save({"format": "cnnlab-checkpoint", "version": 1, "model": {}, "x": nn.Linear(1, 1)}, tmp_path / "obj.pt")
    for name, says in (("cut.pt", "truncated or corrupt"), ("junk.pt", "corrupt"), ("plain.pt", "not a cnnlab"),
                       ("obj.pt", "refusing"), ("missing.pt", "no such checkpoint")):
        with pytest.raises(CheckpointError, match=says) as info:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value)


def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.ones(3)}, "epoch": 1})

    def crash(obj, handle, *a, **k):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


# -- the loop ---------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _digits(augment: bool) -> Data:
    """A slice of the digits: 96 train and 40 test images at 16x16."""
    full = load_data("digits", input_size=(16, 16), channels=1, augment=augment)
    return Data(Subset(full.train, range(96)), Subset(full.test, range(40)), full.classes, full.mean, full.std, [])


def _tiny(model_args):
    """A small net with dropout (draws from the torch RNG every training step) and no BN."""
    def build(num_classes):
        return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Dropout(0.3), nn.Linear(6 * 8 * 8, num_classes))
    return ModelBuilder("tiny", 1, (16, 16), build)


def _run(tmp_path, name, reporter=None, stop=None, resume=False, **choices):
    settings = dict(epochs=3, batch_size=16, lr=0.05, scheduler="cosine", augment=True, seed=7, threads=1,
                    data="digits", out=str(tmp_path / name))
    settings.update(choices)
    return train("tiny", builder=_tiny, dataset=_digits(settings["augment"]), reporter=reporter, stop=stop,
                 resume=resume, **settings)


class _StopAt(Reporter):
    def __init__(self, stop, epoch, step):
        self.stop, self.at = stop, (epoch, step)

    def step(self, p):
        if (p.epoch, p.step) == self.at:
            self.stop.requested = True


def _weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("epoch, step", [(1, 6), (2, 3)], ids=["epoch-boundary", "mid-epoch"])
def test_resume_gives_the_same_weights_bit_for_bit(tmp_path, epoch, step):
    whole = _run(tmp_path, "whole")
    stop = StopRequest()
    with pytest.raises(Interrupted) as info:
        _run(tmp_path, "parts", reporter=_StopAt(stop, epoch, step), stop=stop)
    saved = load_checkpoint(info.value.checkpoint)
    assert (saved["epoch"], saved["step"]) == (epoch - 1, step)
    resumed = _run(tmp_path, "parts", resume=True)
    a, b = _weights(whole.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
    assert [{k: r[k] for k in keys} for r in resumed.metrics] == [{k: r[k] for k in keys} for r in whole.metrics]
    assert resumed.test_acc == whole.test_acc
    lines = (tmp_path / "parts" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,train_acc,test_loss,test_acc,lr,images_per_s,seconds" and len(lines) == 4


def test_run_folder_and_refusals(tmp_path):
    result = _run(tmp_path, "run", epochs=1)
    out = tmp_path / "run"
    names = {p.name for p in out.iterdir()}
    assert {"checkpoint.pt", "args.json", "metrics.csv", "curve.png"} <= names
    assert any(n.startswith("events.out.tfevents.") for n in names)
    assert result.config.to_dict()["lr"] == 0.05 and 0 <= result.test_acc <= 1
    with pytest.raises(ValueError, match="already holds a run"):
        _run(tmp_path, "run", epochs=1)
    with pytest.raises(ValueError, match="no checkpoint"):
        _run(tmp_path, "fresh", resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        _run(tmp_path, "file")


def test_a_non_finite_loss_stops_with_one_line(tmp_path):
    with pytest.raises(TrainingError, match="the loss became (nan|inf)"):
        _run(tmp_path, "nan", lr=1e30, scheduler="none", augment=False, epochs=1)


def test_lenet5_learns_digits(tmp_path):
    full = load_data("digits", input_size=(32, 32), channels=1)
    result = train("lenet5", dataset=full, epochs=3, batch_size=32, lr=0.003, optimizer="adamw", augment=False,
                   out=str(tmp_path / "lenet"), threads=1)
    assert result.test_acc > 0.8 and math.isfinite(result.test_loss)
