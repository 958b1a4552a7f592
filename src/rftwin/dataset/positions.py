"""Where a dataset's transmitters or receivers stand: explicit points, a grid, N random points in a box, or a file.

Grammar of a position spec (``--tx`` / ``--rx``; metres, scene frame):

* ``X,Y,Z[;X,Y,Z...]`` explicit points;
* ``grid:X0:X1:NX,Y0:Y1:NY,Z`` or ``grid:X0:X1:NX,Y0:Y1:NY,Z0:Z1:NZ`` a regular grid (end points included);
* ``random:N,X0:X1,Y0:Y1,Z0:Z1`` (or a single ``Z``) N points uniform in the box, drawn with the dataset's seed;
* ``file:PATH`` (or a path ending in .csv / .parquet) a table with columns ``x,y,z``.

Grid and random points inside closed objects are left out (random points are redrawn); points of an explicit list
or a file must lie in free space. Every box must lie inside the scene's bounding box (z up to 50 m above its top,
as for measurements).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rftwin.scene.load import TwinScene

ABOVE_MARGIN_M = 50.0  # transmitters may stand up to this far above the scene's top (as in measurement files)
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


class DatasetError(ValueError):
    """Invalid dataset input or a damaged dataset (the message names the option, file, row, field or shard)."""


@dataclass(frozen=True)
class PositionSpec:
    """A parsed position spec: ``kind`` in points / grid / random / file, its numbers and the option it came from."""

    option: str
    text: str
    kind: str
    points: tuple[tuple[float, float, float], ...] = ()
    axes: tuple[tuple[float, float, int], ...] = ()  # grid: (lo, hi, n) per axis; random: (lo, hi, 0)
    count: int = 0
    path: str | None = None

    def describe(self) -> dict:
        """JSON record of the spec (with a SHA-256 of a position file's content)."""
        d: dict = {"spec": self.text, "kind": self.kind}
        if self.path is not None:
            d["file_sha256"] = hashlib.sha256(Path(self.path).read_bytes()).hexdigest()
        return d


def _floats(text: str, option: str, what: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(":")]
    except ValueError:
        raise DatasetError(f"{option} '{what}': '{text}' is not a number or a range lo:hi[:n]") from None
    if not all(np.isfinite(vals)):
        raise DatasetError(f"{option} '{what}': '{text}' is not finite")
    return vals


def parse_positions(text: str, option: str = "--rx") -> PositionSpec:
    """Parse a position spec (grammar in the module docstring); errors name the option and the part."""
    t = text.strip()
    if not t:
        raise DatasetError(f"{option}: empty position spec; expected X,Y,Z, grid:..., random:... or file:PATH")
    if t.startswith("file:") or (":" not in t and t.lower().endswith(TABLE_SUFFIXES)):
        path = t[5:] if t.startswith("file:") else t
        p = Path(path)
        if not p.is_file():
            raise DatasetError(f"{option} {path}: no such position file (expected CSV/Parquet with columns x,y,z)")
        return PositionSpec(option, t, "file", path=str(p.resolve()))
    if t.startswith("grid:"):
        parts = t[5:].split(",")
        if len(parts) != 3:
            raise DatasetError(f"{option} '{t}': expected grid:X0:X1:NX,Y0:Y1:NY,Z[0:Z1:NZ] (three axes)")
        axes = []
        for name, p in zip("xyz", parts):
            v = _floats(p, option, t)
            if len(v) == 1:
                v = [v[0], v[0], 1]
            if len(v) != 3 or v[2] != int(v[2]) or v[2] < 1:
                raise DatasetError(f"{option} '{t}': the {name} axis '{p}' must be lo:hi:n with a whole n >= 1 "
                                   "(or one value)")
            if v[1] < v[0]:
                raise DatasetError(f"{option} '{t}': the {name} axis '{p}' has hi < lo")
            axes.append((v[0], v[1], int(v[2])))
        return PositionSpec(option, t, "grid", axes=tuple(axes))
    if t.startswith("random:"):
        parts = t[7:].split(",")
        if len(parts) != 4:
            raise DatasetError(f"{option} '{t}': expected random:N,X0:X1,Y0:Y1,Z0:Z1")
        try:
            n = int(parts[0])
        except ValueError:
            raise DatasetError(f"{option} '{t}': the count '{parts[0]}' is not a whole number") from None
        if n < 1:
            raise DatasetError(f"{option} '{t}': the count must be at least 1, got {n}")
        axes = []
        for name, p in zip("xyz", parts[1:]):
            v = _floats(p, option, t)
            if len(v) == 1:
                v = [v[0], v[0]]
            if len(v) != 2 or v[1] < v[0]:
                raise DatasetError(f"{option} '{t}': the {name} range '{p}' must be lo:hi with lo <= hi")
            axes.append((v[0], v[1], 0))
        return PositionSpec(option, t, "random", axes=tuple(axes), count=n)
    pts = []
    for p in t.split(";"):
        try:
            v = [float(x) for x in p.replace(" ", ",").split(",") if x]
        except ValueError:
            v = []
        if len(v) != 3 or not all(np.isfinite(v)):
            raise DatasetError(f"{option} '{t}': '{p}' is not a point X,Y,Z (m); expected X,Y,Z[;X,Y,Z...], "
                               "grid:..., random:... or file:PATH")
        pts.append(tuple(v))
    return PositionSpec(option, t, "points", points=tuple(pts))


def _bounds(twin: TwinScene) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = twin.bbox()
    return lo, hi + np.array([0.0, 0.0, ABOVE_MARGIN_M])


def _check_box(spec: PositionSpec, twin: TwinScene) -> None:
    lo, hi = _bounds(twin)
    for k, (a, b, _) in enumerate(spec.axes):
        if a < lo[k] - 1e-9 or b > hi[k] + 1e-9:
            raise DatasetError(f"{spec.option} '{spec.text}': the {'xyz'[k]} range [{a:g}, {b:g}] m leaves the "
                               f"scene's bounds [{lo[k]:g}, {hi[k]:g}] m")


def _read_file(spec: PositionSpec, twin: TwinScene) -> np.ndarray:
    import pandas as pd  # noqa: PLC0415

    path = Path(spec.path)
    try:
        df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path, dtype=str)
    except Exception as exc:  # noqa: BLE001 - any parse failure becomes an error naming the file
        raise DatasetError(f"{spec.option} {path}: cannot read the position table ({type(exc).__name__}: "
                           f"{str(exc)[:200]})") from None
    missing = [c for c in "xyz" if c not in df.columns]
    if missing:
        raise DatasetError(f"{spec.option} {path}: missing column(s) {', '.join(missing)}; expected x,y,z (m), "
                           f"found {', '.join(map(str, df.columns)) or 'none'}")
    if not len(df):
        raise DatasetError(f"{spec.option} {path}: no rows; expected at least one position")
    pos = np.column_stack([pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64) for c in "xyz"])
    csv = path.suffix.lower() == ".csv"
    problems = []
    for i, k in zip(*np.nonzero(~np.isfinite(pos))):
        problems.append(f"row {i + 1}" + (f" (line {i + 2})" if csv else "") + f", column '{'xyz'[k]}': "
                        f"'{df.iloc[i]['xyz'[k]]}' is not a finite number (m)")
    lo, hi = _bounds(twin)
    ok = np.isfinite(pos).all(1)
    for i, k in zip(*np.nonzero(ok[:, None] & ((pos < lo) | (pos > hi)))):
        problems.append(f"row {i + 1}" + (f" (line {i + 2})" if csv else "") + f", column '{'xyz'[k]}': "
                        f"{pos[i, k]:g} m is outside the scene's bounds [{lo[k]:g}, {hi[k]:g}] m")
    if not problems:
        for i in np.nonzero(_inside(twin, pos))[0]:
            problems.append(f"row {i + 1}" + (f" (line {i + 2})" if csv else "") + ": the point "
                            f"({pos[i, 0]:g}, {pos[i, 1]:g}, {pos[i, 2]:g}) m is inside a closed object")
    if problems:
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetError("\n".join(f"{spec.option} {path}, {p}" for p in problems[:20]) + more)
    return pos


