"""Dynamic scenes: move a proxy along a trajectory and re-trace only the links it can affect.

Step 0 traces every link with the proxy at its first point (and once without it: the static twin's paths and the
reference of the shadow loss). At every later step the proxy moves; the links whose paths (in the static twin or
in the current state) or whose direct tx-rx line, widened by the first Fresnel zone, meet the boxes of the proxy's
old and new place (:func:`rftwin.dynamic.region.affected_links`) are re-traced and their paths replaced; every
other link keeps its cached paths. Path gain, delay spread and shadow loss (static gain - current gain, dB) of
every link at every step come from the engine on the current paths.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rftwin.dynamic.paths import splice
from rftwin.dynamic.proxy import (
    ProxySpec,
    insert_proxy,
    move_proxy,
    proxy_half_size,
    proxy_triangles,
    remove_proxy,
)
from rftwin.dynamic.region import (
    affected_links,
    body_path_length,
    path_segments,
    scene_planes,
    segments_hit_triangles,
)
from rftwin.pathset import NONE, SPEED_OF_LIGHT, PathSet, concat
from rftwin.physics.channel import link_sum, path_power
from rftwin.physics.engine import path_coefficients
from rftwin.predict.predict import channel_features
from rftwin.scene.load import TwinScene
from rftwin.trace.tracer import SolverSettings, trace
from rftwin.twin_io import material_values


def _bucketed(tx: np.ndarray, affected: np.ndarray) -> list[np.ndarray]:
    """Links to re-trace, one array per transmitter: its affected links padded with further links of the same
    transmitter up to the next power of two (or all of them). Dr.Jit compiles Sionna's kernels for each receiver
    count anew (1-2 s on this machine); padding to a few counts reuses them, and the padded links are simply
    refreshed too."""
    _, tx_id = np.unique(tx, axis=0, return_inverse=True)
    tx_id = tx_id.reshape(-1)
    groups = []
    for t in np.unique(tx_id[affected]):
        members = np.nonzero(tx_id == t)[0]
        need = members[affected[members]]
        size = min(1 << int(np.ceil(np.log2(len(need)))), len(members))
        extra = members[~affected[members]][: size - len(need)]
        groups.append(np.sort(np.concatenate([need, extra])))
    return groups


def unblocked_paths(ps0: PathSet, tri: torch.Tensor) -> torch.Tensor:
    """Paths [N] of ``ps0`` (traced without the proxy) none of whose segments crosses the proxy's triangles
    ``tri`` [M, 3, 3] (placed): exactly the paths a specular / refraction trace keeps with the proxy there
    (a 0.2 m body slab transmits nothing)."""
    if ps0.num_paths == 0:
        return torch.zeros(0, dtype=torch.bool)
    p0, p1 = path_segments(ps0)
    return ~segments_hit_triangles(p0, p1, tri).any(-1)


def _proxy_paths(strong: PathSet, proxy_index: int) -> torch.Tensor:
    """Links [L] that have a (non-negligible) path interacting with the proxy."""
    per_path = ((strong.obj == proxy_index) & (strong.itype != NONE)).any(-1)
    return torch.zeros(strong.num_links, dtype=torch.long).index_add_(0, strong.link, per_path.long()) > 0


def geometric_retrace_set(tx: torch.Tensor, rx: torch.Tensor, tri: torch.Tensor, link_power: torch.Tensor,
                          frequency_hz: float, tolerance_db: float, strong: PathSet | None, proxy_index: int,
                          planes: tuple[torch.Tensor, torch.Tensor], order: int) -> torch.Tensor:
    """Links [L] the geometric update cannot serve: a specular path of up to ``order`` reflections, one of them
    off the proxy (placed triangles ``tri``) and the others off the scene's ``planes`` (normals, offsets), of
    power <= (lambda / 4 pi L)^2 could change their linear ``link_power`` [L] by more than ``tolerance_db``
    (:func:`rftwin.dynamic.region.body_path_length`), or their last trace has a path via the proxy (it moves
    with it)."""
    lam = SPEED_OF_LIGHT / frequency_hz
    bound = (lam / (4.0 * math.pi * body_path_length(tx, rx, tri, *planes, order))) ** 2
    need = bound > (10.0 ** (tolerance_db / 10.0) - 1.0) * link_power
    if strong is not None and strong.num_paths:
        need |= _proxy_paths(strong, proxy_index)
    return need


@dataclass
class UpdateResult:
    """``series``: one row per (step, link): ``step``, ``t_s``, ``link``, ``path_gain_db``, ``delay_spread_s``,
    ``shadow_loss_db``, ``retraced``; ``steps``: one row per step: ``step``, ``t_s``, ``x``, ``y``, ``z``,
    ``links_retraced``, ``seconds`` (move + test + re-trace + engine), ``trace_seconds``; ``static``: per-link
    path gain / delay spread of the twin without the proxy; ``pathset``: the final state."""

    series: pd.DataFrame
    steps: pd.DataFrame
    static: pd.DataFrame
    pathset: PathSet


def _features(ps: PathSet, mv, uf: np.ndarray, row_f: np.ndarray, ignore_below_db: float | None
              ) -> tuple[np.ndarray, np.ndarray, PathSet]:
    """Per-link path gain and delay spread, and the paths that matter for the region test: those within
    ``ignore_below_db`` of their link's total power at some frequency (all paths with None)."""
    with torch.no_grad():
        a = path_coefficients(ps, mv, torch.as_tensor(uf))[0]
        ft = channel_features(ps, a)
        strong = ps
        if ignore_below_db is not None and ps.num_paths:
            p = path_power(a)  # [F, N]
            total = link_sum(p, ps.link, ps.num_links)[:, ps.link]
            strong = ps.select_paths((p >= total * 10 ** (-ignore_below_db / 10)).any(0))
    rows = np.arange(ps.num_links)
    none = ps.paths_per_link().numpy() == 0
    g = np.where(none, np.nan, ft["path_gain_db"].numpy()[row_f, rows])
    ds = np.where(none, np.nan, ft["delay_spread_s"].numpy()[row_f, rows])
    return g, ds, strong


