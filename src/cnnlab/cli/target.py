"""From the command line to an analysis: the model (a registered name or ``path/to/file.py:attr``),
its ``--arg`` keyword arguments, its inputs (``--input``/``--inputs``/``--batch``) and the
``analyze`` call, each step's errors classified by ``cnnlab.cli.errors``.

``--input`` semantics (documented in the commands' help, ``INPUT_HELP``):

* A registered model takes one image: ``C x H x W``, ``H x W`` or one side ``S`` (square). Two
  values are always H x W. Without ``--input`` the model's native size is used, with the
  channels of the model as built (``--arg in_channels=1`` analyses a 1-channel input). Four or
  more values, or a channel count the model was not built for, are refused.
* Your own model (``file.py:attr``) gets exactly the shape you give: ``--input`` is one
  sample's full shape without the batch (``3x224x224`` for an image model, ``32`` for an MLP
  on 32 features). Repeat ``--input`` for a forward that takes several tensors, in order.
  ``--inputs file.py:make`` names an input constructor instead: ``make(device, dtype)``
  returns the positional arguments (a tuple) or keyword arguments (a dict). An error while
  the model runs says which input shapes it was given.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import inspect
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from cnnlab.cli.errors import USER_ERRORS, Failure, ModuleTracker, UsageError, classify

__all__ = [
    "INPUT_HELP",
    "add_analysis_options",
    "analyse",
    "is_user_spec",
    "parse_dims",
    "parse_kwargs",
    "registered_shape",
    "sample_targets",
]

INPUT_HELP = (
    "a registered model: C x H x W (3x224x224), H x W (224x224) or one side (224); two values "
    "are H x W. Your own model (file.py:attr): one sample's full shape without the batch "
    "(3x224x224, or 32 for 32 features), repeated for a forward that takes several tensors. "
    "Default: the registered model's native size"
)
_MAX_DIM = 2**31 - 1  # a dimension torch can index
_MAX_NUMEL = 2**63 - 1


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that analyses a model (profile, compare, rf)."""
    parser.add_argument("--input", action="append", default=[], metavar="SHAPE", help=INPUT_HELP)
    parser.add_argument(
        "--inputs", metavar="FILE.py:FUNC",
        help="your own model's input constructor instead of --input: FUNC(device, dtype) returns "
             "the forward's positional arguments (a tuple) or keyword arguments (a dict)",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size of each --input tensor")
    parser.add_argument(
        "--arg", action="append", default=[], metavar="KEY=VALUE",
        help="keyword argument of the model's builder (Python literal or a bare word), "
             "repeatable; `cnnlab info NAME` lists them",
    )
    parser.add_argument("--fold-bn", action="store_true", help="analyse as if each BatchNorm were folded into its conv")
    parser.add_argument(
        "--real", action="store_true",
        help="build and run the model on the CPU with real tensors instead of the meta device "
             "(needed when the forward reads tensor values)",
    )


# -- parsing ------------------------------------------------------------------------------------
def parse_dims(text: str, option: str = "--input") -> tuple[int, ...]:
    """``"3x224x224"`` -> ``(3, 224, 224)``; one line UsageError for anything else."""
    parts = [p.strip() for p in text.lower().replace("×", "x").split("x")]
    if not parts or not all(p.isdigit() and p.isascii() for p in parts):
        raise UsageError(f"{option} must look like 3x224x224, 224x224 or 224, got {text!r}")
    dims = tuple(int(p) for p in parts)
    if any(d < 1 for d in dims):
        raise UsageError(f"{option} dimensions must be positive, got {text!r}")
    too_big = next((d for d in dims if d > _MAX_DIM), None)
    if too_big is not None:
        raise UsageError(f"{option} {text!r}: {too_big} is too large (at most {_MAX_DIM:,} per dimension)")
    return dims


def _check_size(shape: Sequence[int], given: str, itemsize: int = 4) -> None:
    """Refuse an input tensor torch cannot allocate, even on meta: its size in bytes must fit
    in a 64-bit integer (torch raises "Storage size calculation overflowed" otherwise)."""
    numel = 1
    for d in shape:
        numel *= d
    if numel * itemsize > _MAX_NUMEL:
        raise UsageError(
            f"{given}: an input of {'x'.join(map(str, shape))} is {numel * itemsize:.3g} bytes, more than "
            f"a tensor can hold (at most {_MAX_NUMEL:.3g}); give a smaller --input or --batch"
        )


def parse_kwargs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["dropout=0.2", "norm=batch"]`` -> ``{"dropout": 0.2, "norm": "batch"}``: values are
    Python literals, a bare word is a string."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--arg takes key=value (e.g. --arg dropout=0.2), got {pair!r}")
        if key in kwargs:
            raise UsageError(f"--arg {key} is given twice")
        try:
            kwargs[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            kwargs[key] = raw.strip()  # a bare word is a string
        value = kwargs[key]
        if isinstance(value, int) and not -_MAX_NUMEL - 1 <= value <= _MAX_NUMEL:
            raise UsageError(f"--arg {key}={value}: too large, torch takes 64-bit integers")
    return kwargs


def is_user_spec(spec: str) -> bool:
    """``path/to/file.py:attr`` rather than a registered name."""
    path, sep, attr = spec.rpartition(":")
    return bool(sep) and path.endswith(".py")


def not_a_name(spec: str) -> str | None:
    """Why ``spec``, not a registered name, is not ``path/to/file.py:attr`` either: a ``.py``
    path without ``:attr``, a file that is not ``.py``, a colon in a name; None for a plain
    unknown name (the registry's "did you mean" says more)."""
    own = "a model of your own is path/to/file.py:attr"
    path_text, sep, _ = spec.rpartition(":")
    path = Path(path_text if sep else spec)
    if not sep and spec.endswith(".py"):
        if not path.is_file():
            return f"no such file {spec!r}, nor a registered model; {own}"
        return (f"{spec!r} is a file: name the model in it, e.g. {spec}:Net ({own}: an nn.Module, or a "
                "class or function returning one)")
    if path.is_file():
        unknown = "" if sep else f"unknown model {spec!r}, and "
        return f"{unknown}{str(path)!r} is not a .py file; {own}"
    if sep:
        return f"unknown model {spec!r}; {own} (a .py file), a registered one a name from `cnnlab models`"
    return None


def registered_info(name: str) -> Any:
    """``model_info(name)`` with the CLI's hints: a file given where a name was expected, a name
    in the wrong case (``ResNet50`` -> ``resnet50``)."""
    from cnnlab.registry import model_info

    try:
        return model_info(name)
    except ValueError as exc:
        problem = not_a_name(name)
        if problem is not None:
            raise UsageError(problem) from None
        if name != name.lower() and str(exc).startswith("unknown model"):
            with contextlib.suppress(ValueError, TypeError):
                model_info(name.lower())
                raise UsageError(
                    f"unknown model {name!r}; did you mean {name.lower()!r}? (names are lower case)"
                ) from None
        raise classify(exc) from exc


def registered_shape(name: str, dims_list: Sequence[tuple[int, ...]], texts: Sequence[str],
                     native: tuple[int, int, int], channels: int, batch: int) -> tuple[int, ...]:
    """The full input shape (batch first) for a registered model; see the module docstring."""
    if len(dims_list) > 1:
        raise UsageError(f"{name} takes one input; --input was given {len(dims_list)} times")
    if not dims_list:
        shape = (batch, channels, native[1], native[2])
    else:
        dims, text = dims_list[0], texts[0]
        if len(dims) == 1:
            shape = (batch, channels, dims[0], dims[0])
        elif len(dims) == 2:
            shape = (batch, channels, *dims)
        elif len(dims) == 3:
            if dims[0] != channels:
                raise UsageError(
                    f"{name} is built for {channels} input channel{'s' if channels != 1 else ''} but --input {text} has "
                    f"{dims[0]}; add --arg in_channels={dims[0]} or give H x W only"
                )
            shape = (batch, *dims)
        else:
            raise UsageError(
                f"--input for {name} is one image, C x H x W, H x W or one side S (the batch is "
                f"--batch); got {len(dims)} values in {text!r}"
            )
    given = f"--input {texts[0]} with --batch {batch}" if dims_list else f"--batch {batch}"
    _check_size(shape, given)
    return shape


# -- the user's files ---------------------------------------------------------------------------
@contextlib.contextmanager
def _folder_on_path(folder: Path) -> Iterator[None]:
    """The user's folder first on ``sys.path`` (their file imports its siblings)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _import_user_file(path: Path, label: str) -> Any:
    """Import the user's file as a module (on the default device: a file that computes with
    tensors at import time works). Any exception is the user's: exit 1."""
    module_name = f"_cnnlab_user_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {str(path)!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look themselves up here
    stderr = io.StringIO()
    try:
        # A script's top level may parse arguments: give it its own name only, not cnnlab's
        # command line, and keep what it prints on stderr until we know whether it exited.
        with _script_argv(path), contextlib.redirect_stderr(stderr):
            spec.loader.exec_module(module)
    except USER_ERRORS as exc:
        del sys.modules[module_name]
        said = stderr.getvalue().strip().splitlines()
        note = ""
        if isinstance(exc, SystemExit):
            note = f" (it printed: {said[-1].strip()})" if said else ""
            note += ("; the file's top level runs when it is imported: guard a script's part with "
                     "`if __name__ == '__main__':`")
        raise classify(exc, stage="import", label=str(path), user_root=path.parent.resolve(), note=note) from exc
    sys.stderr.write(stderr.getvalue())
    return module


