"""The zoo's catalogue: what ``cnnlab models`` and ``cnnlab info`` show, callable from Python.

* ``zoo_rows(pattern)``: every registered model's parameters and MACs (computed by
  ``cnnlab.analyze`` at its native input) next to the published reference counts. Each model's
  counts are cached per (model, cnnlab version, torch version) in the user cache directory,
  so only the first call analyses the zoo.
* ``match_models(pattern)`` / ``pattern_hint(pattern)``: case-insensitive fnmatch over the
  registered names, and a suggestion when a bare word matches nothing (``resnet`` -> ``resnet*``).
* ``model_knobs(name)``: the keyword arguments ``create_model(name, ...)`` accepts, with their
  defaults and the type each expects.

The cache lives in ``$CNNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnlab``, else
``~/.cache/cnnlab``. It is an optimisation only: a missing, unreadable or corrupt cache file is
ignored (and rewritten), and a cache directory that cannot be written is never an error.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import inspect
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import cnnlab

__all__ = [
    "Knob",
    "ZooRow",
    "annotation_text",
    "cache_dir",
    "match_models",
    "model_knobs",
    "pattern_hint",
    "zoo_rows",
]

_WILDCARDS = set("*?[")
_CACHE_FORMAT = 1


# -- names and patterns ------------------------------------------------------------------------
def match_models(pattern: str | None = None) -> list[str]:
    """Registered names matching the fnmatch ``pattern``, ignoring case (all when None)."""
    from cnnlab.registry import list_models

    names = list_models()
    if pattern is None:
        return names
    folded = pattern.lower()
    return [n for n in names if fnmatch.fnmatchcase(n.lower(), folded)]


def pattern_hint(pattern: str) -> str:
    """What to suggest when ``pattern`` matches no model: a wildcard form that does match
    (``"did you mean 'resnet*'?"``), or where to find the names."""
    if not _WILDCARDS & set(pattern):
        for candidate in (f"{pattern}*", f"*{pattern}*"):
            if match_models(candidate):
                return f"did you mean {candidate!r}?"
    return "run `cnnlab models` for the list"


# -- the keyword arguments a registered model accepts ----------------------------------------
_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "None": lambda v: v is None,
}
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "True or False", "str": "a string",
               "None": "None"}


@dataclass(frozen=True)
class Knob:
    """One keyword argument of a registered model's builder."""

    name: str
    default: Any
    annotation: str  # as written in the builder's signature, e.g. "int | None"

    @property
    def types(self) -> tuple[str, ...] | None:
        """The simple types the annotation allows (``("int", "None")``), or None when the
        annotation is something else (then any value is passed to the builder as given)."""
        parts = tuple(p.strip() for p in self.annotation.split("|"))
        return parts if parts and all(p in _TYPE_CHECKS for p in parts) else None

    def expects(self) -> str:
        """``"an integer"``, ``"a number or None"``, or ``""`` when the type is not simple."""
        types = self.types
        return " or ".join(_TYPE_WORDS[t] for t in types) if types else ""

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has a type the builder declares (True when it declares none)."""
        types = self.types
        return types is None or any(_TYPE_CHECKS[t](value) for t in types)


def annotation_text(annotation: Any) -> str:
    """A parameter's annotation as written (``"int | None"``), ``""`` when there is none."""
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", str(annotation))


def model_knobs(name: str) -> list[Knob]:
    """The keyword arguments ``create_model(name, **kwargs)`` accepts, in the builder's order.

    ``num_classes`` and ``in_channels`` show the variant's defaults (``model_info(name)``);
    arguments the variant fixes are left out. An unknown name raises the registry's ValueError.
    """
    from cnnlab.registry import _entry, accepted_kwargs, model_info

    info = model_info(name)
    accepted = set(accepted_kwargs(name))
    variant = {"num_classes": info.num_classes, "in_channels": info.input_size[0]}
    params = inspect.signature(_entry(name).builder).parameters
    knobs = []
    for param in params.values():
        if param.name not in accepted:
            continue
        default = variant.get(param.name, param.default)
        if default is inspect.Parameter.empty:
            default = None
        knobs.append(Knob(param.name, default, annotation_text(param.annotation)))
    return knobs


