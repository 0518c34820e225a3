"""The file of Deep Compression (Han, Mao & Dally, ICLR 2016, https://arxiv.org/abs/1510.00149):
sparse storage with relative indices (§2, Figure 2; ``cnnlab.compress.sparse``) and Huffman
coding (§4; ``cnnlab.compress.huffman``) of each shared layer, its fp32 codebook beside it, every
other tensor raw; the sizes of Table 4 (``LayerStats``); and reading it all back.

Never pickle; little-endian::

    magic b"CNNLABDC" | version u16 | flags u16 (1: Huffman) | meta length u32 | meta (JSON)
    | tensor count u32 | tensors | CRC-32 u32 of everything before
    tensor: name length u16 | name | kind u8 (0 raw, 1 shared) | ndim u8 | dims u32 x ndim
      raw:    dtype u8 | the tensor's bytes
      shared: weight bits u8 | index bits u8 | entries u32 | codebook f32 x 2**weight bits
              | index stream | code stream
      stream without Huffman: entries values of fixed width, MSB first
      stream with Huffman:    code length u8 x alphabet | lane bit lengths u16 x (lanes - 1)
                              | byte count u32 | bits
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from cnnlab.compress import huffman
from cnnlab.compress.prune import CompressError
from cnnlab.compress.sharing import SharedLayer
from cnnlab.compress.sparse import from_relative, to_relative

__all__ = [
    "FORMAT", "MAGIC", "VERSION", "Archive", "CompressedFileError", "LayerStats", "read_compressed", "write",
]

MAGIC = b"CNNLABDC"
VERSION = 1
FORMAT = "cnnlab-deep-compression"
_FLAG_HUFFMAN = 1
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool)


class CompressedFileError(Exception):
    """A compressed file that cannot be read (missing, truncated, corrupt, another format)."""


# -- sizes and encoding (§2, §4) --------------------------------------------------------------
@dataclass
class LayerStats:
    """One layer's numbers in the layout of Table 4."""

    name: str
    kind: str
    weights: int
    nonzero: int
    entries: int  # stored entries: nonzeros and filler zeros
    weight_bits: int
    index_bits: int
    weight_stream_bits_pqh: int  # Huffman-coded bits of the codes
    index_stream_bits_pqh: int
    bytes_pq: int  # codebook + fixed-width streams
    bytes_pqh: int  # codebook + Huffman tables, lane lengths and streams
    element_size: int = 4
    paper_name: str | None = None

    @property
    def density(self) -> float:
        return self.nonzero / self.weights if self.weights else 0.0

    @property
    def weight_bits_pqh(self) -> float:
        """Average bits per stored weight after Huffman coding (Table 4's "Weight bits (P+Q+H)")."""
        return self.weight_stream_bits_pqh / self.entries if self.entries else 0.0

    @property
    def index_bits_pqh(self) -> float:
        return self.index_stream_bits_pqh / self.entries if self.entries else 0.0

    @property
    def rate_pq(self) -> float:
        """Compressed size over the fp32 size of the layer's weights (Table 4's "Compress rate")."""
        return self.bytes_pq / (self.weights * self.element_size)

    @property
    def rate_pqh(self) -> float:
        return self.bytes_pqh / (self.weights * self.element_size)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "paper_name": self.paper_name, "kind": self.kind, "weights": self.weights,
                "nonzero": self.nonzero, "entries": self.entries, "density": self.density,
                "weight_bits": self.weight_bits, "index_bits": self.index_bits,
                "weight_bits_huffman": self.weight_bits_pqh, "index_bits_huffman": self.index_bits_pqh,
                "bytes_pq": self.bytes_pq, "bytes_pqh": self.bytes_pqh, "rate_pq": self.rate_pq,
                "rate_pqh": self.rate_pqh}


@dataclass
class _Encoded:
    header: bytes
    pq: bytes
    pqh: bytes
    stats: LayerStats


