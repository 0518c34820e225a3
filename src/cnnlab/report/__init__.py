"""``cnnlab report``: the course's tables and plots reproduced on this machine, as one
self-contained web page (``index.html``), its Markdown (``README.md``), every number
(``data.json``) and each figure as PNG and SVG.

    >>> from cnnlab.report import build_report
    >>> result = build_report("report", quick=True)   # doctest: +SKIP

``build`` runs the sections (``cnnlab.report.sections``, one module each) and writes the files;
``render`` turns data.json into the page and the Markdown; ``cache`` keeps each measurement so a
second run only redoes what changed.
"""

from cnnlab.report.build import QUICK_MODELS, SCHEMA, ReportResult, build_report, select_models

__all__ = ["QUICK_MODELS", "SCHEMA", "ReportResult", "build_report", "select_models"]
