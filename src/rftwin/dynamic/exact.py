"""The exact local update (``method="image"``): static paths the proxy leaves alone + every path via it.

At each step a link's paths are (1) the static twin's paths none of whose segments crosses the proxy (exact
segment / triangle test) and (2) every path of at most ``max_depth`` interactions via the proxy: specular
reflections found by the image method, with a refraction wherever a segment passes through a scene object
(:class:`rftwin.dynamic.images.ImageMethod`), turned into PathSet records by the tracer's own geometry code. That
is what a specular / refraction trace of the scene with the proxy finds, except paths *through* the proxy: their
power is bounded (|T|^2 of the proxy's slab per object crossed, (lambda / 4 pi L)^2 for new paths) and links
where they could change the path gain by more than the tolerance are handed back for a Sionna re-trace (with
``body``, |T|^2 < 1e-30 at 28 GHz: never).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from rftwin.dynamic.images import ImageMethod, ProxyPaths, convex_blocks, facets_of
from rftwin.dynamic.paths import add_paths
from rftwin.dynamic.region import path_segments, segments_hit_boxes, segments_hit_triangles
from rftwin.pathset import NONE, SPEED_OF_LIGHT, PathSet
from rftwin.physics.channel import link_sum, path_power
from rftwin.physics.engine import MaterialValues, path_coefficients
from rftwin.physics.slab import complex_permittivity, slab_coefficients
from rftwin.scene.load import TwinScene
from rftwin.trace.tracer import AntennaSpec, antenna_vectors, path_records, reset_devices

_GEO_FIELDS = dict(length_m="length", k_tx="k_tx", k_rx="k_rx", itype="itype", obj="obj", prim="prim",
                   point="point", normal="normal", cos_i="cos_i", rot_in="rot_in", rot_out="rot_out", prob="prob")


def transmission_bound(mv: MaterialValues, frequencies_hz: np.ndarray, num: int = 181) -> torch.Tensor:
    """Largest |T|^2 [K] of every object's slab over incidence angles (``num`` cosines in [0, 1]), both
    polarisations and the given frequencies (per-object values ``mv`` [1, F, K])."""
    f = torch.as_tensor(frequencies_hz, dtype=torch.float64).reshape(-1, 1, 1)  # [F, 1, 1]
    cos = torch.linspace(0.0, 1.0, num, dtype=torch.float64).reshape(1, -1, 1)
    eps = torch.as_tensor(mv.eps_r, dtype=torch.float64).reshape(-1, 1, mv.eps_r.shape[-1])[-len(f):]
    sig = torch.as_tensor(mv.sigma, dtype=torch.float64).reshape(-1, 1, mv.sigma.shape[-1])[-len(f):]
    th = torch.as_tensor(mv.thickness, dtype=torch.float64).reshape(1, 1, -1)
    eta = complex_permittivity(eps, sig, f)
    _, _, t_te, t_tm = slab_coefficients(cos, eta, th, SPEED_OF_LIGHT / f)
    return torch.maximum(t_te.abs() ** 2, t_tm.abs() ** 2).amax((0, 1))


def link_path_power(ps: PathSet, mv: MaterialValues, uf: np.ndarray, row_f: np.ndarray) -> torch.Tensor:
    """Power [N] of every path at its link's frequency (``row_f`` [L] index into ``uf``)."""
    with torch.no_grad():
        p = path_power(path_coefficients(ps, mv, torch.as_tensor(uf))[0])  # [F, N]
    rows = torch.as_tensor(row_f, dtype=torch.long)[ps.link]
    return p[rows, torch.arange(ps.num_paths)] if ps.num_paths else torch.zeros(0, dtype=torch.float64)


