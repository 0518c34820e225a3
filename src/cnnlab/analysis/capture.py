"""Capture at the dispatcher: every aten operator a forward pass runs, attributed to the module
that ran it.

A ``TorchDispatchMode`` sees functional calls, operators (``x + y``, ``@``), reused modules and
custom modules alike; forward pre/post hooks keep a stack of module names so each operator is
charged to the innermost module running when it executes. Per tensor we keep the receptive field
(``field.py``) and a storage record for activation lifetimes.
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

from cnnlab.analysis.fastmeta import fast_handler
from cnnlab.analysis.field import CONSTANT_RESULTS, RF, field_rule, input_field
from cnnlab.analysis.field import aligned as field_aligned  # noqa: I001
from cnnlab.analysis.rules import BATCH_NORMS, conv_kind, rule_for

__all__ = ["RF", "LayerStats", "Capture"]


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
        # The model's total field: the largest known spatial map, unless a map is whole (then
        # the whole input) or unknown (an operator without a rule ran).
        self._largest_map: RF | None = None
        self._whole_map: RF | None = None
        self._unknown_map: RF | None = None

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # TorchDispatchMode wraps __torch_dispatch__ in torch._disable_dynamo otherwise, which
        # imports torch._dynamo (~1.5 s) on the first operator; analyses never run compiled.
        return False

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
    def track_input(self, x: torch.Tensor, spatial_dims: int | None = None) -> None:
        """Start a model input's field (one pixel) and storage; ``spatial_dims`` (default: the
        capture's) is 0 for an input that is not an image, such as a vector beside it."""
        rf = input_field(x.shape, self.spatial_dims if spatial_dims is None else spatial_dims)
        self._rf[x] = rf
        self._note_map(rf)
        self._new_storage(x)

    @property
    def model_field(self) -> RF | None:
        """The field of the deepest spatial feature map: the largest field over every spatial map
        the forward pass produced (broadcast vectors such as SE gates are not maps). Whole when
        one of them sees the whole input; ``unknown`` when one of them passed through an
        operator without a rule (and none is whole)."""
        return self._whole_map or self._unknown_map or self._largest_map

    def _note_map(self, rf: RF) -> None:
        if not (rf.pos or not rf.whole):
            return  # a broadcast vector
        if rf.whole:
            self._whole_map = self._whole_map or rf
        elif rf.unknown:
            self._unknown_map = self._unknown_map or rf
        elif rf.size and (self._largest_map is None or max(rf.size) > max(self._largest_map.size)):
            self._largest_map = rf

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

    def _write_through(self, outputs: list[torch.Tensor], rf: RF) -> None:
        """An in-place write into a view also writes its base: ``buffer[..., :h, :w].copy_(image)``
        (how images are padded and batched, torchvision's detection transform among them)
        leaves ``buffer`` holding the image, so ``buffer`` takes the written field, merged with
        the one it had."""
        rf_attr = self._rf.attr
        for t in outputs:
            base = t._base
            if base is None:
                continue
            pos = field_aligned(rf.pos, base.dim()) if rf.pos else ()
            pos = tuple(s if p > 1 and s > 1 else 1 for p, s in zip(pos, base.shape))  # the base's sizes
            written = RF(rf.size, rf.jump, rf.whole, pos if any(p > 1 for p in pos) else (), rf.unknown)
            old = getattr(base, rf_attr, None)
            merged = written if old is None else RF.merge([old, written])
            setattr(base, rf_attr, merged)
            self._note_map(merged)

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
        if known and outputs and not info.constant:
            rf = known[0] if len(known) == 1 else RF.merge(known)
            if info.field is not None and (rf.pos or not rf.whole):
                changed = info.field(args, rf, outputs, self._rf.get)
                if changed is not rf:
                    rf = changed
                    self._note_map(rf)
            elif rf.pos and len(rf.pos) != outputs[0].dim():
                rf = RF(rf.size, rf.jump, rf.whole, field_aligned(rf.pos, outputs[0].dim()), rf.unknown)
            if info.rule is None and not info.is_view and not (rf.whole or rf.unknown):
                # An operator without a rule may move values anywhere: the field is unknown.
                rf = RF(rf.size, rf.jump, False, rf.pos, unknown=True)
                self._note_map(rf)
            for t in outputs:
                setattr(t, rf_attr, rf)
            if info.in_place:
                self._write_through(outputs, rf)
        storage_attr = self._storage.attr
        if info.is_view:
            if info.in_place:
                return  # a layout change in place (as_strided_): the same tensor, the same storage
            base = next((b for b in (getattr(i, storage_attr, None) for i in inputs) if b is not None), None)
            if base is not None:
                for t in outputs:
                    self._add_ref(t, base)
            return

        stats.executed_ops = True
        if info.first_output_only:
            outputs = outputs[:1]
        cost = info.rule(args, kwargs, out) if info.rule is not None else None
        if cost is None:
            entry = self.uncounted.setdefault(info.name, [0, stats.name])
            entry[0] += 1
            macs = flops = 0
        else:
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
        if info.name in _CONVOLUTIONS:
            if self.fold_bn:
                self._biased_conv_outputs[outputs[0]] = args[2] is not None
            kind = conv_kind(args[1], int(args[8]), bool(args[6]))
        else:
            if self.fold_bn and info.name in _LINEAR_PRODUCTS:  # a Linear: addmm has a bias, mm none
                self._biased_conv_outputs[outputs[0]] = info.name == "addmm"
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