def _name_and_shape(name: str, kind: int, shape: Sequence[int]) -> bytes:
    raw = name.encode("utf-8")
    return (struct.pack("<H", len(raw)) + raw + struct.pack("<BB", kind, len(shape))
            + struct.pack(f"<{len(shape)}I", *shape))


def _huffman_bytes(stream: huffman.HuffmanStream) -> bytes:
    return (stream.lengths.astype(np.uint8).tobytes() + stream.lane_bits.astype("<u2").tobytes()
            + struct.pack("<I", len(stream.data)) + stream.data)


def _encode_layer(layer: SharedLayer) -> _Encoded:
    spec = layer.spec
    index, code = to_relative(layer.codes, spec.index_bits)
    entries = len(index)
    codebook = layer.codebook.astype("<f4").tobytes()
    fixed = [huffman.pack_bits(values, np.full(entries, bits))[0]
             for values, bits in ((index, spec.index_bits), (code, spec.weight_bits))]
    index_h = huffman.encode(index, 1 << spec.index_bits)
    code_h = huffman.encode(code, 1 << spec.weight_bits)
    pq = codebook + fixed[0] + fixed[1]
    pqh = codebook + _huffman_bytes(index_h) + _huffman_bytes(code_h)
    header = _name_and_shape(spec.key, 1, layer.shape) + struct.pack("<BBI", spec.weight_bits, spec.index_bits, entries)
    stats = LayerStats(spec.name, spec.kind, int(layer.codes.size), int(np.count_nonzero(layer.codes)), entries,
                       spec.weight_bits, spec.index_bits, code_h.nbits, index_h.nbits, len(pq), len(pqh))
    return _Encoded(header, pq, pqh, stats)


def _encode_raw(key: str, tensor: torch.Tensor) -> bytes:
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype not in _DTYPES:
        raise CompressError(f"{key}: cannot store a tensor of {tensor.dtype}")
    data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    return _name_and_shape(key, 0, tuple(tensor.shape)) + struct.pack("<B", _DTYPES.index(tensor.dtype)) + data


def _assemble(meta: dict[str, Any], raws: Sequence[bytes], encoded: Sequence[_Encoded], use_huffman: bool) -> bytes:
    text = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode("utf-8")
    parts = [MAGIC, struct.pack("<HHI", VERSION, _FLAG_HUFFMAN if use_huffman else 0, len(text)), text,
             struct.pack("<I", len(raws) + len(encoded))]
    parts += raws
    for e in encoded:
        parts += [e.header, e.pqh if use_huffman else e.pq]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def write(model: nn.Module, layers: Sequence[SharedLayer], meta: dict[str, Any], *,
          progress: Callable[[str], None] | None = None) -> tuple[dict[str, bytes], list[LayerStats]]:
    """The compressed file of ``model`` whose ``layers`` are shared, with and without Huffman
    coding (``{"pq": ..., "pqh": ...}``), and each layer's statistics. Every other state-dict
    tensor is stored raw. ``meta`` (JSON) says how to rebuild the model."""
    shared = {layer.spec.key for layer in layers}
    raws = [_encode_raw(key, t) for key, t in model.state_dict().items() if key not in shared]
    encoded = []
    for layer in layers:
        if progress:
            progress(f"coding {layer.spec.name}")
        encoded.append(_encode_layer(layer))
    files = {kind: _assemble(meta, raws, encoded, kind == "pqh") for kind in ("pq", "pqh")}
    return files, [e.stats for e in encoded]


