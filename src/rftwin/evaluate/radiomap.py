"""Coverage maps of a (calibrated) twin with Sionna RT's ``RadioMapSolver``.

The twin's materials (given as a :class:`rftwin.scene.scene_materials.SceneMaterials`, else a calibration
folder's ``materials.json`` at the map frequency, else the scene's own radio materials) are set on the Sionna
scene only while the solver runs (and the scene frequency is the map's only then: both are restored before
:func:`compute_radio_map` returns), one or more transmitters (isotropic, vertically polarised,
as in :func:`rftwin.trace.trace`) are placed, and the solver estimates the path gain of every cell of a
horizontal plane at ``height_m``. The solver scores a ray only where it crosses the plane, so a transmitter in (or
close to) the plane gets no (or a very noisy) line-of-sight term; rftwin therefore runs the solver without LoS and
adds the exact LoS gain (lambda / 4 pi d)^2 at every visible cell centre (:func:`los_path_gain`).
Outputs: path gain [n_tx, ny, nx] (dB; NaN where no ray reached the cell),
cell centres [ny, nx, 3] (m), written as NPZ and PNG.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rftwin.io import atomic_path
from rftwin.scene.load import TwinScene
from rftwin.scene.scene_materials import SceneMaterials, applied_materials
from rftwin.trace.tracer import SolverSettings, reset_devices


@dataclass
class RadioMapResult:
    """Path gain [n_tx, ny, nx] (dB), cell centres [ny, nx, 3] (m), transmitters [n_tx, 3] (m), frequency (Hz),
    plane height (m), cell size (m), transmit power (dBm, None when not given)."""

    path_gain_db: np.ndarray
    cell_centers_m: np.ndarray
    tx_pos: np.ndarray
    frequency_hz: float
    height_m: float
    cell_m: float
    tx_power_dbm: float | None = None
    inside: np.ndarray | None = None  # [ny, nx] cells whose centre lies inside a closed object (set to NaN)

    def coverage(self) -> dict[str, int]:
        """Cell counts: ``cells``, ``with_value`` (finite for some transmitter), ``inside`` (inside a closed
        object), ``no_ray`` (neither: no path reached the cell)."""
        best = np.isfinite(self.best_path_gain_db)
        inside = np.zeros_like(best) if self.inside is None else self.inside
        return {"cells": int(best.size), "with_value": int(best.sum()), "inside": int(inside.sum()),
                "no_ray": int((~best & ~inside).sum())}

    @property
    def x_m(self) -> np.ndarray:
        return self.cell_centers_m[0, :, 0]

    @property
    def y_m(self) -> np.ndarray:
        return self.cell_centers_m[:, 0, 1]

    @property
    def best_path_gain_db(self) -> np.ndarray:
        """[ny, nx] strongest transmitter per cell (dB)."""
        pg = self.path_gain_db
        with np.errstate(invalid="ignore"):
            best = np.max(np.where(np.isfinite(pg), pg, -np.inf), axis=0)
        return np.where(np.isfinite(best), best, np.nan)


def document_materials(twin: TwinScene, doc: dict | None, frequency_hz: float) -> SceneMaterials | None:
    """The materials of a ``materials.json`` document at ``frequency_hz`` (eps_r, sigma; S and K_xpd where some
    S > 0) as a record to trace at; None without a document (the scene's own materials). Call it while the scene
    is at ``frequency_hz``: objects the document lacks take the scene's values at its current frequency."""
    if doc is None:
        return None
    from rftwin.twin_io import material_values  # noqa: PLC0415

    mv = material_values(twin, doc, np.array([frequency_hz]))
    return SceneMaterials(mv.eps_r.reshape(-1), mv.sigma.reshape(-1),
                          None if mv.scattering is None else mv.scattering.reshape(-1),
                          None if mv.xpd is None else mv.xpd.reshape(-1))


def compute_radio_map(twin: TwinScene, doc: dict | None, tx_pos, frequency_hz: float, height_m: float = 1.5,
                      cell_m: float = 1.0, xlim: tuple[float, float] | None = None,
                      ylim: tuple[float, float] | None = None, settings: SolverSettings | None = None,
                      tx_power_dbm: float | None = None, mask_inside: bool = True,
                      materials: SceneMaterials | None = None) -> RadioMapResult:
    """Radio map of ``twin`` for transmitters ``tx_pos`` [n_tx, 3] (m) on the plane z = ``height_m``, at
    ``materials`` (default: those of ``doc`` at ``frequency_hz``, else the scene's own); the scene is left as it
    was.

    The plane covers ``xlim`` x ``ylim`` (default: the scene's bounding box) with square cells of ``cell_m``
    (the extent is rounded up to whole cells). ``settings``: samples per transmitter, depth, mechanisms and seed of
    the solver (``samples_per_src`` is used as samples per transmitter). ``mask_inside``: cells whose centre lies
    inside a closed (watertight) object are set to NaN.
    """
    import mitsuba as mi  # noqa: PLC0415

    from rftwin.runtime import sionna_rt  # noqa: PLC0415

    rt = sionna_rt()
    settings = settings or SolverSettings()
    tx = np.asarray(tx_pos, dtype=float).reshape(-1, 3)
    if not len(tx):
        raise ValueError("at least one transmitter position is needed")
    if not np.all(np.isfinite(tx)):
        raise ValueError("transmitter positions must be finite")
    if not cell_m > 0:
        raise ValueError(f"cell size must be > 0 m, found {cell_m}")
    if not frequency_hz > 0:
        raise ValueError(f"frequency must be > 0 Hz, found {frequency_hz}")
    lo, hi = twin.bbox()
    x0, x1 = xlim if xlim is not None else (float(lo[0]), float(hi[0]))
    y0, y1 = ylim if ylim is not None else (float(lo[1]), float(hi[1]))
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty map area x {x0:g}..{x1:g} m, y {y0:g}..{y1:g} m")
    sc = twin.scene
    reset_devices(sc)
    for i, p in enumerate(tx):
        kw = {} if tx_power_dbm is None else {"power_dbm": float(tx_power_dbm)}
        sc.add(rt.Transmitter(name=f"tx{i}", position=[float(v) for v in p], **kw))
    try:
        from rftwin.trace.kernel_cache import opaque_materials  # noqa: PLC0415
        from rftwin.trace.shared_materials import share_materials  # noqa: PLC0415

        solver = rt.RadioMapSolver()
        # LoS is added exactly below: Sionna scores a ray only where it crosses the plane, so a transmitter in (or
        # near) the plane gets no (or a very noisy) LoS term; the map's frequency and materials are set only for
        # the solver call; equal materials share one instance while it runs
        with applied_materials(twin, frequency_hz=frequency_hz):
            mats = materials if materials is not None else document_materials(twin, doc, frequency_hz)
            with applied_materials(twin, mats), share_materials(twin):
                opaque_materials(sc)  # material values as kernel inputs: a map at new values compiles nothing new
                rm = solver(sc, center=mi.Point3f((x0 + x1) / 2, (y0 + y1) / 2, float(height_m)),
                            orientation=mi.Point3f(0.0, 0.0, 0.0), size=mi.Point2f(x1 - x0, y1 - y0),
                            cell_size=mi.Point2f(cell_m, cell_m), samples_per_tx=int(settings.samples_per_src),
                            max_depth=int(settings.max_depth), los=False,
                            specular_reflection=settings.specular_reflection,
                            diffuse_reflection=settings.diffuse_reflection, refraction=settings.refraction,
                            diffraction=settings.diffraction, edge_diffraction=settings.edge_diffraction,
                            seed=int(settings.seed))
                pg = np.array(rm.path_gain.numpy(), dtype=np.float64)
                centres = np.array(rm.cell_centers.numpy(), dtype=np.float64)
        if settings.los:
            pg = pg + los_path_gain(twin, tx, centres, frequency_hz)
    finally:
        for i in range(len(tx)):
            sc.remove(f"tx{i}")
    with np.errstate(divide="ignore"):
        pg_db = np.where(pg > 0, 10 * np.log10(np.where(pg > 0, pg, 1.0)), np.nan)
    inside = inside_objects(twin, centres) if mask_inside else None
    if inside is not None:
        pg_db[:, inside] = np.nan
    return RadioMapResult(pg_db, centres, tx, float(frequency_hz), float(height_m), float(cell_m), tx_power_dbm,
                          inside=inside)


def los_path_gain(twin: TwinScene, tx_pos: np.ndarray, points: np.ndarray, frequency_hz: float) -> np.ndarray:
    """Line-of-sight path gain (linear) [n_tx, *points.shape[:-1]] of isotropic antennas: (lambda / 4 pi d)^2
    where the segment transmitter -> point is not blocked by the scene, else 0 (0 as well at d < 1 mm).

    This is the LoS term of Sionna's ``PathSolver`` for the isotropic, vertically polarised antennas rftwin uses
    (|f_rx^H f_tx| = 1 on the LoS direction), evaluated at the cell centres."""
    import drjit as dr  # noqa: PLC0415
    import mitsuba as mi  # noqa: PLC0415

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    lam = 299_792_458.0 / float(frequency_hz)
    out = np.zeros((len(tx_pos), len(pts)))
    for i, p in enumerate(np.asarray(tx_pos, dtype=np.float64).reshape(-1, 3)):
        v = pts - p
        d = np.linalg.norm(v, axis=1)
        ok = d > 1e-3
        if not ok.any():
            continue
        u = v[ok] / d[ok, None]
        n = int(ok.sum())
        o = mi.Point3f(*(mi.Float(np.full(n, p[k], dtype=np.float32)) for k in range(3)))
        dirs = mi.Vector3f(*(mi.Float(u[:, k].astype(np.float32)) for k in range(3)))
        ray = mi.Ray3f(o, dirs)
        ray.maxt = mi.Float((d[ok] * (1.0 - 1e-4)).astype(np.float32))
        blocked = np.array(twin.scene.mi_scene.ray_test(ray), dtype=bool).reshape(-1)
        dr.eval()
        g = np.zeros(len(pts))
        g[np.nonzero(ok)[0][~blocked]] = (lam / (4 * np.pi * d[ok][~blocked])) ** 2
        out[i] = g
    return out.reshape((len(tx_pos),) + np.asarray(points).shape[:-1])


def inside_objects(twin: TwinScene, points: np.ndarray) -> np.ndarray:
    """Boolean mask (shape of ``points[..., 0]``): points inside a watertight object of the twin."""
    from rftwin.data.measurements import points_inside_mesh  # noqa: PLC0415

    p = np.asarray(points, dtype=float)
    flat = p.reshape(-1, 3)
    inside = np.zeros(len(flat), dtype=bool)
    for o, (v, f) in zip(twin.objects, twin.meshes()):
        if not o.watertight:
            continue
        near = np.all((flat >= v.min(0)) & (flat <= v.max(0)), axis=1) & ~inside
        if near.any():
            inside[near] = points_inside_mesh(flat[near], v, f)
    return inside.reshape(p.shape[:-1])


def write_npz(res: RadioMapResult, path: str | os.PathLike) -> Path:
    """NPZ with ``path_gain_db`` [n_tx, ny, nx], ``cell_centers_m`` [ny, nx, 3], ``x_m`` [nx], ``y_m`` [ny],
    ``tx_pos_m`` [n_tx, 3], ``frequency_hz``, ``height_m``, ``cell_size_m`` (and ``rss_dbm`` with a power)."""
    path = Path(path)
    arrays = {"path_gain_db": res.path_gain_db, "cell_centers_m": res.cell_centers_m, "x_m": res.x_m,
              "y_m": res.y_m, "tx_pos_m": res.tx_pos, "frequency_hz": np.float64(res.frequency_hz),
              "height_m": np.float64(res.height_m), "cell_size_m": np.float64(res.cell_m)}
    if res.tx_power_dbm is not None:
        arrays["rss_dbm"] = res.path_gain_db + res.tx_power_dbm
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def plot_radio_map(res: RadioMapResult, path: str | os.PathLike, twin: TwinScene | None = None,
                   title: str | None = None) -> Path:
    """PNG of the strongest-transmitter path gain (or RSS with a power) with transmitters and, with ``twin``,
    the outlines of objects cut by the map plane."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    val = res.best_path_gain_db + (res.tx_power_dbm or 0.0)
    label = "RSS (dBm)" if res.tx_power_dbm is not None else "path gain (dB)"
    c = res.cell_m / 2
    ext = [res.x_m[0] - c, res.x_m[-1] + c, res.y_m[0] - c, res.y_m[-1] + c]
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=120)
    finite = val[np.isfinite(val)]
    vmin = np.percentile(finite, 1) if finite.size else None
    # no value (grey): no ray reached the cell, or the cell is inside an object
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.75")
    im = ax.imshow(val, origin="lower", extent=ext, cmap=cmap, vmin=vmin, aspect="equal")
    if twin is not None:
        _draw_sections(ax, twin, res.height_m)
    ax.plot(res.tx_pos[:, 0], res.tx_pos[:, 1], "r*", ms=10, label="transmitter")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title or f"{res.frequency_hz / 1e9:.4g} GHz, z = {res.height_m:g} m, {res.cell_m:g} m cells",
                 fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _draw_sections(ax, twin: TwinScene, z: float) -> None:
    """Draw the intersection of every object's triangles with the plane z (line segments)."""
    segs = []
    for v, f in twin.meshes():
        tri = v[f]  # [F, 3, 3]
        d = tri[..., 2] - z
        cut = (d.min(1) < 0) & (d.max(1) > 0)
        for t, dd in zip(tri[cut], d[cut]):
            pts = []
            for a, b in ((0, 1), (1, 2), (2, 0)):
                if (dd[a] < 0) != (dd[b] < 0):
                    s = dd[a] / (dd[a] - dd[b])
                    pts.append(t[a, :2] + s * (t[b, :2] - t[a, :2]))
            if len(pts) == 2:
                segs.append(pts)
    if segs:
        from matplotlib.collections import LineCollection  # noqa: PLC0415

        ax.add_collection(LineCollection(segs, colors="white", linewidths=0.8, alpha=0.8))


__all__ = ["RadioMapResult", "compute_radio_map", "document_materials", "inside_objects", "plot_radio_map",
           "write_npz"]
