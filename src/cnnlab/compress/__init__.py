"""Deep Compression (Han, Mao & Dally, ICLR 2016, https://arxiv.org/abs/1510.00149) of cnnlab's
models: magnitude pruning, k-means weight sharing with linear initialisation and centroid
fine-tuning, relative-index sparse storage and Huffman coding, in one file that decompresses to
weights equal bit for bit to the shared ones.

    result = compress("squeezenet1_0", layer_sparsity="paper", conv_bits=6, out="sq.dc")
    result.compressed_bytes, result.ratio     # the file's size and the fp32 model's over it
    model = load_compressed("sq.dc")          # squeezenet1_0 holding the shared weights

``cnnlab compress`` and ``cnnlab decompress`` are the same functions; ``cnnlab prune`` is
``prune_checkpoint`` (magnitude pruning of a trained checkpoint, retrained with the masks kept).
docs/compression.md has the format, the paper comparison and what is expected to match.

Modules: ``prune`` (masks, §2), ``sharing`` (k-means weight sharing, §3), ``sparse`` (relative
indices, Figure 2), ``huffman`` (§4), ``fileformat`` (the file), ``deep`` (the pipeline),
``retrain`` (``cnnlab prune``), ``paper`` (the published numbers).
"""

from cnnlab.compress.deep import INIT_SEED, CompressResult, compress, decompress, load_compressed
from cnnlab.compress.fileformat import Archive, CompressedFileError, LayerStats, read_compressed, write
from cnnlab.compress.paper import paper_sparsity
from cnnlab.compress.prune import DEFAULT_BITS, DEFAULT_INDEX_BITS, CompressError, LayerSpec, plan_layers
from cnnlab.compress.retrain import PruneResult, prune_checkpoint
from cnnlab.compress.sharing import (
    SharedLayer,
    compress_module,
    finetune_centroids,
    kmeans_linear,
    nearest_centroid,
    share_weights,
)

__all__ = [
    "DEFAULT_BITS", "DEFAULT_INDEX_BITS", "INIT_SEED", "Archive", "CompressError", "CompressResult",
    "CompressedFileError", "LayerSpec", "LayerStats", "PruneResult", "SharedLayer", "compress", "compress_module",
    "decompress", "finetune_centroids", "kmeans_linear", "load_compressed", "nearest_centroid", "paper_sparsity",
    "plan_layers", "prune_checkpoint", "read_compressed", "share_weights", "write",
]
