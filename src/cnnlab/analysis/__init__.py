"""The analyzer: exact params, MACs, FLOPs, memory access, activations and receptive field of
any ``nn.Module``, captured at the dispatcher on the meta device (nothing is allocated).

    >>> import cnnlab
    >>> a = cnnlab.analyze(cnnlab.create_model("vgg16"), (1, 3, 224, 224))
    >>> a.macs
    15470264320

Counting conventions are in ``cnnlab.analysis.rules`` and ``docs/counting_rules.md``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import re
import threading
import warnings
from typing import Sequence

import torch
from torch import nn

from cnnlab.analysis.capture import Capture, RF
from cnnlab.analysis.inputs import InputsSpec, make_inputs, meta_copy, model_dtype, structural_copy
from cnnlab.analysis.result import Analysis, human_count
from cnnlab.analysis.rules import conv_kind

__all__ = ["analyze", "Analysis", "human_count"]


# The largest input the analysis accepts: torch's storage sizes are signed 64-bit byte counts.
_MAX_INPUT_BYTES = 2**62


def _validate_input_size(input_size: Sequence[int], dtype: torch.dtype) -> tuple[int, ...]:
    """``input_size`` as a tuple of positive ints, or a one-line error that names what was given
    (its type and length, never a tensor's values)."""
    if isinstance(input_size, torch.Tensor):
        raise TypeError(
            f"input_size is a shape such as (1, 3, 224, 224), got a tensor of shape {tuple(input_size.shape)}; "
            "to analyse with that tensor, pass inputs=(tensor,)"
        )
    if isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence):
        raise ValueError(f"input_size must be a sequence of positive integers such as (1, 3, 224, 224), got {type(input_size).__name__}")
    shape = []
    for v in input_size:
        whole = isinstance(v, int) or (isinstance(v, float) and v.is_integer())
        if isinstance(v, bool) or not whole or v < 1:
            shown = repr(v) if isinstance(v, (int, float)) else type(v).__name__
            raise ValueError(f"input_size must hold positive integers, got {shown} in a shape of length {len(input_size)}")
        shape.append(int(v))
    if len(shape) < 2:
        raise ValueError(
            f"input_size must be the full input shape with the batch dimension, e.g. (1, 3, 224, 224); got {tuple(shape)}"
        )
    if math.prod(shape) * dtype.itemsize > _MAX_INPUT_BYTES:
        raise ValueError(f"input_size {tuple(shape)} is too large: more than 2^62 bytes of {dtype}")
    return tuple(shape)


# Analyses run a structural copy of the model in eval mode. A model that cannot be copied (a
# scripted one) is switched to eval in place, its flags restored afterwards: one such forward
# at a time, or two threads would restore each other's flags mid-pass.
_IN_PLACE_LOCK = threading.RLock()


_MATH_LOCK = threading.Lock()
_math_users = 0
_math_saved: list = []


@contextlib.contextmanager
def _math_attention(device: torch.device):
    """Attention's math path on a real device, as on meta, for the forward under analysis.

    ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer``'s fast path and SDPA's fused
    kernels count the same MACs and FLOPs (their rules follow the math path), but they write no
    intermediate tensors, so memory access and activations would differ from an analysis on
    meta. Both switches are process-wide: they are set by the first analysis that enters and
    restored by the last that leaves (other threads' forwards meanwhile compute the same values
    by the math path). The RNN kernels are left alone: PyTorch's CPU and meta RNN paths differ
    in their intermediates whatever the flags (see docs/counting_rules.md).
    """
    global _math_users
    if device.type == "meta":
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with _MATH_LOCK:
        if _math_users == 0:
            kernel = sdpa_kernel(SDPBackend.MATH)
            _math_saved[:] = [torch.backends.mha.get_fastpath_enabled(), kernel]
            kernel.__enter__()
            torch.backends.mha.set_fastpath_enabled(False)
        _math_users += 1
    try:
        yield
    finally:
        with _MATH_LOCK:
            _math_users -= 1
            if _math_users == 0:
                fastpath, kernel = _math_saved
                torch.backends.mha.set_fastpath_enabled(fastpath)
                kernel.__exit__(None, None, None)


