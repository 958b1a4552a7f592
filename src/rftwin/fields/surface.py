"""Regular grids of points on a planar face of a triangle mesh (for material maps)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SurfaceGrid:
    """Grid on a plane: ``points`` [P, 3] world coordinates (m) of the cells that lie on the face, their
    in-plane coordinates ``uv`` [P, 2] (m, from the face's lower-left corner ``origin`` [3]), the full grid axes
    ``u`` [Nu], ``v`` [Nv], the cells' (iu, iv) indices ``cell`` [P, 2], the plane axes ``e_u``, ``e_v`` and
    ``normal`` [3]."""

    points: np.ndarray
    uv: np.ndarray
    u: np.ndarray
    v: np.ndarray
    cell: np.ndarray
    origin: np.ndarray
    e_u: np.ndarray
    e_v: np.ndarray
    normal: np.ndarray

    def image(self, values: np.ndarray) -> np.ndarray:
        """Values [P] -> [Nv, Nu] image (NaN off the face)."""
        img = np.full((len(self.v), len(self.u)), np.nan)
        img[self.cell[:, 1], self.cell[:, 0]] = values
        return img


def planar_faces(vertices: np.ndarray, faces: np.ndarray, decimals: int = 3) -> list[np.ndarray]:
    """Group triangles [F] into coplanar sets (same normal up to sign and same plane offset), largest area first."""
    tri = vertices[faces]  # [F, 3, 3]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(n, axis=1)
    ok = area2 > 1e-12
    n = np.where(ok[:, None], n / np.maximum(area2[:, None], 1e-30), 0.0)
    # canonical sign: first non-zero component positive
    lead = np.argmax(np.abs(n) > 1e-6, axis=1)
    sign = np.sign(n[np.arange(len(n)), lead])
    n = n * np.where(sign == 0, 1.0, sign)[:, None]
    off = np.einsum("ij,ij->i", n, tri[:, 0])
    key = np.round(np.column_stack([n, off]), decimals)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    groups = [np.nonzero((inv == g) & ok)[0] for g in range(inv.max() + 1)] if len(inv) else []
    groups = [g for g in groups if len(g)]
    return sorted(groups, key=lambda g: -float(area2[g].sum()))


def surface_grid(vertices: np.ndarray, faces: np.ndarray, spacing_m: float = 0.05,
                 normal: np.ndarray | None = None) -> SurfaceGrid:
    """Grid with ``spacing_m`` on one planar face of the mesh: the largest one, or the one whose normal is
    closest (in |cos|) to ``normal``. Cell centres inside a triangle of the face are kept."""
    if spacing_m <= 0:
        raise ValueError(f"spacing must be positive, got {spacing_m}")
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    groups = planar_faces(vertices, faces)
    if not groups:
        raise ValueError("the mesh has no non-degenerate triangles")
    tri_all = vertices[faces]

    def unit_normal(g):
        t = tri_all[g[0]]
        nn_ = np.cross(t[1] - t[0], t[2] - t[0])
        return nn_ / np.linalg.norm(nn_)

    if normal is not None:
        want = np.asarray(normal, dtype=np.float64)
        want = want / np.linalg.norm(want)
        g = max(groups, key=lambda gg: abs(float(unit_normal(gg) @ want)))
    else:
        g = groups[0]
    tri = tri_all[g]
    nrm = unit_normal(g)
    pts = tri.reshape(-1, 3)
    origin = pts.mean(0)
    # in-plane axes (right-handed with the normal): u horizontal and v up on non-horizontal faces, u along world
    # x (or y) on horizontal ones
    z = np.array([0.0, 0.0, 1.0])
    if abs(nrm @ z) < 0.9:
        e_u = np.cross(z, nrm)
    else:
        x = np.array([1.0, 0.0, 0.0]) if abs(nrm[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        e_u = x - (x @ nrm) * nrm
    e_u /= np.linalg.norm(e_u)
    e_v = np.cross(nrm, e_u)  # = z - n (n . z) on non-horizontal faces: points up
    uv_t = np.stack([(tri - origin) @ e_u, (tri - origin) @ e_v], -1)  # [T, 3, 2]
    lo, hi = uv_t.reshape(-1, 2).min(0), uv_t.reshape(-1, 2).max(0)
    origin = origin + lo[0] * e_u + lo[1] * e_v  # (u, v) = (0, 0) at the face's lower-left corner
    uv_t, hi, lo = uv_t - lo, hi - lo, np.zeros(2)
    u = np.arange(lo[0] + spacing_m / 2, hi[0], spacing_m)
    v = np.arange(lo[1] + spacing_m / 2, hi[1], spacing_m)
    if len(u) == 0 or len(v) == 0:
        raise ValueError(f"spacing {spacing_m} m is larger than the face ({hi[0] - lo[0]:.3g} x {hi[1] - lo[1]:.3g} m)")
    uu, vv = np.meshgrid(u, v, indexing="xy")
    cand = np.column_stack([uu.ravel(), vv.ravel()])
    inside = np.zeros(len(cand), dtype=bool)
    a, b, c = uv_t[:, 0], uv_t[:, 1], uv_t[:, 2]
    for s in range(0, len(cand), 20000):  # barycentric test, chunked over points
        p = cand[s:s + 20000, None, :]
        v0, v1, v2 = c - a, b - a, p - a
        d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
        d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
        den = np.where(np.abs(d00 * d11 - d01 * d01) > 1e-18, d00 * d11 - d01 * d01, np.inf)
        lu = (d11 * d20 - d01 * d21) / den
        lv = (d00 * d21 - d01 * d20) / den
        inside[s:s + 20000] = ((lu >= -1e-9) & (lv >= -1e-9) & (lu + lv <= 1 + 1e-9)).any(1)
    iu, iv = np.meshgrid(np.arange(len(u)), np.arange(len(v)), indexing="xy")
    cell = np.column_stack([iu.ravel(), iv.ravel()])[inside]
    uv = cand[inside]
    points = origin + uv[:, :1] * e_u + uv[:, 1:] * e_v
    return SurfaceGrid(points, uv, u, v, cell, origin, e_u, e_v, nrm)
