"""Export a model to a deployable file -- ONNX, OpenVINO IR or a ``torch.export`` program -- and
prove the file computes what the model computes.

    >>> from cnnlab.export import export_model
    >>> result = export_model(model, (1, 3, 224, 224), "onnx", "resnet18.onnx", dynamic_batch=True)
    >>> result.summary()  # doctest: +SKIP
    'wrote resnet18.onnx (44.6 MiB, opset 18, dynamic batch, FP32 weights, 20 of 20 BatchNorms folded); ...'

* ``onnx``: ``torch.onnx`` through ``cnnlab.bench.runtimes.export_onnx`` (the TorchScript exporter,
  the dynamo one when that fails), one self-contained file, checked in ONNX Runtime.
* ``openvino``: ``openvino.convert_model`` on the PyTorch module, ``openvino.save_model`` to
  ``NAME.xml`` + ``NAME.bin`` with FP32 weights (``compress_to_fp16=False``; ``fp16_weights=True``
  stores FP16), checked in OpenVINO's CPU plugin with ``INFERENCE_PRECISION_HINT`` f32, so it
  does not silently compute in BF16.
* ``pt2``: ``torch.export.export`` and ``torch.export.save``, checked through ``torch.export.load``.

The model is exported in fp32 on the CPU, in eval mode, with every foldable BatchNorm folded
first by ``cnnlab.fuse_bn`` (``fuse=False`` keeps them; the TorchScript ONNX exporter and
OpenVINO's converter fold a BatchNorm that follows a convolution themselves, so there it mostly
matters for pt2 and for a BatchNorm after a linear layer). The model given is never modified.

The check: the written file is loaded in its runtime and run on seeded random inputs -- at the
fixed batch, or at batches 1 and 3 for a dynamic batch (traced at 2, so both differ from the
trace) -- and compared with the unfused model in torch eager, relative to the output's scale
(``cnnlab.bench.verify.max_rel_diff``; tolerance ``TOLERANCE["fp32"]`` = 1e-3, ``TOLERANCE["fp16"]``
with FP16 weights, widened to 10x the output's own rounding sensitivity). A random-init head can
give degenerate logits, on which any file "agrees": then a copy made usable by
``cnnlab.bench.verify.reference_model`` (head re-initialised, batch norms calibrated) is exported
the same way and checked too, while the file written keeps the real weights; when no usable copy
exists the result says the check is weak (``ExportResult.weak``), never a silent pass.

Files are staged in a temporary folder beside the target and moved into place (each with
``cnnlab.fileio.atomic_path``; OpenVINO's ``.bin`` before its ``.xml``) only after the check
passes: a failed or interrupted export never replaces an existing file. A file that disagrees
is kept for inspection as ``NAME.rejected.EXT`` and ``ExportMismatch`` is raised.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
import os
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

from cnnlab.bench.run import one_line
from cnnlab.fileio import install_files, staging_folder

__all__ = [
    "DEFAULT_OPSET", "FORMATS", "ExportError", "ExportMismatch", "ExportResult", "check_target", "export_model",
    "onnx_opsets", "quiet", "rejected_path", "require_runtime",
]

DEFAULT_OPSET = 18  # the dynamo exporter's own opset, within the TorchScript exporter's range too
DYNAMIC_TRACE_BATCH = 2  # torch.export specialises a dimension traced at size 1
DYNAMIC_CHECK_BATCHES = (1, 3)
SEED = 0  # the check's random inputs


class ExportError(Exception):
    """The export cannot be done or failed: a runtime that is not installed, an exporter error.
    One line; the exception behind it is the ``__cause__``."""


class ExportMismatch(ExportError):
    """The written file disagrees with torch eager; ``result`` has the numbers."""

    def __init__(self, message: str, result: "ExportResult") -> None:
        super().__init__(message)
        self.result = result


# -- the three formats --------------------------------------------------------------------------
@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Nothing printed while an exporter runs: its warnings, its logging (torch.export logs each
    failed guard and dumps the graph) and its prints. An error keeps its message."""
    import io
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


