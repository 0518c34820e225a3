"""Deep Compression: Han, Mao & Dally, "Deep Compression: Compressing Deep Neural Networks with
Pruning, Trained Quantization and Huffman Coding", ICLR 2016, https://arxiv.org/abs/1510.00149.

The three stages, per convolution and linear weight (biases, batch-norm parameters and buffers are
stored as they are):

1. Pruning (§2): magnitude pruning to a sparsity per layer (``cnnlab.compress.sparse``).
2. Trained quantization (§3): 1-D k-means over the surviving weights, centroids initialised
   linearly between their min and max (§3.2, Figure 8: "linear initialization works best"), then
   optionally fine-tuned with the shared gradient of eq. (3) (``finetune_centroids``).
3. Huffman coding (§4) of the codebook indices and of the relative sparse indices
   (``cnnlab.compress.huffman``), stored in one file with the codebook (fp32).

Codebook entry 0 is the weight 0: with 2**bits codes a layer has 2**bits - 1 centroids plus zero,
the value of the filler entries of Figure 2 and of every pruned position. The paper does not say
how a filler's weight is coded; the authors' released models do exactly this (their
``decode.py`` fills the layer with code 0 and ``compressed_SqueezeNet.net`` stores codebook[0] =
0.0), so a layer still has at most 2**bits distinct values.

Defaults are the paper's AlexNet settings (§5.2, Table 4): 8-bit codes for convolutions, 5-bit
for fully connected layers, 4-bit relative indices for both. §2 says "8 bits for conv layer and
5 bits for fc layer" for the indices, but Table 4 and §5.2 ("The relative sparse index is encoded
with 4 bits") use 4, as do the released files; 4 reproduces Table 4. ``conv_index_bits`` and
``fc_index_bits`` set them.

The file (``write``/``read_compressed``; never pickle), little-endian::

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
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from cnnlab.compress import huffman
from cnnlab.compress.sparse import from_relative, magnitude_mask, to_relative

__all__ = [
    "DEFAULT_BITS", "DEFAULT_INDEX_BITS", "FORMAT", "INIT_SEED", "KMEANS_ITERATIONS", "MAGIC", "VERSION",
    "Archive", "CompressError", "CompressResult", "CompressedFileError", "LayerSpec", "LayerStats", "SharedLayer",
    "compress", "compress_module", "decompress", "finetune_centroids", "kmeans_linear", "load_compressed",
    "nearest_centroid", "plan_layers", "read_compressed", "share_weights", "write",
]

MAGIC = b"CNNLABDC"
VERSION = 1
FORMAT = "cnnlab-deep-compression"
DEFAULT_BITS = {"conv": 8, "fc": 5}  # Table 4: 256 shared weights per CONV layer, 32 per FC layer
DEFAULT_INDEX_BITS = 4  # §5.2 and Table 4 (§2's 8/5 are not what the table uses)
INIT_SEED = 0  # torch.manual_seed before building a registered model without a checkpoint
KMEANS_ITERATIONS = 100  # Lloyd iterations at most; 1-D k-means converges in far fewer
_FLAG_HUFFMAN = 1
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool)


class CompressError(ValueError):
    """Bad input to compression (a sparsity, a bit width, a layer name); one line."""


class CompressedFileError(Exception):
    """A compressed file that cannot be read (missing, truncated, corrupt, another format)."""


# -- what to compress -------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpec:
    """One weight to compress: its module, state-dict key, kind (conv/fc) and settings."""

    name: str
    key: str
    kind: str  # "conv" or "fc"
    sparsity: float
    weight_bits: int
    index_bits: int


def _check_bits(label: str, bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise CompressError(f"{label} must be an integer from 1 to 8, got {bits!r}")
    return bits


def _check_sparsity(label: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise CompressError(f"{label}: sparsity must be a number in [0, 1), got {value!r}")
    return float(value)


def plan_layers(model: nn.Module, sparsity: float | Mapping[str, float] = 0.0, *,
                conv_bits: int = DEFAULT_BITS["conv"], fc_bits: int = DEFAULT_BITS["fc"],
                conv_index_bits: int = DEFAULT_INDEX_BITS, fc_index_bits: int = DEFAULT_INDEX_BITS) -> list[LayerSpec]:
    """One ``LayerSpec`` per convolution and linear weight of ``model``, in module order.
    ``sparsity`` is one fraction for every layer, or a map from module names (``features.0``, or
    its ``features.0.weight``) to fractions; layers it does not name are not pruned. A name that
    is not such a layer raises CompressError listing some that are."""
    for label, value in (("conv bits", conv_bits), ("fc bits", fc_bits), ("conv index bits", conv_index_bits),
                         ("fc index bits", fc_index_bits)):
        _check_bits(label, value)
    layers = {name: module for name, module in model.named_modules()
              if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and isinstance(module.weight, nn.Parameter)}
    if isinstance(sparsity, Mapping):
        wanted = {str(k).removesuffix(".weight"): _check_sparsity(str(k), v) for k, v in sparsity.items()}
        unknown = [k for k in wanted if k not in layers]
        if unknown:
            shown = ", ".join(list(layers)[:6]) + (", ..." if len(layers) > 6 else "")
            raise CompressError(f"no convolution or linear layer named {unknown[0]!r} in the model "
                                f"(its layers: {shown})")
    else:
        same = _check_sparsity("--prune", sparsity)
        wanted = dict.fromkeys(layers, same)
    specs = []
    for name, module in layers.items():
        kind = "fc" if isinstance(module, nn.Linear) else "conv"
        specs.append(LayerSpec(name, f"{name}.weight" if name else "weight", kind, wanted.get(name, 0.0),
                               conv_bits if kind == "conv" else fc_bits,
                               conv_index_bits if kind == "conv" else fc_index_bits))
    return specs


# -- quantization (§3) ------------------------------------------------------------------------
def kmeans_linear(values: np.ndarray, k: int, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """1-D k-means (§3.1, eq. 2: minimise the within-cluster sum of squares) of ``values`` into
    ``k`` clusters, centroids initialised linearly between min and max (§3.2). Lloyd's
    iterations on the sorted values: clusters are runs between centroid midpoints (found by
    ``searchsorted``), means come from a cumulative sum; an empty cluster keeps its centroid.
    Stops when no boundary moves. Returns the ``k`` centroids, ascending (float64)."""
    data = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if len(data) == 0:
        return np.zeros(k)
    centroids = np.linspace(data[0], data[-1], k)
    sums = np.r_[0.0, np.cumsum(data)]
    edges = None
    for _ in range(iterations):
        cut = np.searchsorted(data, (centroids[1:] + centroids[:-1]) / 2, side="left")
        if edges is not None and np.array_equal(cut, edges):
            break
        edges = cut
        lo, hi = np.r_[0, cut], np.r_[cut, len(data)]
        filled = hi > lo
        centroids = np.where(filled, (sums[hi] - sums[lo]) / np.maximum(hi - lo, 1), centroids)
    return centroids


def nearest_centroid(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The index of the nearest of the ascending ``centroids`` for each value (a value on a
    midpoint goes to the lower one)."""
    c = np.asarray(centroids, dtype=np.float64)
    return np.searchsorted((c[1:] + c[:-1]) / 2, np.asarray(values, dtype=np.float64), side="left")


