"""``cnnlab export NAME|FILE.py:attr [--checkpoint FILE] --format onnx|openvino|pt2 --out PATH``:
write the model as ONNX, OpenVINO IR or a ``torch.export`` program, load the file back in its
runtime and check it against torch eager. The work is ``cnnlab.export.export_model``; this module
builds the model, parses and prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from cnnlab.cli.common import add_command

__all__ = ["add_parser", "run"]

_FORMATS = {"onnx": ".onnx", "openvino": ".xml", "pt2": ".pt2"}  # as cnnlab.export.FORMATS, without importing it
_MAX_BATCH = 2**31 - 1


def _batch(text: str) -> int | str:
    """``--batch``: a positive integer or ``dynamic``."""
    if text.strip().lower() == "dynamic":
        return "dynamic"
    value = int(text) if text.strip().isdigit() and text.strip().isascii() else 0
    if not 1 <= value <= _MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be a positive integer or dynamic, got {text!r}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = add_command(
        subparsers, "export",
        help="write a model as ONNX, OpenVINO IR or torch.export (pt2), checked against torch eager",
        description=(
            "Export a registered model (random initialisation after torch.manual_seed(SEED)), your own\n"
            "module (path/to/file.py:attr) or, with --checkpoint, the weights `cnnlab train` wrote:\n"
            "onnx through torch.onnx (one .onnx file), openvino through openvino.convert_model and\n"
            "save_model (.xml + .bin, FP32 weights unless --fp16-weights), pt2 through torch.export.\n"
            "BatchNorms are folded first (cnnlab.fuse_bn) unless --no-fuse. The model is exported in\n"
            "fp32, in eval mode.\n\n"
            "The written file is loaded in its runtime (ONNX Runtime, OpenVINO with an f32 precision\n"
            "hint, torch.export.load) and compared with torch eager on random inputs, at batches 1 and\n"
            "3 for --batch dynamic: max |file - eager| / max |eager| <= 1e-3. Degenerate logits of a\n"
            "random head are checked on a copy with a usable output too. The file is written under a\n"
            "temporary name and moved to --out only when it agrees: a failed export leaves --out as\n"
            "it was and keeps the rejected file as NAME.rejected.EXT.\n\n"
            "Exit codes: 0 written and checked, 1 the file disagrees, the export failed, an unusable\n"
            "checkpoint, a runtime that is not installed or an error in your model's code, 2 bad input."
        ),
    )
    parser.add_argument("model", metavar="NAME|FILE.py:attr",
                        help="a registered model (see `cnnlab models`) or path/to/file.py:attr for your own")
    parser.add_argument("--checkpoint", metavar="FILE", help="export the weights of a checkpoint written by `cnnlab train`")
    parser.add_argument("--format", choices=tuple(_FORMATS),
                        help="onnx, openvino or pt2 (when not given: from --out's extension, .onnx, .xml or .pt2)")
    parser.add_argument("--out", metavar="PATH", required=True,
                        help="the file to write: .onnx, .xml (its .bin beside it) or .pt2; its folder must exist")
    parser.add_argument("--batch", type=_batch, default=1, metavar="N|dynamic",
                        help="the batch the file takes, or dynamic for any batch")
    parser.add_argument("--input", metavar="SHAPE",
                        help="one sample's shape without the batch: C x H x W, H x W or one side for a registered "
                             "model, the full shape (3x224x224) for your own; when not given, the registered model's "
                             "native size or the checkpoint's input size")
    from cnnlab.export import DEFAULT_OPSET  # no torch

    parser.add_argument("--opset", type=int, metavar="N",
                        help=f"ONNX opset (--format onnx; {DEFAULT_OPSET} when not given)")
    parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument of the model's builder (Python literal or a bare word), repeatable; "
                             "`cnnlab info NAME` lists them (without --checkpoint: a checkpoint has its own)")
    parser.add_argument("--no-fuse", action="store_true", help="keep the BatchNorms instead of folding them")
    parser.add_argument("--fp16-weights", action="store_true",
                        help="--format openvino: store the weights in FP16 (compress_to_fp16); they are computed in FP32")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="torch.manual_seed before building the model; unused with --checkpoint")
    parser.add_argument("--json", action="store_true",
                        help='print {"path", "files", "format", "bytes", "max_rel_diff", "runtime_version", ...} '
                             "instead of the summary line")
    return parser


# -- checking the command line ------------------------------------------------------------------
def _format(args: argparse.Namespace) -> str:
    """``--format``, or the format --out's extension names."""
    from cnnlab.cli.errors import UsageError

    if args.format is not None:
        return args.format
    suffix = Path(args.out).suffix.lower()
    found = next((name for name, ext in _FORMATS.items() if ext == suffix), None)
    if found is None:
        raise UsageError(f"give --format onnx|openvino|pt2, or an --out ending in .onnx, .xml or .pt2 "
                         f"(got {args.out!r})")
    return found


