"""Whose fault is an exception, and the one line that says so.

* cnnlab's own validation (argparse, the registry, ``create_model``, ``analyze``, a zoo model's
  input check) raises ValueError/TypeError from inside the cnnlab package: exit 2, the message
  as it is.
* An exception raised while the user's code runs (importing their file, calling their factory,
  their module's forward) exits 1 with one line: the exception, the module that was running
  (its qualified name in the model), and the file:line of the innermost frame in the user's
  files. ``--traceback`` shows the whole trace.
* A model that reads tensor values (``if x.sum() > 0``, ``.item()``) cannot run on the meta
  device: one line that suggests ``--real``.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any

__all__ = [
    "TRACE_HINT", "USER_ERRORS", "Failure", "ModuleTracker", "UsageError", "classify", "describe", "is_meta_error",
    "one_line",
]


# What the user's code may raise that we report as its error: a script's ``sys.exit()`` (or
# its argparse giving up) included, which would otherwise end cnnlab silently.
USER_ERRORS = (Exception, SystemExit)


class UsageError(Exception):
    """Bad command-line input, found by the CLI itself: one line, exit 2."""


class Failure(Exception):
    """An error already put into words: the exit code, the line, and the exception behind it
    (for ``--traceback``)."""

    def __init__(self, code: int, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.cause = cause


_META_MARKERS = (
    "meta tensor",
    "meta device",
    "on meta",
    "meta type",
    "doesn't have storage",
)

# said after a user-code error's line; dropped when --traceback printed the trace
TRACE_HINT = " (--traceback for the whole trace)"
# torch's message when a tensor's size in bytes does not fit in 64 bits
_OVERFLOW = "Storage size calculation overflowed"


def is_meta_error(exc: BaseException) -> bool:
    """Whether ``exc`` says a tensor's values were needed on the meta device (``.item()``,
    ``bool(tensor)``, ``.tolist()``, ``.numpy()``, a data pointer)."""
    text = str(exc).lower()
    return "meta" in text and any(marker in text for marker in _META_MARKERS)


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of the message (torch's messages run over many lines)."""
    if isinstance(exc, SystemExit):
        return f"the code called sys.exit({exc.code!r})"
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), "")


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``."""
    first = _first_line(exc)
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def describe(exc: BaseException, running: str | None, where: str | None) -> str:
    """``RuntimeError in module 'layer2.0.conv1' (Conv2d) at net.py:12: message``."""
    head = type(exc).__name__
    if running:
        head += f" in {running}"
    if where:
        head += f" at {where}"
    first = _first_line(exc)
    return f"{head}: {first}" if first else head


def _cnnlab_dir() -> str:
    import cnnlab

    return os.path.dirname(os.path.abspath(cnnlab.__file__)) + os.sep


def _library_dirs() -> tuple[str, ...]:
    """Where installed code lives (stdlib, site-packages, the virtualenv): never the user's."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(path)
    return tuple(os.path.abspath(d) + os.sep for d in dirs)


def in_cnnlab(filename: str) -> bool:
    """Whether ``filename`` is part of the cnnlab package."""
    return os.path.abspath(filename).startswith(_cnnlab_dir())


def is_user_file(filename: str, user_root: Path | None) -> bool:
    """A frame of the user's own code: under the folder of the file they named (their file and
    its siblings), and neither cnnlab's, nor the stdlib's, nor an installed package's."""
    if user_root is None or filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    root = str(user_root.resolve()) + os.sep
    if not (path.startswith(root) or os.path.realpath(path).startswith(root)):
        return False
    return not in_cnnlab(path) and not path.startswith(_library_dirs())


def _frames(exc: BaseException) -> list[tuple[str, int]]:
    return [(frame.f_code.co_filename, lineno) for frame, lineno in traceback.walk_tb(exc.__traceback__)]


def _short(filename: str) -> str:
    """``filename`` relative to the working directory when it is below it."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
    return filename if relative.startswith("..") else relative


def user_location(exc: BaseException, user_root: Path | None) -> str | None:
    """``file.py:LINE`` of the innermost frame in the user's files (a SyntaxError's own
    location when it is in them), or None."""
    if isinstance(exc, SyntaxError) and exc.filename and is_user_file(exc.filename, user_root):
        return f"{_short(exc.filename)}:{exc.lineno}"
    found = [f"{_short(name)}:{line}" for name, line in _frames(exc) if is_user_file(name, user_root)]
    return found[-1] if found else None


def raised_in_cnnlab(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is cnnlab's (a validation error of ours)."""
    frames = _frames(exc)
    return bool(frames) and in_cnnlab(frames[-1][0])


