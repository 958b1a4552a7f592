"""RIS planning inputs: candidate poses (CSV/Parquet) and target areas (a box string or a file of points).
Errors name the file, row (CSV line) and column, and say what was expected."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rftwin.data.measurements import MeasurementError, Problem, _check_columns, _numeric, _raise_if, _read_table
from rftwin.ris.geometry import RisPose

CANDIDATE_COLUMNS = ("candidate_id", "x", "y", "z", "yaw_deg", "nx", "ny", "nz")


def read_candidates(path: str | os.PathLike, bbox: tuple[np.ndarray, np.ndarray] | None = None,
                    tolerance_m: float = 1e-3) -> tuple[list[str], list[RisPose]]:
    """(ids, poses) of a candidates file: ``x, y, z`` (RIS centre, m) and either ``yaw_deg`` (vertical RIS facing
    that azimuth, degrees from +x towards +y) or ``nx, ny, nz`` (front normal); optional ``candidate_id``.
    With ``bbox`` (lo, hi), centres outside the scene's bounding box are errors."""
    raw = _read_table(path, "RIS candidates")
    _check_columns(raw, ("x", "y", "z"), CANDIDATE_COLUMNS, one_of=("yaw_deg", "nx"))
    has_yaw, has_n = "yaw_deg" in raw.columns, "nx" in raw.columns
    if has_yaw and has_n:
        raise MeasurementError(raw.source, Problem("give either yaw_deg or nx, ny, nz, not both",
                                                   columns=("yaw_deg", "nx")))
    if has_n:
        _check_columns(raw, ("x", "y", "z", "nx", "ny", "nz"), CANDIDATE_COLUMNS)
    problems: list[Problem] = []
    cols = ("x", "y", "z") + (("yaw_deg",) if has_yaw else ("nx", "ny", "nz"))
    vals = {c: _numeric(raw, c, problems) for c in cols}
    _raise_if(raw.source, problems)
    if raw.n == 0:
        raise MeasurementError(raw.source, "the candidates file has no rows")
    ids = ([str(v) for v in raw.columns["candidate_id"]] if "candidate_id" in raw.columns
           else [str(i) for i in range(raw.n)])
    seen: dict[str, int] = {}
    for i, cid in enumerate(ids):
        if cid in seen:
            problems.append(Problem(f"duplicate candidate_id '{cid}' (first in row {seen[cid] + 1})",
                                    columns=("candidate_id",), **raw.where(i)))
        seen.setdefault(cid, i)
    pos = np.stack([vals["x"], vals["y"], vals["z"]], 1)
    poses: list[RisPose] = []
    for i in range(raw.n):
        if has_n:
            n = np.array([vals["nx"][i], vals["ny"][i], vals["nz"][i]])
            if np.linalg.norm(n) < 1e-9:
                problems.append(Problem("the normal (nx, ny, nz) is zero; expected the RIS's front direction",
                                        columns=("nx", "ny", "nz"), **raw.where(i)))
                continue
            poses.append(RisPose.from_normal(pos[i], n))
        else:
            poses.append(RisPose.from_yaw(pos[i], float(vals["yaw_deg"][i])))
        if bbox is not None:
            lo, hi = (np.asarray(b, dtype=np.float64) for b in bbox)
            out = (pos[i] < lo - tolerance_m) | (pos[i] > hi + tolerance_m)
            if out.any():
                axes = tuple(c for c, o in zip("xyz", out) if o)
                problems.append(Problem(
                    f"RIS centre ({pos[i][0]:g}, {pos[i][1]:g}, {pos[i][2]:g}) m is outside the scene's bounding "
                    f"box [{', '.join(f'{v:g}' for v in lo)}] .. [{', '.join(f'{v:g}' for v in hi)}] m",
                    columns=axes, **raw.where(i)))
    _raise_if(raw.source, problems)
    return ids, poses


def box_points(text: str, spacing_m: float) -> np.ndarray:
    """Grid points [P, 3] of a target box 'X0,X1,Y0,Y1,Z' (m; a horizontal rectangle at height Z), cell centres
    ``spacing_m`` apart."""
    parts = text.replace(",", " ").split()
    try:
        v = [float(p) for p in parts]
    except ValueError:
        v = []
    if len(v) != 5 or not np.all(np.isfinite(v)):
        raise ValueError(f"--target: expected a file of points or a box 'X0,X1,Y0,Y1,Z' in m, found '{text}'")
    x0, x1, y0, y1, z = v
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"--target box '{text}': expected X1 > X0 and Y1 > Y0")
    if not spacing_m > 0:
        raise ValueError(f"--spacing must be > 0 m, got {spacing_m}")
    xs = np.arange(x0 + spacing_m / 2, x1, spacing_m)
    ys = np.arange(y0 + spacing_m / 2, y1, spacing_m)
    if len(xs) == 0 or len(ys) == 0:
        xs, ys = np.array([(x0 + x1) / 2]), np.array([(y0 + y1) / 2])
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    return np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, z)])


def read_target(spec: str, spacing_m: float = 0.2) -> np.ndarray:
    """Target points [P, 3] m: an existing CSV/Parquet file with columns x, y, z, else a box 'X0,X1,Y0,Y1,Z'."""
    p = Path(spec)
    if p.suffix.lower() in (".csv", ".parquet", ".pq") or p.exists():
        raw = _read_table(p, "target points")
        _check_columns(raw, ("x", "y", "z"), ("x", "y", "z"))
        problems: list[Problem] = []
        vals = {c: _numeric(raw, c, problems) for c in "xyz"}
        _raise_if(raw.source, problems)
        if raw.n == 0:
            raise MeasurementError(raw.source, "the target file has no points")
        return np.stack([vals["x"], vals["y"], vals["z"]], 1)
    return box_points(spec, spacing_m)


__all__ = ["CANDIDATE_COLUMNS", "box_points", "read_candidates", "read_target"]
