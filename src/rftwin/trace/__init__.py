"""Tracing with Sionna RT into cached PathSets (:mod:`rftwin.pathset`).

The names below load :mod:`rftwin.trace.tracer` (torch, Sionna) on first use, so the pure submodules
(:mod:`rftwin.trace.budget`) import in milliseconds: the command line checks ``--memory-budget`` with them before
any heavy import.
"""
from __future__ import annotations

_LAZY = {"AntennaSpec": "rftwin.trace.tracer", "SolverSettings": "rftwin.trace.tracer",
         "trace": "rftwin.trace.tracer", "SceneMaterials": "rftwin.scene.scene_materials"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rftwin.trace' has no attribute {name!r}")


__all__ = ["AntennaSpec", "SceneMaterials", "SolverSettings", "trace"]
