"""Checking a runtime's output against torch eager in fp32 before it is timed.

Random-init classifier heads (torchvision's among them) can give logits near 1e-9 or nearly
constant: an ``allclose`` on such logits passes for any runtime. So the reference is made
non-degenerate first: when the eager output hardly depends on the input (two different inputs
give outputs equal to ``DEGENERATE`` of their scale) the classifier head is re-initialised with
a fixed seed (``reinit_head``) in the copy every runtime is prepared from; when that is not enough
(a very deep network whose eval-mode batch norm, with fresh running statistics of mean 0 and
variance 1, normalises nothing: preact_resnet1001_cifar's output overflows to inf), the batch-norm
statistics are first calibrated on random inputs (``calibrate_bn``). The same is done for an
ill-conditioned output (``is_ill_conditioned``: an input change at the level of float rounding
moves it by more than a tenth of the tolerance -- se_resnet152 at random init reaches logits of
9e3 and every runtime, channels_last included, "disagreed" by 40 %). The comparison is
relative to the output's scale: ``max |out - ref| / max |ref|`` (``max_rel_diff``); a runtime
passes under ``TOLERANCE[dtype]``. For bf16/fp16 the same number is the measured error against
fp32.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEGENERATE", "MAX_SENSITIVITY", "ROUNDING", "TOLERANCE", "WEAK", "Reference", "as_tensor", "calibrate_bn",
    "is_degenerate", "is_ill_conditioned", "max_rel_diff", "nondegenerate", "reference_model", "reinit_head",
    "sensitivity", "tolerance_for",
]

TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 8e-2}
DEGENERATE = 1e-4  # outputs for two inputs closer than this (relative) say nothing about the network
ROUNDING = 1e-7  # relative change of each input element in the conditioning check: float32 rounding (~1 ulp)
WEAK = "weak verification"  # how a note starts when the output could not be made usable
MAX_SENSITIVITY = 1e-2  # beyond this, a tolerance of 10x the sensitivity proves little


def as_tensor(output: Any) -> Any:
    """A runtime's output (a tensor, numpy array, list/tuple/dict of them, OpenVINO's result)
    as a float32 CPU tensor: the first output when there are several."""
    import numpy as np
    import torch

    if isinstance(output, dict):
        output = next(iter(output.values()))
    elif hasattr(output, "to_tuple"):  # openvino's OVDict
        output = output.to_tuple()[0]
    if isinstance(output, (list, tuple)):
        output = output[0]
    if isinstance(output, np.ndarray):
        output = torch.from_numpy(np.asarray(output, dtype=np.float32))
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the runtime returned {type(output).__name__}, not a tensor")
    return output.detach().to(device="cpu", dtype=torch.float32)


def max_rel_diff(output: Any, reference: Any) -> float:
    """``max |output - reference| / max |reference|``: inf on a shape mismatch or a NaN."""
    out, ref = as_tensor(output), as_tensor(reference)
    if out.shape != ref.shape:
        return math.inf
    scale = ref.abs().max().item()
    diff = (out - ref).abs().max().item()
    if math.isnan(diff):
        return math.inf
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def _forward(model: Any, x: Any) -> Any:
    import torch

    with torch.inference_mode():
        return as_tensor(model(x))


def is_degenerate(model: Any, example: Any) -> bool:
    """Whether the model's output hardly depends on its input (or is zero): then comparing
    outputs cannot tell a right runtime from a wrong one."""
    import torch

    generator = torch.Generator().manual_seed(1)
    other = torch.randn(example.shape, generator=generator, dtype=example.dtype).to(example.device)
    first, second = _forward(model, example), _forward(model, other)
    scale = max(first.abs().max().item(), second.abs().max().item())
    if scale == 0 or not math.isfinite(scale):
        return True
    return (first - second).abs().max().item() <= DEGENERATE * scale


def sensitivity(model: Any, example: Any) -> float:
    """How far the output moves (``max_rel_diff``) when each input element changes at
    float-rounding level (relative ``ROUNDING``, seeded): the disagreement a correct runtime that
    computes in another order can show."""
    import torch

    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(example.shape, generator=generator, dtype=example.dtype).to(example.device)
    return max_rel_diff(_forward(model, example * (1 + ROUNDING * noise)), _forward(model, example))


def is_ill_conditioned(model: Any, example: Any) -> bool:
    """Whether the output's ``sensitivity`` exceeds a tenth of the fp32 tolerance: then a right
    runtime could "disagree"."""
    return sensitivity(model, example) > TOLERANCE["fp32"] / 10


def tolerance_for(dtype: str, output_sensitivity: float) -> float:
    """``TOLERANCE[dtype]``, widened to 10x the output's own rounding sensitivity."""
    return max(TOLERANCE[dtype], 10 * output_sensitivity)


