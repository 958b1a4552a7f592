"""Pure-tensor physics: slab coefficients, the Jones-chain channel engine, channel quantities.

The names below load their (torch) modules on first use, so the pure submodule
:mod:`rftwin.physics.antenna_names` imports without torch (the command line checks antenna names with it).
"""
from __future__ import annotations

_LAZY = {"link_sum": "channel", "path_gain": "channel", "path_power": "channel",
         "subcarrier_frequencies": "channel", "to_db": "channel", "MaterialValues": "engine",
         "path_coefficients": "engine", "cfr_from_paths": "features", "delay_moments": "features",
         "complex_permittivity": "slab", "slab_coefficients": "slab"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(f"rftwin.physics.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'rftwin.physics' has no attribute {name!r}")


__all__ = ["MaterialValues", "cfr_from_paths", "complex_permittivity", "delay_moments", "link_sum", "path_coefficients",
           "path_gain", "path_power", "slab_coefficients", "subcarrier_frequencies", "to_db"]