class _Format:
    """One format: its file suffix, the package whose runtime checks it, how to write and load it."""

    name = ""
    suffix = ""
    package = ""  # imported to check the file; its version is reported
    runtime = ""  # what runs the file, for the summary

    def files(self, path: Path) -> tuple[Path, ...]:
        """The files written for ``path``: the main one first."""
        return (path,)

    def version(self) -> str:
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return "unknown"

    def write(self, model: Any, example: Any, path: Path, *, dynamic_batch: bool, opset: int | None,
              fp16_weights: bool) -> str:
        """Write ``model`` traced on ``example`` to ``path``; return the exporter's name."""
        raise NotImplementedError

    def load(self, path: Path) -> Callable[[Any], Any]:
        """The written file as a function of one input tensor."""
        raise NotImplementedError


class _Onnx(_Format):
    name, suffix, package, runtime = "onnx", ".onnx", "onnxruntime", "onnxruntime"

    def write(self, model, example, path, *, dynamic_batch, opset, fp16_weights):
        from cnnlab.bench.runtimes import export_onnx

        return export_onnx(model, example, str(path), opset=opset, dynamic_batch=dynamic_batch, single_file=True)

    def load(self, path):
        import torch

        from cnnlab.bench.runtimes import onnxruntime_session

        session = onnxruntime_session(str(path), threads=torch.get_num_threads())
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x.numpy()})[0]


class _OpenVINO(_Format):
    name, suffix, package, runtime = "openvino", ".xml", "openvino", "openvino"

    def files(self, path):
        return (path, path.with_suffix(".bin"))

    def write(self, model, example, path, *, dynamic_batch, opset, fp16_weights):
        import openvino

        shape = (-1 if dynamic_batch else example.shape[0], *example.shape[1:])
        converted = openvino.convert_model(model, example_input=example, input=[shape])
        openvino.save_model(converted, str(path), compress_to_fp16=fp16_weights)
        return "openvino.convert_model"

    def load(self, path):
        import torch

        from cnnlab.bench.runtimes import openvino_compiled

        compiled = openvino_compiled(str(path), dtype="fp32", threads=torch.get_num_threads())
        output = compiled.output(0)
        return lambda x: compiled({0: x.numpy()})[output]


class _Pt2(_Format):
    name, suffix, package, runtime = "pt2", ".pt2", "torch", "torch.export.load"

    def write(self, model, example, path, *, dynamic_batch, opset, fp16_weights):
        import torch

        shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
        program = torch.export.export(model, (example,), dynamic_shapes=shapes)
        torch.export.save(program, str(path))
        return "torch.export"

    def load(self, path):
        import torch

        module = torch.export.load(str(path)).module()
        return module


FORMATS: dict[str, _Format] = {f.name: f for f in (_Onnx(), _OpenVINO(), _Pt2())}


# -- the result ---------------------------------------------------------------------------------
def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 / 10 else f"{n / 1024:.1f} KiB"


def _batches(diffs: dict[int, float]) -> str:
    keys = list(diffs)
    return f"batch {keys[0]}" if len(keys) == 1 else "batch " + ", ".join(map(str, keys[:-1])) + f" and {keys[-1]}"