def _inside(twin: TwinScene, pos: np.ndarray) -> np.ndarray:
    from rftwin.evaluate.radiomap import inside_objects  # noqa: PLC0415

    return inside_objects(twin, pos) if len(pos) else np.zeros(0, bool)


def resolve_positions(spec: PositionSpec, twin: TwinScene, seed: int | np.random.Generator) -> np.ndarray:
    """Positions [n, 3] (m) of ``spec`` in ``twin``; ``seed`` (or a generator) draws random points."""
    if spec.kind == "file":
        return _read_file(spec, twin)
    if spec.kind == "points":
        pos = np.array(spec.points, dtype=np.float64)
        lo, hi = _bounds(twin)
        for i, k in zip(*np.nonzero((pos < lo) | (pos > hi))):
            raise DatasetError(f"{spec.option} '{spec.text}': point {i + 1} {'xyz'[k]} = {pos[i, k]:g} m is "
                               f"outside the scene's bounds [{lo[k]:g}, {hi[k]:g}] m")
        bad = np.nonzero(_inside(twin, pos))[0]
        if len(bad):
            raise DatasetError(f"{spec.option} '{spec.text}': point {bad[0] + 1} lies inside a closed object")
        return pos
    _check_box(spec, twin)
    if spec.kind == "grid":
        g = np.meshgrid(*[np.linspace(a, b, n) for a, b, n in spec.axes], indexing="ij")
        pos = np.stack([x.reshape(-1) for x in g], 1)
        pos = pos[~_inside(twin, pos)]
        if not len(pos):
            raise DatasetError(f"{spec.option} '{spec.text}': every grid point lies inside a closed object")
        return pos
    rng = np.random.default_rng(seed)
    lo = np.array([a for a, _, _ in spec.axes])
    hi = np.array([b for _, b, _ in spec.axes])
    out = np.zeros((0, 3))
    for _ in range(100):  # rejection sampling outside closed objects
        c = lo + (hi - lo) * rng.random((2 * spec.count, 3))
        out = np.concatenate([out, c[~_inside(twin, c)]])
        if len(out) >= spec.count:
            return out[: spec.count]
    raise DatasetError(f"{spec.option} '{spec.text}': the box lies (almost) entirely inside closed objects")


__all__ = ["DatasetError", "PositionSpec", "parse_positions", "resolve_positions"]
