"""LeNet-5 (LeCun et al. 1998) trained here on the real handwritten digits bundled with
scikit-learn, with its default recipe (``cnnlab train lenet5 --data digits``; docs/training.md):
the training curve per epoch and the confusion matrix on the fixed 25 % test split. Cached per
machine and code version; ``--no-train`` leaves it out."""

from __future__ import annotations

import tempfile
from typing import Any

from cnnlab.report.context import Column, Context, Section, Table

__all__ = ["MODEL", "collect", "wanted"]

MODEL = "lenet5"
EPOCHS: int | None = None  # None: the recipe's (tests shorten it)


def wanted(ctx: Context) -> bool:
    return ctx.train


def _train(ctx: Context) -> dict[str, Any]:
    from cnnlab.train import train
    from cnnlab.train.inference import evaluate_model, from_checkpoint

    with tempfile.TemporaryDirectory() as out:
        result = train(MODEL, data="digits", out=out, seed=0, epochs=EPOCHS)
        evaluation = evaluate_model(from_checkpoint(result.checkpoint, MODEL))  # cnnlab eval
    return {"model": MODEL, "recipe": result.config.recipe, "epochs": result.config.epochs,
            "test_acc": result.test_acc, "metrics": result.metrics, "classes": evaluation.classes,
            "confusion": evaluation.confusion, "seconds": sum(float(r["seconds"]) for r in result.metrics)}


def collect(ctx: Context) -> Section:
    ctx.say(f"training: {MODEL} on the bundled digits")
    run = ctx.cache.get("training", {"model": MODEL, "data": "digits", "epochs": EPOCHS}, lambda: _train(ctx),
                        machine=True, all_code=True)
    correct = sum(run["confusion"][i][i] for i in range(len(run["classes"])))
    total = sum(map(sum, run["confusion"]))
    rows = [{k: r[k] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s")}
            for r in run["metrics"]]
    section = Section(
        "training", f"Training: {MODEL} on real handwritten digits",
        intro=(f"{MODEL} trained on this machine with its default recipe ({run['recipe']}, {run['epochs']} epochs) "
               f"on scikit-learn's 1,797 handwritten digits (8×8, resized to 32×32), tested on a fixed stratified "
               f"25 % split: {correct} of {total} test digits right. The recipe is `cnnlab train {MODEL} --data digits`."),
        tables=[Table("training", "Per epoch", [
            Column("epoch", "epoch", "int"), Column("train_loss", "train loss", "float"),
            Column("train_acc", "train acc", "float"), Column("test_loss", "test loss", "float"),
            Column("test_acc", "test acc", "float"), Column("lr", "learning rate", "float"),
            Column("images_per_s", "images/s", "float"),
        ], rows, sortable=False)],
        data=run,
        summary=f"training: {MODEL} on digits, test accuracy {run['test_acc']:.4f} in {run['seconds']:.0f} s",
    )
    section.figures = [_curve(ctx, run), _confusion(ctx, run)]
    return section


def _curve(ctx: Context, run: dict[str, Any]) -> dict[str, Any]:
    from cnnlab.train.logs import curve_figure

    return ctx.figure(curve_figure(run["metrics"], f"{run['model']} on digits: training curve"), "training_curve",
                      f"{run['model']}: training curve", "Loss and accuracy per epoch on the training and test splits.")


def _confusion(ctx: Context, run: dict[str, Any]) -> dict[str, Any]:
    from cnnlab.train.inference import confusion_figure

    fig = confusion_figure(run["confusion"], run["classes"], f"{run['model']}: confusion matrix (test split)")
    return ctx.figure(fig, "confusion_matrix", f"{run['model']}: confusion matrix",
                      "Test digits by true class (rows) and predicted class (columns); the off-diagonal red counts "
                      "are the mistakes.")
