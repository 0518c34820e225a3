"""The INT8 backends: one class each, behind one interface.

A ``Backend`` has a ``name``, the ``suffix`` of the file it writes, ``available()`` (None, or one
line saying what is missing and how to install it), ``quantize(model, example, batches, path,
workdir)`` (post-training static INT8 calibrated on ``batches``; writes ``path`` and returns the
size of the same model written in FP32 in the same format), ``load(path, threads)`` (the file as
a function ``batch -> logits``) and ``bind(path, example, threads)`` (a no-argument callable
running ``example``, for ``cnnlab.bench.timer``). ``float_runtime`` names the
``cnnlab.bench.runtimes`` adapter that runs the FP32 model the same way, for the speed-up.

* ``openvino``: NNCF's post-training quantization of an OpenVINO model converted from torch
  (``openvino.convert_model``; ``nncf.quantize`` over an ``nncf.Dataset`` of calibration batches;
  https://docs.openvino.ai/2025/openvino-workflow/model-optimization-guide/quantizing-models-post-training/basic-quantization-flow.html).
  Writes ``NAME.xml`` + ``NAME.bin`` (FakeQuantize nodes, INT8 weights).
* ``onnxruntime``: ONNX Runtime's static quantization (``quant_pre_process``, then
  ``quantize_static`` with a ``CalibrationDataReader``, QDQ format, per-channel INT8 weights,
  UINT8 activations, min-max calibration;
  https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html). Writes one
  ``.onnx`` file (QuantizeLinear/DequantizeLinear pairs ONNX Runtime fuses into integer kernels).
* ``torch``: PyTorch 2 export quantization with the x86 inductor quantizer, from torchao
  (``torch.export`` -> ``prepare_pt2e`` -> calibrate -> ``convert_pt2e``;
  https://docs.pytorch.org/ao/stable/pt2e_quantization/index.html and the tutorial
  https://docs.pytorch.org/ao/stable/tutorials_source/pt2e_quant_x86_inductor.html). Writes a
  ``torch.export`` program (``.pt2``; load it after ``import torchao``, which registers the
  ``quantized_decomposed`` operators); it runs INT8 kernels once ``torch.compile`` (inductor,
  with freezing) lowers it, which takes a while on a small CPU.

Every file has a dynamic batch dimension. Threads are set as ``cnnlab.bench.runtimes`` sets them:
ONNX Runtime's ``intra_op_num_threads`` and OpenVINO's ``INFERENCE_NUM_THREADS`` to ``threads``,
torch's through ``torch.set_num_threads`` by the caller.

Nothing here imports torch, openvino, onnxruntime or nncf until a method runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Backend", "CountingBatches", "OnnxRuntime", "OpenVINO", "QuantizeError",
           "Torch", "get_backend"]


class QuantizeError(Exception):
    """A backend that is not installed here or failed on a model: one line."""


class CountingBatches:
    """Calibration batches that count how many distinct ones a backend read (``used``; a backend
    may pass over them more than once)."""

    def __init__(self, batches: Sequence[Any]) -> None:
        self.batches = list(batches)
        self.seen: set[int] = set()

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Any]:
        for index, batch in enumerate(self.batches):
            self.seen.add(index)
            yield batch

    @property
    def used(self) -> int:
        return len(self.seen)


def _files_bytes(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


class Backend:
    """The interface; subclasses set the class attributes and override the methods."""

    name = ""
    suffix = ""
    packages: tuple[str, ...] = ()  # the modules it imports
    install = ""  # the pip command that installs them
    float_runtime = ""  # the cnnlab.bench runtime that runs the FP32 model the same way

    def available(self) -> str | None:
        """None when the backend can run here, else the line saying what to install."""
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if missing:
            return (f"the {self.name} backend needs {', '.join(missing)}, which "
                    f"{'is' if len(missing) == 1 else 'are'} not installed here: {self.install}")
        return None

    def version(self) -> str:
        """The versions of the packages that do the work, e.g. ``nncf 3.4.0, openvino 2026.4.1``."""
        from importlib import metadata

        found = []
        for package in self.packages:
            try:
                found.append(f"{package} {metadata.version(package)}")
            except metadata.PackageNotFoundError:
                found.append(f"{package} (not installed)")
        return ", ".join(found)

    def files(self, path: Path) -> tuple[Path, ...]:
        """Every file written for ``path``, the main one first."""
        return (path,)

    def quantize(self, model: Any, example: Any, batches: CountingBatches, path: Path, workdir: Path) -> int:
        """Write ``model`` (FP32, eval mode, BatchNorms folded) quantized to INT8 to ``path``,
        calibrated on ``batches``; ``workdir`` is a scratch folder. Returns the bytes of the FP32
        model in the same format."""
        raise NotImplementedError

    def load(self, path: Path, threads: int) -> Callable[[Any], Any]:
        """The file at ``path`` as a function from an input batch (a float32 tensor) to logits."""
        raise NotImplementedError

    def bind(self, path: Path, example: Any, threads: int) -> Callable[[], Any]:
        """A no-argument callable running the file on ``example`` (converted once), to be timed."""
        run = self.load(path, threads)
        return lambda: run(example)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _dynamic_batch_shape(example: Any) -> list[int]:
    return [-1, *example.shape[1:]]


class OpenVINO(Backend):
    """NNCF's post-training quantization of the OpenVINO model (see the module docstring)."""

    name, suffix = "openvino", ".xml"
    packages = ("openvino", "nncf")
    install = "pip install openvino nncf"
    float_runtime = "openvino"

    def files(self, path):
        return (path, path.with_suffix(".bin"))

    def quantize(self, model, example, batches, path, workdir):
        import nncf
        import openvino

        from cnnlab.export import quiet

        with quiet():  # the converter's tracer warnings, NNCF's progress bar
            converted = openvino.convert_model(model, example_input=example, input=[_dynamic_batch_shape(example)])
            floating = workdir / "float.xml"
            openvino.save_model(converted, str(floating), compress_to_fp16=False)
            dataset = nncf.Dataset(batches, lambda batch: batch.numpy())
            quantized = nncf.quantize(converted, dataset, subset_size=len(batches))
            openvino.save_model(quantized, str(path), compress_to_fp16=False)
        return _files_bytes(self.files(floating))

    def load(self, path, threads):
        import torch

        from cnnlab.bench.runtimes import openvino_compiled

        compiled = openvino_compiled(str(path), dtype="fp32", threads=threads)
        output = compiled.output(0)
        return lambda x: torch.from_numpy(compiled({0: x.numpy()})[output])

    def bind(self, path, example, threads):
        import numpy as np
        import openvino

        from cnnlab.bench.runtimes import openvino_compiled

        # Timed at the example's static shape, as the FP32 runtime (a batch-1 export) is: a
        # dynamic batch costs OpenVINO's CPU plugin ~15 % at batch 1 (mobilenet_v2 measured here).
        model = openvino.Core().read_model(str(path))
        model.reshape(list(example.shape))
        compiled = openvino_compiled(model, dtype="fp32", threads=threads)  # compile_model takes a Model too
        request = compiled.create_infer_request()
        x = np.ascontiguousarray(example.numpy())
        output = compiled.output(0)
        infer = request.infer
        return lambda: infer({0: x}, share_inputs=True)[output]


