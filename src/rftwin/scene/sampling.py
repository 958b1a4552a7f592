"""Random device positions inside a scene, away from closed objects."""
from __future__ import annotations

import numpy as np

from rftwin.scene.load import TwinScene


def closed_object_boxes(twin: TwinScene, margin_m: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Axis-aligned bounds (min, max) of the watertight objects, grown by ``margin_m``."""
    out = []
    for o, (v, _) in zip(twin.objects, twin.meshes()):
        if o.watertight:
            out.append((v.min(0) - margin_m, v.max(0) + margin_m))
    return out


def random_positions(twin: TwinScene, n: int, rng: np.random.Generator, z_range: tuple[float, float],
                     xy_margin_m: float = 0.5, object_margin_m: float = 0.3) -> np.ndarray:
    """``n`` points [n, 3] uniform in the scene's x/y bounds (shrunk by ``xy_margin_m``) and ``z_range``,
    outside the bounding boxes of closed objects (grown by ``object_margin_m``)."""
    lo, hi = twin.bbox()
    boxes = closed_object_boxes(twin, object_margin_m)
    pts: list[np.ndarray] = []
    for _ in range(1000):
        c = np.column_stack([rng.uniform(lo[0] + xy_margin_m, hi[0] - xy_margin_m, 4 * n),
                             rng.uniform(lo[1] + xy_margin_m, hi[1] - xy_margin_m, 4 * n),
                             rng.uniform(z_range[0], z_range[1], 4 * n)])
        ok = np.ones(len(c), dtype=bool)
        for bmin, bmax in boxes:
            ok &= ~np.all((c >= bmin) & (c <= bmax), axis=1)
        pts.extend(c[ok])
        if len(pts) >= n:
            return np.asarray(pts[:n])
    raise ValueError("could not place positions outside the scene's closed objects")