def _retrace(twin: TwinScene, tx: np.ndarray, rx: np.ndarray, settings: SolverSettings, aff: torch.Tensor,
             base: PathSet) -> tuple[PathSet, torch.Tensor]:
    """``base`` with the links ``aff`` [L] (padded per transmitter, :func:`_bucketed`) re-traced by Sionna; the
    links re-traced [L]."""
    groups = _bucketed(tx, aff.numpy())
    parts = [trace(twin, tx[g], rx[g], settings, cache_dir=False, progress=False) for g in groups]
    idx = torch.as_tensor(np.concatenate(groups))
    done = torch.zeros(len(tx), dtype=torch.bool)
    done[idx] = True
    return splice(base, idx, concat(parts)), done


METHODS = ("auto", "region", "geometric", "image")


def run_update(twin: TwinScene, doc: dict | None, tx_pos: np.ndarray, rx_pos: np.ndarray, frequency_hz: np.ndarray,
               proxy: ProxySpec, times_s: np.ndarray, positions: np.ndarray, settings: SolverSettings | None = None,
               margin_m: float = 0.05, full_retrace: bool = False, progress: bool = True,
               cache_dir=None, ignore_below_db: float | None = 30.0,
               new_path_tolerance_db: float | None = None, method: str = "auto",
               geometric_tolerance_db: float = 0.01, geometric_order: int | None = None) -> UpdateResult:
    """Move ``proxy`` through ``positions`` [T, 3] (bounding-box centres at ``times_s`` [T]) in ``twin`` and track
    links ``tx_pos[i] -> rx_pos[i]`` at ``frequency_hz[i]``. ``full_retrace``: re-trace every link at every step
    (the reference). Paths more than ``ignore_below_db`` below their link's total power (None: no path) are left
    out of the region test: blocking them changes the link's gain by less than 10^(-ignore_below_db / 10)
    (4e-3 dB at 30 dB). ``new_path_tolerance_db``: also re-trace links that a path via the proxy could change
    by more than that (:func:`rftwin.dynamic.region.new_path_bound`). The proxy is removed from the twin's scene
    afterwards (also after an error): the twin is unchanged.

    ``method="auto"``: ``image``, or ``region`` for traces with diffraction, diffuse reflection or without specular
    reflection.

    ``method="image"`` (specular / refraction traces only): every link's paths are the static twin's paths that do
    not cross the proxy plus every specular path via the proxy of up to ``max_depth`` reflections, computed by the
    image method (:class:`rftwin.dynamic.exact.ImageUpdate`); Sionna re-traces only links where paths the image
    method does not build (through the proxy, or via it and through other objects: refraction) could change the
    path gain by more than ``geometric_tolerance_db`` (bounded, so never in a room of opaque walls and a body).

    ``method="geometric"`` (specular / refraction traces only, no diffraction or diffuse reflection): every
    link's paths are the static twin's paths that do not cross the proxy's triangles at its new place
    (:func:`unblocked_paths`, exact), except for the links that :func:`geometric_retrace_set` sends to Sionna
    (a specular path via the proxy of up to ``geometric_order`` reflections (default: the trace's max depth)
    could change them by more than ``geometric_tolerance_db``, or their last trace had a path via the proxy).
    With the default order the test is conservative (plane extents and occlusion ignored, |R| <= 1); a lower
    order is faster and misses paths via the proxy with more reflections for the links it does not flag.

    ``steps`` gets the time of every part of a step: ``move_seconds`` (Sionna scene edit), ``local_seconds``
    (region / geometric test, or the image method and its PathSet records), ``trace_seconds`` (Sionna solver
    calls and their PathSet conversion) and ``engine_seconds`` (channel engine and features)."""
    from rftwin.progress import track  # noqa: PLC0415

    settings = settings or SolverSettings()
    if method not in METHODS:
        raise ValueError(f"method '{method}': expected one of {', '.join(METHODS)}")
    if method == "auto":
        method = "region" if (settings.diffraction or settings.diffuse_reflection
                              or not settings.specular_reflection) else "image"
    if method in ("geometric", "image") and (settings.diffraction or settings.diffuse_reflection):
        raise ValueError(f"method '{method}' needs a trace without diffraction and diffuse reflection "
                         "(near misses change those paths); use method 'region'")
    if method == "image" and not settings.specular_reflection:
        raise ValueError("method 'image' builds specular paths; with specular reflection off use method 'region'")
    tx = np.asarray(tx_pos, dtype=np.float64).reshape(-1, 3)
    rx = np.asarray(rx_pos, dtype=np.float64).reshape(-1, 3)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    uf, row_f = np.unique(np.asarray(frequency_hz, dtype=np.float64), return_inverse=True)
    row_f = row_f.reshape(-1)
    f_min = float(uf.min())
    # the static twin
    ps0 = trace(twin, tx, rx, settings, cache_dir=cache_dir, progress=False)
    g0, ds0, strong0 = _features(ps0, material_values(twin, doc, uf), uf, row_f, ignore_below_db)
    half = proxy_half_size(proxy)
    order = settings.max_depth if geometric_order is None else int(geometric_order)
    planes = scene_planes(torch.as_tensor(np.concatenate([v[f] for v, f in twin.meshes()]))) \
        if method == "geometric" else None
    insert_proxy(twin, proxy, positions[0])
    try:  # the proxy leaves the twin again, also after an error
        scene_at = positions[0]
        proxy_index = len(twin.objects) - 1
        tri0 = torch.as_tensor(proxy_triangles(proxy))
        tx_t, rx_t = torch.as_tensor(tx), torch.as_tensor(rx)
        mv = material_values(twin, doc, uf)
        image = None
        if method == "image" and not full_retrace:
            from rftwin.dynamic.exact import ImageUpdate, link_path_power  # noqa: PLC0415

            image = ImageUpdate(twin, ps0, link_path_power(ps0, mv, uf, row_f), tri0.numpy(), proxy_index, mv, uf,
                                row_f, settings.max_depth, settings.refraction)
        ratio = 10.0 ** (geometric_tolerance_db / 10.0) - 1.0
        series, steps = [], []
        ps = strong = None
        g = g0
        L = len(tx)
        for k in track(range(len(positions)), "moving the proxy", enabled=progress and len(positions) > 1):
            t0 = time.perf_counter()
            if k > 0 and image is None:
                move_proxy(twin, proxy.name, positions[k])
                scene_at = positions[k]
            t_move = time.perf_counter() - t0
            geo = None
            t_engine = 0.0
            if image is not None:
                geo, extra = image.step(positions[k])
                te = time.perf_counter()
                g, ds, strong = feats = _features(geo, mv, uf, row_f, None)
                t_engine += time.perf_counter() - te
                power = torch.as_tensor(10.0 ** (np.nan_to_num(g, nan=-300.0) / 10.0))
                aff = extra > ratio * power
            elif k == 0 or full_retrace:
                aff = torch.ones(L, dtype=torch.bool)
            elif method == "geometric":
                tri = tri0 + torch.as_tensor(positions[k])
                power = torch.as_tensor(10.0 ** (np.nan_to_num(np.minimum(g, g0), nan=-300.0) / 10.0))
                aff = geometric_retrace_set(tx_t, rx_t, tri, power, f_min, geometric_tolerance_db, strong, proxy_index,
                                            planes, order)
                geo = ps0.select_paths(unblocked_paths(ps0, tri))
            else:
                lo = torch.as_tensor(np.stack([positions[k - 1], positions[k]]) - half)
                hi = torch.as_tensor(np.stack([positions[k - 1], positions[k]]) + half)
                power = torch.as_tensor(10.0 ** (np.nan_to_num(np.minimum(g, g0), nan=-300.0) / 10.0))
                aff = affected_links([strong0, strong], lo, hi, f_min, margin_m, power, new_path_tolerance_db)
            t1 = time.perf_counter()
            t_local = t1 - t0 - t_move - t_engine
            if image is not None and bool(aff.any()) and not np.array_equal(scene_at, positions[k]):
                move_proxy(twin, proxy.name, positions[k])  # Sionna needs the proxy only for a re-trace
                scene_at = positions[k]
                t_move += time.perf_counter() - t1
                t1 = time.perf_counter()
            retraced = bool(aff.any())
            if bool(aff.all()):
                ps = trace(twin, tx, rx, settings, cache_dir=False, progress=False)
            elif retraced:
                ps, aff = _retrace(twin, tx, rx, settings, aff, ps0 if geo is None and ps is None else
                                   (geo if geo is not None else ps))
            elif geo is not None:
                ps = geo
            t_trace = time.perf_counter() - t1
            te = time.perf_counter()
            if image is None or retraced:
                g, ds, strong = _features(ps, mv, uf, row_f, ignore_below_db)
            else:
                g, ds, strong = feats
            t_engine += time.perf_counter() - te
            secs = time.perf_counter() - t0
            steps.append({"step": k, "t_s": float(times_s[k]), "x": positions[k, 0], "y": positions[k, 1],
                          "z": positions[k, 2], "links_retraced": int(aff.sum()), "seconds": secs,
                          "move_seconds": t_move, "local_seconds": t_local, "trace_seconds": t_trace,
                          "engine_seconds": t_engine,
                          "image_paths": 0 if image is None else len(image.last.link)})
            series.append(pd.DataFrame({"step": k, "t_s": float(times_s[k]), "link": np.arange(L), "path_gain_db": g,
                                        "delay_spread_s": ds, "shadow_loss_db": g0 - g, "retraced": aff.numpy()}))
        static = pd.DataFrame({"link": np.arange(L), "path_gain_db": g0, "delay_spread_s": ds0})
        return UpdateResult(series=pd.concat(series, ignore_index=True), steps=pd.DataFrame(steps), static=static,
                            pathset=ps)
    finally:
        remove_proxy(twin, proxy.name)


__all__ = ["UpdateResult", "run_update", "splice"]