def share_weights(weight: torch.Tensor, mask: torch.Tensor, bits: int,
                  iterations: int = KMEANS_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """Weight sharing of one layer (§3.1, Figure 3): the surviving nonzero weights are clustered
    into ``2**bits - 1`` centroids and each is replaced by its nearest. Returns the flat codes
    (0 = pruned, i = codebook[i]) and the fp32 codebook of ``2**bits`` entries, entry 0 = 0."""
    flat = weight.detach().to("cpu", torch.float32).reshape(-1).numpy()
    keep = mask.detach().cpu().reshape(-1).numpy() & (flat != 0)
    codebook = np.zeros(1 << bits, dtype=np.float32)
    codes = np.zeros(flat.size, dtype=np.int64)
    values = flat[keep]
    if values.size:
        centroids = kmeans_linear(values, (1 << bits) - 1, iterations).astype(np.float32)
        codebook[1:] = centroids
        codes[keep] = 1 + nearest_centroid(values, centroids)
    return codes, codebook


@dataclass
class SharedLayer:
    """A pruned, quantized layer: flat codes (0 = pruned) into a codebook whose entry 0 is 0."""

    spec: LayerSpec
    shape: tuple[int, ...]
    codes: np.ndarray  # (numel,) int64
    codebook: np.ndarray  # (2**weight_bits,) float32

    def weight(self) -> torch.Tensor:
        """The shared weight tensor: ``codebook[codes]`` in the layer's shape (fp32)."""
        return torch.from_numpy(self.codebook[self.codes].reshape(self.shape))


def compress_module(model: nn.Module, specs: Sequence[LayerSpec], *, iterations: int = KMEANS_ITERATIONS,
                    progress: Callable[[str], None] | None = None) -> list[SharedLayer]:
    """Prune and quantize every layer of ``specs`` in ``model``; the model's weights become the
    shared weights (in place). Returns the shared layers."""
    params = dict(model.named_parameters())
    layers = []
    for spec in specs:
        if progress:
            progress(f"pruning and clustering {spec.name}")
        weight = params[spec.key]
        codes, codebook = share_weights(weight, magnitude_mask(weight, spec.sparsity), spec.weight_bits, iterations)
        layer = SharedLayer(spec, tuple(weight.shape), codes, codebook)
        with torch.no_grad():
            weight.copy_(layer.weight())
        layers.append(layer)
    return layers


def finetune_centroids(model: nn.Module, layers: Sequence[SharedLayer], loader: Any, objective: Callable[..., Any], *,
                       epochs: int, lr: float = 1e-3, momentum: float = 0.9,
                       progress: Callable[[str], None] | None = None) -> list[float]:
    """Fine-tune the centroids (§3.3, eq. 3, Figure 3): the gradient of centroid k is the sum of
    the gradients of the weights coded k; SGD updates the centroids and the weights are rewritten
    from them, so every layer keeps its codes and at most 2**bits values (code 0, pruned, stays
    0). ``objective(model, images, target) -> (loss, logits)`` as ``cnnlab.train.losses``.
    Only the centroids change. Returns the mean training loss of each epoch."""
    params = dict(model.named_parameters())
    weights = [params[layer.spec.key] for layer in layers]
    codes = [torch.from_numpy(layer.codes) for layer in layers]
    centroids = [nn.Parameter(torch.from_numpy(layer.codebook[1:].copy())) for layer in layers]
    optimizer = torch.optim.SGD(centroids, lr=lr, momentum=momentum)
    trainable = {name: p.requires_grad for name, p in params.items()}
    for p in params.values():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(True)
    losses: list[float] = []
    model.train()
    try:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for images, target in loader:
                for w in weights:
                    w.grad = None
                loss, _ = objective(model, images, target)
                loss.backward()
                for w, c, idx in zip(weights, centroids, codes):
                    grad = torch.zeros(len(c) + 1, dtype=torch.float64)
                    grad.index_add_(0, idx, w.grad.reshape(-1).to(torch.float64))  # eq. (3): group by, reduce
                    c.grad = grad[1:].to(c.dtype)
                optimizer.step()
                with torch.no_grad():
                    for w, c, idx in zip(weights, centroids, codes):
                        w.copy_(torch.cat([c.new_zeros(1), c])[idx].reshape(w.shape))
                total += float(loss.detach()) * len(target)
                count += len(target)
            losses.append(total / max(count, 1))
            if progress:
                progress(f"fine-tuning centroids: epoch {epoch + 1}/{epochs}, loss {losses[-1]:.4f}")
    finally:
        for name, p in params.items():
            p.grad = None
            p.requires_grad_(trainable[name])
        model.eval()
    for layer, c in zip(layers, centroids):
        layer.codebook[1:] = c.detach().numpy()
    return losses


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


def _build(meta: dict[str, Any]) -> nn.Module:
    from cnnlab.train.engine import registered_builder

    if not meta.get("model"):
        raise CompressedFileError("the file names no registered model; pass the model to load_compressed")
    return registered_builder(meta["model"], meta.get("model_args") or {}).build(int(meta["num_classes"]))


def load_compressed(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The model of a compressed file, in eval mode: the registered model it names, built with
    its recorded arguments (or ``model``), holding the file's weights."""
    from cnnlab.train.checkpoint import CheckpointError, load_weights

    archive = read_compressed(path)
    model = _build(archive.meta) if model is None else model
    try:
        load_weights(model, archive.state_dict, str(path))
    except CheckpointError as exc:
        raise CompressedFileError(str(exc)) from exc
    return model.eval()


def decompress(path: str | Path, out: str | Path) -> Archive:
    """Write the model of a compressed file to ``out`` as a ``cnnlab train``-style checkpoint
    (``model_name``, ``model``, ``args``; and ``classes``, ``mean``, ``std``, ``input_size`` when it
    was compressed from a checkpoint, so ``cnnlab eval`` and ``predict`` take it). Returns what
    was read."""
    from cnnlab.train.checkpoint import save_checkpoint

    archive = read_compressed(path)
    meta = archive.meta
    state: dict[str, Any] = {"model_name": meta.get("model"), "model": archive.state_dict,
                             "args": {"model_args": meta.get("model_args") or {}}}
    trained = meta.get("checkpoint") or {}
    for key in ("classes", "mean", "std", "input_size"):
        if key in trained:
            state[key] = trained[key]
    if trained.get("data"):
        state["args"]["data"] = trained["data"]
    save_checkpoint(out, state)
    return archive


# -- the pipeline -----------------------------------------------------------------------------
@dataclass
class CompressResult:
    """What ``compress`` did; ``to_dict`` is ``cnnlab compress --json``."""

    model: str
    source: str
    original_bytes: int
    compressed_bytes_pq: int
    compressed_bytes_pqh: int
    huffman: bool
    layers: list[LayerStats]
    bits: dict[str, int]
    path: Path | None = None
    paper: bool = False  # the layers were pruned to the papers' published sparsities
    finetune_losses: list[float] = field(default_factory=list)
    finetune_data: str | None = None

    @property
    def compressed_bytes(self) -> int:
        """The size of the file (with Huffman coding unless it was turned off)."""
        return self.compressed_bytes_pqh if self.huffman else self.compressed_bytes_pq

    @property
    def ratio(self) -> float:
        return self.original_bytes / self.compressed_bytes

    @property
    def sparsity(self) -> float:
        """The fraction of the compressed layers' weights that are pruned."""
        weights = sum(layer.weights for layer in self.layers)
        return 1.0 - sum(layer.nonzero for layer in self.layers) / weights if weights else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = {"model": self.model, "source": self.source, "original_bytes": self.original_bytes,
               "compressed_bytes": self.compressed_bytes, "ratio": self.ratio, "sparsity": self.sparsity,
               "bits": self.bits, "huffman": self.huffman, "compressed_bytes_pq": self.compressed_bytes_pq,
               "compressed_bytes_pqh": self.compressed_bytes_pqh,
               "file": str(self.path) if self.path is not None else None,
               "layers": [layer.to_dict() for layer in self.layers],
               "finetune": ({"epochs": len(self.finetune_losses), "data": self.finetune_data,
                             "losses": self.finetune_losses} if self.finetune_losses else None)}
        if self.paper:
            out["paper"] = True
        return out


def _random_model(name: str, seed: int) -> nn.Module:
    from cnnlab.registry import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name).eval()


def _checkpoint_meta(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from cnnlab.train.checkpoint import load_state

    state = load_state(path)
    args = state.get("args") or {}
    trained = {"classes": [str(c) for c in state["classes"]], "mean": [float(m) for m in state["mean"]],
               "std": [float(s) for s in state["std"]], "input_size": [int(v) for v in state["input_size"]],
               "data": args.get("data")}
    return dict(args.get("model_args") or {}), trained


def _finetune(model: nn.Module, layers: Sequence[SharedLayer], name: str, data: str, input_size: Sequence[int],
              classes: int, *, epochs: int, lr: float, batch_size: int, seed: int,
              progress: Callable[[str], None] | None) -> list[float]:
    from torch.utils.data import DataLoader

    from cnnlab.train.data import load_data
    from cnnlab.train.losses import make_objective

    channels, height, width = (int(v) for v in input_size)
    dataset = load_data(data, input_size=(height, width), channels=channels)
    if len(dataset.classes) > classes:
        raise CompressError(f"--data {data} has {len(dataset.classes)} classes; {name} has {classes} outputs")
    loader = DataLoader(dataset.train, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    objective = make_objective(model, mean=dataset.mean, std=dataset.std, label=name)
    return finetune_centroids(model, layers, loader, objective, epochs=epochs, lr=lr, progress=progress)


def compress(name: str, *, checkpoint: str | Path | None = None, prune: float | None = None,
             layer_sparsity: Mapping[str, float] | str | None = None, conv_bits: int = DEFAULT_BITS["conv"],
             fc_bits: int = DEFAULT_BITS["fc"], conv_index_bits: int = DEFAULT_INDEX_BITS,
             fc_index_bits: int = DEFAULT_INDEX_BITS, huffman: bool = True, finetune_epochs: int = 0,
             data: str | None = None, finetune_lr: float = 1e-3, batch_size: int = 32, seed: int = INIT_SEED,
             out: str | Path | None = None, progress: Callable[[str], None] | None = None) -> CompressResult:
    """``cnnlab compress`` from Python: the registered model ``name`` (from a ``cnnlab train``
    checkpoint, else its random initialisation after ``torch.manual_seed(seed)``) pruned to
    ``prune`` (one sparsity for every layer) or ``layer_sparsity`` (module name -> sparsity, or
    ``"paper"`` for the published per-layer densities of AlexNet and SqueezeNet), quantized,
    optionally centroid-fine-tuned for ``finetune_epochs`` on ``data`` (default: the
    checkpoint's), Huffman-coded unless ``huffman=False``, and written to ``out`` (nothing is
    written when ``out`` is None)."""
    from cnnlab.compress.paper import paper_layers, paper_sparsity
    from cnnlab.fileio import atomic_path
    from cnnlab.registry import model_info

    info = model_info(name)
    if prune is not None and layer_sparsity is not None:
        raise CompressError("give a sparsity for every layer or one per layer, not both")
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise CompressError(f"fine-tuning epochs must be a non-negative integer, got {finetune_epochs!r}")
    sparsity: float | Mapping[str, float] = 0.0 if prune is None else prune
    if layer_sparsity == "paper":
        try:
            sparsity = paper_sparsity(name)
        except ValueError as exc:
            raise CompressError(str(exc)) from None
    elif layer_sparsity is not None:
        if isinstance(layer_sparsity, str) or not isinstance(layer_sparsity, Mapping):
            raise CompressError(f"layer sparsities must map layer names to fractions, got {layer_sparsity!r}")
        sparsity = layer_sparsity
    meta: dict[str, Any] = {"format": FORMAT, "model": name, "model_args": {}, "num_classes": info.num_classes,
                            "checkpoint": None}
    if checkpoint is not None:
        from cnnlab.train.inference import from_checkpoint

        model = from_checkpoint(checkpoint, name).model.cpu()
        meta["model_args"], meta["checkpoint"] = _checkpoint_meta(checkpoint)
        meta["num_classes"] = len(meta["checkpoint"]["classes"])
        source = f"checkpoint {checkpoint}"
    else:
        model = _random_model(name, seed)
        source = f"random initialisation (torch.manual_seed({seed}))"
    if finetune_epochs and data is None:
        data = (meta["checkpoint"] or {}).get("data")
        if data is None:
            raise CompressError("fine-tuning needs --data (a model without a checkpoint has no training data)")
    specs = plan_layers(model, sparsity, conv_bits=conv_bits, fc_bits=fc_bits, conv_index_bits=conv_index_bits,
                        fc_index_bits=fc_index_bits)
    original = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    layers = compress_module(model, specs, progress=progress)
    losses: list[float] = []
    if finetune_epochs:
        input_size = (meta["checkpoint"] or {}).get("input_size") or info.input_size
        losses = _finetune(model, layers, name, data, input_size, meta["num_classes"], epochs=finetune_epochs,
                           lr=finetune_lr, batch_size=batch_size, seed=seed, progress=progress)
    meta["seed"] = seed if checkpoint is None else None
    files, stats = write(model, layers, meta, progress=progress)
    names = paper_layers(name)
    for s in stats:
        s.paper_name = names.get(s.name)
    path = None
    if out is not None:
        path = Path(out)
        with atomic_path(path) as tmp:
            tmp.write_bytes(files["pqh" if huffman else "pq"])
    bits = {"conv": conv_bits, "fc": fc_bits, "conv_index": conv_index_bits, "fc_index": fc_index_bits}
    return CompressResult(name, source, original, len(files["pq"]), len(files["pqh"]), huffman, stats, bits, path,
                          paper=layer_sparsity == "paper", finetune_losses=losses,
                          finetune_data=data if finetune_epochs else None)
