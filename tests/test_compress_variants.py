"""``cnnlab.compress.variants``: one trained LeNet-5 as float, pruned, INT8 and Deep-Compressed,
with sizes that follow from the stored bytes (the report's size-vs-accuracy figure)."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.compress import decompress, load_compressed
from cnnlab.compress.variants import compression_variants, sparse_bytes
from cnnlab.quantize.backends import DEFAULT_BACKEND, get_backend


def test_sparse_bytes_on_a_hand_made_layer() -> None:
    """40 weights with non-zeros at 0, 1 and 30: gaps 1, 1 and 30; 30 exceeds 2**4 = 16, so one
    filler entry (Figure 2) -- 4 entries of 32 + 4 bits = 18 bytes; the bias stays dense."""
    weight = torch.zeros(40)
    weight[[0, 1, 30]] = torch.tensor([0.5, -1.0, 2.0])
    state = {"fc.weight": weight.view(4, 10), "fc.bias": torch.ones(3)}
    assert sparse_bytes(state, ["fc.weight"]) == math.ceil(4 * 36 / 8) + 3 * 4
    assert sparse_bytes(state, []) == (40 + 3) * 4  # nothing pruned: dense float32
    assert sparse_bytes(state, ["fc.weight"], index_bits=5) == math.ceil(3 * 37 / 8) + 12  # gap 30 < 32: no filler


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """LeNet-5 on the digits after 4 epochs of AdamW (the recipe's SGD stays at chance that
    briefly; tests/test_prune.py)."""
    from cnnlab.train import train

    out = tmp_path_factory.mktemp("lenet5")
    run = train("lenet5", data="digits", epochs=4, out=str(out), seed=0, threads=1, optimizer="adamw", lr=0.003)
    assert run.test_acc > 0.5
    return run.checkpoint


@pytest.mark.skipif(get_backend(DEFAULT_BACKEND).available() is not None, reason="the INT8 backend is not installed")
def test_four_forms_of_lenet5(checkpoint, tmp_path) -> None:
    variants = compression_variants(checkpoint, "lenet5", tmp_path, prune_epochs=2, centroid_epochs=1)
    forms = {v.key: v for v in variants}
    assert list(forms) == ["float", "pruned", "int8", "deep"]
    assert forms["float"].bytes == 61_706 * 4  # LeNet-5's parameters at float32
    # pruned: 8 % of the weights kept, each with a 4-bit index: about 8 % x 36/32 of the weights' bytes
    assert forms["float"].bytes / 12 < forms["pruned"].bytes < forms["float"].bytes / 6
    assert forms["int8"].bytes < forms["float"].bytes / 2
    assert forms["deep"].bytes == (tmp_path / "lenet5.dc").stat().st_size
    assert forms["deep"].bytes < forms["pruned"].bytes / 2 and forms["float"].bytes / forms["deep"].bytes > 28
    for v in variants:
        assert 0.5 < v.top1 <= 1.0, v
    # the Deep-Compressed layers keep their pruned zeros and at most 2**bits values
    model = load_compressed(tmp_path / "lenet5.dc")
    for layer in (model.features.c5, model.f6):  # 4-bit codes: at most 16 values, 0 included
        assert (layer.weight == 0).float().mean() > 0.8 and len(torch.unique(layer.weight)) <= 2**4
    archive = decompress(tmp_path / "lenet5.dc", tmp_path / "restored.pt")
    assert archive.meta["model"] == "lenet5"
