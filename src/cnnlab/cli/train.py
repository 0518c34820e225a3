"""``cnnlab train NAME|FILE.py:attr --data ...``: train a model with a paper's recipe. The work is
``cnnlab.train.train``; this module parses, shows progress and prints ``test accuracy: 0.xxxx``
last. Under ``torchrun`` only rank 0 prints."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cnnlab.cli.common import add_command

__all__ = ["add_parser", "run"]

OPTIMIZERS = ("sgd", "rmsprop", "adamw")  # cnnlab.train.recipes.OPTIMIZERS, without importing torch
SCHEDULERS = ("cosine", "step", "linear", "onecycle", "none")
USER_INPUT_SIZE = (32, 32)  # a model of your own without --input-size


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "train",
        help="train a model on digits, CIFAR, an image folder or fake data, with a paper's recipe",
        description=(
            "Train NAME (or your own FILE.py:attr) with its recipe (`--list-recipes`); every flag\n"
            "given overrides the recipe. --out (default runs/NAME) receives checkpoint.pt (every\n"
            "epoch, atomically), args.json, metrics.csv, TensorBoard events and curve.png.\n"
            "Ctrl-C finishes the step, saves a checkpoint and exits 130; --resume continues it to\n"
            "the same weights as a run never stopped. Under `torchrun --nproc_per_node=N -m cnnlab\n"
            "train ...` it trains with DistributedDataParallel; --batch-size stays the global batch.\n\n"
            "Exit codes: 0 done, 1 an error in your model's code or an unusable checkpoint,\n"
            "2 bad input, 130 interrupted (checkpoint saved)."
        ),
    )
    parser.add_argument("model", nargs="?", metavar="NAME|FILE.py:attr",
                        help="a registered model (see `cnnlab models`) or path/to/file.py:attr for your own")
    parser.add_argument("--data", metavar="DATA",
                        help="digits (default), cifar10[:ROOT], cifar100[:ROOT], imagefolder:PATH or fake")
    parser.add_argument("--recipe", metavar="NAME", help="the recipe to start from (default: the model's)")
    parser.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")
    parser.add_argument("--epochs", type=int, metavar="N", help="epochs (recipe's by default)")
    parser.add_argument("--batch-size", type=int, metavar="B", help="global batch size (recipe's by default)")
    parser.add_argument("--lr", type=float, metavar="LR", help="learning rate (recipe's by default)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer (recipe's by default)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, help="learning-rate schedule (recipe's by default)")
    parser.add_argument("--weight-decay", type=float, metavar="WD", help="weight decay (recipe's by default)")
    parser.add_argument("--label-smoothing", type=float, metavar="S", help="label smoothing of the cross-entropy")
    parser.add_argument("--input-size", metavar="H[xW]",
                        help="train at H x W (default: the model's native size; 32x32 for your own model)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="augment the training images (recipe's choice by default)")
    parser.add_argument("--amp", action="store_true", default=None,
                        help="mixed precision: fp16 with a grad scaler on CUDA, bf16 on the CPU")
    parser.add_argument("--channels-last", action="store_true", default=None, help="channels_last memory format")
    parser.add_argument("--sync-bn", action="store_true", default=None,
                        help="synchronised batch norm across torchrun processes (CUDA)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to train (auto: CUDA if present)")
    parser.add_argument("--workers", type=int, metavar="W", help="DataLoader worker processes (default 0)")
    parser.add_argument("--threads", type=int, metavar="T",
                        help="CPU threads for torch (default: the recipe's, else torch's)")
    parser.add_argument("--seed", type=int, metavar="S", help="random seed (default 0)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default runs/NAME)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument(
        "--arg", action="append", default=[], metavar="KEY=VALUE",
        help="keyword argument of the model's builder (Python literal or a bare word), repeatable; "
             "`cnnlab info NAME` lists them (e.g. --arg aux_logits=True)",
    )
    return parser


def _input_size(text: str | None) -> tuple[int, int] | None:
    from cnnlab.cli.errors import UsageError
    from cnnlab.cli.target import parse_dims

    if text is None:
        return None
    dims = parse_dims(text, "--input-size")
    if len(dims) > 2:
        raise UsageError(f"--input-size is H x W or one side (e.g. 32 or 28x28), got {text!r}")
    return (dims[0], dims[0]) if len(dims) == 1 else (dims[0], dims[1])


def _list_recipes() -> int:
    from cnnlab.cli.common import print_table
    from cnnlab.train.recipes import RECIPES

    rows = []
    for r in RECIPES.values():
        schedule = r.scheduler
        if r.scheduler == "step":
            schedule += (f" x{r.gamma:g} at " + ",".join(f"{m:.0%}" for m in r.milestones) if r.milestones
                         else f" x{r.gamma:g} every {r.step_epochs:g} ep")
        rows.append([r.name, r.optimizer, f"{r.lr:g}", str(r.batch_size), str(r.epochs), schedule,
                     f"{r.weight_decay:g}", "yes" if r.augment else "no", r.source])
    print_table(["recipe", "optimizer", "lr", "batch", "epochs", "schedule", "wd", "augment", "source"], rows,
                {2, 3, 4, 6}, caption="flags given with --recipe override its values")
    return 0


def _user_builder(spec: str) -> Any:
    """``builder(model_args)`` for ``path/file.py:attr``: imports the file, finds the channels the
    model takes (built once on the meta device), and builds it with the data's class count when
    its factory takes ``num_classes``."""
    import inspect

    from cnnlab.cli.target import _build_user_model, _folder_on_path, _model_channels, _user_attr
    from cnnlab.train import ModelBuilder

    def make(model_args: dict[str, Any]) -> ModelBuilder:
        from pathlib import Path

        from torch import nn

        folder = Path(spec.rpartition(":")[0]).resolve().parent
        with _folder_on_path(folder):
            obj, root = _user_attr(spec, "the model")
        accepted: Any = {}
        if not isinstance(obj, nn.Module) and callable(obj):
            try:
                accepted = inspect.signature(obj).parameters
            except (TypeError, ValueError):  # no signature (a builtin)
                pass

        def build(num_classes: int, device: str = "cpu") -> Any:
            kwargs = dict(model_args)
            if "num_classes" in accepted and "num_classes" not in kwargs:
                kwargs["num_classes"] = num_classes
            with _folder_on_path(folder):
                return _build_user_model(obj, spec, kwargs, root, device)

        channels = _model_channels(build(10, "meta"), 3)
        return ModelBuilder(spec, channels, USER_INPUT_SIZE, build)

    return make


class _Progress:
    """The run's lines on stdout: a header, a rich progress bar per epoch on a terminal, one line
    per epoch, notes on stderr."""

    def __init__(self) -> None:
        from cnnlab.cli.common import _is_terminal

        self.live = _is_terminal(sys.stdout)
        self.bar: Any = None
        self.task: Any = None

    def start(self, info: dict[str, Any]) -> None:
        shape = "x".join(map(str, info["input"]))
        world = f", {info['world_size']} processes" if info["world_size"] > 1 else ""
        print(f"training {info['model']} ({info['params']:,} parameters, recipe {info['recipe']}) on "
              f"{info['train_size']} train / {info['test_size']} test images, {info['classes']} classes, {shape}; "
              f"{info['epochs']} epoch{'s' if info['epochs'] != 1 else ''} x {info['steps_per_epoch']} steps "
              f"on {info['device']}{world}; "
              f"out {info['out']}", flush=True)

    def note(self, text: str) -> None:
        print(f"cnnlab train: {text}", file=sys.stderr, flush=True)

    def step(self, p: Any) -> None:
        if not self.live:
            return
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("train", total=p.steps, completed=p.step - 1,
                                          epoch=f"{p.epoch}/{p.epochs}", stats="")
        stats = f"loss {p.loss:.4f} acc {p.acc:.4f} {p.images_per_s:,.0f} img/s"
        self.bar.update(self.task, completed=p.step, stats=stats)

    def epoch(self, row: dict[str, Any]) -> None:
        self.close()
        print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | test loss "
              f"{row['test_loss']:.4f} acc {row['test_acc']:.4f} | lr {row['lr']:.3g} | "
              f"{row['images_per_s']:,.0f} img/s | {row['seconds']:.1f} s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _choices(args: argparse.Namespace) -> dict[str, Any]:
    from cnnlab.cli.target import parse_kwargs

    if args.workers is not None and args.workers < 0:
        from cnnlab.cli.errors import UsageError

        raise UsageError(f"--workers must be >= 0, got {args.workers}")
    return {
        "data": args.data, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "optimizer": args.optimizer, "scheduler": args.scheduler, "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing, "input_size": _input_size(args.input_size), "augment": args.augment,
        "amp": args.amp, "channels_last": args.channels_last, "sync_bn": args.sync_bn, "device": args.device,
        "workers": args.workers, "threads": args.threads, "seed": args.seed, "out": args.out,
        "model_args": parse_kwargs(args.arg) or None,
    }


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.errors import UsageError

    if args.list_recipes:
        return _list_recipes()
    if not args.model:
        raise UsageError("a model is required: cnnlab train NAME|FILE.py:attr (or --list-recipes)")
    choices = _choices(args)
    from cnnlab.cli.target import is_user_spec, registered_info

    spec = args.model
    user = is_user_spec(spec)
    if not user:
        registered_info(spec)  # unknown names: one line with a suggestion
    if args.recipe is not None:
        from cnnlab.train.recipes import RECIPES

        if args.recipe not in RECIPES:
            raise UsageError(f"unknown recipe {args.recipe!r}; choose from {', '.join(RECIPES)} (--list-recipes)")
    return _train(spec, user, args, choices)


def _train(spec: str, user: bool, args: argparse.Namespace, choices: dict[str, Any]) -> int:
    from cnnlab.cli.errors import USER_ERRORS, Failure, UsageError, classify
    from cnnlab.train import CheckpointError, DataError, Interrupted, TrainingError, train

    main = int(os.environ.get("RANK", "0")) == 0
    progress = _Progress() if main else None
    user_root = None
    if user:
        from pathlib import Path

        user_root = Path(spec.rpartition(":")[0]).resolve().parent
    try:
        result = train(spec, recipe=args.recipe, resume=args.resume, builder=_user_builder(spec) if user else None,
                       reporter=progress, **choices)
    except Interrupted as stop:
        if main:
            print(f"cnnlab: interrupted at epoch {stop.epoch + 1}, step {stop.step}: checkpoint saved to "
                  f"{stop.checkpoint}; the same command with --resume continues", file=sys.stderr)
        return 130
    except CheckpointError as exc:
        raise Failure(1, str(exc), exc) from exc
    except DataError as exc:
        raise UsageError(str(exc)) from exc
    except TrainingError as exc:
        raise Failure(1, str(exc), exc) from exc
    except Failure:
        raise
    except USER_ERRORS as exc:
        if isinstance(exc, (ValueError, TypeError)) and not user:
            raise
        raise classify(exc, stage="forward" if user else "", label=spec, user_root=user_root) from exc
    finally:
        if progress is not None:
            progress.close()
    if main:
        print(f"saved {result.out}: {result.checkpoint.name}, args.json, metrics.csv, curve.png, TensorBoard events")
        print(f"test accuracy: {result.test_acc:.4f}")
    return 0
