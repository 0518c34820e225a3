"""Checkpoints: written whole or not at all, read back with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only (no pickled objects), so loading
one runs no code:

``format`` ("cnnlab-checkpoint"), ``version``, ``model_name``, ``model`` (the state dict),
``optimizer``, ``scheduler``, ``scaler`` (the AMP grad scaler's state), ``epoch`` (the epoch in
progress, 0-based) and ``step`` (the optimizer steps done in it; 0 at an epoch boundary),
``partial`` (that epoch's running sums), ``rng`` (torch, CUDA, numpy and Python ``random``
states, per rank), ``loader_generator`` (the shuffling generator's state), ``args`` (the run's
resolved arguments), ``classes``, ``mean``, ``std``, ``metrics`` (the rows of ``metrics.csv``).

Writing goes to a temporary file in the same folder, which is flushed, fsynced and renamed over
the old checkpoint (``cnnlab.fileio.atomic_path``): a crash mid-write leaves the previous
checkpoint as it was. Any problem reading one is a ``CheckpointError`` with one line that names
it (missing, not a checkpoint, truncated or corrupt, another model's).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.fileio import atomic_path

__all__ = [
    "FORMAT", "VERSION", "CheckpointError", "capture_rng", "load_checkpoint", "load_state", "load_weights",
    "restore_rng", "save_checkpoint", "seed_everything", "seed_worker",
]

FORMAT = "cnnlab-checkpoint"
VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the problem."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain values) to ``path`` atomically: temporary file in the
    same folder, flush, fsync, rename. Returns the path."""
    target = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
    return target


def _read(path: Path) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__})") from exc
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text:
            found = text.split("GLOBAL", 1)[1].split()[0] if "GLOBAL" in text else "a Python object"
            raise CheckpointError(
                f"{path}: holds Python objects ({found}) beyond tensors and plain values; refusing to load "
                "it (torch.load(weights_only=True))"
            ) from exc
        raise CheckpointError(f"{path}: not a checkpoint, or a corrupt one (unreadable pickle)") from exc
    except (RuntimeError, ValueError, OSError, MemoryError) as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first[:120]})") from exc


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dict at ``path``, checked to be a cnnlab checkpoint of a known version."""
    path = Path(path)
    state = _read(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnlab checkpoint (no {FORMAT!r} marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {state.get('version')!r}; this cnnlab reads version {VERSION}")
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path}: the checkpoint holds no model weights")
    return state


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module | None = None,
                    model_name: str | None = None) -> dict[str, Any]:
    """Read a checkpoint written by ``cnnlab train`` and, with ``model``, load its weights into it
    (strictly: every key, every shape). ``model_name`` (a registered name) is compared with the
    name the checkpoint was trained as. Returns the checkpoint dict (``args``, ``classes``,
    ``mean``, ``std``, ``metrics``, ...). Raises ``CheckpointError`` with one line."""
    path = Path(path)
    state = load_state(path)
    trained = state.get("model_name")
    if model_name is not None and trained is not None and trained != model_name:
        raise CheckpointError(f"{path} holds a {trained} checkpoint, not {model_name}")
    if model is not None:
        load_weights(model, state["model"], f"{path} ({trained or 'unknown model'})")
    return state


def load_weights(model: nn.Module, weights: dict[str, Any], label: str) -> None:
    """``model.load_state_dict(weights)`` whose mismatch is one line: how many keys are missing,
    unexpected, or of another shape, with the first of each."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in weights and isinstance(weights[k], torch.Tensor) and weights[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
    if problems:
        raise CheckpointError(f"{label} does not fit this model: weights {'; '.join(problems)}")
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError) as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise CheckpointError(f"{label} does not fit this model: {first[:200]}") from exc


# -- random states ----------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random``."""
    import random

    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: numpy and ``random`` from the seed torch gave the worker."""
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """This process's random states as tensors and plain values (``weights_only``-loadable)."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": [version, list(internal), gauss_next],
        "generator": generator.get_state() if generator is not None else None,
    }


def restore_rng(states: list[dict[str, Any]], rank: int, world_size: int) -> bool:
    """Restore this rank's states from a checkpoint's per-rank list; False (nothing restored) when
    the run was saved by another number of processes."""
    import random

    import numpy as np

    if len(states) != world_size:
        return False
    state = states[rank]
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state["numpy"]
    np.random.set_state((saved["kind"], saved["keys"].numpy().astype(np.uint32), saved["pos"], saved["has_gauss"],
                         saved["cached"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    return True
