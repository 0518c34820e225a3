"""Training recipes as data: one frozen ``Recipe`` per paper (or per documented preset), the
hyperparameters its authors report, and the section they come from.

A recipe gives the defaults of ``cnnlab train``; every flag given on the command line overrides
its field (``resolve``). ``default_recipe(model)`` picks the recipe of a model's family. Batch
sizes and epochs are the papers' even where they are far beyond one CPU (ShuffleNet's batch of
1024): override ``--batch-size`` and ``--epochs`` for a quick run. Learning rates are not rescaled
automatically when the batch changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = [
    "OPTIMIZERS",
    "RECIPES",
    "SCHEDULERS",
    "Recipe",
    "default_recipe",
    "get_recipe",
    "recipe_fields",
    "recipe_names",
]

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
# Every scheduler is stepped once per optimizer step (so a run interrupted mid-epoch resumes
# exactly); "step" divides at epoch boundaries: at ``milestones`` (fractions of the epochs) or
# every ``step_epochs`` epochs.
SCHEDULERS = ("cosine", "step", "linear", "onecycle", "none")


@dataclass(frozen=True)
class Recipe:
    """How a paper trained its network. Field names are ``cnnlab train``'s flags."""

    name: str
    source: str  # the paper and section the numbers come from
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.9  # SGD momentum, RMSprop momentum
    nesterov: bool = False
    weight_decay: float = 0.0
    # Weight decay on depthwise filters (conv groups == in_channels > 1); None: ``weight_decay``.
    depthwise_weight_decay: float | None = None
    scheduler: str = "none"
    milestones: tuple[float, ...] = ()  # "step": fractions of the epochs at which LR *= gamma
    step_epochs: float | None = None  # "step": LR *= gamma every this many epochs instead
    gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: bool = False
    rmsprop_alpha: float = 0.9  # RMSprop's decay of the squared-gradient average
    rmsprop_eps: float = 1.0  # TensorFlow's RMSprop epsilon of the Inception/MobileNet papers
    threads: int | None = None  # CPU threads (None: torch's default); not the paper's, this machine's
    notes: str = ""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe {self.name}: optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"recipe {self.name}: scheduler must be one of {', '.join(SCHEDULERS)}")
        if self.scheduler == "step" and not self.milestones and self.step_epochs is None:
            raise ValueError(f"recipe {self.name}: a step schedule needs milestones or step_epochs")
        if any(not 0 < m < 1 for m in self.milestones):
            raise ValueError(f"recipe {self.name}: milestones are fractions of the epochs, in (0, 1)")

    def settings(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (tuples become lists), without name, source, notes."""
        data = asdict(self)
        for key in ("name", "source", "notes"):
            data.pop(key)
        data["milestones"] = list(self.milestones)
        return data


def _recipes(*items: Recipe) -> dict[str, Recipe]:
    table: dict[str, Recipe] = {}
    for item in items:
        if item.name in table:
            raise ValueError(f"recipe {item.name!r} is defined twice")
        table[item.name] = item
    return table


RECIPES: dict[str, Recipe] = _recipes(
    Recipe(
        name="lenet5",
        source="cnnlab's preset for LeNet-5 on digits (LeCun et al. 1998 trained 20 passes with "
               "stochastic diagonal Levenberg-Marquardt, §II.C and Appendix C)",
        epochs=30, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, scheduler="cosine", augment=True,
        threads=1,
        notes="not the paper's optimiser: SGD with cosine decay and small affine augmentation reaches "
              "98.9-99.8 % on the digits split (8 seeds measured) in ~15 s on 2 CPU cores; one thread, as "
              "a 32x32 LeNet gains nothing from intra-op parallelism and loses much on a busy machine",
    ),
    Recipe(
        name="lenet5_paper",
        source="cnnlab's preset for the paper's LeNet-5 (partial C3, RBF output) on digits; the RBF "
               "penalties make large logits that SGD at LeNet-5's rate does not survive",
        epochs=60, batch_size=32, lr=0.003, optimizer="adamw", weight_decay=1e-4, scheduler="cosine", augment=True,
        threads=1,
        notes="97.78 % on the digits split for each of seeds 0-2, ~75 s (lr 0.001 for 40 epochs: 96.9-97.6 %, "
              "one seed under 97 %; lr 0.005: 95.8-98.4 %); SGD above lr 0.005 diverges",
    ),
    Recipe(
        name="capsnet",
        source="Sabour, Frosst & Hinton 2017, §4: Adam with TensorFlow's defaults and an exponentially "
               "decaying learning rate; margin loss plus 0.0005 x reconstruction loss",
        epochs=15, batch_size=64, lr=0.001, optimizer="adamw", weight_decay=0.0, scheduler="step",
        step_epochs=1, gamma=0.9,
        notes="the paper's decay rate is not given; 0.9 per epoch as in its public re-implementations",
    ),
    Recipe(
        name="resnet_cifar",
        source="He et al. 2016, §4.2: SGD, batch 128, lr 0.1, momentum 0.9, weight decay 1e-4, LR / 10 at "
               "32k and 48k iterations, stop at 64k (~164 epochs); 4-pixel pad, 32x32 crop, flip",
        epochs=164, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4, scheduler="step",
        milestones=(0.5, 0.75), augment=True,
    ),
    Recipe(
        name="resnet_imagenet",
        source="He et al. 2016, §3.4: SGD, batch 256, lr 0.1 divided by 10 when the error plateaus, "
               "momentum 0.9, weight decay 1e-4; every 30 of 90 epochs as torchvision's reference",
        epochs=90, batch_size=256, lr=0.1, momentum=0.9, weight_decay=1e-4, scheduler="step",
        step_epochs=30, augment=True,
        notes="the default of ImageNet-sized models without a recipe of their own",
    ),
    Recipe(
        name="densenet_cifar",
        source="Huang et al. 2017, §4.2: SGD, batch 64, 300 epochs, lr 0.1 / 10 at 50 % and 75 % of the "
               "epochs, weight decay 1e-4, Nesterov momentum 0.9 without dampening",
        epochs=300, batch_size=64, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
        scheduler="step", milestones=(0.5, 0.75), augment=True,
    ),
    Recipe(
        name="mobilenet_v1",
        source="Howard et al. 2017, §4: RMSprop with asynchronous gradient descent like Inception V3 (lr "
               "0.045, decay 0.9, eps 1.0, x0.94 every 2 epochs: Szegedy et al. 2016, §8); little weight "
               "decay and none on the depthwise filters (§3.2); less augmentation, no label smoothing",
        epochs=100, batch_size=96, lr=0.045, optimizer="rmsprop", momentum=0.9, weight_decay=4e-5,
        depthwise_weight_decay=0.0, scheduler="step", step_epochs=2, gamma=0.94,
        notes="weight decay 4e-5 is TF-slim's MobileNet default; the paper says only 'very little'",
    ),
    Recipe(
        name="shufflenet_v2",
        source="Ma et al. 2018, §4 after Zhang et al. 2018 (ShuffleNet, §4): SGD momentum 0.9, lr 0.5 "
               "decreasing linearly to 0, weight decay 4e-5, batch 1024, 3e5 iterations (~240 epochs)",
        epochs=240, batch_size=1024, lr=0.5, momentum=0.9, weight_decay=4e-5, scheduler="linear",
        augment=True,
    ),
)


def recipe_names() -> list[str]:
    """The recipes' names, in definition order."""
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    """The recipe ``name``; a ValueError naming the known ones otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}") from None


# Model family (the registry's ``ModelInfo.family``) -> recipe; the CIFAR variants (32x32 input)
# of ResNet-like families take ``_CIFAR_FAMILIES``' recipe instead.
_FAMILY_RECIPES: dict[str, str] = {
    "LeNet": "lenet5",
    "CapsNet": "capsnet",
    "MobileNet V1": "mobilenet_v1",
    "MobileNetV2": "mobilenet_v1",
    "MobileNetV3": "mobilenet_v1",
    "MnasNet": "mobilenet_v1",
    "IGCV3": "mobilenet_v1",
    "ShuffleNet": "shufflenet_v2",
    "ShuffleNet V2": "shufflenet_v2",
}
_MODEL_RECIPES: dict[str, str] = {"lenet5_paper": "lenet5_paper"}  # a variant unlike its family
_CIFAR_FAMILIES: dict[str, str] = {
    "DenseNet": "densenet_cifar",
    "CondenseNet": "densenet_cifar",
}


def default_recipe(model: str) -> str:
    """The recipe ``cnnlab train MODEL`` uses without ``--recipe``: the model's own
    (``lenet5_paper``), else its family's (LeNet-5 for LeNet, CapsNet's for CapsNet, MobileNet
    V1's for the mobile families, ShuffleNet V2's for ShuffleNets), DenseNet's CIFAR recipe for
    32x32 DenseNets, ResNet's CIFAR recipe for other 32x32 models, ResNet's ImageNet recipe for the
    rest and for models that are not registered."""
    from cnnlab.registry import model_info

    try:
        info = model_info(model)
    except ValueError:
        return "resnet_imagenet"
    if model in _MODEL_RECIPES:
        return _MODEL_RECIPES[model]
    if info.family in _FAMILY_RECIPES:
        return _FAMILY_RECIPES[info.family]
    if info.input_size[1] <= 32:
        return _CIFAR_FAMILIES.get(info.family, "resnet_cifar")
    return "resnet_imagenet"


def recipe_fields() -> set[str]:
    """The names of the settings a recipe holds (the flags it gives defaults to)."""
    return {f.name for f in fields(Recipe)} - {"name", "source", "notes"}

