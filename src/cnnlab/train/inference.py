"""Evaluate and predict with a trained model: ``cnnlab eval`` and ``cnnlab predict``.

A trained model comes from one of two places:

* a checkpoint written by ``cnnlab train`` (``from_checkpoint``): the class names, the
  normalisation, the input size and the builder's arguments travel inside it, so an image from
  disk is preprocessed exactly as the test split was (``cnnlab.train.data.preprocess``);
* torchvision's pretrained ImageNet weights for a model that shares torchvision's name
  (``from_torchvision``), read from the local torch hub cache only -- nothing is downloaded here.
  Images then go through the weights' own transform (resize, centre crop, ImageNet mean/std).

``evaluate_model`` gives top-1, top-5, the loss the training reported as ``test_loss`` (the same
objective) and, for up to ``CONFUSION_MAX_CLASSES`` classes, the confusion matrix;
``predict_images`` gives the top-k classes with their softmax probabilities.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

import torch
from PIL import Image
from torch import nn

from cnnlab.train.checkpoint import CheckpointError, load_state, load_weights
from cnnlab.train.data import Data, DataError, _pil_to_float, imagenet_classes, load_data, preprocess

__all__ = [
    "CONFUSION_MAX_CLASSES", "EvalResult", "Prediction", "Trained", "WeightsError", "confusion_figure",
    "evaluate_model", "from_checkpoint", "from_torchvision", "hub_weights_file", "open_image", "predict_images",
]

CONFUSION_MAX_CLASSES = 20  # a larger matrix is unreadable as text or as a figure

# torchvision's pretrained GoogLeNet and Inception v3 set ``transform_input=True``: the network
# itself maps ImageNet-normalised input to (x - 0.5) / 0.5. Normalising with 0.5/0.5 directly is
# the same function, and lets the zoo's models (which have no such flag) use those weights.
_TRANSFORM_INPUT = frozenset({"googlenet", "inception_v3"})
# The weights of these two hold their auxiliary heads: built with them, unused in eval mode.
_AUX_IN_WEIGHTS = frozenset({"googlenet", "inception_v3"})
# DenseNet's released files predate torchvision's key names: "denselayer1.norm.1.weight" is
# now "denselayer1.norm1.weight" (torchvision's densenet.py applies the same rewrite).
_DENSENET_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


class WeightsError(Exception):
    """Pretrained weights that are not available here; one line saying how to get them."""


@dataclass
class Trained:
    """A model ready for inference and what it needs to read images."""

    name: str
    model: nn.Module  # in eval mode
    classes: list[str]
    input_size: tuple[int, int, int]  # C x H x W the model is fed
    transform: Callable[[Image.Image], torch.Tensor]  # any PIL image -> C x H x W, as in training
    source: str  # where the weights came from, for the user
    data: str | None = None  # the --data it was trained on (checkpoints)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    label_smoothing: float = 0.0


@dataclass
class EvalResult:
    """``cnnlab eval``'s numbers; ``to_dict`` is its ``--json``."""

    model: str
    data: str
    top1: float
    top5: float
    loss: float
    n: int
    classes: list[str]
    confusion: list[list[int]] | None = None  # rows true class, columns predicted; <= 20 classes
    topk: int = 5  # the k of "top5" (fewer with fewer classes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "data": self.data, "top1": self.top1, "top5": self.top5,
                               "loss": self.loss, "n": self.n, "classes": self.classes}
        if self.confusion is not None:
            out["confusion"] = self.confusion
        return out


