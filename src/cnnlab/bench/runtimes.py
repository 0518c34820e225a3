"""Runtimes: each one small adapter behind one interface, so adding a runtime is one class.

A ``Runtime`` has a ``name``, a ``version()``, ``available(device, dtype)`` (None when it can run
here, else the reason it cannot) and ``prepare(model, example, *, dtype, device, threads)``,
which returns a callable taking no arguments: one forward pass on ``example`` (already bound,
converted as the runtime needs it, so the timer measures the runtime and nothing else).
``prepare`` never changes the model it is given.

Threads are set the same way for every runtime: torch's ``set_num_threads`` (done once by
``cnnlab.bench.bench``), ONNX Runtime's ``intra_op_num_threads``, OpenVINO's
``INFERENCE_NUM_THREADS`` — all to the same ``threads``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from importlib import metadata
from typing import Any, Callable, Iterator

__all__ = [
    "DTYPES",
    "RUNTIMES",
    "ChannelsLast",
    "Compile",
    "Eager",
    "Fused",
    "OnnxRuntime",
    "OpenVINO",
    "Runtime",
    "export_onnx",
    "get_runtime",
    "onnxruntime_session",
    "openvino_compiled",
    "shared_exports",
]

DTYPES = ("fp32", "bf16", "fp16")


def torch_dtype(dtype: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


class Runtime:
    """The interface. Subclasses set ``name`` and override ``prepare`` (and ``available`` and
    ``version`` when they depend on another package)."""

    name: str = ""
    package: str = "torch"  # whose version ``version()`` reports
    # A safer way to prepare, tried when the output of ``prepare`` disagrees with eager:
    # what it does, said in the result's note; ``prepare(..., fallback=True)`` does it.
    fallback: str | None = None

    def version(self) -> str | None:
        return _package_version(self.package)

    def available(self, device: str = "cpu", dtype: str = "fp32") -> str | None:
        """None when this runtime can run ``dtype`` on ``device`` here, else why not."""
        if importlib.util.find_spec(self.package) is None:
            return f"{self.package} is not installed"
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                return "no CUDA device here"
        return None

    def prepare(self, model: Any, example: Any, *, dtype: str = "fp32", device: str = "cpu",
                threads: int | None = None) -> Callable[[], Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _torch_copy(model: Any, example: Any, dtype: str, device: str) -> tuple[Any, Any]:
    """A copy of the model in eval mode on ``device`` in ``dtype``, and the example to match."""
    dt = torch_dtype(dtype)
    moved = copy.deepcopy(model).eval().to(device=device, dtype=dt)
    return moved, example.to(device=device, dtype=dt)


class Eager(Runtime):
    """torch eager, as the model is written."""

    name = "eager"

    def prepare(self, model, example, *, dtype="fp32", device="cpu", threads=None):
        module, x = _torch_copy(model, example, dtype, device)
        return lambda: module(x)


class ChannelsLast(Runtime):
    """torch eager with the weights and the input in channels-last (NHWC) memory format."""

    name = "channels_last"

    def prepare(self, model, example, *, dtype="fp32", device="cpu", threads=None):
        import torch

        module, x = _torch_copy(model, example, dtype, device)
        module = module.to(memory_format=torch.channels_last)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return lambda: module(x)


class Fused(Runtime):
    """torch eager after ``cnnlab.fuse.fuse_bn``: every eval-mode BatchNorm folded into its conv
    or linear layer."""

    name = "fused"

    def available(self, device="cpu", dtype="fp32"):
        reason = super().available(device, dtype)
        if reason is not None:
            return reason
        try:
            from cnnlab.fuse import fuse_bn  # noqa: F401
        except ImportError as exc:
            return f"cnnlab.fuse.fuse_bn cannot be imported ({exc})"
        return None

    def prepare(self, model, example, *, dtype="fp32", device="cpu", threads=None):
        from cnnlab.fuse import fuse_bn

        fused = fuse_bn(copy.deepcopy(model).eval())  # fold in fp32, then convert
        module, x = _torch_copy(fused, example, dtype, device)
        return lambda: module(x)


def _c_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


class Compile(Runtime):
    """``torch.compile`` (inductor). The first call compiles; ``prepare`` makes it, so a
    compilation failure is reported as this runtime's error. Each model starts from empty
    dynamo caches (``torch._dynamo.reset()``, which also drops what else this process compiled):
    every zoo model runs the same ``forward`` code (``cnnlab.models.base``), and after
    ``recompile_limit`` (8) compiled variants of one code object dynamo silently runs the rest
    eagerly, so the 9th model on would have been timed in eager mode under this runtime's name.
    A model of which dynamo captured no graph is reported as an error, not timed.

    It compiles with inductor's ``freezing`` (weights as constants, folded and prepacked for
    oneDNN on the CPU: torch's advice for inference, 1.5x on resnet50 and mobilenet_v2 here).
    Freezing miscompiles a few models in torch 2.14 (inception_resnet_v1/v2: output off by 40 %,
    though each stage alone compiles right); when the output disagrees with eager, the model is
    compiled again without it (``fallback``) and the result says so."""

    name = "compile"
    fallback = "compiled without inductor's freezing, which gave a wrong output"

    def available(self, device="cpu", dtype="fp32"):
        reason = super().available(device, dtype)
        if reason is None and not device.startswith("cuda") and _c_compiler() is None:
            return "torch.compile (inductor) needs a C compiler on the CPU; none found (cc, gcc, clang)"
        return reason

    def prepare(self, model, example, *, dtype="fp32", device="cpu", threads=None, fallback=False):
        import torch
        from torch._dynamo.utils import counters

        module, x = _torch_copy(model, example, dtype, device)
        torch._dynamo.reset()
        _release_inductor_modules()
        graphs = counters["stats"]["unique_graphs"]
        compiled = torch.compile(module)
        with torch._inductor.config.patch(freezing=not fallback), torch.inference_mode():
            compiled(x)
        if counters["stats"]["unique_graphs"] == graphs:
            raise RuntimeError("torch.compile captured no graph of this model: it would run in eager mode")
        return lambda: compiled(x)


def _release_inductor_modules() -> None:
    """Let go of the Python modules inductor generated so far. Each holds its graph's constants
    (with freezing: every weight, folded and prepacked) and stays in ``sys.modules`` and
    inductor's ``PyCodeCache`` for the life of the process, so a run over the zoo grew by the
    size of every model it compiled (24 GB, killed, 120 models in). Functions already compiled
    keep working: they hold their own module's globals."""
    from torch._inductor.codecache import PyCodeCache

    for module in PyCodeCache.modules:
        if sys.modules.get(module.__name__) is module:
            del sys.modules[module.__name__]
    PyCodeCache.cache_clear()


