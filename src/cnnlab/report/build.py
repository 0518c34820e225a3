"""``build_report``: run every section, then write ``data.json``, ``README.md`` and ``index.html``
into the report folder.

Every file is written to a temporary name and renamed (``cnnlab.fileio``), and the page and its
Markdown are written last, from ``data.json``'s document: a run stopped halfway, or two runs at
once, never leave a half-written page, and the previous page stays readable until the new one
is complete.

``data.json`` (schema version ``SCHEMA``)::

    {"schema": 1, "title", "subtitle", "generated" (UTC, ISO 8601), "quick", "device",
     "versions": {"cnnlab", "torch", "torchvision", "onnxruntime", "openvino", "python"},
     "machine": cnnlab.bench.machine_info(),
     "summary": [one line per section],
     "sections": [{"id", "title", "intro", "summary", "notes": [str], "seconds",
                   "tables": [{"id", "title", "caption", "sortable",
                               "columns": [{"key", "label", "kind", "help"}], "rows": [{key: raw value}]}],
                   "figures": [{"name", "title", "caption", "png", "svg"}],
                   "data": {...the section's own numbers...}}]}

Counts are exact integers; times are ms; a value that could not be measured is null and the
section's ``notes`` say why. Each section's ``data`` is documented in its module
(``cnnlab.report.sections``).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from cnnlab.report.context import Context
from cnnlab.report.sections import SECTIONS, section_module

__all__ = ["QUICK_MODELS", "SCHEMA", "ReportResult", "build_report", "select_models"]

SCHEMA = 1
TIMED = ("latency", "guidelines", "training")  # cache kinds that depend on the machine's speed
# --quick's representative subset: one or two per family the notes teach, heavy to light.
QUICK_MODELS = (
    "lenet5", "alexnet", "vgg16", "googlenet", "inception_v3", "resnet18", "resnet50", "densenet121",
    "squeezenet1_0", "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v1_g3",
    "shufflenet_v2_x1_0", "xception", "mnasnet1_0",
)


@dataclass
class ReportResult:
    folder: Path
    index: Path
    data: dict[str, Any]
    seconds: float
    cache_hits: int
    cache_misses: int


def select_models(pattern: str | None, quick: bool) -> list[str]:
    """The models a report covers: those matching ``pattern`` (case-insensitive wildcards),
    else the quick subset with ``quick``, else the whole zoo. ValueError when none match."""
    from cnnlab.catalog import match_models, pattern_hint
    from cnnlab.registry import list_models

    if pattern:
        names = match_models(pattern)
        if not names:
            raise ValueError(f"--models {pattern!r} matches no registered model; {pattern_hint(pattern)}")
        return names
    registered = set(list_models())
    return [m for m in QUICK_MODELS if m in registered] if quick else list_models()


def _versions() -> dict[str, str | None]:
    import platform
    from importlib import metadata

    import cnnlab

    out: dict[str, str | None] = {"cnnlab": cnnlab.__version__, "python": platform.python_version()}
    for package in ("torch", "torchvision", "onnxruntime", "openvino"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def build_report(
    out: str | Path = "report",
    *,
    quick: bool = False,
    models: str | Sequence[str] | None = None,
    device: str = "cpu",
    train: bool = True,
    use_cache: bool = True,
    remeasure: bool = False,
    sections: Sequence[str] = SECTIONS,
    say: Callable[[str], None] | None = None,
    step: Callable[[str, int, int], None] | None = None,
) -> ReportResult:
    """Build the report into ``out``. ``models``: a pattern or a list of names (default: the
    quick subset with ``quick``, else the whole zoo). ``use_cache=False`` neither reads nor
    writes the cache; ``remeasure`` times everything again (counts stay cached). ``say(text)`` hears each step's detail,
    ``step(section, done, total)`` each section starting."""
    from cnnlab.bench.run import machine_info
    from cnnlab.fileio import atomic_write_text
    from cnnlab.report.cache import ReportCache
    from cnnlab.report.render import render_html, render_markdown

    start = time.perf_counter()
    names = list(models) if isinstance(models, (list, tuple)) else select_models(models, quick)
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file; give a folder for the report")
    cache = ReportCache(enabled=use_cache, refresh=TIMED if remeasure else ())
    ctx = Context(folder, quick, names, device, train, cache, say or (lambda text: None), remeasure)
    chosen = [s for s in sections if getattr(section_module(s), "wanted", lambda c: True)(ctx)]
    for i, name in enumerate(chosen):
        if step:
            step(name, i, len(chosen))
        began = time.perf_counter()
        ctx.results[name] = section_module(name).collect(ctx)
        ctx.results[name].seconds = time.perf_counter() - began
    if step:
        step("page", len(chosen), len(chosen))
    results = [ctx.results[s].to_dict() for s in chosen]
    data = {
        "schema": SCHEMA,
        "title": "cnnlab report",
        "subtitle": (f"{len(names)} networks from the course notes, counted exactly and measured on this machine"
                     + (" (quick: a representative subset, fewer repeats)" if quick else "")),
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick, "device": device, "versions": _versions(), "machine": machine_info(device),
        "summary": [s["summary"] for s in results if s["summary"]],
        "sections": results,
    }
    atomic_write_text(folder / "data.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(folder / "README.md", render_markdown(data))
    atomic_write_text(folder / "index.html", render_html(data, folder))
    return ReportResult(folder, folder / "index.html", data, time.perf_counter() - start, cache.hits, cache.misses)