@dataclass
class Prediction:
    """One image's top-k: (class index, class name, probability), most likely first."""

    image: str
    top: list[tuple[int, str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image,
                "top": [{"index": i, "class": name, "probability": p} for i, name, p in self.top]}


# -- loading ----------------------------------------------------------------------------------
def from_checkpoint(path: str | Path, name: str | None = None, builder: Callable[[dict[str, Any]], Any] | None = None,
                    device: str | torch.device = "cpu") -> Trained:
    """The model of a ``cnnlab train`` checkpoint, in eval mode. ``name`` (a registered model, or
    the label of ``builder``) must be the one the checkpoint was trained as; ``builder(model_args)``
    returns a ``ModelBuilder`` for a model of your own (default: the registered ``name``)."""
    path = Path(path)
    state = load_state(path)
    trained = state.get("model_name")
    name = name or trained
    if not name:
        raise CheckpointError(f"{path}: the checkpoint does not say which model it holds; name the model")
    if trained is not None and trained != name:
        raise CheckpointError(f"{path} holds a {trained} checkpoint, not {name}")
    missing = [k for k in ("classes", "mean", "std", "input_size") if not state.get(k)]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {', '.join(missing)} (not written by cnnlab train?)")
    args = state.get("args") or {}
    model_args = dict(args.get("model_args") or {})
    from cnnlab.train.engine import registered_builder

    built = builder(model_args) if builder is not None else registered_builder(name, model_args)
    classes = [str(c) for c in state["classes"]]
    channels, height, width = (int(v) for v in state["input_size"])
    if channels != built.channels:
        raise CheckpointError(f"{path}: trained on {channels}-channel input, but {name} takes {built.channels}")
    model = built.build(len(classes))
    load_weights(model, state["model"], f"{path} ({trained or name})")
    model.to(device).eval()
    mean, std = tuple(float(m) for m in state["mean"]), tuple(float(s) for s in state["std"])
    transform = functools.partial(preprocess, input_size=(height, width), channels=channels, mean=mean, std=std)
    return Trained(name, model, classes, (channels, height, width), transform, f"checkpoint {path}",
                   data=args.get("data"), mean=mean, std=std, label_smoothing=0.0)


def hub_weights_file(name: str) -> tuple[Path, Any]:
    """(where torchvision keeps ``name``'s default pretrained weights in the torch hub cache, the
    weights enum). Raises ``WeightsError`` when torchvision has no such model."""
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        from cnnlab.registry import list_models

        shared = sorted(set(list_models()) & set(torchvision.models.list_models(module=torchvision.models)))
        raise WeightsError(f"torchvision has no pretrained {name}; --weights torchvision works for the zoo's "
                           f"{len(shared)} models that share torchvision's names (e.g. {', '.join(shared[:4])}); "
                           "use --checkpoint for the others")
    weights = torchvision.models.get_model_weights(name).DEFAULT
    filename = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename, weights


def from_torchvision(name: str, device: str | torch.device = "cpu") -> Trained:
    """The zoo's ``name`` with torchvision's default pretrained weights, read from the torch hub
    cache (``$TORCH_HOME/hub/checkpoints``); ``WeightsError`` says how to get them when absent."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    from cnnlab.registry import create_model

    file, weights = hub_weights_file(name)
    if not file.is_file():
        raise WeightsError(
            f"torchvision's {weights} weights are not in the torch hub cache ({file}); nothing is downloaded "
            f"at run time: fetch them once with  python -c \"import torchvision; torchvision.models.get_model("
            f"'{name}', weights='DEFAULT')\"  (or copy the file there), or use --checkpoint")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line naming it
        raise CheckpointError(f"{file}: truncated or corrupt weights file ({type(exc).__name__}); "
                              "delete it and fetch it again") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: not a state dict")
    state = {_DENSENET_OLD_KEY.sub(r"\1\2", k): v for k, v in state.items()}
    model = create_model(name, **({"aux_logits": True} if name in _AUX_IN_WEIGHTS else {}))
    load_weights(model, state, f"{file} (torchvision's {name})")
    model.to(device).eval()
    preset = weights.transforms()
    mean, std = ((0.5,) * 3, (0.5,) * 3) if name in _TRANSFORM_INPUT else (tuple(preset.mean), tuple(preset.std))
    transform_tensor = ImageClassification(crop_size=preset.crop_size[0], resize_size=preset.resize_size[0],
                                           mean=mean, std=std, interpolation=InterpolationMode(preset.interpolation))
    crop = int(preset.crop_size[0])

    def transform(image: Image.Image) -> torch.Tensor:
        pixels = _pil_to_float(image)
        return transform_tensor(pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels)

    classes = list(weights.meta.get("categories") or imagenet_classes())
    return Trained(name, model, classes, (3, crop, crop), transform, f"torchvision {weights} ({file})",
                   mean=mean, std=std)


def open_image(path: str | Path) -> Image.Image:
    """The image at ``path``, decoded now (so that a corrupt file fails here, in one line)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such image")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not an image")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({str(exc).splitlines()[0][:120] or type(exc).__name__})") from exc


# -- running ----------------------------------------------------------------------------------
@torch.inference_mode()
def predict_images(trained: Trained, images: Sequence[tuple[str, Image.Image]], topk: int = 5,
                   batch_size: int = 32) -> list[Prediction]:
    """Top-``topk`` classes and softmax probabilities for each ``(label, PIL image)``."""
    device = next(iter(trained.model.parameters()), torch.empty(0)).device
    k = max(1, min(topk, len(trained.classes)))
    predictions: list[Prediction] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = torch.stack([trained.transform(image) for _, image in chunk]).to(device)
        logits = _logits(trained.model(batch), trained.name)
        probabilities, indices = logits.float().softmax(dim=1).topk(k, dim=1)
        for (label, _), p_row, i_row in zip(chunk, probabilities.tolist(), indices.tolist()):
            predictions.append(Prediction(label, [(i, trained.classes[i], p) for i, p in zip(i_row, p_row)]))
    return predictions


