"""Package attributes imported on first use, so that importing a package (and the command
line's ``--help``) does not import torch until a public name is needed."""

from __future__ import annotations

import importlib
import sys


def lazy_getattr(package: str, public: dict[str, str]):
    """A module ``__getattr__`` for ``package``: ``public`` maps each name to the submodule
    (relative to ``package``) that defines it; the value is cached on the package."""

    def __getattr__(name: str):
        if name in public:
            value = getattr(importlib.import_module(public[name], package), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
