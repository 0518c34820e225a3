"""``quantize_trained``: a trained model to an INT8 file, with its accuracy, size and latency
next to the float model's.

The steps: fold the BatchNorms (``cnnlab.fuse_bn``); draw the calibration batches from the
training split; let the backend quantize and write the file (in a temporary folder beside
``out``, moved into place with ``cnnlab.fileio.atomic_path`` only when complete); evaluate the
float model (torch eager) and the INT8 file (its runtime) on the test split with the same loop;
time both at batch 1, side by side, with ``cnnlab.bench.timer`` -- the float model through the
``cnnlab.bench.runtimes`` adapter of the same runtime (``Backend.float_runtime``), every runtime
with the same number of threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from cnnlab.bench.run import one_line
from cnnlab.quantize.backends import DEFAULT_BACKEND, Backend, CountingBatches, QuantizeError, get_backend

__all__ = ["QuantizeResult", "Written", "check_out", "measure_latency", "quantize_checkpoint", "quantize_model",
           "quantize_trained"]

MB = 1e6


@dataclass(frozen=True)
class Written:
    """What ``quantize_model`` wrote: the files (the main one first), their bytes, the bytes of the
    same model in FP32 in the same format, and how many calibration batches the backend read."""

    files: tuple[Path, ...]
    bytes: int
    float_bytes: int
    batches_used: int


def check_out(backend: str, path: str | os.PathLike[str]) -> Path:
    """``path`` after checking, before any work, that it ends in the backend's suffix and that
    its folder exists; a one-line ``ValueError`` otherwise."""
    form = get_backend(backend)
    target = Path(path)
    if target.suffix.lower() != form.suffix:
        raise ValueError(f"{str(path)!r}: the {backend} backend writes a {form.suffix} file"
                         + (" (and its .bin beside it)" if backend == "openvino" else ""))
    if target.is_dir():
        raise ValueError(f"{str(path)!r} is a directory; give the file to write")
    if not target.parent.is_dir():
        raise ValueError(f"{str(path)!r}: the folder {str(target.parent)!r} does not exist")
    return target


def _require(form: Backend) -> None:
    missing = form.available()
    if missing is not None:
        raise QuantizeError(missing)


def _fused(model: Any, example: Any) -> Any:
    """An FP32 CPU copy of ``model`` in eval mode with its BatchNorms folded (exact)."""
    import copy

    import torch

    from cnnlab.fuse import fuse_bn

    source = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    return fuse_bn(source, example_input=example, inplace=True)


def quantize_model(model: Any, example: Any, batches: Sequence[Any], out: str | os.PathLike[str], *,
                   backend: str = DEFAULT_BACKEND, label: str = "the model") -> Written:
    """Quantize ``model`` (an ``nn.Module``; BatchNorms folded first, on a copy) to INT8 with
    ``backend``, calibrated on ``batches`` (float32 input batches), and write it to ``out`` with
    a dynamic batch dimension. ``example`` is one input batch for tracing. Raises ``ValueError``
    for a bad ``out``, ``QuantizeError`` (one line) when the backend is not installed or fails."""
    from cnnlab.fileio import install_files, staging_folder

    target = check_out(backend, out)
    form = get_backend(backend)
    _require(form)
    fused = _fused(model, example)
    # Every file takes any batch; torch.export specialises a dimension traced at size 1.
    trace = example if example.shape[0] > 1 else example.expand(2, *example.shape[1:]).contiguous()
    counting = CountingBatches(batches)
    with staging_folder(target) as stage:
        staged = [stage / p.name for p in form.files(target)]
        (stage / "work").mkdir()
        try:
            float_bytes = form.quantize(fused, trace, counting, staged[0], stage / "work")
        except Exception as exc:  # noqa: BLE001 - any backend error is this backend's failure on the model
            raise QuantizeError(f"the {backend} backend failed on {label}: {one_line(exc)}") from exc
        written = Written(form.files(target), sum(p.stat().st_size for p in staged), float_bytes, counting.used)
        install_files(staged, form.files(target))
    return written


def _side_by_side(fns: dict[str, Callable[[], Any]], *, rounds: int, repeat: int, warmup: int) -> dict[str, float]:
    """Median ms of each callable, timed ``repeat`` times in each of ``rounds`` alternating rounds
    (a change in the machine's load hits every contender alike)."""
    import statistics

    from cnnlab.bench.timer import time_callable

    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].extend(time_callable(fn, warmup=warmup, repeat=repeat).samples_ms)
    return {name: statistics.median(values) for name, values in samples.items()}




def measure_latency(model: Any, path: str | os.PathLike[str], example: Any, *, backend: str = DEFAULT_BACKEND,
                    threads: int | None = None, rounds: int = 3, repeat: int = 20, warmup: int = 5,
                    ) -> dict[str, float]:
    """``{"float": ms, "int8": ms}``: median latency on ``example`` of the FP32 ``model`` (BNs
    folded) through the ``cnnlab.bench`` runtime of ``backend`` and of the INT8 file at ``path``,
    timed side by side with the same ``threads``."""
    from cnnlab.bench.runtimes import get_runtime
    from cnnlab.threads import torch_threads

    form = get_backend(backend)
    with torch_threads(threads) as n:
        fused = _fused(model, example)
        fns = {"float": get_runtime(form.float_runtime).prepare(fused, example, threads=n),
               "int8": form.bind(Path(path), example, n)}
        return _side_by_side(fns, rounds=rounds, repeat=repeat, warmup=warmup)


