"""Measurement sampling modes of seed 003 (Sec. V-A): which of the candidate positions are measured.

- ``random`` (online, crowdsourced): uniform random subset;
- ``expert`` (offline, engineer-placed): greedy farthest-point (max-min distance) selection in the normalised
  space of position and path-structure features, so that the sample covers the area and the propagation
  conditions (LoS / NLoS, penetration counts); the first point is the candidate nearest the centroid;
- ``trajectory`` (synchronous with a scanning walk): consecutive points of a walk through the candidates that
  keeps its heading where it can and turns or jumps to the nearest unvisited point otherwise.
"""
from __future__ import annotations

import numpy as np

SAMPLING_MODES = ("random", "expert", "trajectory")


def _check(P: int, m: int) -> None:
    if not 0 < m <= P:
        raise ValueError(f"cannot sample {m} measurements from {P} candidate positions")


def random_sample(P: int, m: int, rng: np.random.Generator) -> np.ndarray:
    _check(P, m)
    return np.sort(rng.choice(P, m, replace=False))


def expert_sample(features: np.ndarray, m: int) -> np.ndarray:
    """Greedy farthest-point selection on ``features`` [P, F] (already normalised)."""
    P = len(features)
    _check(P, m)
    first = int(np.argmin(np.linalg.norm(features - features.mean(0), axis=1)))
    chosen = [first]
    dmin = np.linalg.norm(features - features[first], axis=1)
    for _ in range(m - 1):
        nxt = int(np.argmax(dmin))
        chosen.append(nxt)
        dmin = np.minimum(dmin, np.linalg.norm(features - features[nxt], axis=1))
    return np.array(chosen)


def trajectory_sample(positions: np.ndarray, m: int, rng: np.random.Generator, step_m: float | None = None
                      ) -> np.ndarray:
    """``m`` consecutive points of a walk over ``positions`` [P, 3]; a step goes to an unvisited candidate within
    ``step_m`` (default 1.5 x the median nearest-neighbour spacing) closest to the current heading."""
    P = len(positions)
    _check(P, m)
    xy = positions[:, :2]
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) if P <= 4000 else None
    if step_m is None:
        nn = np.sort(d, axis=1)[:, 1] if d is not None else np.full(P, 1.0)
        step_m = 1.5 * float(np.median(nn))
    cur = int(rng.integers(P))
    heading = rng.normal(size=2)
    heading /= np.linalg.norm(heading)
    visited = np.zeros(P, dtype=bool)
    path = [cur]
    visited[cur] = True
    while len(path) < m:
        dist = d[cur] if d is not None else np.linalg.norm(xy - xy[cur], axis=1)
        near = np.nonzero((dist <= step_m) & ~visited)[0]
        if len(near):
            v = xy[near] - xy[cur]
            cosang = (v @ heading) / np.maximum(np.linalg.norm(v, axis=1), 1e-12)
            nxt = int(near[np.argmax(cosang)])
        else:  # dead end: walk to the nearest unvisited point
            free = np.nonzero(~visited)[0]
            nxt = int(free[np.argmin(dist[free])])
        step = xy[nxt] - xy[cur]
        heading = step / max(np.linalg.norm(step), 1e-12)
        cur = nxt
        visited[cur] = True
        path.append(cur)
    return np.array(path)


def sample_measurements(mode: str, positions: np.ndarray, m: int, rng: np.random.Generator,
                        features: np.ndarray | None = None) -> np.ndarray:
    """Indices [m] of the measured candidates for ``mode`` in :data:`SAMPLING_MODES`.

    ``features`` [P, F] (normalised, e.g. position + path structure) are needed for ``expert``."""
    if mode == "random":
        return random_sample(len(positions), m, rng)
    if mode == "expert":
        if features is None:
            raise ValueError("expert sampling needs candidate features (position + path structure)")
        return expert_sample(features, m)
    if mode == "trajectory":
        return trajectory_sample(positions, m, rng)
    raise ValueError(f"unknown sampling mode '{mode}', expected one of {SAMPLING_MODES}")


__all__ = ["SAMPLING_MODES", "expert_sample", "random_sample", "sample_measurements", "trajectory_sample"]
