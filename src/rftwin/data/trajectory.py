"""Trajectories of moving proxies (CSV/Parquet): ``x``, ``y``, ``z`` (m, bounding-box centre of the proxy) and
optional ``t_s`` (s, strictly increasing; default: the step index). Errors name the file, row (CSV line) and
column; every point must keep the proxy inside the scene's bounding box."""
from __future__ import annotations

import os

import numpy as np

from rftwin.data.measurements import MeasurementError, Problem, _check_columns, _numeric, _raise_if, _read_table


def read_trajectory(path: str | os.PathLike, bbox: tuple[np.ndarray, np.ndarray] | None = None,
                    half_size: np.ndarray | None = None, tolerance_m: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """(times [T] in s, positions [T, 3] in m) of a trajectory file; with ``bbox`` (lo, hi) and the proxy's
    ``half_size`` [3], points that put the proxy outside the scene are errors."""
    raw = _read_table(path, "trajectory")
    _check_columns(raw, ("x", "y", "z"), ("t_s", "x", "y", "z"))
    problems: list[Problem] = []
    cols = [c for c in ("t_s", "x", "y", "z") if c in raw.columns]
    vals = {c: _numeric(raw, c, problems) for c in cols}
    _raise_if(raw.source, problems)
    if raw.n == 0:
        raise MeasurementError(raw.source, "the trajectory has no rows")
    pos = np.stack([vals["x"], vals["y"], vals["z"]], 1)
    t = vals["t_s"] if "t_s" in vals else np.arange(raw.n, dtype=np.float64)
    for i in range(1, raw.n):
        if t[i] <= t[i - 1]:
            problems.append(Problem(f"times must increase strictly: {t[i]:g} s after {t[i - 1]:g} s",
                                    columns=("t_s",), **raw.where(i)))
    if bbox is not None:
        lo, hi = (np.asarray(b, dtype=np.float64) for b in bbox)
        h = np.zeros(3) if half_size is None else np.asarray(half_size, dtype=np.float64)
        for i in range(raw.n):
            out = (pos[i] - h < lo - tolerance_m) | (pos[i] + h > hi + tolerance_m)
            if out.any():
                axes = [c for c, o in zip("xyz", out) if o]
                problems.append(Problem(
                    f"the proxy at ({pos[i][0]:g}, {pos[i][1]:g}, {pos[i][2]:g}) m (half size "
                    f"{', '.join(f'{v:g}' for v in h)} m) leaves the scene's bounding box "
                    f"[{', '.join(f'{v:g}' for v in lo)}] .. [{', '.join(f'{v:g}' for v in hi)}] m along "
                    f"{', '.join(axes)}", columns=tuple(axes), **raw.where(i)))
    _raise_if(raw.source, problems)
    return t, pos


__all__ = ["read_trajectory"]
