"""Package names loaded on first use (PEP 562), so light submodules import without torch or Sionna.

A package's ``__init__`` says which module holds each name::

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"rftwin.calibrate.loop": ("calibrate", ...), ...})

The command line checks its arguments with the light submodules before anything heavy loads.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence


def lazy_exports(package: str, where: Mapping[str, Sequence[str]]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """(``__getattr__``, ``__dir__``, ``__all__``) of ``package`` for names held by the modules of ``where``
    (module name -> names); a name is imported once, then kept in the package's namespace."""
    module_of = {name: mod for mod, names in where.items() for name in names}

    def __getattr__(name: str):
        mod = module_of.get(name)
        if mod is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(mod), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(module_of))

    return __getattr__, __dir__, sorted(module_of)


__all__ = ["lazy_exports"]
