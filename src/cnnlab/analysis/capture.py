"""Capture at the dispatcher: every aten operator a forward pass runs, attributed to the module
that ran it.

A ``TorchDispatchMode`` sees functional calls, operators (``x + y``, ``@``), reused modules and
custom modules alike; forward pre/post hooks keep a stack of module names so each operator is
charged to the innermost module running when it executes. Per tensor we keep the receptive field
(size and jump per spatial dimension) and a storage record for activation lifetimes.
"""

from __future__ import annotations

import itertools
import math
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from cnnlab.analysis.fastmeta import expand_arg, fast_handler
from cnnlab.analysis.rules import BATCH_NORMS, Cost, adaptive_windows, conv_kind, rule_for

__all__ = ["RF", "LayerStats", "Capture"]


@dataclass(frozen=True)
class RF:
    """Receptive field per spatial dimension; ``whole`` when the value depends on all the input."""

    size: tuple[float, ...]
    jump: tuple[float, ...]
    whole: bool = False

    @staticmethod
    def merge(fields: list["RF"]) -> "RF | None":
        if len(fields) == 1:
            return fields[0]
        if not fields:
            return None
        if any(f.whole for f in fields):
            return next(f for f in fields if f.whole)
        n = min(len(f.size) for f in fields)
        return RF(
            tuple(max(f.size[-n + i] for f in fields) for i in range(n)) if n else (),
            tuple(max(f.jump[-n + i] for f in fields) for i in range(n)) if n else (),
        )


@dataclass
class LayerStats:
    name: str
    type: str
    order: int
    params: int = 0
    macs: int = 0
    flops: int = 0
    mem_access: int = 0
    mem_access_bytes: int = 0
    activations: int = 0
    calls: int = 0
    input_shape: list[int] | None = None
    output_shape: list[int] | None = None
    rf: RF | None = None
    executed_ops: bool = False


@dataclass
class _Storage:
    nbytes: int
    refs: int = 0


@dataclass
class KindStats:
    macs: int = 0
    flops: int = 0
    params: int = 0
    mem_access: int = 0