def _reader(batches: CountingBatches, input_name: str) -> Any:
    """An ONNX Runtime ``CalibrationDataReader`` (``get_next`` until None) over ``batches``."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch.numpy()}

    return Reader()


class OnnxRuntime(Backend):
    """ONNX Runtime's static QDQ quantization (see the module docstring)."""

    name, suffix = "onnxruntime", ".onnx"
    packages = ("onnxruntime", "onnx")
    install = "pip install onnxruntime onnx"
    float_runtime = "onnxruntime"

    def quantize(self, model, example, batches, path, workdir):
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from cnnlab.bench.runtimes import export_onnx
        from cnnlab.export import quiet

        floating, prepared = workdir / "float.onnx", workdir / "prepared.onnx"
        with quiet():
            export_onnx(model, example, str(floating), dynamic_batch=True, single_file=True)
            quant_pre_process(str(floating), str(prepared))  # shape inference + graph optimisation
            quantize_static(str(prepared), str(path), _reader(batches, "input"), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        return floating.stat().st_size

    def load(self, path, threads):
        import torch

        from cnnlab.bench.runtimes import onnxruntime_session

        session = onnxruntime_session(str(path), threads=threads)
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])

    def bind(self, path, example, threads):
        import numpy as np

        from cnnlab.bench.runtimes import onnxruntime_session

        session = onnxruntime_session(str(path), threads=threads)
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(example.numpy())}
        run = session.run
        return lambda: run(None, feed)[0]


class Torch(Backend):
    """PT2E with the x86 inductor quantizer (see the module docstring)."""

    name, suffix = "torch", ".pt2"
    packages = ("torch", "torchao")
    install = "pip install torchao"
    float_runtime = "compile"

    @staticmethod
    def _export(model: Any, example: Any, *, strict: bool = False) -> Any:
        import torch

        return torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                   strict=strict)

    def quantize(self, model, example, batches, path, workdir):
        import torch
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer, get_default_x86_inductor_quantization_config,
        )

        from cnnlab.export import quiet

        with quiet():
            # Strict (dynamo) capture: the non-strict one groups every call of a module that forward
            # reuses (ResNet's one ReLU per block) into one source partition, which the x86
            # quantizer refuses ("Input partition has more than one output node").
            program = self._export(model, example, strict=True)
            floating = workdir / "float.pt2"
            torch.export.save(program, str(floating))
            quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(program.module(), quantizer)
            with torch.no_grad():
                for batch in batches:  # the observers record each activation's range
                    prepared(batch)
            converted = convert_pt2e(prepared)  # weights folded to INT8 constants
            _drop_unused_attributes(converted)
            torch.export.save(self._export(converted, example), str(path))
        return floating.stat().st_size

    def load(self, path, threads):
        import torch
        import torchao  # noqa: F401 - registers the quantized_decomposed operators the program calls

        return _compiled(torch.compile(torch.export.load(str(path)).module(), dynamic=False))

    def bind(self, path, example, threads):
        run = self.load(path, threads)
        run(example)  # compiles for this shape now, not in the timed calls
        return lambda: run(example)


def _compiled(module: Any) -> Callable[[Any], Any]:
    """``module`` called under ``torch.no_grad`` and inductor's freezing, which lets inductor
    prepack the INT8 weights into oneDNN's kernels (compilation is lazy: the first call with a
    new shape compiles, under the same settings)."""
    import torch

    def run(x: Any) -> Any:
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            return module(x)

    return run


def _drop_unused_attributes(module: Any) -> None:
    """Remove the FP32 parameters ``convert_pt2e`` left on the module unused (it reads their
    INT8 copies): ``torch.export`` would otherwise save both."""
    module.graph.eliminate_dead_code()
    used = {node.target for node in module.graph.nodes if node.op == "get_attr"}
    for name, _ in list(module.named_parameters()) + list(module.named_buffers()):
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(module.get_submodule(owner) if owner else module, leaf)
    module.recompile()


BACKENDS: dict[str, Backend] = {b.name: b for b in (OpenVINO(), OnnxRuntime(), Torch())}
DEFAULT_BACKEND = "openvino"  # the fastest that holds accuracy here: docs/quantize.md has the numbers


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a one-line ValueError naming the others."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}") from None