class ImageUpdate:
    """Per-step state of the exact local update for fixed links, a fixed static trace and one proxy."""

    def __init__(self, twin: TwinScene, ps0: PathSet, p0: torch.Tensor, proxy_tri: np.ndarray, proxy_index: int,
                 mv: MaterialValues, uf: np.ndarray, row_f: np.ndarray, max_depth: int, refraction: bool = True
                 ) -> None:
        """``twin`` with the proxy already inserted (object ``proxy_index``); ``ps0`` the static trace and ``p0``
        [N0] its path powers; ``proxy_tri`` [M, 3, 3] the proxy centred on its bounding box (m); ``mv`` material
        values [1, F, K] at the frequencies ``uf``; ``row_f`` [L] each link's frequency; ``max_depth`` and
        ``refraction`` as traced."""
        if twin.scene.tx_array is None or twin.scene.rx_array is None:  # the static trace came from the cache
            reset_devices(twin.scene, AntennaSpec(**ps0.meta.get("tx_antenna", {})),
                          AntennaSpec(**ps0.meta.get("rx_antenna", {})))
        meshes = twin.meshes()
        self.static_meshes = [m for i, m in enumerate(meshes) if i != proxy_index]
        tri, obj, prim, closed = [], [], [], []
        for i, (v, f) in enumerate(meshes):
            if i == proxy_index:
                continue
            tri.append(torch.as_tensor(v[f]))
            obj.append(torch.full((len(f),), i, dtype=torch.long))
            prim.append(torch.arange(len(f)))
            closed.append(torch.full((len(f),), bool(twin.objects[i].watertight)))
        tri, obj, prim, closed = torch.cat(tri), torch.cat(obj), torch.cat(prim), torch.cat(closed)
        self.proxy_tri0 = torch.as_tensor(proxy_tri, dtype=torch.float64)
        M = len(self.proxy_tri0)
        self.proxy_verts0 = self.proxy_tri0.reshape(-1, 3).numpy()
        self.proxy_faces = np.arange(3 * M).reshape(M, 3)
        self.proxy_facets0 = facets_of(self.proxy_tri0, torch.full((M,), proxy_index, dtype=torch.long),
                                       torch.arange(M), torch.full((M,), bool(twin.objects[proxy_index].watertight)))
        pf = self.proxy_facets0
        self.n_out, self.o_out = pf.normal * pf.outward[:, None], pf.offset * pf.outward
        # a closed convex proxy (box, cylinder): every vertex on the inner side of every facet plane
        self.convex = bool((pf.outward != 0).all()) and bool(
            ((self.proxy_tri0.reshape(-1, 3) @ self.n_out.T - self.o_out) <= 1e-9).all())
        self.twin, self.ps0, self.p0, self.proxy_index = twin, ps0, p0, proxy_index
        self.K = len(twin.objects)
        self.method = ImageMethod(ps0.tx_pos, ps0.rx_pos, facets_of(tri, obj, prim, closed), tri, obj, prim, self.K,
                                  max_depth, refraction)
        self.lam = torch.as_tensor(SPEED_OF_LIGHT / uf[row_f], dtype=torch.float64)  # [L] wavelength per link
        # nothing goes through an object in a trace without refraction
        self.t2 = transmission_bound(mv, uf) if refraction else torch.zeros(self.K, dtype=torch.float64)  # [K]
        self.D = max_depth
        self.last: ProxyPaths | None = None
        self.segments = path_segments(ps0) if ps0.num_paths else None

    def blocked(self, position: np.ndarray) -> torch.Tensor:
        """Static paths [N0] that the proxy at ``position`` [3] (m) blocks: its bounding box first, then the exact
        test on the paths that meet it (clipping for a convex proxy: a tangent path is not blocked, as in a
        trace; triangles otherwise)."""
        shift = torch.as_tensor(position, dtype=torch.float64)
        tri = self.proxy_tri0 + shift
        blocked = torch.zeros(self.ps0.num_paths, dtype=torch.bool)
        if self.segments is None:
            return blocked
        p0s, p1s = self.segments
        lo, hi = tri.reshape(-1, 3).amin(0)[None], tri.reshape(-1, 3).amax(0)[None]
        near = torch.nonzero(segments_hit_boxes(p0s, p1s, lo, hi, 1e-9).any(-1).any(-1)).reshape(-1)
        if self.convex:
            blocked[near] = convex_blocks(p0s[near], p1s[near], self.n_out, self.o_out + self.n_out @ shift).any(-1)
        else:
            blocked[near] = segments_hit_triangles(p0s[near], p1s[near], tri).any(-1)
        return blocked

    def step(self, position: np.ndarray) -> tuple[PathSet, torch.Tensor]:
        """Paths of every link with the proxy's bounding-box centre at ``position`` [3] (m), and an upper bound
        [L] on the power of the paths a trace could have on top of them."""
        shift = torch.as_tensor(position, dtype=torch.float64)
        ps0, L = self.ps0, self.ps0.num_links
        blocked = self.blocked(position)
        extra = link_sum(self.p0 * blocked * self.t2[self.proxy_index], ps0.link, L)
        pp = self.method.paths(self.proxy_facets0.shifted(shift), convex=self.convex)
        self.last = pp
        if len(pp.refr_link):
            t2 = torch.where(pp.refr_obj, self.t2[None, :], torch.ones_like(self.t2)[None, :]).prod(1)
            lam = self.lam[pp.refr_link]
            extra = extra + link_sum(t2 * (lam / (4.0 * math.pi * pp.refr_length_m)) ** 2, pp.refr_link, L)
        new = self.pathset(pp, position)
        return add_paths(ps0.select_paths(~blocked), new), extra

    def pathset(self, pp: ProxyPaths, position: np.ndarray) -> PathSet:
        """PathSet records of the paths ``pp`` (the tracer's geometry and antenna code; ``a_ref`` zero: these
        paths were not traced)."""
        ps0, C = self.ps0, len(pp.link)
        used = pp.itype != NONE
        raw = {"itype": pp.itype.numpy(), "shape": pp.obj.numpy(),
               "prim": pp.prim.numpy(), "prob": used.to(torch.float64).numpy(), "vert": pp.points.numpy(),
               "src": np.arange(C), "tgt": np.arange(C)}
        meshes = list(self.static_meshes)
        meshes.insert(self.proxy_index, (self.proxy_verts0 + np.asarray(position, dtype=np.float64),
                                         self.proxy_faces))
        link = pp.link.numpy()
        geo = path_records(raw, ps0.tx_pos.numpy()[link], ps0.rx_pos.numpy()[link], {i: i for i in range(self.K)},
                        meshes)
        f_tx, f_rx = antenna_vectors(self.twin.scene, geo["k_tx"], geo["k_last_in"])
        R, T = ps0.a_ref.shape[1:]
        return PathSet(tx_pos=ps0.tx_pos, rx_pos=ps0.rx_pos, link=pp.link.clone(),
                       f_tx=torch.from_numpy(np.ascontiguousarray(f_tx)),
                       f_rx=torch.from_numpy(np.ascontiguousarray(f_rx)),
                       a_ref=torch.zeros((C, R, T), dtype=ps0.a_ref.dtype), meta=dict(ps0.meta),
                       **{n: torch.from_numpy(np.ascontiguousarray(geo[k])) for n, k in _GEO_FIELDS.items()})


__all__ = ["ImageUpdate", "link_path_power", "transmission_bound"]