@contextlib.contextmanager
def _script_argv(path: Path) -> Iterator[None]:
    saved = sys.argv
    sys.argv = [str(path)]
    try:
        yield
    finally:
        sys.argv = saved


def _user_attr(spec: str, option: str) -> tuple[Any, Path]:
    """The object ``attr`` of ``path/to/file.py:attr`` and the file's folder."""
    path_text, _, attr = spec.rpartition(":")
    path = Path(path_text)
    if path.is_dir():
        raise UsageError(f"{path_text!r} is a directory; {option} takes path/to/file.py:attr")
    if not path.is_file():
        raise UsageError(f"no such file {path_text!r} ({option} takes path/to/file.py:attr)")
    if not attr.isidentifier():
        raise UsageError(f"{spec!r}: after the colon comes a name in the file, e.g. {path_text}:Net")
    module = _import_user_file(path, spec)
    if not hasattr(module, attr):
        raise UsageError(f"{path_text} has no attribute {attr!r}")
    return getattr(module, attr), path.parent.resolve()


def _check_call(func: Callable[..., Any], kwargs: dict[str, Any], label: str) -> None:
    """``--arg`` keys the user's factory accepts, and values of the type its defaults have."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin or C callable: let the call decide
        return
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key, value in kwargs.items():
        if key not in params and not takes_any:
            accepted = ", ".join(named) or "no arguments"
            raise UsageError(f"--arg {key}: {label} does not accept {key!r}; it accepts {accepted}")
        if key in params:
            _check_type(key, value, _expected_type(params[key]))
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        if kwargs:
            raise UsageError(f"--arg: {label}: {exc}") from None
        raise UsageError(
            f"{label} cannot be called without arguments ({exc}); name an nn.Module, or a class or "
            "function that builds one from keyword arguments (--arg)"
        ) from None


def _expected_type(param: inspect.Parameter) -> str:
    """The type ``--arg`` checks for a parameter of the user's factory: its annotation when it
    is a simple one (``int``, ``float | None``), else what its default implies."""
    from cnnlab.catalog import Knob, annotation_text

    annotation = annotation_text(param.annotation)
    if Knob(param.name, None, annotation).types is not None:
        return annotation
    return _type_of_default(param.default)


def _type_of_default(default: Any) -> str:
    """The annotation a default value implies for ``--arg`` (an int default takes any number)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, (int, float)):
        return "float"
    if isinstance(default, str):
        return "str"
    return ""


