"""Sionna RT as the source of simulated measurements: per-path and per-link power of a trace's own coefficients.

``PathSet.a_ref`` [N, R, T] holds Sionna's path coefficients under the radio materials the scene had when it was
traced, so a trace of a scene set to "true" materials is a simulated measurement. The one helper for that, used by
the demo, the studies and the benchmarks.
"""
from __future__ import annotations

import numpy as np

from rftwin.pathset import PathSet
from rftwin.scene.scene_materials import SceneMaterials
from rftwin.trace.tracer import SolverSettings, trace


def reference_path_power(ps: PathSet) -> np.ndarray:
    """Sionna's power of every path [N] (linear): |a_ref|^2 averaged over antenna-pattern pairs."""
    return (ps.a_ref.abs() ** 2).mean(dim=(1, 2)).numpy()


def reference_link_power(ps: PathSet) -> np.ndarray:
    """Sionna's path gain per link [L] (linear): the incoherent sum of its paths' powers (0 without paths)."""
    return np.bincount(ps.link.numpy(), reference_path_power(ps), minlength=ps.num_links)


def reference_path_gain_db(ps: PathSet) -> np.ndarray:
    """Sionna's path gain per link [L] (dB; -inf for links without paths)."""
    with np.errstate(divide="ignore"):
        return 10 * np.log10(reference_link_power(ps))


def trace_path_gain_db(twin, tx: np.ndarray, rx: np.ndarray, settings: SolverSettings, cache_dir=None,
                       progress: bool = True, materials: SceneMaterials | None = None
                       ) -> tuple[PathSet, np.ndarray]:
    """Trace ``twin`` (a :class:`rftwin.scene.TwinScene`) at the materials to simulate (``materials``, e.g. the
    true ones; None: the scene's own) for the links ``tx``/``rx`` [L, 3] (m) and return the PathSet and Sionna's
    path gain per link [L] (dB, -inf without paths). ``cache_dir``: as :func:`rftwin.trace.trace` (``False``: no
    cache). The scene is left as it was."""
    ps = trace(twin, tx, rx, settings, cache_dir=cache_dir, progress=progress, materials=materials)
    return ps, reference_path_gain_db(ps)


__all__ = ["reference_link_power", "reference_path_gain_db", "reference_path_power", "trace_path_gain_db"]
