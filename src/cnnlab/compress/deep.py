"""Deep Compression end to end: Han, Mao & Dally, "Deep Compression: Compressing Deep Neural
Networks with Pruning, Trained Quantization and Huffman Coding", ICLR 2016,
https://arxiv.org/abs/1510.00149. ``compress`` is ``cnnlab compress``; ``decompress`` and
``load_compressed`` give the model back.

The three stages, per convolution and linear weight (biases, batch-norm parameters and buffers are
stored as they are), each in its own module:

1. Pruning (§2): magnitude pruning to a sparsity per layer (``cnnlab.compress.prune``).
2. Trained quantization (§3): 1-D k-means over the surviving weights, centroids initialised
   linearly between their min and max (§3.2, Figure 8), then optionally fine-tuned with the
   shared gradient of eq. (3) (``cnnlab.compress.sharing``).
3. Huffman coding (§4) of the codebook indices and of the relative sparse indices (§2, Figure 2),
   stored in one file with the codebook (``cnnlab.compress.fileformat``, which has the layout).

Defaults are the paper's AlexNet settings (§5.2, Table 4): 8-bit codes for convolutions, 5-bit
for fully connected layers, 4-bit relative indices for both. §2 says "8 bits for conv layer and
5 bits for fc layer" for the indices, but Table 4 and §5.2 ("The relative sparse index is encoded
with 4 bits") use 4, as do the released files; 4 reproduces Table 4. ``conv_index_bits`` and
``fc_index_bits`` set them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from cnnlab.compress.fileformat import FORMAT, Archive, CompressedFileError, LayerStats, read_compressed, write
from cnnlab.compress.prune import DEFAULT_BITS, DEFAULT_INDEX_BITS, CompressError, plan_layers
from cnnlab.compress.sharing import SharedLayer, compress_module, finetune_centroids

__all__ = ["INIT_SEED", "CompressResult", "compress", "decompress", "load_compressed"]

INIT_SEED = 0  # torch.manual_seed before building a registered model without a checkpoint


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


# -- back to a model --------------------------------------------------------------------------
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

