"""cnnlab.train.data: the --data kinds, their splits and notes, and preprocess == the test items."""

from __future__ import annotations

import hashlib
import io
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cnnlab.train.data import (
    DIGITS_SEED, DataError, imagenet_classes, load_data, parse_data, preprocess,
)

RNG = np.random.default_rng(0)


# --- parse_data ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("digits", ("digits", None)),
    ("fake", ("fake", None)),
    ("cifar10", ("cifar10", None)),
    ("cifar100:/data/c", ("cifar100", "/data/c")),
    ("imagefolder:C:/sets/flowers", ("imagefolder", "C:/sets/flowers")),
])
def test_parse_data(text: str, expected: tuple) -> None:
    assert parse_data(text) == expected


@pytest.mark.parametrize("text", ["", "mnist", "Digits", "digits:/x", "fake:3", "imagefolder", "imagefolder:",
                                  "cifar10:"])
def test_parse_data_rejects(text: str) -> None:
    with pytest.raises(DataError) as error:
        parse_data(text)
    assert "\n" not in str(error.value) and str(error.value)


@pytest.mark.parametrize("kwargs", [{"channels": 2}, {"channels": 4}, {"input_size": (32,)}, {"input_size": (0, 32)}])
def test_load_data_rejects_shapes(kwargs: dict) -> None:
    with pytest.raises(DataError, match="channels|input_size"):
        load_data("fake", **{"input_size": (16, 16), "channels": 3, **kwargs})


# --- digits --------------------------------------------------------------------------------------

def _digits_reference() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The documented split, recomputed with scikit-learn: (train_y, test_x 0..16, test_y, all y)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train, test = train_test_split(np.arange(len(digits.target)), test_size=0.25, stratify=digits.target,
                                   random_state=DIGITS_SEED)
    return digits.target[train], digits.data[test].reshape(-1, 8, 8), digits.target[test], digits.target


def test_digits_split_is_the_documented_stratified_split() -> None:
    data = load_data("digits", input_size=(32, 32), channels=1)
    train_y, _, test_y, all_y = _digits_reference()
    assert (len(data.train), len(data.test)) == (1347, 450)
    assert data.classes == [str(d) for d in range(10)]
    assert data.train.targets == train_y.tolist() and data.test.targets == test_y.tolist()
    overall, train, test = Counter(all_y.tolist()), Counter(data.train.targets), Counter(data.test.targets)
    for digit in range(10):
        assert train[digit] > 0 and test[digit] > 0
        assert abs(test[digit] / overall[digit] - 0.25) < 0.02  # every class split 75/25


