"""Huffman coding of Deep Compression's two streams per layer -- the quantized weights (codebook
indices) and the relative sparse indices -- Han, Mao & Dally, "Deep Compression", ICLR 2016, §4
(https://arxiv.org/abs/1510.00149): "A Huffman code is an optimal prefix code ... More common
symbols are represented with fewer bits"; Figure 5 shows both distributions are biased.

Everything is vectorised with numpy so that AlexNet's 6.7M surviving weights code in a second:

* ``code_lengths``: optimal (Huffman) code lengths from symbol counts, <= 256 symbols.
* ``canonical_codes``: the canonical code of those lengths, so a stream stores only one length
  byte per symbol of the alphabet, never a tree.
* ``pack_bits`` / ``unpack_fixed``: variable- or fixed-width codes packed MSB first.
* ``encode`` / ``decode``: a Huffman stream cut in lanes of ``LANE`` symbols whose bit lengths are
  stored (``uint16`` each, ~0.02 bits per symbol), so decoding runs all lanes at once: ``LANE``
  numpy steps per stream instead of one Python step per symbol.

Lengths never exceed ``MAX_LENGTH`` bits: a Huffman code of depth d needs a total count of at least
Fibonacci(d + 2), so fewer than 2**32 symbols (the format's count field) give depths <= 45.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LANE", "MAX_LENGTH", "HuffmanError", "HuffmanStream", "canonical_codes", "code_lengths", "decode", "encode",
    "pack_bits", "unpack_fixed",
]

LANE = 1024  # symbols per lane; a lane's bit length (<= LANE * MAX_LENGTH) fits in a uint16
MAX_LENGTH = 57  # bits a 64-bit window still holds after a byte-internal shift of up to 7


class HuffmanError(ValueError):
    """A stream or code table that cannot be decoded (a corrupt file)."""


@dataclass(frozen=True)
class HuffmanStream:
    """One Huffman-coded stream: the code length of each symbol of the alphabet (0 = absent),
    the bit length of every lane but the last, the packed bits and how many of them are used."""

    lengths: np.ndarray  # (alphabet,) uint8
    lane_bits: np.ndarray  # (lanes - 1,) uint16
    data: bytes
    nbits: int


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code lengths (in bits) of each symbol from its count: absent symbols get 0, a lone
    symbol gets 1 bit (a code must spend at least one bit per symbol). Ties are broken by symbol
    order, so the result is deterministic."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(len(counts), dtype=np.uint8)
    present = [int(s) for s in np.flatnonzero(counts)]
    if len(present) == 1:
        lengths[present[0]] = 1
    if len(present) <= 1:
        return lengths
    heap = [(int(counts[s]), i, [s]) for i, s in enumerate(present)]
    heapq.heapify(heap)
    order = len(heap)
    while len(heap) > 1:
        w1, _, s1 = heapq.heappop(heap)
        w2, _, s2 = heapq.heappop(heap)
        members = s1 + s2
        lengths[members] += 1  # every symbol under the merged node goes one level deeper
        heapq.heappush(heap, (w1 + w2, order, members))
        order += 1
    if int(lengths.max()) > MAX_LENGTH:  # impossible below 2**32 symbols; see the module docstring
        raise HuffmanError(f"a Huffman code of {int(lengths.max())} bits exceeds {MAX_LENGTH}")
    return lengths


def _canonical_order(lengths: np.ndarray) -> np.ndarray:
    """The symbols that have a code, by (length, symbol): the canonical code's order."""
    present = np.flatnonzero(lengths)
    return present[np.lexsort((present, lengths[present]))]


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical prefix code of ``lengths``: symbols sorted by (length, symbol) get
    consecutive codes, left-shifted whenever the length grows. ``uint64`` per symbol."""
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(len(lengths), dtype=np.uint64)
    code, previous = 0, 0
    for symbol in _canonical_order(lengths):
        length = int(lengths[symbol])
        code <<= length - previous
        codes[symbol] = code
        code += 1
        previous = length
    return codes


def pack_bits(values: np.ndarray, widths: np.ndarray) -> tuple[bytes, int]:
    """Concatenate ``values[i]`` written in ``widths[i]`` bits (1..57), MSB first, into bytes
    (the last byte padded with zeros). Returns the bytes and the number of bits used."""
    widths = np.asarray(widths, dtype=np.int64)
    values = np.asarray(values, dtype=np.uint64)
    if len(values) == 0:
        return b"", 0
    ends = np.cumsum(widths)
    starts = ends - widths
    total = int(ends[-1])
    word = starts >> 6
    room = 64 - (starts & 63)  # bits left in the 64-bit word where the code starts
    fits = widths <= room
    left = np.clip(room - widths, 0, 63).astype(np.uint64)
    right = np.clip(widths - room, 0, 63).astype(np.uint64)
    head = np.where(fits, values << left, values >> right)  # the part in the first word
    words = np.zeros((total + 63) // 64 + 1, dtype=np.uint64)
    first = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])  # codes never overlap: OR = sum
    words[word[first]] = np.bitwise_or.reduceat(head, first)
    spill = ~fits  # only the last code of a word runs into the next one
    if spill.any():
        tail = values[spill] << (64 - (widths[spill] - room[spill])).astype(np.uint64)
        words[word[spill] + 1] |= tail
    return words.astype(">u8").tobytes()[: (total + 7) // 8], total


def unpack_fixed(data: bytes, width: int, count: int) -> np.ndarray:
    """The ``count`` values of ``width`` bits each that ``pack_bits`` wrote (int64)."""
    need = (count * width + 7) // 8
    if len(data) < need:
        raise HuffmanError(f"stream of {len(data)} bytes, {need} needed")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=need), count=count * width)
    weights = (1 << np.arange(width - 1, -1, -1)).astype(np.int64)
    return bits.reshape(count, width).astype(np.int64) @ weights


def encode(symbols: np.ndarray, alphabet: int) -> HuffmanStream:
    """Huffman-code ``symbols`` (ints in ``[0, alphabet)``) with the optimal code of their own
    counts (``np.bincount``)."""
    symbols = np.asarray(symbols, dtype=np.int64)
    lengths = code_lengths(np.bincount(symbols, minlength=alphabet))
    codes = canonical_codes(lengths)
    widths = lengths.astype(np.int64)[symbols]
    data, nbits = pack_bits(codes[symbols], widths)
    lanes = -(-len(symbols) // LANE)
    ends = np.cumsum(widths)
    cuts = ends[np.arange(1, lanes) * LANE - 1] if lanes > 1 else np.zeros(0, dtype=np.int64)
    lane_bits = np.diff(np.r_[0, cuts]).astype(np.uint16)
    return HuffmanStream(lengths, lane_bits, data, nbits)


def _tables(lengths: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Canonical decoding tables: max length L; per length l = 1..L the L-bit limit below which a
    window's code has length <= l, the first code of that length, the index in the canonical
    order of its first symbol; and the canonical order."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.max(initial=0) > MAX_LENGTH:
        raise HuffmanError(f"code length {int(lengths.max())} > {MAX_LENGTH}")
    kraft = sum(2.0 ** -int(n) for n in lengths if n)
    if kraft > 1.0:
        raise HuffmanError("the code lengths do not form a prefix code")
    order = _canonical_order(lengths)
    top = int(lengths.max(initial=0))
    count = np.bincount(lengths[order], minlength=top + 1)
    limit = np.zeros(top, dtype=np.uint64)
    first = np.zeros(top + 1, dtype=np.int64)
    base = np.zeros(top + 1, dtype=np.int64)
    code, index = 0, 0
    for length in range(1, top + 1):
        first[length], base[length] = code, index
        code += int(count[length])
        index += int(count[length])
        limit[length - 1] = code << (top - length)
        code <<= 1
    return top, limit, first, base, order


def decode(stream: HuffmanStream, count: int) -> np.ndarray:
    """The ``count`` symbols of ``stream`` (int64), all lanes decoded together. Raises
    HuffmanError when the bits do not decode to exactly the stored lane lengths."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    lanes = -(-count // LANE)
    if len(stream.lane_bits) != lanes - 1:
        raise HuffmanError(f"{len(stream.lane_bits)} lane lengths for {lanes} lanes")
    top, limit, first, base, order = _tables(stream.lengths)
    if top == 0:
        raise HuffmanError("an empty code table for a non-empty stream")
    starts = np.r_[0, np.cumsum(stream.lane_bits, dtype=np.int64)]
    available = len(stream.data) * 8
    if starts[-1] > available:
        raise HuffmanError("lane offsets past the end of the stream")
    padded = np.frombuffer(stream.data + bytes(8), dtype=np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 8)  # 8 bytes from every byte
    windows = np.ascontiguousarray(windows).view(">u8").ravel().astype(np.uint64)
    out = np.empty(count, dtype=np.int64)
    pos = starts.copy()
    last = count - (lanes - 1) * LANE  # symbols in the last lane
    offsets = np.arange(lanes, dtype=np.int64) * LANE
    drop = np.uint64(64 - top)
    for step in range(min(LANE, count)):
        m = lanes if step < last else lanes - 1
        p = pos[:m]
        byte = np.minimum(p >> 3, len(windows) - 1)
        x = (windows[byte] << (p & 7).astype(np.uint64)) >> drop
        length = np.searchsorted(limit, x, side="right") + 1
        if length.max() > top:
            raise HuffmanError("bits that match no code")
        out[offsets[:m] + step] = order[base[length] + (x >> (top - length).astype(np.uint64)).astype(np.int64)
                                        - first[length]]
        pos[:m] += length
    if not np.array_equal(pos[:-1], starts[1:]) or not available - 8 < pos[-1] <= available:
        raise HuffmanError("the decoded lengths do not match the stored lane offsets")
    return out
