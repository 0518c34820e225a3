"""Write torchvision's published ImageNet acc@1/acc@5 into ``src/cnnlab/data/paper_accuracy.csv``:
one row per number for every registered cnnlab model that torchvision has under the same name,
read from the installed torchvision (``get_model_weights(name).IMAGENET1K_V1.meta["_metrics"]``),
with source ``torchvision weights (IMAGENET1K_V1)``. The CSV stays the single checked-in source:
this script replaces that source's rows and keeps every other row as it is.

    .venv/bin/python tools/gen_torchvision_accuracy.py [--check]

``--check`` writes nothing and exits 1 when the CSV differs from what the installed torchvision
gives.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys

FIELDS = ["zoo_model", "paper_model", "dataset", "metric", "value", "crop", "source", "notes"]


def torchvision_rows() -> list[dict[str, str]]:
    """The torchvision rows, in registry order, top-1 before top-5."""
    import torchvision
    from torchvision.models import get_model_weights, list_models

    import cnnlab
    from cnnlab.paper_data import TORCHVISION_SOURCE

    available = set(list_models(module=torchvision.models))
    rows = []
    for name in cnnlab.list_models():
        if name not in available:
            continue
        weights = getattr(get_model_weights(name), "IMAGENET1K_V1", None)
        if weights is None:
            continue
        metrics = weights.meta["_metrics"]["ImageNet-1K"]
        preprocess = weights.transforms()
        crop, resize = preprocess.crop_size[0], preprocess.resize_size[0]
        for metric, key in (("top1_acc", "acc@1"), ("top5_acc", "acc@5")):
            rows.append({
                "zoo_model": name, "paper_model": f"torchvision {name}", "dataset": "imagenet",
                "metric": metric, "value": format(metrics[key], "g"), "crop": f"{crop} single-crop",
                "source": TORCHVISION_SOURCE,
                "notes": f"resize {resize}, centre crop {crop}",
            })
    return rows


def render(rows: list[dict[str, str]]) -> str:
    """The CSV text of ``rows``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the CSV is out of date; write nothing")
    args = parser.parse_args()

    from cnnlab.fileio import atomic_write_text
    from cnnlab.paper_data import PAPER_ACCURACY_CSV, TORCHVISION_SOURCE

    with open(PAPER_ACCURACY_CSV, newline="", encoding="utf-8") as f:
        current = f.read()
    kept = [r for r in csv.DictReader(io.StringIO(current)) if r["source"] != TORCHVISION_SOURCE]
    text = render(kept + torchvision_rows())
    if args.check:
        if text != current:
            print(f"{PAPER_ACCURACY_CSV} is out of date: run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(PAPER_ACCURACY_CSV, text)
    added = len(text.splitlines()) - 1 - len(kept)
    print(f"wrote {PAPER_ACCURACY_CSV} ({len(kept)} paper rows, {added} torchvision rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
