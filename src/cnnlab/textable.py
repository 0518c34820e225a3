"""Plain aligned text tables for the terminal (the CLI and the analyzer share this)."""

from __future__ import annotations

from typing import Sequence

__all__ = ["human_count", "render_markdown", "render_table"]

_PREFIXES = ("", "k", "M", "G", "T", "P", "E")


def human_count(value: int | float | None) -> str:
    """A count with an SI prefix and two decimals: ``15470264320`` -> ``"15.47 G"``,
    ``138357544`` -> ``"138.36 M"``, ``3200`` -> ``"3.20 k"``. Below 1000 the number as it is
    (``"512"``, ``"12.5"``); None (unknown) -> ``"-"``."""
    if value is None:
        return "-"
    if abs(value) < 1000:
        return str(value) if isinstance(value, int) else f"{value:g}"
    scaled, i = float(value), 0
    while abs(scaled) >= 999.995 and i < len(_PREFIXES) - 1:  # 999,999 is 1.00 M, not 1000.00 k
        scaled /= 1000
        i += 1
    return f"{scaled:.2f} {_PREFIXES[i]}"


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
