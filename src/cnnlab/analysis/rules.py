"""Counting rules: what one aten operator costs.

Each rule maps an operator's arguments and outputs to multiply-accumulates (MACs) and FLOPs.
Memory access and activations are derived from the operator's schema in ``capture.py`` (views
are free, copies cost their reads and writes), so rules only say what is arithmetic.

The conventions, one row per op family (``docs/counting_rules.md`` is the same table):

=====================  =======================================  ==================================
op family              MACs                                     FLOPs
=====================  =======================================  ==================================
convolution            out · (Cin/g) · ∏k                       2·MACs + out (bias)
transposed conv        N · Cin · ∏in · (Cout/g) · ∏k             2·MACs + out (bias)
mm / addmm / linear    M · N · K                                2·MACs + M·N (bias)
bmm / baddbmm          B · M · N · K                            2·MACs (+ B·M·N)
attention (sdpa)       B·H·L·S·(E + Ev)                         2·MACs + 5·B·H·L·S (softmax)
elementwise            0                                        1 per output element
pooling                0                                        1 per window element per output
reductions (mean, …)   0                                        1 per input element
BatchNorm, eval        0                                        2 per element (0 with fold_bn*)
batch-statistics norm  0                                        7 per element (5 without affine)
softmax / log_softmax  0                                        5 per element
interpolation          0                                        nearest 0, linear 3, bilinear 7,
                                                                bicubic 31, trilinear 15 per output
copies / creation      0                                        0
=====================  =======================================  ==================================

*fold_bn: each BN is analysed as folded into the conv before it; if that conv had no bias, the
folded network gains one bias add per element, so the BN then costs 1 FLOP per element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

__all__ = ["Cost", "RULES", "rule_for", "ELEMENTWISE", "conv_kind"]


@dataclass(frozen=True)
class Cost:
    macs: int = 0
    flops: int = 0


Rule = Callable[[Sequence[Any], dict, Any], Cost]


def _numel(t: Any) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _conv(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    x, weight, bias = args[0], args[1], args[2]
    transposed = bool(args[6]) if len(args) > 6 else False
    kernel = math.prod(weight.shape[2:])
    y = _first(out)
    if transposed:  # weight: (Cin, Cout/g, *k); every input element meets Cout/g filters
        macs = x.numel() * weight.shape[1] * kernel
    else:  # weight: (Cout, Cin/g, *k)
        macs = y.numel() * weight.shape[1] * kernel
    # Groups need no term of their own: they are already in the weight's shape.
    return Cost(macs, 2 * macs + (y.numel() if bias is not None else 0))


def _mm(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    a, b = args[0], args[1]
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    return Cost(macs, 2 * macs)


def _addmm(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    macs = _mm(args[1:], kwargs, out).macs
    return Cost(macs, 2 * macs + out.numel())


def _bmm(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    a, b = args[0], args[1]
    macs = a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return Cost(macs, 2 * macs)


def _baddbmm(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    macs = _bmm(args[1:], kwargs, out).macs
    return Cost(macs, 2 * macs + out.numel())


def _mv(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    macs = args[0].numel()
    return Cost(macs, 2 * macs)


def _sdpa(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    q, k, v = args[0], args[1], args[2]
    scores = q.shape[:-1].numel() * k.shape[-2]  # B·H·L·S
    macs = scores * (q.shape[-1] + v.shape[-1])
    return Cost(macs, 2 * macs + 5 * scores)


def _per_output(flops_per_element: int) -> Rule:
    def rule(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
        return Cost(0, flops_per_element * _numel(_first(out)))

    return rule


def _per_input(flops_per_element: int) -> Rule:
    def rule(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
        return Cost(0, flops_per_element * _numel(args[0]))

    return rule


def _zero(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    return Cost()


def _pool(dims: int) -> Rule:
    def rule(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
        kernel = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
        if len(kernel) == 1:  # one size for every spatial dimension
            kernel = list(kernel) * dims
        return Cost(0, math.prod(kernel) * _numel(_first(out)))

    return rule


def adaptive_windows(size_in: int, size_out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows [start, end) along one dimension."""
    return [
        (math.floor(i * size_in / size_out), math.ceil((i + 1) * size_in / size_out))
        for i in range(size_out)
    ]