class _Walk:
    """One walk over a model's module tree: its modules (each once, and under every name), its
    parameters and buffers (each tensor once, tied weights included) and each module's own
    parameters not already owned by an earlier module. Reads ``_parameters``/``_buffers``
    directly: ``parameters()`` re-walks the tree on every call."""

    def __init__(self, model: nn.Module) -> None:
        self.all_modules = list(model.named_modules(remove_duplicate=False))
        seen_modules: set[int] = set()
        self.modules: list[tuple[str, nn.Module]] = []
        for name, m in self.all_modules:
            if id(m) not in seen_modules:  # the order of named_modules(), which keeps the first
                seen_modules.add(id(m))
                self.modules.append((name, m))
        seen: set[int] = set()
        self.params: list[torch.Tensor] = []
        self.buffers: list[torch.Tensor] = []
        self.direct_params: list[tuple[str, nn.Module, int]] = []
        for name, m in self.modules:
            count = 0
            for p in m._parameters.values():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    self.params.append(p)
                    count += p.numel()
            if count:
                self.direct_params.append((name, m, count))
        for _, m in self.modules:
            for b in m._buffers.values():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    self.buffers.append(b)
        self.tensors = self.params + self.buffers

    def remapped(self, clones: dict[int, nn.Module]) -> "_Walk":
        """This walk over a structural copy sharing the tensors (``clones``: id -> copy)."""
        walk = object.__new__(_Walk)
        walk.all_modules = [(name, clones[id(m)]) for name, m in self.all_modules]
        walk.modules = [(name, clones[id(m)]) for name, m in self.modules]
        walk.params, walk.buffers, walk.tensors = self.params, self.buffers, self.tensors
        walk.direct_params = [(name, clones[id(m)], count) for name, m, count in self.direct_params]
        return walk


def _param_totals(params: list[torch.Tensor], buffers: list[torch.Tensor]) -> dict[str, int]:
    return {
        "params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "buffers": sum(b.numel() for b in buffers),
        "model_size_bytes": sum(t.numel() * t.element_size() for t in (*params, *buffers)),
    }


def _module_kind(module: nn.Module) -> str:
    if isinstance(module, nn.modules.conv._ConvNd):
        return conv_kind(module.weight, module.groups, module.transposed)
    if isinstance(module, nn.Linear):
        return "linear"
    return type(module).__name__


def _rf_value(rf: RF | None, extent: tuple[int, ...]) -> tuple[int | float | None, int | float | None]:
    """Receptive field and jump reported as the largest over spatial dimensions.

    A field that depends on the whole input (after global pooling, attention over positions, a
    linear layer on flattened positions) is reported as the input's extent; an unknown one
    (an operator without a counting rule ran on the way) as ``None``.
    """
    if rf is None or rf.unknown:
        return None, None
    if rf.whole or not rf.size:
        return max(extent) if extent else None, None
    size, jump = max(rf.size), max(rf.jump)
    norm = lambda v: int(v) if float(v).is_integer() else round(float(v), 4)  # noqa: E731
    return norm(size), norm(jump)


def _analysed_model(
    model: nn.Module, walk: _Walk, device: torch.device, dtype: torch.dtype | None
) -> tuple[nn.Module, _Walk, bool]:
    """The module tree the analysis runs, its walk, and whether it is the caller's own, to be
    switched to eval mode in place (and back) because it could not be copied.

    The caller's modules are never touched: a model already on ``device`` (and in ``dtype``
    if one is given) and in eval mode runs as it is; one in training mode runs as a structural
    copy in eval mode sharing its tensors; any other as a meta copy (on meta) or a real copy
    moved to ``device``.
    """
    def fits(t: torch.Tensor) -> bool:
        same_device = t.device.type == device.type and device.index in (None, t.device.index)
        return same_device and (dtype is None or t.dtype == dtype or not t.is_floating_point())

    if all(fits(t) for t in walk.tensors):
        if not any(m.training for _, m in walk.modules):
            return model, walk, False  # nothing to change: no copy at all
        if isinstance(model, torch.jit.ScriptModule):
            clone = _script_copy(model, device, dtype)
            return clone, _Walk(clone), False
        clones: dict[int, nn.Module] = {}
        clone = structural_copy(model, walk.tensors, clones)
        if clone is None:
            return model, walk, True
        return clone, walk.remapped(clones) if clones else _Walk(clone), False
    if isinstance(model, torch.jit.ScriptModule):
        target = _script_copy(model, device, dtype)
    elif device.type == "meta":
        target = meta_copy(model, walk.tensors, dtype)
    else:
        target = copy.deepcopy(model)
        target = target.to(device) if dtype is None else target.to(device=device, dtype=dtype)
    return target, _Walk(target), False


