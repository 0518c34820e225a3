"""``cnnlab predict NAME (--checkpoint FILE | --weights torchvision) IMAGE ...``: the top-k classes
of each image, preprocessed exactly as in training. The work is ``cnnlab.train.inference``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cnnlab.cli.common import add_command

__all__ = ["add_parser", "load_trained", "run"]

MODEL_HELP = "the registered model the weights are for (see `cnnlab models`), or path/to/file.py:attr"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "predict",
        help="classify images with a trained checkpoint or torchvision's pretrained weights",
        description=(
            "The top-k classes of each IMAGE (any size; grayscale, RGB, RGBA, palette or 16-bit),\n"
            "preprocessed exactly as the checkpoint's test split was: its class names, input size\n"
            "and normalisation are stored in it. --weights torchvision uses torchvision's\n"
            "pretrained ImageNet weights for a model that shares torchvision's name, from the local\n"
            "torch hub cache only (nothing is downloaded; the error says how to fetch them).\n\n"
            "Exit codes: 0 done, 1 an unusable checkpoint or missing weights, 2 bad input."
        ),
    )
    parser.add_argument("model", metavar="NAME|FILE.py:attr", help=MODEL_HELP)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    add_weights_options(parser)
    parser.add_argument("--topk", type=int, default=5, metavar="K", help="classes shown per image")
    parser.add_argument("--json", action="store_true",
                        help='print [{"image", "top": [{"index", "class", "probability"}]}] instead of text')
    return parser


def add_weights_options(parser: argparse.ArgumentParser, *, torchvision: bool = True) -> None:
    """``--checkpoint`` (and ``--weights``), ``--device``: where the trained model comes from."""
    parser.add_argument("--checkpoint", metavar="FILE", help="a checkpoint written by `cnnlab train` (checkpoint.pt)")
    if torchvision:
        parser.add_argument("--weights", choices=("torchvision",),
                            help="torchvision's pretrained ImageNet weights, from the local torch hub cache")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to run (auto: CUDA if present)")


def load_trained(args: argparse.Namespace) -> Any:
    """The ``Trained`` model the arguments name; errors as one line (exit 2 bad input, 1 an
    unusable checkpoint or missing weights)."""
    from cnnlab.cli.errors import Failure, UsageError
    from cnnlab.cli.target import is_user_spec, registered_info

    weights = getattr(args, "weights", None)
    if (args.checkpoint is None) == (weights is None):
        either = "--checkpoint FILE or --weights torchvision" if hasattr(args, "weights") else "--checkpoint FILE"
        raise UsageError(f"give {either}" + (" (not both)" if args.checkpoint and weights else ""))
    user = is_user_spec(args.model)
    if not user:
        registered_info(args.model)  # an unknown name: one line with a suggestion
    device = _device(args.device)
    from cnnlab.train.checkpoint import CheckpointError
    from cnnlab.train.inference import WeightsError, from_checkpoint, from_torchvision

    try:
        if weights == "torchvision":
            if user:
                raise UsageError("--weights torchvision is for the zoo's models; use --checkpoint for your own")
            return from_torchvision(args.model, device)
        builder = None
        if user:
            from cnnlab.cli.train import _user_builder

            builder = _user_builder(args.model)
        return from_checkpoint(args.checkpoint, args.model, builder, device)
    except (CheckpointError, WeightsError) as exc:
        raise Failure(1, str(exc), exc) from exc


def _device(choice: str) -> str:
    import torch

    from cnnlab.cli.errors import UsageError

    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here (use --device cpu)")
    return "cuda" if choice == "auto" and torch.cuda.is_available() else ("cpu" if choice == "auto" else choice)


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.errors import UsageError
    from cnnlab.train.data import DataError
    from cnnlab.train.inference import open_image, predict_images

    if args.topk < 1:
        raise UsageError(f"--topk must be >= 1, got {args.topk}")
    try:
        images = [(path, open_image(path)) for path in args.images]  # every file checked before any work
    except DataError as exc:
        raise UsageError(str(exc)) from exc
    trained = load_trained(args)
    predictions = predict_images(trained, images, args.topk)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
        return 0
    c, h, w = trained.input_size
    print(f"{trained.name} from {trained.source}; {len(trained.classes)} classes, images to {c}x{h}x{w}",
          file=sys.stderr)
    width = max(len(p.image) for p in predictions)
    for p in predictions:
        print(f"{p.image:<{width}}  " + "  ".join(f"{name} {prob:.4f}" for _, name, prob in p.top))
    return 0
