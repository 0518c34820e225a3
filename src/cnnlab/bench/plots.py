"""The benchmark's figures (matplotlib, Agg backend: no display needed), each saved as PNG and
SVG through ``cnnlab.fileio.save_figure``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["guideline_chart", "guideline_figure", "pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only, never a window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def guideline_chart(name: str, result: Any, folder: str | Path) -> list[Path]:
    """``guideline_figure`` saved as ``guideline_<name>.png`` and ``.svg`` in ``folder``."""
    from cnnlab.fileio import save_figure

    return save_figure(guideline_figure(name, result.to_dict()), Path(folder) / f"guideline_{name}")


def guideline_figure(name: str, table: dict[str, Any]) -> Any:
    """One guideline's bar chart from its JSON (``GuidelineResult.to_dict()``): for each column of
    its table, each row's speed relative to the table's first row, ours beside the paper's, so that
    different hardware compares."""
    plt = pyplot()
    columns, rows = table["columns"], table["rows"]
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.6), squeeze=False, sharey=True)
    width = 0.38
    for ax, col in zip(axes[0], columns):
        ours = [r["ours"][col] / rows[0]["ours"][col] for r in rows]
        paper = [(r["paper"][col] or 0) / (rows[0]["paper"][col] or 1) for r in rows]
        xs = range(len(rows))
        ax.bar([x - width / 2 for x in xs], ours, width, label="this machine", color="#1f77b4")
        ax.bar([x + width / 2 for x in xs], paper, width, label=f"paper ({table['paper_device'].upper()})",
               color="#bbbbbb")
        ax.axhline(1.0, color="black", linewidth=0.6)
        ax.set_xticks(list(xs), [r["setting"] for r in rows], fontsize=8, rotation=30, ha="right")
        ax.set_title(f"{col}: {'holds' if table['holds_by_column'][col] else 'does not hold'}", fontsize=9)
    axes[0][0].set_ylabel(f"speed relative to the first row ({table['unit']})")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{name}: {table['title']}")
    fig.tight_layout()
    return fig