def _unique_elements(t: torch.Tensor) -> int:
    """Elements a strided tensor really holds: broadcast (stride 0) dimensions count once."""
    if t.is_contiguous():
        return t.numel()
    if t.dim() == 0:
        return 1
    return math.prod(s for s, st in zip(t.shape, t.stride()) if st != 0) if t.numel() else 0


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in an operator's arguments or results.

    Aten arguments are flat but for lists of tensors (``cat``); results are a tensor or a flat
    tuple. A plain loop: ``torch.utils._pytree`` is general but several times slower, and this
    runs for every operator.
    """
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return []
    found = []
    for item in value:
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, (list, tuple)) and item and isinstance(item[0], torch.Tensor):
            found.extend(t for t in item if isinstance(t, torch.Tensor))
    return found


def _first_tensor(value: Any) -> torch.Tensor | None:
    found = _tensors(value)
    return found[0] if found else None


@dataclass
class Capture(TorchDispatchMode):
    """Runs inside ``analyze``: collects per-module costs while the model's forward runs.

    ``named_modules`` is the model's ``named_modules(remove_duplicate=False)``: a module reached
    under several names is charged to the last of them.
    """

    named_modules: list[tuple[str, nn.Module]]
    spatial_dims: int
    fold_bn: bool = False
    layers: dict[str, LayerStats] = field(default_factory=dict)
    by_type: dict[str, KindStats] = field(default_factory=dict)
    uncounted: dict[str, list] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()
        self._names = {id(m): n for n, m in self.named_modules}
        self._modules = dict(self.named_modules)
        self._rf = _TensorNotes("rf")
        self._storage = _TensorNotes("storage")
        self._biased_conv_outputs = _TensorNotes("biased")  # for fold_bn
        self._refs: set[weakref.ref] = set()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._handles: list[Any] = []
        self._thread = threading.get_ident()
        self._order = 0
        self._stack: list[LayerStats] = [self._layer("")]

    # -- modules ---------------------------------------------------------------------------
    def _layer(self, name: str) -> LayerStats:
        stats = self.layers.get(name)
        if stats is None:
            stats = LayerStats(name, type(self._modules[name]).__name__, self._order)
            self._order += 1
            self.layers[name] = stats
        return stats

    def attach(self) -> None:
        """Global module hooks: two registrations instead of two per module. They fire for
        this thread and this model's modules only."""
        self._handles.append(register_module_forward_pre_hook(self._pre_hook))
        self._handles.append(register_module_forward_hook(self._post_hook))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _pre_hook(self, module: nn.Module, args: tuple) -> None:
        name = self._names.get(id(module))
        if name is None or threading.get_ident() != self._thread:
            return
        stats = self._layer(name)
        stats.calls += 1
        if stats.input_shape is None:
            x = _first_tensor(args)
            stats.input_shape = list(x.shape) if x is not None else None
        self._stack.append(stats)

    def _post_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        if id(module) not in self._names or threading.get_ident() != self._thread:
            return
        stats = self._stack.pop()
        if stats.output_shape is None:  # the first call's output describes the layer
            y = _first_tensor(output)
            if y is not None:
                stats.output_shape = list(y.shape)
                stats.rf = self._rf.get(y)

    # -- tensors ---------------------------------------------------------------------------
    def track_input(self, x: torch.Tensor) -> None:
        n = self.spatial_dims
        self._rf[x] = RF((1,) * n, (1,) * n)
        self._new_storage(x)

    def _new_storage(self, t: torch.Tensor) -> None:
        record = _Storage(t.numel() * t.element_size())
        self._add_ref(t, record)
        self.live_bytes += record.nbytes
        if self.live_bytes > self.peak_bytes:
            self.peak_bytes = self.live_bytes

    def _add_ref(self, t: torch.Tensor, record: _Storage) -> None:
        record.refs += 1
        setattr(t, self._storage.attr, record)
        refs = self._refs

        def release(ref: weakref.ref) -> None:  # runs when the tensor object is freed
            refs.discard(ref)
            record.refs -= 1
            if record.refs == 0:
                self.live_bytes -= record.nbytes

        refs.add(weakref.ref(t, release))

    # -- operators -------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        info = _INFO.get(func) or _op_info(func)
        kwargs = kwargs or {}
        out = info.fast(args, kwargs) if info.fast is not None else None
        if out is None:
            out = func(*args, **kwargs)
        if func is _EMPTY and out.numel() == 0:
            return out  # a placeholder (BN's reserve space): nothing to count or keep alive
        self._record(info, args, kwargs, out)
        return out

    def _record(self, info: "_OpInfo", args: tuple, kwargs: dict, out: Any) -> None:
        # The tensors among the arguments, from the schema's positions (cheaper than a walk).
        inputs = []
        n_args = len(args)
        for position, is_list in info.tensor_args:
            if position < n_args:
                value = args[position]
                if is_list:
                    inputs.extend(t for t in value if isinstance(t, torch.Tensor))
                elif isinstance(value, torch.Tensor):  # a Python scalar may stand for a Tensor
                    inputs.append(value)
        if kwargs:
            inputs += _tensors(kwargs)
        outputs = [out] if isinstance(out, torch.Tensor) else _tensors(out)
        stats = self._stack[-1]

        rf_attr = self._rf.attr
        known = [f for f in (getattr(t, rf_attr, None) for t in inputs) if f is not None]
        if known:
            rf = known[0] if len(known) == 1 else RF.merge(known)
            if info.changes_rf and not rf.whole:
                rf = self._propagate_rf(info.name, args, rf, outputs)
            for t in outputs:
                setattr(t, rf_attr, rf)
        storage_attr = self._storage.attr
        if info.is_view:
            base = next((b for b in (getattr(i, storage_attr, None) for i in inputs) if b is not None), None)
            if base is not None:
                for t in outputs:
                    self._add_ref(t, base)
            return

        stats.executed_ops = True
        if info.first_output_only:
            outputs = outputs[:1]
        if info.rule is None:
            entry = self.uncounted.setdefault(info.name, [0, stats.name])
            entry[0] += 1
            macs = flops = 0
        else:
            cost = info.rule(args, kwargs, out)
            macs, flops = cost.macs, cost.flops
        reads = read_bytes = 0
        if len(inputs) > 1:
            inputs = list({id(t): t for t in inputs}.values())
        for t in inputs:
            elements = t.numel() if t.is_contiguous() else _unique_elements(t)
            reads += elements
            read_bytes += elements * t.element_size()
        written = [t for t, w in zip(outputs, info.writes) if w] if info.in_place else outputs
        writes = write_bytes = 0
        for t in written:
            elements = t.numel()
            writes += elements
            write_bytes += elements * t.element_size()

        if info.batch_norm and self.fold_bn:
            x = args[0]
            # Folded into the conv before it: no BN op remains; a bias-less conv gains a bias.
            had_bias = self._biased_conv_outputs.get(x, True)
            extra = 0 if had_bias else outputs[0].numel()
            macs, flops = 0, extra
            reads = 0 if had_bias else outputs[0].shape[1]
            read_bytes = reads * outputs[0].element_size()
            writes = write_bytes = 0
        if info.name == "convolution":
            if self.fold_bn:
                self._biased_conv_outputs[outputs[0]] = args[2] is not None
            kind = conv_kind(args[1], int(args[8]), bool(args[6]))
        else:
            kind = info.kind or stats.type

        stats.macs += macs
        stats.flops += flops
        stats.mem_access += reads + writes
        stats.mem_access_bytes += read_bytes + write_bytes
        bucket = self.by_type.get(kind)
        if bucket is None:
            bucket = self.by_type[kind] = KindStats()
        bucket.macs += macs
        bucket.flops += flops
        bucket.mem_access += reads + writes
        if not info.in_place:
            for t in outputs:
                stats.activations += t.numel()
                self._new_storage(t)

    # -- receptive field ---------------------------------------------------------------------
    def _propagate_rf(self, op: str, args: tuple, rf: RF, outputs: list[torch.Tensor]) -> RF:
        """The field of an operator's result from the merged field ``rf`` of its inputs, for
        the operators that change it (windows, reductions, matmuls, resampling)."""
        if op == "convolution":
            weight = args[1]
            kernel = list(weight.shape[2:])
            stride, dilation = list(args[3]), list(args[5])
            return self._window(rf, kernel, stride, dilation, transposed=bool(args[6]))
        if op.startswith(("max_pool", "avg_pool")):
            nd = int(op.split("pool")[1][0])
            kernel = expand_arg(args[1], nd)
            stride = expand_arg(args[2], nd) if len(args) > 2 and args[2] else kernel
            dilation = expand_arg(args[4], nd) if op.startswith("max_pool") and len(args) > 4 else [1] * nd
            return self._window(rf, kernel, stride, dilation)
        if "adaptive" in op:
            x = args[0]
            nd = len(args[1])
            sizes_in, sizes_out = list(x.shape[-nd:]), list(args[1])
            if all(o == 1 for o in sizes_out):
                return RF(rf.size, rf.jump, whole=True)
            kernel = [max(e - s for s, e in adaptive_windows(i, o)) for i, o in zip(sizes_in, sizes_out)]
            stride = [i / o for i, o in zip(sizes_in, sizes_out)]
            return self._window(rf, kernel, stride, [1] * nd)
        if op in ("mean", "sum", "amax", "amin", "max", "min") and len(args) > 1 and args[1] is not None:
            x = args[0]
            dims = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
            spatial = set(range(x.dim() - self.spatial_dims, x.dim()))
            if {d % x.dim() for d in dims} & spatial:
                return RF(rf.size, rf.jump, whole=True)
            return rf
        if op in ("mm", "addmm", "bmm", "baddbmm", "mv", "dot") or op.startswith("_scaled_dot_product"):
            return RF(rf.size, rf.jump, whole=True)
        if op.startswith(("upsample", "_upsample")) and outputs:
            # Each output step moves in_size / out_size input pixels; the field itself is unchanged.
            x, y = args[0], outputs[0]
            n = min(len(rf.jump), self.spatial_dims)
            ratio = [x.shape[-i] / y.shape[-i] for i in range(n, 0, -1)]
            return RF(rf.size, tuple(list(rf.jump[:-n]) + [j * r for j, r in zip(rf.jump[-n:], ratio)]) if n else rf.jump)
        return rf

    def _window(
        self, rf: RF, kernel: list[int], stride: list[float], dilation: list[int], transposed: bool = False
    ) -> RF:
        n = min(len(rf.size), len(kernel))
        size, jump = list(rf.size), list(rf.jump)
        for i in range(1, n + 1):
            k_eff = dilation[-i] * (kernel[-i] - 1) + 1
            if transposed:
                jump[-i] = jump[-i] / stride[-i]
                size[-i] = size[-i] + (k_eff - 1) * jump[-i]
            else:
                size[-i] = size[-i] + (k_eff - 1) * jump[-i]
                jump[-i] = jump[-i] * stride[-i]
        return RF(tuple(size), tuple(jump))


