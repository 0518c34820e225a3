"""The zoo's catalogue: what ``cnnlab models`` and ``cnnlab info`` show, callable from Python.

* ``zoo_rows(pattern)``: every registered model's parameters and MACs (computed by
  ``cnnlab.analyze`` at its native input) next to the published reference counts. Each model's
  counts are cached per (model, cnnlab version, torch version) in the user cache directory,
  with the zoo's listing (names, families, years, inputs, reference counts), so only the first
  call analyses a model, and a call whose models are all cached imports no torch.
* ``match_models(pattern)`` / ``pattern_hint(pattern)``: case-insensitive fnmatch over the
  registered names (or the cached ones, ``zoo_names()``), and a suggestion when a bare word
  matches nothing (``resnet`` -> ``resnet*``).
* ``model_knobs(name)``: the keyword arguments ``create_model(name, ...)`` accepts, with their
  defaults and the type each expects.

The cache lives in ``$CNNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnlab``, else
``~/.cache/cnnlab``. It is an optimisation only: a missing, unreadable or corrupt cache file is
ignored (and rewritten), and a cache directory that cannot be written is never an error. The
file is keyed by cnnlab's version and torch's (from its package metadata, read without importing
torch), and holds a fingerprint of cnnlab's library files: any change there makes it stale.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cnnlab

__all__ = [
    "Knob",
    "ZooRow",
    "annotation_text",
    "cache_dir",
    "match_models",
    "model_knobs",
    "pattern_hint",
    "zoo_names",
    "zoo_rows",
]

_WILDCARDS = set("*?[")
_CACHE_FORMAT = 2  # 2: the listing besides the counts, the verdicts with the counts


# -- names and patterns ------------------------------------------------------------------------
def match_models(pattern: str | None = None, *, names: Sequence[str] | None = None) -> list[str]:
    """The names matching the fnmatch ``pattern``, ignoring case (all when None), among
    ``names`` (default: the registered names; ``zoo_names()`` gives them without torch)."""
    if names is None:
        from cnnlab.registry import list_models

        names = list_models()
    return _match(names, pattern)


def _match(names: Sequence[str], pattern: str | None) -> list[str]:
    if pattern is None:
        return list(names)
    folded = pattern.lower()
    return [n for n in names if fnmatch.fnmatchcase(n.lower(), folded)]


def pattern_hint(pattern: str, *, names: Sequence[str] | None = None) -> str:
    """What to suggest when ``pattern`` matches no model (among ``names``, default the
    registered ones): a wildcard form that does match (``"did you mean 'resnet*'?"``), or where
    to find the names."""
    if not _WILDCARDS & set(pattern):
        for candidate in (f"{pattern}*", f"*{pattern}*"):
            if match_models(candidate, names=names):
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
    import inspect

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
    import inspect

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


def _torch_version() -> str:
    """torch's installed version as its package metadata says (``2.5.1``), read without
    importing torch. (``torch.__version__`` may carry a local build tag, ``2.5.1+cu124``.)"""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def _code_fingerprint(skip: tuple[str, ...] = ("cli",)) -> str:
    """Sizes and modification times of cnnlab's library files (sources and data such as the
    reference counts; the top-level folders in ``skip``, the command line's by default,
    excluded): with an editable install the version stays the same while a model's code changes,
    and cached counts must not go stale. Reads file metadata only, so it imports nothing. The
    report's cache (``cnnlab.report.cache``) keys its entries with it too."""
    root = Path(cnnlab.__file__).parent
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in skip or "__pycache__" in relative.parts or not path.is_file():
            continue
        stat = path.stat()
        digest.update(f"{relative}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# One zoo listing entry: what the table shows of a model besides its counts. Key -> check.
_LISTING_FIELDS: dict[str, Callable[[Any], bool]] = {
    "name": lambda v: isinstance(v, str),
    "family": lambda v: isinstance(v, str),
    "year": _is_int,
    "input_size": lambda v: isinstance(v, list) and len(v) == 3 and all(map(_is_int, v)),
    "ref_params": lambda v: v is None or _is_int(v),
    "ref_macs": lambda v: v is None or _is_int(v),
}
# One model's counts at its native input and their verdicts against the reference.
_COUNT_FIELDS: dict[str, Callable[[Any], bool]] = {
    "params": _is_int,
    "macs": _is_int,
    "complete": lambda v: isinstance(v, bool),
    "params_match": lambda v: v is None or isinstance(v, bool),
    "macs_match": lambda v: v is None or isinstance(v, bool),
}


def _valid(entry: Any, fields: dict[str, Callable[[Any], bool]]) -> bool:
    return isinstance(entry, dict) and set(entry) == set(fields) and all(
        check(entry[key]) for key, check in fields.items()
    )


class _ZooCache:
    """The zoo in one JSON file per (cnnlab version, torch version), for the current code
    fingerprint: the listing (every registered name, in the registry's order, with its family,
    year, native input and reference counts) and the counts of each model analysed so far.

    With a listing and the counts of every model asked for, the table is made from this file
    alone: neither torch nor the registry is imported.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.torch = _torch_version() if enabled else ""
        self.path = cache_dir() / f"zoo-counts-cnnlab{cnnlab.__version__}-torch{self.torch}.json"
        self.fingerprint = _code_fingerprint() if enabled else ""
        self.listing: list[dict[str, Any]] | None = None  # None: not cached (or not current)
        self.counts: dict[str, dict[str, Any]] = {}
        self.dirty = False
        if enabled:
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):  # missing or corrupt: start again
            return
        if (
            not isinstance(data, dict)
            or data.get("format") != _CACHE_FORMAT
            or data.get("code") != self.fingerprint
            or data.get("torch") != self.torch
        ):
            return
        listing, counts = data.get("listing"), data.get("models")
        if isinstance(listing, list) and all(_valid(entry, _LISTING_FIELDS) for entry in listing):
            self.listing = listing
        if isinstance(counts, dict):
            self.counts = {name: entry for name, entry in counts.items() if _valid(entry, _COUNT_FIELDS)}

    def names(self) -> list[str] | None:
        return None if self.listing is None else [entry["name"] for entry in self.listing]

    def set_listing(self, listing: list[dict[str, Any]]) -> None:
        if listing != self.listing:
            self.listing = listing
            self.dirty = True

    def put(self, name: str, entry: dict[str, Any]) -> None:
        self.counts[name] = entry
        self.dirty = True

    def save(self) -> None:
        """Write the file atomically (a temporary file renamed over it); never raise."""
        if not (self.enabled and self.dirty):
            return
        import tempfile

        payload = {"format": _CACHE_FORMAT, "cnnlab": cnnlab.__version__, "torch": self.torch,
                   "code": self.fingerprint, "listing": self.listing,
                   "models": dict(sorted(self.counts.items()))}
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


def _registry_listing() -> list[dict[str, Any]]:
    """The listing from the registry (imports torch and the zoo): every registered name with
    what the table shows of it besides the counts, JSON-ready."""
    from cnnlab.registry import list_models, model_info

    listing = []
    for name in list_models():
        info = model_info(name)
        listing.append({"name": name, "family": info.family, "year": info.year,
                        "input_size": list(info.input_size), "ref_params": info.ref_params,
                        "ref_macs": info.ref_macs})
    return listing


def zoo_names(*, use_cache: bool = True) -> list[str]:
    """Every registered name in the registry's order: from the cache when it holds a current
    listing (no torch import), else from the registry."""
    names = _ZooCache(use_cache).names()
    if names is None:
        from cnnlab.registry import list_models

        names = list_models()
    return names


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
    """The zoo table for the models matching ``pattern`` (case-insensitive fnmatch; all when
    None), in the registry's order.

    When the cache holds the listing and the counts of every matching model, the rows come from
    it alone, without importing torch. Otherwise the listing is read from the registry, the
    missing counts are computed, and both are written back. ``progress(done, total, name)`` is
    called before each model that has to be analysed, ``done`` of ``total`` being finished.
    ``use_cache=False`` neither reads nor writes the cache.
    """
    cache = _ZooCache(use_cache)
    listing = cache.listing
    wanted = None if listing is None else _matching(listing, pattern)
    if wanted is None or any(entry["name"] not in cache.counts for entry in wanted):
        listing = _registry_listing()
        cache.set_listing(listing)
        wanted = _matching(listing, pattern)
        todo = [entry["name"] for entry in wanted if entry["name"] not in cache.counts]
        try:
            for done, name in enumerate(todo):
                if progress is not None:
                    progress(done, len(todo), name)
                cache.put(name, _counts_and_verdicts(name))
            if progress is not None and todo:
                progress(len(todo), len(todo), "")
        finally:  # an interrupted run keeps what it computed
            cache.save()
    return [_row(entry, cache.counts[entry["name"]]) for entry in wanted]


def _matching(listing: list[dict[str, Any]], pattern: str | None) -> list[dict[str, Any]]:
    names = set(_match([entry["name"] for entry in listing], pattern))
    return [entry for entry in listing if entry["name"] in names]


def _counts_and_verdicts(name: str) -> dict[str, Any]:
    """``_count`` at the model's native input, with the verdicts against its reference."""
    from cnnlab.registry import model_info

    info = model_info(name)
    counts = _count(name, info.input_size)
    ref = info.reference
    return {**counts,
            "params_match": ref.params_match(counts["params"]) if ref else None,
            "macs_match": ref.macs_match(counts["macs"]) if ref else None}


def _row(entry: dict[str, Any], counts: dict[str, Any]) -> ZooRow:
    """A table row from a listing entry and the model's counts (both as the cache holds them,
    so a cached and a computed run print the same)."""
    return ZooRow(
        name=entry["name"], family=entry["family"], year=entry["year"],
        input_size=tuple(entry["input_size"]), params=counts["params"], macs=counts["macs"],
        complete=counts["complete"], ref_params=entry["ref_params"], ref_macs=entry["ref_macs"],
        params_match=counts["params_match"], macs_match=counts["macs_match"],
    )