def _check_type(key: str, value: Any, annotation: str) -> None:
    from cnnlab.catalog import Knob

    knob = Knob(key, None, annotation)
    if not knob.accepts(value):
        raise UsageError(f"--arg {key} expects {knob.expects()}, got {value!r}")


def _a(noun: str) -> str:
    """``"an int"``, ``"a str"``."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _build_user_model(obj: Any, spec: str, kwargs: dict[str, Any], root: Path, device: str) -> Any:
    """An nn.Module instance as it is, or a class/factory called with ``kwargs`` under
    ``torch.device(device)`` (only the model is built on meta, never the import)."""
    import torch
    from torch import nn

    if isinstance(obj, nn.Module):
        if kwargs:
            raise UsageError(f"{spec} is a module instance; --arg needs a class or a function")
        return obj
    if not callable(obj):
        raise UsageError(f"{spec} is {_a(type(obj).__name__)}, not an nn.Module, nor a class or function returning one")
    label = f"{getattr(obj, '__name__', spec.rpartition(':')[2])}()"
    _check_call(obj, kwargs, label)
    try:
        with torch.device(device):
            built = obj(**kwargs)
    except USER_ERRORS as exc:
        called = spec + "".join(f" --arg {k}={v!r}" for k, v in kwargs.items())
        raise classify(exc, stage="build", label=called, user_root=root, meta=device == "meta") from exc
    if not isinstance(built, nn.Module):
        raise UsageError(f"{spec} returned {type(built).__name__}, not an nn.Module")
    return built


# -- registered models ------------------------------------------------------------------------
def _build_registered(name: str, kwargs: dict[str, Any], device: str) -> tuple[Any, tuple[int, int, int]]:
    import torch

    from cnnlab.catalog import model_knobs
    from cnnlab.registry import create_model

    info = registered_info(name)
    try:
        knobs = {k.name: k for k in model_knobs(name)}
    except (ValueError, TypeError) as exc:
        raise classify(exc) from exc
    for key, value in kwargs.items():
        knob = knobs.get(key)
        if knob is not None and not knob.accepts(value):
            raise UsageError(f"--arg {key} expects {knob.expects()}, got {value!r}")
    try:
        with torch.device(device):
            model = create_model(name, **kwargs)
    except Exception as exc:
        label = name + "".join(f" --arg {k}={v!r}" for k, v in kwargs.items())
        raise classify(exc, stage="build", label=label, meta=device == "meta") from exc
    return model, tuple(info.input_size)


def _model_channels(model: Any, default: int) -> int:
    """The input channels the built model expects: its ``in_channels`` (the ConvNet interface),
    else the first convolution's, else ``default``."""
    from torch import nn

    channels = getattr(model, "in_channels", None)
    if isinstance(channels, int) and not isinstance(channels, bool) and channels > 0:
        return channels
    first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return first.in_channels if first is not None and not first.transposed else default