# Operators that return a view of their input although their schema does not say so
# (``matmul`` with broadcasting and some ``einsum`` layouts emit ``_unsafe_view``; RNN cells
# split their gates with ``unsafe_split``), and in-place operators that change only a tensor's
# shape and strides (``adaptive_avg_pool2d`` on a channels-last input emits ``as_strided_``).
# Neither moves data: they are free, as views are.
_VIEWS_WITHOUT_ALIAS_INFO = frozenset({"_unsafe_view", "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk"})
_LAYOUT_IN_PLACE = frozenset({
    "as_strided_", "transpose_", "t_", "squeeze_", "unsqueeze_", "swapaxes_", "swapdims_", "detach_",
})
# Traced and scripted modules emit ``_convolution``; it counts as ``convolution``.
_CONVOLUTIONS = frozenset({"convolution", "_convolution"})
_LINEAR_PRODUCTS = frozenset({"mm", "addmm"})

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
    field: Any  # the receptive-field rule (field.py), or None: the inputs' merged field
    constant: bool  # the result depends on its inputs' shapes only (zeros_like): no field
    kind: str | None  # by_type key when it does not depend on the module or arguments
    fast: Any  # shape-only handler on meta, or None


_INFO: dict[Any, _OpInfo] = {}

_MATMULS = ("mm", "addmm", "bmm", "baddbmm", "mv", "dot", "vdot", "linear")


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


def _op_info(func: Any) -> _OpInfo:
    name = func.overloadpacket.__name__
    aliases = [r.alias_info for r in func._schema.returns]
    writes = tuple(a is not None and a.is_write for a in aliases)
    is_view = name in _VIEWS_WITHOUT_ALIAS_INFO or name in _LAYOUT_IN_PLACE or (
        bool(aliases) and all(a is not None and not a.is_write for a in aliases)
    )
    # Only the first output is the activation: inference needs no pooling indices and no saved
    # BN statistics (kernels may still produce them).
    first_only = name.endswith("_with_indices") or name.startswith("adaptive_max_pool") or name in BATCH_NORMS
    info = _OpInfo(
        name, is_view, any(writes), writes, first_only, name in BATCH_NORMS, rule_for(name),
        _tensor_positions(func._schema), field_rule(name), name in CONSTANT_RESULTS,
        "linear" if name in _MATMULS else None, fast_handler(func),
    )
    _INFO[func] = info
    return info


_EMPTY = torch.ops.aten.empty.memory_format


