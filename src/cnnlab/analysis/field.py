"""Receptive fields: what part of the input each tensor's values depend on, operator by operator.

Every tensor derived from the input carries an :class:`RF`: the field's size and jump (effective
stride) per spatial axis of the input, and ``pos``, how many spatial positions each tensor
dimension holds. ``pos`` is what lets the field survive layout changes: a per-pixel Linear
reaches aten as ``permute`` → ``view`` to (N·H·W, C) → ``addmm`` → ``view`` back, and only
because the rows are known to hold the positions can ``addmm`` tell that it contracts channels
(each pixel keeps its field) rather than positions (the result sees the whole input).

The rules, one function per operator family in :data:`FIELD_RULES`:

- windows (convolution, pooling, ``im2col``) grow the field: r' = r + (k_eff − 1)·j, j' = j·s;
- an operator that contracts or reduces over a dimension holding positions (global pooling,
  ``mean`` over H and W, a Linear on flattened C·H·W, attention over tokens) makes it ``whole``;
- views and reshapes only move ``pos`` along with the dimensions;
- elementwise operators merge their operands' fields (:meth:`RF.merge`): a broadcast gate (a
  whole field with no positional dimension left, such as SE's per-channel scale) takes no part,
  so ``x * sigmoid(fc(mean(x)))`` keeps the field of ``x``.

Normalisation statistics (BatchNorm in training, LayerNorm, GroupNorm, softmax) are not counted
as mixing positions, as in the receptive-field literature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from cnnlab.analysis.fastmeta import expand_arg
from cnnlab.analysis.rules import adaptive_windows

__all__ = ["RF", "FIELD_RULES", "CONSTANT_RESULTS", "field_rule", "aligned", "input_field"]


@dataclass(frozen=True, slots=True)
class RF:
    """Receptive field of a tensor.

    ``size`` and ``jump`` are per spatial axis of the input (the last axes). ``whole``: the values
    depend on the whole input. ``pos``: per tensor dimension, the number of spatial positions it
    holds (1 for none), or ``()`` when no dimension holds more than one. ``unknown``: an operator
    without a counting rule ran on the way, so the field is not known.
    """

    size: tuple[float, ...]
    jump: tuple[float, ...]
    whole: bool = False
    pos: tuple[int, ...] = ()
    unknown: bool = False

    @property
    def is_map(self) -> bool:
        """A spatial feature map, as opposed to a broadcast vector (a whole field with no
        positions left, such as a pooled descriptor or an SE gate)."""
        return bool(self.pos) or not self.whole

    @staticmethod
    def merge(fields: list["RF"]) -> "RF | None":
        """The field of an elementwise result (``add``, ``mul``, ``cat``) from its operands'.

        Broadcast vectors are ignored when a spatial map is among the operands: multiplying a
        map by a per-channel gate does not widen any pixel's field. Among maps, a whole one
        makes the result whole; otherwise sizes and jumps take the maximum per axis.
        """
        if len(fields) == 1:
            return fields[0]
        if not fields:
            return None
        maps = [f for f in fields if f.pos or not f.whole]
        if not maps:
            return fields[0]  # only broadcast vectors: still one
        result = maps[0]
        for f in maps[1:]:
            result = _merge_two(result, f)
        return result


def _merge_two(a: RF, b: RF) -> RF:
    """Two maps' merged field; returns one of them when it already is the result (the common
    residual ``x + f(x)``), so nothing is allocated."""
    if a is b:
        return a
    pos = a.pos if a.pos == b.pos else _max_pos([a.pos, b.pos])
    if a.whole or b.whole:
        w = a if a.whole else b
        return w if w.pos == pos else RF(w.size, w.jump, True, pos)
    if a.size == b.size and a.jump == b.jump:
        size, jump = a.size, a.jump
    else:
        n = min(len(a.size), len(b.size))
        size = tuple(map(max, a.size[len(a.size) - n:], b.size[len(b.size) - n:]))
        jump = tuple(map(max, a.jump[len(a.jump) - n:], b.jump[len(b.jump) - n:]))
    unknown = a.unknown or b.unknown
    for f in (a, b):
        if f.size == size and f.jump == jump and f.pos == pos and f.unknown == unknown:
            return f
    return RF(size, jump, False, pos, unknown)


def input_field(shape: Sequence[int], spatial_dims: int) -> RF:
    """The field of the model's input: one pixel, every spatial dimension a positional one."""
    first = len(shape) - spatial_dims
    pos = tuple(s if i >= first and s > 1 else 1 for i, s in enumerate(shape))
    return RF((1,) * spatial_dims, (1,) * spatial_dims, pos=_canonical(pos))


