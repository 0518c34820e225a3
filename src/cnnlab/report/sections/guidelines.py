"""ShuffleNet V2's four guidelines (Ma et al. 2018, Tables 1-4) measured here beside the paper's
numbers: ``cnnlab guidelines`` (``cnnlab.bench.guidelines``, docs/guidelines.md), its first column
per table with ``--quick``, cached per machine."""

from __future__ import annotations

from typing import Any

from cnnlab.report.context import Column, Context, Section, Table

__all__ = ["collect"]


def _run(device: str, quick: bool) -> dict[str, Any]:
    from cnnlab.bench.guidelines import DEFAULT_MIN_TIME as FULL_MIN_TIME
    from cnnlab.bench.guidelines import QUICK_MIN_TIME, run_guidelines

    results = run_guidelines(device=device, columns=1 if quick else None,
                             min_time=QUICK_MIN_TIME if quick else FULL_MIN_TIME)
    return {name: result.to_dict() for name, result in results.items()}


def _rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (setting, column): ours and the paper's speed, each relative to the first row."""
    rows = []
    first = table["rows"][0]
    for col in table["columns"]:
        for r in table["rows"]:
            paper, paper0 = r["paper"].get(col), first["paper"].get(col)
            rows.append({"setting": r["setting"], "column": col, "mflops": r["flops"][col] / 1e6,
                         "ours": r["ours"][col], "ours_rel": r["ours"][col] / first["ours"][col],
                         "paper": paper, "paper_rel": paper / paper0 if paper and paper0 else None})
    return rows


def collect(ctx: Context) -> Section:
    from cnnlab.bench.plots import guideline_figure

    ctx.say("guidelines: ShuffleNet V2's four experiments" + (" (first column each)" if ctx.quick else ""))
    tables = ctx.cache.get("guidelines", {"device": ctx.device, "quick": ctx.quick},
                           lambda: _run(ctx.device, ctx.quick), machine=True)
    section = Section(
        "guidelines", "What FLOPs hide: ShuffleNet V2's guidelines on this machine",
        intro=("Ma et al. (2018) timed networks of equal FLOPs that run at different speeds and drew four "
               "guidelines: G1 equal channel widths minimise memory access; G2 group convolutions cost memory "
               "access; G3 fragmentation reduces parallelism; G4 element-wise operations are not negligible. "
               "The same constructions (FLOPs checked equal by the analyzer) are timed here; each speed is "
               "shown relative to its table's first row, beside the paper's."),
        data={"tables": tables},
    )
    held = []
    for name, table in tables.items():
        unit = table["unit"]
        section.tables.append(Table(f"guideline-{name}", f"{name}: {table['title']} — "
                                    f"{'holds' if table['holds'] else 'does not hold'} here", [
            Column("setting", "setting"), Column("column", "size"), Column("mflops", "MFLOPs", "float"),
            Column("ours", f"ours ({unit})", "float"), Column("ours_rel", "ours, relative", "float"),
            Column("paper", f"paper ({table['paper_device'].upper()})", "float"),
            Column("paper_rel", "paper, relative", "float"),
        ], _rows(table), sortable=False))
        section.figures.append(ctx.figure(
            guideline_figure(name, table), f"guideline_{name}", f"{name}: {table['title']}",
            f"{name}'s networks, speed relative to the first row, ours beside the paper's "
            f"({'holds' if table['holds'] else 'does not hold'} on this machine)."))
        held.append(f"{name} {'holds' if table['holds'] else 'not'}")
    section.summary = "guidelines: " + ", ".join(held)
    return section