class ModuleTracker:
    """Records which modules' forwards are running (global forward hooks, while active), so an
    exception can name the innermost one by its qualified name in the model.

    The first module entered is taken as the model's root: names are looked up in it, so the
    analyzer's own copy of a model gives the same names as the user's model.
    """

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self._handles: list[Any] = []

    def __enter__(self) -> "ModuleTracker":
        from torch.nn.modules import module as torch_module

        self.stack = []
        self._handles = [
            torch_module.register_module_forward_pre_hook(self._enter),
            torch_module.register_module_forward_hook(self._leave),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _enter(self, module: Any, args: Any) -> None:
        self.stack.append(module)

    def _leave(self, module: Any, args: Any, output: Any) -> None:
        # Pop up to and including ``module``: a child that raised inside a try/except the
        # user's forward caught never reached this hook.
        while self.stack:
            if self.stack.pop() is module:
                break

    def running(self) -> str | None:
        """``'layer2.0.conv1' (Conv2d)`` for the innermost running module, ``the model's
        forward (Net)`` for the root, None when no forward was running."""
        if not self.stack:
            return None
        root, inner = self.stack[0], self.stack[-1]
        if inner is root:
            return f"the model's forward ({type(root).__name__})"
        name = next((n for n, m in root.named_modules(remove_duplicate=False) if m is inner), None)
        if name is None:
            return f"a {type(inner).__name__} module"
        return f"module '{name}' ({type(inner).__name__})"


def classify(
    exc: BaseException,
    *,
    stage: str = "",
    label: str = "",
    user_root: Path | None = None,
    tracker: ModuleTracker | None = None,
    meta: bool = False,
    note: str = "",
) -> Failure:
    """The exit code and line for ``exc``.

    ``stage`` says what was running: ``"import"`` (the user's file), ``"build"`` (a factory or
    ``create_model``), ``"inputs"`` (the user's input constructor), ``"forward"`` (the
    analysis), or ``""`` (anything else). ``user_root`` is the folder of the user's file (None
    for a zoo model); ``meta`` whether the model was built or run on the meta device; ``note``
    what the CLI understood of the input, added to errors raised while the model ran.
    """
    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, UsageError):
        return Failure(2, str(exc), exc)
    where = user_location(exc, user_root)
    running = tracker.running() if tracker is not None else None
    text = describe(exc, running, where)
    who = f"{label}: " if label else ""
    user_code = user_root is not None
    if meta and is_meta_error(exc):
        return Failure(1, (
            f"{who}cannot run on the meta device: {text}; the model reads tensor values "
            "(data-dependent control flow, .item(), .tolist()); rerun with --real"
        ), exc)
    trace_hint = TRACE_HINT
    if stage == "forward" and _OVERFLOW in str(exc):
        # A tensor the input size makes too large to address (an upsampling of a huge
        # input): the command line's numbers, not a bug in the model.
        extra = f"; {note}" if note else ""
        return Failure(2, f"{who}{text}{extra}; the input is too large for this model: give a smaller "
                          "--input or --batch", exc)
    if stage == "import":
        return Failure(1, f"importing {label} failed: {text}{note}{trace_hint}", exc)
    if user_code and (where is not None or running is not None or stage in ("build", "inputs")):
        # Raised by the user's code, or by torch while the user's model ran (a shape mismatch
        # in an nn.Conv2d of their nn.Sequential has no frame in their files).
        extra = f"; {note}" if note and stage == "forward" else ""
        return Failure(1, f"{who}{text}{extra}{trace_hint}", exc)
    if isinstance(exc, (ValueError, TypeError)) and raised_in_cnnlab(exc):
        extra = f"; {note}" if note and stage == "forward" else ""
        return Failure(2, (_first_line(exc) or one_line(exc)) + extra, exc)
    if stage == "build" and isinstance(exc, (ValueError, TypeError)):
        # torch's own argument checks tripped by an --arg value (``in_channels must be
        # divisible by groups``): still the user's input, not a crash.
        return Failure(2, f"{who}{one_line(exc)}", exc)
    extra = f"; {note}" if note and stage == "forward" else ""
    return Failure(1, f"{who}{text}{extra}{trace_hint}", exc)