def evaluate_model(trained: Trained, data: str | None = None, *, batch_size: int = 256,
                   progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Top-1, top-5, loss (the training objective without label smoothing, so equal to the
    ``test_loss`` ``cnnlab train`` reported) and, for <= 20 classes, the confusion matrix, on the
    test split of ``data`` (default: the data the checkpoint was trained on), preprocessed as in
    training. ``progress(done, total)`` is called after every batch."""
    from torch.utils.data import DataLoader

    from cnnlab.train.losses import make_objective

    if trained.data is None:
        raise DataError("cnnlab eval reads the test split the way training does (resized, not cropped), which "
                        "is not how torchvision's weights were evaluated; evaluate a --checkpoint")
    data = data or trained.data
    split = trained_splits(trained, data, use="evaluate on")
    objective = make_objective(trained.model, mean=trained.mean, std=trained.std,
                               num_classes=len(trained.classes), label=trained.name)
    device = next(iter(trained.model.parameters()), torch.empty(0)).device
    n_classes = len(trained.classes)
    k = min(5, n_classes)
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long) if n_classes <= CONFUSION_MAX_CLASSES else None
    loss_sum, top1, topk, count = 0.0, 0, 0, 0
    total = len(split.test)  # type: ignore[arg-type]
    with torch.no_grad():
        for images, target in DataLoader(split.test, batch_size=batch_size, shuffle=False):
            images, target = images.to(device), target.to(device)
            loss, logits = objective(trained.model, images, target)
            best = logits.topk(k, dim=1).indices
            loss_sum += loss.item() * target.shape[0]
            top1 += (best[:, 0] == target).sum().item()
            topk += (best == target[:, None]).any(dim=1).sum().item()
            count += target.shape[0]
            if confusion is not None:
                confusion += torch.bincount(target.cpu() * n_classes + best[:, 0].cpu(),
                                            minlength=n_classes * n_classes).view(n_classes, n_classes)
            if progress is not None:
                progress(count, total)
    if count == 0:
        raise DataError(f"{data}: the test split is empty")
    return EvalResult(trained.name, data, top1 / count, topk / count, loss_sum / count, count, list(trained.classes),
                      confusion.tolist() if confusion is not None else None, k)


def trained_splits(trained: Trained, data: str | None = None, *, use: str = "use", augment: bool = False) -> Data:
    """The train and test splits of ``data`` (default: the checkpoint's) as ``trained`` expects
    them: its input size and channels, its normalisation (items normalised with the data's own
    statistics are brought to the model's), its classes (a ``DataError`` saying to ``use`` data
    with the same classes when they differ); the training split augmented when ``augment``."""
    data = data or trained.data
    if data is None:
        raise DataError("give --data: the weights do not say which data they were trained on")
    channels, height, width = trained.input_size
    split = load_data(data, input_size=(height, width), channels=channels, augment=augment)
    if list(split.classes) != list(trained.classes):
        raise DataError(f"{data} has {len(split.classes)} classes ({_names(split.classes)}); the checkpoint was "
                        f"trained on {len(trained.classes)} ({_names(trained.classes)}): {use} data with the "
                        "same classes")
    if tuple(round(m, 6) for m in split.mean) != tuple(round(m, 6) for m in trained.mean):
        # e.g. an imagefolder trained with one split and evaluated on another folder
        split.train = _Renormalised(split.train, split.mean, split.std, trained.mean, trained.std)
        split.test = _Renormalised(split.test, split.mean, split.std, trained.mean, trained.std)
    return split


class _Renormalised(torch.utils.data.Dataset):
    """Test items normalised with other statistics than the model was trained with, brought to
    the model's (an imagefolder trained with one split and evaluated on another folder)."""

    def __init__(self, items: Any, mean: Sequence[float], std: Sequence[float], to_mean: Sequence[float],
                 to_std: Sequence[float]) -> None:
        self.items = items
        shape = (-1, 1, 1)
        self.mean, self.std = torch.tensor(mean).view(shape), torch.tensor(std).view(shape)
        self.to_mean, self.to_std = torch.tensor(to_mean).view(shape), torch.tensor(to_std).view(shape)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, target = self.items[index]
        return (image * self.std + self.mean - self.to_mean) / self.to_std, target


def _logits(output: Any, name: str) -> torch.Tensor:
    logits = output if isinstance(output, torch.Tensor) else output[0]
    if logits.dim() != 2:
        raise ValueError(f"{name} returned {tuple(logits.shape)}; prediction needs logits (N, classes)")
    return logits


def _names(classes: Sequence[str]) -> str:
    shown = ", ".join(map(str, classes[:4]))
    return shown + (", ..." if len(classes) > 4 else "")


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> Any:
    """The confusion matrix as a matplotlib figure: true class in rows, predicted in columns, the
    counts written in each cell (mistakes in red)."""
    from cnnlab.bench.plots import pyplot

    plt = pyplot()
    size = max(4.2, 0.32 * len(classes) + 1.5)
    fig, ax = plt.subplots(figsize=(size + 0.4, size))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                        color="white" if i == j else "#b00020")
    ax.set_xticks(range(len(classes)), classes, rotation=90 if max(map(len, classes), default=0) > 3 else 0)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
