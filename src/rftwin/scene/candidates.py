"""Where radios can go: inside/outside tests against closed objects, clearance to surfaces, candidate grids.

Pure numpy on ``TwinScene.meshes()``: inside tests use the generalised winding number (robust for closed
triangle soups such as Mitsuba cubes whose vertices are duplicated per face), distances the exact
point-to-triangle distance. All coordinates in metres, world frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK = 200_000  # points x triangles per block


@dataclass
class SceneGeometry:
    """Triangles of every scene object: ``tris[k]`` [F_k, 3, 3], ``closed[k]`` watertight flag, axis-aligned
    boxes ``lo``/``hi`` [K, 3], scene bounds ``bbox_min``/``bbox_max`` [3]."""

    names: list[str]
    tris: list[np.ndarray]
    closed: list[bool]
    lo: np.ndarray
    hi: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray

    @classmethod
    def from_twin(cls, twin) -> SceneGeometry:
        """Geometry of a :class:`~rftwin.scene.TwinScene` (watertight flags from its object table)."""
        tris = [v[f] for v, f in twin.meshes()]
        lo = np.array([t.reshape(-1, 3).min(0) for t in tris])
        hi = np.array([t.reshape(-1, 3).max(0) for t in tris])
        bmin, bmax = twin.bbox()
        return cls(names=list(twin.names), tris=tris, closed=[bool(o.watertight) for o in twin.objects], lo=lo, hi=hi,
                   bbox_min=np.asarray(bmin, float), bbox_max=np.asarray(bmax, float))

    def inside(self, points: np.ndarray) -> np.ndarray:
        """Index of the closed object containing each point, -1 if none: [P] int64 (points [P, 3])."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.full(len(p), -1, dtype=np.int64)
        for k, (t, closed) in enumerate(zip(self.tris, self.closed)):
            if not closed:
                continue
            cand = np.nonzero(np.all((p >= self.lo[k]) & (p <= self.hi[k]), axis=1) & (out < 0))[0]
            if len(cand):
                w = winding_number(p[cand], t)
                out[cand[np.abs(w) > 0.5]] = k
        return out

    def distance(self, points: np.ndarray, max_distance: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """(distance [P] to the nearest surface, index [P] of that object); objects whose box is farther than
        ``max_distance`` are skipped (distance ``inf``, index -1 when none is nearer)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        best = np.full(len(p), np.inf)
        idx = np.full(len(p), -1, dtype=np.int64)
        for k, t in enumerate(self.tris):
            gap = np.maximum(np.maximum(self.lo[k] - p, p - self.hi[k]), 0.0)
            cand = np.nonzero(np.linalg.norm(gap, axis=1) <= min(max_distance, np.inf))[0]
            if not len(cand):
                continue
            d = point_triangle_distance(p[cand], t)
            better = d < best[cand]
            best[cand[better]] = d[better]
            idx[cand[better]] = k
        return best, idx

    def check(self, points: np.ndarray, clearance_m: float = 0.0) -> list[str]:
        """Per point: ``""`` when usable, else the reason (outside the scene box, inside / too close to an object)."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        reasons = [""] * len(p)
        outside = np.any((p < self.bbox_min) | (p > self.bbox_max), axis=1)
        ins = self.inside(p)
        dist, near = self.distance(p, max_distance=clearance_m) if clearance_m > 0 else (np.full(len(p), np.inf),
                                                                                         np.full(len(p), -1))
        for i in range(len(p)):
            if outside[i]:
                reasons[i] = "outside the scene bounding box"
            elif ins[i] >= 0:
                reasons[i] = f"inside closed object '{self.names[ins[i]]}'"
            elif dist[i] < clearance_m:
                reasons[i] = f"{dist[i]:.2f} m from '{self.names[near[i]]}' (< clearance {clearance_m:g} m)"
        return reasons


def winding_number(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Generalised winding number of triangles ``tris`` [F, 3, 3] at ``points`` [P, 3]: [P] (+-1 inside a closed
    surface, 0 outside; Jacobson et al. 2013, solid angles by van Oosterom & Strackee)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(len(p))
    step = max(1, _CHUNK // max(1, len(tris)))
    for s in range(0, len(p), step):
        a = tris[None, :, 0, :] - p[s:s + step, None, :]
        b = tris[None, :, 1, :] - p[s:s + step, None, :]
        c = tris[None, :, 2, :] - p[s:s + step, None, :]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
        den = la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", a, c) * lb \
            + np.einsum("pfi,pfi->pf", b, c) * la
        out[s:s + step] = (2.0 * np.arctan2(det, den)).sum(1) / (4.0 * np.pi)
    return out


def point_triangle_distance(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Smallest Euclidean distance from each point [P, 3] to the triangles [F, 3, 3]: [P] (m)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.full(len(p), np.inf)
    step = max(1, _CHUNK // max(1, len(tris)))
    a0, b0, c0 = tris[:, 0], tris[:, 1], tris[:, 2]
    ab, ac = b0 - a0, c0 - a0
    n = np.cross(ab, ac)
    nn = np.einsum("fi,fi->f", n, n)
    for s in range(0, len(p), step):
        q = p[s:s + step, None, :]  # [p, 1, 3]
        # projection onto the plane and its barycentric coordinates
        w = q - a0[None]
        t = np.einsum("pfi,fi->pf", w, n) / np.where(nn > 0, nn, 1.0)
        proj = q - t[..., None] * n[None]
        v0 = proj - a0[None]
        d00, d01, d11 = (np.einsum("fi,fi->f", ab, ab), np.einsum("fi,fi->f", ab, ac), np.einsum("fi,fi->f", ac, ac))
        d20, d21 = np.einsum("pfi,fi->pf", v0, ab), np.einsum("pfi,fi->pf", v0, ac)
        den = np.where(d00 * d11 - d01 * d01 != 0, d00 * d11 - d01 * d01, 1.0)
        v = (d11 * d20 - d01 * d21) / den
        u = (d00 * d21 - d01 * d20) / den
        inside = (v >= 0) & (u >= 0) & (u + v <= 1) & (nn > 0)
        d_plane = np.where(inside, np.abs(t) * np.sqrt(nn), np.inf)
        # otherwise the nearest point lies on an edge
        d_edge = np.minimum(np.minimum(_seg_dist(q, a0, b0), _seg_dist(q, b0, c0)), _seg_dist(q, c0, a0))
        out[s:s + step] = np.minimum(d_plane, d_edge).min(1)
    return out


def _seg_dist(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    L2 = np.einsum("fi,fi->f", ab, ab)
    t = np.einsum("pfi,fi->pf", q - a[None], ab) / np.where(L2 > 0, L2, 1.0)
    t = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(q - (a[None] + t[..., None] * ab[None]), axis=-1)


def candidate_grid(twin, spacing_m: float = 1.0, heights_m=(1.5,), margin_m: float = 0.5,
                   clearance_m: float = 0.3, geometry: SceneGeometry | None = None) -> np.ndarray:
    """Candidate radio positions [P, 3] (m): a regular xy grid with ``spacing_m`` over the scene box shrunk by
    ``margin_m``, at each absolute height in ``heights_m``, keeping points inside the box, outside every closed
    object and at least ``clearance_m`` from every surface. The grid is centred in the box (deterministic)."""
    geo = geometry or SceneGeometry.from_twin(twin)
    lo, hi = geo.bbox_min + margin_m, geo.bbox_max - margin_m
    if np.any(lo[:2] > hi[:2]):
        raise ValueError(f"margin {margin_m} m leaves no room inside the scene box {geo.bbox_min}..{geo.bbox_max}")
    axes = []
    for d in range(2):
        n = int(np.floor((hi[d] - lo[d]) / spacing_m + 1e-9)) + 1
        start = 0.5 * (lo[d] + hi[d]) - 0.5 * (n - 1) * spacing_m
        axes.append(start + spacing_m * np.arange(n))
    gx, gy = np.meshgrid(axes[0], axes[1], indexing="ij")
    pts = [np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, float(h))]) for h in heights_m]
    p = np.concatenate(pts) if pts else np.zeros((0, 3))
    if not len(p):
        return p
    ok = np.array([r == "" for r in geo.check(p, clearance_m)], dtype=bool)
    return p[ok]


def farthest_point_subset(points: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` well-spread points (greedy farthest-point sampling from a seeded random start)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if n > len(p):
        raise ValueError(f"asked for {n} points, only {len(p)} candidates")
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(p)))]
    d = np.linalg.norm(p - p[chosen[0]], axis=1)
    for _ in range(n - 1):
        k = int(np.argmax(d))
        chosen.append(k)
        d = np.minimum(d, np.linalg.norm(p - p[k], axis=1))
    return np.array(chosen, dtype=np.int64)


__all__ = ["SceneGeometry", "candidate_grid", "farthest_point_subset", "point_triangle_distance", "winding_number"]
