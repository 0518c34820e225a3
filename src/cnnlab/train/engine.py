"""The training loop: one plain loop, one function per epoch (``cnnlab.train.epoch``), in the
shape of torchvision's ``references/classification/train.py``.

``train(model, data=..., epochs=..., ...)`` is ``cnnlab train`` from Python (same arguments as
the flags). Each epoch trains on the whole training set (``train_one_epoch``), evaluates on the
test set (``evaluate``), appends a row to ``metrics.csv`` and writes ``checkpoint.pt``.

Reproducibility: the global RNGs are seeded before the model is built; the training order comes
from ``DistributedSampler`` (a permutation seeded by ``seed + epoch``, also in one process) and
every DataLoader has its own generator, so nothing else draws from the global RNG. On the CPU
``torch.use_deterministic_algorithms`` is on. A checkpoint holds the optimizer step within the
epoch and every RNG state, so ``resume=True`` continues -- from an epoch boundary or from the
step a SIGINT/SIGTERM stopped at -- to the same weights, bit for bit on the CPU with
``workers=0``, as a run that was never stopped. (With ``workers > 0`` an interrupted epoch's
remaining batches are augmented by freshly seeded workers.)
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from cnnlab.train.checkpoint import (
    CheckpointError, capture_rng, load_state, load_weights, restore_rng, save_checkpoint, seed_everything, seed_worker,
)
from cnnlab.train.config import TrainConfig, default_out, resolve_config, resumed_config
from cnnlab.train.distributed import Context, setup, teardown
from cnnlab.train.epoch import (
    EpochSums, Reporter, SkipSampler, StepProgress, StopRequest, TrainingError, evaluate, train_one_epoch,
)
from cnnlab.threads import torch_threads  # re-exported: cnnlab.train.engine.torch_threads
from cnnlab.train.logs import RunLog
from cnnlab.train.losses import make_objective
from cnnlab.train.optim import make_optimizer, make_scheduler

__all__ = [
    "CHECKPOINT",
    "EpochSums",
    "Interrupted",
    "ModelBuilder",
    "Reporter",
    "StepProgress",
    "StopRequest",
    "TrainResult",
    "TrainingError",
    "evaluate",
    "registered_builder",
    "run",
    "torch_threads",
    "train",
    "train_one_epoch",
]

CHECKPOINT = "checkpoint.pt"


class Interrupted(KeyboardInterrupt):
    """The run stopped on request (SIGINT/SIGTERM) after a whole step and saved a checkpoint."""

    def __init__(self, checkpoint: Path, epoch: int, step: int) -> None:
        super().__init__(f"interrupted at epoch {epoch + 1}, step {step}; checkpoint {checkpoint}")
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step


@dataclass
class ModelBuilder:
    """How to build the model once the data's class count is known."""

    label: str
    channels: int  # the input channels the model takes (the data is converted to them)
    input_size: tuple[int, int]  # its native H x W
    build: Callable[[int], nn.Module]  # num_classes -> a new model


def registered_builder(name: str, model_args: dict[str, Any] | None = None) -> ModelBuilder:
    """A registered model: ``create_model(name, num_classes=..., **model_args)``; ``--arg
    in_channels=K`` sets the channels the data is converted to."""
    from cnnlab.registry import create_model, model_info

    info = model_info(name)
    kwargs = dict(model_args or {})
    if "num_classes" in kwargs:
        raise ValueError("--arg num_classes: the class count comes from the data")
    channels = int(kwargs.pop("in_channels", info.input_size[0]))
    return ModelBuilder(
        name, channels, (info.input_size[1], info.input_size[2]),
        lambda num_classes: create_model(name, num_classes=num_classes, in_channels=channels, **kwargs),
    )


@dataclass
class TrainResult:
    """What a finished run returns."""

    test_acc: float
    test_loss: float
    metrics: list[dict[str, Any]]
    out: Path
    checkpoint: Path
    config: TrainConfig
    notes: list[str] = field(default_factory=list)


# -- the run ----------------------------------------------------------------------------------
Builder = Callable[[dict[str, Any]], ModelBuilder]  # model_args -> how to build the model