@dataclass(frozen=True)
class QuantizeResult:
    """``quantize_trained``'s numbers; ``to_dict`` is ``cnnlab quantize --json``."""

    model: str
    backend: str
    backend_version: str
    float_runtime: str
    data: str
    written: Written
    calibration_batch_size: int
    float_correct: int
    int8_correct: int
    n: int
    float_ms: float
    int8_ms: float
    threads: int
    input_shape: tuple[int, ...]

    @property
    def float_top1(self) -> float:
        return self.float_correct / self.n

    @property
    def int8_top1(self) -> float:
        return self.int8_correct / self.n

    @property
    def speedup(self) -> float:
        return self.float_ms / self.int8_ms

    def to_dict(self) -> dict[str, Any]:
        w = self.written
        return {
            "model": self.model, "backend": self.backend, "backend_version": self.backend_version, "data": self.data,
            "out": str(w.files[0]), "files": [str(p) for p in w.files], "threads": self.threads,
            "input_shape": list(self.input_shape),
            "calibration": {"split": "train", "batches": w.batches_used, "batch_size": self.calibration_batch_size,
                            "images": w.batches_used * self.calibration_batch_size},
            "test_images": self.n,
            "float": {"top1": self.float_top1, "correct": self.float_correct, "bytes": w.float_bytes,
                      "size_mb": w.float_bytes / MB, "median_ms": self.float_ms,
                      "runtime": f"{self.float_runtime} fp32"},
            "int8": {"top1": self.int8_top1, "correct": self.int8_correct, "bytes": w.bytes, "size_mb": w.bytes / MB,
                     "median_ms": self.int8_ms, "runtime": f"{self.backend} int8"},
            "accuracy_drop": self.float_top1 - self.int8_top1,
            "speedup": self.speedup,
        }

    def rows(self) -> list[list[str]]:
        """The table: one row for the float model, one for the INT8 file."""
        w = self.written
        size = 3 if w.float_bytes < 10 * MB else 1
        return [
            ["float32", f"{self.float_runtime} fp32", f"{self.float_top1:.4f}", f"{w.float_bytes / MB:.{size}f}",
             f"{self.float_ms:.3f}", "1.00"],
            ["int8", f"{self.backend} int8", f"{self.int8_top1:.4f}", f"{w.bytes / MB:.{size}f}",
             f"{self.int8_ms:.3f}", f"{self.speedup:.2f}"],
        ]


HEADER = ("model", "runtime", "test top-1", "size (MB)", "latency (ms, batch 1)", "speed-up")


def quantize_trained(trained: Any, out: str | os.PathLike[str], *, data: str | None = None,
                     backend: str = DEFAULT_BACKEND, calibration_batches: int = 10, calibration_batch_size: int = 32,
                     threads: int | None = None, rounds: int = 3, repeat: int = 20, warmup: int = 5, seed: int = 0,
                     eval_batch_size: int = 256, progress: Callable[[str], None] | None = None) -> QuantizeResult:
    """Quantize a ``cnnlab.train.inference.Trained`` model to INT8 with ``backend``, calibrated
    on ``calibration_batches`` batches of ``calibration_batch_size`` images of the training split
    of ``data`` (default: the data it was trained on; drawn with ``seed``), write it to ``out``,
    and measure float vs INT8 test top-1, file size and batch-1 latency (``rounds`` x ``repeat``
    timed calls each, after ``warmup``).

    Raises ``ValueError`` (``DataError`` included) for bad arguments before any work, and
    ``QuantizeError`` when the backend is not installed or fails on the model."""
    from cnnlab.quantize.calibrate import calibration_batches as draw
    from cnnlab.quantize.calibrate import top1_accuracy
    from cnnlab.threads import torch_threads
    from cnnlab.train.inference import trained_splits

    say = progress or (lambda text: None)
    check_out(backend, out)
    form = get_backend(backend)
    _require(form)
    if calibration_batches < 1:
        raise ValueError(f"calibration needs at least 1 batch, got {calibration_batches}")
    split = trained_splits(trained, data, use="quantize with")
    batches = draw(split.train, calibration_batches, calibration_batch_size, seed=seed)
    example = split.test[0][0].unsqueeze(0)
    with torch_threads(threads) as n:
        say(f"quantizing {trained.name} with {backend} on {calibration_batches} calibration batches")
        written = quantize_model(trained.model, example, batches, out, backend=backend, label=trained.name)
        say("evaluating float and INT8 on the test split")
        fused = _fused(trained.model, example)
        float_accuracy = top1_accuracy(fused, split.test, batch_size=eval_batch_size)
        try:
            int8_accuracy = top1_accuracy(form.load(written.files[0], n), split.test, batch_size=eval_batch_size)
        except Exception as exc:  # noqa: BLE001 - a file its runtime cannot run
            raise QuantizeError(f"{backend} cannot run the INT8 file: {one_line(exc)}") from exc
        say("timing float and INT8 at batch 1")
        times = measure_latency(trained.model, written.files[0], example, backend=backend, threads=n, rounds=rounds,
                                repeat=repeat, warmup=warmup)
    return QuantizeResult(
        model=trained.name, backend=backend, backend_version=form.version(), float_runtime=form.float_runtime,
        data=data or trained.data, written=written, calibration_batch_size=calibration_batch_size,
        float_correct=float_accuracy.correct, int8_correct=int8_accuracy.correct, n=float_accuracy.n,
        float_ms=times["float"], int8_ms=times["int8"], threads=n, input_shape=tuple(example.shape),
    )


def quantize_checkpoint(checkpoint: str | os.PathLike[str], name: str | None, out: str | os.PathLike[str],
                        **kwargs: Any) -> QuantizeResult:
    """``quantize_trained`` on the model of a ``cnnlab train`` checkpoint (``name``: the model it
    holds; a ``CheckpointError`` for a missing, corrupt or other model's checkpoint)."""
    from cnnlab.train.inference import from_checkpoint

    return quantize_trained(from_checkpoint(checkpoint, name), out, **kwargs)