def _script_copy(model: torch.jit.ScriptModule, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
    """A scripted or traced module's copy on ``device`` (in ``dtype`` if given), in eval mode.

    Saved and loaded with ``map_location``: ``copy.deepcopy`` of a scripted module cannot be
    moved (its parameters come back as plain tensors), its ``training`` flag lives in the
    compiled module (setting the Python attribute leaves the compiled forward in training
    mode), and a traced module's meta copy must be loaded onto meta, not built there.
    """
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.save/load are deprecated
            torch.jit.save(model, buffer)
            buffer.seek(0)
            clone = torch.jit.load(buffer, map_location=device)
    except Exception as exc:  # noqa: BLE001 - any failure to serialise: say what to do instead
        raise ValueError(
            f"cannot copy this {type(model).__name__} to analyse it on {device.type}{_error_line(exc)}; "
            "pass it on the analysis device, in eval mode"
        ) from None
    if dtype is not None:
        clone = clone.to(dtype=dtype)
    return clone.eval()


_ERROR_LINE = re.compile(r"^(?:[\w.]+(?:Error|Exception): )+(?=\S)")


def _error_line(exc: BaseException) -> str:
    """`` (what went wrong)`` for a one-line message, or "" when the message does not say.
    TorchScript writes its own trace first and the error after it (``RuntimeError:
    RuntimeError: Tensor.item() cannot be called on meta tensors``), then Python frames; an
    error raised under a dispatch mode reaches it as a bare ``RuntimeError:``."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    if errors:
        line = errors[-1]
        return f" ({line.split(':', 1)[0]}: {line[_ERROR_LINE.match(line).end():]})"
    if lines and "TorchScript" not in lines[0]:
        return f" ({lines[0]})"
    return ""


def analyze(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    inputs: InputsSpec | None = None,
    device: str | torch.device = "meta",
    dtype: torch.dtype | None = None,
    fold_bn: bool = False,
) -> Analysis:
    """Count what one forward pass of ``model`` costs.

    Give exactly one of ``input_size`` (the full shape of a single input tensor, batch
    included) or ``inputs``: a tuple of positional arguments (tensors and any other values),
    a dict of keyword arguments, or a callable ``(device, dtype)`` returning either. Totals
    are for the whole input, batch included.

    ``dtype`` defaults to the dtype of the model's first floating-point parameter or buffer
    (float32 if it has none); an explicit ``dtype`` casts the model's floating tensors to it.
    On the meta device (the default) nothing is allocated: tensors in ``inputs`` become empty
    meta tensors of the same shape (floating ones in the analysis dtype); ``device="cpu"`` runs
    the real model with ``inputs`` as given. The model runs in eval mode under
    ``torch.no_grad``; the caller's modules are never touched (a model in training mode runs
    as a structural copy sharing its parameters and buffers, so a forward in another thread
    still sees it in training mode). ``fold_bn`` analyses the network as if every BatchNorm
    were folded into the conv before it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"analyze expects an nn.Module, got {type(model).__name__}")
    if (input_size is None) == (inputs is None):
        raise ValueError(
            "give exactly one of input_size (one tensor's shape, e.g. (1, 3, 224, 224)) or inputs "
            "(a tuple of positional arguments, a dict of keyword arguments or a callable building one)"
        )
    device = torch.device(device)
    walk = _Walk(model)
    cast = dtype  # None: every tensor keeps its own dtype
    dtype = dtype if dtype is not None else model_dtype(walk.tensors)
    size = _validate_input_size(input_size, dtype) if input_size is not None else None
    target, walk, in_place = _analysed_model(model, walk, device, cast)
    inp = make_inputs(size, inputs, device, dtype)
    shape = inp.spatial_shape  # dims after the second are spatial (the field's extent)
    spatial = max(len(shape) - 2, 0)
    capture = Capture(walk.all_modules, spatial_dims=spatial, fold_bn=fold_bn)
    modules = [m for _, m in walk.modules]
    with _IN_PLACE_LOCK if in_place else contextlib.nullcontext():
        training = [m.training for m in modules] if in_place else []
        scripted = isinstance(target, torch.jit.ScriptModule)  # a copy already in eval mode, or as given
        if (target is not model and not scripted) or in_place:
            for m in modules:  # eval mode (a copy, or a model that could not be copied)
                object.__setattr__(m, "training", False)  # skips Module.__setattr__'s lookups
        for t in inp.tensors:  # only tensors shaped like the image input are spatial maps
            is_map = t.is_floating_point() and t.dim() == len(shape)
            capture.track_input(t, spatial if is_map else 0)
        capture.attach()
        try:
            with torch.no_grad(), _math_attention(device), capture:
                target(*inp.args, **inp.kwargs)
        except RuntimeError as exc:  # torch.jit.Error is one
            if scripted and device.type == "meta":
                raise ValueError(
                    f"this {type(model).__name__} cannot run on the meta device{_error_line(exc)}; "
                    'analyse it with device="cpu"'
                ) from None
            raise
        finally:
            capture.detach()
            if in_place:
                for m, flag in zip(modules, training):
                    object.__setattr__(m, "training", flag)
        input_shapes = inp.shapes
        del inp

    totals = _param_totals(walk.params, walk.buffers)
    by_type: dict[str, dict[str, int]] = {
        kind: {"macs": s.macs, "flops": s.flops, "params": 0, "mem_access": s.mem_access}
        for kind, s in capture.by_type.items()
    }
    for name, module, count in walk.direct_params:
        stats = capture._layer(name)
        stats.params = count
        kind = _module_kind(module)
        by_type.setdefault(kind, {"macs": 0, "flops": 0, "params": 0, "mem_access": 0})["params"] += count

    ordered = sorted(capture.layers.values(), key=lambda s: s.order)
    module_rows = []  # every module that ran or owns parameters; containers too, for at_depth
    for stats in ordered:
        rf, jump = _rf_value(stats.rf, shape[2:])
        module_rows.append({
            "name": stats.name, "type": stats.type, "input_shape": stats.input_shape,
            "output_shape": stats.output_shape, "params": stats.params, "macs": stats.macs,
            "flops": stats.flops, "mem_access": stats.mem_access, "activations": stats.activations,
            "receptive_field": rf, "jump": jump, "calls": stats.calls,
        })
    layers = [row for row, s in zip(module_rows, ordered) if s.executed_ops or s.params]
    rf_total, jump_total = _rf_value(capture.model_field, shape[2:])  # the deepest spatial map's
    stats_all = capture.layers.values()
    totals.update(
        macs=sum(s.macs for s in stats_all),
        flops=sum(s.flops for s in stats_all),
        mem_access=sum(s.mem_access for s in stats_all),
        mem_access_bytes=sum(s.mem_access_bytes for s in stats_all),
        activations=sum(s.activations for s in stats_all),
        peak_activation_bytes=capture.peak_bytes,
        receptive_field=rf_total,
        jump=jump_total,
    )
    uncounted = [{"op": op, "count": n, "module": module} for op, (n, module) in capture.uncounted.items()]
    return Analysis(
        model=type(model).__name__, input_shape=input_shapes[0] if input_shapes else [],
        complete=not uncounted, total=totals, layers=layers, by_type=by_type, uncounted_ops=uncounted,
        module_types={name: type(m).__name__ for name, m in walk.modules},
        input_shapes=input_shapes, module_rows=module_rows,
    )