def train(
    model: str, *, recipe: str | None = None, resume: bool = False, builder: Builder | None = None,
    dataset: Any = None, reporter: Reporter | None = None, stop: StopRequest | None = None, **choices: Any,
) -> TrainResult:
    """Train ``model`` (a registered name, or any label with ``builder``) as ``cnnlab train``
    does. ``choices`` are the flags (``data``, ``epochs``, ``batch_size``, ``lr``, ``optimizer``,
    ``scheduler``, ``weight_decay``, ``label_smoothing``, ``input_size``, ``augment``, ``amp``,
    ``channels_last``, ``sync_bn``, ``device``, ``threads``, ``workers``, ``seed``, ``out``,
    ``model_args``); None or absent takes the recipe's value. ``resume`` continues
    ``out/checkpoint.pt`` with the arguments saved in it (explicit choices must agree).
    ``builder(model_args)`` says how to build a model that is not registered (default:
    ``registered_builder``); ``dataset`` (a ``cnnlab.train.data.Data``) replaces what
    ``load_data(data)`` would give. Raises ValueError for bad arguments, ``CheckpointError``,
    ``Interrupted`` after a requested stop (checkpoint written), ``TrainingError``."""
    ctx = setup(choices.get("device") or "auto")
    try:
        out = Path(choices.get("out") or default_out(model))
        state = _read_previous(out, resume, ctx)
        if state is not None:
            if state.get("model_name") != model:
                raise CheckpointError(f"{out / CHECKPOINT} holds a {state.get('model_name')} checkpoint, not {model}")
            config = resumed_config(state["args"], model=model, recipe=recipe, **choices)
        else:
            config = resolve_config(model, recipe=recipe, **choices)
        return run(config, ctx=ctx, state=state, builder=builder, dataset=dataset, reporter=reporter, stop=stop)
    finally:
        teardown(ctx)


def _read_previous(out: Path, resume: bool, ctx: Context) -> dict[str, Any] | None:
    """Rank 0 checks ``out`` and reads the checkpoint to resume; every rank gets the same answer
    (the problem, or the state) so that no rank waits for one that gave up."""
    problem, state = None, None
    if ctx.is_main:
        checkpoint = out / CHECKPOINT
        if out.exists() and not out.is_dir():
            problem = f"--out {out} is a file, not a folder"
        elif resume and not checkpoint.exists():
            problem = f"--resume: no checkpoint at {checkpoint} (train without --resume first)"
        elif not resume and checkpoint.exists():
            problem = (f"{out} already holds a run ({CHECKPOINT}); add --resume to continue it, or give "
                       "another --out (or remove the folder) to start again")
        elif resume:
            state = load_state(checkpoint)
    problem, state = ctx.broadcast((problem, state))
    if problem:
        raise ValueError(problem)
    return state


