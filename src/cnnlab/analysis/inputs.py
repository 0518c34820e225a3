"""What ``analyze`` runs: the model it analyses (the caller's modules are never modified: a model
in training mode runs as a structural copy) and the arguments it passes to ``forward`` (built
from ``input_size`` or taken from ``inputs``)."""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import torch
from torch import nn

__all__ = ["Inputs", "InputsSpec", "model_dtype", "structural_copy", "meta_copy", "make_inputs"]

# ``inputs=``: positional arguments, keyword arguments, or a constructor ``(device, dtype)`` of
# either (ptflops' ``input_constructor``). A lone tensor stands for one positional argument.
InputsSpec = Union[torch.Tensor, Sequence[Any], dict[str, Any], Callable[[torch.device, torch.dtype], Any]]


def model_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    """The dtype of the first floating-point parameter or buffer; float32 if there is none."""
    return next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)


# nn.Module's own attributes. A clone gets its own ``_parameters``, ``_buffers`` and
# ``_modules``, and its own copy of every non-empty hook dict, so that nothing done to the clone
# (a hook removing itself) reaches the user's module; an empty one stays shared, as a normal
# forward registering a hook would reach the user's module anyway.
_BASE_KEYS = frozenset(nn.Module().__dict__)
_HOOK_DICTS = tuple(
    k for k, v in nn.Module().__dict__.items() if isinstance(v, dict) and k not in ("_parameters", "_buffers", "_modules")
)

_HOLDERS = (nn.Module, list, tuple)
_hook_dicts = operator.itemgetter(*_HOOK_DICTS)  # KeyError for a module from an older torch: deepcopy


def structural_copy(
    model: nn.Module, tensors: list[torch.Tensor], clones: dict[int, nn.Module] | None = None
) -> nn.Module | None:
    """New module objects that share every parameter, buffer and other attribute of ``model``.

    Analysing the copy never touches the user's modules (their ``training`` flags stay as they
    are while a forward runs in another thread); names and tied parameters are kept. Each
    module is cloned directly (its ``__dict__`` copied, submodules replaced by their clones,
    also where an attribute or a list attribute refers to one), and ``clones`` (if given)
    receives ``id(module) -> clone``: ``copy.deepcopy`` costs as much as the analysis itself.
    Falls back to ``deepcopy`` with every tensor shared; None for a module that cannot be
    copied (a scripted one), which is then analysed in place.
    """
    if isinstance(model, torch.jit.ScriptModule):
        return None
    mapping: dict[int, nn.Module] = {} if clones is None else clones
    try:
        return _clone_tree(model, mapping)
    except Exception:  # noqa: BLE001 - an unusual module class: try the general way
        mapping.clear()
    memo: dict[int, Any] = {id(t): t for t in tensors}
    for m in model.modules():  # plain tensor attributes (masks, anchors) are shared too
        memo.update((id(v), v) for v in m.__dict__.values() if isinstance(v, torch.Tensor))
    try:
        return copy.deepcopy(model, memo)
    except Exception:  # noqa: BLE001 - anything deepcopy raises means "analyse in place"
        return None


def _clone_tree(model: nn.Module, clones: dict[int, nn.Module]) -> nn.Module:
    new = object.__new__
    for m in model.modules():
        clone = new(type(m))
        state = m.__dict__.copy()
        state["_parameters"] = state["_parameters"].copy()
        state["_buffers"] = state["_buffers"].copy()
        if any(_hook_dicts(state)):  # rare: most modules have no hooks
            for key in _HOOK_DICTS:
                if state[key]:
                    state[key] = state[key].copy()
        clone.__dict__ = state
        clones[id(m)] = clone
    get = clones.get

    def mapped(value: Any) -> Any:
        if isinstance(value, nn.Module):
            return get(id(value), value)
        if type(value) in (list, tuple) and any(isinstance(v, nn.Module) for v in value):
            return type(value)(get(id(v), v) if isinstance(v, nn.Module) else v for v in value)
        return value

    for clone in clones.values():
        state = clone.__dict__
        state["_modules"] = {k: get(id(v), v) for k, v in state["_modules"].items()}
        for key, value in state.items():  # a submodule also held as an attribute or in a list
            if key not in _BASE_KEYS and isinstance(value, _HOLDERS):
                state[key] = mapped(value)
    return clones[id(model)]


