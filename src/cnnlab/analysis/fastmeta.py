"""Shape-only results for the commonest operators on the meta device.

Many of torch's meta kernels are Python decompositions: an out-of-place ReLU on meta costs more
than a millisecond, a broadcast add a third of one. The analyzer only needs the result's shape
and dtype, which for these operators follow from the inputs, so it computes them directly.
Anything unusual (a non-contiguous input, mixed devices, a shape the operator would reject)
returns ``None`` and the real meta kernel runs, raising torch's own error where there is one.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

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


def broadcast_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    """The broadcast of two shapes, or ``None`` when they do not broadcast.

    ``torch.broadcast_shapes`` would do, but its first call imports sympy through
    ``torch.fx.experimental.symbolic_shapes`` (about a second of start-up for every CLI run).
    """
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return tuple(out)


def _binary(args: tuple, kwargs: dict) -> torch.Tensor | None:
    a, b = args[0], args[1]
    if set(kwargs) - {"alpha"} or not _plain(a):
        return None
    if isinstance(b, torch.Tensor):
        if not _plain(b):
            return None
        shape = broadcast_shape(a.shape, b.shape)
        if shape is None:
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
        if broadcast_shape(args[0].shape, (a.shape[0], b.shape[1])) is None:
            return None
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device="meta")


def expand_arg(value: Any, n: int) -> list[int]:
    """A per-dimension argument (``kernel_size=3`` or ``[3]`` or ``[3, 3]``) as one value per
    dimension; a list of another length is returned as it is, for the caller to reject."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return values * n if len(values) == 1 else values


def _pooled_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length along one dimension (``pooling_output_shape``)."""
    span = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = span // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input
        out -= 1
    return out


def _pool_shape(x: Any, kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> list[int] | None:
    if not _plain(x) or x.dim() not in (3, 4) or not x.is_floating_point():
        return None
    k = expand_arg(kernel, 2)
    s = expand_arg(stride, 2) if stride else k
    p, d = expand_arg(padding, 2), expand_arg(dilation, 2)
    if not all(len(v) == 2 for v in (k, s, p, d)) or any(pad * 2 > kk for pad, kk in zip(p, k)):
        return None
    sizes = [_pooled_size(i, *v, ceil_mode) for i, *v in zip(x.shape[-2:], k, s, p, d)]
    if any(size < 1 for size in sizes):
        return None
    return [*x.shape[:-2], *sizes]


def _max_pool2d_with_indices(args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    if kwargs:
        return None
    x, kernel, stride, padding, dilation, ceil_mode = (list(args) + [[], [0], [1], False][len(args) - 2:])[:6]
    shape = _pool_shape(x, kernel, stride, padding, dilation, bool(ceil_mode))
    if shape is None:
        return None
    return torch.empty(shape, dtype=x.dtype, device="meta"), torch.empty(shape, dtype=torch.int64, device="meta")


def _avg_pool2d(args: tuple, kwargs: dict) -> torch.Tensor | None:
    if kwargs or len(args) > 6:  # a divisor_override changes no shape, but keep the plain case
        return None
    x, kernel, stride, padding, ceil_mode = (list(args) + [[], [0], False][len(args) - 2:])[:5]
    shape = _pool_shape(x, kernel, stride, padding, [1], bool(ceil_mode))
    return None if shape is None else torch.empty(shape, dtype=x.dtype, device="meta")


def _mean_dim(args: tuple, kwargs: dict) -> torch.Tensor | None:
    x = args[0]
    if set(kwargs) - {"keepdim"} or len(args) > 3 or not _plain(x) or not x.is_floating_point():
        return None
    if len(args) < 2 or args[1] is None or x.dim() == 0:
        return None
    keepdim = bool(args[2]) if len(args) > 2 else bool(kwargs.get("keepdim", False))
    if any(not -x.dim() <= d < x.dim() for d in args[1]):
        return None  # torch's own error
    dims = {d % x.dim() for d in args[1]} if args[1] else set(range(x.dim()))
    if args[1] and len(dims) != len(args[1]):
        return None  # a repeated dimension: torch's own error
    shape = [1 if i in dims else s for i, s in enumerate(x.shape) if keepdim or i not in dims]
    return torch.empty(shape, dtype=x.dtype, device="meta")


def _batch_norm(args: tuple, kwargs: dict) -> tuple[torch.Tensor, ...] | None:
    """``native_batch_norm(x, w, b, mean, var, training, ...)`` in eval mode. Training mode (batch
    statistics) takes the real kernel."""
    if len(args) > 5 and bool(args[5]):
        return None
    return _batch_norm_eval(args, kwargs)


def _batch_norm_eval(args: tuple, kwargs: dict) -> tuple[torch.Tensor, ...] | None:
    """Eval-mode BN: its meta kernel is a slow Python decomposition, and the result follows from
    the input's shape and layout."""
    x = args[0]
    if kwargs or not (isinstance(x, torch.Tensor) and x.is_meta) or x.dim() < 2:
        return None
    out = torch.empty(x.shape, dtype=x.dtype, device="meta") if x.is_contiguous() else torch.empty_like(x)
    channels = (x.shape[1],)
    return out, torch.empty(channels, dtype=x.dtype, device="meta"), torch.empty(channels, dtype=x.dtype, device="meta")


_FAST: dict[Any, Callable[[tuple, dict], Any]] = {
    aten.convolution.default: _conv, aten.cat.default: _cat,
}
_FAST.update({op: _binary for op in _BINARY})
_FAST.update({op: _unary for op in _UNARY})
_FAST.update({op: _inplace for op in _INPLACE})
_FAST.update({aten.mm.default: _mm, aten.addmm.default: _mm})
_FAST.update({
    aten.max_pool2d_with_indices.default: _max_pool2d_with_indices,
    aten.avg_pool2d.default: _avg_pool2d,
    aten.mean.dim: _mean_dim,
    aten.native_batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm_eval,
})


def fast_handler(func: Any) -> Callable[[tuple, dict], Any] | None:
    """The shape-only handler of ``func``, or ``None`` when it has none."""
    return _FAST.get(func)


def fast_meta(func: Any, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The result of ``func(*args, **kwargs)`` on meta tensors without running the meta
    kernel, or ``None`` when the operator or its arguments are not the plain case."""
    handler = fast_handler(func)
    return handler(args, kwargs) if handler is not None else None
