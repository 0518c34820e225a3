"""Fold eval-mode BatchNorm into the convolution or linear layer that feeds it.

In eval mode a BatchNorm is a per-channel affine map, ``y = x * s + t`` with
``s = gamma / sqrt(running_var + eps)`` and ``t = beta - running_mean * s``. When ``x`` is the
output of a convolution (or a linear layer) and nothing else reads it, the map folds into that
layer: its weights are scaled per output channel and ``t`` is added to its bias (a bias-less
layer gains one), and the BatchNorm becomes ``nn.Identity``. The result computes the same
function up to float rounding, with one pass over the activations less per folded BN.

    >>> fused = cnnlab.fuse_bn(cnnlab.create_model("resnet18"))          # 20 of 20 BNs folded
    >>> from cnnlab.fuse import fuse_bn_report
    >>> report = fuse_bn_report(cnnlab.create_model("densenet121"))
    >>> report.num_folded, len(report.skipped)  # the pre-activation BNs after each concat stay
    (59, 62)

Pairs are found by dataflow, not by module order: one forward pass on the meta device (nothing
allocated, nothing computed) records, with module hooks, which module produced each BN's input
and, with a dispatch mode, every operator that reads a producer's output or weights. A BN is
folded only when its input is exactly the output of a stock ``nn.Conv1d/2d/3d``,
``nn.ConvTranspose1d/2d/3d`` or ``nn.Linear`` that runs once and whose output nothing but this
BN reads (not an operator, not the model's output). Not folded, and listed with the reason in
``FuseReport.skipped``: pre-activation BNs (a BN before its conv, e.g. DenseNet's BN after a
concatenation, pre-activation ResNet's), a BN after a pooling or an addition, a conv whose output
also feeds a shortcut, BNs without running statistics, modules run more than once (shared
weights) and subclasses that override ``forward``.

A model that cannot run on the meta device (it reads a tensor's value) is traced by one real
forward on the example input instead; a model built on meta is folded structurally (shapes,
new biases) without values, which is enough for ``cnnlab.analyze``.

The fused model is meant for inference: it is returned in eval mode, and a model given in
training mode is folded with its running statistics as they are. The fold is computed in
float64 and rounded once to the layer's dtype. A channel whose running variance is tiny next to
its mean (a dead channel) gets a huge scale ``s``, and the folded ``x * s + t`` then loses more
float32 precision than the BN's ``(x - mean) * s``; such statistics are rare in trained networks.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from cnnlab.analysis.fastmeta import fast_meta

__all__ = ["FuseReport", "fuse_bn", "fuse_bn_report"]

# Layers a BN can fold into: a stock module of one of these classes (or a subclass that keeps
# its forward), by the class whose forward it runs.
_PRODUCERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
)
_NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class FuseReport:
    """What ``fuse_bn_report`` did.

    ``folded``: ``(producer, bn)`` module names, one pair per folded BN, in execution order.
    ``skipped``: ``(bn, reason)`` for every BN left in place.
    """

    model: nn.Module
    folded: tuple[tuple[str, str], ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def num_folded(self) -> int:
        return len(self.folded)


def fuse_bn(
    model: nn.Module,
    *,
    example_input: Any = None,
    input_size: Sequence[int] | None = None,
    inplace: bool = False,
) -> nn.Module:
    """``model`` with every foldable eval-mode BatchNorm folded into the conv or linear layer
    before it (see the module docstring), in eval mode. A deep copy unless ``inplace``.

    The dataflow is traced with ``example_input`` (a tensor or a tuple of positional
    arguments) or a tensor of shape ``input_size`` (batch included); for a cnnlab model both
    default to one image of its smallest accepted size. A model without BatchNorm is not traced.
    A model that cannot run on the input raises a one-line ``ValueError``.
    ``fuse_bn_report`` also says which BNs were folded and why the others were not.
    """
    return fuse_bn_report(model, example_input=example_input, input_size=input_size, inplace=inplace).model


def fuse_bn_report(
    model: nn.Module,
    *,
    example_input: Any = None,
    input_size: Sequence[int] | None = None,
    inplace: bool = False,
) -> FuseReport:
    """``fuse_bn``, returning the fused model with the folded pairs and the skipped BNs."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse_bn expects an nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError("fuse_bn cannot rewrite a TorchScript module; fuse the eager model, then script it")
    if example_input is not None and input_size is not None:
        raise ValueError("give at most one of example_input and input_size")
    work = model if inplace else copy.deepcopy(model)
    work.eval()
    modules = dict(work.named_modules())
    norms = [name for name, m in modules.items() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not any(_is_norm(modules[name]) for name in norms):  # nothing to trace
        skipped = tuple((name, f"{type(modules[name]).__name__} overrides forward") for name in norms)
        return FuseReport(work, (), skipped)
    trace = _trace(work, _example_args(work, example_input, input_size))

    places: dict[nn.Module, list[tuple[nn.Module, str]]] = {}  # module -> (parent, attribute)
    for parent in modules.values():
        for attribute, child in parent.named_children():
            places.setdefault(child, []).append((parent, attribute))
    folded, skipped = [], []
    for bn_name in trace.norm_order:
        producer_name, reason = trace.verdict(bn_name)
        if reason:
            skipped.append((bn_name, reason))
            continue
        _fold(modules[producer_name], modules[bn_name])
        for parent, attribute in places[modules[bn_name]]:
            setattr(parent, attribute, nn.Identity())
        folded.append((producer_name, bn_name))
    for name in norms:
        if name not in trace.norm_input:
            stock = _is_norm(modules[name])
            skipped.append((name, "it did not run on the example input" if stock
                            else f"{type(modules[name]).__name__} overrides forward"))
    return FuseReport(work.eval(), tuple(folded), tuple(skipped))  # the new Identity modules too


# -- inputs --------------------------------------------------------------------------------------
def _example_args(model: nn.Module, example_input: Any, input_size: Sequence[int] | None) -> tuple:
    if example_input is not None:
        return example_input if isinstance(example_input, tuple) else (example_input,)
    dtype = next((t.dtype for t in itertools.chain(model.parameters(), model.buffers())
                  if t.is_floating_point()), torch.float32)
    if input_size is None:
        channels = getattr(model, "in_channels", None)
        side = getattr(model, "fixed_input_size", None) or getattr(model, "min_input_size", None)
        if not isinstance(channels, int) or not isinstance(side, int):
            raise ValueError(
                f"fuse_bn cannot guess an input for {type(model).__name__}; "
                "pass example_input=<tensor> or input_size=(N, C, H, W)"
            )
        input_size = (1, channels, side, side)
    if not isinstance(input_size, (tuple, list, torch.Size)) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in input_size
    ):
        raise ValueError(
            f"input_size must be a sequence of positive ints such as (1, 3, 224, 224), got {input_size!r}"
        )
    return (torch.zeros(tuple(input_size), dtype=dtype, device="meta"),)


