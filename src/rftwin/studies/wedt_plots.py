"""PNG plots of the WEDT benchmark: gain maps side by side, MALE vs number of measurements."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rftwin.io import atomic_path

METHOD_LABELS = {"itu": "ITU labels", "diff_rt": "Diff-RT (per obj)", "bcm_map": "BCM map only",
                 "bcm_nll": "BCM+NLL (per obj)", "bcm_nll_nobias": "BCM+NLL, beta=0",
                 "diff_rt_field": "Diff-RT (field)",
                 "bcm_nll_field": "WEDT (field)", "gp_pu": "GP-PU", "nerf2": "NeRF2-style"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_gain_maps(path: Path, grid, truth_db: np.ndarray, maps: dict, tx: np.ndarray, m: int, title: str) -> Path:
    """Ground truth and every method's B2D gain map (dB) on the grid; measured receivers and tx marked."""

    plt = _plt()
    names = [k for k in METHOD_LABELS if k in maps]
    n = len(names) + 1
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    pts = grid.points
    ext = [pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max()]
    vmin, vmax = np.nanpercentile(truth_db, 1), np.nanpercentile(truth_db, 99)
    meas = pts[maps["measured"]]
    for ax, (label, vals) in zip(axes.ravel(), [("Ground truth (Sionna)", truth_db)]
                                 + [(METHOD_LABELS[k], maps[k]) for k in names]):
        im = ax.imshow(grid.to_map(vals), origin="lower", extent=ext, vmin=vmin, vmax=vmax, cmap="viridis",
                       aspect="equal", interpolation="nearest")
        ax.plot(meas[:, 0], meas[:, 1], "w.", ms=3)
        ax.plot(tx[0], tx[1], "r*", ms=10)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("x (m)", fontsize=8)
        ax.set_ylabel("y (m)", fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="path gain (dB)")
    fig.suptitle(f"{title}: B2D gain maps, M = {m} measured receivers (white)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def plot_male_vs_m(path: Path, res: dict) -> Path:
    """MALE (dB) vs M for B2D and D2D, one row per scene (random sampling)."""

    plt = _plt()
    scenes = list(res["scenes"])
    fig, axes = plt.subplots(len(scenes), 2, figsize=(10, 3.6 * len(scenes)), squeeze=False)
    for r, name in enumerate(scenes):
        rows = sorted((x for x in res["scenes"][name]["rows"] if x["sampling"] == "random"), key=lambda x: x["M"])
        for c, part in enumerate(("b2d", "d2d")):
            ax = axes[r, c]
            for i, (m, label) in enumerate(METHOD_LABELS.items()):  # fixed colour per method in every panel
                xs = [x["M"] for x in rows if m in x and x[m][part]["male_db"] is not None]
                ys = [x[m][part]["male_db"] for x in rows if m in x and x[m][part]["male_db"] is not None]
                if xs:
                    ax.plot(xs, ys, "o-", color=f"C{i}", label=label)
            ax.set_xscale("log")
            ax.set_xlabel("measured receivers M")
            ax.set_ylabel("MALE (dB)")
            ax.set_title(f"{name}: {part.upper()}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot_gain_maps", "plot_male_vs_m"]