def test_digits_tensors_are_normalised_and_deterministic() -> None:
    data = load_data("digits", input_size=(32, 32), channels=1)
    images, labels = next(iter(DataLoader(data.train, batch_size=len(data.train))))
    assert images.shape == (1347, 1, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert abs(images.mean().item()) < 1e-4 and abs(images.std().item() - 1) < 1e-3
    assert 0.1 < data.mean[0] < 0.5 and len(data.mean) == len(data.std) == 1
    image, label = data.test[7]
    assert isinstance(label, int) and image.shape == (1, 32, 32)
    again = load_data("digits", input_size=(32, 32), channels=1)
    assert torch.equal(again.test[7][0], image) and again.mean == data.mean
    assert not any("channels" in note or "luminance" in note for note in data.notes)


def test_digits_for_a_three_channel_model_repeat_and_say_so() -> None:
    data = load_data("digits", input_size=(24, 20), channels=3)
    image, _ = data.train[0]
    assert image.shape == (3, 24, 20)
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    assert len(data.mean) == 3 and len(set(data.mean)) == 1
    assert any("grayscale: repeated to 3 channels" in note for note in data.notes)


def test_digits_augmentation_changes_train_only_and_follows_the_seed() -> None:
    plain = load_data("digits", input_size=(32, 32), channels=1)
    augmented = load_data("digits", input_size=(32, 32), channels=1, augment=True)
    torch.manual_seed(1)
    first = torch.stack([augmented.train[i][0] for i in range(8)])
    torch.manual_seed(1)
    second = torch.stack([augmented.train[i][0] for i in range(8)])
    assert torch.equal(first, second)
    assert not torch.equal(first, torch.stack([plain.train[i][0] for i in range(8)]))
    assert torch.equal(augmented.test[3][0], plain.test[3][0])
    assert any("no flips" in note for note in augmented.notes)


@pytest.mark.parametrize("size, channels", [((32, 32), 1), ((29, 31), 3)])
def test_preprocess_of_a_saved_digit_is_its_test_item(tmp_path: Path, size: tuple, channels: int) -> None:
    data = load_data("digits", input_size=size, channels=channels)
    _, test_x, test_y, _ = _digits_reference()
    for index in (0, 1, 449):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(np.rint(test_x[index] * 255 / 16).astype(np.uint8)).save(path)  # the documented 8-bit form
        image, label = data.test[index]
        assert label == test_y[index]
        got = preprocess(Image.open(path), input_size=size, channels=channels, mean=data.mean, std=data.std)
        assert torch.equal(got, image)


# --- CIFAR ---------------------------------------------------------------------------------------

def _write_cifar(root: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """A tiny archive in CIFAR's own pickled format; returns the test images (N x 32 x 32 x 3).

    torchvision checks every file against the md5 of the real archive. Rather than switch that
    check off, the reader's file tables are patched to this archive's md5s, so the real check
    still runs (and catches the corruption tests below).
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    reader, n_classes = (CIFAR10, 10) if kind == "cifar10" else (CIFAR100, 100)
    folder = root / reader.base_folder
    folder.mkdir(parents=True)
    label_key = "labels" if kind == "cifar10" else "fine_labels"

    def batch(name: str, n: int) -> tuple[list[str], np.ndarray]:
        images = RNG.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        entry = {"batch_label": name, label_key: [i % n_classes for i in range(n)],
                 "data": images.transpose(0, 3, 1, 2).reshape(n, 3072), "filenames": [f"{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        return [name, hashlib.md5((folder / name).read_bytes()).hexdigest()], images

    train_list = [batch(name, 4)[0] for name, _ in reader.train_list]
    test_row, test_images = batch(reader.test_list[0][0], 6)
    names = [f"class{c}" for c in range(n_classes)]
    (folder / reader.meta["filename"]).write_bytes(pickle.dumps({reader.meta["key"]: names}, protocol=2))
    meta_md5 = hashlib.md5((folder / reader.meta["filename"]).read_bytes()).hexdigest()
    monkeypatch.setattr(reader, "train_list", train_list)
    monkeypatch.setattr(reader, "test_list", [test_row])
    monkeypatch.setattr(reader, "meta", {**reader.meta, "md5": meta_md5})
    return test_images


@pytest.mark.parametrize("kind, n_train, n_classes", [("cifar10", 20, 10), ("cifar100", 4, 100)])
def test_cifar_archive_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, n_train: int,
                             n_classes: int) -> None:
    _write_cifar(tmp_path, kind, monkeypatch)
    data = load_data(f"{kind}:{tmp_path}", input_size=(32, 32), channels=3)
    assert (len(data.train), len(data.test), len(data.classes)) == (n_train, 6, n_classes)
    assert data.classes[:2] == ["class0", "class1"] and len(data.mean) == 3
    image, label = data.train[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and label == 3


@pytest.mark.parametrize("size, channels", [((32, 32), 3), ((27, 41), 1)])
def test_preprocess_of_a_saved_cifar_image_is_its_test_item(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            size: tuple, channels: int) -> None:
    test_images = _write_cifar(tmp_path / "root", "cifar10", monkeypatch)
    data = load_data(f"cifar10:{tmp_path / 'root'}", input_size=size, channels=channels)
    assert any("luminance" in note for note in data.notes) == (channels == 1)
    for index in (0, 5):
        Image.fromarray(test_images[index]).save(tmp_path / f"{index}.png")
        got = preprocess(Image.open(tmp_path / f"{index}.png"), input_size=size, channels=channels,
                         mean=data.mean, std=data.std)
        assert got.shape == (channels, *size) and torch.equal(got, data.test[index][0])


def test_cifar_missing_root_is_one_line_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_data(f"cifar10:{tmp_path / 'nowhere'}", input_size=(32, 32), channels=3)
    message = str(error.value)
    assert "\n" not in message and "cifar-10-batches-py" in message and "download=True" in message
    assert not (tmp_path / "nowhere").exists()


def test_cifar_corrupt_files_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_cifar(tmp_path, "cifar10", monkeypatch)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])  # truncated: fails the md5 check
    with pytest.raises(DataError, match=r"data_batch_3 is corrupt") as error:
        load_data(f"cifar10:{tmp_path}", input_size=(32, 32), channels=3)
    assert "\n" not in str(error.value)
    from torchvision.datasets import CIFAR10  # garbage whose md5 matches: the unpickling fails instead
    batch.write_bytes(b"not a pickle")
    rows = [[name, hashlib.md5(b"not a pickle").hexdigest() if name == "data_batch_3" else md5]
            for name, md5 in CIFAR10.train_list]
    monkeypatch.setattr(CIFAR10, "train_list", rows)
    with pytest.raises(DataError, match="do not read as CIFAR10"):
        load_data(f"cifar10:{tmp_path}", input_size=(32, 32), channels=3)


# --- imagefolder ---------------------------------------------------------------------------------

def _image(mode: str, size: tuple[int, int]) -> Image.Image:
    """A random image of the given PIL mode and (width, height)."""
    w, h = size
    if mode == "I;16":
        return Image.fromarray(RNG.integers(0, 65536, (h, w)).astype(np.uint16))
    if mode == "1":
        return Image.fromarray(RNG.integers(0, 2, (h, w)).astype(bool))
    rgba = Image.fromarray(RNG.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    return rgba.convert("RGB").quantize(16) if mode == "P" else rgba.convert(mode)


def _write_bad_files(folder: Path) -> None:
    buffer = io.BytesIO()
    _image("RGB", (40, 30)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "garbage.png").write_bytes(RNG.bytes(200))


def test_imagefolder_skips_unreadable_images_and_splits_per_class(tmp_path: Path) -> None:
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(6):
            _image("RGB" if i % 2 else "L", (17 + i, 13)).save(tmp_path / name / f"{i}.png")
    _write_bad_files(tmp_path / "dog")
    data = load_data(f"imagefolder:{tmp_path}", input_size=(16, 16), channels=3)
    assert data.classes == ["cat", "dog"] and (len(data.train), len(data.test)) == (10, 2)
    assert Counter(data.test.targets) == {0: 1, 1: 1}
    skipped = next(note for note in data.notes if "skipped" in note)
    assert "skipped 3 unreadable images" in skipped and "empty.png" in skipped and "truncated.jpg" in skipped
    assert any("6 of 12 images are grayscale" in note for note in data.notes)
    again = load_data(f"imagefolder:{tmp_path}", input_size=(16, 16), channels=3)
    assert again.test.samples == data.test.samples
    batches = list(DataLoader(data.train, batch_size=4))  # a whole epoch: nothing left to fail
    assert sum(len(labels) for _, labels in batches) == 10 and batches[0][0].shape == (4, 3, 16, 16)


@pytest.mark.parametrize("channels", [1, 3])
def test_preprocess_of_every_mode_is_its_test_item(tmp_path: Path, channels: int) -> None:
    modes = ("L", "RGB", "RGBA", "P", "I;16", "1")
    for split in ("train", "val"):
        for index, mode in enumerate(modes):
            (tmp_path / split / mode.replace(";", "")).mkdir(parents=True)
            _image(mode, (11 + 2 * index, 9 + 3 * index)).save(tmp_path / split / mode.replace(";", "") / "a.png")
    data = load_data(f"imagefolder:{tmp_path}", input_size=(19, 23), channels=channels, augment=True)
    assert (len(data.train), len(data.test)) == (6, 6)
    assert any("alpha channel: dropped" in note for note in data.notes)
    for (path, label), (image, item_label) in zip(data.test.samples, data.test):
        got = preprocess(Image.open(path), input_size=(19, 23), channels=channels, mean=data.mean, std=data.std)
        assert label == item_label and got.shape == (channels, 19, 23) and torch.equal(got, image)


def test_preprocess_reads_each_mode_at_its_depth() -> None:
    gray = Image.fromarray(RNG.integers(0, 256, (9, 7), dtype=np.uint8))
    sixteen = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)  # the same levels in 16 bits
    rgba = _image("RGBA", (7, 9))
    palette = _image("P", (7, 9))

    def run(image: Image.Image, channels: int = 3) -> torch.Tensor:
        return preprocess(image, input_size=(9, 7), channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels)

    assert torch.allclose(run(sixteen), run(gray), atol=1e-6)
    assert torch.equal(run(rgba), run(rgba.convert("RGB")))
    assert torch.equal(run(palette), run(palette.convert("RGB")))
    luma = run(rgba, channels=1)  # within PIL's integer rounding of the same formula
    assert torch.allclose(luma, run(rgba.convert("L"), channels=1), atol=1.01 / 255 / 0.25)


def test_imagefolder_missing_or_empty_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "no_images" / "cat").mkdir(parents=True)
    (tmp_path / "bad" / "cat").mkdir(parents=True)
    _write_bad_files(tmp_path / "bad" / "cat")
    for folder, words in [("missing", "does not exist"), ("empty", "no class folders"), ("no_images", "no images"),
                          ("bad", "none of the 3 images")]:
        with pytest.raises(DataError, match=words) as error:
            load_data(f"imagefolder:{tmp_path / folder}", input_size=(8, 8), channels=3)
        assert "\n" not in str(error.value)


# --- fake and ImageNet names ---------------------------------------------------------------------

def test_fake_is_deterministic_and_sized() -> None:
    first = load_data("fake", input_size=(12, 10), channels=1, fake_classes=3, fake_size=16)
    second = load_data("fake", input_size=(12, 10), channels=1, fake_classes=3, fake_size=16)
    assert (len(first.train), len(first.test), first.classes) == (16, 4, ["0", "1", "2"])
    image, label = first.train[5]
    assert image.shape == (1, 12, 10) and label in (0, 1, 2)
    assert torch.equal(image, second.train[5][0]) and label == second.train[5][1]
    assert not torch.equal(first.test[0][0], image)


def test_imagenet_classes_are_torchvisions() -> None:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    names = imagenet_classes()
    assert len(names) == 1000 and names == list(_IMAGENET_CATEGORIES) and names[0] == "tench"
