"""The ``cnnlab`` command line. ``cli`` only dispatches: each command is one module of this
package (``report``, ``models``, ``info``, ``profile``, ``compare``, ``rf``, ``bench``, ``roofline``,
``guidelines``, ``train``, ``eval``, ``predict``, ``prune``, ``compress``, ``decompress``,
``export``, ``quantize``) with ``add_parser(subparsers)`` and ``run(args) -> exit code``; the
work is done by the library (``cnnlab.catalog``, ``cnnlab.analyze``, ``cnnlab.train``,
``cnnlab.compress``, ``cnnlab.export``, ``cnnlab.quantize``).

Nothing here imports torch: ``cnnlab --help`` and usage errors stay fast. A command's ``run``
imports what it needs.

Exit codes: 0 success; 1 an exception raised by the user's own code (their file, factory or
forward), or a model that cannot run on the meta device; 2 bad input (usage errors, unknown
model, invalid ``--input``/``--arg``, cnnlab's validation errors); 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from cnnlab.cli.common import CnnlabParser, HelpFormatter, report_errors

__all__ = ["main", "build_parser", "COMMANDS"]

# One module per command, in the order `cnnlab --help` lists them.
COMMANDS = ("report", "models", "info", "profile", "compare", "rf", "bench", "roofline", "guidelines", "train", "eval",
            "predict", "prune", "compress", "decompress", "export", "quantize")


def build_parser() -> CnnlabParser:
    """The top-level parser with one sub-parser per command module."""
    parser = CnnlabParser(
        prog="cnnlab",
        description="A laboratory for convolutional network architectures.",
        epilog="Run `cnnlab COMMAND --help` for a command's options.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the cnnlab and torch versions and exit")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=CnnlabParser, help="the command to run"
    )
    for name in COMMANDS:
        module = importlib.import_module(f"cnnlab.cli.{name}")
        command = module.add_parser(sub)
        command.set_defaults(run=module.run, parser=command)
    return parser


def _versions() -> str:
    """``cnnlab X (torch Y, Python Z)`` without importing torch."""
    from importlib import metadata

    import cnnlab

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    python = ".".join(map(str, sys.version_info[:3]))
    return f"cnnlab {cnnlab.__version__} (torch {torch_version}, Python {python})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cnnlab`` console script and ``python -m cnnlab``; returns the exit
    code (``--help`` returns 0 instead of raising SystemExit)."""
    parser = build_parser()
    with report_errors(argv) as outcome:
        args, extra = parser.parse_known_args(argv)
        if extra:  # the command's own parser names its --help
            getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
        if args.version:
            print(_versions())
            return 0
        if args.command is None:
            parser.error("a command is required: one of " + ", ".join(COMMANDS))
        outcome.args = args
        return args.run(args)
    return outcome.code
