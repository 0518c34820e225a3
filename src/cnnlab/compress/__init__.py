"""Deep Compression (Han, Mao & Dally, ICLR 2016, https://arxiv.org/abs/1510.00149) of cnnlab's
models: magnitude pruning, k-means weight sharing with linear initialisation and centroid
fine-tuning, relative-index sparse storage and Huffman coding, in one file that decompresses to
weights equal bit for bit to the shared ones.

    result = compress("squeezenet1_0", layer_sparsity="paper", conv_bits=6, out="sq.dc")
    result.compressed_bytes, result.ratio     # the file's size and the fp32 model's over it
    model = load_compressed("sq.dc")          # squeezenet1_0 holding the shared weights

``cnnlab compress`` and ``cnnlab decompress`` are the same functions; docs/compression.md has
the format, the paper comparison and what is expected to match.
"""

from cnnlab.compress.deep import (
    DEFAULT_BITS,
    DEFAULT_INDEX_BITS,
    INIT_SEED,
    Archive,
    CompressedFileError,
    CompressError,
    CompressResult,
    LayerSpec,
    LayerStats,
    SharedLayer,
    compress,
    compress_module,
    decompress,
    finetune_centroids,
    kmeans_linear,
    load_compressed,
    nearest_centroid,
    plan_layers,
    read_compressed,
    share_weights,
    write,
)
from cnnlab.compress.paper import paper_sparsity

__all__ = [
    "DEFAULT_BITS", "DEFAULT_INDEX_BITS", "INIT_SEED", "Archive", "CompressError", "CompressResult",
    "CompressedFileError", "LayerSpec", "LayerStats", "SharedLayer", "compress", "compress_module", "decompress",
    "finetune_centroids", "kmeans_linear", "load_compressed", "nearest_centroid", "paper_sparsity", "plan_layers",
    "read_compressed", "share_weights", "write",
]
