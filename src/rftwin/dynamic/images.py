"""Every specular path via a moving proxy, by the image method (pure torch, vectorised over links and sequences).

A specular path of at most D reflections that touches the proxy is a sequence of facets (coplanar triangles of
one object) ``prefix + [pivot] + suffix``: the pivot is the path's *last* reflection off the proxy, the suffix
holds scene facets only and the prefix anything. With A the image of the transmitter in the prefix facets and C
the image of the receiver in the suffix facets (taken backwards), the pivot point is where the segment from A to
the mirror image of C in the pivot's plane crosses that plane; it must lie in the pivot facet. This screens all
(prefix, pivot, suffix) triples of every link with a few vector operations; the survivors are unfolded into
their points (prefix backwards from the pivot, suffix forwards), and kept when every point lies in its facet and
no segment crosses a triangle (the proxy or the scene).

A candidate whose segments cross scene triangles exists in a trace with refraction (thin slabs: the refracted ray
goes straight on) as the same unfolded path with a refraction at every crossing, if the interactions fit in the
depth; it is returned that way. Candidates that pass through the proxy are returned separately (link, unfolded
length, objects crossed) so that the caller can bound their power. Reflections on the inner side of a closed
object's facet need two refractions more; sequences that would need them beyond the depth are not enumerated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rftwin.pathset import NONE, REFRACTION, SPECULAR


@dataclass(frozen=True)
class Facets:
    """Planar facets (coplanar triangles of one object), F of them, triangles padded to T per facet.

    ``normal`` [F, 3] unit normals, ``offset`` [F] (n . x = offset on the plane), ``tri`` [F, T, 3, 3] (m; NaN
    padding), ``obj`` [F] object index, ``prim`` [F, T] triangle index within its object (-1 padding),
    ``outward`` [F]: +1 / -1 when ``outward * normal`` points out of a closed object, 0 for open surfaces."""

    normal: torch.Tensor
    offset: torch.Tensor
    tri: torch.Tensor
    obj: torch.Tensor
    prim: torch.Tensor
    outward: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.normal.shape[0])

    def shifted(self, shift: torch.Tensor) -> Facets:
        """The facets translated by ``shift`` [3] (m)."""
        s = shift.to(self.tri.dtype)
        return Facets(self.normal, self.offset + self.normal @ s, self.tri + s, self.obj, self.prim, self.outward)


def facets_of(tri: torch.Tensor, obj: torch.Tensor, prim: torch.Tensor, closed: torch.Tensor | None = None,
              decimals: int = 6) -> Facets:
    """Group triangles ``tri`` [M, 3, 3] of objects ``obj`` [M] (``prim`` [M] their index in the object) into
    facets: same object, same plane (normal and offset rounded to ``decimals``). ``closed`` [M] bool: the
    triangle belongs to a closed (watertight, consistently wound) object; its facets get an outward side."""
    tri = tri.to(torch.float64)
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = torch.linalg.norm(n, dim=-1)
    ok = area2 > 1e-12
    closed = torch.zeros(len(tri), dtype=torch.bool) if closed is None else closed
    # orientation of every closed object: sign of its signed volume
    vol = torch.zeros(int(obj.max()) + 1 if len(obj) else 0, dtype=torch.float64)
    vol.index_add_(0, obj, (tri[:, 0] * torch.linalg.cross(tri[:, 1], tri[:, 2])).sum(-1))
    tri, obj, prim, n, closed = tri[ok], obj[ok], prim[ok], n[ok] / area2[ok, None], closed[ok]
    wind = n.clone()
    first = torch.gather(n, 1, (n.abs() > 1e-9).to(torch.int64).argmax(1, keepdim=True))
    n = torch.where(first < 0, -n, n)  # one orientation per plane
    outward = torch.where(closed, torch.sign((n * wind).sum(-1)) * torch.sign(vol[obj]), torch.zeros(len(n)))
    off = (n * tri[:, 0]).sum(-1)
    key = torch.round(torch.cat([obj[:, None].to(torch.float64), n, off[:, None]], 1) * 10**decimals)
    _, inv = np.unique(key.numpy(), axis=0, return_inverse=True)
    inv = torch.as_tensor(inv.reshape(-1))
    F = int(inv.max()) + 1 if len(inv) else 0
    order = torch.argsort(inv, stable=True)
    counts = torch.bincount(inv, minlength=F)
    T = int(counts.max()) if F else 1
    slot = torch.arange(len(inv)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    g = inv[order]
    tri_p = torch.full((F, T, 3, 3), math.nan, dtype=torch.float64)
    prim_p = torch.full((F, T), -1, dtype=torch.long)
    tri_p[g, slot] = tri[order]
    prim_p[g, slot] = prim[order]
    head = torch.cumsum(counts, 0) - counts
    return Facets(n[order][head], off[order][head], tri_p, obj[order][head], prim_p, outward[order][head])


def concat_facets(a: Facets, b: Facets) -> Facets:
    """Facets of ``a`` followed by those of ``b`` (triangle padding widened to the larger count)."""
    T = max(a.tri.shape[1], b.tri.shape[1])

    def pad(f: Facets) -> tuple[torch.Tensor, torch.Tensor]:
        extra = T - f.tri.shape[1]
        tri = torch.cat([f.tri, torch.full((f.count, extra, 3, 3), math.nan, dtype=f.tri.dtype)], 1)
        return tri, torch.cat([f.prim, torch.full((f.count, extra), -1, dtype=torch.long)], 1)

    (ta, pa), (tb, pb) = pad(a), pad(b)
    return Facets(torch.cat([a.normal, b.normal]), torch.cat([a.offset, b.offset]), torch.cat([ta, tb]),
                  torch.cat([a.obj, b.obj]), torch.cat([pa, pb]), torch.cat([a.outward, b.outward]))


def sequences(num: int, length: int, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """All sequences [S, length] over facets 0..num-1 (``allowed`` [num] bool: which may occur) without the same
    facet twice in a row."""
    idx = torch.arange(num) if allowed is None else torch.nonzero(allowed).reshape(-1)
    out = torch.zeros((1, 0), dtype=torch.long)
    for _ in range(length):
        a = out.repeat_interleave(len(idx), 0)
        b = idx.repeat(len(out))[:, None]
        out = torch.cat([a, b], 1)
        if out.shape[1] > 1:
            out = out[out[:, -1] != out[:, -2]]
    return out


def outer_side(images: torch.Tensor, fac: Facets, seqs: torch.Tensor) -> torch.Tensor:
    """Whether each reflection of the sequences ``seqs`` [S, k] happens on the outer side of a closed object's
    facet (always True for open surfaces), given the image [..., S, k, 3] each reflection sees (the source
    before the first; from the receiver's side for suffixes): bool [..., S]."""
    if seqs.shape[1] == 0:
        return torch.ones(images.shape[:-2], dtype=torch.bool)
    d = (images * fac.normal[seqs]).sum(-1) - fac.offset[seqs]  # [..., S, k]
    return ((d * fac.outward[seqs]) >= 0).all(-1)


def mirror(p: torch.Tensor, normal: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Mirror points p [..., 3] in planes (normal [..., 3], offset [...]) (broadcast)."""
    d = (p * normal).sum(-1) - offset
    return p - 2.0 * d[..., None] * normal


def image_chain(p: torch.Tensor, fac: Facets, seqs: torch.Tensor) -> torch.Tensor:
    """Images [U, S, k, 3] of points p [U, 3] after each reflection of the sequences ``seqs`` [S, k] (in order)."""
    U, (S, k) = p.shape[0], seqs.shape
    out = torch.empty((U, S, k, 3), dtype=p.dtype)
    cur = p[:, None, :].expand(U, S, 3)
    for j in range(k):  # k <= max depth
        cur = mirror(cur, fac.normal[seqs[:, j]], fac.offset[seqs[:, j]])
        out[:, :, j] = cur
    return out


def facet_frames(fac: Facets, pad: float = 0.0) -> tuple[torch.Tensor, ...]:
    """In-plane frames of the facets: origin [F, 3], axes e_u, e_v [F, 3] and the bounds [F, 2] (low, high) of
    their triangles' (u, v) coordinates, widened by ``pad`` (m)."""
    v0 = fac.tri[:, 0, 0]
    eu = fac.tri[:, 0, 1] - v0
    eu = eu / torch.linalg.norm(eu, dim=-1, keepdim=True)
    ev = torch.linalg.cross(fac.normal, eu)
    rel = fac.tri - v0[:, None, None, :]  # [F, T, 3, 3]
    uv = torch.stack([(rel * eu[:, None, None, :]).sum(-1), (rel * ev[:, None, None, :]).sum(-1)], -1)
    real = ~torch.isnan(uv)
    lo = torch.where(real, uv, torch.full_like(uv, math.inf)).amin((1, 2)) - pad
    hi = torch.where(real, uv, torch.full_like(uv, -math.inf)).amax((1, 2)) + pad
    return v0, eu, ev, lo, hi


def in_facet(p: torch.Tensor, fac: Facets, f: torch.Tensor, tol: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether points p [C, 3] (on the plane of facet ``f`` [C]) lie in one of its triangles: bool [C] and the
    triangle's ``prim`` [C] (-1 where none)."""
    tri = fac.tri[f]  # [C, T, 3, 3]
    v0, e1, e2 = tri[:, :, 0], tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    w = p[:, None, :] - v0
    d11, d12, d22 = (e1 * e1).sum(-1), (e1 * e2).sum(-1), (e2 * e2).sum(-1)
    w1, w2 = (w * e1).sum(-1), (w * e2).sum(-1)
    den = d11 * d22 - d12 * d12
    u = (d22 * w1 - d12 * w2) / den
    v = (d11 * w2 - d12 * w1) / den
    hit = (u >= -tol) & (v >= -tol) & (u + v <= 1 + tol)  # NaN padding compares False
    ok = hit.any(1)
    prim = torch.gather(fac.prim[f], 1, hit.to(torch.int64).argmax(1, keepdim=True))[:, 0]
    return ok, torch.where(ok, prim, torch.full_like(prim, -1))


def _cross_plane(a: torch.Tensor, b: torch.Tensor, normal: torch.Tensor, offset: torch.Tensor, eps: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Point where segment a -> b [C, 3] crosses the planes [C, 3], [C] and whether it does strictly inside."""
    da = (a * normal).sum(-1) - offset
    db = (b * normal).sum(-1) - offset
    den = da - db
    t = da / torch.where(den.abs() > 1e-15, den, torch.ones_like(den))
    ok = (da * db < 0) & (t > eps) & (t < 1 - eps)
    return a + t[:, None] * (b - a), ok


def segment_crossings(p0: torch.Tensor, p1: torch.Tensor, tri: torch.Tensor, eps: float = 1e-7
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Moeller-Trumbore: which triangles ``tri`` [M, 3, 3] the interiors of segments p0 -> p1 [..., 3] cross
    (``eps`` of the length from either end excluded): bool [..., M], and where (fraction t of the segment)."""
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    d = (p1 - p0)[..., None, :]
    pv = torch.linalg.cross(d.expand(*d.shape[:-2], len(tri), 3), e2.expand(*d.shape[:-2], len(tri), 3))
    det = (e1 * pv).sum(-1)
    ok = det.abs() > 1e-15
    inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
    s = p0[..., None, :] - v0
    u = (s * pv).sum(-1) * inv
    q = torch.linalg.cross(s, e1.expand_as(s))
    v = (d * q).sum(-1) * inv
    t = (e2 * q).sum(-1) * inv
    return ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > eps) & (t < 1 - eps), t


def convex_blocks(p0: torch.Tensor, p1: torch.Tensor, normal_out: torch.Tensor, offset_out: torch.Tensor,
                  tol_m: float = 1e-6) -> torch.Tensor:
    """Whether segments p0 -> p1 [..., 3] pass through the interior of a convex polytope (outward normals
    ``normal_out`` [P, 3], offsets [P]: n . x <= offset inside) for more than ``tol_m`` (m): bool [...]. A segment
    that only touches its surface (an end point on a face, tangent along an edge) is not blocked."""
    d0 = p0 @ normal_out.T - offset_out  # [..., P]
    d1 = p1 @ normal_out.T - offset_out
    den = d0 - d1
    t = d0 / torch.where(den.abs() > 1e-15, den, torch.ones_like(den))
    enter = torch.where((d0 > 0) & (d1 < 0), t, torch.zeros_like(t)).amax(-1)
    leave = torch.where((d0 < 0) & (d1 > 0), t, torch.ones_like(t)).amin(-1)
    outside = ((d0 >= 0) & (d1 >= 0)).any(-1)  # wholly on the outer side of one face
    length = torch.linalg.norm(p1 - p0, dim=-1)
    return ~outside & ((leave - enter) * length > tol_m)


@dataclass
class ProxyPaths:
    """Specular paths via the proxy, C of them, padded to depth D.

    ``link`` [C], ``itype`` [C, D] (specular, refraction where a segment crosses a scene object: the refracted
    ray goes straight on; none as padding), ``points`` [C, D, 3] (zero padding), ``obj`` / ``prim`` [C, D]
    (-1 padding); candidates that pass through the proxy (they exist with its slab's transmission):
    ``refr_link`` [R], ``refr_length_m`` [R] unfolded length, ``refr_obj`` [R, K] bool objects their segments
    cross; ``candidates``: (prefix, pivot, suffix) triples screened."""

    link: torch.Tensor
    itype: torch.Tensor
    points: torch.Tensor
    obj: torch.Tensor
    prim: torch.Tensor
    refr_link: torch.Tensor
    refr_length_m: torch.Tensor
    refr_obj: torch.Tensor
    candidates: int


class ImageMethod:
    """Enumerates the specular paths via a proxy for fixed links and a fixed static scene (cached per link:
    the receivers' images in the scene facets); :meth:`paths` takes the proxy's placed facets."""

    def __init__(self, tx: torch.Tensor, rx: torch.Tensor, scene: Facets, scene_tri: torch.Tensor,
                 scene_obj: torch.Tensor, scene_prim: torch.Tensor, num_objects: int, max_depth: int,
                 refraction: bool = True) -> None:
        """``tx``, ``rx`` [L, 3] (m); ``scene`` its facets and ``scene_tri`` [M, 3, 3] / ``scene_obj``,
        ``scene_prim`` [M] its triangles; ``num_objects`` K objects including the proxy; ``max_depth`` D
        interactions; ``refraction``: whether the trace refracts (else paths through objects do not exist)."""
        self.refraction = bool(refraction)
        self.tx, self.rx, self.scene, self.D = tx.to(torch.float64), rx.to(torch.float64), scene, int(max_depth)
        self.scene_tri, self.scene_obj, self.K = scene_tri.to(torch.float64), scene_obj, num_objects
        self.scene_prim = scene_prim
        self.utx, tx_id = torch.unique(self.tx, dim=0, return_inverse=True)
        self.tx_id = tx_id.reshape(-1)
        # suffixes (scene facets only, path order) and the receivers' images, per length
        self.suffix: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for n in range(self.D):
            seq = sequences(scene.count, n)
            # images of rx in s_n, then s_{n-1}, ...: K_j = image after reflecting in s_n .. s_j
            rev = image_chain(self.rx, scene, seq.flip(1)) if n else torch.zeros((len(rx), 1, 0, 3))
            K = rev.flip(2)  # [L, S, n, 3]: K_1 .. K_n in path order
            before = torch.cat([K[:, :, 1:], self.rx[:, None, None, :].expand(-1, len(seq), 1, 3)], 2)
            self.suffix[n] = (seq, K, outer_side(before, scene, seq) if n else torch.ones((len(rx), 1), dtype=bool))

    def paths(self, proxy: Facets, eps: float = 1e-7, convex: bool = False) -> ProxyPaths:
        """Every path via the placed ``proxy`` facets (indices after the scene's in :attr:`facets`). ``convex``:
        the proxy is a closed convex polytope (its crossings are then tested by clipping, so that a segment
        tangent to it is not blocked)."""
        fac = concat_facets(self.scene, proxy)
        G, F, D = self.scene.count, fac.count, self.D
        pivots = torch.arange(G, F)
        origin, eu, ev, lo, hi = facet_frames(fac, pad=1e-6)
        found = []  # (link, facet sequence [C, k], images of tx along the prefix, rx images of the suffix)
        screened = 0
        for lp in range(D):
            pre = sequences(F, lp)
            chain = image_chain(self.utx, fac, pre) if lp else torch.zeros((len(self.utx), 1, 0, 3))
            A_u = chain[:, :, -1] if lp else self.utx[:, None, :]  # [U, Sp, 3]
            before = torch.cat([self.utx[:, None, None, :].expand(-1, len(pre), 1, 3), chain[:, :, :-1]], 2)
            pre_out = outer_side(before, fac, pre)  # [U, Sp]
            for ls in range(D - lp):
                suf, K, suf_out = self.suffix[ls]
                C = K[:, :, 0] if ls else self.rx[:, None, :]  # [L, Ss, 3]
                # a reflection on the inner side of a closed object needs two refractions on top
                inner_ok = lp + 1 + ls + 2 <= D
                pre_ok = torch.ones_like(pre_out) if inner_ok else pre_out
                suf_ok = torch.ones_like(suf_out) if inner_ok else suf_out
                dA_u = A_u @ fac.normal[pivots].T - fac.offset[pivots]  # [U, Sp, B] signed distances
                dC_all = C @ fac.normal[pivots].T - fac.offset[pivots]  # [L, Ss, B]
                for j, b in enumerate(pivots.tolist()):  # a handful of proxy facets
                    out_b = float(fac.outward[b])
                    if out_b != 0 and not inner_ok:  # both ends on the outer side
                        okA, okC = dA_u[..., j] * out_b > 0, dC_all[..., j] * out_b > 0
                        mask = (pre_ok & okA)[self.tx_id][:, :, None] & (suf_ok & okC)[:, None, :]
                    else:  # both ends on the same side
                        sA = torch.sign(dA_u[..., j]).to(torch.int8)[self.tx_id]
                        sC = torch.sign(dC_all[..., j]).to(torch.int8)
                        same = sA[:, :, None] * sC[:, None, :] > 0
                        mask = pre_ok[self.tx_id][:, :, None] & suf_ok[:, None, :] & same
                    if lp:
                        mask &= (pre[:, -1] != b)[None, :, None]
                    screened += int(mask.numel())
                    li, pi, si = torch.nonzero(mask, as_tuple=True)
                    if len(li) == 0:
                        continue
                    # the pivot point at t = dA / (dA + dC) on the segment A -> mirror image of C; first its
                    # in-plane coordinates against the facet's bounds, then the exact triangle test
                    da, dc = dA_u[self.tx_id[li], pi, j], dC_all[li, si, j]
                    a = A_u[self.tx_id[li], pi]
                    c = mirror(C[li, si], fac.normal[b], fac.offset[b])
                    p = a + (da / (da + dc))[:, None] * (c - a)
                    rel = p - origin[b]
                    u, v = rel @ eu[b], rel @ ev[b]
                    box = (u >= lo[b, 0]) & (u <= hi[b, 0]) & (v >= lo[b, 1]) & (v <= hi[b, 1])
                    li, pi, si, p = li[box], pi[box], si[box], p[box]
                    hit, _ = in_facet(p, fac, torch.full((len(p),), b, dtype=torch.long))
                    if not bool(hit.any()):
                        continue
                    li, pi, si, p = li[hit], pi[hit], si[hit], p[hit]
                    seq = torch.cat([pre[pi], torch.full((len(li), 1), b, dtype=torch.long), suf[si]], 1)
                    found.append(self._unfold(li, seq, chain[self.tx_id[li], pi], K[li, si], p, fac, lp, eps))
        return self._assemble(found, fac, screened, eps, convex)

    def _unfold(self, li, seq, pre_img, suf_img, p, fac: Facets, lp: int, eps: float):
        """Points [C, k, 3] of the candidates (pivot point ``p`` [C, 3] at position ``lp``) and their validity."""
        C, k = seq.shape
        pts = torch.empty((C, k, 3), dtype=p.dtype)
        ok = torch.ones(C, dtype=torch.bool)
        pts[:, lp] = p
        nxt = p
        for j in range(lp - 1, -1, -1):  # prefix, backwards: towards the image after reflections 1..j+1
            f = seq[:, j]
            q, good = _cross_plane(nxt, pre_img[:, j], fac.normal[f], fac.offset[f], eps)
            pts[:, j] = q
            ok &= good
            nxt = q
        prev = p
        for j in range(lp + 1, k):  # suffix, forwards
            f = seq[:, j]
            q, good = _cross_plane(prev, suf_img[:, j - lp - 1], fac.normal[f], fac.offset[f], eps)
            pts[:, j] = q
            ok &= good
            prev = q
        prim = torch.full((C, k), -1, dtype=torch.long)
        for j in range(k):
            inside, pr = in_facet(pts[:, j], fac, seq[:, j])
            ok &= inside
            prim[:, j] = pr
        return li[ok], seq[ok], pts[ok], prim[ok]

    def _assemble(self, found, fac: Facets, screened: int, eps: float, convex: bool) -> ProxyPaths:
        D, G = self.D, self.scene.count
        found = [f for f in found if len(f[0])]
        if not found:
            e = torch.zeros(0, dtype=torch.long)
            return ProxyPaths(e, torch.zeros((0, D), dtype=torch.long), torch.zeros((0, D, 3), dtype=torch.float64),
                              torch.zeros((0, D), dtype=torch.long), torch.zeros((0, D), dtype=torch.long), e,
                              torch.zeros(0, dtype=torch.float64), torch.zeros((0, self.K), dtype=torch.bool), screened)
        link = torch.cat([f[0] for f in found])
        depth = torch.cat([torch.full((len(f[0]),), f[1].shape[1], dtype=torch.long) for f in found])
        obj = torch.cat([torch.cat([fac.obj[f[1]], torch.full((len(f[0]), D - f[1].shape[1]), -1)], 1)
                         for f in found])
        prim = torch.cat([torch.cat([f[3], torch.full((len(f[0]), D - f[1].shape[1]), -1)], 1) for f in found])
        pts = torch.cat([torch.cat([f[2], torch.zeros((len(f[0]), D - f[1].shape[1], 3), dtype=f[2].dtype)], 1)
                         for f in found])
        fseq = torch.cat([torch.cat([f[1], torch.full((len(f[0]), D - f[1].shape[1]), -1)], 1) for f in found])
        # every segment against the scene's triangles and the proxy (its triangles, or clipping when convex)
        n_px = 0 if convex else fac.tri.shape[1] * (fac.count - G)
        tri = torch.cat([self.scene_tri, fac.tri[G:].reshape(-1, 3, 3)[:n_px]])
        tobj = torch.cat([self.scene_obj, fac.obj[G:].repeat_interleave(fac.tri.shape[1])[:n_px]])
        tprim = torch.cat([self.scene_prim, fac.prim[G:].reshape(-1)[:n_px]])
        real = ~torch.isnan(tri).any(-1).any(-1)
        tri, tobj, tprim = tri[real], tobj[real], tprim[real]
        M = len(tri)
        used = torch.arange(D)[None, :] < depth[:, None]
        last = torch.where(used[..., None], pts, self.rx[link][:, None, :])
        v = torch.cat([self.tx[link][:, None], last, self.rx[link][:, None]], 1)  # [C, D + 2, 3]
        cross, t = segment_crossings(v[:, :-1], v[:, 1:], tri, eps)  # [C, D + 1, M]
        crossed = torch.zeros((len(link), self.K), dtype=torch.bool)
        c_idx, _, m_idx = torch.nonzero(cross, as_tuple=True)
        crossed[c_idx, tobj[m_idx]] = True
        if convex:
            n_out = fac.normal[G:] * fac.outward[G:, None]
            crossed[:, fac.obj[G]] = convex_blocks(v[:, :-1], v[:, 1:], n_out, fac.offset[G:] * fac.outward[G:]).any(1)
        by_proxy = crossed[:, fac.obj[G:]].any(1)
        # a reflection on the inner side of a closed object's facet must have entered it (crossed it); without
        # a crossing it is a tangent, degenerate case that no trace has
        f = fseq.clamp_min(0)
        side_prev = ((v[:, :-2] * fac.normal[f]).sum(-1) - fac.offset[f]) * fac.outward[f]
        side_next = ((v[:, 2:] * fac.normal[f]).sum(-1) - fac.offset[f]) * fac.outward[f]
        inner = used & ((side_prev < -1e-9) | (side_next < -1e-9))
        degenerate = (inner & ~crossed.gather(1, fac.obj[f])).any(1)
        # crossings of scene objects are refractions (the ray goes straight on): events ordered along the path,
        # reflection j ending segment j (key j + 1), a crossing of segment s at t (key s + t); a crossing seen
        # twice (an edge shared by two triangles) counts once
        key_c = torch.where(cross, torch.arange(D + 1, dtype=t.dtype)[None, :, None] + t, math.inf).reshape(
            len(link), (D + 1) * M)
        key_c, order_c = torch.sort(key_c, 1)
        dup = torch.cat([torch.zeros((len(link), 1), dtype=torch.bool), key_c[:, 1:] - key_c[:, :-1] < 1e-9], 1)
        key_c = torch.where(dup, math.inf, key_c)
        n_cross = torch.isfinite(key_c).sum(1)
        keep = ~by_proxy & ~degenerate & (depth + n_cross <= D)  # longer ones do not exist at depth D
        if not self.refraction:
            keep &= n_cross == 0
        length = torch.linalg.norm(v[:, 1:] - v[:, :-1], dim=-1).sum(1)
        refr = by_proxy & self.refraction
        link_k, C = link[keep], int(keep.sum())
        key_r = torch.where(used[keep], torch.arange(1, D + 1, dtype=t.dtype), math.inf)
        q = order_c[keep]  # flat (segment, triangle) index of each crossing
        seg, m = q // M, q % M
        vk = v[keep]
        cpts = vk[torch.arange(C)[:, None], seg] + t[keep].reshape(C, (D + 1) * M).gather(1, q)[..., None] * (
            vk[torch.arange(C)[:, None], seg + 1] - vk[torch.arange(C)[:, None], seg])
        keys = torch.cat([key_r, key_c[keep]], 1)
        ev_pts = torch.cat([pts[keep], cpts], 1)
        ev_obj = torch.cat([obj[keep], tobj[m]], 1)
        ev_prim = torch.cat([prim[keep], tprim[m]], 1)
        ev_type = torch.cat([torch.full_like(key_r, SPECULAR, dtype=torch.long),
                             torch.full_like(key_c[keep], REFRACTION, dtype=torch.long)], 1)
        keys, order = torch.sort(keys, 1)
        order, valid = order[:, :D], torch.isfinite(keys[:, :D])
        itype = torch.where(valid, ev_type.gather(1, order), NONE)
        out_pts = torch.where(valid[..., None], ev_pts.gather(1, order[..., None].expand(-1, -1, 3)), 0.0)
        out_obj = torch.where(valid, ev_obj.gather(1, order), -1)
        out_prim = torch.where(valid, ev_prim.gather(1, order), -1)
        return ProxyPaths(link_k, itype, out_pts, out_obj, out_prim, link[refr], length[refr], crossed[refr],
                          screened)


__all__ = ["Facets", "ImageMethod", "ProxyPaths", "facets_of", "concat_facets", "sequences", "image_chain",
           "in_facet", "segment_crossings", "mirror"]