def aligned(pos: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """``pos`` for a tensor of ``ndim`` dimensions, aligned from the right as broadcasting is."""
    n = len(pos)
    if n == ndim:
        return pos
    if n < ndim:
        return (1,) * (ndim - n) + pos
    return pos[n - ndim:]


def _canonical(pos: Sequence[int]) -> tuple[int, ...]:
    return tuple(pos) if any(p > 1 for p in pos) else ()


def _max_pos(all_pos: list[tuple[int, ...]]) -> tuple[int, ...]:
    ndim = max(len(p) for p in all_pos)
    if not ndim:
        return ()
    columns = zip(*(aligned(p, ndim) for p in all_pos))
    return _canonical([max(c) for c in columns])


def _with(rf: RF, pos: Sequence[int], whole: bool | None = None) -> RF:
    pos = _canonical(pos)
    whole = rf.whole if whole is None else whole
    if pos == rf.pos and whole == rf.whole:
        return rf
    return RF(rf.size, rf.jump, whole, pos, rf.unknown and not whole)


def _pos_of(t: Any, field_of: Callable[[Any], RF | None]) -> tuple[int, ...]:
    """Positions per dimension of an operand (all ones for a weight or a constant)."""
    if not isinstance(t, torch.Tensor):
        return ()
    rf = field_of(t)
    return aligned(rf.pos, t.dim()) if rf is not None and rf.pos else (1,) * t.dim()


def _resized(rf: RF, x: torch.Tensor, out: torch.Tensor, dims: int) -> tuple[int, ...]:
    """``pos`` after an operator that resizes the last ``dims`` dimensions (a window, an
    interpolation): a positional dimension holds as many positions as it has entries; a size-1
    dimension broadcast to a larger one (an upsampled pooled vector) holds none."""
    if not rf.pos or (out.shape[-dims:] == x.shape[-dims:] and len(rf.pos) == out.dim()):
        return rf.pos
    pos = list(aligned(rf.pos, out.dim()))
    shape = out.shape
    for d in range(len(pos) - dims, len(pos)):
        pos[d] = shape[d] if pos[d] > 1 and shape[d] > 1 else 1
    return _canonical(pos)


# -- windows -----------------------------------------------------------------------------------
def window(
    rf: RF, kernel: Sequence[int], stride: Sequence[float], dilation: Sequence[int], transposed: bool = False,
    pos: tuple[int, ...] | None = None,
) -> RF:
    """The field after a sliding window (convolution, pooling) on the last axes; ``pos``, when
    given, is the result's."""
    pos = rf.pos if pos is None else pos
    n = min(len(rf.size), len(kernel))
    size, jump = list(rf.size), list(rf.jump)
    for i in range(1, n + 1):
        k_eff = dilation[-i] * (kernel[-i] - 1) + 1
        if transposed:
            jump[-i] = jump[-i] / stride[-i]
        size[-i] = size[-i] + (k_eff - 1) * jump[-i]
        if not transposed:
            jump[-i] = jump[-i] * stride[-i]
    size_t, jump_t = tuple(size), tuple(jump)
    if size_t == rf.size and jump_t == rf.jump and pos == rf.pos:
        return rf  # a 1x1 window with stride 1
    return RF(size_t, jump_t, rf.whole, pos, rf.unknown)


Rule = Callable[[tuple, RF, list, Callable[[Any], "RF | None"]], RF]


def _conv(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    kernel = args[1].shape[2:]
    return window(rf, kernel, args[3], args[5], bool(args[6]), _resized(rf, args[0], outputs[0], len(kernel)))


def _pool(args: tuple, rf: RF, outputs: list, field_of: Callable, nd: int, dilated: bool) -> RF:
    kernel = expand_arg(args[1], nd)
    stride = expand_arg(args[2], nd) if len(args) > 2 and args[2] else kernel
    dilation = expand_arg(args[4], nd) if dilated and len(args) > 4 else [1] * nd
    return window(rf, kernel, stride, dilation, pos=_resized(rf, args[0], outputs[0], nd))


def _adaptive(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    x = args[0]
    nd = len(args[1])
    sizes_in, sizes_out = list(x.shape[-nd:]), [int(s) for s in outputs[0].shape[-nd:]]
    pos = aligned(rf.pos, x.dim())
    if all(o == 1 for o in sizes_out) and any(p > 1 for p in pos[-nd:]):
        return _with(rf, _resized(rf, x, outputs[0], nd), whole=True)  # global pooling
    kernel = [max(e - s for s, e in adaptive_windows(i, o)) for i, o in zip(sizes_in, sizes_out)]
    stride = [i / o for i, o in zip(sizes_in, sizes_out)]
    return window(rf, kernel, stride, [1] * nd, pos=_resized(rf, x, outputs[0], nd))


def _upsample(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """Each output step moves in/out input pixels; the field itself is unchanged."""
    x, y = args[0], outputs[0]
    nd = x.dim() - 2
    n = min(len(rf.jump), nd)
    if n:
        ratio = [x.shape[-i] / y.shape[-i] for i in range(n, 0, -1)]
        jump = tuple(list(rf.jump[:-n]) + [j * r for j, r in zip(rf.jump[-n:], ratio)])
        rf = RF(rf.size, jump, rf.whole, rf.pos, rf.unknown)
    return _with(rf, _resized(rf, x, y, nd))


def _im2col(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """``F.unfold``: each column holds one window; its rows (channels × offsets) hold no position."""
    kernel, dilation, stride = expand_arg(args[1], 2), expand_arg(args[2], 2), expand_arg(args[4], 2)
    out = outputs[0]
    pos = [1] * out.dim()
    pos[-1] = out.shape[-1]
    return _with(window(rf, kernel, stride, dilation), pos)


def _col2im(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """``F.fold``: overlapping windows summed back into a map, as a transposed convolution."""
    kernel, dilation, stride = expand_arg(args[2], 2), expand_arg(args[3], 2), expand_arg(args[5], 2)
    out = outputs[0]
    pos = [1] * (out.dim() - 2) + [s if s > 1 else 1 for s in out.shape[-2:]]
    return _with(window(rf, kernel, stride, dilation, transposed=True), pos)


def _pixel_shuffle(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    r = int(args[1])
    n = min(len(rf.jump), 2)
    if n:
        jump = tuple(list(rf.jump[:-n]) + [j / r for j in rf.jump[-n:]])
        rf = RF(rf.size, jump, rf.whole, rf.pos, rf.unknown)
    return _with(rf, _resized(rf, args[0], outputs[0], 2))


def _pixel_unshuffle(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    r = int(args[1])
    return window(rf, [r, r], [r, r], [1, 1], pos=_resized(rf, args[0], outputs[0], 2))


# -- contractions --------------------------------------------------------------------------------
def _contraction(rf: RF, mixes: bool, pos: Sequence[int]) -> RF:
    return _with(rf, pos, whole=True if mixes else None)


def _mixed_columns(a_pos: int, x: Any, y: Any, col: int) -> int:
    """A product whose rows contract positions into as many columns (token mixing: a Linear
    across the positions, as in MLP-Mixer) gives positions back, each seeing all of them."""
    return max(col, a_pos) if a_pos > 1 and y.shape[-1] == x.shape[-1] else col


def _mm(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """``mm``/``addmm``: (M, K) @ (K, N). Contracting K over positions mixes them."""
    x, y = args[-2], args[-1]
    a, b = _pos_of(x, field_of), _pos_of(y, field_of)
    return _contraction(rf, a[1] > 1 or b[0] > 1, (a[0], _mixed_columns(a[1], x, y, b[1])))


def _bmm(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """``bmm``/``baddbmm``: (B, M, K) @ (B, K, N)."""
    x, y = args[-2], args[-1]
    a, b = _pos_of(x, field_of), _pos_of(y, field_of)
    return _contraction(rf, a[2] > 1 or b[1] > 1, (max(a[0], b[0]), a[1], _mixed_columns(a[2], x, y, b[2])))


def _mv(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    a, v = _pos_of(args[0], field_of), _pos_of(args[1], field_of)
    if len(a) == 1:  # dot, vdot
        return _contraction(rf, a[0] > 1 or v[0] > 1, ())
    return _contraction(rf, a[1] > 1 or v[0] > 1, (a[0],))


def _sdpa(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """Attention: the scores contract E (q, k), the output contracts S (k, v)."""
    q, k, v = (_pos_of(t, field_of) for t in args[:3])
    mixes = q[-1] > 1 or k[-1] > 1 or k[-2] > 1 or v[-2] > 1
    batch = _max_pos([q[:-2], k[:-2], v[:-2]]) or (1,) * (len(q) - 2)
    return _contraction(rf, mixes, (*batch, q[-2], v[-1]))


def _mixes_sequence(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """Fused attention, transformer and recurrent layers on a (…, sequence, features) input mix
    every position of the sequence and contract the features (their projections), as their
    math paths do."""
    x = args[0]
    pos = _pos_of(x, field_of)
    out = (*pos[:-1], 1) if pos else ()
    return _contraction(rf, any(p > 1 for p in pos), out if outputs and outputs[0].dim() == x.dim() else ())


def _grid_sampler(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """Sampling at computed locations: any output can read any input position."""
    out = outputs[0]
    pos = [1, 1] + [s if s > 1 else 1 for s in out.shape[2:]]
    return _contraction(rf, any(p > 1 for p in _pos_of(args[0], field_of)), pos)


# -- reductions ----------------------------------------------------------------------------------
def _reduction(dim_at: int, default: Any = None) -> Rule:
    """Reducing (or scanning, sorting) over a dimension that holds positions mixes them."""

    def rule(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
        dims = args[dim_at] if len(args) > dim_at else default
        if isinstance(dims, torch.Tensor) or not rf.pos:
            return rf  # max(a, b), min(a, b): elementwise
        x = args[0]
        nd = x.dim()
        if dims is None or (isinstance(dims, (list, tuple)) and not dims) or nd == 0:
            reduced = set(range(nd))
        else:
            reduced = {int(d) % nd for d in (dims if isinstance(dims, (list, tuple)) else [dims])}
        pos = aligned(rf.pos, nd)
        mixes = any(pos[d] > 1 for d in reduced)
        out = outputs[0] if outputs else None
        if out is not None and out.dim() == nd:  # keepdim, or a scan
            new = [1 if d in reduced and mixes else p for d, p in enumerate(pos)]
        else:
            new = [p for d, p in enumerate(pos) if d not in reduced]
        return _with(rf, new, whole=True if mixes else None)

    return rule


# -- views and reshapes --------------------------------------------------------------------------
def _view_pos(pos: tuple[int, ...], old: Sequence[int], new: Sequence[int]) -> tuple[int, ...] | None:
    """``pos`` through a reshape. Dimensions are matched in groups of equal products, and a
    group's positions go to its new dimensions: a flattened (H·W) splits back into H and W, a
    merged (N·H·W) row dimension keeps H·W positions."""
    out = [1] * len(new)
    i = j = 0
    n_old, n_new = len(old), len(new)
    while i < n_old and j < n_new:
        start_old, start_new = i, j
        p_old, p_new = old[i], new[j]
        i += 1
        j += 1
        while p_old != p_new:
            if p_old < p_new:
                if i >= n_old or p_old == 0:
                    return None
                p_old *= old[i]
                i += 1
            else:
                if j >= n_new or p_new == 0:
                    return None
                p_new *= new[j]
                j += 1
        positions = math.prod(pos[start_old:i])
        if positions > 1:
            _place(positions, new, start_new, j, out)
    return tuple(out)


def _place(positions: int, new: Sequence[int], start: int, end: int, out: list[int]) -> None:
    """Puts ``positions`` on ``new[start:end]``: on the innermost run of dimensions whose sizes
    multiply to exactly that many, else on the innermost dimension that holds a whole multiple
    of them (capsules × positions), else from the innermost dimension out."""
    for last in range(end - 1, start - 1, -1):
        product = 1
        for first in range(last, start - 1, -1):
            product *= new[first]
            if product == positions:
                for d in range(first, last + 1):
                    out[d] = new[d]
                return
            if product > positions:
                break
    for d in range(end - 1, start - 1, -1):
        if new[d] > 1 and new[d] % positions == 0:
            out[d] = positions
            return
    for d in range(end - 1, start - 1, -1):
        if positions <= 1:
            return
        if new[d] > 1:
            out[d] = min(new[d], positions)
            positions = -(-positions // new[d])


def _view(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    x, y = args[0], outputs[0]
    pos = aligned(rf.pos, x.dim())
    new = _view_pos(pos, tuple(x.shape), tuple(y.shape)) if x.numel() == y.numel() else None
    return _with(rf, new if new is not None else aligned(rf.pos, y.dim()))


def _permute(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    pos = aligned(rf.pos, args[0].dim())
    return _with(rf, [pos[d] for d in args[1]])


def _transpose(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    pos = list(aligned(rf.pos, args[0].dim()))
    if len(pos) < 2:
        return rf
    d0, d1 = (int(args[1]), int(args[2])) if len(args) > 2 else (0, 1)  # t(): 0 and 1
    pos[d0], pos[d1] = pos[d1], pos[d0]
    return _with(rf, pos)


def _insert_dim(dim_at: int) -> Rule:
    """``unsqueeze``, ``stack``: a new dimension that holds no positions."""

    def rule(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
        out = outputs[0]
        dim = int(args[dim_at]) if len(args) > dim_at else 0
        pos = list(aligned(rf.pos, out.dim() - 1))
        pos.insert(dim % out.dim(), 1)
        return _with(rf, pos)

    return rule


def _remove_dim(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """``select``, ``unbind``: one entry of a dimension; its field is the tensor's."""
    x = args[0]
    dim = int(args[1]) if len(args) > 1 else 0
    pos = list(aligned(rf.pos, x.dim()))
    del pos[dim % x.dim()]
    return _with(rf, pos)


def _squeeze(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """``squeeze``: removed dimensions have one entry, so they hold no positions."""
    x = args[0]
    nd = x.dim()
    if len(args) > 1:
        dims = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
        removed = {int(d) % nd for d in dims if x.shape[d] == 1} if nd else set()
    else:
        removed = {d for d, s in enumerate(x.shape) if s == 1}
    pos = aligned(rf.pos, nd)
    return _with(rf, [p for d, p in enumerate(pos) if d not in removed])


def _clip(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """Same-rank results that may be smaller (``slice``, ``split``, ``index_select``, ``as_strided``):
    no dimension holds more positions than entries."""
    out = outputs[0] if outputs else None
    if out is None:
        return rf
    x = args[0]
    if out.dim() != x.dim():
        return _view(args, rf, outputs, field_of) if out.numel() == x.numel() else _with(rf, aligned(rf.pos, out.dim()))
    pos = aligned(rf.pos, out.dim())
    return _with(rf, [min(p, s) if s > 1 else 1 for p, s in zip(pos, out.shape)])


def _unfold(args: tuple, rf: RF, outputs: list, field_of: Callable) -> RF:
    """``Tensor.unfold(dim, size, step)``: a new last dimension with each window's positions."""
    x = args[0]
    dim, size = int(args[1]) % max(x.dim(), 1), int(args[2])
    pos = list(aligned(rf.pos, x.dim()))
    window_pos = size if pos and pos[dim] > 1 else 1
    if pos:
        pos[dim] = outputs[0].shape[dim] if pos[dim] > 1 else 1
    return _with(rf, [*pos, window_pos])


FIELD_RULES: dict[str, Rule] = {
    "convolution": _conv, "_convolution": _conv,
    "adaptive_avg_pool1d": _adaptive, "_adaptive_avg_pool2d": _adaptive, "_adaptive_avg_pool3d": _adaptive,
    "adaptive_max_pool1d": _adaptive, "adaptive_max_pool2d": _adaptive, "adaptive_max_pool3d": _adaptive,
    "mm": _mm, "addmm": _mm, "bmm": _bmm, "baddbmm": _bmm, "mv": _mv, "dot": _mv, "vdot": _mv,
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa, "_scaled_dot_product_flash_attention": _sdpa,
    "_scaled_dot_product_efficient_attention": _sdpa, "_scaled_dot_product_cudnn_attention": _sdpa,
    "_native_multi_head_attention": _mixes_sequence, "_transformer_encoder_layer_fwd": _mixes_sequence,
    "mkldnn_rnn_layer": _mixes_sequence, "_cudnn_rnn": _mixes_sequence,
    "grid_sampler_2d": _grid_sampler, "grid_sampler_3d": _grid_sampler,
    "im2col": _im2col, "col2im": _col2im,
    "pixel_shuffle": _pixel_shuffle, "pixel_unshuffle": _pixel_unshuffle,
    "view": _view, "_unsafe_view": _view, "_reshape_alias": _view, "view_copy": _view, "reshape": _view,
    "permute": _permute, "transpose": _transpose, "transpose_": _transpose, "t": _transpose, "t_": _transpose,
    "unsqueeze": _insert_dim(1), "unsqueeze_": _insert_dim(1), "stack": _insert_dim(1),
    "select": _remove_dim, "unbind": _remove_dim, "squeeze": _squeeze,
    "slice": _clip, "split": _clip, "split_with_sizes": _clip, "unsafe_split": _clip,
    "unsafe_split_with_sizes": _clip, "narrow": _clip, "index_select": _clip, "as_strided": _clip,
    "as_strided_": _clip, "unfold": _unfold,
}
for _nd in (1, 2, 3):
    FIELD_RULES[f"max_pool{_nd}d"] = FIELD_RULES[f"max_pool{_nd}d_with_indices"] = (
        lambda a, r, o, f, nd=_nd: _pool(a, r, o, f, nd, dilated=True)
    )
    FIELD_RULES[f"avg_pool{_nd}d"] = lambda a, r, o, f, nd=_nd: _pool(a, r, o, f, nd, dilated=False)
for _name in ("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
              "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d",
              "upsample_bilinear2d", "_upsample_bilinear2d_aa", "upsample_bicubic2d", "_upsample_bicubic2d_aa",
              "upsample_trilinear3d"):
    FIELD_RULES[_name] = _upsample
for _name in ("sum", "mean", "amax", "amin", "max", "min", "prod", "argmax", "argmin", "logsumexp", "any",
              "all", "var", "std", "var_mean", "std_mean", "cumsum", "cumprod", "sort"):
    FIELD_RULES[_name] = _reduction(1, default=-1 if _name in ("cumsum", "cumprod", "sort") else None)
FIELD_RULES.update({"norm": _reduction(2), "linalg_vector_norm": _reduction(2), "topk": _reduction(2, -1)})


# Operators whose result does not depend on the values of their tensor arguments (only on
# their shape, dtype or device): the result carries no field.
CONSTANT_RESULTS = frozenset(
    """new_zeros new_ones new_empty new_full new_empty_strided zeros_like ones_like empty_like full_like
    rand_like randn_like randint_like""".split()
)


def field_rule(op_name: str) -> Rule | None:
    """The field rule of an aten operator packet name, or ``None`` when the operator passes its
    inputs' merged field on unchanged (elementwise operators, copies, normalisations)."""
    return FIELD_RULES.get(op_name)
