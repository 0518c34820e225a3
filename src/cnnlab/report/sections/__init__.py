"""The report's sections, in page order. Each is a module of this package with
``collect(ctx: Context) -> Section`` (and optionally ``wanted(ctx) -> bool``): it measures or reads
what it needs (through ``ctx.cache``), saves its figures (``ctx.figure``) and returns its tables
and figures as data. Adding a section is adding a module and its name here."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["SECTIONS", "section_module"]

SECTIONS = ("zoo", "roofline", "guidelines", "mobilenet_grid", "layers", "compression", "training")


def section_module(name: str) -> ModuleType:
    return importlib.import_module(f"cnnlab.report.sections.{name}")