def _worst(diffs: dict[int, float]) -> float:
    return max(diffs.values()) if diffs else math.nan


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote and how well the file agrees with torch eager.

    ``max_rel_diff`` maps each checked batch to ``max |file - eager| / max |eager|``;
    ``reference_max_rel_diff`` is the same for the usable copy exported when the model's own
    output is degenerate or ill-conditioned (``note`` says why), else None. ``batch`` is None
    for a dynamic batch. ``bytes`` counts every file written (OpenVINO's ``.xml`` and ``.bin``).
    """

    path: Path
    files: tuple[Path, ...]
    format: str
    bytes: int
    input_shape: tuple[int, ...]  # one sample, without the batch
    batch: int | None
    opset: int | None
    weights: str  # "fp32" or "fp16"
    exporter: str
    runtime: str
    runtime_version: str
    max_rel_diff: dict[int, float]
    tolerance: float
    bn_folded: int
    bn_total: int
    fused: bool
    ok: bool
    note: str = ""
    reference_max_rel_diff: dict[int, float] | None = None
    reference_tolerance: float | None = None
    written: bool = field(default=True)  # False when the check failed (the file is at rejected_path)

    @property
    def dynamic_batch(self) -> bool:
        return self.batch is None

    @property
    def weak(self) -> bool:
        """Whether agreement proves little (no usable reference output was found)."""
        from cnnlab.bench.verify import WEAK

        return self.note.startswith(WEAK)

    def summary(self) -> str:
        """One line: what was written, and how far the file is from torch eager."""
        names = " + ".join(p.name if i else str(p) for i, p in enumerate(self.files))
        what = [_mib(self.bytes)]
        if self.opset is not None:
            what.append(f"opset {self.opset}")
        what.append("dynamic batch" if self.batch is None else f"batch {self.batch}")
        what.append(f"{self.weights.upper()} weights")
        if self.bn_total:
            what.append(f"{self.bn_folded} of {self.bn_total} BatchNorms folded" if self.fused
                        else f"{self.bn_total} BatchNorms kept")
        hint = " (f32 precision hint)" if self.format == "openvino" else ""
        line = (f"wrote {names} ({', '.join(what)}); {self.runtime} {self.runtime_version}{hint} vs torch eager: "
                f"max relative difference {_worst(self.max_rel_diff):.1e} at {_batches(self.max_rel_diff)}")
        if self.reference_max_rel_diff is not None:
            why, _, what = self.note.partition(": ")
            line += (f"; {why}, so a copy ({what}) was exported the same way: max relative difference "
                     f"{_worst(self.reference_max_rel_diff):.1e}")
        elif self.note:
            line += f"; {self.note}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (paths as strings, batches as string keys)."""
        def diffs(d: dict[int, float] | None) -> dict[str, float] | None:
            return None if d is None else {str(k): v for k, v in d.items()}

        return {
            "path": str(self.path), "files": [str(p) for p in self.files], "format": self.format,
            "bytes": self.bytes, "input_shape": list(self.input_shape), "batch": self.batch,
            "dynamic_batch": self.dynamic_batch, "opset": self.opset, "weights": self.weights,
            "exporter": self.exporter, "runtime": self.runtime, "runtime_version": self.runtime_version,
            "max_rel_diff": diffs(self.max_rel_diff), "tolerance": self.tolerance, "fused": self.fused,
            "bn_folded": self.bn_folded, "bn_total": self.bn_total, "ok": self.ok, "weak": self.weak,
            "note": self.note, "reference_max_rel_diff": diffs(self.reference_max_rel_diff),
            "reference_tolerance": self.reference_tolerance, "written": self.written,
        }


# -- checking the arguments ---------------------------------------------------------------------
def onnx_opsets() -> range:
    """The ONNX opsets this torch's exporters know (``torch.onnx``'s minimum to its maximum)."""
    try:
        from torch.onnx import _constants

        return range(_constants.ONNX_MIN_OPSET, _constants.ONNX_MAX_OPSET + 1)
    except (ImportError, AttributeError):  # a torch that moved its private constants
        return range(7, 24)


def check_target(fmt: str, path: str | os.PathLike[str], *, opset: int | None = None,
                 fp16_weights: bool = False) -> Path:
    """``path`` as a Path after checking, before any work, that ``fmt`` is known, ``path`` has
    its extension and an existing folder, ``opset`` is for ONNX and in range and
    ``fp16_weights`` for OpenVINO. A one-line ``ValueError`` otherwise."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    target = Path(path)
    suffix = FORMATS[fmt].suffix
    if target.suffix.lower() != suffix:
        raise ValueError(f"{str(path)!r}: {fmt} files end in {suffix}")
    if target.is_dir():
        raise ValueError(f"{str(path)!r} is a directory; give the file to write, e.g. {target / ('model' + suffix)}")
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"{str(path)!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{str(path)!r}: the folder {str(folder)!r} is not writable")
    if opset is not None:
        if fmt != "onnx":
            raise ValueError(f"an opset is for the onnx format, not {fmt}")
        opsets = onnx_opsets()
        if opset not in opsets:
            raise ValueError(f"opset {opset} is not supported; this torch exports opsets {opsets.start} to "
                             f"{opsets.stop - 1}")
    if fp16_weights and fmt != "openvino":
        raise ValueError(f"FP16 weights are for the openvino format, not {fmt}")
    return target


def require_runtime(fmt: str) -> None:
    """Import the package that runs ``fmt``'s files (onnxruntime, openvino, torch); an
    ``ExportError`` saying how to install it when it is missing."""
    form = FORMATS[fmt]
    try:
        importlib.import_module(form.package)
    except ImportError as exc:
        raise ExportError(f"the {fmt} format needs {form.package} to check the file it writes, and it is not "
                          f"installed here: pip install {form.package}") from exc


def _sample_shape(example_or_input_shape: Any) -> tuple[Any, tuple[int, ...]]:
    """(the example tensor or None, its full shape with the batch first)."""
    import torch

    if isinstance(example_or_input_shape, torch.Tensor):
        example = example_or_input_shape.detach().to(device="cpu", dtype=torch.float32)
        if example.dim() < 2:
            raise ValueError(f"the example input is a batch, e.g. 1x3x224x224; got shape {tuple(example.shape)}")
        return example, tuple(example.shape)
    shape = tuple(example_or_input_shape)
    if len(shape) < 2 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"the input shape is the full shape, batch first, e.g. (1, 3, 224, 224); got {shape!r}")
    return None, shape


# -- staging --------------------------------------------------------------------------------------
def rejected_path(path: str | os.PathLike[str]) -> Path:
    """Where a file that failed its check is kept: ``NAME.rejected.EXT`` beside ``path``."""
    target = Path(path)
    return target.with_name(f"{target.stem}.rejected{target.suffix}")


# -- writing and checking -----------------------------------------------------------------------
def _forward(model: Any, x: Any) -> Any:
    import torch

    from cnnlab.bench.verify import as_tensor

    with torch.inference_mode():
        return as_tensor(model(x))


def _write_and_check(fmt: _Format, source: Any, trace_example: Any, inputs: list[Any], path: Path, *,
                     fuse: bool, dynamic_batch: bool, opset: int | None, fp16_weights: bool,
                     ) -> tuple[str, dict[int, float], tuple[int, int]]:
    """Fold ``source``'s BatchNorms (a copy), write it to ``path``, load the file and compare it
    with ``source`` in eager on each input. Returns (exporter, {batch: max_rel_diff},
    (BNs folded, BNs in all))."""
    from torch import nn

    from cnnlab.bench.verify import max_rel_diff
    from cnnlab.fuse import fuse_bn_report

    total = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in source.modules())
    model, folded = source, 0  # the exporters only trace it
    if fuse and total:
        report = fuse_bn_report(source, example_input=trace_example)  # a folded copy
        model, folded = report.model, report.num_folded
    try:
        with quiet():
            exporter = fmt.write(model, trace_example, path, dynamic_batch=dynamic_batch, opset=opset,
                                 fp16_weights=fp16_weights)
    except Exception as exc:  # noqa: BLE001 - any exporter error is this export's failure
        raise ExportError(f"{fmt.name} export failed: {one_line(exc)}") from exc
    try:
        run = fmt.load(path)
        diffs = {int(x.shape[0]): max_rel_diff(_forward(run, x), _forward(source, x)) for x in inputs}
    except Exception as exc:  # noqa: BLE001 - a file its own runtime cannot run
        raise ExportError(f"{fmt.runtime} cannot run the exported file: {one_line(exc)}") from exc
    return exporter, diffs, (folded, total)


def _file_opset(path: Path, requested: int) -> int:
    """The default-domain opset the ONNX file declares (an exporter may raise it), else ``requested``."""
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - onnx missing or unreadable: ONNX Runtime already ran it
        return requested
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), requested)


def export_model(model: Any, example_or_input_shape: Any, fmt: str, path: str | os.PathLike[str], *,
                 dynamic_batch: bool = False, opset: int | None = None, fuse: bool = True,
                 fp16_weights: bool = False) -> ExportResult:
    """Export ``model`` to ``path`` in ``fmt`` (``onnx``, ``openvino`` or ``pt2``), load the file
    in its runtime and check it against the model in torch eager (see the module docstring).

    ``example_or_input_shape`` is an input tensor or its shape, batch first (``(1, 3, 224, 224)``):
    the batch the file takes, unless ``dynamic_batch``. ``opset`` is the ONNX opset
    (``DEFAULT_OPSET`` when None); ``fuse`` folds BatchNorms first; ``fp16_weights`` stores
    OpenVINO's weights in FP16. Raises ``ValueError`` for bad arguments (before any work),
    ``ExportError`` when the runtime is not installed or the export fails, and ``ExportMismatch``
    when the file disagrees (nothing is written at ``path`` then; see ``rejected_path``).
    """
    import torch

    from cnnlab.bench.verify import reference_model, sensitivity, tolerance_for

    target = check_target(fmt, path, opset=opset, fp16_weights=fp16_weights)
    form = FORMATS[fmt]
    require_runtime(fmt)
    if fmt == "onnx" and opset is None:
        opset = DEFAULT_OPSET
    example, shape = _sample_shape(example_or_input_shape)
    sample = shape[1:]
    generator = torch.Generator().manual_seed(SEED)
    batches = DYNAMIC_CHECK_BATCHES if dynamic_batch else (shape[0],)
    inputs = [torch.randn((b, *sample), generator=generator) for b in batches]
    if example is None or (dynamic_batch and shape[0] < DYNAMIC_TRACE_BATCH):
        example = torch.randn((DYNAMIC_TRACE_BATCH if dynamic_batch else shape[0], *sample), generator=generator)
    source = copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    _forward(source, inputs[0])  # an input the model refuses fails here, before any file is written
    reference = reference_model(source, inputs[0])  # ``source`` itself when its output is usable
    dtype = "fp16" if fp16_weights else "fp32"
    settings = {"fuse": fuse, "dynamic_batch": dynamic_batch, "opset": opset, "fp16_weights": fp16_weights}
    files = form.files(target)
    with staging_folder(target) as stage:
        staged = [stage / p.name for p in files]
        exporter, diffs, (folded, total) = _write_and_check(form, source, example, inputs, staged[0], **settings)
        proxy_diffs: dict[int, float] | None = None
        tolerance = tolerance_for(dtype, reference.sensitivity)
        proxy_tolerance = None
        if reference.model is not source:
            # The real output says little: check the same export of the usable copy as well.
            tolerance = tolerance_for(dtype, sensitivity(source, inputs[0]))
            proxy_tolerance = tolerance_for(dtype, reference.sensitivity)
            (stage / "reference").mkdir()
            _, proxy_diffs, _ = _write_and_check(form, reference.model, example, inputs,
                                                 stage / "reference" / target.name, **settings)
        ok = _worst(diffs) <= tolerance and (proxy_diffs is None or _worst(proxy_diffs) <= proxy_tolerance)
        result = ExportResult(
            path=target, files=files, format=fmt, bytes=sum(p.stat().st_size for p in staged),
            input_shape=tuple(sample), batch=None if dynamic_batch else shape[0],
            opset=_file_opset(staged[0], opset) if fmt == "onnx" else None, weights=dtype, exporter=exporter,
            runtime=form.runtime, runtime_version=form.version(), max_rel_diff=diffs, tolerance=tolerance,
            bn_folded=folded, bn_total=total, fused=fuse, ok=ok,
            note=reference.note.replace(" for verification and timing", ""),
            reference_max_rel_diff=proxy_diffs, reference_tolerance=proxy_tolerance, written=ok,
        )
        if not ok:
            kept = [rejected_path(p) for p in files]
            for source_file, rejected in zip(staged, kept):
                os.replace(source_file, rejected)
            raise ExportMismatch(_mismatch(result, kept[0]), result)
        install_files(staged, files)
    return result


def _mismatch(result: ExportResult, kept: Path) -> str:
    """The one line of a failed check."""
    worst = max(result.max_rel_diff, key=result.max_rel_diff.__getitem__)
    what = (f"max relative difference {result.max_rel_diff[worst]:.1e} at batch {worst} "
            f"(tolerance {result.tolerance:.0e})")
    if result.reference_max_rel_diff is not None and _worst(result.max_rel_diff) <= result.tolerance:
        ref = result.reference_max_rel_diff
        worst = max(ref, key=ref.__getitem__)
        what = (f"on a copy with a usable output ({result.note}) max relative difference {ref[worst]:.1e} at "
                f"batch {worst} (tolerance {result.reference_tolerance:.0e})")
    return (f"the exported file disagrees with torch eager in {result.runtime} {result.runtime_version}: {what}; "
            f"{result.path} is left as it was, the rejected export is {kept}")