def run(config: TrainConfig, *, ctx: Context | None = None, state: dict[str, Any] | None = None,
        builder: Builder | None = None, dataset: Any = None, reporter: Reporter | None = None,
        stop: StopRequest | None = None) -> TrainResult:
    """Train as ``config`` says, from ``state`` (a checkpoint dict) when given."""
    ctx = ctx or setup(config.device)
    reporter = reporter or Reporter()
    stop = stop or StopRequest()
    _check_json(config)
    if config.batch_size % ctx.world_size:
        raise ValueError(f"--batch-size {config.batch_size} is the global batch: it must be divisible by the "
                         f"{ctx.world_size} processes")
    if config.sync_bn and ctx.world_size > 1 and ctx.device.type != "cuda":
        raise ValueError("--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only")
    built = builder(dict(config.model_args)) if builder else registered_builder(config.model, config.model_args)
    input_size = tuple(config.input_size or built.input_size)
    notes: list[str] = []
    data = dataset
    if data is None:
        from cnnlab.train.data import load_data

        data = load_data(config.data, input_size=input_size, channels=built.channels, augment=config.augment)
    notes += list(getattr(data, "notes", []))
    if config.sync_bn and ctx.world_size == 1:
        notes.append("--sync-bn does nothing in a single process")

    with _deterministic(ctx.device.type == "cpu"), torch_threads(config.threads):
        seed_everything(config.seed)
        model = built.build(len(data.classes)).to(ctx.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if state is not None:
            load_weights(model, state["model"], f"{config.out}/{CHECKPOINT}")
        if ctx.rank:
            seed_everything(config.seed + ctx.rank)  # rank 0 keeps the one-process stream
        bare = model
        if config.sync_bn and ctx.world_size > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            bare = model
        if ctx.world_size > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        return _loop(config, ctx, state, model, bare, data, input_size, built, notes, reporter, stop)


def _loop(config: TrainConfig, ctx: Context, state: dict[str, Any] | None, model: nn.Module, bare: nn.Module,
          data: Any, input_size: tuple[int, ...], builder: ModelBuilder, notes: list[str], reporter: Reporter,
          stop: StopRequest) -> TrainResult:
    per_rank = config.batch_size // ctx.world_size
    sampler = DistributedSampler(data.train, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=config.seed, drop_last=False)
    steps = math.ceil(len(sampler) / per_rank)
    test_loader = _loader(Subset(data.test, range(ctx.rank, len(data.test), ctx.world_size)), None, per_rank,
                          config, ctx, torch.Generator().manual_seed(config.seed))
    objective = make_objective(bare, label_smoothing=config.label_smoothing, mean=data.mean, std=data.std,
                               num_classes=len(data.classes), label=config.model)
    optimizer = make_optimizer(bare, config)
    scheduler = make_scheduler(optimizer, config, steps)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=config.amp and ctx.device.type == "cuda")
    generator = torch.Generator()
    out = Path(config.out)
    rows: list[dict[str, Any]] = []
    epoch, sums = 0, EpochSums()
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        epoch, rows = int(state["epoch"]), list(state["metrics"])
        sums = EpochSums(**state["partial"])
        generator.set_state(state["loader_generator"])
        if not restore_rng(state["rng"], ctx.rank, ctx.world_size):
            seed_everything(config.seed + 1_000_003 * epoch + ctx.rank)
            notes.append(f"the run was saved by {len(state['rng'])} processes, resumed by {ctx.world_size}: "
                         "random states re-seeded")
        notes.append(f"resuming at epoch {epoch + 1}, step {sums.step}" if sums.step else
                     f"resuming after epoch {epoch}")
    log = RunLog(out, enabled=ctx.is_main, purge_from=epoch + 1 if state is not None else None)
    log.save_args(config.to_dict())
    if ctx.is_main:
        reporter.start({
            "model": config.model, "recipe": config.recipe, "params": sum(p.numel() for p in bare.parameters()),
            "train_size": len(data.train), "test_size": len(data.test), "classes": len(data.classes),
            "input": (builder.channels, *input_size), "steps_per_epoch": steps, "epochs": config.epochs,
            "device": str(ctx.device), "world_size": ctx.world_size, "out": str(out),
        })
        for note in notes:
            reporter.note(note)

    def checkpoint(epoch_index: int) -> Path:
        rng = ctx.gather(capture_rng(generator))
        path = out / CHECKPOINT
        if ctx.is_main:
            save_checkpoint(path, {
                "model_name": config.model, "model": bare.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "scaler": scaler.state_dict(), "epoch": epoch_index, "step": sums.step, "partial": asdict(sums),
                "rng": rng, "loader_generator": generator.get_state(), "args": config.to_dict(),
                "classes": list(data.classes), "mean": [float(m) for m in data.mean],
                "std": [float(s) for s in data.std], "input_size": [builder.channels, *input_size],
                "metrics": rows, "world_size": ctx.world_size,
            })
        return path

    test_loss = rows[-1]["test_loss"] if rows else math.nan
    test_acc = rows[-1]["test_acc"] if rows else math.nan
    try:
        with _stop_on_signals(stop):
            while epoch < config.epochs:
                sampler.set_epoch(epoch)
                if sums.step == 0:
                    generator.manual_seed((config.seed * 1_000_003 + epoch * 7919 + ctx.rank) % 2**63)
                loader = _loader(data.train, SkipSampler(sampler, sums.step * per_rank), per_rank, config, ctx,
                                 generator)
                stopped = train_one_epoch(model, objective, optimizer, scheduler, scaler, loader, sums, ctx=ctx,
                                          epoch=epoch, epochs=config.epochs, steps=steps, amp=config.amp,
                                          channels_last=config.channels_last, reporter=reporter, stop=stop)
                if stopped:
                    raise Interrupted(checkpoint(epoch), epoch, sums.step)
                eval_start = time.perf_counter()
                test_loss, test_acc = evaluate(bare, objective, test_loader, ctx=ctx, amp=config.amp,
                                               channels_last=config.channels_last)
                loss_sum, correct, count, seconds = ctx.sum(sums.loss_sum, sums.correct, sums.count,
                                                            sums.train_seconds / ctx.world_size)
                row = {
                    "epoch": epoch + 1, "train_loss": loss_sum / max(count, 1), "train_acc": correct / max(count, 1),
                    "test_loss": test_loss, "test_acc": test_acc, "lr": sums.lr,
                    "images_per_s": count / max(seconds, 1e-9),
                    "seconds": seconds + time.perf_counter() - eval_start,
                }
                rows.append(row)
                epoch, sums = epoch + 1, EpochSums()
                path = checkpoint(epoch)
                if ctx.is_main:
                    log.epoch(row, rows)
                    reporter.epoch(row)
                if stop.requested:
                    raise Interrupted(path, epoch, 0)
    finally:
        log.close(rows, f"{config.model} on {config.data}")
    return TrainResult(test_acc, test_loss, rows, out, out / CHECKPOINT, config, notes)


def _loader(dataset: Dataset, sampler: Sampler[int] | None, batch: int, config: TrainConfig, ctx: Context,
            generator: torch.Generator) -> DataLoader:
    return DataLoader(dataset, batch_size=batch, sampler=sampler, shuffle=False, num_workers=config.workers,
                      pin_memory=ctx.device.type == "cuda", generator=generator,
                      worker_init_fn=seed_worker if config.workers else None, drop_last=False)


def _check_json(config: TrainConfig) -> None:
    try:
        json.dumps(config.to_dict())
    except (TypeError, ValueError):
        raise ValueError(f"--arg values must be numbers, strings, booleans, None, lists or dicts; "
                         f"got {config.model_args!r}") from None


@contextlib.contextmanager
def _deterministic(on: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the run (restored after)."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if on:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


@contextlib.contextmanager
def _stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """SIGINT and SIGTERM request a stop after the current step; a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
