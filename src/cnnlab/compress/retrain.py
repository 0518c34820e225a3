"""Prune a trained network and retrain what survives: ``cnnlab prune`` from Python.

Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural Networks",
NIPS 2015 (https://arxiv.org/abs/1506.02626), §3 and Figure 2: train, prune the connections of
small magnitude, retrain the remaining ones; Deep Compression's first stage is the same (Han, Mao &
Dally, ICLR 2016, §2: "we retrain the network to learn the final weights for the remaining sparse
connections"). The masks are ``cnnlab.compress.prune``'s, the code ``cnnlab compress`` prunes with.

Retraining keeps the masks: the gradients of pruned weights are zeroed before every optimizer step
(so momentum and Adam's moments never see them) and the masks are applied again after it, so a
pruned weight is exactly 0 after every step, whatever the optimizer or weight decay does.

Retraining uses the checkpoint's own recipe (its ``args``, through ``resolve_config``): the
optimizer, momentum, weight decay, batch size, augmentation, label smoothing, and its learning rate
and schedule run again over the fine-tuning epochs (``finetune_lr`` replaces the rate). That rate is
our choice: a tenth of the recipe's, a usual one for fine-tuning, recovers too slowly from 90 %
sparsity: LeNet-5 on the digits pruned per layer reaches 82.2 % after
10 epochs at lr/10 and 96.7 % at the recipe's lr, 98.9 % (the float model's) after 30
(docs/compression.md, "Pruning").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from cnnlab.compress.epochs import fine_tune_epochs
from cnnlab.compress.prune import CompressError, _check_sparsity, apply_masks, global_masks, layer_masks, plan_layers

__all__ = ["PruneResult", "PrunedLayer", "prune_checkpoint", "retrain_masked"]

@dataclass
class PrunedLayer:
    """One pruned layer in the notes' SqueezeNet table: parameters (weight and bias) before and
    after pruning, and the density of its weight (biases are never pruned)."""

    name: str
    weights: int
    weights_kept: int
    biases: int = 0

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def kept(self) -> int:
        return self.weights_kept + self.biases

    @property
    def density(self) -> float:
        return self.weights_kept / self.weights if self.weights else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "kept": self.kept, "density": self.density,
                "weights": self.weights, "weights_kept": self.weights_kept}


@dataclass
class PruneResult:
    """What ``prune_checkpoint`` did; ``to_dict`` is ``cnnlab prune --json``."""

    model: str
    source: str
    data: str
    layers: list[PrunedLayer]
    accuracy: dict[str, float | None]  # float, pruned, finetuned (None without fine-tuning)
    global_threshold: bool = False
    test_images: int = 0
    finetune: dict[str, Any] | None = None  # epochs, lr, optimizer, losses
    path: Path | None = None

    @property
    def sparsity(self) -> float:
        """The fraction of all the prunable weights that are pruned."""
        weights = sum(layer.weights for layer in self.layers)
        return 1.0 - sum(layer.weights_kept for layer in self.layers) / weights if weights else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "source": self.source, "data": self.data, "sparsity": self.sparsity,
                "global": self.global_threshold, "layers": [layer.to_dict() for layer in self.layers],
                "accuracy": dict(self.accuracy), "test_images": self.test_images, "finetune": self.finetune,
                "file": str(self.path) if self.path is not None else None}


# -- retraining with the masks kept -----------------------------------------------------------
def retrain_masked(model: nn.Module, masks: Mapping[str, torch.Tensor], loader: Any, objective: Callable[..., Any],
                   optimizer: torch.optim.Optimizer, *, epochs: int, scheduler: Any = None,
                   progress: Callable[[str], None] | None = None) -> list[float]:
    """Train ``model`` for ``epochs`` over ``loader`` with every pruned weight held at 0: the
    masked gradients are zeroed before each step and the masks applied after it. The scheduler
    (if any) steps once per optimizer step, as in ``cnnlab train``. Returns each epoch's mean
    training loss; a loss that is not finite raises CompressError."""
    params = dict(model.named_parameters())
    masked = [(params[key], mask.to(params[key].device)) for key, mask in masks.items()]
    apply_masks(model, masks)

    def update() -> None:
        for weight, mask in masked:
            if weight.grad is not None:
                weight.grad.masked_fill_(~mask, 0.0)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        apply_masks(model, masks)

    return fine_tune_epochs(model, loader, objective, update, epochs=epochs, progress=progress)


# -- the command ------------------------------------------------------------------------------
def _recipe(name: str, args: Mapping[str, Any]) -> Any:
    """The checkpoint's resolved training arguments (a ``TrainConfig``): its recipe with its
    saved choices on top (a checkpoint from ``cnnlab decompress`` has only data and model_args)."""
    from cnnlab.train.config import TrainConfig, resolve_config

    known = {f.name for f in fields(TrainConfig)} - {"model", "recipe"}
    try:
        return resolve_config(name, recipe=args.get("recipe"), **{k: v for k, v in args.items() if k in known})
    except ValueError as exc:
        raise CompressError(f"the checkpoint's training arguments cannot be used: {exc}") from None




def _sparsities(name: str, sparsity: float | None, layer_sparsity: Mapping[str, float] | str | None,
                global_threshold: bool) -> float | Mapping[str, float]:
    if (sparsity is None) == (layer_sparsity is None):
        raise CompressError("give one sparsity for every layer or a sparsity per layer (exactly one of them)")
    if global_threshold and sparsity is None:
        raise CompressError("--global prunes to one total sparsity: give --sparsity S, not --layer-sparsity")
    if sparsity is not None:
        return _check_sparsity("--sparsity", sparsity)
    if layer_sparsity == "paper":
        from cnnlab.compress.paper import paper_sparsity

        try:
            return paper_sparsity(name)
        except ValueError as exc:
            raise CompressError(str(exc)) from None
    if isinstance(layer_sparsity, str) or not isinstance(layer_sparsity, Mapping):
        raise CompressError(f"layer sparsities must map layer names to fractions, got {layer_sparsity!r}")
    return layer_sparsity


def prune_checkpoint(name: str, checkpoint: str | Path, *, sparsity: float | None = None,
                     layer_sparsity: Mapping[str, float] | str | None = None, global_threshold: bool = False,
                     finetune_epochs: int = 0, finetune_lr: float | None = None, data: str | None = None,
                     out: str | Path | None = None, progress: Callable[[str], None] | None = None) -> PruneResult:
    """``cnnlab prune`` from Python: the ``cnnlab train`` checkpoint of the registered model
    ``name`` magnitude-pruned to ``sparsity`` in every conv/linear weight (or, with
    ``global_threshold``, to ``sparsity`` of all of them under one threshold), or to
    ``layer_sparsity`` (module name -> sparsity, or ``"paper"``); retrained with the masks kept for
    ``finetune_epochs`` on the training split of ``data`` (default: the checkpoint's) with the
    checkpoint's recipe at ``finetune_lr`` (default: the recipe's lr); evaluated on the test
    split before, after pruning and after retraining; written to ``out`` (nothing is written when
    ``out`` is None) as a ``cnnlab train``-style checkpoint with ``"pruning": {layer: sparsity}``.
    Raises CompressError (bad arguments), CheckpointError, DataError."""
    from cnnlab.train.checkpoint import load_state, save_checkpoint
    from cnnlab.threads import torch_threads
    from cnnlab.train.inference import evaluate_model, from_checkpoint

    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise CompressError(f"fine-tuning epochs must be a non-negative integer, got {finetune_epochs!r}")
    if finetune_lr is not None and not (isinstance(finetune_lr, (int, float)) and 0 < finetune_lr < math.inf):
        raise CompressError(f"--finetune-lr must be a positive number, got {finetune_lr!r}")
    wanted = _sparsities(name, sparsity, layer_sparsity, global_threshold)
    if out is not None and Path(out).is_dir():
        raise CompressError(f"--out {out} is a folder; give the checkpoint file to write")
    state = load_state(checkpoint)
    trained = from_checkpoint(checkpoint, name)
    args = dict(state.get("args") or {})
    config = _recipe(name, args)
    data = data or trained.data
    if data is None:
        raise CompressError(f"{checkpoint} does not say what data it was trained on: give --data")

    model = trained.model
    specs = plan_layers(model, 0.0 if global_threshold else wanted)  # an unknown layer name: before any work
    with torch_threads(config.threads):
        if progress:
            progress("evaluating the trained model")
        before = evaluate_model(trained, data)
        masks = global_masks(model, specs, wanted) if global_threshold else layer_masks(model, specs)
        apply_masks(model, masks)
        if progress:
            progress("evaluating the pruned model")
        pruned = evaluate_model(trained, data).top1
        finetune, finetuned = None, None
        if finetune_epochs:
            finetune = _retrain(trained, masks, config, data, finetune_epochs, finetune_lr, progress)
            if progress:
                progress("evaluating the fine-tuned model")
            finetuned = evaluate_model(trained, data).top1

    modules = dict(model.named_modules())
    layers = [PrunedLayer(spec.name, masks[spec.key].numel(), int(masks[spec.key].sum()), _biases(modules[spec.name]))
              for spec in specs]
    path = None
    if out is not None:
        path = Path(out)
        save_checkpoint(path, {
            "model_name": name, "model": model.state_dict(), "args": args,
            **{key: state[key] for key in ("classes", "mean", "std", "input_size")},
            "pruning": {layer.name: 1.0 - layer.density for layer in layers},
        })
    return PruneResult(name, f"checkpoint {checkpoint}", data, layers,
                       {"float": before.top1, "pruned": pruned, "finetuned": finetuned},
                       global_threshold=global_threshold, test_images=before.n, finetune=finetune, path=path)


def _biases(module: nn.Module) -> int:
    bias = getattr(module, "bias", None)
    return bias.numel() if isinstance(bias, torch.Tensor) else 0


def _retrain(trained: Any, masks: Mapping[str, torch.Tensor], config: Any, data: str, epochs: int,
             lr: float | None, progress: Callable[[str], None] | None) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from cnnlab.train.inference import trained_splits
    from cnnlab.train.losses import make_objective
    from cnnlab.train.optim import make_optimizer, make_scheduler

    dataset = trained_splits(trained, data, use="fine-tune on", augment=config.augment)
    lr = lr if lr is not None else config.lr
    settings = replace(config, epochs=epochs, lr=lr)
    loader = DataLoader(dataset.train, batch_size=settings.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(settings.seed))
    objective = make_objective(trained.model, label_smoothing=settings.label_smoothing, mean=trained.mean,
                               std=trained.std, num_classes=len(trained.classes), label=trained.name)
    optimizer = make_optimizer(trained.model, settings)
    scheduler = make_scheduler(optimizer, settings, len(loader))
    with torch.random.fork_rng(devices=[]):  # augmentation and dropout draw from here
        torch.manual_seed(settings.seed)
        losses = retrain_masked(trained.model, masks, loader, objective, optimizer, epochs=epochs,
                                scheduler=scheduler, progress=progress)
    return {"epochs": epochs, "lr": lr, "optimizer": settings.optimizer, "scheduler": settings.scheduler,
            "recipe": settings.recipe, "batch_size": settings.batch_size, "losses": losses}