def _itemsize(model: Any) -> int:
    """Bytes per element of the model's inputs: its first floating-point parameter's, else fp32's."""
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    return first.element_size() if first is not None else 4


# -- the analysis -----------------------------------------------------------------------------
@dataclass
class _Plan:
    model: Any
    label: str
    input_size: tuple[int, ...] | None = None
    inputs: Any = None
    note: str = ""  # what the CLI understood of the input, for error messages
    notice: str = ""  # said on stderr after the analysis: how an ambiguous --input was read
    user_root: Path | None = None


def _plan(args: argparse.Namespace, spec: str) -> _Plan:
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    if args.batch > _MAX_DIM:
        raise UsageError(f"--batch {args.batch} is too large (at most {_MAX_DIM:,})")
    texts: list[str] = list(args.input or [])
    dims_list = [parse_dims(t) for t in texts]
    kwargs = parse_kwargs(args.arg)
    device = "cpu" if args.real else "meta"
    if not is_user_spec(spec):
        if args.inputs:
            raise UsageError("--inputs is for your own models (file.py:attr); a registered model takes --input")
        model, native = _build_registered(spec, kwargs, device)
        channels = _model_channels(model, native[0])
        shape = registered_shape(spec, dims_list, texts, native, channels, args.batch)
        notice = ""
        if len(dims_list) == 1 and len(dims_list[0]) == 2 and dims_list[0][0] == channels:
            notice = (f"--input {texts[0]} read as H x W, an input of {'x'.join(map(str, shape))}; "
                      f"give C x H x W (e.g. {channels}x{dims_list[0][1]}x{dims_list[0][1]}) for channels")
        return _Plan(model, spec, input_size=shape, note=notice, notice=notice)
    if texts and args.inputs:
        raise UsageError("give --input or --inputs, not both")
    obj, root = _user_attr(spec, "the model")
    model = _build_user_model(obj, spec, kwargs, root, device)
    if args.inputs:
        if not is_user_spec(args.inputs):
            raise UsageError(f"--inputs takes path/to/file.py:function, got {args.inputs!r}")
        if args.batch != 1:
            raise UsageError("--batch is the batch of --input shapes; with --inputs your constructor "
                             "makes the tensors, batch included")
        make, inputs_root = _user_attr(args.inputs, "--inputs")
        if not callable(make):
            raise UsageError(f"--inputs {args.inputs}: not a function")
        _check_constructor(make, args.inputs)
        return _Plan(model, spec, inputs=_guarded_constructor(make, args.inputs, inputs_root),
                     note=f"inputs from {args.inputs}", user_root=root)
    if not texts:
        raise UsageError(
            f"give the input of {spec} with --input: one sample's full shape without the batch, "
            "e.g. --input 3x224x224 (repeat --input for several tensors, or use --inputs)"
        )
    shapes = [(args.batch, *dims) for dims in dims_list]
    itemsize = _itemsize(model)
    for shape, text in zip(shapes, texts):
        _check_size(shape, f"--input {text} with --batch {args.batch}", itemsize)
    given = ", ".join(f"--input {t}" for t in texts)
    note = ("input shape " if len(shapes) == 1 else "input shapes ") + ", ".join(
        "x".join(map(str, s)) for s in shapes) + f" (--batch {args.batch}, {given})"
    if len(shapes) == 1:
        return _Plan(model, spec, input_size=shapes[0], note=note, user_root=root)
    return _Plan(model, spec, inputs=_zeros_constructor(shapes), note=note, user_root=root)


