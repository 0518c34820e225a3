"""``cnnlab eval NAME --checkpoint FILE [--data DATA]``: top-1, top-5 and loss on the test split,
and the confusion matrix (text and PNG) for up to 20 classes. The work is
``cnnlab.train.inference.evaluate_model``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cnnlab.cli.arguments import check_data
from cnnlab.cli.common import add_command
from cnnlab.cli.predict import MODEL_HELP, add_weights_options, load_trained

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "eval",
        help="top-1, top-5, loss and confusion matrix of a trained checkpoint on a test split",
        description=(
            "Evaluate a checkpoint written by `cnnlab train` on the test split of --data (default:\n"
            "the data it was trained on), preprocessed exactly as in training. The loss is the\n"
            "training objective's, so it equals the run's last test_loss. For up to 20 classes the\n"
            "confusion matrix is printed and saved as a PNG (--confusion; default confusion.png\n"
            "beside the checkpoint).\n\n"
            "Exit codes: 0 done, 1 an unusable checkpoint, 2 bad input."
        ),
    )
    parser.add_argument("model", metavar="NAME|FILE.py:attr", help=MODEL_HELP)
    add_weights_options(parser, torchvision=False)
    parser.add_argument("--data", metavar="DATA",
                        help="digits, cifar10[:ROOT], cifar100[:ROOT], imagefolder:PATH or fake "
                             "(default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="B", help="images per batch")
    parser.add_argument("--confusion", metavar="FILE.png",
                        help="where to save the confusion matrix (default: confusion.png beside the checkpoint)")
    parser.add_argument("--json", action="store_true",
                        help='print {"top1", "top5", "loss", "n", "model", "data", "classes", "confusion"}')
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.errors import UsageError
    from cnnlab.train.data import DataError
    from cnnlab.train.inference import evaluate_model

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.checkpoint is None:
        raise UsageError("give --checkpoint FILE (a checkpoint written by `cnnlab train`)")
    check_data(args.data)
    confusion_path = Path(args.confusion) if args.confusion else Path(args.checkpoint).parent / "confusion.png"
    if confusion_path.suffix.lower() != ".png":
        raise UsageError(f"--confusion {args.confusion}: the figure is a PNG; give a .png path")
    trained = load_trained(args)
    try:
        result = evaluate_model(trained, args.data, batch_size=args.batch_size)
    except DataError as exc:
        raise UsageError(str(exc)) from exc
    saved = _save_confusion(result, confusion_path) if result.confusion is not None else None
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        if saved:
            print(f"saved {saved}", file=sys.stderr)
        return 0
    print(f"{result.model} from {trained.source} on {result.data}: {result.n} test images, "
          f"{len(result.classes)} classes")
    if result.confusion is not None:
        print(_confusion_text(result.confusion, result.classes))
        print(f"saved {saved}")
    print(f"top-1 {result.top1:.4f} | top-{result.topk} {result.top5:.4f} | loss {result.loss:.4f} | n {result.n}")
    return 0


def _save_confusion(result: Any, path: Path) -> Path:
    from cnnlab.fileio import save_figure
    from cnnlab.train.inference import confusion_figure

    fig = confusion_figure(result.confusion, result.classes,
                           f"{result.model} on {result.data}: confusion matrix (test split)")
    return save_figure(fig, path.with_suffix(""), formats=("png",))[0]


def _confusion_text(matrix: list[list[int]], classes: list[str]) -> str:
    """Rows the true class, columns the prediction; zeros shown as dots."""
    width = max(3, max(len(c) for c in classes), len(str(max(max(row) for row in matrix))))
    label = max(len(c) for c in classes)
    lines = ["confusion matrix (rows: true class, columns: predicted)",
             " " * (label + 1) + "".join(f"{c:>{width + 1}}" for c in classes)]
    for name, row in zip(classes, matrix):
        lines.append(f"{name:>{label}} " + "".join(f"{(str(v) if v else '.'):>{width + 1}}" for v in row))
    return "\n".join(lines)
