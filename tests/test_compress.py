"""Deep Compression (``cnnlab.compress``): Huffman coding, the relative-index filler rule of
Figure 2, k-means with linear initialisation, the byte accounting, the published per-layer
sparsities, centroid fine-tuning (eq. 3) and the file round trip, bit for bit."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cnnlab.compress import (
    CompressedFileError,
    CompressError,
    compress,
    compress_module,
    finetune_centroids,
    kmeans_linear,
    load_compressed,
    plan_layers,
    read_compressed,
    share_weights,
    write,
)
from cnnlab.compress import huffman
from cnnlab.compress.deep import _random_model
from cnnlab.compress.paper import paper_rows, paper_sparsity, paper_value
from cnnlab.compress.sparse import from_relative, magnitude_mask, pruned_count, to_relative

NOTES = Path(__file__).resolve().parents[2] / "shared" / "course-notes"


# -- Huffman (§4) -----------------------------------------------------------------------------
def _bit_strings(lengths: np.ndarray) -> dict[int, str]:
    codes = huffman.canonical_codes(lengths)
    return {s: format(int(codes[s]), f"0{int(n)}b") for s, n in enumerate(lengths) if n}


def test_huffman_on_a_dyadic_distribution_reaches_the_entropy_with_a_prefix_code() -> None:
    counts = np.array([8, 4, 2, 1, 1, 0])
    lengths = huffman.code_lengths(counts)
    assert lengths.tolist() == [1, 2, 3, 4, 4, 0]
    p = counts[counts > 0] / counts.sum()
    assert (counts * lengths).sum() / counts.sum() == pytest.approx(-(p * np.log2(p)).sum())
    words = list(_bit_strings(lengths).values())
    assert not any(a != b and b.startswith(a) for a in words for b in words)  # prefix-free
    assert _bit_strings(lengths) == {0: "0", 1: "10", 2: "110", 3: "1110", 4: "1111"}


@pytest.mark.parametrize("seed", range(6))
def test_huffman_lengths_are_optimal_against_brute_force(seed) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 60, size=5)
    lengths = huffman.code_lengths(counts)
    best = min(sum(c * n for c, n in zip(counts, ls))
               for ls in itertools.product(range(1, 6), repeat=5) if sum(2.0 ** -n for n in ls) <= 1)
    assert int((counts * lengths).sum()) == best
    assert sum(2.0 ** -int(n) for n in lengths) == 1.0  # complete, hence prefix-free and decodable


@pytest.mark.parametrize("n", [1, 5, huffman.LANE - 1, huffman.LANE, huffman.LANE + 1, 3 * huffman.LANE + 17])
@pytest.mark.parametrize("alphabet", [16, 256])
def test_huffman_round_trip_across_lanes(n, alphabet) -> None:
    rng = np.random.default_rng(n)
    symbols = rng.choice(alphabet, size=n, p=rng.dirichlet(np.full(alphabet, 0.2)))
    stream = huffman.encode(symbols, alphabet)
    assert len(stream.lane_bits) == -(-n // huffman.LANE) - 1
    assert np.array_equal(huffman.decode(stream, n), symbols)
    assert stream.nbits == int(huffman.code_lengths(np.bincount(symbols, minlength=alphabet))[symbols].sum())


def test_a_lone_symbol_costs_one_bit_and_empty_streams_work() -> None:
    stream = huffman.encode(np.full(3000, 7), 16)
    assert stream.nbits == 3000 and np.array_equal(huffman.decode(stream, 3000), np.full(3000, 7))
    empty = huffman.encode(np.zeros(0, dtype=int), 16)
    assert empty.nbits == 0 and huffman.decode(empty, 0).size == 0


def test_pack_bits_matches_a_bit_string_reference() -> None:
    rng = np.random.default_rng(0)
    widths = rng.integers(1, huffman.MAX_LENGTH + 1, size=500)
    values = np.array([int(rng.integers(0, 2 ** int(w), dtype=np.uint64)) for w in widths], dtype=np.uint64)
    data, nbits = huffman.pack_bits(values, widths)
    reference = "".join(format(int(v), f"0{int(w)}b") for v, w in zip(values, widths))
    assert nbits == len(reference)
    assert data == int(reference.ljust(len(data) * 8, "0"), 2).to_bytes(len(data), "big")
    fixed = rng.integers(0, 32, size=1001)
    assert np.array_equal(huffman.unpack_fixed(huffman.pack_bits(fixed, np.full(1001, 5))[0], 5, 1001), fixed)


# -- pruning and relative indices (§2, Figure 2) ----------------------------------------------
def test_relative_index_inserts_a_filler_zero_when_the_gap_exceeds_the_index_range() -> None:
    """Figure 2 with 3-bit indices: nonzeros at 1, 4 and 15 of 16; the gap 4 -> 15 exceeds 8, so a
    filler zero sits at 12 (4 + 8). Stored values are gap - 1, counted from position -1."""
    codes = np.zeros(16, dtype=np.int64)
    codes[[1, 4, 15]] = [3, 1, 2]
    index, code = to_relative(codes, 3)
    assert index.tolist() == [1, 2, 7, 2]
    assert code.tolist() == [3, 1, 0, 2]
    assert (np.cumsum(index + 1) - 1).tolist() == [1, 4, 12, 15]
    assert np.array_equal(from_relative(index, code, 16), codes)


@pytest.mark.parametrize("position, index", [(7, [7]), (8, [7, 0]), (15, [7, 7]), (16, [7, 7, 0]), (0, [0])])
def test_a_gap_of_exactly_two_to_the_index_bits_needs_no_filler(position, index) -> None:
    codes = np.zeros(20, dtype=np.int64)
    codes[position] = 5
    got, code = to_relative(codes, 3)
    assert got.tolist() == index and code.tolist()[-1] == 5 and not code[:-1].any()
    assert np.array_equal(from_relative(got, code, 20), codes)


def test_from_relative_rejects_indices_past_the_layer() -> None:
    with pytest.raises(ValueError, match="position 8"):
        from_relative(np.array([7, 0]), np.array([0, 1]), 8)


def test_magnitude_pruning_keeps_the_largest_weights() -> None:
    weight = torch.tensor([[0.1, -3.0, 0.5], [2.0, -0.2, 0.05]])
    mask = magnitude_mask(weight, 0.5)
    assert mask.tolist() == [[False, True, True], [True, False, False]]
    assert pruned_count(512000, 1 - 0.2) == 409600 and pruned_count(9216, 1 - 0.33) == 6174
    with pytest.raises(ValueError):
        pruned_count(10, 1.0)


# -- weight sharing (§3) ----------------------------------------------------------------------
def test_kmeans_starts_linear_and_ends_at_a_lloyd_fixed_point() -> None:
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(-0.05, 0.01, 3000), rng.normal(0.04, 0.02, 2000)]  # bimodal, as after pruning
    assert np.array_equal(kmeans_linear(values, 13, iterations=0), np.linspace(values.min(), values.max(), 13))
    centroids = kmeans_linear(values, 13)
    assert np.all(np.diff(centroids) > 0)
    nearest = np.abs(values[:, None] - centroids[None, :]).argmin(1)
    for k in np.unique(nearest):
        assert centroids[k] == pytest.approx(values[nearest == k].mean(), abs=1e-12)


def test_every_surviving_weight_maps_to_its_nearest_centroid() -> None:
    torch.manual_seed(0)
    weight = torch.randn(64, 32)
    mask = magnitude_mask(weight, 0.6)
    codes, codebook = share_weights(weight, mask, bits=4)
    assert codebook[0] == 0 and len(codebook) == 16
    flat = weight.reshape(-1).numpy()
    kept = mask.reshape(-1).numpy()
    assert np.array_equal(codes != 0, kept) and kept.sum() == 64 * 32 - pruned_count(64 * 32, 0.6)
    distance = np.abs(flat[kept][:, None].astype(np.float64) - codebook[1:][None, :])
    chosen = distance[np.arange(kept.sum()), codes[kept] - 1]
    assert np.all(chosen <= distance.min(1) + 1e-12)
    assert codebook[1] == pytest.approx(flat[kept].min(), abs=0.5)  # linear init reaches the extremes


# -- sizes ------------------------------------------------------------------------------------
def test_size_accounting_of_a_hand_computed_layer(tmp_path) -> None:
    """16 weights, nonzeros -1, 0.5, 2 at 1, 4, 15; 2-bit codes, 3-bit indices -> 4 entries (a filler).
    P+Q: codebook 4 x 4 B + ceil(4 x 2 / 8) + ceil(4 x 3 / 8) = 19 bytes. P+Q+H: the index stream
    [1, 2, 7, 2] codes in 2+1+2+1 = 6 bits (1 byte) behind an 8-byte length table and a 4-byte
    count; the codes [2, 1, 0, 3] in 4 x 2 bits (1 byte) behind a 4-byte table and a count: 16 + 13 + 9."""
    layer = nn.Linear(16, 1, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, [1, 4, 15]] = torch.tensor([0.5, -1.0, 2.0])
    model = nn.Sequential(layer)
    specs = plan_layers(model, 0.0, fc_bits=2, fc_index_bits=3)
    shared = compress_module(model, specs)
    assert torch.equal(layer.weight[0, [1, 4, 15]], torch.tensor([0.5, -1.0, 2.0]))  # 3 values, 3 centroids
    files, (stats,) = write(model, shared, {"model": None})
    assert (stats.weights, stats.nonzero, stats.entries) == (16, 3, 4)
    assert stats.bytes_pq == 19 and stats.bytes_pqh == 38
    assert (stats.index_stream_bits_pqh, stats.weight_stream_bits_pqh) == (6, 8)
    assert stats.rate_pq == 19 / 64
    header = 8 + 8 + len(b'{"model":null}') + 4
    record = 2 + len("0.weight") + 2 + 2 * 4 + 1 + 1 + 4
    assert len(files["pq"]) == header + record + 19 + 4  # + CRC-32
    path = tmp_path / "tiny.dc"
    path.write_bytes(files["pqh"])
    assert torch.equal(load_compressed(path, nn.Sequential(nn.Linear(16, 1, bias=False)))[0].weight, layer.weight)


# -- the papers' per-layer sparsities ---------------------------------------------------------
def _notes_table() -> dict[str, list[str]]:
    (path,) = NOTES.glob("003_*.txt")
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = line.split("\t")
        if cells and re.fullmatch(r"(conv1|fire\d|conv10)", cells[0]) and len(cells) >= 12:
            rows[cells[0]] = cells
    return rows


@pytest.mark.skipif(not any(NOTES.glob("003_*.txt")), reason="shared/course-notes is not beside this checkout")
def test_squeezenet_paper_numbers_match_the_course_notes() -> None:
    notes = _notes_table()
    assert len(notes) == 10
    for name, cells in notes.items():
        assert paper_value("squeezenet1_0", name, "params_before") == int(cells[-2].replace(",", ""))
        assert paper_value("squeezenet1_0", name, "params_after") == int(cells[-1].replace(",", ""))
        printed = [float(p) for p in re.findall(r"(\d+)%", "\t".join(cells[7:10]))]
        parts = ["s1x1", "e1x1", "e3x3"] if name.startswith("fire") else [None]
        stored = [paper_value("squeezenet1_0", f"{name}/{part}" if part else name, "density_percent") for part in parts]
        assert stored == printed, name


def test_paper_sparsity_prunes_squeezenet_to_table_1s_counts() -> None:
    model = _random_model("squeezenet1_0", 0)
    sparsity = paper_sparsity("squeezenet1_0")
    assert len(sparsity) == 26 and sparsity["features.10.expand3x3"] == pytest.approx(0.7)  # fire8: 30%, not 33%
    compress_module(model, plan_layers(model, sparsity))
    params = dict(model.named_parameters())
    for name, s in sparsity.items():
        weight = params[f"{name}.weight"]
        assert int(torch.count_nonzero(weight)) == weight.numel() - pruned_count(weight.numel(), s), name
    groups = {"conv1": ["features.0"], "conv10": ["classifier.1"]}
    groups |= {f"fire{i}": [f"features.{j}"] for i, j in zip(range(2, 10), (3, 4, 5, 7, 8, 9, 10, 12))}
    total = 0
    for fire, prefixes in groups.items():
        kept = sum(int(torch.count_nonzero(p)) if n.endswith("weight") else p.numel()
                   for n, p in params.items() if any(n.startswith(f"{q}.") for q in prefixes))
        assert kept == paper_value("squeezenet1_0", fire, "params_after"), fire
        total += kept
    assert total == 421_098 == paper_value("squeezenet1_0", "total", "params_after")


def test_paper_sparsity_of_alexnet_is_table_4() -> None:
    with torch.device("meta"):
        model = _random_model("alexnet_2012", 0)
    specs = {s.name: s for s in plan_layers(model, paper_sparsity("alexnet_2012"))}
    table = {"features.0": 84, "features.4": 38, "features.8": 35, "features.10": 37, "features.12": 37,
             "classifier.0": 9, "classifier.3": 9, "classifier.6": 25}
    assert {name: round(100 * (1 - s.sparsity)) for name, s in specs.items()} == table
    assert {s.kind: s.weight_bits for s in specs.values()} == {"conv": 8, "fc": 5}
    assert {s.index_bits for s in specs.values()} == {4}
    with pytest.raises(ValueError, match="alexnet_2012 and squeezenet1_0"):
        paper_sparsity("lenet5")


def test_paper_csv_rows_name_their_table() -> None:
    rows = paper_rows()
    released = "songhan/SqueezeNet-Deep-Compression, compressed_SqueezeNet.net"
    assert all(re.fullmatch(r"(Han|Iandola) et al\. 2016, Table \d", row["source"]) or row["source"] == released
               for row in rows)
    assert paper_value("alexnet_2012", "total", "rate_pqh_percent") == 2.88
    assert paper_value("alexnet_2012", "fc6", "index_bits_pq") == 4


# -- round trip -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def squeezenet(tmp_path_factory):
    """squeezenet1_0 pruned to half, 4-bit codes, written with and without Huffman coding."""
    model = _random_model("squeezenet1_0", 0)
    shared = compress_module(model, plan_layers(model, 0.5, conv_bits=4, conv_index_bits=3))
    files, stats = write(model, shared, {"model": "squeezenet1_0", "model_args": {}, "num_classes": 1000})
    folder = tmp_path_factory.mktemp("dc")
    paths = {}
    for kind, data in files.items():
        paths[kind] = folder / f"{kind}.dc"
        paths[kind].write_bytes(data)
    return model, shared, paths


@pytest.mark.parametrize("kind", ["pq", "pqh"])
def test_the_file_gives_back_the_shared_weights_bit_for_bit(squeezenet, kind) -> None:
    model, shared, paths = squeezenet
    archive = read_compressed(paths[kind])
    assert sorted(archive.shared) == sorted(s.spec.key for s in shared)
    own = model.state_dict()
    assert archive.state_dict.keys() == own.keys()
    for key, tensor in own.items():
        assert tensor.dtype == archive.state_dict[key].dtype and torch.equal(tensor, archive.state_dict[key]), key
    for layer in shared:
        assert len(np.unique(layer.weight().numpy())) <= 16
    loaded = load_compressed(paths[kind])
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_huffman_makes_the_file_smaller(squeezenet) -> None:
    _, _, paths = squeezenet
    assert paths["pqh"].stat().st_size < paths["pq"].stat().st_size


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "empty"])
def test_a_damaged_file_is_one_clear_error(squeezenet, tmp_path, damage) -> None:
    _, _, paths = squeezenet
    data = bytearray(paths["pqh"].read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "magic":
        data[:4] = b"PK\x03\x04"
    else:
        data = bytearray()
    path = tmp_path / "bad.dc"
    path.write_bytes(bytes(data))
    expected = {"truncate": "truncated or corrupt", "flip": "checksum", "magic": "not a cnnlab compressed model",
                "empty": "not a cnnlab compressed model"}[damage]
    with pytest.raises(CompressedFileError, match=expected):
        read_compressed(path)


def test_compress_checks_its_arguments() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(CompressError, match="'fc9'"):
        plan_layers(model, {"fc9": 0.5})
    with pytest.raises(CompressError, match=r"\[0, 1\)"):
        plan_layers(model, {"0": 1.0})
    with pytest.raises(CompressError, match="from 1 to 8"):
        plan_layers(model, 0.5, conv_bits=9)
    specs = plan_layers(model, {"2.weight": 0.25})
    assert [(s.name, s.kind, s.sparsity) for s in specs] == [("0", "conv", 0.0), ("2", "fc", 0.25)]
    with pytest.raises(CompressError, match="not both"):
        compress("lenet5", prune=0.5, layer_sparsity={"f6": 0.5})


# -- centroid fine-tuning (§3.3) --------------------------------------------------------------
def test_centroid_finetuning_keeps_weights_shared_and_lowers_the_loss() -> None:
    """A small net trained on a teacher's labels loses accuracy when quantized to 2 bits; eq. (3)'s
    shared gradients win most of it back without changing any code."""
    from cnnlab.train.losses import make_objective

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x @ torch.randn(8, 3, generator=g)).argmax(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(200):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    shared = compress_module(model, plan_layers(model, 0.5, fc_bits=2))
    codes_before = [layer.codes.copy() for layer in shared]

    def loss() -> float:
        with torch.no_grad():
            return nn.functional.cross_entropy(model.eval()(x), y).item()

    before = loss()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    losses = finetune_centroids(model, shared, loader, make_objective(model), epochs=10, lr=0.01)
    assert len(losses) == 10 and loss() < 0.8 * before
    params = dict(model.named_parameters())
    for layer, codes in zip(shared, codes_before):
        weight = params[layer.spec.key]
        assert np.array_equal(layer.codes, codes) and layer.codebook[0] == 0
        assert torch.equal(weight, layer.weight()) and torch.unique(weight).numel() <= 4
        assert not weight.requires_grad or weight.grad is None
    assert all(p.requires_grad for p in model.parameters())  # restored


@pytest.mark.slow
def test_alexnet_with_table_4s_sparsities_is_within_15_percent_of_35x(tmp_path) -> None:
    result = compress("alexnet_2012", layer_sparsity="paper", out=tmp_path / "alexnet.dc")
    assert result.compressed_bytes == (tmp_path / "alexnet.dc").stat().st_size
    assert math.isclose(result.ratio, 35, rel_tol=0.15)
    assert math.isclose(result.original_bytes / result.compressed_bytes_pq, 27, rel_tol=0.15)
    assert result.sparsity == pytest.approx(0.89, abs=0.01)
    archive = read_compressed(tmp_path / "alexnet.dc")
    assert sum(int(torch.count_nonzero(archive.state_dict[k])) for k in archive.shared) == sum(
        s.nonzero for s in result.layers)