# Operators that return a view of their input although their schema does not say so
# (``matmul`` with broadcasting and some ``einsum`` layouts emit ``_unsafe_view``).
_VIEWS_WITHOUT_ALIAS_INFO = frozenset({"_unsafe_view"})

class _TensorNotes:
    """Facts one analysis keeps about tensors, stored on the tensor objects themselves.

    A weak-keyed dictionary costs a weak reference per look-up; an attribute costs nothing and
    dies with the tensor. Each instance uses its own attribute name, so one analysis never
    reads another's notes on a tensor that outlives it.
    """

    _count = itertools.count()

    def __init__(self, label: str) -> None:
        self.attr = f"_cnnlab_{label}_{next(self._count)}"

    def get(self, t: torch.Tensor, default: Any = None) -> Any:
        return getattr(t, self.attr, default)

    def __contains__(self, t: torch.Tensor) -> bool:
        return getattr(t, self.attr, _MISSING) is not _MISSING

    def __getitem__(self, t: torch.Tensor) -> Any:
        return getattr(t, self.attr)

    def __setitem__(self, t: torch.Tensor, value: Any) -> None:
        setattr(t, self.attr, value)


_MISSING = object()


@dataclass(frozen=True)
class _OpInfo:
    """What an operator's schema and name say, computed once per operator overload."""

    name: str
    is_view: bool
    in_place: bool
    writes: tuple[bool, ...]  # per result: written in place (an alias with a write)
    first_output_only: bool
    batch_norm: bool
    rule: Any
    tensor_args: tuple[tuple[int, bool], ...]  # positional tensor arguments: (index, is a list)
    changes_rf: bool  # False: the result's field is its inputs' merged field
    kind: str | None  # by_type key when it does not depend on the module or arguments
    fast: Any  # shape-only handler on meta, or None


