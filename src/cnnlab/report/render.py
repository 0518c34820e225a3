"""The report's two renderings of ``data.json``: ``index.html`` (one self-contained page: inline
CSS, figures embedded as PNG data, readable without JavaScript; a little JS sorts and filters the
tables) and ``README.md`` (the same tables in Markdown, figures linked). Both are generic over the
sections: a table is its columns (key, label, kind) and its rows of raw values, and a cell is
formatted by its column's kind."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

__all__ = ["cell", "render_html", "render_markdown"]

TEMPLATE = Path(__file__).with_name("templates") / "index.html.j2"
_UNITS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _count(value: float) -> str:
    for scale, unit in _UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:,.0f}"


def cell(value: Any, kind: str, why: str = "") -> tuple[str, Any]:
    """``(text, sort key)`` of one value shown as ``kind`` (see ``context.COLUMN_KINDS``); an
    empty text for a missing value, which sorts last."""
    if value is None or value == "":
        return "", None
    if kind == "link":
        return value["text"], value["text"]
    if kind == "count":
        return _count(value), value
    if kind == "int":
        return f"{value:d}", value
    if kind in ("float", "ms"):
        return (f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"), value
    if kind == "percent":
        return f"{value:.1f} %", value
    if kind == "match":
        return ("✓" if value else "✗ " + why), int(bool(value))
    return str(value), str(value)


def _rows(table: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Each row as a list of ``{"text", "sort", "title", "url", "exact"}`` cells."""
    out = []
    for row in table["rows"]:
        cells = []
        for col in table["columns"]:
            value = row.get(col["key"])
            text, sort = cell(value, col["kind"], row.get(f"{col['key']}_why") or "")
            # the hover text: the column's <key>_hint (a source, a full title), or a mismatch's reason
            title = row.get(f"{col['key']}_hint") or (row.get(f"{col['key']}_why") if col["kind"] == "match" else "")
            cells.append({"text": text, "sort": "" if sort is None else sort, "title": title or "",
                          "url": value["url"] if col["kind"] == "link" and value else "",
                          "exact": f"{value:,}" if col["kind"] == "count" and value is not None else "",
                          "numeric": col["kind"] not in ("text", "link")})
        out.append(cells)
    return out


def _embed(folder: Path, relative: str) -> str:
    """A figure as a data: URI, so the page stands alone (the file stays beside it too)."""
    return "data:image/png;base64," + base64.b64encode((folder / relative).read_bytes()).decode()


def render_html(report: dict[str, Any], folder: Path) -> str:
    """The page for ``report`` (the data.json document); figures are read from ``folder``."""
    import jinja2

    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    template = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    sections = []
    for section in report["sections"]:
        sections.append({**section,
                         "tables": [{**t, "cells": _rows(t)} for t in section["tables"]],
                         "figures": [{**f, "src": _embed(folder, f["png"])} for f in section["figures"]]})
    return template.render(report=report, sections=sections)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any]) -> str:
    """The same tables in Markdown (GitHub's), each figure linked as its PNG."""
    lines = [f"# {report['title']}", "", report["subtitle"], ""]
    lines += [f"- {line}" for line in report["summary"]] + [""]
    for section in report["sections"]:
        lines += [f"## {section['title']}", "", section["intro"], ""]
        for table in section["tables"]:
            lines += [f"### {table['title']}", ""]
            lines.append("| " + " | ".join(_md_escape(c["label"]) for c in table["columns"]) + " |")
            lines.append("|" + "|".join("---:" if c["kind"] not in ("text", "link", "match") else "---"
                                        for c in table["columns"]) + "|")
            for row in _rows(table):
                texts = [f"[{_md_escape(c['text'])}]({c['url']})" if c["url"] else _md_escape(c["text"]) for c in row]
                lines.append("| " + " | ".join(texts) + " |")
            lines.append("")
        for fig in section["figures"]:
            lines += [f"![{fig['title']}]({fig['png']})", "", f"*{fig['caption']}* ([SVG]({fig['svg']}))", ""]
        if section["notes"]:
            lines += ["Notes (what could not be measured, or not cleanly):", ""]
            lines += [f"- {_md_escape(n)}" for n in section["notes"]] + [""]
    lines += ["---", "", f"Every number above is in `data.json` ({html.escape(report['generated'])})."]
    return "\n".join(lines) + "\n"
