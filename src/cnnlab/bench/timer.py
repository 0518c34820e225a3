"""The timing loop, kept apart from the thing timed (as timm's ``benchmark.py`` does): a runtime
hands over a callable, ``time_callable`` runs it.

Warm-up calls first, then either ``repeat`` timed calls or as many as fit in ``min_time``
seconds (at least ``MIN_SAMPLES``). Each call is timed on its own: ``time.perf_counter`` on the
CPU, CUDA events with a synchronisation on a GPU. Everything runs under
``torch.inference_mode``. The result is the median and interquartile range in milliseconds, the
images per second at the median, and the peak memory: the process's resident-set high-water
mark on the CPU (it only grows, so it is the peak of everything run so far), or
``torch.cuda.max_memory_allocated`` since the timing started on a GPU.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["MIN_SAMPLES", "Timing", "peak_rss_mb", "time_callable"]

MIN_SAMPLES = 3  # a --min-time budget still takes this many samples


@dataclass(frozen=True)
class Timing:
    """What one timing gives: every sample (ms), and the summary the report reads."""

    samples_ms: tuple[float, ...]
    batch: int
    peak_memory_mb: float | None = None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def iqr_ms(self) -> float:
        """Interquartile range (Q3 - Q1, inclusive quartiles); 0 for a single sample."""
        if len(self.samples_ms) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.samples_ms, n=4, method="inclusive")
        return q3 - q1

    @property
    def images_per_s(self) -> float:
        return self.batch * 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")

    @property
    def repeats(self) -> int:
        return len(self.samples_ms)


def peak_rss_mb() -> float:
    """The process's resident-set high-water mark in MiB (VmHWM)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def time_callable(
    fn: Callable[[], Any],
    *,
    batch: int = 1,
    warmup: int = 3,
    repeat: int | None = 10,
    min_time: float | None = None,
    device: str = "cpu",
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time ``fn()`` (no arguments: bind the input first). Give ``repeat`` or ``min_time``."""
    import torch

    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if min_time is None and (repeat is None or repeat < 1):
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if min_time is not None and min_time <= 0:
        raise ValueError(f"min_time must be > 0 seconds, got {min_time}")
    cuda = str(device).startswith("cuda")
    samples: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = clock()
        while True:
            if cuda:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                fn()
                end.record()
                end.synchronize()
                samples.append(begin.elapsed_time(end))
            else:
                t0 = clock()
                fn()
                samples.append((clock() - t0) * 1000.0)
            if min_time is None:
                if len(samples) >= repeat:  # type: ignore[operator]
                    break
            elif clock() - start >= min_time and len(samples) >= MIN_SAMPLES:
                break
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()
    return Timing(tuple(samples), batch, peak)