def _meta_copy(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` whose parameters and buffers live on the meta device."""
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _to_meta(args: tuple) -> tuple:
    return tuple(
        torch.empty_like(a, device="meta") if isinstance(a, torch.Tensor) else a for a in args
    )


def _on_device(args: tuple, model: nn.Module) -> tuple:
    """Meta tensors among ``args`` made real (zeros) on the model's device."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    device = next((t.device for t in tensors), torch.device("cpu"))
    return tuple(
        torch.zeros(a.shape, dtype=a.dtype, device=device) if isinstance(a, torch.Tensor) and a.is_meta else a
        for a in args
    )


# -- tracing -------------------------------------------------------------------------------------
def _stock(module: nn.Module, classes: tuple[type[nn.Module], ...]) -> type[nn.Module] | None:
    """The class in ``classes`` whose computation ``module`` runs unchanged, or None."""
    base = next((c for c in classes if isinstance(module, c)), None)
    if base is None or type(module).forward is not base.forward:
        return None
    if hasattr(base, "_conv_forward") and type(module)._conv_forward is not base._conv_forward:
        return None
    return base


def _is_norm(module: nn.Module) -> bool:
    return _stock(module, _NORMS) is not None


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):  # a tensor without storage (sparse, nested, ...)
        return None


def _trace(work: nn.Module, args: tuple) -> "_Dataflow":
    """Run ``work`` once on a meta copy (or, if that fails, for real) and record its dataflow."""
    try:
        return _Dataflow(_meta_copy(work)).run(_to_meta(args))
    except Exception as meta_error:  # a model that cannot run on meta may still run for real
        first_error = meta_error
    if all(not isinstance(a, torch.Tensor) or a.is_meta for a in args) and any(
        t.is_meta for t in itertools.chain(work.parameters(), work.buffers())
    ):
        raise _trace_error(work, args, first_error)
    try:
        with torch.no_grad():
            return _Dataflow(work).run(_on_device(args, work))
    except Exception as error:
        raise _trace_error(work, args, error) from None


def _trace_error(model: nn.Module, args: tuple, error: BaseException) -> ValueError:
    shapes = ", ".join(str(tuple(a.shape)) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args)
    line = next((s.strip() for s in str(error).splitlines() if s.strip()), "")
    line = f"{type(error).__name__}: {line}"[:200]
    return ValueError(
        f"fuse_bn cannot trace {type(model).__name__} on input {shapes} ({line}); "
        "pass example_input= an input its forward accepts"
    )


class _Dataflow(TorchDispatchMode):
    """Who produced each BN's input, and who else read it: one forward pass, recorded."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # TorchDispatchMode otherwise imports torch._dynamo (~1.5 s) on the first operator.
        return False

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.names = {m: name for name, m in model.named_modules()}
        self.calls: dict[str, int] = {}
        self.norm_order: list[str] = []  # BN names in the order they first ran
        self.norm_input: dict[str, tuple[str | None, str]] = {}  # bn -> (producer, why not) at its call
        self.outputs: dict[int, tuple[str, torch.Tensor]] = {}  # storage -> (producer, output)
        self.readers: dict[str, set[str | None]] = {}  # producer -> contexts that read its output
        self.weights: dict[int, str] = {}  # storage of a producer's weight or bias -> producer
        self.foreign_weight_use: set[str] = set()
        self.context: str | None = None  # the producer or BN now running
        self.context_is_producer = False
        counts: dict[int, int] = {}
        for _, p in itertools.chain(model.named_parameters(remove_duplicate=False),
                                    model.named_buffers(remove_duplicate=False)):
            counts[id(p)] = counts.get(id(p), 0) + 1
        self.shared = {
            name for m, name in self.names.items()
            if any(counts.get(id(t), 0) > 1 for t in itertools.chain(m.parameters(False), m.buffers(False)))
        }
        self.norms = {m for m in self.names if _is_norm(m)}
        self.producers = [m for m in self.names if _stock(m, _PRODUCERS) is not None]

    def run(self, args: tuple) -> "_Dataflow":
        handles = []
        try:
            for m in self.producers:
                handles.append(m.register_forward_pre_hook(self._enter_producer))
                handles.append(m.register_forward_hook(self._leave_producer))
                for t in (m.weight, m.bias):
                    if t is not None and (key := _storage_key(t)) is not None:
                        self.weights[key] = self.names[m]
            for m in self.norms:
                handles.append(m.register_forward_pre_hook(self._enter_norm))
                handles.append(m.register_forward_hook(self._leave))
            self.model.eval()
            with torch.no_grad(), self:
                out = self.model(*args)
            for t in tree_leaves(out):  # a producer output the model returns has another reader
                if isinstance(t, torch.Tensor):
                    self._read(t, None)
        finally:
            for h in handles:
                h.remove()
        return self

    # module hooks
    def _enter_producer(self, module: nn.Module, args: tuple) -> None:
        name = self.names[module]
        self.calls[name] = self.calls.get(name, 0) + 1
        self.context, self.context_is_producer = name, True

    def _leave_producer(self, module: nn.Module, args: tuple, out: Any) -> None:
        self.context, self.context_is_producer = None, False
        name = self.names[module]
        if isinstance(out, torch.Tensor) and (key := _storage_key(out)) is not None:
            self.outputs[key] = (name, out)  # keeps the output alive: its storage key stays unique
            self.readers.setdefault(name, set())

    def _enter_norm(self, module: nn.Module, args: tuple) -> None:
        name = self.names[module]
        self.calls[name] = self.calls.get(name, 0) + 1
        if name not in self.norm_input:
            self.norm_order.append(name)
            self.norm_input[name] = self._source(module, args[0] if args else None)
        self.context, self.context_is_producer = name, False

    def _leave(self, module: nn.Module, args: tuple, out: Any) -> None:
        self.context = None

    def _source(self, bn: nn.Module, x: Any) -> tuple[str | None, str]:
        """The producer whose output ``x`` is, or why there is none to fold into."""
        entry = self.outputs.get(_storage_key(x)) if isinstance(x, torch.Tensor) else None
        if entry is None:
            return None, "its input is not a conv or linear output (pre-activation BN)"
        producer, out = entry
        if out is not x:
            return None, f"its input is a view of {producer}'s output"
        module = self.model.get_submodule(producer)
        channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        spatial = 0 if isinstance(module, nn.Linear) else len(module.kernel_size)
        if x.dim() != spatial + 2 or x.shape[1] != channels or bn.num_features != channels:
            return None, f"{producer}'s output channels are not the BN's channel dimension"
        return producer, ""

    # operators
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for t in tree_leaves((args, kwargs)):
            if isinstance(t, torch.Tensor):
                self._read(t, func)
        out = fast_meta(func, args, kwargs)  # shapes only, for operators whose meta kernels are slow
        return out if out is not None else func(*args, **kwargs)

    def _read(self, t: torch.Tensor, func: Any) -> None:
        key = _storage_key(t)
        if key is None:
            return
        owner = self.weights.get(key)
        if owner is not None and owner != self.context:
            self.foreign_weight_use.add(owner)
        if self.context_is_producer:  # the producer's own computation
            return
        entry = self.outputs.get(key)
        if entry is not None:
            self.readers[entry[0]].add(self.context if func is not None else None)

    # the verdict
    def verdict(self, bn: str) -> tuple[str, str]:
        """(producer, "") for a BN to fold, ("", reason) otherwise."""
        producer, reason = self.norm_input[bn]
        module = self.model.get_submodule(bn)
        if reason:
            return "", reason
        if self.calls[bn] > 1:
            return "", f"it runs {self.calls[bn]} times"
        if module.running_mean is None or module.running_var is None:
            return "", "it has no running statistics (track_running_stats=False)"
        if self.calls[producer] > 1:
            return "", f"{producer} runs {self.calls[producer]} times"
        if self.readers[producer] != {bn}:
            return "", f"{producer}'s output is also used elsewhere"
        if producer in self.shared or bn in self.shared or producer in self.foreign_weight_use:
            return "", f"{producer} or the BN shares its weights"
        producer_module = self.model.get_submodule(producer)
        if producer_module._forward_hooks or producer_module._forward_pre_hooks or module._forward_hooks \
                or module._forward_pre_hooks or parametrize.is_parametrized(producer_module):
            return "", f"{producer} or the BN has hooks or parametrizations"
        return producer, ""


# -- folding -------------------------------------------------------------------------------------
@torch.no_grad()
def _fold(layer: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn`` (eval mode) into ``layer``'s weight and bias, in float64 then cast back."""
    weight = layer.weight
    if weight.is_meta:  # no values to fold; the folded layer has a bias
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.empty(bn.num_features, dtype=weight.dtype, device="meta"),
                                      requires_grad=weight.requires_grad)
        return
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(shift)
    ones = (1,) * (weight.dim() - 2)
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):  # weight (Cin, Cout/g, *k)
        g = layer.groups
        grouped = weight.double().reshape(g, weight.shape[0] // g, weight.shape[1], *weight.shape[2:])
        folded = (grouped * scale.reshape(g, 1, weight.shape[1], *ones)).reshape(weight.shape)
    else:  # weight (Cout, Cin/g, *k) or, for Linear, (out, in)
        folded = weight.double() * scale.reshape(-1, 1, *ones)
    weight.copy_(folded)
    new_bias = (bias * scale + shift).to(weight.dtype)
    if layer.bias is not None:
        layer.bias.copy_(new_bias)
    else:
        layer.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)

