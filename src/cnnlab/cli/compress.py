"""``cnnlab compress NAME [--checkpoint FILE] [--prune S | --layer-sparsity FILE.json|paper] ...``:
Deep Compression (Han, Mao & Dally, ICLR 2016) of a zoo model into one file, and its statistics in
the layout of the paper's Table 4. The work is ``cnnlab.compress.compress``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.cli.arguments import (StatusLine, bits, check_data, compression_errors, count, layer_sparsity,
                                  positive_number, sparsity)
from cnnlab.cli.common import add_command

__all__ = ["add_parser", "run"]

_MIB = 1 << 20


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "compress",
        help="Deep Compression of a model: prune, share weights, Huffman-code, write one file",
        description=(
            "Deep Compression (Han, Mao & Dally, ICLR 2016): magnitude pruning per layer, k-means\n"
            "weight sharing (2**bits codes per layer, linear initialisation, §3), relative sparse\n"
            "indices with filler zeros (Figure 2) and Huffman coding (§4), written to one file that\n"
            "`cnnlab decompress` turns back into the model, weights equal bit for bit.\n\n"
            "Without --checkpoint the model is its random initialisation after torch.manual_seed(SEED):\n"
            "storage depends on sparsity, bits and index gaps, not on accuracy. --layer-sparsity paper\n"
            "applies the published per-layer densities (alexnet_2012: Deep Compression Table 4;\n"
            "squeezenet1_0: SqueezeNet Table 1) and prints the paper's numbers beside ours. Sizes are\n"
            "in MiB, the papers' MB.\n\n"
            "Exit codes: 0 done, 1 an unusable checkpoint, 2 bad input."
        ),
    )
    parser.add_argument("model", metavar="NAME", help="the registered model (see `cnnlab models`)")
    parser.add_argument("--checkpoint", metavar="FILE", help="a checkpoint written by `cnnlab train`")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--prune", type=sparsity, metavar="S",
                       help="one sparsity (fraction of weights removed, 0 <= S < 1) for every conv/linear weight "
                            "(default: 0, no pruning)")
    which.add_argument("--layer-sparsity", metavar="FILE.json|paper",
                       help='a JSON object {"layer name": sparsity} (layers not named are not pruned), or paper')
    parser.add_argument("--bits", type=bits, metavar="B", help="bits per weight code in every layer (1-8)")
    parser.add_argument("--conv-bits", type=bits, metavar="B",
                        help="bits per convolution weight code (default: 8, Table 4)")
    parser.add_argument("--fc-bits", type=bits, metavar="B",
                        help="bits per fully connected weight code (default: 5, Table 4)")
    parser.add_argument("--conv-index-bits", type=bits, default=4, metavar="B",
                        help="bits per relative index in convolutions (Table 4; §2's text says 8)")
    parser.add_argument("--fc-index-bits", type=bits, default=4, metavar="B",
                        help="bits per relative index in fully connected layers (Table 4; §2's text says 5)")
    parser.add_argument("--huffman", action=argparse.BooleanOptionalAction, default=True,
                        help="Huffman-code the weight codes and the indices (§4)")
    parser.add_argument("--finetune-epochs", type=count, default=0, metavar="N",
                        help="epochs of centroid fine-tuning (§3.3) on --data")
    parser.add_argument("--data", metavar="DATA",
                        help="fine-tuning data: digits, cifar10[:ROOT], cifar100[:ROOT], imagefolder:PATH or fake "
                             "(default: the checkpoint's)")
    parser.add_argument("--finetune-lr", type=positive_number, default=1e-3, metavar="LR",
                        help="SGD learning rate of the centroids (momentum 0.9)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="fine-tuning batch size")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="torch.manual_seed of the random initialisation (without --checkpoint) and of shuffling")
    parser.add_argument("--out", metavar="FILE", help="the compressed file (default: NAME.dc in the current folder)")
    parser.add_argument("--json", action="store_true",
                        help='print {"model", "original_bytes", "compressed_bytes", "ratio", "sparsity", "bits", '
                             '"layers": [...], ...} instead of the table')
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.errors import UsageError
    from cnnlab.cli.target import registered_info

    if args.bits is not None and (args.conv_bits is not None or args.fc_bits is not None):
        raise UsageError("give --bits, or --conv-bits and --fc-bits, not both")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.data is not None and not args.finetune_epochs:
        raise UsageError("--data is for fine-tuning: give --finetune-epochs N as well")
    if args.finetune_epochs and args.data is None and args.checkpoint is None:
        raise UsageError("--finetune-epochs needs --data (or a --checkpoint, whose data is used)")
    check_data(args.data)
    registered_info(args.model)  # an unknown name: one line with a suggestion
    layers = layer_sparsity(args.layer_sparsity)
    from cnnlab.compress import compress

    conv_bits = args.bits or args.conv_bits or 8
    fc_bits = args.bits or args.fc_bits or 5
    with compression_errors(), StatusLine("compressing") as progress:
        result = compress(
            args.model, checkpoint=args.checkpoint, prune=args.prune, layer_sparsity=layers,
            conv_bits=conv_bits, fc_bits=fc_bits, conv_index_bits=args.conv_index_bits,
            fc_index_bits=args.fc_index_bits, huffman=args.huffman, finetune_epochs=args.finetune_epochs,
            data=args.data, finetune_lr=args.finetune_lr, batch_size=args.batch_size, seed=args.seed,
            out=args.out or f"{args.model}.dc", progress=progress,
        )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    _print_result(result)
    return 0


# -- the table ---------------------------------------------------------------------------------
HEADER = ["Layer", "#Weights", "Weights% (P)", "Weight bits (P+Q)", "Weight bits (P+Q+H)", "Index bits (P+Q)",
          "Index bits (P+Q+H)", "Compress rate (P+Q)", "Compress rate (P+Q+H)"]


def _count_text(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else str(int(n))


def _num(value: float | None, fmt: str = "{:g}") -> str:
    return "-" if value is None else fmt.format(value)


def _paper_row(model: str, layer: str) -> list[str] | None:
    from cnnlab.compress.paper import paper_value

    def get(metric: str) -> float | None:
        return paper_value(model, layer, metric)

    density = get("density_percent")
    if layer != "total" and get("weight_bits_pq") is None:
        return None  # only a density (SqueezeNet's Table 1): shown in our row's cell
    weights = get("weights")
    printed = (f"{weights / 1e6:g}M" if weights >= 1e6 else f"{weights / 1e3:g}K") if weights else "-"
    rows = ["  paper", printed, _num(density, "{:g}%")]
    rows += [_num(get(m)) for m in ("weight_bits_pq", "weight_bits_pqh", "index_bits_pq", "index_bits_pqh")]
    rows += [_num(get("rate_pq_percent"), "{:g}%"), _num(get("rate_pqh_percent"), "{:g}%")]
    if layer == "total":
        if all(cell in ("-", "-%") for cell in rows[1:]):
            return None
        ratio = (get("ratio_pq"), get("ratio_pqh"))
        rows[2] = f"{density:g}% ({100 / density:.0f}x)" if density else rows[2]
        rows[7] = rows[7] + (f" ({ratio[0]:g}x)" if ratio[0] else "")
        rows[8] = rows[8] + (f" ({ratio[1]:g}x)" if ratio[1] else "")
    return rows


def table_rows(result: Any) -> list[list[str]]:
    """Table 4's rows for ``result``: one per layer (and the paper's beside it with
    ``--layer-sparsity paper``) and a total line; the total's rates are the whole file's."""
    rows = []
    from cnnlab.compress.paper import paper_value

    for s in result.layers:
        label = f"{s.paper_name} ({s.name})" if s.paper_name else s.name
        density = f"{100 * s.density:.1f}%"
        published = paper_value(result.model, s.paper_name, "density_percent") if result.paper else None
        if published is not None and paper_value(result.model, s.paper_name, "weight_bits_pq") is None:
            density += f" (paper {published:g}%)"
        rows.append([label, _count_text(s.weights), density, str(s.weight_bits),
                     f"{s.weight_bits_pqh:.1f}", str(s.index_bits), f"{s.index_bits_pqh:.1f}",
                     f"{100 * s.rate_pq:.1f}%", f"{100 * s.rate_pqh:.2f}%"])
        paper = _paper_row(result.model, s.paper_name) if result.paper and s.paper_name else None
        if paper:
            rows.append(paper)
    entries = sum(s.entries for s in result.layers) or 1
    weights = sum(s.weights for s in result.layers)
    kept = 1.0 - result.sparsity
    pq, pqh = result.compressed_bytes_pq / result.original_bytes, result.compressed_bytes_pqh / result.original_bytes
    rows.append(["total", _count_text(weights), f"{100 * kept:.1f}% ({1 / kept:.1f}x)" if kept else "0%",
                 f"{sum(s.weight_bits * s.entries for s in result.layers) / entries:.1f}",
                 f"{sum(s.weight_stream_bits_pqh for s in result.layers) / entries:.1f}",
                 f"{sum(s.index_bits * s.entries for s in result.layers) / entries:.1f}",
                 f"{sum(s.index_stream_bits_pqh for s in result.layers) / entries:.1f}",
                 f"{100 * pq:.2f}% ({1 / pq:.1f}x)", f"{100 * pqh:.2f}% ({1 / pqh:.1f}x)"])
    paper = _paper_row(result.model, "total") if result.paper else None
    if paper:
        rows.append(paper)
    return rows


def _caption(result: Any) -> str:
    lines = ["Bits are averages per stored entry (fillers included); P+Q+H weight and index bits are the "
             "Huffman-coded streams. A layer's rate is its codebook and streams over its fp32 weights; the "
             "total's is the whole file over the fp32 model."]
    if result.paper and result.model == "alexnet_2012":
        lines.append("paper (Han et al. 2016, Tables 1, 4, 7): 240 MB -> 8.9 MB (P+Q, 27x) -> 6.9 MB (P+Q+H, 35x); "
                     "Huffman sizes depend on trained weights and are not expected to match a random initialisation.")
    if result.paper and result.model == "squeezenet1_0":
        lines.append("paper (Iandola et al. 2016, Tables 1-2): 4.8 MB -> 0.66 MB (8 bit) and 0.47 MB (6 bit); "
                     "Table 1's fire8 e3x3 prints 33%, 30% is used (see docs/compression.md).")
    return "\n".join(lines)


def _print_result(result: Any) -> None:
    from cnnlab.cli.common import print_table

    size = result.compressed_bytes
    coding = "P+Q+H" if result.huffman else "P+Q (no Huffman)"
    print(f"{result.model} from {result.source}: {result.original_bytes / _MIB:.2f} MiB -> {size / _MIB:.3f} MiB "
          f"({result.original_bytes / size:.1f}x, {coding}), {size} bytes written to {result.path}")
    if result.finetune_losses:
        print(f"centroids fine-tuned on {result.finetune_data} for {len(result.finetune_losses)} epochs: training loss "
              + " -> ".join(f"{loss:.4f}" for loss in result.finetune_losses))
    print()
    print_table(HEADER, table_rows(result), set(range(1, len(HEADER))), caption=_caption(result))
