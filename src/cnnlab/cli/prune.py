"""``cnnlab prune NAME --checkpoint FILE (--sparsity S | --layer-sparsity FILE.json) [--global]
[--finetune-epochs N] [--data DATA] --out FILE [--json]``: magnitude pruning of a trained
checkpoint (Han et al. 2015; Deep Compression §2), retrained with the masks kept, its sparsity per
layer in the layout of the notes' SqueezeNet table and its accuracy before and after. The work is
``cnnlab.compress.prune_checkpoint``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.cli.arguments import StatusLine, compression_errors, check_data, count, layer_sparsity, positive_number, sparsity
from cnnlab.cli.common import add_command

__all__ = ["add_parser", "run"]

HEADER = ["Layer", "#Parameters before pruning", "#Parameters after pruning", "Density"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "prune",
        help="magnitude-prune a trained checkpoint, fine-tune with the mask kept, write a checkpoint",
        description=(
            "Magnitude pruning (Han et al., NIPS 2015; Deep Compression §2) of every convolution and\n"
            "linear weight of a `cnnlab train` checkpoint: each layer to --sparsity S, or with --global\n"
            "one threshold over all of them so that S of all their weights are pruned, or per layer from\n"
            "--layer-sparsity (as `cnnlab compress` takes it). Then --finetune-epochs N of retraining on\n"
            "the training split with the checkpoint's recipe, pruned weights held at exactly 0. Prints\n"
            "the parameters per layer before and after pruning and the test accuracy of the trained,\n"
            "the pruned and the fine-tuned model; --out is a checkpoint that `cnnlab eval`, `predict`\n"
            "and `compress --checkpoint` take.\n\n"
            "Exit codes: 0 done, 1 an unusable checkpoint, 2 bad input."
        ),
    )
    parser.add_argument("model", metavar="NAME", help="the registered model the checkpoint holds")
    parser.add_argument("--checkpoint", metavar="FILE", required=True, help="a checkpoint written by `cnnlab train`")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--sparsity", type=sparsity, metavar="S",
                       help="the fraction of weights removed, 0 <= S < 1: of each layer, or of all with --global")
    which.add_argument("--layer-sparsity", metavar="FILE.json|paper",
                       help='a JSON object {"layer name": sparsity} (layers not named are not pruned), or paper')
    parser.add_argument("--global", dest="global_threshold", action="store_true",
                        help="one magnitude threshold over all layers, so that S of all their weights are pruned")
    parser.add_argument("--finetune-epochs", type=count, default=0, metavar="N",
                        help="epochs of retraining with the mask kept")
    parser.add_argument("--finetune-lr", type=positive_number, metavar="LR",
                        help="learning rate of the retraining (default: the checkpoint's recipe's)")
    parser.add_argument("--data", metavar="DATA",
                        help="digits, cifar10[:ROOT], cifar100[:ROOT], imagefolder:PATH or fake, for retraining and "
                             "evaluation (default: the checkpoint's)")
    parser.add_argument("--out", metavar="FILE", required=True, help="the pruned checkpoint to write")
    parser.add_argument("--json", action="store_true",
                        help='print {"model", "sparsity", "layers": [{"name", "params", "kept", "density", ...}], '
                             '"accuracy": {"float", "pruned", "finetuned"}, ...} instead of the table')
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.cli.errors import UsageError
    from cnnlab.cli.target import registered_info

    if args.sparsity is None and args.layer_sparsity is None:
        raise UsageError("give --sparsity S or --layer-sparsity FILE.json")
    if args.global_threshold and args.layer_sparsity is not None:
        raise UsageError("--global prunes to one total sparsity: give --sparsity S, not --layer-sparsity")
    if Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a folder; give the checkpoint file to write")
    check_data(args.data)
    registered_info(args.model)  # an unknown name: one line with a suggestion
    layers = layer_sparsity(args.layer_sparsity)
    from cnnlab.compress import prune_checkpoint

    with compression_errors(), StatusLine("pruning") as progress:
        result = prune_checkpoint(
            args.model, args.checkpoint, sparsity=args.sparsity, layer_sparsity=layers,
            global_threshold=args.global_threshold, finetune_epochs=args.finetune_epochs,
            finetune_lr=args.finetune_lr, data=args.data, out=args.out, progress=progress,
        )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    _print_result(result)
    return 0


def table_rows(result: Any) -> list[list[str]]:
    """One row per conv/linear layer, as the notes' SqueezeNet table (its parameter counts include
    the biases, which are never pruned), and the total."""
    rows = [[layer.name, f"{layer.params:,}", f"{layer.kept:,}", f"{100 * layer.density:.1f}%"]
            for layer in result.layers]
    params = sum(layer.params for layer in result.layers)
    kept = sum(layer.kept for layer in result.layers)
    density = 1.0 - result.sparsity
    ratio = f" ({1 / density:.1f}x)" if density else ""
    rows.append(["total", f"{params:,}", f"{kept:,}", f"{100 * density:.1f}%{ratio}"])
    return rows


def _accuracy_line(result: Any) -> str:
    accuracy = result.accuracy
    text = f"test accuracy: float {accuracy['float']:.4f} | pruned {accuracy['pruned']:.4f}"
    if accuracy["finetuned"] is None:
        return text + " | fine-tuned - (no --finetune-epochs)"
    tune = result.finetune
    return (text + f" | fine-tuned {accuracy['finetuned']:.4f} ({tune['epochs']} epochs, {tune['optimizer']} "
            f"lr {tune['lr']:g}, {tune['scheduler']} schedule, recipe {tune['recipe']})")


def _print_result(result: Any) -> None:
    from cnnlab.cli.common import print_table

    how = "one global threshold" if result.global_threshold else "per layer"
    print(f"{result.model} from {result.source}, pruned ({how}) to {100 * result.sparsity:.1f}% sparsity; "
          f"evaluated on {result.data} ({result.test_images} test images)")
    print()
    print_table(HEADER, table_rows(result), {1, 2, 3},
                caption="Parameters are the layer's weight and bias (biases are not pruned); density is the "
                        "fraction of the weight kept.")
    print()
    print(_accuracy_line(result))
    print(f"wrote {result.path}")
