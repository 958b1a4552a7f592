"""Tracing with Sionna RT into cached PathSets (:mod:`rftwin.pathset`).

The names below load :mod:`rftwin.trace.tracer` (torch, Sionna) on first use, so the pure submodules
(:mod:`rftwin.trace.budget`) import in milliseconds: the command line checks ``--memory-budget`` with them before
any heavy import.
"""
from __future__ import annotations

from rftwin.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "rftwin.trace.tracer": ("AntennaSpec", "SolverSettings", "trace"),
    "rftwin.scene.scene_materials": ("SceneMaterials",),
})