def _check_constructor(make: Callable[..., Any], spec: str) -> None:
    """The input constructor is called as ``make(device, dtype)``: say so before calling it."""
    try:
        inspect.signature(make).bind(None, None)
    except ValueError:  # no signature (a builtin): let the call decide
        return
    except TypeError as exc:
        raise UsageError(f"--inputs {spec}: the constructor is called as FUNC(device, dtype) ({exc})") from None


def _zeros_constructor(shapes: list[tuple[int, ...]]) -> Callable[[Any, Any], tuple[Any, ...]]:
    def make(device: Any, dtype: Any) -> tuple[Any, ...]:
        import torch

        return tuple(torch.zeros(shape, device=device, dtype=dtype) for shape in shapes)

    return make


class _InputsFailed(Exception):
    """The user's input constructor raised (wrapped so the forward's handler can tell)."""


def _guarded_constructor(make: Callable[..., Any], label: str, root: Path) -> Callable[[Any, Any], Any]:
    def call(device: Any, dtype: Any) -> Any:
        try:
            return make(device, dtype)
        except USER_ERRORS as exc:
            raise _InputsFailed(classify(exc, stage="inputs", label=label, user_root=root,
                                         meta=getattr(device, "type", device) == "meta")) from exc

    return call


def analyse(args: argparse.Namespace, spec: str) -> Any:
    """Build ``spec`` as the command line says and analyse it; errors become one-line Failures."""
    user_root = Path(spec.rpartition(":")[0]).resolve().parent if is_user_spec(spec) else None
    folders = [user_root] if user_root is not None else []
    if getattr(args, "inputs", None) and is_user_spec(args.inputs):
        folders.append(Path(args.inputs.rpartition(":")[0]).resolve().parent)
    with contextlib.ExitStack() as stack:
        for folder in folders:
            stack.enter_context(_folder_on_path(folder))
        # What the user's code prints goes to stderr: stdout carries only our table or JSON.
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        plan = _plan(args, spec)
        from cnnlab.analysis import analyze

        tracker = ModuleTracker()
        try:
            with tracker:
                if plan.input_size is not None:
                    result = analyze(plan.model, plan.input_size, device="cpu" if args.real else "meta",
                                     fold_bn=args.fold_bn)
                else:
                    result = analyze(plan.model, inputs=plan.inputs, device="cpu" if args.real else "meta",
                                     fold_bn=args.fold_bn)
        except _InputsFailed as exc:
            failure = exc.args[0]
            raise failure from exc.__cause__
        except USER_ERRORS as exc:
            raise classify(exc, stage="forward", label=plan.label, user_root=plan.user_root,
                           tracker=tracker, meta=not args.real, note=plan.note) from exc
    if plan.notice:  # after the analysis: a failure carries it in its one line instead
        print(f"cnnlab: note: {plan.notice}", file=sys.stderr)
    result.model = plan.label
    return result


def sample_targets(specs: Sequence[str], input_text: str | None, *, resolutions: bool = False,
                   ) -> list[tuple[str, Any, tuple[int, ...]]]:
    """The models that ``bench`` and ``roofline`` take, each as (label, registered name or the
    user's module built on the CPU, one sample's shape). ``input_text`` is ``--input``: for a
    registered model C x H x W, H x W or one side (default its native size); a user's module needs
    it unless ``resolutions`` give the sizes."""
    dims = parse_dims(input_text) if input_text else None
    out = []
    for spec in specs:
        if not is_user_spec(spec):
            info = registered_info(spec)
            channels, native = info.input_size[0], tuple(info.input_size)
            if dims is None:
                shape = native
            elif len(dims) == 1:
                shape = (channels, dims[0], dims[0])
            elif len(dims) == 2:
                shape = (channels, *dims)
            elif len(dims) == 3 and dims[0] == channels:
                shape = dims
            else:
                raise UsageError(f"--input for {spec} is C x H x W with C = {channels}, H x W or one side; "
                                 f"got {input_text!r}")
            out.append((spec, spec, shape))
            continue
        if dims is None and not resolutions:
            raise UsageError(f"give the input of {spec} with --input, e.g. --input 3x224x224")
        folder = Path(spec.rpartition(":")[0]).resolve().parent
        with _folder_on_path(folder), contextlib.redirect_stdout(sys.stderr):
            obj, root = _user_attr(spec, "the model")
            model = _build_user_model(obj, spec, {}, root, "cpu")
        out.append((spec, model, dims if dims is not None else (3, 224, 224)))
    return out
