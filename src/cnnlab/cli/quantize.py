"""``cnnlab quantize NAME --checkpoint FILE --out PATH [--backend openvino|onnxruntime|torch]``:
post-training static INT8 of a trained checkpoint, calibrated on the training split, with float
vs INT8 accuracy, size and latency. The work is ``cnnlab.quantize.quantize_trained``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any, Iterator

from cnnlab.cli.arguments import check_data
from cnnlab.cli.common import add_command
from cnnlab.cli.predict import MODEL_HELP

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from cnnlab.quantize.backends import BACKENDS, DEFAULT_BACKEND  # no torch

    parser = add_command(
        subparsers, "quantize",
        help="post-training static INT8 of a trained checkpoint (OpenVINO/NNCF, ONNX Runtime or PT2E)",
        description=(
            "Quantize a checkpoint written by `cnnlab train` to INT8 after training: BatchNorms are\n"
            "folded, activation ranges calibrated on --calibration-batches batches of the TRAINING\n"
            "split of --data (default: the data it was trained on), and the INT8 model is written to\n"
            "--out (a temporary name renamed when complete): openvino through NNCF (.xml + .bin),\n"
            "onnxruntime through its static QDQ quantization (.onnx), torch through PT2E with the x86\n"
            "inductor quantizer (.pt2, run with torch.compile). It then prints float vs INT8 test\n"
            "top-1, file size and latency at batch 1 (median, the float model through the same\n"
            "runtime as `cnnlab bench` runs it, every runtime with --threads threads).\n\n"
            "Exit codes: 0 done, 1 an unusable checkpoint, a backend that is not installed or that\n"
            "fails on the model, 2 bad input."
        ),
    )
    parser.add_argument("model", metavar="NAME|FILE.py:attr", help=MODEL_HELP)
    parser.add_argument("--checkpoint", metavar="FILE", help="a checkpoint written by `cnnlab train` (checkpoint.pt)")
    parser.add_argument("--data", metavar="DATA",
                        help="digits, cifar10[:ROOT], cifar100[:ROOT], imagefolder:PATH or fake: its training split "
                             "calibrates, its test split measures accuracy (when not given: the checkpoint's)")
    parser.add_argument("--backend", choices=tuple(BACKENDS), default=DEFAULT_BACKEND,
                        help="openvino (NNCF), onnxruntime (quantize_static, QDQ) or torch (PT2E, x86 inductor)")
    parser.add_argument("--calibration-batches", type=int, default=10, metavar="N",
                        help="training batches that calibrate the activation ranges")
    parser.add_argument("--calibration-batch-size", type=int, default=32, metavar="B",
                        help="images per calibration batch")
    parser.add_argument("--out", metavar="PATH", required=True,
                        help="the INT8 file: .xml for openvino (its .bin beside it), .onnx for onnxruntime, .pt2 for "
                             "torch; its folder must exist")
    parser.add_argument("--threads", type=int, metavar="T",
                        help="threads of every runtime, float and INT8 alike (when not given: torch's count)")
    parser.add_argument("--repeat", type=int, default=20, metavar="N",
                        help="timed batch-1 calls per round, 3 rounds alternating float and INT8")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="which training images calibrate")
    parser.add_argument("--json", action="store_true",
                        help='print {"model", "backend", "float": {"top1", "size_mb", "median_ms", ...}, '
                             '"int8": {...}, "speedup", "calibration", ...} instead of the table')
    return parser


def _check(args: argparse.Namespace) -> None:
    """Every option checked before the checkpoint is read."""
    from cnnlab.cli.errors import UsageError

    if args.checkpoint is None:
        raise UsageError("give --checkpoint FILE (a checkpoint written by `cnnlab train`)")
    for flag, value in (("--calibration-batches", args.calibration_batches),
                        ("--calibration-batch-size", args.calibration_batch_size), ("--repeat", args.repeat)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    check_data(args.data)
    from cnnlab.quantize.run import check_out

    try:
        check_out(args.backend, args.out)
    except ValueError as exc:
        raise UsageError(f"--out {exc}") from None


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """No library warnings or log lines (torch's, NNCF's) between our own lines on stderr."""
    import logging
    import warnings

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _progress(text: str) -> None:
    print(f"{text} ...", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from cnnlab.cli.errors import TRACE_HINT, Failure, UsageError
    from cnnlab.quantize.backends import QuantizeError, get_backend

    _check(args)  # usage errors stay fast: nothing below is imported yet
    missing = get_backend(args.backend).available()
    if missing is not None:
        raise Failure(1, missing)
    from cnnlab.cli.predict import load_trained
    from cnnlab.quantize.run import quantize_trained

    trained = load_trained(argparse.Namespace(model=args.model, checkpoint=args.checkpoint, device="cpu"))
    try:
        with _quiet_libraries():
            result = quantize_trained(
                trained, args.out, data=args.data, backend=args.backend, calibration_batches=args.calibration_batches,
                calibration_batch_size=args.calibration_batch_size, threads=args.threads, repeat=args.repeat,
                seed=args.seed, progress=_progress if sys.stderr.isatty() else None)
    except ValueError as exc:  # DataError included: the data's classes, too few training images
        raise UsageError(str(exc)) from exc
    except QuantizeError as exc:
        raise Failure(1, str(exc) + TRACE_HINT, exc.__cause__ or exc) from exc
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    _print(result, trained)
    return 0


def _print(result: Any, trained: Any) -> None:
    from cnnlab.cli.common import print_table
    from cnnlab.quantize.run import HEADER

    w = result.written
    threads = f"{result.threads} thread{'s' if result.threads > 1 else ''}"
    title = (f"{result.model} from {trained.source}: INT8 with {result.backend} ({result.backend_version}), "
             f"calibrated on {w.batches_used} x {result.calibration_batch_size} training images of {result.data}")
    caption = (f"test top-1 on {result.n} images of {result.data}; latency: median of batch-1 calls on "
               f"{'x'.join(map(str, result.input_shape))}, {threads}")
    print_table(HEADER, result.rows(), {2, 3, 4, 5}, title=title, caption=caption)
    print(f"wrote {' + '.join(str(p) for p in w.files)}")
