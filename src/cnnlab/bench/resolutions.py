"""The notes' latency-vs-resolution table (ShuffleNet, Zhang et al. 2018, Table 8: ShuffleNet,
AlexNet and MobileNet on a Qualcomm Snapdragon 820 at 224x224, 480x640 and 720x1280), beside what
``cnnlab bench --resolutions`` measures here.

Absolute times on a phone and on this machine do not compare; how time grows with the resolution
does, so each row also carries the ratio of every resolution's time to the first one's.
The paper's numbers live in ``cnnlab/data/shufflenet_latency_paper.csv``, one row per number.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

__all__ = ["PAPER_CSV", "compare", "paper_label", "paper_latencies"]

PAPER_CSV = Path(__file__).resolve().parents[1] / "data" / "shufflenet_latency_paper.csv"


def paper_label(zoo_model: str, zoo_args: str = "") -> str:
    """How a row's network is named in ``bench`` results: the registered name, with its
    arguments when the paper's variant needs some (``shufflenet_v1(width_mult=0.5,groups=3)``)."""
    return f"{zoo_model}({zoo_args})" if zoo_args else zoo_model


def paper_latencies(path: Path = PAPER_CSV) -> dict[str, dict[str, Any]]:
    """``{label: {"paper_model", "mflops", "device", "source", "ms": {(h, w): ms}}}`` in the
    paper's row order."""
    out: dict[str, dict[str, Any]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            entry = out.setdefault(paper_label(r["zoo_model"], r["zoo_args"]), {
                "paper_model": r["paper_model"], "zoo_model": r["zoo_model"], "zoo_args": r["zoo_args"],
                "mflops": float(r["mflops"]), "device": r["device"], "source": r["source"], "ms": {}})
            entry["ms"][(int(r["height"]), int(r["width"]))] = float(r["latency_ms"])
    return out


def compare(results: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per (model, runtime, dtype) of ``results`` (``cnnlab.bench`` Results) that the
    paper's table has, with each resolution's time here and in the paper and both ratios to the
    first resolution. Resolutions the paper did not time are left out."""
    paper = paper_latencies()
    groups: dict[tuple[str, str, str], dict[tuple[int, int], float | None]] = {}
    for r in results:
        if r.model in paper and r.batch == 1:
            hw = (r.input_shape[-2], r.input_shape[-1])
            if hw in paper[r.model]["ms"]:
                groups.setdefault((r.model, r.runtime, r.dtype), {})[hw] = r.median_ms if r.ok else None
    rows = []
    for (model, runtime, dtype), ours in groups.items():
        theirs = paper[model]["ms"]
        sizes = [hw for hw in theirs if hw in ours]
        first = sizes[0]
        rows.append({
            "model": model, "paper_model": paper[model]["paper_model"], "runtime": runtime, "dtype": dtype,
            "resolutions": [{"height": h, "width": w, "ours_ms": ours[(h, w)], "paper_ms": theirs[(h, w)],
                             "ours_ratio": (ours[(h, w)] / ours[first]) if ours[(h, w)] and ours[first] else None,
                             "paper_ratio": theirs[(h, w)] / theirs[first]} for h, w in sizes],
            "source": f"{paper[model]['source']}, {paper[model]['device']}",
        })
    return rows