@contextlib.contextmanager
def _quiet_stdout_fd() -> Iterator[None]:
    """Silence file descriptor 1 (C++ writes included): torch 2.x's TorchScript exporter dumps the
    whole graph to stdout when it fails, because its log switch tests a function object for
    truth (``setup_onnx_logging``); a failure here only means the next exporter is tried."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def export_onnx(model: Any, example: Any, path: str, *, opset: int | None = None,
                dynamic_batch: bool = False, single_file: bool = False) -> str:
    """Export ``model`` on ``example`` to ``path`` with ``torch.onnx``: the TorchScript-based
    exporter (``dynamo=False``; seconds) first, the dynamo one (needs onnxscript) when that
    fails. The graph's input is named ``input`` and its output ``output``; ``opset`` is the ONNX
    opset (None: 17 for the TorchScript exporter, the dynamo exporter's own default);
    ``dynamic_batch`` makes dimension 0 of both symbolic (``batch``), which the dynamo exporter
    cannot trace from a batch of 1. ``single_file`` keeps the dynamo exporter's weights inside
    the file (under protobuf's 2 GB) instead of beside it in ``path.data``; the TorchScript
    exporter always writes one file. Returns which exporter worked."""
    import torch

    names = {"input_names": ["input"], "output_names": ["output"]}
    errors = []
    for dynamo in (False, True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if dynamo:
                    import io

                    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
                    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
                        torch.onnx.export(model, (example,), path, dynamo=True, optimize=True, opset_version=opset,
                                          dynamic_shapes=shapes, external_data=not single_file, **names)
                else:
                    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
                    with _quiet_stdout_fd():
                        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=opset or 17,
                                          do_constant_folding=True, dynamic_axes=axes, **names)
            return "dynamo" if dynamo else "torchscript"
        except Exception as exc:  # noqa: BLE001 - the next exporter may work
            errors.append(f"{'dynamo' if dynamo else 'torchscript'} exporter: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    raise RuntimeError("torch.onnx.export failed; " + "; ".join(errors))


_SHARED: list[dict[tuple[Any, ...], tuple[str, Any]]] = []  # the memos of the active shared_exports blocks


class _Kept:
    """The folder of a shared export: its ``cleanup`` waits for the end of ``shared_exports``."""

    def cleanup(self) -> None:
        pass


@contextlib.contextmanager
def shared_exports() -> Iterator[None]:
    """Within the block, each model is exported to ONNX once per input shape and dtype, and
    every runtime that reads ONNX (ONNX Runtime, OpenVINO) compiles that one file; the files are
    removed when the block ends. An export takes seconds for a large network (VGG-16: 3.5 s)."""
    memo: dict[tuple[Any, ...], tuple[str, Any]] = {}
    _SHARED.append(memo)
    try:
        yield
    finally:
        _SHARED.remove(memo)
        for _, folder in memo.values():
            folder.cleanup()


def _onnx_file(model: Any, example: Any, dtype: str) -> tuple[str, Any]:
    """The model exported to a temporary ONNX file (in ``dtype``), and the folder to remove
    (one whose removal waits, inside ``shared_exports``)."""
    key = (id(model), tuple(example.shape), str(example.dtype), dtype)
    if _SHARED and key in _SHARED[-1]:
        return _SHARED[-1][key][0], _Kept()
    folder = tempfile.TemporaryDirectory(prefix="cnnlab-bench-")
    path = os.path.join(folder.name, "model.onnx")
    module, x = _torch_copy(model, example.cpu(), dtype, "cpu")
    export_onnx(module, x, path)
    if _SHARED:
        _SHARED[-1][key] = (path, folder)
        return path, _Kept()
    return path, folder


def onnxruntime_session(path: str, *, device: str = "cpu", threads: int | None = None) -> Any:
    """An ONNX Runtime session on the file at ``path``: every graph optimisation, sequential
    execution, ``threads`` intra-op threads (None: ONNX Runtime's choice), the CPU provider or
    CUDA's on a GPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda")
                 else ["CPUExecutionProvider"])
    return onnxruntime.InferenceSession(path, options, providers=providers)


class OnnxRuntime(Runtime):
    """ONNX Runtime on a ``torch.onnx`` export: the CPU provider, or CUDA's on a GPU."""

    name = "onnxruntime"
    package = "onnxruntime"

    def available(self, device="cpu", dtype="fp32"):
        reason = super().available(device, dtype)
        if reason is not None:
            return reason
        if dtype == "bf16":
            return "ONNX Runtime has no BF16 convolution kernels; run it in fp32 or fp16"
        if device.startswith("cuda"):
            import onnxruntime

            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                return "this onnxruntime build has no CUDAExecutionProvider (install onnxruntime-gpu)"
        return None

    def prepare(self, model, example, *, dtype="fp32", device="cpu", threads=None):
        import numpy as np

        path, folder = _onnx_file(model, example, dtype)
        session = onnxruntime_session(path, device=device, threads=threads)
        folder.cleanup()  # the session holds the graph
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(
            example.detach().to(dtype=torch_dtype(dtype)).cpu().numpy())}
        run = session.run
        return lambda: run(None, feed)[0]


_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def openvino_compiled(path: str, *, dtype: str = "fp32", threads: int | None = None) -> Any:
    """The model file at ``path`` (ONNX or OpenVINO IR) compiled for OpenVINO's CPU plugin with
    ``INFERENCE_PRECISION_HINT`` set to ``dtype`` (never left to the plugin, which picks BF16 on
    CPUs that have it), the latency hint and ``threads`` inference threads (None: OpenVINO's)."""
    import openvino

    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[dtype], "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return openvino.Core().compile_model(path, "CPU", config)


class OpenVINO(Runtime):
    """OpenVINO on the CPU, from the ONNX export, with ``INFERENCE_PRECISION_HINT`` always set
    (OpenVINO silently runs BF16 on CPUs that have it unless told ``f32``)."""

    name = "openvino"
    package = "openvino"

    def available(self, device="cpu", dtype="fp32"):
        if device.startswith("cuda"):
            return "OpenVINO does not run on CUDA devices"
        reason = super().available(device, dtype)
        if reason is None and dtype != "fp32":
            import openvino

            capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            wanted = {"bf16": "BF16", "fp16": "FP16"}[dtype]
            if wanted not in capabilities:
                return f"this CPU has no native {wanted} in OpenVINO (it has {', '.join(capabilities)})"
        return reason

    def prepare(self, model, example, *, dtype="fp32", device="cpu", threads=None):
        import numpy as np

        path, folder = _onnx_file(model, example, "fp32")  # the hint sets the precision
        compiled = openvino_compiled(path, dtype=dtype, threads=threads)
        folder.cleanup()
        request = compiled.create_infer_request()
        x = np.ascontiguousarray(example.detach().float().cpu().numpy())
        output = compiled.output(0)
        infer = request.infer

        def run() -> Any:
            return infer({0: x}, share_inputs=True)[output]

        return run


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (Eager(), ChannelsLast(), Fused(), Compile(), OnnxRuntime(), OpenVINO())}


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)} or all") from None
