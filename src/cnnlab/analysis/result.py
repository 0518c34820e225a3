"""The analyzer's result and its renderings (dict/JSON, CSV, Markdown, terminal table)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Analysis", "LAYER_FIELDS", "TOTAL_FIELDS"]

TOTAL_FIELDS = (
    "params", "trainable_params", "buffers", "macs", "flops", "mem_access", "mem_access_bytes",
    "activations", "peak_activation_bytes", "receptive_field", "jump", "model_size_bytes",
)
LAYER_FIELDS = (
    "name", "type", "input_shape", "output_shape", "params", "macs", "flops", "mem_access",
    "activations", "receptive_field", "jump", "calls",
)
_SUMMED = ("params", "macs", "flops", "mem_access", "activations")


def _number(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(float(value), 4)


def _human(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "x".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


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

    def at_depth(self, depth: int) -> "Analysis":
        """The per-layer table aggregated to module depth ``depth`` (the root is depth 0)."""
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in self.layers:
            parts = row["name"].split(".") if row["name"] else []
            groups.setdefault(".".join(parts[:depth]), []).append(row)
        rows = []
        for name, members in groups.items():
            head = next((r for r in members if r["name"] == name), None)
            merged = {k: sum(r[k] for r in members) for k in _SUMMED}
            last = members[-1]
            merged.update(
                name=name,
                type=head["type"] if head else self.module_types.get(name, members[0]["type"]),
                input_shape=(head or members[0])["input_shape"],
                output_shape=(head or last)["output_shape"],
                receptive_field=(head or last)["receptive_field"],
                jump=(head or last)["jump"],
                calls=head["calls"] if head else max(r["calls"] for r in members),
            )
            rows.append({k: merged[k] for k in LAYER_FIELDS})
        return Analysis(
            self.model, self.input_shape, self.complete, self.total, rows, self.by_type,
            self.uncounted_ops, self.module_types,
        )

    # -- renderings --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "complete": self.complete,
            "total": {k: self.total[k] for k in TOTAL_FIELDS},
            "layers": [{k: row[k] for k in LAYER_FIELDS} for row in self.layers],
            "by_type": {k: dict(v) for k, v in self.by_type.items()},
            "uncounted_ops": [dict(u) for u in self.uncounted_ops],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(LAYER_FIELDS)
        for row in self.layers:
            writer.writerow(["x".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v) for v in (row[k] for k in LAYER_FIELDS)])
        return buffer.getvalue()

    def _table_rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["layer", "type", "output", "params", "MACs", "FLOPs", "mem access", "RF", "jump"]
        rows = [
            [row["name"] or "(model)", row["type"], _human(row["output_shape"]), _human(row["params"]),
             _human(row["macs"]), _human(row["flops"]), _human(row["mem_access"]),
             _human(row["receptive_field"]), _human(row["jump"])]
            for row in self.layers
        ]
        t = self.total
        rows.append(["total", "", "", _human(t["params"]), _human(t["macs"]), _human(t["flops"]),
                     _human(t["mem_access"]), _human(t["receptive_field"]), _human(t["jump"])])
        return header, rows

    def _summary_lines(self) -> list[str]:
        t = self.total
        lines = [
            f"{self.model} on input {'x'.join(map(str, self.input_shape))}",
            f"params {t['params']:,} ({t['trainable_params']:,} trainable), buffers {t['buffers']:,}, "
            f"size {self.model_size_mb:.2f} MB ({self.model_size_mib:.2f} MiB)",
            f"MACs {t['macs']:,}  FLOPs {t['flops']:,}  memory access {t['mem_access']:,} elements "
            f"({t['mem_access_bytes']:,} bytes)",
            f"activations {t['activations']:,} elements, peak {t['peak_activation_bytes']:,} bytes",
        ]
        if not self.complete:
            ops = ", ".join(f"{u['op']} x{u['count']}" for u in self.uncounted_ops)
            lines.append(f"INCOMPLETE: no counting rule for {ops}")
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
