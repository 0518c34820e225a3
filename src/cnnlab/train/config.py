"""A run's resolved arguments: the recipe's defaults with the explicit choices on top.

``resolve_config(model, recipe=..., **choices)`` is what ``cnnlab train`` calls; the result is
saved as ``args.json`` beside the checkpoint and inside it, and ``--resume`` starts from the saved
copy (``resumed_config``), so a resumed run trains exactly as it started.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from cnnlab.train.recipes import OPTIMIZERS, SCHEDULERS, default_recipe, get_recipe

__all__ = ["RUNTIME_FIELDS", "TrainConfig", "default_out", "resolve_config", "resumed_config"]

# Fields that do not change what is computed: a resumed run may set them differently.
RUNTIME_FIELDS = frozenset({"workers", "out", "device", "threads"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. ``input_size`` (H, W) None: the model's native
    size. ``recipe`` is the recipe the defaults came from; ``model_args`` the model builder's
    keyword arguments (``--arg``); ``device`` "auto" is CUDA when there is one."""

    model: str
    data: str = "digits"
    recipe: str = "resnet_imagenet"
    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    depthwise_weight_decay: float | None = None
    scheduler: str = "none"
    milestones: tuple[float, ...] = ()
    step_epochs: float | None = None
    gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: bool = False
    rmsprop_alpha: float = 0.9
    rmsprop_eps: float = 1.0
    input_size: tuple[int, int] | None = None
    amp: bool = False
    channels_last: bool = False
    sync_bn: bool = False
    device: str = "auto"
    threads: int | None = None
    workers: int = 0
    seed: int = 0
    out: str = ""
    model_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        if self.input_size is not None:
            object.__setattr__(self, "input_size", tuple(int(s) for s in self.input_size))
        if not self.out:
            object.__setattr__(self, "out", default_out(self.model))
        self.validate()

    def validate(self) -> None:
        """One-line ValueErrors for values no run can use."""
        checks = (
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.threads is None or self.threads >= 1, f"--threads must be >= 1, got {self.threads}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.scheduler in SCHEDULERS, f"--scheduler must be one of {', '.join(SCHEDULERS)}"),
            (self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, got {self.device!r}"),
            (0 <= self.seed < 2**63, f"--seed must be in [0, 2**63), got {self.seed}"),
            (self.momentum >= 0, f"momentum must be >= 0, got {self.momentum}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 1):
            raise ValueError(f"--input-size is H x W with positive sides, got {self.input_size}")
        if self.scheduler == "step" and not self.milestones and self.step_epochs is None:
            raise ValueError("--scheduler step needs milestones or step_epochs from a recipe "
                             "(e.g. --recipe resnet_cifar)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists)."""
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        data["input_size"] = None if self.input_size is None else list(self.input_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The inverse of ``to_dict``; unknown keys are a ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training arguments {', '.join(unknown)}")
        values = dict(data)
        if values.get("input_size") is not None:
            values["input_size"] = tuple(values["input_size"])
        values["milestones"] = tuple(values.get("milestones") or ())
        return cls(**values)


def default_out(model: str) -> str:
    """``runs/NAME``: a registered name as it is, a user's ``path/net.py:Net`` as ``net_Net``."""
    path, sep, attr = model.rpartition(":")
    if sep and path.endswith(".py"):
        stem = path.replace("\\", "/").rsplit("/", 1)[-1][:-3]
        return f"runs/{stem}_{attr}"
    return f"runs/{model}"


def resolve_config(model: str, *, recipe: str | None = None, **choices: Any) -> TrainConfig:
    """The run's arguments: ``recipe``'s settings (the model's default recipe when None), then
    every choice that is not None. Raises ValueError for an unknown recipe, an unknown choice, or
    a value no run can use."""
    name = recipe or default_recipe(model)
    settings = get_recipe(name).settings()
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(k for k in choices if k not in known)
    if unknown:
        raise ValueError(f"unknown training arguments {', '.join(unknown)}")
    settings.update({k: v for k, v in choices.items() if v is not None})
    return TrainConfig(model=model, recipe=name, **settings)


def resumed_config(saved: dict[str, Any], **choices: Any) -> TrainConfig:
    """The saved run's arguments, with the runtime choices (``workers``, ``out``) given again.
    Any other explicit choice must equal the saved one: a ValueError names the differences."""
    config = TrainConfig.from_dict(saved)
    current = config.to_dict()
    differ = []
    updates = {}
    for key, value in choices.items():
        if value is None:
            continue
        if key in RUNTIME_FIELDS:
            updates[key] = value
            continue
        if key not in current:
            raise ValueError(f"unknown training argument {key}")
        given = list(value) if isinstance(value, tuple) else value
        if given != current[key]:
            differ.append(f"{key}={given!r} (the run has {current[key]!r})")
    if differ:
        raise ValueError(
            "--resume continues a run with its own arguments; this command changes " + ", ".join(differ)
            + ": drop those options, or start a new run with another --out"
        )
    return replace(config, **updates)
