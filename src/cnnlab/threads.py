"""One way to run a block of work with torch's thread count set: benchmarking, the roofline,
the machine's ceilings, training, pruning's retraining and quantization all go through it, so a
thread count given on any command line is set, reported and restored alike."""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """``torch.set_num_threads(threads)`` for the block, restored after; None (or 0) leaves
    torch's. Yields the count in force."""
    import torch  # here, not at the top: ``cnnlab --help`` must not pay for importing torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
