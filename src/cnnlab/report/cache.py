"""The report's cache: one small JSON file per measured thing, so a second ``cnnlab report`` only
redoes what changed.

An entry is found by its ``kind`` (``counts``, ``latency``, ``guidelines``, ...) and a key: a
JSON-able dict naming what was measured and how (model, runtimes, repeats, ...). Every key is
completed with what invalidates every entry: cnnlab's and torch's versions and the fingerprint
of cnnlab's library code (``cnnlab.catalog._code_fingerprint``: a model's code edited means its
counts and times are stale; the command line and the report's own code do not count, nor -- but
for entries stored with ``all_code=True``, the training run's -- the training, compression,
quantization and export code, which no count or timing depends on). Entries
that depend on the machine (timings) add ``machine=True``: then the CPU's name, the CPUs this
process may use and torch's thread count join the key.

Files live in ``<cnnlab cache dir>/report/`` (``$CNNLAB_CACHE_DIR``, ...; see
``cnnlab.catalog.cache_dir``), are written atomically and are only an optimisation: a missing,
corrupt or unwritable one costs time, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

__all__ = ["ReportCache"]

_FORMAT = 1
# Library folders/files that counts, timings and guideline measurements do not depend on.
_LATER_STAGES = ("train", "compress", "quantize", "export.py", "deploy")


def _machine() -> dict[str, Any]:
    import torch

    from cnnlab.bench.run import _cpu_name

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [os.cpu_count()]
    return {"cpu": _cpu_name(), "cpus": cpus, "threads": torch.get_num_threads()}


class ReportCache:
    """``get(kind, key, compute)``: the cached value, or ``compute()`` stored then returned.
    ``enabled=False`` computes everything and stores nothing; kinds in ``refresh`` are computed
    again and stored; ``hits``/``misses`` count."""

    def __init__(self, root: Path | None = None, *, enabled: bool = True, refresh: tuple[str, ...] = ()) -> None:
        import cnnlab
        from cnnlab.catalog import _code_fingerprint, _torch_version, cache_dir

        self.root = Path(root) if root is not None else cache_dir() / "report"
        self.enabled = enabled
        self.refresh = set(refresh)  # kinds measured again (and stored) even when cached
        self.base = {"format": _FORMAT, "cnnlab": cnnlab.__version__, "torch": _torch_version(),
                     "code": _code_fingerprint(("cli", "report", *_LATER_STAGES))}
        self.all_code = _code_fingerprint(("cli", "report"))
        self._machine: dict[str, Any] | None = None
        self.hits = self.misses = 0

    def _path(self, kind: str, key: dict[str, Any], machine: bool, all_code: bool = False
              ) -> tuple[Path, dict[str, Any]]:
        full = {**self.base, "kind": kind, **key}
        if all_code:
            full["code"] = self.all_code
        if machine:
            if self._machine is None:
                self._machine = _machine()
            full["machine"] = self._machine
        text = json.dumps(full, sort_keys=True, default=str)
        return self.root / f"{kind}-{hashlib.sha1(text.encode()).hexdigest()[:20]}.json", full

    def get(self, kind: str, key: dict[str, Any], compute: Callable[[], Any], *, machine: bool = False,
            all_code: bool = False) -> Any:
        path, full = self._path(kind, key, machine, all_code)
        if self.enabled and kind not in self.refresh:
            try:
                stored = json.loads(path.read_text())
                if stored.get("key") == json.loads(json.dumps(full, default=str)):
                    self.hits += 1
                    return stored["value"]
            except (OSError, ValueError, AttributeError, KeyError):
                pass
        self.misses += 1
        # what a later hit will return (tuples become lists): the same either way
        value = json.loads(json.dumps(compute(), default=str))
        if self.enabled:
            with contextlib.suppress(OSError):
                from cnnlab.fileio import atomic_write_text

                atomic_write_text(path, json.dumps({"key": full, "value": value}))
        return value