_INFO: dict[Any, _OpInfo] = {}

_MATMULS = ("mm", "addmm", "bmm", "baddbmm", "mv", "dot", "vdot")


def _is_tensor_type(t: Any) -> bool:
    if isinstance(t, torch.OptionalType):
        t = t.getElementType()
    return isinstance(t, torch.TensorType)


def _tensor_positions(schema: Any) -> tuple[tuple[int, bool], ...]:
    positions = []
    for i, arg in enumerate(schema.arguments):
        if arg.kwarg_only:
            continue  # passed in kwargs, which are walked
        if _is_tensor_type(arg.type):
            positions.append((i, False))
        elif isinstance(arg.type, torch.ListType) and _is_tensor_type(arg.type.getElementType()):
            positions.append((i, True))
    return tuple(positions)


# The operators ``Capture._propagate_rf`` has a case for; every other one passes its inputs'
# merged field on unchanged, so the per-op step skips the call.
_RF_PREFIXES = (
    "convolution", "max", "min", "amax", "amin", "avg_pool", "mean", "sum", "upsample", "_upsample",
    "_scaled_dot_product",
)


def _changes_rf(name: str) -> bool:
    return name.startswith(_RF_PREFIXES) or "adaptive" in name or name in _MATMULS


def _op_info(func: Any) -> _OpInfo:
    name = func.overloadpacket.__name__
    aliases = [r.alias_info for r in func._schema.returns]
    writes = tuple(a is not None and a.is_write for a in aliases)
    is_view = name in _VIEWS_WITHOUT_ALIAS_INFO or (
        bool(aliases) and all(a is not None and not a.is_write for a in aliases)
    )
    # Only the first output is the activation: inference needs no pooling indices and no saved
    # BN statistics (kernels may still produce them).
    first_only = name.endswith("_with_indices") or name.startswith("adaptive_max_pool") or name in BATCH_NORMS
    info = _OpInfo(
        name, is_view, any(writes), writes, first_only, name in BATCH_NORMS, rule_for(name),
        _tensor_positions(func._schema), _changes_rf(name), "linear" if name in _MATMULS else None,
        fast_handler(func),
    )
    _INFO[func] = info
    return info


_EMPTY = torch.ops.aten.empty.memory_format


