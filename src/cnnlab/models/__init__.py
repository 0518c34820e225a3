"""The zoo. Every module in this package registers its variants on import; importing the
package imports them all, so adding a family is adding a file."""

from __future__ import annotations

import importlib
import pkgutil

_SHARED = {"base", "layers", "keys"}

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name not in _SHARED and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
