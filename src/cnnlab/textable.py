"""Plain aligned text tables for the terminal (the CLI and the analyzer share this)."""

from __future__ import annotations

from typing import Sequence

__all__ = ["render_markdown", "render_table"]


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """Columns padded to their widest cell; columns in ``numeric`` are right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in numeric else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def render_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in a cell is escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])
