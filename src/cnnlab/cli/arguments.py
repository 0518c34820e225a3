"""Argument types and checks shared by the commands that train, prune, compress and quantize:
each turns a bad value into one line (argparse's exit 2) before anything heavy is imported."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["StatusLine", "bits", "check_data", "compression_errors", "count", "layer_sparsity", "positive_number",
           "sparsity"]


def _number(text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        return None


def bits(text: str) -> int:
    """Bits per weight code or index: an integer from 1 to 8."""
    value = _number(text, int)
    if value is None or not 1 <= value <= 8:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 8, got {text!r}")
    return value


def sparsity(text: str) -> float:
    """A fraction of weights pruned, in [0, 1)."""
    value = _number(text, float)
    if value is None or not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"the sparsity (fraction of weights pruned) must be in [0, 1), got {text!r}")
    return value


def count(text: str) -> int:
    """A non-negative integer (epochs, batches)."""
    value = _number(text, int)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """A finite number > 0 (a learning rate)."""
    value = _number(text, float)
    if value is None or not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def layer_sparsity(text: str | None) -> Any:
    """``--layer-sparsity``: None, ``paper``, or the JSON file's object (its names and values are
    checked by the library); a missing, unreadable or non-object file is one line."""
    from cnnlab.cli.errors import UsageError

    if text is None or text == "paper":
        return text
    try:
        value = json.loads(Path(text).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--layer-sparsity {text}: no such file (give a JSON file or paper)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--layer-sparsity {text}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--layer-sparsity {text}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f'--layer-sparsity {text}: must be a JSON object {{"layer name": sparsity, ...}}')
    return value


def check_data(text: str | None) -> None:
    """``--data``'s spelling checked (``cnnlab.train.data.parse_data``) without loading anything."""
    if text is None:
        return
    from cnnlab.cli.errors import UsageError
    from cnnlab.train.data import DataError, parse_data

    try:
        parse_data(text)
    except DataError as exc:
        raise UsageError(str(exc)) from exc


class StatusLine:
    """A rich status line on a terminal's stderr (``with StatusLine("compressing") as update:``,
    then ``update(text)``); ``update`` is None when stderr is piped, and nothing is drawn."""

    def __init__(self, first: str) -> None:
        self.first = first
        self.status: Any = None

    def __enter__(self) -> Callable[[str], None] | None:
        if not sys.stderr.isatty():
            return None
        from rich.console import Console

        self.status = Console(stderr=True).status(self.first)
        self.status.__enter__()
        return self.status.update

    def __exit__(self, *exc: Any) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)


@contextlib.contextmanager
def compression_errors() -> Iterator[None]:
    """The compression library's errors as the command line's: bad options or data are usage
    errors (exit 2), an unusable checkpoint exits 1; each one line."""
    from cnnlab.cli.errors import Failure, UsageError
    from cnnlab.compress import CompressError
    from cnnlab.train.checkpoint import CheckpointError
    from cnnlab.train.data import DataError

    try:
        yield
    except (CompressError, DataError) as exc:
        raise UsageError(str(exc)) from exc
    except CheckpointError as exc:
        raise Failure(1, str(exc), exc) from exc