def _adaptive_pool(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    x, y = args[0], _first(out)
    nd = len(args[1])
    window_total = 1
    for size_in, size_out in zip(x.shape[-nd:], y.shape[-nd:]):
        window_total *= sum(end - start for start, end in adaptive_windows(size_in, size_out))
    outer = y.numel() // math.prod(y.shape[-nd:]) if y.numel() else 0
    return Cost(0, outer * window_total)


def _batch_norm(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    training = bool(args[5]) if len(args) > 5 else False
    return _norm_cost(_first(out).numel(), training, args[1] is not None or args[2] is not None)


def _batch_norm_no_training(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    return Cost(0, 2 * _first(out).numel())


def _batch_norm_legit(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    training = bool(args[5]) if len(args) > 5 else True
    return _norm_cost(_first(out).numel(), training, args[1] is not None)


def _norm_cost(elements: int, batch_statistics: bool, affine: bool) -> Cost:
    if not batch_statistics:
        return Cost(0, 2 * elements)
    return Cost(0, (7 if affine else 5) * elements)


def _layer_norm(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    affine = len(args) > 2 and (args[2] is not None or (len(args) > 3 and args[3] is not None))
    return _norm_cost(_first(out).numel(), True, affine)


def _group_norm(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    return _norm_cost(_first(out).numel(), True, args[1] is not None)


# Elementwise operators: 1 FLOP per output element. In-place forms (name + "_") share the rule.
ELEMENTWISE = frozenset(
    """add sub rsub mul div neg abs exp exp2 expm1 log log2 log10 log1p sqrt rsqrt reciprocal pow
    square sigmoid tanh relu relu6 hardtanh leaky_relu elu selu celu gelu silu mish hardswish
    hardsigmoid softplus softshrink hardshrink log_sigmoid_forward clamp clamp_min clamp_max
    threshold maximum minimum fmax fmin sign floor ceil round trunc frac erf erfc erfinv where
    masked_fill sin cos tan atan asin acos sinh cosh atan2 _prelu_kernel prelu lerp fmod remainder
    eq ne gt ge lt le logical_not logical_and logical_or logical_xor bitwise_not bitwise_and
    bitwise_or bitwise_xor isnan isinf nan_to_num xlogy sgn _conj""".split()
)
ELEMENTWISE_2 = frozenset("addcmul addcdiv".split())
REDUCTIONS = frozenset(
    """sum mean amax amin max min prod argmax argmin logsumexp norm linalg_vector_norm any all
    cumsum cumprod""".split()
)
REDUCTIONS_2 = frozenset("var std var_mean std_mean".split())
POOLS = frozenset(
    """max_pool1d max_pool2d max_pool3d max_pool2d_with_indices max_pool3d_with_indices avg_pool1d
    avg_pool2d avg_pool3d""".split()
)
ADAPTIVE_POOLS = frozenset(
    """_adaptive_avg_pool2d _adaptive_avg_pool3d adaptive_max_pool2d adaptive_max_pool3d
    adaptive_avg_pool1d adaptive_max_pool1d""".split()
)
DATA_MOVEMENT = frozenset(
    """cat stack clone _to_copy copy constant_pad_nd index_select gather scatter flip roll repeat
    index index_put slice_scatter select_scatter masked_select fill zero empty zeros ones full arange
    empty_like zeros_like ones_like full_like new_empty new_zeros new_ones new_full scalar_tensor
    lift_fresh lift_fresh_copy reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d
    replication_pad2d replication_pad3d embedding pixel_shuffle pixel_unshuffle channel_shuffle
    native_channel_shuffle empty_strided tril triu one_hot _unsafe_index bernoulli native_dropout
    resize sort topk""".split()
)
INTERPOLATION = {
    "upsample_nearest1d": 0, "upsample_nearest2d": 0, "upsample_nearest3d": 0,
    "_upsample_nearest_exact1d": 0, "_upsample_nearest_exact2d": 0, "_upsample_nearest_exact3d": 0,
    "upsample_linear1d": 3, "upsample_bilinear2d": 7, "_upsample_bilinear2d_aa": 7,
    "upsample_bicubic2d": 31, "_upsample_bicubic2d_aa": 31, "upsample_trilinear3d": 15,
}

RULES: dict[str, Rule] = {
    "convolution": _conv,
    "mm": _mm,
    "addmm": _addmm,
    "bmm": _bmm,
    "baddbmm": _baddbmm,
    "mv": _mv,
    "dot": _mv,
    "vdot": _mv,
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa,
    "_scaled_dot_product_flash_attention": _sdpa,
    "_scaled_dot_product_efficient_attention": _sdpa,
    "_scaled_dot_product_cudnn_attention": _sdpa,
    "native_batch_norm": _batch_norm,
    "_native_batch_norm_legit_no_training": _batch_norm_no_training,
    "_native_batch_norm_legit": _batch_norm_legit,
    "native_layer_norm": _layer_norm,
    "native_group_norm": _group_norm,
    "_softmax": _per_output(5),
    "_log_softmax": _per_output(5),
}
RULES.update({name: _per_output(1) for name in ELEMENTWISE})
RULES.update({name: _per_output(2) for name in ELEMENTWISE_2})
RULES.update({name: _per_input(1) for name in REDUCTIONS})
RULES.update({name: _per_input(2) for name in REDUCTIONS_2})
RULES.update({name: _pool(int(name.split("pool")[1][0])) for name in POOLS})
RULES.update({name: _adaptive_pool for name in ADAPTIVE_POOLS})
RULES.update({name: _zero for name in DATA_MOVEMENT})
RULES.update({name: _per_output(f) for name, f in INTERPOLATION.items()})

BATCH_NORMS = frozenset({"native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit"})


def rule_for(op_name: str) -> Rule | None:
    """The rule of an aten operator packet name; in-place forms (``relu_``) share their rule."""
    rule = RULES.get(op_name)
    if rule is None and op_name.endswith("_") and not op_name.startswith("_"):
        rule = RULES.get(op_name[:-1])
    return rule


def conv_kind(weight: torch.Tensor, groups: int, transposed: bool) -> str:
    """``conv1x1``, ``conv_depthwise``, ``conv_grouped`` or ``conv`` (the analyzer's by_type keys)."""
    in_channels = weight.shape[0] if transposed else weight.shape[1] * groups
    if groups > 1 and groups == in_channels:
        return "conv_depthwise"
    if groups > 1:
        return "conv_grouped"
    if all(k == 1 for k in weight.shape[2:]):
        return "conv1x1"
    return "conv"
