"""What a run leaves in its folder besides the checkpoint: ``metrics.csv`` (one row per epoch),
TensorBoard event files, ``curve.png`` (loss and accuracy per epoch) and ``args.json``.

Only rank 0 of a distributed run writes them. ``metrics.csv`` and ``curve.png`` are rewritten
whole (atomically) from the rows kept in the checkpoint, so a resumed run's files hold every epoch
once; TensorBoard's writer purges the events after the resumed epoch.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

from cnnlab.fileio import atomic_write_text, save_figure

__all__ = ["COLUMNS", "RunLog", "curve_figure", "plot_curve", "write_metrics"]

COLUMNS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s", "seconds")


def write_metrics(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``metrics.csv`` with ``COLUMNS``, written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) for k in COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def plot_curve(base: Path, rows: Sequence[dict[str, Any]], title: str) -> None:
    """``base.png``: ``curve_figure``."""
    save_figure(curve_figure(rows, title), base, formats=("png",))


def curve_figure(rows: Sequence[dict[str, Any]], title: str) -> Any:
    """Train and test loss (left) and accuracy (right) per epoch (``metrics.csv`` rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    for split, style in (("train", "-o"), ("test", "-s")):
        loss_ax.plot(epochs, [r[f"{split}_loss"] for r in rows], style, ms=3, label=split)
        acc_ax.plot(epochs, [r[f"{split}_acc"] for r in rows], style, ms=3, label=split)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="top-1 accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return fig


class RunLog:
    """The files of one run in ``out``: created by rank 0 only (``enabled``)."""

    def __init__(self, out: Path, *, enabled: bool, purge_from: int | None) -> None:
        """``purge_from``: a resumed run's next epoch (TensorBoard drops events from it on);
        None for a new run, which removes the event files of an earlier attempt."""
        self.out = out
        self.enabled = enabled
        self.writer: Any = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        if purge_from is None:
            for old in out.glob("events.out.tfevents.*"):
                old.unlink()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out), purge_step=purge_from)

    def save_args(self, args: dict[str, Any]) -> None:
        if self.enabled:
            atomic_write_text(self.out / "args.json", json.dumps(args, indent=2) + "\n")

    def epoch(self, row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
        """One epoch's row into TensorBoard and ``metrics.csv`` (all rows so far)."""
        if not self.enabled:
            return
        step = row["epoch"]
        for key in ("train_loss", "test_loss"):
            self.writer.add_scalar(f"loss/{key.split('_')[0]}", row[key], step)
        for key in ("train_acc", "test_acc"):
            self.writer.add_scalar(f"accuracy/{key.split('_')[0]}", row[key], step)
        self.writer.add_scalar("lr", row["lr"], step)
        self.writer.add_scalar("images_per_s", row["images_per_s"], step)
        self.writer.flush()
        write_metrics(self.out / "metrics.csv", rows)

    def close(self, rows: Sequence[dict[str, Any]], title: str) -> None:
        """Draw ``curve.png`` from ``rows`` and close the TensorBoard writer."""
        if not self.enabled:
            return
        if rows:
            plot_curve(self.out / "curve", rows, title)
        if self.writer is not None:
            self.writer.close()
            self.writer = None
