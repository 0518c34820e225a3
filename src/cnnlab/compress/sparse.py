"""The relative-index sparse format of Deep Compression (Han, Mao & Dally, ICLR 2016, §2,
Figure 2; https://arxiv.org/abs/1510.00149). The pruning itself is ``cnnlab.compress.prune``
(``magnitude_mask`` and ``pruned_count`` are importable from here too).

* ``to_relative`` / ``from_relative``: a flattened layer (row-major, PyTorch's order) becomes a
  list of entries ``(index, code)``. ``index`` is the gap to the previous entry minus one, in
  ``index_bits`` bits, so gaps 1 .. 2**index_bits are representable; the gap of the first entry
  is counted from position -1. A longer gap gets filler entries of code 0 (the weight zero)
  every 2**index_bits positions -- Figure 2: "in case when the difference exceeds 8, the largest
  3-bit (as an example) unsigned number, we add a filler zero".

Figure 2 counts its first difference from position 0 (its entry at index 1 stores 1), which
leaves no code for a nonzero at position 0; counting from -1 and storing gap - 1 is what the
authors' released decoder does (``ind = np.cumsum(ind + 1) - 1`` in
github.com/songhan/Deep-Compression-AlexNet ``decode.py``). Fillers fall on the same positions as
in the figure (index 12 for a gap from 4 to 15 with 3-bit indices).
"""

from __future__ import annotations

import numpy as np

from cnnlab.compress.prune import magnitude_mask, pruned_count

__all__ = ["from_relative", "magnitude_mask", "pruned_count", "to_relative"]


def to_relative(codes: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The relative-index entries of a flattened layer of codebook indices (0 = pruned):
    ``(index, code)`` arrays of equal length, fillers included (Figure 2)."""
    codes = np.asarray(codes).reshape(-1)
    span = 1 << index_bits  # largest representable gap
    positions = np.flatnonzero(codes)
    gaps = np.diff(positions, prepend=-1)
    fillers = (gaps - 1) // span  # filler entries in front of each nonzero
    slot = np.arange(len(positions)) + np.cumsum(fillers)  # each nonzero's entry number
    total = len(positions) + int(fillers.sum())
    index = np.full(total, span - 1, dtype=np.int64)  # a filler advances by the largest gap
    code = np.zeros(total, dtype=np.int64)
    index[slot] = (gaps - 1) % span
    code[slot] = codes[positions]
    return index, code


def from_relative(index: np.ndarray, code: np.ndarray, numel: int) -> np.ndarray:
    """The flattened layer of codebook indices the entries describe (zeros elsewhere). Raises
    ValueError when the entries run past ``numel`` positions."""
    positions = np.cumsum(np.asarray(index, dtype=np.int64) + 1) - 1
    if len(positions) and positions[-1] >= numel:
        raise ValueError(f"the sparse indices reach position {int(positions[-1])} of a layer of {numel} weights")
    out = np.zeros(numel, dtype=np.int64)
    out[positions] = code
    return out
