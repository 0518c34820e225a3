"""cnnlab: a laboratory for convolutional network architectures.

    >>> import cnnlab
    >>> cnnlab.list_models("vgg1?")
    ['vgg11', 'vgg13', 'vgg16', 'vgg19']
    >>> model = cnnlab.create_model("vgg16", num_classes=10)

The public names are imported on first use (PEP 562), so ``import cnnlab`` and the command
line's ``--help`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs; at run time see __getattr__
    from cnnlab.analysis import Analysis, analyze
    from cnnlab.registry import ModelInfo, Paper, create_model, list_models, model_info

__all__ = ["Analysis", "analyze", "ModelInfo", "Paper", "create_model", "fuse_bn", "list_models", "model_info"]
__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "Analysis": "cnnlab.analysis",
    "analyze": "cnnlab.analysis",
    "ModelInfo": "cnnlab.registry",
    "Paper": "cnnlab.registry",
    "create_model": "cnnlab.registry",
    "fuse_bn": "cnnlab.fuse",
    "list_models": "cnnlab.registry",
    "model_info": "cnnlab.registry",
}


# submodules reachable as attributes after a bare ``import cnnlab`` (``cnnlab.registry.X``), as
# they were when this file imported them eagerly
_SUBMODULES = ("analysis", "catalog", "models", "registry")


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and keep the name in the namespace."""
    if name in _SUBMODULES:
        return importlib.import_module(f"cnnlab.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
