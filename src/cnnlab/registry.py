"""The strict model registry: one step from a name to a model.

Shaped like torchvision's ``models/_api.py``: registering a name twice raises, ``list_models``
filters with fnmatch wildcards, and ``create_model`` never swallows an unknown keyword argument.
A variant is a builder (usually the model class) plus the keyword arguments that define it
(``fixed``); everything else the builder accepts is a knob the user may set.
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import functools
import inspect
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Iterable

from torch import nn

__all__ = [
    "name_templates",
    "register_pattern",
    "Paper",
    "ModelInfo",
    "ReferenceRow",
    "register_model",
    "list_models",
    "create_model",
    "model_info",
    "reference_rows",
]


@dataclass(frozen=True)
class Paper:
    """Where an architecture comes from."""

    title: str
    authors: str
    year: int
    url: str


def _within(value: int, ref: int, tol: float) -> bool:
    return value == ref if tol == 0 else abs(value - ref) <= tol * ref


@dataclass(frozen=True)
class ReferenceRow:
    """One row of ``data/reference_models.csv`` (a copy of ``shared/reference/models.csv``)."""

    name: str
    input_size: tuple[int, int, int]
    num_classes: int
    params: int | None
    macs: int | None
    params_tol: float
    macs_tol: float
    source: str
    notes: str

    def params_match(self, value: int) -> bool | None:
        """Whether ``value`` matches the reference parameter count (None: no reference)."""
        return None if self.params is None else _within(value, self.params, self.params_tol)

    def macs_match(self, value: int) -> bool | None:
        """Whether ``value`` matches the reference MACs (None: no reference)."""
        return None if self.macs is None else _within(value, self.macs, self.macs_tol)

    @property
    def model_name(self) -> str:
        """The registry name: ``mobilenet_v1@192`` is ``mobilenet_v1`` analysed at 192."""
        return self.name.split("@", 1)[0]


@dataclass(frozen=True)
class ModelInfo:
    """Metadata the analyzer, the benchmark, the report and the tests use."""

    name: str
    family: str
    paper: Paper
    input_size: tuple[int, int, int]
    num_classes: int
    ref_params: int | None = None
    ref_macs: int | None = None
    ref_source: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)
    reference: ReferenceRow | None = None

    @property
    def year(self) -> int:
        return self.paper.year

    @property
    def title(self) -> str:
        return self.paper.title


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    fixed: dict[str, Any]
    family: str
    paper: Paper
    input_size: tuple[int, int, int]
    num_classes: int


# Checks the integers of a parametric name (as keywords); raises ValueError for an invalid one.
NameCheck = Callable[..., object]

_REGISTRY: dict[str, _Entry] = {}
# Parametric names: template (``wrn{depth}_{width_mult}_cifar``) -> (compiled template, entry
# whose ``fixed`` is completed by the integers the name carries, check of those integers).
_PATTERNS: dict[str, tuple[re.Pattern[str], _Entry, NameCheck | None]] = {}


def _parse_int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text else None


@functools.lru_cache(maxsize=1)
def reference_rows() -> tuple[ReferenceRow, ...]:
    """All reference rows, in file order."""
    rows = []
    source = resources.files("cnnlab").joinpath("data/reference_models.csv")
    with source.open(newline="") as handle:
        for rec in csv.DictReader(handle):
            c, h, w = (int(v) for v in rec["input"].split("x"))
            rows.append(
                ReferenceRow(
                    name=rec["name"],
                    input_size=(c, h, w),
                    num_classes=int(rec["num_classes"]),
                    params=_parse_int(rec["params"]),
                    macs=_parse_int(rec["macs"]),
                    params_tol=float(rec["params_tol"] or 0),
                    macs_tol=float(rec["macs_tol"] or 0),
                    source=rec["source"],
                    notes=rec["notes"],
                )
            )
    return tuple(rows)


def _reference(name: str) -> ReferenceRow | None:
    return next((row for row in reference_rows() if row.name == name), None)


def _check_builder(label: str, builder: Callable[..., nn.Module], arguments: Iterable[str]) -> None:
    """The builder takes num_classes, in_channels and every argument a registration fixes."""
    accepted = _keyword_parameters(builder)
    for required in ("num_classes", "in_channels"):
        if required not in accepted:
            raise TypeError(f"builder of {label!r} must accept keyword {required!r}")
    unknown = sorted(set(arguments) - set(accepted))
    if unknown:
        raise TypeError(f"builder of {label!r} does not accept {', '.join(unknown)}")


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    *,
    family: str,
    paper: Paper,
    input_size: tuple[int, int, int],
    num_classes: int = 1000,
    **fixed: Any,
) -> None:
    """Register ``name`` as ``builder(**fixed, **user_kwargs)``.

    ``fixed`` are the keyword arguments that define the variant (``config="A"`` for VGG-11); the
    user cannot override them. A duplicate name or a fixed argument the builder does not accept
    raises at import time.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _check_builder(name, builder, fixed)
    _REGISTRY[name] = _Entry(builder, dict(fixed), family, paper, tuple(input_size), num_classes)


