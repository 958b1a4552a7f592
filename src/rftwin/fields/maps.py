"""Material maps over a surface: eps_r, sigma and the slab reflection magnitude |R_TE|, |R_TM| (ITU-R P.2040
slab of the object's thickness, :func:`rftwin.physics.slab.slab_coefficients`) at a given incidence angle, from a
trained field or a per-object twin; written as PNG images and a CSV table."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rftwin.fields.surface import SurfaceGrid
from rftwin.io import atomic_path, write_table
from rftwin.physics.slab import SPEED_OF_LIGHT, complex_permittivity, slab_coefficients
from rftwin.scene.split_wall import PART_SEPARATOR


@dataclass
class MaterialMap:
    """Values [P] on the cells of ``grid`` at ``frequency_hz`` and incidence ``angle_deg``."""

    name: str
    grid: SurfaceGrid
    eps_r: np.ndarray
    sigma: np.ndarray
    r_te: np.ndarray
    r_tm: np.ndarray
    frequency_hz: float
    angle_deg: float
    thickness_m: float


def object_mesh(meshes: list[tuple[np.ndarray, np.ndarray]], names: list[str], unit: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of all scene objects named ``unit`` or ``unit__<part>`` (one calibration unit)."""
    vs, fs, off = [], [], 0
    for (v, f), n in zip(meshes, names):
        if n.split(PART_SEPARATOR)[0] == unit:
            vs.append(v)
            fs.append(f + off)
            off += len(v)
    if not vs:
        units = sorted({n.split(PART_SEPARATOR)[0] for n in names})
        raise KeyError(f"no scene object '{unit}'; objects: {', '.join(units)}")
    return np.concatenate(vs), np.concatenate(fs)


def reflection_magnitudes(eps_r, sigma, frequency_hz: float, thickness_m: float, angle_deg: float
                          ) -> tuple[np.ndarray, np.ndarray]:
    """|R_TE|, |R_TM| [P] of slabs (eps_r, sigma [P]) at incidence ``angle_deg`` from the normal."""
    if not 0.0 <= angle_deg < 90.0:
        raise ValueError(f"incidence angle must be in [0, 90) degrees, got {angle_deg}")
    e = torch.as_tensor(np.asarray(eps_r, dtype=np.float64))
    s = torch.as_tensor(np.asarray(sigma, dtype=np.float64))
    eta = complex_permittivity(e, s, torch.tensor(float(frequency_hz), dtype=torch.float64))
    cos = torch.full_like(e, math.cos(math.radians(angle_deg)))
    r_te, r_tm, _, _ = slab_coefficients(cos, eta, torch.tensor(float(thickness_m), dtype=torch.float64),
                                         torch.tensor(SPEED_OF_LIGHT / frequency_hz, dtype=torch.float64))
    return r_te.abs().numpy(), r_tm.abs().numpy()


def build_map(name: str, grid: SurfaceGrid, eps_r: np.ndarray, sigma: np.ndarray, frequency_hz: float,
              thickness_m: float, angle_deg: float = 0.0) -> MaterialMap:
    r_te, r_tm = reflection_magnitudes(eps_r, sigma, frequency_hz, thickness_m, angle_deg)
    return MaterialMap(name, grid, np.asarray(eps_r), np.asarray(sigma), r_te, r_tm, float(frequency_hz),
                       float(angle_deg), float(thickness_m))


def _plot(path: Path, grid: SurfaceGrid, panels: list[tuple[str, np.ndarray, bool]], title: str) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.colors import LogNorm  # noqa: PLC0415

    extent = (grid.u[0], grid.u[-1], grid.v[0], grid.v[-1])
    aspect = (extent[1] - extent[0]) / max(extent[3] - extent[2], 1e-9)
    fig, axes = plt.subplots(1, len(panels), figsize=(min(5.5 * len(panels) * max(aspect, 0.6) / 1.6, 18), 3.8),
                             squeeze=False)
    for ax, (label, vals, log) in zip(axes[0], panels):
        img = grid.image(vals)
        finite = img[np.isfinite(img)]
        norm = None
        if log and finite.size and finite.min() > 0 and finite.max() > finite.min():
            norm = LogNorm(vmin=finite.min(), vmax=finite.max())
        im = ax.imshow(img, origin="lower", extent=extent, norm=norm, cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.85, label=label)
        ax.set_xlabel("u (m)")
        ax.set_ylabel("v (m)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_map(m: MaterialMap, out_dir: str | Path) -> list[Path]:
    """Write ``eps_r.png``, ``sigma.png``, ``reflection.png`` and ``material_map.csv`` to ``out_dir``."""
    import pandas as pd  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    g = m.grid
    head = f"{m.name} at {m.frequency_hz / 1e9:g} GHz"
    files = [out / "eps_r.png", out / "sigma.png", out / "reflection.png", out / "material_map.csv"]
    _plot(files[0], g, [("eps_r", m.eps_r, False)], f"{head}: relative permittivity")
    _plot(files[1], g, [("sigma (S/m)", m.sigma, True)], f"{head}: conductivity")
    _plot(files[2], g, [("|R_TE|", m.r_te, False), ("|R_TM|", m.r_tm, False)],
          f"{head}: slab reflection magnitude ({m.thickness_m:g} m) at {m.angle_deg:g} deg incidence")
    df = pd.DataFrame({"u_m": g.uv[:, 0], "v_m": g.uv[:, 1], "x_m": g.points[:, 0], "y_m": g.points[:, 1],
                       "z_m": g.points[:, 2], "eps_r": m.eps_r, "sigma_s_per_m": m.sigma, "r_te_abs": m.r_te,
                       "r_tm_abs": m.r_tm})
    write_table(files[3], df)
    return files