def _check(args: argparse.Namespace, fmt: str) -> None:
    """Every option checked before the model is built."""
    from cnnlab.cli.errors import UsageError
    from cnnlab.export import check_target

    if args.opset is not None:
        if fmt != "onnx":
            raise UsageError(f"--opset is for --format onnx, not {fmt}")
        from cnnlab.export import onnx_opsets

        opsets = onnx_opsets()
        if args.opset not in opsets:
            raise UsageError(f"--opset {args.opset} is out of range: this torch exports ONNX opsets "
                             f"{opsets.start} to {opsets.stop - 1}")
    if args.fp16_weights and fmt != "openvino":
        raise UsageError(f"--fp16-weights is for --format openvino, not {fmt}")
    if args.arg and args.checkpoint:
        raise UsageError("--arg cannot change a checkpoint's model: its builder arguments are stored in it")
    try:
        check_target(fmt, args.out)
    except ValueError as exc:
        raise UsageError(f"--out {exc}") from None


# -- the model ----------------------------------------------------------------------------------
def _registered(args: argparse.Namespace, batch: int) -> tuple[Any, tuple[int, ...]]:
    """A registered model at random init (seeded) or from its checkpoint, and its input shape."""
    from cnnlab.cli.target import (
        _build_registered, _model_channels, parse_dims, parse_kwargs, registered_info, registered_shape,
    )

    registered_info(args.model)  # an unknown name: one line with a suggestion, before any work
    kwargs = parse_kwargs(args.arg)
    dims_list = [parse_dims(args.input)] if args.input else []
    if args.checkpoint:
        trained = _trained(args)
        model, native = trained.model, tuple(trained.input_size)
    else:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model, native = _build_registered(args.model, kwargs, "cpu")
    channels = _model_channels(model, native[0])
    texts = [args.input] if args.input else []
    return model, registered_shape(args.model, dims_list, texts, native, channels, batch)


def _own(args: argparse.Namespace, batch: int) -> tuple[Any, tuple[int, ...]]:
    """Your module (seeded random init, or the checkpoint's weights) and its input shape."""
    from cnnlab.cli.errors import UsageError
    from cnnlab.cli.target import _build_user_model, _check_size, _user_attr, parse_dims, parse_kwargs

    if args.checkpoint:
        trained = _trained(args)
        model, sample = trained.model, tuple(trained.input_size)
    else:
        if not args.input:
            raise UsageError(f"give the input of {args.model} with --input: one sample's full shape without the "
                             "batch, e.g. --input 3x224x224")
        import torch

        kwargs = parse_kwargs(args.arg)
        obj, root = _user_attr(args.model, "the model")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model = _build_user_model(obj, args.model, kwargs, root, "cpu")
    if args.input:
        sample = parse_dims(args.input)
    shape = (batch, *sample)
    _check_size(shape, f"--input {args.input or 'x'.join(map(str, sample))} with --batch {batch}")
    return model, shape


def _trained(args: argparse.Namespace) -> Any:
    """The checkpoint's model, loaded as ``cnnlab predict`` loads it (on the CPU)."""
    from cnnlab.cli.predict import load_trained

    return load_trained(argparse.Namespace(model=args.model, checkpoint=args.checkpoint, device="cpu"))


def _eager(model: Any, shape: tuple[int, ...], spec: str, root: Path | None) -> None:
    """One forward in torch eager: an input the model refuses is bad input (exit 2), an error in
    your code exit 1 with its place -- before any file is written."""
    import torch

    from cnnlab.cli.errors import USER_ERRORS, ModuleTracker, classify

    tracker = ModuleTracker()
    try:
        with tracker, torch.inference_mode():
            model.eval()(torch.zeros((1, *shape[1:])))
    except USER_ERRORS as exc:
        note = f"input shape {'x'.join(map(str, (1, *shape[1:])))}"
        raise classify(exc, stage="forward", label=spec, user_root=root, tracker=tracker, note=note) from exc


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.errors import TRACE_HINT, USER_ERRORS, Failure, classify
    from cnnlab.cli.target import _folder_on_path, is_user_spec
    from cnnlab.export import ExportError, ExportMismatch, export_model, require_runtime

    fmt = _format(args)
    _check(args, fmt)
    try:
        require_runtime(fmt)
    except ExportError as exc:
        raise Failure(1, str(exc), exc) from exc
    dynamic = args.batch == "dynamic"
    batch = 1 if dynamic else args.batch
    user = is_user_spec(args.model)
    root = Path(args.model.rpartition(":")[0]).resolve().parent if user else None
    with contextlib.ExitStack() as stack:
        if root is not None:
            stack.enter_context(_folder_on_path(root))
        # What your code prints goes to stderr: stdout carries only the summary or the JSON.
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        model, shape = (_own if user else _registered)(args, batch)
        _eager(model, shape, args.model, root)
        mismatch = None
        try:
            result = export_model(model, shape, fmt, args.out, dynamic_batch=dynamic, opset=args.opset,
                                  fuse=not args.no_fuse, fp16_weights=args.fp16_weights)
        except ExportMismatch as exc:
            mismatch, result = exc, exc.result
        except ExportError as exc:  # the exporter or the runtime failed
            raise Failure(1, str(exc) + TRACE_HINT, exc.__cause__ or exc) from exc
        except USER_ERRORS as exc:
            if not user:
                raise
            raise classify(exc, stage="forward", label=args.model, user_root=root) from exc
    if args.json:  # a failed check's numbers too
        print(json.dumps(result.to_dict(), indent=2))
    if mismatch is not None:
        raise Failure(1, str(mismatch), mismatch)
    if not args.json:
        print(result.summary())
    return 0