def meta_copy(model: nn.Module, tensors: list[torch.Tensor], dtype: torch.dtype | None) -> nn.Module:
    """A structural copy whose parameters and buffers live on the meta device.

    Floating tensors take ``dtype`` (each keeps its own when ``dtype`` is None); nothing of the
    original is copied or modified; tied parameters stay tied.
    """
    memo: dict[int, Any] = {}
    for t in tensors:
        if id(t) in memo:
            continue
        target = dtype if dtype is not None and t.is_floating_point() else t.dtype
        empty = torch.empty_like(t, device="meta", dtype=target)
        memo[id(t)] = nn.Parameter(empty, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else empty
    return copy.deepcopy(model, memo)


@dataclass
class Inputs:
    """The arguments of the analysed forward call and what the analysis needs to know of them."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    tensors: list[torch.Tensor] = field(default_factory=list)  # each distinct tensor once, in order
    spatial_shape: tuple[int, ...] = ()  # the tensor whose dims after the second are spatial

    @property
    def shapes(self) -> list[list[int]]:
        return [list(t.shape) for t in self.tensors]


def make_inputs(
    input_size: tuple[int, ...] | None, inputs: InputsSpec | None, device: torch.device, dtype: torch.dtype
) -> Inputs:
    """The forward call's arguments on ``device``: one tensor of shape ``input_size`` (zeros, or
    uninitialised on meta), or the user's ``inputs`` placed on the analysis device."""
    if input_size is not None:
        make = torch.empty if device.type == "meta" else torch.zeros
        x = make(input_size, device=device, dtype=dtype)
        return Inputs((x,), {}, [x], tuple(input_size))
    if callable(inputs) and not isinstance(inputs, (torch.Tensor, nn.Module)):
        inputs = inputs(device, dtype)
        if not isinstance(inputs, (tuple, list, dict, torch.Tensor)):
            raise TypeError(
                "the inputs constructor must return a tuple of positional arguments or a dict of "
                f"keyword arguments, got {type(inputs).__name__}"
            )
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    placed: dict[int, torch.Tensor] = {}  # one replacement per distinct tensor
    place = lambda v: _place(v, device, dtype, placed)  # noqa: E731
    if isinstance(inputs, dict):
        if not all(isinstance(k, str) for k in inputs):
            raise TypeError("inputs given as a dict must map argument names (str) to values")
        args, kwargs = (), {k: _map_tensors(v, place) for k, v in inputs.items()}
    elif isinstance(inputs, (tuple, list)):
        args, kwargs = tuple(_map_tensors(v, place) for v in inputs), {}
    else:
        raise TypeError(
            "inputs must be a tuple of positional arguments, a dict of keyword arguments or a "
            f"callable (device, dtype) returning one, got {type(inputs).__name__}"
        )
    tensors = list(placed.values())
    spatial = next((t for t in tensors if t.is_floating_point() and t.dim() >= 3), None)
    return Inputs(args, kwargs, tensors, tuple(spatial.shape) if spatial is not None else ())


def _place(t: torch.Tensor, device: torch.device, dtype: torch.dtype, placed: dict[int, torch.Tensor]) -> torch.Tensor:
    """``t`` as the analysis sees it. On meta: an empty meta tensor of its shape and layout,
    floating tensors in the analysis dtype, others (token ids, masks) in their own. Elsewhere:
    ``t`` as given (a detached alias, so the analysis' notes never land on the user's tensor)."""
    done = placed.get(id(t))
    if done is not None:
        return done
    if device.type == "meta":
        target = dtype if t.is_floating_point() else t.dtype
        new = torch.empty_like(t, device="meta", dtype=target)
    else:
        new = t.detach()
    placed[id(t)] = new
    return new


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``value`` with ``fn`` applied to every tensor in it, through lists, tuples and dicts."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        mapped = {k: _map_tensors(v, fn) for k, v in value.items()}
        return mapped if type(value) is dict else _rebuild(value, mapped)
    if isinstance(value, (list, tuple)):
        items = [_map_tensors(v, fn) for v in value]
        if hasattr(value, "_fields"):  # a namedtuple
            return type(value)(*items)
        return items if type(value) is list else _rebuild(value, items)
    return value


def _rebuild(value: Any, content: Any) -> Any:
    """A container of ``value``'s type holding ``content``, or a plain one if the type needs
    more than its content to be built (``defaultdict``)."""
    try:
        return type(value)(content)
    except TypeError:
        return tuple(content) if isinstance(value, tuple) else content
