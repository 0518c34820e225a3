"""The analyzer's result and its renderings (dict/JSON, CSV, Markdown, terminal table).

JSON and CSV carry exact integers; the tables show counts with SI prefixes (``human_count``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from cnnlab.textable import human_count  # defined there so the CLI can format counts without torch

__all__ = ["Analysis", "LAYER_FIELDS", "TOTAL_FIELDS", "human_count"]

TOTAL_FIELDS = (
    "params", "trainable_params", "buffers", "macs", "flops", "mem_access", "mem_access_bytes",
    "activations", "peak_activation_bytes", "receptive_field", "jump", "model_size_bytes",
)
LAYER_FIELDS = (
    "name", "type", "input_shape", "output_shape", "params", "macs", "flops", "mem_access",
    "activations", "receptive_field", "jump", "calls",
)
_SUMMED = ("params", "macs", "flops", "mem_access", "activations")
MODEL_ROW = "(model)"  # how the tables name the root module's row
TOTAL_ROW = "(total)"  # the name of CSV's last row, which holds the totals


def _cell(value: Any) -> str:
    """A table cell for anything that is not a count: shapes as 1x3x224x224, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return "x".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "x".join(map(str, value))
    return "" if value is None else value


@dataclass
class Analysis:
    """What ``cnnlab.analyze`` found. ``to_dict()`` is the stable JSON schema."""

    model: str
    input_shape: list[int]
    complete: bool
    total: dict[str, Any]
    layers: list[dict[str, Any]]
    by_type: dict[str, dict[str, int]]
    uncounted_ops: list[dict[str, Any]] = field(default_factory=list)
    module_types: dict[str, str] = field(default_factory=dict, repr=False)  # name -> class, for at_depth
    input_shapes: list[list[int]] = field(default_factory=list)  # every tensor input's shape
    # Every module that ran or owns parameters (containers with no cost of their own included),
    # own costs only, in the order of their first call: what at_depth aggregates.
    module_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.input_shapes and self.input_shape:
            self.input_shapes = [list(self.input_shape)]

    # -- convenience -------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        total = self.__dict__.get("total", {})
        if name in total:
            return total[name]
        raise AttributeError(name)

    @property
    def model_size_mb(self) -> float:
        return self.total["model_size_bytes"] / 1e6

    @property
    def model_size_mib(self) -> float:
        return self.total["model_size_bytes"] / 2**20

    @property
    def warning(self) -> str | None:
        """One line saying what the totals miss, None when the analysis is complete: "INCOMPLETE:
        no counting rule for grid_sampler_2d x1 (first in module 'stn'); totals exclude them"."""
        if self.complete:
            return None
        ops = ", ".join(
            f"{u['op']} x{u['count']} (first in module '{u['module'] or MODEL_ROW}')" for u in self.uncounted_ops
        )
        line = f"INCOMPLETE: no counting rule for {ops}; totals exclude them"
        if self.total.get("receptive_field") is None and len(self.input_shape) >= 3:
            line += "; receptive field unknown"
        return line

    def at_depth(self, depth: int) -> "Analysis":
        """The per-module table down to module depth ``depth`` (the model itself is depth 0).

        Each row is a module at depth <= ``depth`` and carries its whole subtree's params,
        MACs, FLOPs, memory access and activations (so rows nest: they do not add up to the
        total); its shapes, receptive field and calls are the module's own. The model's row
        equals the totals, receptive field included. Always aggregated from the full per-layer
        table, also when called on a result of ``at_depth``.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
        info = {r["name"]: r for r in self.module_rows or self.layers}
        # Own costs per module: module_rows (self.layers when built without them).
        leaves = [r for r in self.module_rows if any(r[k] for k in _SUMMED)] or self.layers
        rows: dict[str, dict[str, Any]] = {}
        for row in leaves:
            parts = row["name"].split(".") if row["name"] else []
            for k in range(min(len(parts), depth) + 1):
                prefix = ".".join(parts[:k])
                agg = rows.get(prefix)
                if agg is None:
                    agg = rows[prefix] = self._subtree_row(prefix, info.get(prefix))
                for key in _SUMMED:
                    agg[key] += row[key]
        if "" in rows:
            rows[""].update(receptive_field=self.total["receptive_field"], jump=self.total["jump"])
        return Analysis(
            self.model, self.input_shape, self.complete, self.total, list(rows.values()), self.by_type,
            self.uncounted_ops, self.module_types, self.input_shapes, self.module_rows,
        )

    def _subtree_row(self, name: str, own: dict[str, Any] | None) -> dict[str, Any]:
        row = {k: 0 for k in _SUMMED}
        row.update(
            name=name,
            type=own["type"] if own else self.module_types.get(name, ""),
            input_shape=own["input_shape"] if own else None,
            output_shape=own["output_shape"] if own else None,
            receptive_field=own["receptive_field"] if own else None,
            jump=own["jump"] if own else None,
            calls=own["calls"] if own else 0,
        )
        return {k: row[k] for k in LAYER_FIELDS}

    # -- renderings --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "input_shapes": [list(s) for s in self.input_shapes],
            "complete": self.complete,
            "total": {k: self.total[k] for k in TOTAL_FIELDS},
            "layers": [{k: row[k] for k in LAYER_FIELDS} for row in self.layers],
            "by_type": {k: dict(v) for k, v in self.by_type.items()},
            "uncounted_ops": [dict(u) for u in self.uncounted_ops],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        """One row per layer, then a ``(total)`` row with the totals; every row has the
        analysis' ``complete`` flag (``true``/``false``). Shapes are written 1x3x224x224."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow((*LAYER_FIELDS, "complete"))
        for row in self.layers:
            writer.writerow([_csv_cell(row[k]) for k in LAYER_FIELDS] + [_csv_cell(self.complete)])
        total = {k: self.total.get(k) for k in LAYER_FIELDS}
        total.update(name=TOTAL_ROW, type="", input_shape=list(self.input_shape), calls=None)
        writer.writerow([_csv_cell(total[k]) for k in LAYER_FIELDS] + [_csv_cell(self.complete)])
        return buffer.getvalue()

    def _table_rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["layer", "type", "output", "params", "MACs", "FLOPs", "mem access", "RF", "jump"]
        rows = []
        for row in self.layers:
            name = row["name"] or MODEL_ROW
            if (row["calls"] or 0) > 1:
                name += f" (x{row['calls']})"
            rows.append([
                name, row["type"], _cell(row["output_shape"]), human_count(row["params"]),
                human_count(row["macs"]), human_count(row["flops"]), human_count(row["mem_access"]),
                _cell(row["receptive_field"]), _cell(row["jump"]),
            ])
        t = self.total
        rows.append(["total", "", "", human_count(t["params"]), human_count(t["macs"]), human_count(t["flops"]),
                     human_count(t["mem_access"]), _cell(t["receptive_field"]), _cell(t["jump"])])
        return header, rows

    def _summary_lines(self) -> list[str]:
        t = self.total
        shapes = ", ".join("x".join(map(str, s)) for s in self.input_shapes) or "no tensor"
        lines = [
            f"{self.model} on input{'s' if len(self.input_shapes) > 1 else ''} {shapes}",
            f"params {t['params']:,} ({t['trainable_params']:,} trainable), buffers {t['buffers']:,}, "
            f"size {self.model_size_mb:.2f} MB ({self.model_size_mib:.2f} MiB)",
            f"MACs {t['macs']:,} ({human_count(t['macs'])})  FLOPs {t['flops']:,} ({human_count(t['flops'])})  "
            f"memory access {t['mem_access']:,} elements ({t['mem_access_bytes']:,} bytes)",
            f"activations {t['activations']:,} elements, peak {t['peak_activation_bytes']:,} bytes",
        ]
        if any((row["calls"] or 0) > 1 for row in self.layers):
            lines.append("(xN): a module called N times; its costs are for all calls, its shapes and field its first call's")
        if self.warning:
            lines.append(self.warning)
        return lines

    def to_markdown(self) -> str:
        header, rows = self._table_rows()
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(["\n".join(f"- {line}" for line in self._summary_lines()), "", *out])

    def to_rich(self) -> "rich.table.Table":  # noqa: F821
        """The per-layer table as a ``rich`` Table (colours and box drawing on a terminal)."""
        from rich.table import Table

        header, rows = self._table_rows()
        table = Table(title=self._summary_lines()[0], caption="\n".join(self._summary_lines()[1:]))
        for i, name in enumerate(header):
            table.add_column(name, justify="right" if i >= 3 else "left", no_wrap=True)
        for i, row in enumerate(rows):
            table.add_row(*row, end_section=i == len(rows) - 2, style="bold" if i == len(rows) - 1 else None)
        return table

    def to_table(self) -> str:
        from cnnlab.textable import render_table

        header, rows = self._table_rows()
        table = render_table(header, rows, numeric=set(range(3, 9)))
        return table + "\n\n" + "\n".join(self._summary_lines())

    def __str__(self) -> str:
        return self.to_table()
