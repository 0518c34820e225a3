"""Paper-reported accuracies of the zoo's networks, and MobileNet V1's width x resolution table,
read from the data files beside ``reference_models.csv`` (one row per printed number, each with
its source).

* ``data/paper_accuracy.csv``: ``zoo_model, paper_model, dataset, metric, value, crop, source,
  notes``. ``metric`` is what the source prints (``top1_acc``, ``top5_acc``, ``top1_err`` or
  ``top5_err``, in percent: a fraction such as Xception's 0.790 is stored as 79.0); ``crop`` is the
  test protocol as stated (``224 single-crop``, ``10-crop``, ``144-crop``, ``dense, single scale
  Q=256``, ...), a bare size where only the input size is stated, empty where the source states
  none (and for CIFAR and MNIST, whose test images are used whole). ``source`` is ``Author et al.
  YEAR, Table N`` (or ``Fig. N``) with the year cnnlab's registry gives the paper (its arXiv year:
  ResNet is He et al. 2015, ShuffleNet Zhang et al. 2017), so the citation alone tells whether a
  row comes from the model's own paper; a paper quoting another's number is cited as the table
  that prints it. The rows whose source is ``TORCHVISION_SOURCE`` are torchvision's published
  acc@1/acc@5 of its same-name weights, written by ``tools/gen_torchvision_accuracy.py``.
* ``data/mobilenet_grid_paper.csv``: ``table, width_mult, resolution, metric, value, source``:
  Howard et al. 2017 Table 6 (width at 224) and Table 7 (resolution at width 1.0), and TF-slim's
  table of the 16 released ``MobileNet_v1_<alpha>_<rho>`` checkpoints. Metrics are ``top1_acc``,
  ``top5_acc`` (TF-slim only), ``mult_adds_millions`` and ``params_millions``.
  Tables 6-7 are as the paper and the English course notes print them; the Chinese notes' copy
  (their Tables 5-2 and 5-3) gives 4.3 M parameters for 1.0 MobileNet-224 and 64.6 % at 128,
  where the paper has 4.2 and 64.4.

``top1(name)`` picks the one ImageNet top-1 accuracy the report shows for a model.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "MOBILENET_GRID_CSV",
    "PAPER_ACCURACY_CSV",
    "TORCHVISION_SOURCE",
    "Top1",
    "accuracy_percent",
    "is_own_paper",
    "mobilenet_grid",
    "paper_accuracy",
    "top1",
]

_DATA = Path(__file__).resolve().parent / "data"
PAPER_ACCURACY_CSV = _DATA / "paper_accuracy.csv"
MOBILENET_GRID_CSV = _DATA / "mobilenet_grid_paper.csv"
TORCHVISION_SOURCE = "torchvision weights (IMAGENET1K_V1)"

_ERROR_METRICS = {"top1_err": "top1_acc", "top5_err": "top5_acc"}
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")


class Top1(NamedTuple):
    """A model's ImageNet top-1 accuracy in percent and where it comes from."""

    value: float
    source: str

    @property
    def from_torchvision(self) -> bool:
        """True when no paper gives the number and it is torchvision's published acc@1."""
        return self.source == TORCHVISION_SOURCE


def paper_accuracy(path: Path = PAPER_ACCURACY_CSV) -> list[dict[str, Any]]:
    """Every row of ``paper_accuracy.csv`` in file order, ``value`` as a float, the rest strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{**row, "value": float(row["value"])} for row in csv.DictReader(f)]


def mobilenet_grid(path: Path = MOBILENET_GRID_CSV) -> list[dict[str, Any]]:
    """Every row of ``mobilenet_grid_paper.csv`` in file order: ``width_mult`` and ``value`` as
    floats, ``resolution`` as an int."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{**row, "width_mult": float(row["width_mult"]), "resolution": int(row["resolution"]),
                 "value": float(row["value"])} for row in csv.DictReader(f)]


def accuracy_percent(row: dict[str, Any]) -> float:
    """The row's number as an accuracy in percent: an error ``e`` becomes ``100 - e`` (rounded to
    the printed precision, so 22.85 % error is 77.15, not 77.15000000000001)."""
    value = float(row["value"])
    return round(100.0 - value, 6) if row["metric"] in _ERROR_METRICS else value


def _citation(source: str) -> tuple[str, int | None]:
    """(first author's surname, year) of ``"He et al. 2015, Table 3"``."""
    year = _YEAR.search(source)
    return source.split(" ", 1)[0].rstrip(","), int(year.group()) if year else None


def is_own_paper(row: dict[str, Any]) -> bool:
    """Whether the row's source is the paper cnnlab's registry gives for its model (same first
    author and year)."""
    from cnnlab.registry import model_info

    paper = model_info(row["zoo_model"]).paper
    surname, year = _citation(row["source"])
    return surname == paper.authors.split(",", 1)[0].strip() and year == paper.year


def _crop_rank(crop: str) -> int:
    """Single-crop first, then one view at the native size with the protocol unstated, dense
    single-scale evaluation, 10 crops, and the rest (multi-crop, multi-scale)."""
    if "single-crop" in crop:
        return 0
    if not crop or crop.isdigit():
        return 1
    if "single scale" in crop:
        return 2
    return 3 if crop == "10-crop" else 4


def top1(zoo_model: str, rows: list[dict[str, Any]] | None = None) -> Top1 | None:
    """The ImageNet top-1 accuracy (percent) to show for ``zoo_model`` and its source, or None when
    no row gives one. An error is turned into an accuracy. The model's own paper comes first,
    then other papers and releases quoting a number for it, and torchvision's weights only when
    no paper row exists (``Top1.from_torchvision`` says so); within each, a single-crop number is
    preferred (see ``_crop_rank``), then the first in file order."""
    rows = paper_accuracy() if rows is None else rows
    candidates = [(i, r) for i, r in enumerate(rows) if r["zoo_model"] == zoo_model
                  and r["dataset"] == "imagenet" and r["metric"] in ("top1_acc", "top1_err")]
    if not candidates:
        return None

    def rank(item: tuple[int, dict[str, Any]]) -> tuple[int, int, int]:
        index, row = item
        origin = 2 if row["source"] == TORCHVISION_SOURCE else (0 if is_own_paper(row) else 1)
        return origin, _crop_rank(row["crop"]), index

    _, best = min(candidates, key=rank)
    return Top1(accuracy_percent(best), best["source"])
