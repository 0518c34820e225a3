"""``cnnlab eval`` and ``cnnlab predict``: the numbers agree with what training measured, images of
any mode are preprocessed as the test split was, torchvision's weights come from the local hub
cache only, and every bad input is one line with the right exit code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.train import train
from cnnlab.train.data import load_data
from cnnlab.train.inference import _DENSENET_OLD_KEY, from_checkpoint, hub_weights_file


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """LeNet-5 trained for 4 epochs on the digits (a few seconds), and its test split."""
    out = tmp_path_factory.mktemp("lenet5")
    result = train("lenet5", data="digits", epochs=4, out=str(out), seed=0, threads=1)
    data = load_data("digits", input_size=(32, 32), channels=1)
    return result, data


def _digit_image(data, index: int) -> tuple[Image.Image, int]:
    """Test item ``index`` as the 8-bit grayscale image it came from (values 0..16 -> 0..255)."""
    from cnnlab.train.data import _digits_split

    _, _, images, labels = _digits_split()
    return Image.fromarray(images[index, 0].numpy(), "L"), int(labels[index])


def test_eval_reproduces_the_runs_last_test_accuracy_and_loss(run, capsys):
    result, _ = run
    assert main(["eval", "lenet5", "--checkpoint", str(result.checkpoint), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    last = result.metrics[-1]
    assert got["n"] == 450 and got["data"] == "digits" and got["classes"] == [str(d) for d in range(10)]
    assert got["top1"] == pytest.approx(last["test_acc"], abs=1e-12)
    assert got["loss"] == pytest.approx(last["test_loss"], rel=1e-5)
    assert got["top1"] <= got["top5"] <= 1.0
    matrix = np.array(got["confusion"])
    assert matrix.sum() == 450 and np.trace(matrix) == round(got["top1"] * 450)
    assert (result.checkpoint.parent / "confusion.png").stat().st_size > 1000


def test_eval_text_shows_the_matrix_and_saves_it_where_asked(run, tmp_path, capsys):
    result, _ = run
    png = tmp_path / "m.png"
    assert main(["eval", "lenet5", "--checkpoint", str(result.checkpoint), "--confusion", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("top-1 ") and "top-5" in out[-1] and "n 450" in out[-1]
    assert any(line.startswith("confusion matrix") for line in out)
    rows = [line for line in out if line[:1] == " " or line[:1].isdigit()]
    assert len(rows) >= 10
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_a_saved_test_digit_gives_the_models_answer_on_the_test_item(run, capsys):
    result, data = run
    trained = from_checkpoint(result.checkpoint, "lenet5")
    for index in (0, 7, 123):
        image, label = _digit_image(data, index)
        item, target = data.test[index]
        assert target == label
        assert torch.equal(trained.transform(image), item)  # preprocessing exactly as in training
        with torch.no_grad():
            expected = trained.model(item[None]).softmax(1)[0]
        from cnnlab.train.inference import predict_images

        (prediction,) = predict_images(trained, [("x", image)], topk=3)
        assert prediction.top[0][0] == int(expected.argmax())
        assert prediction.top[0][2] == pytest.approx(float(expected.max()), abs=1e-6)


def test_predict_any_image_mode_and_size(run, tmp_path, capsys):
    result, data = run
    image, label = _digit_image(data, 5)
    big = image.resize((40, 40), Image.NEAREST)
    files = {
        "gray.png": big,
        "rgb.jpg": big.convert("RGB"),
        "rgba.png": big.convert("RGBA"),
        "palette.png": big.convert("P"),
        "sixteen.png": Image.fromarray(np.asarray(big, dtype=np.uint16) * 257),
        "onebit.png": big.point(lambda v: 255 if v > 127 else 0).convert("1"),
    }
    for name, picture in files.items():
        picture.save(tmp_path / name)
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")
    argv = ["predict", "lenet5", "--checkpoint", str(result.checkpoint), "--topk", "3", "--json"]
    assert main([*argv, *(str(tmp_path / n) for n in files)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [g["image"] for g in got] == [str(tmp_path / n) for n in files]
    top = {g["image"].rsplit("/", 1)[1]: g["top"] for g in got}
    for name in files:
        assert len(top[name]) == 3 and sum(t["probability"] for t in top[name]) <= 1 + 1e-6
        assert top[name][0]["probability"] >= top[name][1]["probability"]
    # gray, RGB (equal channels), RGBA, palette and 16-bit are the same picture: the same answer
    same = [top[n][0]["class"] for n in ("gray.png", "rgb.jpg", "rgba.png", "palette.png", "sixteen.png")]
    assert len(set(same)) == 1
    assert top["gray.png"][0]["probability"] == pytest.approx(top["sixteen.png"][0]["probability"], abs=1e-4)
    assert main(["predict", "lenet5", "--checkpoint", str(result.checkpoint), str(tmp_path / "gray.png")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(tmp_path / "gray.png")) and top["gray.png"][0]["class"] in line


def test_own_model_file_eval_and_predict(tmp_path, capsys):
    (tmp_path / "net.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, num_classes=10, width=8):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                                  nn.Flatten(), nn.Linear(width, num_classes))\n"
        "    def forward(self, x):\n"
        "        return self.body(x)\n"
    )
    spec = f"{tmp_path / 'net.py'}:Net"
    out = tmp_path / "run"
    assert main(["train", spec, "--data", "fake", "--epochs", "1", "--batch-size", "32", "--threads", "1",
                 "--arg", "width=4", "--input-size", "16", "--out", str(out)]) == 0
    acc = float(capsys.readouterr().out.strip().splitlines()[-1].split()[-1])
    assert main(["eval", spec, "--checkpoint", str(out / "checkpoint.pt"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["top1"] == pytest.approx(acc, abs=1e-4) and got["n"] == 64
    Image.new("RGB", (50, 30), (200, 10, 10)).save(tmp_path / "red.png")
    assert main(["predict", spec, "--checkpoint", str(out / "checkpoint.pt"), str(tmp_path / "red.png")]) == 0


@pytest.mark.parametrize("argv, says, code", [
    (["predict", "lenet5", "IMG"], "give --checkpoint FILE or --weights torchvision", 2),
    (["predict", "lenet5", "--checkpoint", "CKPT", "--weights", "torchvision", "IMG"], "(not both)", 2),
    (["predict", "no_such_net", "--checkpoint", "CKPT", "IMG"], "unknown model 'no_such_net'", 2),
    (["predict", "lenet5", "--checkpoint", "CKPT", "MISSING"], "no such image", 2),
    (["predict", "lenet5", "--checkpoint", "CKPT", "BAD"], "not a readable image", 2),
    (["predict", "lenet5", "--checkpoint", "CKPT", "--topk", "0", "IMG"], "--topk must be >= 1", 2),
    (["predict", "resnet18", "--checkpoint", "CKPT", "IMG"], "holds a lenet5 checkpoint, not resnet18", 1),
    (["predict", "lenet5", "--checkpoint", "TRUNC", "IMG"], "truncated or corrupt checkpoint", 1),
    (["predict", "lenet5", "--checkpoint", "NOPE", "IMG"], "no such checkpoint", 1),
    (["predict", "lenet5", "--weights", "torchvision", "IMG"], "torchvision has no pretrained lenet5", 1),
    (["eval", "lenet5"], "give --checkpoint FILE", 2),
    (["eval", "lenet5", "--checkpoint", "CKPT", "--data", "mnist"], "unknown data 'mnist'", 2),
    (["eval", "lenet5", "--checkpoint", "CKPT", "--data", "cifar10:NOPE"], "cifar10", 2),
    (["eval", "lenet5", "--checkpoint", "CKPT", "--confusion", "m.svg"], "give a .png path", 2),
    (["eval", "lenet5", "--checkpoint", "CKPT", "--batch-size", "0"], "--batch-size must be >= 1", 2),
])
def test_bad_input_is_one_line(run, tmp_path, capsys, argv, says, code):
    result, data = run
    image, _ = _digit_image(data, 0)
    image.save(tmp_path / "img.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "trunc.pt").write_bytes(result.checkpoint.read_bytes()[:5000])
    paths = {"CKPT": str(result.checkpoint), "IMG": str(tmp_path / "img.png"), "BAD": str(tmp_path / "bad.png"),
             "MISSING": str(tmp_path / "missing.png"), "TRUNC": str(tmp_path / "trunc.pt"),
             "NOPE": str(tmp_path / "nope.pt")}
    assert main([paths.get(a, a) for a in argv]) == code
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err and err[-1].startswith("cnnlab: error:") and says in err[-1], err
    assert "Traceback" not in captured.err


def _torch_home(tmp_path, monkeypatch, name: str, state: dict) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    file, _ = hub_weights_file(name)
    assert str(file).startswith(str(tmp_path / "torch"))
    file.parent.mkdir(parents=True)
    torch.save(state, file)


def test_torchvision_weights_missing_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    assert main(["predict", "squeezenet1_1", "--weights", "torchvision", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not in the torch hub cache" in err[0] and "weights='DEFAULT'" in err[0]
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*.pth"))  # nothing fetched


@pytest.mark.parametrize("name", ["squeezenet1_1", "googlenet"])
def test_torchvision_weights_from_the_hub_cache_give_torchvisions_outputs(name, tmp_path, monkeypatch, capsys):
    """The weights file is torchvision's own state dict (random here: nothing is downloaded); our
    model with it, on our preprocessing, gives torchvision's model's probabilities on torchvision's
    preprocessing -- for GoogLeNet that includes its ``transform_input`` and auxiliary heads."""
    import torchvision

    torch.manual_seed(0)
    extra = {"aux_logits": True, "transform_input": True, "init_weights": True} if name == "googlenet" else {}
    theirs = torchvision.models.get_model(name, weights=None, **extra).eval()
    state = theirs.state_dict()
    for key, value in state.items():  # BN statistics that are not the identity
        if key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
    theirs.load_state_dict(state)
    _torch_home(tmp_path, monkeypatch, name, state)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    assert main(["predict", name, "--weights", "torchvision", "--topk", "3", "--json", str(tmp_path / "photo.png")]) == 0
    (got,) = json.loads(capsys.readouterr().out)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    x = weights.transforms()(Image.open(tmp_path / "photo.png"))[None]
    with torch.no_grad():
        p, i = theirs(x).softmax(1)[0].topk(3)
    assert [t["index"] for t in got["top"]] == i.tolist()
    assert [t["class"] for t in got["top"]] == [weights.meta["categories"][k] for k in i.tolist()]
    assert [t["probability"] for t in got["top"]] == pytest.approx(p.tolist(), rel=1e-3, abs=1e-6)


def test_densenet_released_key_names_are_rewritten():
    old = "features.denseblock1.denselayer1.norm.1.weight"
    assert _DENSENET_OLD_KEY.sub(r"\1\2", old) == "features.denseblock1.denselayer1.norm1.weight"
    assert _DENSENET_OLD_KEY.sub(r"\1\2", "features.norm0.weight") == "features.norm0.weight"
