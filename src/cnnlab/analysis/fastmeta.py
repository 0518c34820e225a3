"""Shape-only results for the commonest operators on the meta device.

Many of torch's meta kernels are Python decompositions: an out-of-place ReLU on meta costs more
than a millisecond, a broadcast add a third of one. The analyzer only needs the result's shape
and dtype, which for these operators follow from the inputs, so it computes them directly.
Anything unusual (a non-contiguous input, mixed devices, a shape the operator would reject)
returns ``None`` and the real meta kernel runs, raising torch's own error where there is one.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["fast_meta"]

aten = torch.ops.aten

_UNARY = {
    aten.relu.default, aten.sigmoid.default, aten.tanh.default, aten.hardswish.default,
    aten.hardsigmoid.default, aten.silu.default, aten.gelu.default, aten.hardtanh.default,
    aten.leaky_relu.default, aten.elu.default, aten.clone.default,
}
_INPLACE = {
    aten.relu_.default, aten.sigmoid_.default, aten.tanh_.default, aten.hardswish_.default,
    aten.hardsigmoid_.default, aten.silu_.default, aten.hardtanh_.default, aten.leaky_relu_.default,
    aten.elu_.default,
}
_BINARY = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor}


def _plain(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.is_meta and t.is_contiguous()


def _conv(args: tuple, kwargs: dict) -> torch.Tensor | None:
    x, weight, _bias, stride, padding, dilation, transposed, output_padding, groups = args
    if kwargs or not (_plain(x) and _plain(weight)) or x.dim() != weight.dim():
        return None
    spatial = x.shape[2:]
    kernel = weight.shape[2:]
    if transposed:
        if x.shape[1] != weight.shape[0]:
            return None
        out_channels = weight.shape[1] * groups
        sizes = [
            (i - 1) * s - 2 * p + d * (k - 1) + op + 1
            for i, k, s, p, d, op in zip(spatial, kernel, stride, padding, dilation, output_padding)
        ]
    else:
        if x.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
            return None
        out_channels = weight.shape[0]
        sizes = [
            (i + 2 * p - d * (k - 1) - 1) // s + 1
            for i, k, s, p, d in zip(spatial, kernel, stride, padding, dilation)
        ]
    if any(size < 1 for size in sizes):
        return None  # let torch raise its own "output size is too small"
    return torch.empty((x.shape[0], out_channels, *sizes), dtype=x.dtype, device="meta")


def _binary(args: tuple, kwargs: dict) -> torch.Tensor | None:
    a, b = args[0], args[1]
    if set(kwargs) - {"alpha"} or not _plain(a):
        return None
    if isinstance(b, torch.Tensor):
        if not _plain(b):
            return None
        try:
            shape = torch.broadcast_shapes(a.shape, b.shape)
        except RuntimeError:
            return None
    elif isinstance(b, (int, float)) and not isinstance(b, bool):
        shape = a.shape
    else:
        return None
    return torch.empty(shape, dtype=torch.result_type(a, b), device="meta")


def _cat(args: tuple, kwargs: dict) -> torch.Tensor | None:
    tensors = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if not tensors or not all(_plain(t) for t in tensors):
        return None
    first = tensors[0]
    ndim = first.dim()
    if ndim == 0 or any(t.dim() != ndim or t.dtype != first.dtype for t in tensors):
        return None
    dim %= ndim
    rest = [s for i, s in enumerate(first.shape) if i != dim]
    if any([s for i, s in enumerate(t.shape) if i != dim] != rest for t in tensors):
        return None
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return torch.empty(shape, dtype=first.dtype, device="meta")


def _unary(args: tuple, kwargs: dict) -> torch.Tensor | None:
    x = args[0]
    if not _plain(x) or kwargs.get("memory_format") not in (None, torch.preserve_format):
        return None
    return torch.empty(x.shape, dtype=x.dtype, device="meta")


def _inplace(args: tuple, kwargs: dict) -> torch.Tensor | None:
    return args[0] if _plain(args[0]) else None


def _mm(args: tuple, kwargs: dict) -> torch.Tensor | None:
    a, b = args[-2], args[-1]  # addmm(bias, a, b) or mm(a, b); b is often a transposed weight
    if kwargs or not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return None
    if not (a.is_meta and b.is_meta) or a.dim() != 2 or b.dim() != 2:
        return None
    if a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        return None
    if len(args) == 3:  # addmm: the bias must broadcast to the result
        try:
            torch.broadcast_shapes(args[0].shape, (a.shape[0], b.shape[1]))
        except RuntimeError:
            return None
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device="meta")


_FAST: dict[Any, Callable[[tuple, dict], torch.Tensor | None]] = {
    aten.convolution.default: _conv, aten.cat.default: _cat,
}
_FAST.update({op: _binary for op in _BINARY})
_FAST.update({op: _unary for op in _UNARY})
_FAST.update({op: _inplace for op in _INPLACE})
_FAST.update({aten.mm.default: _mm, aten.addmm.default: _mm})


def fast_meta(func: Any, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The result of ``func(*args, **kwargs)`` on meta tensors without running the meta
    kernel, or ``None`` when the operator or its arguments are not the plain case."""
    handler = _FAST.get(func)
    return handler(args, kwargs) if handler is not None else None
