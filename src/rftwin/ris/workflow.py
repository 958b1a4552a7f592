"""``rftwin ris``: rank candidate RIS poses for a target area on a (calibrated) twin; tables and figures."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rftwin.ris.geometry import RisPose, ris_visibility, stack_poses
from rftwin.ris.physics import RisSpec
from rftwin.ris.planning import RisPowers, RisRanking, focal_candidates, rank, ris_powers


@dataclass
class RisStudy:
    """Ranking of the candidates on one twin: table (one row per candidate, best first), the ranking arrays, the
    target points [P, 3] and the RIS powers."""

    table: pd.DataFrame
    ranking: RisRanking
    points: np.ndarray
    powers: RisPowers


def candidate_powers(twin, tx: np.ndarray, poses: list[RisPose], points: np.ndarray, spec: RisSpec,
                     frequency_hz: float, focus: str = "center") -> RisPowers:
    """RIS path gains [C, F, P] at the target points, with visibility from the twin's geometry (the RIS path does
    not depend on materials: one call serves every twin of the same geometry)."""
    elements, normals = stack_poses(poses, spec)
    vis = ris_visibility(twin, tx, points, elements)
    return ris_powers(tx, elements, normals, points, focal_candidates(points, focus), spec, frequency_hz, vis)


def ranking_table(ids: list[str], poses: list[RisPose], powers: RisPowers, rk: RisRanking) -> pd.DataFrame:
    """One row per candidate, best first."""
    rows = []
    foc = powers.focal.detach().cpu().numpy()
    for r, c in enumerate(rk.order, 1):
        p = poses[c]
        f = foc[c, rk.focal_index[c]]
        with np.errstate(divide="ignore"):
            ris_mean = 10 * np.log10(np.mean(10 ** (rk.ris_db[c] / 10)))
        rows.append({"rank": r, "candidate_id": ids[c], "x": p.center[0], "y": p.center[1], "z": p.center[2],
                     "nx": p.normal[0], "ny": p.normal[1], "nz": p.normal[2],
                     "mean_gain_db": rk.mean_gain_db[c], "median_gain_db": rk.median_gain_db[c],
                     "min_gain_db": rk.min_gain_db[c], "mean_ris_path_gain_db": ris_mean,
                     "visible_share": float(powers.visible_share[c]),
                     "focus_x": f[0], "focus_y": f[1], "focus_z": f[2]})
    return pd.DataFrame(rows)


def plot_gain_maps(study: RisStudy, ids: list[str], path: str | Path, title: str = "") -> None:
    """PNG: gain [dB] of every candidate over the target points (scatter, x-y), best first."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rk, pts = study.ranking, study.points
    C = len(rk.order)
    ncol = min(4, C)
    nrow = (C + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.0 * nrow), squeeze=False)
    vmax = float(np.nanmax(rk.gain_db)) if np.isfinite(rk.gain_db).any() else 1.0
    im = None
    for ax in axes.ravel()[C:]:
        ax.axis("off")
    for ax, c in zip(axes.ravel(), rk.order):
        im = ax.scatter(pts[:, 0], pts[:, 1], c=rk.gain_db[c], s=30, marker="s", vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(f"{ids[c]}: {rk.mean_gain_db[c]:.2f} dB", fontsize=9)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="gain with RIS [dB]")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_ris(twin, doc: dict | None, tx: np.ndarray, ids: list[str], poses: list[RisPose], points: np.ndarray,
            spec: RisSpec, frequency_hz: float, settings, focus: str = "center", progress: bool = True,
            cache_dir=None) -> RisStudy:
    """Path gain of the twin (no RIS) at the target points (traced, engine at the twin's materials), the RIS path
    of every candidate focused on the area, the ranking."""
    from rftwin.predict.predict import predict_links  # noqa: PLC0415

    tx = np.asarray(tx, dtype=np.float64).reshape(3)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    table = predict_links(twin, doc, np.repeat(tx[None], len(pts), 0), pts, np.full(len(pts), frequency_hz),
                          settings, progress, cache_dir)
    ref = 10 ** (table["path_gain_db"].to_numpy(dtype=np.float64) / 10)
    powers = candidate_powers(twin, tx, poses, pts, spec, frequency_hz, focus)
    rk = rank(powers, ref)
    return RisStudy(ranking_table(ids, poses, powers, rk), rk, pts, powers)


__all__ = ["RisStudy", "candidate_powers", "plot_gain_maps", "ranking_table", "run_ris"]
