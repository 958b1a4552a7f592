"""Links of the ``munich`` city scenario: one rooftop base station, street-level receivers in free space.

    .venv/bin/python benchmarks/munich_links.py N OUT.csv [--seed S] [--radius R]
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from rftwin.evaluate.radiomap import inside_objects
from rftwin.scene.load import TwinScene

#: base station height above a flat roof near the scene centre (found by :func:`rooftop_bs`)
BS_HEIGHT_ABOVE_ROOF_M = 5.0


def rooftop_bs(twin: TwinScene, near=(0.0, 0.0), radius_m: float = 150.0, roof_m: float = 25.0) -> np.ndarray:
    """A base station 5 m above the centre of the flat roof (metal) object near ``near`` whose height is closest
    to ``roof_m``."""
    best, score = None, np.inf
    for o, (v, _) in zip(twin.objects, twin.meshes()):
        if o.label != "metal":
            continue
        c = v.mean(0)
        if np.hypot(c[0] - near[0], c[1] - near[1]) > radius_m or np.ptp(v[:, 2]) > 1.0:
            continue
        if abs(v[:, 2].max() - roof_m) < score:
            best, score = np.array([c[0], c[1], v[:, 2].max()]), abs(v[:, 2].max() - roof_m)
    if best is None:
        raise ValueError(f"no flat roof within {radius_m} m of {near}")
    return best + np.array([0.0, 0.0, BS_HEIGHT_ABOVE_ROOF_M])


def street_receivers(twin: TwinScene, n: int, center: np.ndarray, radius_m: float,
                     seed: int | np.random.Generator = 0, height_m: float = 1.5,
                     bbox_margin_m: float | None = None) -> np.ndarray:
    """``n`` receivers at ``height_m`` within ``radius_m`` of ``center`` (x, y), outside every closed object (and
    with ``bbox_margin_m``, that far inside the scene's bounding box); ``seed`` may be a generator to draw on."""
    rng = np.random.default_rng(seed)
    lo, hi = twin.bbox()
    out = np.zeros((0, 3))
    while len(out) < n:
        r = radius_m * np.sqrt(rng.uniform(0, 1, 4 * n))
        a = rng.uniform(0, 2 * np.pi, 4 * n)
        c = np.c_[center[0] + r * np.cos(a), center[1] + r * np.sin(a), np.full(4 * n, height_m)]
        if bbox_margin_m is not None:
            c = c[np.all((c[:, :2] > lo[:2] + bbox_margin_m) & (c[:, :2] < hi[:2] - bbox_margin_m), axis=1)]
        out = np.concatenate([out, c[~inside_objects(twin, c)]])
    return out[:n]


def links_frame(twin: TwinScene, n: int, seed: int = 0, radius_m: float = 150.0,
                frequency_hz: float = 3.5e9) -> pd.DataFrame:
    bs = rooftop_bs(twin)
    rx = street_receivers(twin, n, bs, radius_m, seed)
    return pd.DataFrame({"link_id": [f"M{i}" for i in range(n)], "tx_x": bs[0], "tx_y": bs[1], "tx_z": bs[2],
                         "rx_x": rx[:, 0], "rx_y": rx[:, 1], "rx_z": rx[:, 2], "frequency_hz": frequency_hz,
                         "tx_power_dbm": 43.0})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--radius", type=float, default=150.0)
    a = ap.parse_args()
    from rftwin.scene import load

    links_frame(load("munich"), a.n, a.seed, a.radius).to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
