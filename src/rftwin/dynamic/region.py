"""Which links does a scene change touch? Vectorised segment / box tests on cached paths (pure torch).

A link must be re-traced when one of its path segments, widened by the first Fresnel zone, meets a changed
region (axis-aligned boxes: where a moving object was and where it is now). Per path, the widening is the largest
first-Fresnel-zone radius of a path of that length, r = sqrt(lambda L) / 2 (plus ``margin_m``): the zone around
every segment of the unfolded path lies inside a capsule of that radius, which lies inside the segment's
Minkowski sum with a cube of half-width r - so the test is conservative (it may re-trace a link that would not
change, never the reverse for paths that exist). Paths that a new object would *create* towards links whose
paths and direct line pass nowhere near it (e.g. a reflection off a person standing beside a link) are not
detected: those links keep their cached paths.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from rftwin.pathset import NONE, SPEED_OF_LIGHT, PathSet


def path_segments(ps: PathSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment end points of every path: (start [N, D + 1, 3], end [N, D + 1, 3]); slots after the last
    interaction are zero-length segments at the receiver."""
    tx, rx = ps.tx_pos[ps.link], ps.rx_pos[ps.link]
    pts = torch.where((ps.itype != NONE)[..., None], ps.point, rx[:, None, :])
    v = torch.cat([tx[:, None], pts, rx[:, None]], 1)  # [N, D + 2, 3]
    return v[:, :-1], v[:, 1:]


def segments_hit_boxes(p0: torch.Tensor, p1: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                       grow: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Slab test of segments p0 -> p1 [..., 3] against boxes [lo, hi] [B, 3] grown by ``grow`` (broadcast to the
    segments' leading shape): bool [..., B]."""
    g = torch.as_tensor(grow, dtype=p0.dtype)
    g = g.reshape(g.shape + (1, 1)) if g.dim() else g
    lo_ = lo.to(p0.dtype) - g  # [..., B, 3] or [B, 3]
    hi_ = hi.to(p0.dtype) + g
    a, d = p0[..., None, :], (p1 - p0)[..., None, :]
    small = d.abs() < 1e-12
    safe = torch.where(small, torch.ones_like(d), d)
    t1, t2 = (lo_ - a) / safe, (hi_ - a) / safe
    t_lo = torch.where(small, torch.full_like(t1, -math.inf), torch.minimum(t1, t2))
    t_hi = torch.where(small, torch.full_like(t1, math.inf), torch.maximum(t1, t2))
    inside = ~small | ((a >= lo_) & (a <= hi_))  # parallel to a slab: must lie within it
    enter = t_lo.amax(-1).clamp_min(0.0)
    leave = t_hi.amin(-1).clamp_max(1.0)
    return inside.all(-1) & (enter <= leave)


def _segment_triangle(p0: torch.Tensor, p1: torch.Tensor, tri: torch.Tensor, eps: float) -> torch.Tensor:
    """Moeller-Trumbore, element-wise: segments p0 -> p1 [..., M, 3] against triangles ``tri`` [M, 3, 3]:
    bool [..., M], True when the segment's interior (``eps`` of its length from either end) crosses it."""
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]  # [M, 3]
    d = p1 - p0
    e1, e2 = e1.expand_as(d), e2.expand_as(d)
    pv = torch.linalg.cross(d, e2)
    det = (e1 * pv).sum(-1)
    ok = det.abs() > 1e-15
    inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
    s = p0 - v0
    u = (s * pv).sum(-1) * inv
    q = torch.linalg.cross(s, e1)
    v = (d * q).sum(-1) * inv
    t = (e2 * q).sum(-1) * inv
    return ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > eps) & (t < 1 - eps)


def segments_hit_triangles(p0: torch.Tensor, p1: torch.Tensor, tri: torch.Tensor, eps: float = 1e-9
                           ) -> torch.Tensor:
    """Exact segment / triangle-mesh intersection of segments p0 -> p1 [..., 3] with triangles ``tri``
    [M, 3, 3]: bool [...], True when the segment's interior crosses any triangle."""
    tri = tri.to(p0.dtype)
    shape = (*p0.shape[:-1], len(tri), 3)
    return _segment_triangle(p0[..., None, :].expand(shape), p1[..., None, :].expand(shape), tri, eps).any(-1)