# -- the zoo table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZooRow:
    """One registered model: our counts at its native input next to the reference counts."""

    name: str
    family: str
    year: int
    input_size: tuple[int, int, int]
    params: int
    macs: int
    complete: bool
    ref_params: int | None
    ref_macs: int | None
    params_match: bool | None  # None: no reference to compare with
    macs_match: bool | None

    @property
    def match(self) -> bool | None:
        """Every reference count matched within its tolerance (None when there is none)."""
        known = [m for m in (self.params_match, self.macs_match) if m is not None]
        return all(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with exact integers."""
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["match"] = self.match
        return data


def cache_dir() -> Path:
    """``$CNNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``."""
    explicit = os.environ.get("CNNLAB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "cnnlab"


def _code_fingerprint() -> str:
    """Sizes and modification times of cnnlab's library sources: with an editable install the
    version stays the same while a model's code changes, and cached counts must not go stale."""
    root = Path(cnnlab.__file__).parent
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] == "cli":
            continue
        stat = path.stat()
        digest.update(f"{relative}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class _CountCache:
    """Each model's computed counts, in one JSON file per (cnnlab version, torch version)."""

    def __init__(self, enabled: bool) -> None:
        import torch

        self.enabled = enabled
        self.path = cache_dir() / f"zoo-counts-cnnlab{cnnlab.__version__}-torch{torch.__version__}.json"
        self.fingerprint = _code_fingerprint() if enabled else ""
        self.entries: dict[str, dict[str, Any]] = self._load() if enabled else {}
        self.dirty = False

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):  # missing or corrupt: start again
            return {}
        if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT or data.get("code") != self.fingerprint:
            return {}
        models = data.get("models")
        if not isinstance(models, dict):
            return {}
        return {name: entry for name, entry in models.items() if self._valid(entry)}

    @staticmethod
    def _valid(entry: Any) -> bool:
        return (
            isinstance(entry, dict)
            and all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool) for k in ("params", "macs"))
            and isinstance(entry.get("complete"), bool)
        )

    def get(self, name: str) -> dict[str, Any] | None:
        return self.entries.get(name)

    def put(self, name: str, entry: dict[str, Any]) -> None:
        self.entries[name] = entry
        self.dirty = True

    def save(self) -> None:
        """Write the file atomically (a temporary file renamed over it); never raise."""
        if not (self.enabled and self.dirty):
            return
        payload = {"format": _CACHE_FORMAT, "cnnlab": cnnlab.__version__, "code": self.fingerprint,
                   "models": dict(sorted(self.entries.items()))}
        tmp_name = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, prefix=".zoo-", suffix=".tmp", delete=False
            ) as handle:
                tmp_name = handle.name
                json.dump(payload, handle, indent=0)
            os.replace(tmp_name, self.path)
            self.dirty = False
        except OSError:  # a read-only or full cache directory only costs the next run time
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)


def _count(name: str, input_size: tuple[int, int, int]) -> dict[str, Any]:
    """Build ``name`` on the meta device and analyse it at its native input."""
    import torch

    from cnnlab.analysis import analyze
    from cnnlab.registry import create_model

    with torch.device("meta"):
        model = create_model(name)
    result = analyze(model, (1, *input_size))
    return {"params": int(result.params), "macs": int(result.macs), "complete": bool(result.complete)}


def zoo_rows(
    pattern: str | None = None,
    *,
    use_cache: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[ZooRow]:
    """The zoo table for the models matching ``pattern`` (case-insensitive fnmatch).

    ``progress(done, total, name)`` is called before each model that has to be analysed (the
    ones not in the cache), ``done`` of ``total`` being finished. ``use_cache=False`` neither
    reads nor writes the cache.
    """
    from cnnlab.registry import model_info

    infos = [model_info(name) for name in match_models(pattern)]
    cache = _CountCache(use_cache)
    todo = [info.name for info in infos if cache.get(info.name) is None]
    try:
        for done, name in enumerate(todo):
            if progress is not None:
                progress(done, len(todo), name)
            cache.put(name, _count(name, model_info(name).input_size))
        if progress is not None and todo:
            progress(len(todo), len(todo), "")
    finally:  # an interrupted run keeps what it computed
        cache.save()
    rows = []
    for info in infos:
        counts = cache.get(info.name)
        ref = info.reference
        rows.append(ZooRow(
            name=info.name, family=info.family, year=info.year, input_size=tuple(info.input_size),
            params=counts["params"], macs=counts["macs"], complete=counts["complete"],
            ref_params=info.ref_params, ref_macs=info.ref_macs,
            params_match=ref.params_match(counts["params"]) if ref else None,
            macs_match=ref.macs_match(counts["macs"]) if ref else None,
        ))
    return rows
