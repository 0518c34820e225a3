"""The analyzer: exact params, MACs, FLOPs, memory access, activations and receptive field of
any ``nn.Module``, captured at the dispatcher on the meta device (nothing is allocated).

    >>> import cnnlab
    >>> a = cnnlab.analyze(cnnlab.create_model("vgg16"), (1, 3, 224, 224))
    >>> a.macs
    15470264320

Counting conventions are in ``cnnlab.analysis.rules`` and ``docs/counting_rules.md``.
"""

from __future__ import annotations

import copy
import threading
from typing import Sequence

import torch
from torch import nn

from cnnlab.analysis.capture import Capture, RF
from cnnlab.analysis.result import Analysis
from cnnlab.analysis.rules import conv_kind

__all__ = ["analyze", "Analysis"]


def _meta_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A structural copy of ``model`` whose parameters and buffers live on the meta device.

    Nothing of the original is copied or modified; tied parameters stay tied.
    """
    memo: dict[int, object] = {}
    for p in model.parameters():
        if id(p) not in memo:
            target = dtype if p.is_floating_point() else p.dtype
            memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta", dtype=target), requires_grad=p.requires_grad)
    for b in model.buffers():
        if id(b) not in memo:
            target = dtype if b.is_floating_point() else b.dtype
            memo[id(b)] = torch.empty_like(b, device="meta", dtype=target)
    return copy.deepcopy(model, memo)


def _validate_input_size(input_size: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be a sequence of positive integers, got {input_size!r}") from None
    if len(shape) < 2 or any(v < 1 for v in shape) or any(
        isinstance(v, bool) or float(v) != int(v) for v in input_size
    ):
        raise ValueError(
            f"input_size must be the full input shape with the batch dimension, e.g. (1, 3, 224, 224); got {input_size!r}"
        )
    return shape


# Analyses switch every module to eval mode for their forward pass; two threads analysing one
# model at once would otherwise restore each other's flags mid-pass.
_FORWARD_LOCK = threading.RLock()


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

    A field that depends on the whole input (after global pooling, a linear layer, SE's gate)
    is reported as the input's extent.
    """
    if rf is None:
        return None, None
    if rf.whole or not rf.size:
        return max(extent) if extent else None, None
    size, jump = max(rf.size), max(rf.jump)
    norm = lambda v: int(v) if float(v).is_integer() else round(float(v), 4)  # noqa: E731
    return norm(size), norm(jump)


def analyze(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    device: str | torch.device = "meta",
    dtype: torch.dtype = torch.float32,
    fold_bn: bool = False,
) -> Analysis:
    """Count what one forward pass of ``model`` on an input of shape ``input_size`` costs.

    ``input_size`` includes the batch dimension; totals are for that whole input. The model is
    analysed in eval mode under ``torch.no_grad`` (every module's training flag is restored
    afterwards). On the meta device (the default) nothing is allocated: a model already on meta
    is analysed as it is, any other through a structural meta copy; ``device="cpu"`` runs the
    real model. ``fold_bn`` analyses the network as if every
    BatchNorm were folded into the conv before it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"analyze expects an nn.Module, got {type(model).__name__}")
    shape = _validate_input_size(input_size)
    device = torch.device(device)
    walk = _Walk(model)
    on_meta = all(t.is_meta and (t.dtype == dtype or not t.is_floating_point()) for t in walk.tensors)
    if device.type == "meta" and on_meta:
        target = model  # nothing to protect: only the training flag changes, and it is restored
    elif device.type == "meta":
        target = _meta_copy(model, dtype)
    else:
        first = walk.params[0] if walk.params else None
        same = first is None or (first.device == device and first.dtype == dtype)
        target = model if same else copy.deepcopy(model).to(device=device, dtype=dtype)
    if target is not model:
        walk = _Walk(target)
    spatial = max(len(shape) - 2, 0)
    capture = Capture(walk.all_modules, spatial_dims=spatial, fold_bn=fold_bn)
    modules = [m for _, m in walk.modules]
    with _FORWARD_LOCK:  # the training flags are shared: one analysis forward at a time
        training = [m.training for m in modules]
        for m in modules:  # eval mode, each module's own flag restored afterwards
            object.__setattr__(m, "training", False)  # skips Module.__setattr__'s lookups
        x = torch.zeros(shape, device=device, dtype=dtype) if device.type != "meta" else torch.empty(shape, device=device, dtype=dtype)
        capture.track_input(x)
        capture.attach()
        try:
            with torch.no_grad(), capture:
                target(x)
        finally:
            capture.detach()
            for m, flag in zip(modules, training):
                object.__setattr__(m, "training", flag)
        del x

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

    layers = []
    for stats in sorted(capture.layers.values(), key=lambda s: s.order):
        if not (stats.executed_ops or stats.params):
            continue
        rf, jump = _rf_value(stats.rf, shape[2:])
        layers.append({
            "name": stats.name, "type": stats.type, "input_shape": stats.input_shape,
            "output_shape": stats.output_shape, "params": stats.params, "macs": stats.macs,
            "flops": stats.flops, "mem_access": stats.mem_access, "activations": stats.activations,
            "receptive_field": rf, "jump": jump, "calls": stats.calls,
        })
    spatial_fields = [s.rf for s in capture.layers.values() if s.rf is not None and not s.rf.whole and s.rf.size]
    deepest = max(spatial_fields, key=lambda f: max(f.size), default=None)
    rf_total, jump_total = _rf_value(deepest, shape[2:])
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
        model=type(model).__name__, input_shape=list(shape), complete=not uncounted,
        total=totals, layers=layers, by_type=by_type, uncounted_ops=uncounted,
        module_types={name: type(m).__name__ for name, m in walk.modules},
    )