def first_order_reflection_length(tx: torch.Tensor, rx: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Length [L] (m) of the shortest specular reflection tx -> triangle -> rx over the triangles ``tri``
    [M, 3, 3] by the image method (tx [L, 3] mirrored in each triangle's plane; the image-to-rx segment must
    cross the triangle and both ends must lie on the same side of it); inf where no triangle gives one.
    Occlusion by other objects is ignored (the existence test is conservative)."""
    tri = tri.to(tx.dtype)
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = n / torch.linalg.norm(n, dim=-1, keepdim=True).clamp_min(1e-15)  # [M, 3]
    dt = ((tx[:, None, :] - tri[None, :, 0]) * n).sum(-1)  # [L, M] signed distances to the planes
    dr = ((rx[:, None, :] - tri[None, :, 0]) * n).sum(-1)
    img = tx[:, None, :] - 2.0 * dt[..., None] * n  # [L, M, 3]
    r = rx[:, None, :].expand_as(img)
    ok = (dt * dr > 0) & _segment_triangle(img, r, tri, 0.0)
    length = torch.linalg.norm(r - img, dim=-1)
    return torch.where(ok, length, torch.full_like(length, math.inf)).amin(-1)


def scene_planes(triangles: torch.Tensor, decimals: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct planes of triangles [M, 3, 3]: unit normals [P, 3] and offsets [P] (n . x = offset)."""
    n = torch.linalg.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    n = n / torch.linalg.norm(n, dim=-1, keepdim=True).clamp_min(1e-15)
    # one orientation per plane: the first non-zero component positive
    first = torch.gather(n, 1, (n.abs() > 1e-9).to(torch.int64).argmax(1, keepdim=True))
    n = torch.where(first < 0, -n, n)
    off = (n * triangles[:, 0]).sum(-1)
    key = torch.round(torch.cat([n, off[:, None]], 1) * 10**decimals)
    _, idx = np.unique(key.numpy(), axis=0, return_index=True)
    idx = torch.as_tensor(np.sort(idx))
    return n[idx], off[idx]


def mirror_images(p: torch.Tensor, normals: torch.Tensor, offsets: torch.Tensor, order: int) -> list[torch.Tensor]:
    """Images of points p [L, 3] in the planes, for every sequence of up to ``order`` planes (no plane twice in
    a row): a list over orders 0..order of [L, P^k, 3]."""
    out = [p[:, None, :]]
    for _ in range(order):
        q = out[-1]  # [L, K, 3]
        d = (q[:, :, None, :] * normals).sum(-1) - offsets  # [L, K, P]
        img = q[:, :, None, :] - 2.0 * d[..., None] * normals  # [L, K, P, 3]
        out.append(img.reshape(len(p), -1, 3))
    return out


def body_path_length(tx: torch.Tensor, rx: torch.Tensor, tri: torch.Tensor, normals: torch.Tensor,
                     offsets: torch.Tensor, max_depth: int) -> torch.Tensor:
    """Lower bound [L] (m) on the length of any specular path tx -> ... -> proxy -> ... -> rx of at most
    ``max_depth`` reflections with exactly one on the proxy (triangles ``tri`` [M, 3, 3]) and the others on the
    scene's planes (``normals`` [P, 3], ``offsets`` [P]): the unfolded (image) path must cross a proxy triangle.
    Plane extents and occlusion are ignored, so every such path that exists is counted (conservative)."""
    if max_depth < 1:
        return torch.full((len(tx),), math.inf, dtype=tx.dtype)
    k = max_depth - 1
    it, ir = mirror_images(tx, normals, offsets, k), mirror_images(rx, normals, offsets, k)
    best = torch.full((len(tx),), math.inf, dtype=tx.dtype)
    for a in range(k + 1):
        for b in range(k + 1 - a):
            s, t = it[a], ir[b]  # [L, Ka, 3], [L, Kb, 3]
            Ka, Kb = s.shape[1], t.shape[1]
            s2 = s[:, :, None, :].expand(-1, Ka, Kb, 3).reshape(-1, 3)
            t2 = t[:, None, :, :].expand(-1, Ka, Kb, 3).reshape(-1, 3)
            length = first_order_reflection_length(s2, t2, tri).reshape(len(tx), -1)
            best = torch.minimum(best, length.amin(-1))
    return best


def fresnel_radius(length_m: torch.Tensor, frequency_hz: float) -> torch.Tensor:
    """Largest first-Fresnel-zone radius sqrt(lambda L) / 2 of a path of length L (m)."""
    return 0.5 * torch.sqrt(SPEED_OF_LIGHT / frequency_hz * length_m)


def new_path_bound(tx: torch.Tensor, rx: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, frequency_hz: float
                   ) -> torch.Tensor:
    """Upper bound [L] on the power of any path that touches one of the boxes: (lambda / (4 pi L_min))^2 with
    L_min = dist(tx, box) + dist(box, rx) <= the length of such a path (passive interactions: |R|, |T| <= 1;
    unit-gain antennas as traced). Point-like boxes at an end point give an infinite bound."""
    def dist(p):  # [L, 3] -> [L, B]
        q = torch.minimum(torch.maximum(p[:, None, :], lo.to(p.dtype)), hi.to(p.dtype))
        return torch.linalg.norm(q - p[:, None, :], dim=-1)

    lmin = (dist(tx) + dist(rx)).amin(-1)
    lam = SPEED_OF_LIGHT / frequency_hz
    return (lam / (4.0 * math.pi * lmin.clamp_min(1e-9))) ** 2


def affected_links(ps_list: list[PathSet], lo: torch.Tensor, hi: torch.Tensor, frequency_hz: float,
                   margin_m: float = 0.05, link_power: torch.Tensor | None = None,
                   new_path_tolerance_db: float | None = None) -> torch.Tensor:
    """Links (bool [L]) whose paths in any of ``ps_list`` (same links; e.g. the twin without the moving object
    and the current state) or whose direct tx-rx line, widened by the first Fresnel zone (at the lowest frequency
    ``frequency_hz``) and ``margin_m``, meet one of the boxes [lo, hi] ([B, 3] each).

    With ``new_path_tolerance_db`` and the links' linear ``link_power`` [L], links are also flagged when a path
    via the boxes *could* raise their power by more than that many dB (:func:`new_path_bound`): this catches
    reflections off the moving object towards links whose paths pass nowhere near it, at the price of
    re-tracing every link within reach (in a small room: most of them)."""
    L = ps_list[0].num_links
    hit = torch.zeros(L, dtype=torch.bool)
    tx, rx = ps_list[0].tx_pos, ps_list[0].rx_pos
    if new_path_tolerance_db is not None:
        if link_power is None:
            raise ValueError("new_path_tolerance_db needs the links' power (link_power)")
        ratio = 10.0 ** (new_path_tolerance_db / 10.0) - 1.0
        hit |= new_path_bound(tx, rx, lo, hi, frequency_hz) > ratio * link_power.to(tx.dtype)
    direct = fresnel_radius(torch.linalg.norm(rx - tx, dim=-1), frequency_hz) + margin_m
    hit |= segments_hit_boxes(tx, rx, lo, hi, direct).any(-1)
    for ps in ps_list:
        if ps.num_paths == 0:
            continue
        p0, p1 = path_segments(ps)
        grow = (fresnel_radius(ps.length_m, frequency_hz) + margin_m)[:, None].expand(p0.shape[:2])
        per_path = segments_hit_boxes(p0, p1, lo, hi, grow).any(-1).any(-1)  # [N]
        hit |= torch.zeros(L, dtype=torch.long).index_add_(0, ps.link, per_path.long()) > 0
    return hit
