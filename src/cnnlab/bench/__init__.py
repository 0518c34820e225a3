"""Measure what FLOPs hide: ``bench`` verifies each runtime against fp32 eager and times it.

    >>> from cnnlab.bench import bench
    >>> result = bench(["resnet18"], input=(3, 64, 64), runtimes=["eager", "onnxruntime"], repeat=5)
    >>> result.to_dict()["results"][0]["median_ms"]  # doctest: +SKIP

``timer`` is the timing loop, ``runtimes`` the adapters (one class each), ``verify`` the
output check, ``run`` the ``bench`` call and its JSON (documented there); ``ceilings`` and
``roofline`` are ``cnnlab roofline`` (docs/roofline.md).
"""

from cnnlab.bench.ceilings import machine_ceilings, theoretical_peak
from cnnlab.bench.run import RESULT_KEYS, BenchResult, Result, bench, load_warning, machine_info
from cnnlab.bench.roofline import RooflineReport, RooflineResult, model_roofline, roofline_report
from cnnlab.bench.runtimes import DTYPES, RUNTIMES, Runtime, get_runtime
from cnnlab.bench.timer import Timing, time_callable

__all__ = [
    "DTYPES", "RESULT_KEYS", "RUNTIMES", "BenchResult", "Result", "Runtime", "Timing", "bench", "get_runtime",
    "load_warning", "machine_info", "time_callable",
    "RooflineReport", "RooflineResult", "machine_ceilings", "model_roofline", "roofline_report", "theoretical_peak",
]
