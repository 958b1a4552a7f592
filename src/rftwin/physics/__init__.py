"""Pure-tensor physics: slab coefficients, the Jones-chain channel engine, channel quantities.

The names below load their (torch) modules on first use, so the pure submodule
:mod:`rftwin.physics.antenna_names` imports without torch (the command line checks antenna names with it).
"""
from __future__ import annotations

from rftwin.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "rftwin.physics.channel": ("link_sum", "path_gain", "path_power", "subcarrier_frequencies", "to_db"),
    "rftwin.physics.engine": ("MaterialValues", "path_coefficients"),
    "rftwin.physics.features": ("cfr_from_paths", "delay_moments"),
    "rftwin.physics.slab": ("complex_permittivity", "slab_coefficients"),
})
