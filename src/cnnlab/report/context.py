"""What every section of the report is given (``Context``) and what it gives back (``Section``):
its tables and figures as data, so that the page, the Markdown and ``data.json`` are rendered
from the same numbers by one generic renderer, and a new section is one module."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["COLUMN_KINDS", "Column", "Context", "Section", "Table"]

# How a table cell is shown (the value itself is always stored raw in data.json):
#   text; link ({"text", "url"}); count (an exact integer shown as 15.47 G); int; float (2
#   decimals); ms; percent; match (True / False / None, with a "why" in the row's <key>_why).
COLUMN_KINDS = ("text", "link", "count", "int", "float", "ms", "percent", "match")


@dataclass
class Column:
    key: str
    label: str
    kind: str = "text"
    help: str = ""  # the header's tooltip: what the column is, and its unit

    def __post_init__(self) -> None:
        if self.kind not in COLUMN_KINDS:
            raise ValueError(f"column {self.key!r}: unknown kind {self.kind!r}")


@dataclass
class Table:
    id: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    caption: str = ""
    sortable: bool = True


@dataclass
class Section:
    """One section of the page: ``intro`` is a paragraph of plain text, ``summary`` the line the
    terminal prints at the end, ``data`` the raw numbers (in data.json only)."""

    id: str
    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)  # Context.figure records
    data: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    notes: list[str] = field(default_factory=list)  # what could not be measured, and why
    seconds: float = 0.0  # how long collecting it took (set by build_report)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class Context:
    """The run's options and shared state. ``results`` holds the sections already collected (by
    id), so a later section can use an earlier one's numbers (the roofline uses the zoo's)."""

    out: Path
    quick: bool
    models: list[str]
    device: str
    train: bool
    cache: Any  # cnnlab.report.cache.ReportCache
    say: Callable[[str], None] = lambda text: None
    remeasure: bool = False  # time everything again (the cache's timed kinds are refreshed too)
    results: dict[str, Section] = field(default_factory=dict)

    @property
    def figures_dir(self) -> Path:
        return self.out / "figures"

    def figure(self, fig: Any, name: str, title: str, caption: str) -> dict[str, Any]:
        """Save a matplotlib figure as ``figures/<name>.png`` and ``.svg`` (atomically) and
        return its record: ``{"name", "title", "caption", "png", "svg"}`` (paths relative to
        the report folder)."""
        from cnnlab.fileio import save_figure

        save_figure(fig, self.figures_dir / name)
        return {"name": name, "title": title, "caption": caption,
                "png": f"figures/{name}.png", "svg": f"figures/{name}.svg"}