# -- reading ----------------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes, label: str) -> None:
        self.data, self.pos, self.label = data, 0, label

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CompressedFileError(f"{self.label}: truncated (needs {self.pos + n} bytes, has {len(self.data)})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


@dataclass
class Archive:
    """A compressed file read back: its metadata and the full state dict (shared weights
    decoded)."""

    meta: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    shared: list[str] = field(default_factory=list)  # keys of the deep-compressed weights


def _read_stream(reader: _Reader, entries: int, bits: int, use_huffman: bool) -> np.ndarray:
    if not use_huffman:
        return huffman.unpack_fixed(reader.take((entries * bits + 7) // 8), bits, entries)
    lengths = np.frombuffer(reader.take(1 << bits), dtype=np.uint8)
    lanes = -(-entries // huffman.LANE)
    lane_bits = np.frombuffer(reader.take(2 * max(lanes - 1, 0)), dtype="<u2")
    (nbytes,) = reader.unpack("<I")
    stream = huffman.HuffmanStream(lengths, lane_bits, reader.take(nbytes), nbytes * 8)
    return huffman.decode(stream, entries)


def _read_tensor(reader: _Reader, use_huffman: bool) -> tuple[str, torch.Tensor, bool]:
    (size,) = reader.unpack("<H")
    key = reader.take(size).decode("utf-8")
    kind, ndim = reader.unpack("<BB")
    shape = reader.unpack(f"<{ndim}I")
    numel = math.prod(shape)
    if kind == 0:
        (code,) = reader.unpack("<B")
        if code >= len(_DTYPES):
            raise CompressedFileError(f"{reader.label}: {key} has an unknown dtype code {code}")
        dtype = _DTYPES[code]
        raw = bytearray(reader.take(numel * torch.empty(0, dtype=dtype).element_size()))
        tensor = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return key, tensor.reshape(shape).clone(), False
    if kind != 1:
        raise CompressedFileError(f"{reader.label}: {key} has an unknown kind {kind}")
    weight_bits, index_bits, entries = reader.unpack("<BBI")
    if not (1 <= weight_bits <= 8 and 1 <= index_bits <= 8 and entries <= numel):
        raise CompressedFileError(f"{reader.label}: {key} has impossible settings")
    codebook = np.frombuffer(reader.take(4 << weight_bits), dtype="<f4").astype(np.float32)
    try:
        index = _read_stream(reader, entries, index_bits, use_huffman)
        code = _read_stream(reader, entries, weight_bits, use_huffman)
        codes = from_relative(index, code, numel)
    except ValueError as exc:  # HuffmanError included
        raise CompressedFileError(f"{reader.label}: {key}: corrupt ({exc})") from exc
    return key, torch.from_numpy(codebook[codes].reshape(shape)), True


def read_compressed(path: str | Path) -> Archive:
    """Read a file written by ``compress``: its metadata and the state dict, the shared weights
    equal bit for bit to those compressed. Raises CompressedFileError with one line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CompressedFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CompressedFileError(f"{path} is a directory, not a compressed model") from None
    except OSError as exc:
        raise CompressedFileError(f"{path}: {exc.strerror or exc}") from None
    if not data.startswith(MAGIC):
        raise CompressedFileError(f"{path}: not a cnnlab compressed model (no {MAGIC.decode()} header)")
    reader = _Reader(data, str(path))
    reader.take(len(MAGIC))
    version, flags, size = reader.unpack("<HHI")
    if version != VERSION:
        raise CompressedFileError(f"{path}: format version {version}; this cnnlab reads version {VERSION}")
    if len(data) < 4 or zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        raise CompressedFileError(f"{path}: truncated or corrupt (checksum mismatch)")
    reader.data = data[:-4]
    try:
        meta = json.loads(reader.take(size).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompressedFileError(f"{path}: corrupt metadata ({exc})") from None
    (count,) = reader.unpack("<I")
    state, shared = {}, []
    for _ in range(count):
        key, tensor, is_shared = _read_tensor(reader, bool(flags & _FLAG_HUFFMAN))
        state[key] = tensor
        if is_shared:
            shared.append(key)
    if reader.pos != len(reader.data):
        raise CompressedFileError(f"{path}: {len(reader.data) - reader.pos} unexpected bytes after the last tensor")
    return Archive(meta, state, shared)