def _head(model: Any) -> Any:
    """The classifier: ``get_classifier()`` (the zoo's interface, timm's) else the last
    ``nn.Linear``, else None."""
    from torch import nn

    getter = getattr(model, "get_classifier", None)
    if callable(getter):
        try:
            head = getter()
        except Exception:  # noqa: BLE001 - a user's model: fall back to the last Linear
            head = None
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def reinit_head(model: Any, seed: int = 0) -> bool:
    """Re-initialise the classifier's weights in place with a fixed seed (normal with std
    1/sqrt(fan_in), zero bias), so logits have the features' scale. False when there is none."""
    import torch
    from torch import nn

    head = _head(model)
    if head is None:
        return False
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in head.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / math.sqrt(fan_in))
                if layer.bias is not None:
                    layer.bias.zero_()
    return True


def calibrate_bn(model: Any, example: Any, seed: int = 0, batches: int = 2, batch: int = 4) -> bool:
    """Set every batch norm's running statistics, in place, to the cumulative average over
    ``batches`` training-mode forwards of ``batch`` random inputs shaped like ``example`` (seeded);
    then eval mode. False (nothing done) when the model has no batch norm."""
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return False
    saved = [m.momentum for m in norms]
    generator = torch.Generator().manual_seed(seed)
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: the plain mean over the batches
        model.train()
        with torch.no_grad():
            for _ in range(batches):
                shape = (batch, *example.shape[1:])
                model(torch.randn(shape, generator=generator, dtype=example.dtype).to(example.device))
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.eval()
    return True


@dataclass
class Reference:
    """The model every runtime is prepared from, why it differs from the user's (``note``; it
    starts with ``WEAK`` when no usable reference was found), and its output's ``sensitivity``."""

    model: Any
    note: str
    sensitivity: float


def reference_model(model: Any, example: Any, seed: int = 0) -> Reference:
    """``model`` itself (eval mode) when its output depends on its input and is well conditioned;
    else the first usable of: a copy with its head re-initialised (degenerate logits), a copy
    with its batch norms calibrated, both. When none is well conditioned, the least sensitive one
    up to ``MAX_SENSITIVITY`` (runtimes are then compared at 10x its sensitivity)."""
    model = model.eval()
    degenerate = is_degenerate(model, example)
    why = "degenerate output" if degenerate else "ill-conditioned output"

    def head(base: Any) -> Any:
        fresh = copy.deepcopy(base)
        return fresh if reinit_head(fresh, seed) else None

    def calibrated() -> Any:
        fresh = copy.deepcopy(model)
        return fresh if calibrate_bn(fresh, example, seed) else None

    steps = [(lambda: model, "")]
    if degenerate:
        steps.append((lambda: head(model), f"degenerate logits: head re-initialised (seed {seed}) for verification "
                                           "and timing"))
    steps.append((calibrated, f"{why}: batch-norm statistics calibrated on random inputs (seed {seed})"))
    steps.append((lambda: head(calibrated() or model),
                  f"{why}: batch-norm statistics calibrated on random inputs and head re-initialised (seed {seed})"))
    best: Reference | None = None
    for make, note in steps:
        candidate = make()
        if candidate is None or is_degenerate(candidate, example):
            continue
        moved = sensitivity(candidate, example)
        if moved <= TOLERANCE["fp32"] / 10:
            return Reference(candidate, note, moved)
        if best is None or moved < best.sensitivity:
            best = Reference(candidate, note, moved)
    if best is not None and best.sensitivity <= MAX_SENSITIVITY:
        said = f"{best.note}; " if best.note else ""
        best.note = (f"{said}its output moves by {best.sensitivity:.1e} under rounding-level input changes, so "
                     f"runtimes are compared at {10 * best.sensitivity:.1e}")
        return best
    if degenerate and best is None:
        return Reference(model, f"{WEAK}: the output hardly depends on the input, so agreement proves little", 0.0)
    return Reference(model, f"{WEAK}: the output is ill-conditioned (rounding-level input changes move it by more "
                            f"than {MAX_SENSITIVITY:g}), so runtimes may disagree", math.inf)


def nondegenerate(model: Any, example: Any, seed: int = 0) -> tuple[Any, str]:
    """``reference_model``'s model and note."""
    found = reference_model(model, example, seed)
    return found.model, found.note
