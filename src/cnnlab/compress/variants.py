"""One trained checkpoint in four deployable forms, each with its size and test accuracy: the
float model, pruned and retrained (Han et al. 2015), INT8 (``cnnlab quantize``) and Deep-Compressed
(Han, Mao & Dally 2016: pruning, then weight sharing with fine-tuned centroids, Huffman coding).
The report's size-vs-accuracy figure and ``benchmarks/deep_compress_lenet5.py`` are this.

Sizes are what would be stored:

* float: the state_dict's tensors at float32 (the ratios' base, as ``cnnlab compress`` counts it);
* pruned: the survivors at float32 with Deep Compression's 4-bit relative indices (its Figure 2,
  filler entries included) for every pruned weight, the rest dense -- the paper's first stage
  alone, before quantization;
* INT8: the file ``cnnlab quantize`` writes (for OpenVINO the IR's .xml and .bin together);
* Deep-Compressed: the file ``cnnlab compress`` writes.

Accuracies are ``cnnlab eval``'s top-1 on the checkpoint's test split (the INT8 one through its
runtime, as ``cnnlab quantize`` measures it).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["Variant", "compression_variants", "sparse_bytes"]


@dataclass
class Variant:
    """One form of the model: ``key`` (float, pruned, int8, deep), its label, bytes and top-1."""

    key: str
    label: str
    bytes: int
    top1: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sparse_bytes(state: dict[str, Any], pruned_keys: list[str], index_bits: int = 4) -> int:
    """Bytes of ``state`` with the tensors named in ``pruned_keys`` stored as their non-zero
    values (float32) plus ``index_bits``-bit relative indices (fillers counted), everything else
    dense at its own element size."""
    from cnnlab.compress.sparse import to_relative

    total = 0
    for key, tensor in state.items():
        if key in pruned_keys:
            index, _ = to_relative((tensor != 0).reshape(-1).numpy().astype("int64"), index_bits)
            total += math.ceil(len(index) * (32 + index_bits) / 8)
        else:
            total += tensor.numel() * tensor.element_size()
    return total


def compression_variants(checkpoint: str | os.PathLike[str], name: str, folder: str | os.PathLike[str], *,
                         sparsity: float = 0.92, prune_epochs: int = 30, centroid_epochs: int = 10,
                         conv_bits: int = 4, fc_bits: int = 4, backend: str | None = None, seed: int = 0,
                         progress: Callable[[str], None] | None = None) -> list[Variant]:
    """The float, pruned, INT8 and Deep-Compressed forms of the checkpoint of model ``name``,
    their files written into ``folder``. Pruning is global to ``sparsity`` (Deep Compression's
    LeNet-5 keeps 8 %) and retrained for ``prune_epochs`` with the checkpoint's recipe; the
    Deep-Compressed file starts from that pruned model with ``conv_bits``/``fc_bits`` codes and
    ``centroid_epochs`` of centroid fine-tuning; INT8 uses ``backend`` (default: ``cnnlab
    quantize``'s).

    Deviation from the paper: 4-bit codes in every layer, where Deep Compression uses 8 bits for
    convolutions and 5 for fully connected layers (Table 1-2). Its LeNet-5 is Caffe's (431 K
    weights); the classic one here has 61.7 K, and an 8-bit codebook (256 float32 centroids, 1 KiB
    per layer) outweighs what it codes: conv1 keeps about 110 of its 150 weights. With 8/5 bits the
    file is 19.6x smaller than float32, with 4/4 bits 34.2x, at the same test accuracy (docs/
    compression.md, "Deep-Compressed LeNet-5")."""
    from cnnlab.compress.deep import compress, decompress
    from cnnlab.compress.retrain import prune_checkpoint
    from cnnlab.quantize.backends import DEFAULT_BACKEND, get_backend
    from cnnlab.quantize.run import quantize_checkpoint
    from cnnlab.train.checkpoint import load_state
    from cnnlab.train.inference import evaluate_model, from_checkpoint

    folder = Path(folder)
    say = progress or (lambda text: None)

    say(f"{name}: pruning {sparsity:.0%} of the weights, {prune_epochs} epochs of retraining")
    pruned_path = folder / "pruned.pt"
    pruned = prune_checkpoint(name, checkpoint, sparsity=sparsity, global_threshold=True,
                              finetune_epochs=prune_epochs, out=pruned_path)
    pruned_keys = [f"{layer.name}.weight" for layer in pruned.layers]
    pruned_size = sparse_bytes(load_state(pruned_path)["model"], pruned_keys)

    backend = backend or DEFAULT_BACKEND
    say(f"{name}: INT8 with {backend}")
    form = get_backend(backend)
    int8 = quantize_checkpoint(checkpoint, name, folder / f"int8{form.suffix}", backend=backend, repeat=3,
                               rounds=1, warmup=1, seed=seed)

    say(f"{name}: Deep Compression ({conv_bits}-bit conv, {fc_bits}-bit fc codes)")
    deep_path, restored = folder / f"{name}.dc", folder / "restored.pt"
    deep = compress(name, checkpoint=pruned_path, conv_bits=conv_bits, fc_bits=fc_bits, finetune_epochs=centroid_epochs,
             seed=seed, out=deep_path)
    decompress(deep_path, restored)
    deep_top1 = evaluate_model(from_checkpoint(restored, name)).top1
    return [  # compress counts the float32 bytes of the same architecture's state_dict
        Variant("float", "float32", deep.original_bytes, float(pruned.accuracy["float"])),
        Variant("pruned", f"pruned {pruned.sparsity:.0%} + retrained", pruned_size, float(pruned.accuracy["finetuned"])),
        Variant("int8", f"INT8 ({backend})", int8.written.bytes, int8.int8_top1),
        Variant("deep", f"Deep Compression ({conv_bits}/{fc_bits} bit, Huffman)", deep_path.stat().st_size, deep_top1),
    ]
