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
attention (sdpa)       B·H·L·S·(E + Ev)                         2·MACs + 5·B·H·L·S (softmax) + the
                                                                math path's scaling and mask adds
fused MHA / encoder    as their math paths (see the functions)  as their math paths
layer / LSTM layer
elementwise            0                                        1 per output element
pooling                0                                        1 per window element per output
reductions (mean, …)   0                                        1 per input element
BatchNorm, eval        0                                        2 per element (0 with fold_bn*)
batch-statistics norm  0                                        7 per element (5 without affine)
softmax / log_softmax  0                                        5 per element
interpolation          0                                        nearest 0, linear 3, bilinear 7,
                                                                bicubic 31, trilinear 15 per output
copies / creation      0                                        0
grid sampling          0                                        as interpolation, per output
cdist (p = 2)          B·P·R·M                                  3·MACs + B·P·R
roi_align (s > 0)      0                                        (8·s² + 1) per output bin
=====================  =======================================  ==================================

A rule may return ``None`` when its count depends on the data (``roi_align`` with an adaptive
sampling ratio): the operator is then listed as uncounted.

*fold_bn: each BN is analysed as folded into the conv or Linear before it; if that layer had no
bias, the folded network gains one bias add per element, so the BN then costs 1 FLOP per element.
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


Rule = Callable[[Sequence[Any], dict, Any], "Cost | None"]  # None: not countable for these arguments


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


def _linear(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    """``aten.linear`` when it reaches the dispatcher unexpanded (traced or scripted modules)."""
    weight, bias = args[1], args[2] if len(args) > 2 else kwargs.get("bias")
    macs = out.numel() * weight.shape[-1]
    return Cost(macs, 2 * macs + (out.numel() if bias is not None else 0))


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masked: bool, causal: bool) -> Cost:
    """Attention as PyTorch's math path computes it: q and k each scaled by √scale, the scores
    Q·Kᵀ, the mask added, softmax (5 per score), then the scores times V."""
    batch_heads = q.shape[:-2].numel()
    length, source, embed = q.shape[-2], k.shape[-2], q.shape[-1]
    scores = batch_heads * length * source
    macs = scores * (embed + v.shape[-1])
    flops = 2 * macs + 5 * scores + q.numel() + batch_heads * source * embed
    if masked or causal:
        flops += scores
    if causal:
        flops += length * source  # building the causal mask
    return Cost(macs, flops)


