"""``cnnlab decompress FILE [--out MODEL.pt]``: a file written by ``cnnlab compress`` back into a
model checkpoint whose weights equal the shared weights bit for bit. The work is
``cnnlab.compress.decompress``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnlab.cli.common import add_command

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "decompress",
        help="turn a `cnnlab compress` file back into a model checkpoint",
        description=(
            "Decode a file written by `cnnlab compress` (Huffman streams, relative indices,\n"
            "codebooks) and save the model as a checkpoint in `cnnlab train`'s format: model_name,\n"
            "the state dict, and -- when it was compressed from a checkpoint -- the classes,\n"
            "normalisation and input size, so `cnnlab eval` and `cnnlab predict` take it.\n"
            "From Python: cnnlab.compress.load_compressed(FILE) returns the model itself.\n\n"
            "Exit codes: 0 done, 1 an unusable file, 2 bad input."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="a file written by `cnnlab compress`")
    parser.add_argument("--out", metavar="MODEL.pt", help="the checkpoint to write (default: FILE with .pt)")
    parser.add_argument("--json", action="store_true",
                        help='print {"file", "model", "out", "tensors", "shared", "parameters"} instead of a line')
    return parser


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.errors import Failure, UsageError
    from cnnlab.compress import CompressedFileError, decompress

    out = Path(args.out) if args.out else Path(args.file).with_suffix(".pt")
    if out.resolve() == Path(args.file).resolve():
        raise UsageError(f"--out {out} would overwrite the compressed file")
    try:
        archive = decompress(args.file, out)
    except CompressedFileError as exc:
        raise Failure(1, str(exc), exc) from exc
    info = {"file": args.file, "model": archive.meta.get("model"), "out": str(out),
            "tensors": len(archive.state_dict), "shared": len(archive.shared),
            "parameters": sum(t.numel() for t in archive.state_dict.values())}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{args.file}: {info['model']}, {info['shared']} shared weights of {info['tensors']} tensors, "
              f"{info['parameters']:,} values -> {out}")
    return 0