def register_pattern(
    template: str,
    builder: Callable[..., nn.Module],
    *,
    family: str,
    paper: Paper,
    input_size: tuple[int, int, int],
    num_classes: int = 1000,
    check: NameCheck | None = None,
    **fixed: Any,
) -> None:
    """Register a family of names such as ``"wrn{depth}_{width_mult}_cifar"``.

    ``create_model("wrn22_8_cifar")`` builds ``builder(depth=22, width_mult=8, **fixed)``.
    ``check(depth=22, width_mult=8)`` validates the integers whenever a name is looked up
    (``create_model``, ``model_info``, ``accepted_kwargs``), so that a name of a network that
    cannot be built is an unknown name everywhere: its ``ValueError`` (the builder's own
    one-line message, e.g. "depth must be 6n + 2 ...") comes out prefixed with the name. Names
    registered with ``register_model`` take precedence; ``list_models`` lists only those.
    """
    fields = re.findall(r"\{(\w+)\}", template)
    if not fields or template in _PATTERNS:
        raise ValueError(f"bad or duplicate name template {template!r}")
    _check_builder(template, builder, [*fixed, *fields])
    regex = "".join(
        f"(?P<{part[1:-1]}>[1-9][0-9]*)" if part.startswith("{") else re.escape(part)
        for part in re.split(r"(\{\w+\})", template) if part
    )
    entry = _Entry(builder, dict(fixed), family, paper, tuple(input_size), num_classes)
    _PATTERNS[template] = (re.compile(regex), entry, check)


def name_templates() -> list[str]:
    """The registered name templates (``wrn{depth}_{width_mult}_cifar``, ...)."""
    _ensure_loaded()
    return sorted(_PATTERNS)


@functools.lru_cache(maxsize=None)
def _keyword_parameters(builder: Callable[..., nn.Module]) -> tuple[str, ...]:
    params = inspect.signature(builder).parameters.values()
    return tuple(
        p.name
        for p in params
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
    )


def _ensure_loaded() -> None:
    # The model modules register themselves on import; importing here keeps `cnnlab.registry`
    # free of import cycles.
    from cnnlab import models  # noqa: F401


def _entry(name: str) -> _Entry:
    _ensure_loaded()
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    for regex, entry, check in _PATTERNS.values():
        match = regex.fullmatch(name)
        if match:
            ints = {key: int(value) for key, value in match.groupdict().items()}
            if check is not None:
                try:
                    check(**ints)
                except ValueError as err:
                    raise ValueError(f"{name}: {err}") from None
            return _Entry(entry.builder, {**entry.fixed, **ints}, entry.family, entry.paper,
                          entry.input_size, entry.num_classes)
    close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `cnnlab models`"
    raise ValueError(f"unknown model {name!r}{hint}")


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by an fnmatch pattern (``"vgg*_bn"``)."""
    _ensure_loaded()
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def accepted_kwargs(name: str) -> list[str]:
    """The keyword arguments ``create_model(name, ...)`` accepts."""
    entry = _entry(name)
    return [k for k in _keyword_parameters(entry.builder) if k not in entry.fixed]


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    **arch_kwargs: Any,
) -> nn.Module:
    """Build the registered model ``name``.

    ``num_classes`` and ``in_channels`` default to the variant's own (``model_info(name)``).
    An unknown name raises ``ValueError`` listing close matches; an unknown keyword raises
    ``TypeError`` naming it and the accepted ones. Build on the meta device with
    ``with torch.device("meta"): create_model(name)``.
    """
    entry = _entry(name)
    accepted = accepted_kwargs(name)
    for key in arch_kwargs:
        if key in entry.fixed:
            raise TypeError(
                f"{name}: {key!r} is fixed to {entry.fixed[key]!r} by this variant; "
                f"accepted arguments: {', '.join(accepted)}"
            )
        if key not in accepted:
            raise TypeError(
                f"{name}: unknown argument {key!r}; accepted arguments: {', '.join(accepted)}"
            )
    num_classes = entry.num_classes if num_classes is None else num_classes
    in_channels = entry.input_size[0] if in_channels is None else in_channels
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}")
    return entry.builder(
        num_classes=num_classes, in_channels=in_channels, **entry.fixed, **arch_kwargs
    )


def model_info(name: str) -> ModelInfo:
    """Paper, year, family, native input (C, H, W), default classes and reference counts."""
    entry = _entry(name)
    ref = _reference(name)
    return ModelInfo(
        name=name,
        family=entry.family,
        paper=entry.paper,
        input_size=entry.input_size,
        num_classes=entry.num_classes,
        ref_params=ref.params if ref else None,
        ref_macs=ref.macs if ref else None,
        ref_source=ref.source if ref else "",
        fixed=dict(entry.fixed),
        reference=ref,
    )