def _sdpa(mask_at: int | str | None, causal_at: int) -> Rule:
    """A fused attention kernel (flash, memory-efficient, cuDNN, CPU) counts as the math path the
    meta device runs, so the count does not depend on the kernel PyTorch picks."""

    def rule(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
        if isinstance(mask_at, str):
            mask = kwargs.get(mask_at)
        else:
            mask = args[mask_at] if mask_at is not None and len(args) > mask_at else None
        causal = bool(args[causal_at]) if len(args) > causal_at else bool(kwargs.get("is_causal", False))
        return _attention(args[0], args[1], args[2], mask is not None, causal)

    return rule


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


def _arg(args: Sequence[Any], kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _multi_head_attention(
    q: torch.Tensor, k: torch.Tensor, embed: int, heads: int, qkv_bias: Any, proj_bias: Any,
    masked: bool, need_weights: bool, average: bool,
) -> Cost:
    """``nn.MultiheadAttention`` as its math path (``F.multi_head_attention_forward``) counts it:
    the q/k/v projections, attention, the output projection. Without weights it calls SDPA
    (q and k scaled); with weights it scales q, and averages the weights over heads."""
    length, source = q.shape[-2], k.shape[-2]
    tokens_q, tokens_k = q.numel() // embed, k.numel() // embed
    batch = tokens_q // length
    scores = batch * heads * length * source
    macs = (tokens_q + 2 * tokens_k) * embed * embed + 2 * scores * (embed // heads) + tokens_q * embed * embed
    flops = 2 * macs + 5 * scores + tokens_q * embed + (scores if masked else 0)
    flops += (scores if average else 0) if need_weights else tokens_k * embed
    flops += (tokens_q + 2 * tokens_k) * embed if qkv_bias is not None else 0
    flops += tokens_q * embed if proj_bias is not None else 0
    return Cost(macs, flops)


def _native_mha(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    """``_native_multi_head_attention``: the CPU/CUDA fast path of ``nn.MultiheadAttention``."""
    return _multi_head_attention(
        args[0], args[1], int(args[3]), int(args[4]), args[6], args[8],
        _arg(args, kwargs, 9, "mask") is not None, bool(_arg(args, kwargs, 10, "need_weights", True)),
        bool(_arg(args, kwargs, 11, "average_attn_weights", True)),
    )


def _transformer_encoder_layer(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    """``_transformer_encoder_layer_fwd``: the fast path of ``nn.TransformerEncoderLayer``,
    counted as its math path: attention, two residual adds, two LayerNorms, the feed-forward
    network (Linear, activation, Linear)."""
    src, embed = args[0], int(args[1])
    attention = _multi_head_attention(
        src, src, embed, int(args[2]), args[4], args[6], _arg(args, kwargs, 18, "mask") is not None,
        need_weights=False, average=False,
    )
    tokens, hidden = src.numel() // embed, args[14].shape[0]
    ffn_macs = 2 * tokens * embed * hidden
    flops = attention.flops + 2 * ffn_macs + tokens * hidden  # activation
    flops += tokens * hidden if args[15] is not None else 0
    flops += tokens * embed if args[17] is not None else 0
    flops += 2 * tokens * embed  # residual adds
    for weight, bias in ((args[10], args[11]), (args[12], args[13])):
        flops += _norm_cost(tokens * embed, True, weight is not None or bias is not None).flops
    return Cost(attention.macs + ffn_macs, flops)


# Per hidden unit and step, the elementwise work of one LSTM / GRU cell after its matrix
# products (the math path in ATen's RNN.cpp): LSTM adds the two gate sets (4), four
# activations (4), c' = f·c + i·g (3), h' = o·tanh(c') (2); GRU: r and z (2 adds, 2 sigmoids),
# n = tanh(x_n + r·h_n) (3), h' = n + z·(h − n) (3). Biases add 4 (LSTM) or 3 (GRU) per set.
_LSTM_CELL, _LSTM_BIAS = 13, 4
_GRU_CELL, _GRU_BIAS = 10, 3


def _mkldnn_rnn_layer(args: Sequence[Any], kwargs: dict, out: Any) -> Cost | None:
    """oneDNN's LSTM layer (CPU): the per-step matrix products and cell arithmetic of the math
    path. Other modes do not reach it in PyTorch; they stay uncounted if they ever do."""
    x, w_ih, w_hh = args[0], args[1], args[2]
    hidden, mode, has_biases = int(args[10]), int(args[9]), bool(args[12])
    if mode != 2:
        return None
    steps = x.numel() // x.shape[-1]  # sequence length × batch
    macs = steps * w_ih.shape[0] * (w_ih.shape[1] + w_hh.shape[1])
    per_unit = _LSTM_CELL + (2 * _LSTM_BIAS if has_biases else 0)
    return Cost(macs, 2 * macs + per_unit * steps * hidden)


def _fused_cell(cell: int, per_bias: int) -> Rule:
    """``_thnn_fused_lstm_cell`` / ``_thnn_fused_gru_cell`` (CUDA): the cell arithmetic after the
    matrix products, biases included, as the math path counts it."""

    def rule(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
        units = args[2].numel()  # batch × hidden
        biases = sum(1 for b in (_arg(args, kwargs, 3, "input_bias"), _arg(args, kwargs, 4, "hidden_bias")) if b is not None)
        return Cost(0, (cell + biases * per_bias) * units)

    return rule


def _scattered_adds(source_at: int) -> Rule:
    """``index_add``, ``scatter_add``: one add per source element."""

    def rule(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
        return Cost(0, _numel(args[source_at]) if len(args) > source_at else 0)

    return rule


_GRID_SAMPLE_FLOPS = {0: 7, 1: 0, 2: 31}  # bilinear, nearest, bicubic: as interpolation


def _grid_sampler(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    """Per output element as ``upsample_*`` of the same mode (trilinear 15 in 3-D)."""
    mode = int(args[2])
    per_element = 15 if mode == 0 and args[0].dim() == 5 else _GRID_SAMPLE_FLOPS.get(mode, 0)
    return Cost(0, per_element * out.numel())


def _cdist(args: Sequence[Any], kwargs: dict, out: Any) -> Cost:
    """Pairwise distances (B·P·R pairs of M-vectors). p = 2: a difference, a multiply and an add
    per coordinate (M MACs per pair) and a square root per pair; p = 0, 1, ∞: a difference, an
    absolute value (or comparison) and an accumulation per coordinate; other p also a power
    per coordinate and a root per pair."""
    pairs, dims, p = out.numel(), args[0].shape[-1], float(args[2])
    if p == 2:
        return Cost(pairs * dims, 3 * pairs * dims + pairs)
    if p in (0, 1, math.inf):
        return Cost(0, 3 * pairs * dims)
    return Cost(0, 4 * pairs * dims + pairs)


def _roi_align(args: Sequence[Any], kwargs: dict, out: Any) -> Cost | None:
    """torchvision ``roi_align``: each output bin averages s×s bilinear samples (7 FLOPs each, as
    ``upsample_bilinear2d``, plus 1 to accumulate) and divides once. With an adaptive sampling
    ratio (≤ 0) the count depends on the boxes' sizes: uncounted."""
    ratio = int(args[5])
    if ratio <= 0:
        return None
    return Cost(0, out.numel() * (8 * ratio * ratio + 1))


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
    resize sort topk linspace logspace eye rand randn randint randperm rand_like randn_like randint_like
    normal uniform exponential random index_fill index_copy masked_scatter take nonzero
    repeat_interleave narrow_copy diag_embed im2col _local_scalar_dense _fused_sdp_choice
    _assert_async _assert_tensor_metadata _functional_assert_async""".split()
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
    "linear": _linear,
    "_convolution": _conv,
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa("attn_mask", 4),
    "_scaled_dot_product_flash_attention": _sdpa(None, 4),
    "_scaled_dot_product_efficient_attention": _sdpa(3, 6),
    "_scaled_dot_product_cudnn_attention": _sdpa(3, 6),
    "_safe_softmax": _per_output(5),
    "col2im": _per_input(1),
    "_native_multi_head_attention": _native_mha,
    "_transformer_encoder_layer_fwd": _transformer_encoder_layer,
    "mkldnn_rnn_layer": _mkldnn_rnn_layer,
    "_thnn_fused_lstm_cell": _fused_cell(_LSTM_CELL, _LSTM_BIAS),
    "_thnn_fused_gru_cell": _fused_cell(_GRU_CELL, _GRU_BIAS),
    "grid_sampler_2d": _grid_sampler,
    "grid_sampler_3d": _grid_sampler,
    "_cdist_forward": _cdist,
    "roi_align": _roi_align,
    "index_add": _scattered_adds(3),
    "scatter_add": _scattered_adds(3),
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
