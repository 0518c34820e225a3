"""Datasets for ``cnnlab train``, ``eval`` and ``predict``: one ``--data`` string, two splits.

    >>> data = load_data("digits", input_size=(32, 32), channels=1)
    >>> len(data.train), len(data.test), data.classes[:3]
    (1347, 450, ['0', '1', '2'])

Every item is ``(image, label)``: a float32 ``C x H x W`` tensor already resized to the model's
input and normalised with ``data.mean``/``data.std``, and an ``int``. Test items go through exactly
``preprocess`` (digits through the same tensor operations, run once for the whole set), so an
image saved from the test split and preprocessed by ``predict`` gives back the test item bit for bit.

Kinds (``DATA_KINDS``):

- ``digits``: scikit-learn's 1,797 handwritten 8x8 digits; a stratified 75/25 split with
  ``random_state=DIGITS_SEED``. Their values 0..16 become 8-bit grayscale, round(v * 255 / 16):
  all 17 levels stay distinct, and a digit saved as an 8-bit PNG preprocesses to its test item.
  Resized, converted and normalised (with the training split's own mean/std) once, cached.
- ``cifar10[:ROOT]``, ``cifar100[:ROOT]``: torchvision's CIFAR readers on files the user already
  has (ROOT defaults to ``DEFAULT_ROOT``); nothing is downloaded. Usual CIFAR mean/std.
- ``imagefolder:PATH``: one sub-folder of images per class (torchvision ImageFolder's rules),
  split by ``PATH/train`` and ``PATH/test`` (or ``PATH/val``) when present, else per class 80/20
  with ``IMAGEFOLDER_SEED``. Every image is decoded once up front; unreadable ones are skipped
  and named in ``notes``. ImageNet mean/std.
- ``fake``: torchvision's FakeData, deterministic per index, at the model's size and channels.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

DATA_KINDS = ("digits", "cifar10", "cifar100", "imagefolder", "fake")
DIGITS_SEED = 0  # train_test_split(..., test_size=0.25, stratify=y, random_state=DIGITS_SEED)
DIGITS_TEST_FRACTION = 0.25
IMAGEFOLDER_SEED = 0  # per-class shuffle seed of the 80/20 split when PATH has no train/test folders
IMAGEFOLDER_TEST_FRACTION = 0.2
DEFAULT_ROOT = "data"  # CIFAR root when the --data string names none, as in torchvision's tutorials

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR_STATS = {  # per-channel mean and std of the training images
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
FAKE_STATS = ((0.5,), (0.5,))  # FakeData is noise: just centre [0, 1] on 0
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma weights, those of PIL's convert("L")

_SIXTEEN_BIT = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_GRAY = _SIXTEEN_BIT | {"1", "L", "LA", "La", "F"}
_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_NAMES_SHOWN = 5  # unreadable files named in a note


class DataError(ValueError):
    """A ``--data`` string or dataset that cannot be used; the message is one line saying what to do."""


@dataclass
class Data:
    """Train and test splits of one dataset, ready for a DataLoader."""

    train: Dataset  # items (float32 C x H x W tensor, int label), augmented when asked
    test: Dataset  # items as ``preprocess`` gives them, never augmented
    classes: list[str]
    mean: tuple[float, ...]  # normalisation used, one value per output channel
    std: tuple[float, ...]
    notes: list[str] = field(default_factory=list)  # lines for the user: conversions, skipped files


class TensorImages(Dataset):
    """Images held in one preprocessed tensor (digits); 1-channel images are expanded per item."""

    def __init__(self, images: torch.Tensor, targets: Sequence[int], channels: int,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.images = images  # N x 1 x H x W or N x C x H x W, shared with the cache: read only
        self.targets = [int(t) for t in targets]
        self.channels = channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        if image.shape[0] != self.channels:
            image = image.expand(self.channels, -1, -1)  # a view: grayscale repeated to RGB
        return image, self.targets[index]


class ImageFiles(Dataset):
    """Image files with labels (ImageFolder's samples), opened in their own mode per item."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.samples = list(samples)
        self.targets = [target for _, target in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        with Image.open(path) as image:
            return self.transform(image), target


def parse_data(text: str) -> tuple[str, str | None]:
    """Split a ``--data`` string into ``(kind, root)``; root is None where none is given."""
    kind, colon, root = text.partition(":")
    if kind not in DATA_KINDS:
        raise DataError(f"unknown data {text!r}: use digits, cifar10[:ROOT], cifar100[:ROOT], imagefolder:PATH or fake")
    if kind in ("digits", "fake") and colon:
        raise DataError(f"{kind} takes no path (got {text!r}): write --data {kind}")
    if kind == "imagefolder" and not root:
        raise DataError("imagefolder needs a folder: write --data imagefolder:PATH (a sub-folder of images per class)")
    if colon and not root:
        raise DataError(f"{kind}: empty ROOT in {text!r}: write {kind} or {kind}:ROOT")
    return kind, root or None


def load_data(text: str, *, input_size: tuple[int, int], channels: int, augment: bool = False,
              fake_classes: int = 10, fake_size: int = 256) -> Data:
    """Train and test splits for a ``--data`` string, resized to ``input_size`` (H, W) with ``channels``."""
    kind, root = parse_data(text)
    size = _check_size(input_size)
    _check_channels(channels)
    if kind == "digits":
        return _digits(size, channels, augment)
    if kind in ("cifar10", "cifar100"):
        return _cifar(kind, root, size, channels, augment)
    if kind == "imagefolder":
        return _imagefolder(root, size, channels, augment)
    return _fake(size, channels, augment, fake_classes, fake_size)


def preprocess(image: Image.Image, *, input_size: tuple[int, int], channels: int,
               mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The test-time transform: any PIL image to a normalised float32 ``channels x H x W`` tensor.

    8-bit modes scale by 1/255, 16-bit ("I;16", "I") by 1/65535; "1" and "F" go through "L";
    palette and other colour modes through "RGB"; alpha is dropped (as ImageFolder's loader does).
    A colour image for a 1-channel model becomes luminance (``LUMA``), a grayscale one for a
    3-channel model is repeated; the resize is bilinear (antialiased, which matters when shrinking).
    """
    size = _check_size(input_size)
    _check_channels(channels)
    pixels = _shape(_pil_to_float(image)[None], size, channels)
    return _normalise(pixels, mean, std)[0]


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names in torchvision's order (packaged ``data/imagenet_classes.txt``)."""
    text = resources.files("cnnlab").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


# --- pixels ------------------------------------------------------------------------------------

def _pil_to_float(image: Image.Image) -> torch.Tensor:
    """1 x h x w (grayscale) or 3 x h x w (colour) float32 in [0, 1], in the image's own resolution."""
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        array = np.asarray(image).astype(np.float32)  # uint16 (either byte order) or int32
        return torch.from_numpy(np.clip(array / 65535, 0.0, 1.0))[None]
    if mode in _GRAY:
        image = image if mode == "L" else image.convert("L")
    elif mode != "RGB":
        # via RGBA so that a palette's transparency is read, not warned about, before it is dropped
        image = (image.convert("RGBA") if mode in ("P", "PA") else image).convert("RGB")
    array = torch.from_numpy(np.array(image))
    return _uint8_to_float(array[None] if array.ndim == 2 else array.permute(2, 0, 1))


def _uint8_to_float(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float().div(255)


def _shape(pixels: torch.Tensor, size: tuple[int, int], channels: int) -> torch.Tensor:
    """N x c x h x w in [0, 1] -> N x channels x H x W: luminance, bilinear resize, repetition."""
    if pixels.shape[1] == 3 and channels == 1:
        pixels = (pixels * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    if tuple(pixels.shape[-2:]) != size:
        pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)
    if pixels.shape[1] == 1 and channels == 3:
        pixels = pixels.expand(-1, 3, -1, -1)
    return pixels


def _normalise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor([float(m) for m in mean], dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.tensor([float(s) for s in std], dtype=torch.float32).view(-1, 1, 1)
    return pixels.sub(mean_t).div(std_t)


def _luma_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float], tuple[float]]:
    """Mean (exact) and std (the same weighting, close for strongly correlated channels) of luminance."""
    return (sum(w * m for w, m in zip(LUMA, mean)),), (sum(w * s for w, s in zip(LUMA, std)),)


def _check_size(input_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(input_size)
    if len(size) != 2 or not all(isinstance(n, int) and n > 0 for n in size):
        raise DataError(f"input_size must be two positive integers (H, W), got {input_size!r}")
    return size  # type: ignore[return-value]


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}: the data are grayscale or RGB")


def _channel_note(source: str, native: int, channels: int) -> list[str]:
    if native == 1 and channels == 3:
        return [f"{source} are grayscale: repeated to 3 channels for a 3-channel model"]
    if native == 3 and channels == 1:
        return [f"{source} are RGB: converted to luminance (0.299 R + 0.587 G + 0.114 B) for a 1-channel model"]
    return []


def _crop_flip(size: tuple[int, int]) -> tuple[list, str]:
    """Training augmentation for natural images: padded random crop and horizontal flip."""
    from torchvision import transforms

    padding = max(1, round(min(size) / 8))  # 4 at 32 x 32, the CIFAR ResNet paper's setting
    # NOTE: the crop pads the normalised tensor with 0, the mean colour (the reference pads black)
    note = f"augment: random crop (padding {padding}) and horizontal flip on the training split"
    return [transforms.RandomCrop(size, padding=padding), transforms.RandomHorizontalFlip()], note


def _transforms(size: tuple[int, int], channels: int, mean: Sequence[float], std: Sequence[float],
                augment: bool, notes: list[str]) -> tuple[Callable, Callable]:
    """(train, test) transforms for PIL items: test is ``preprocess``, train adds crop and flip."""
    from torchvision import transforms

    test = functools.partial(preprocess, input_size=size, channels=channels, mean=tuple(mean), std=tuple(std))
    if not augment:
        return test, test
    extra, note = _crop_flip(size)
    notes.append(note)
    return transforms.Compose([test, *extra]), test


# --- digits ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _digits_split() -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """Fixed stratified split of load_digits as uint8 N x 1 x 8 x 8 tensors and labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.rint(digits.data * (255 / 16)).astype(np.uint8).reshape(-1, 1, 8, 8)
    train, test = train_test_split(np.arange(len(digits.target)), test_size=DIGITS_TEST_FRACTION,
                                   stratify=digits.target, random_state=DIGITS_SEED)
    return torch.from_numpy(pixels[train]), digits.target[train], torch.from_numpy(pixels[test]), digits.target[test]


@functools.lru_cache(maxsize=2)
def _digits_tensors(size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Resized, normalised 1-channel train and test tensors and the train mean/std (cached per size)."""
    train_px, _, test_px, _ = _digits_split()
    train = _shape(_uint8_to_float(train_px), size, 1)
    mean, std = train.mean().item(), train.std().item()
    test = _shape(_uint8_to_float(test_px), size, 1)
    return _normalise(train, (mean,), (std,)), _normalise(test, (mean,), (std,)), mean, std


class _PilAffine:
    """Apply a torchvision RandomAffine to a 1 x H x W float tensor as a PIL "F" image.

    PIL warps one small image in ~70 us on one thread; torch's grid_sample on the same tensor
    took 5-16 ms per item on this busy 2-core machine, waiting on its intra-op threads.
    """

    def __init__(self, affine: Callable[[Image.Image], Image.Image]) -> None:
        self.affine = affine

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        warped = self.affine(Image.fromarray(image[0].numpy()))  # float32 -> mode "F"
        return torch.from_numpy(np.array(warped))[None]


def _digits(size: tuple[int, int], channels: int, augment: bool) -> Data:
    from torchvision import transforms

    train, test, mean, std = _digits_tensors(size)
    _, train_y, _, test_y = _digits_split()
    notes = [f"digits: {len(train_y)} train / {len(test_y)} test images, 8x8 resized to {size[0]}x{size[1]} (bilinear)"]
    notes += _channel_note("digits", 1, channels)
    augmentation = None
    if augment:
        # no flips: digits are not mirror-symmetric; the fill is the normalised background (0)
        augmentation = _PilAffine(transforms.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1),
                                                          interpolation=transforms.InterpolationMode.BILINEAR,
                                                          fill=(0.0 - mean) / std))
        notes.append("augment: random affine (rotation ±10°, shift ±10 %, scale 0.9-1.1, no flips) on train")
    return Data(train=TensorImages(train, train_y, channels, augmentation), test=TensorImages(test, test_y, channels),
                classes=[str(d) for d in range(10)], mean=(mean,) * channels, std=(std,) * channels, notes=notes)


# --- CIFAR -------------------------------------------------------------------------------------

def _cifar(kind: str, root_text: str | None, size: tuple[int, int], channels: int, augment: bool) -> Data:
    from torchvision.datasets import CIFAR10, CIFAR100

    reader = CIFAR10 if kind == "cifar10" else CIFAR100
    name = "CIFAR-10" if kind == "cifar10" else "CIFAR-100"
    root = Path(root_text or DEFAULT_ROOT).expanduser()
    folder = root / reader.base_folder
    how = f"download it with torchvision.datasets.{reader.__name__}({str(root)!r}, download=True) first"
    if not folder.is_dir():
        raise DataError(f"{kind}: no {name} batches under {root} (expected {reader.base_folder}/); {how}")
    mean, std = CIFAR_STATS[kind] if channels == 3 else _luma_stats(*CIFAR_STATS[kind])
    notes = _channel_note(f"{kind} images", 3, channels)
    train_tf, test_tf = _transforms(size, channels, mean, std, augment, notes)
    try:
        train = reader(str(root), train=True, transform=train_tf, download=False)
        test = reader(str(root), train=False, transform=test_tf, download=False)
    except Exception:  # checksum, truncated or foreign pickles fail in many ways; all mean "not CIFAR"
        raise DataError(f"{kind}: {_cifar_problem(reader, folder)}; delete {folder} and {how}") from None
    notes.insert(0, f"{kind}: {len(train)} train / {len(test)} test images from {folder}")
    return Data(train=train, test=test, classes=list(train.classes), mean=tuple(mean), std=tuple(std), notes=notes)


def _cifar_problem(reader: type, folder: Path) -> str:
    """Which CIFAR file is missing or fails torchvision's md5 check (computed only after a failure)."""
    from torchvision.datasets.utils import check_integrity

    for filename, md5 in [*reader.train_list, *reader.test_list, (reader.meta["filename"], reader.meta["md5"])]:
        path = folder / filename
        if not path.is_file():
            return f"{path} is missing"
        if not check_integrity(str(path), md5):
            return f"{path} is corrupt (md5 mismatch)"
    return f"the files in {folder} do not read as {reader.__name__} batches"


# --- image folders -----------------------------------------------------------------------------

def _imagefolder(path_text: str | None, size: tuple[int, int], channels: int, augment: bool) -> Data:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    root = Path(path_text or "").expanduser()
    layout = f"expected {root}/CLASS/IMAGE.jpg, or {root}/train/CLASS/... and {root}/test/CLASS/..."
    if not root.is_dir():
        raise DataError(f"imagefolder: {root} {'is not a folder' if root.exists() else 'does not exist'}; {layout}")
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None) if train_dir != root else None
    classes = _class_folders(train_dir, layout)
    class_to_idx = {c: i for i, c in enumerate(classes)}
    train_samples = make_dataset(str(train_dir), class_to_idx, IMG_EXTENSIONS, allow_empty=True)
    test_samples: list[tuple[str, int]] = []
    if test_dir is not None:
        test_classes = _class_folders(test_dir, layout)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            names = ", ".join(unknown[:_NAMES_SHOWN])
            raise DataError(f"imagefolder: {test_dir.name}/ has classes that train/ lacks: {names}")
        present = {c: class_to_idx[c] for c in test_classes}
        test_samples = make_dataset(str(test_dir), present, IMG_EXTENSIONS, allow_empty=True)
    if not train_samples:
        raise DataError(f"imagefolder: no images under {train_dir} (extensions {', '.join(IMG_EXTENSIONS)}); {layout}")

    notes: list[str] = []
    train_samples, test_samples, modes = _readable(train_samples, test_samples, root, notes)
    if test_dir is None:
        train_samples, test_samples = _split(train_samples)
        notes.insert(0, f"imagefolder: no test/ (or val/) folder: per-class {1 - IMAGEFOLDER_TEST_FRACTION:.0%}/"
                        f"{IMAGEFOLDER_TEST_FRACTION:.0%} split (seed {IMAGEFOLDER_SEED})")
    if not test_samples:
        raise DataError(f"imagefolder: no readable test images under {test_dir or root}; add some "
                        "(a class needs 2 images to be split)")
    notes.insert(0, f"imagefolder: {len(train_samples)} train / {len(test_samples)} test, {len(classes)} classes")
    notes += _mode_notes(modes, channels)
    mean, std = IMAGENET_STATS if channels == 3 else _luma_stats(*IMAGENET_STATS)
    train_tf, test_tf = _transforms(size, channels, mean, std, augment, notes)
    return Data(train=ImageFiles(train_samples, train_tf), test=ImageFiles(test_samples, test_tf),
                classes=classes, mean=tuple(mean), std=tuple(std), notes=notes)


def _class_folders(directory: Path, layout: str) -> list[str]:
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise DataError(f"imagefolder: no class folders in {directory}; {layout}")
    return classes


def _image_mode(path: str) -> str | None:
    """Decode the whole file; its PIL mode, or None when it cannot be read as an image."""
    try:
        with Image.open(path) as image:
            image.draft(image.mode, (1, 1))  # JPEG decodes at 1/8 scale, still reading every byte
            image.load()
            return image.mode
    except Exception:  # Pillow reports bad files as OSError, SyntaxError, ValueError, struct.error, ...
        return None


def _readable(train: list[tuple[str, int]], test: list[tuple[str, int]], root: Path,
              notes: list[str]) -> tuple[list[tuple[str, int]], list[tuple[str, int]], Counter]:
    """Drop the samples whose files do not decode, noting how many and which; count the modes."""
    paths = [path for path, _ in train + test]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes without the GIL
        mode_of = dict(zip(paths, pool.map(_image_mode, paths)))
    bad = [os.path.relpath(path, root) for path in paths if mode_of[path] is None]
    if bad:
        more = ", ..." if len(bad) > _NAMES_SHOWN else ""
        notes.append(f"imagefolder: skipped {len(bad)} unreadable image{'s' * (len(bad) > 1)} "
                     f"({', '.join(bad[:_NAMES_SHOWN])}{more})")
    if len(bad) == len(paths):
        raise DataError(f"imagefolder: none of the {len(paths)} images under {root} can be read (e.g. {bad[0]})")
    modes = Counter(mode for mode in mode_of.values() if mode is not None)
    return [s for s in train if mode_of[s[0]]], [s for s in test if mode_of[s[0]]], modes


def _split(samples: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Per class, a seeded shuffle puts round(20 %) in test (at least 1 when the class has 2 images)."""
    by_class: dict[int, list[tuple[str, int]]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    train, test = [], []
    for label, members in sorted(by_class.items()):
        order = np.random.default_rng([IMAGEFOLDER_SEED, label]).permutation(len(members))
        n = len(members)
        n_test = 0 if n < 2 else min(n - 1, max(1, math.floor(n * IMAGEFOLDER_TEST_FRACTION + 0.5)))
        test += [members[i] for i in sorted(order[:n_test])]
        train += [members[i] for i in sorted(order[n_test:])]
    return train, test


def _mode_notes(modes: Counter, channels: int) -> list[str]:
    total = sum(modes.values())
    gray = sum(n for mode, n in modes.items() if mode in _GRAY)
    alpha = sum(n for mode, n in modes.items() if mode in _ALPHA)
    notes = []
    if gray and channels == 3:
        notes += _channel_note(f"imagefolder: {gray} of {total} images", 1, 3)
    if gray < total and channels == 1:
        notes += _channel_note(f"imagefolder: {total - gray} of {total} images", 3, 1)
    if alpha:
        notes.append(f"imagefolder: {alpha} of {total} images have an alpha channel: dropped")
    return notes


# --- fake --------------------------------------------------------------------------------------

def _fake(size: tuple[int, int], channels: int, augment: bool, classes: int, n: int) -> Data:
    from torchvision.datasets import FakeData

    if classes < 1 or n < 4:
        raise DataError(f"fake needs at least 1 class and 4 images (got {classes} classes, {n} images)")
    mean, std = FAKE_STATS[0] * channels, FAKE_STATS[1] * channels
    notes = [f"fake: {n} train / {n // 4} test random images of {channels}x{size[0]}x{size[1]}, {classes} classes"]
    train_tf, test_tf = _transforms(size, channels, mean, std, augment, notes)
    image_size = (channels, *size)
    # each image is seeded by its index + random_offset: the test images are not train images
    train = FakeData(size=n, image_size=image_size, num_classes=classes, transform=train_tf, random_offset=0)
    test = FakeData(size=n // 4, image_size=image_size, num_classes=classes, transform=test_tf, random_offset=n)
    return Data(train=train, test=test, classes=[str(c) for c in range(classes)], mean=mean, std=std, notes=notes)
