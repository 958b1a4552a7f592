"""The convergence plot of a calibration (PNG): loss, parameters and, against a known truth, errors per
iteration. Its own module, so that the demo draws it without the imports of the calibration outputs (pandas)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rftwin.io import atomic_path


def convergence_png(history: list[dict], path: Path) -> Path:
    """PNG of the loss, the per-object values relative to their final values, and (when the history carries the
    true-material errors) the mean relative errors of eps_r and sigma, per iteration."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    it = [r["iteration"] for r in history]
    has_mre = "mre_eps" in history[0]
    fig, ax = plt.subplots(1, 3 if has_mre else 2, figsize=(15 if has_mre else 10, 3.8))
    ax[0].semilogy(it, [max(r["loss"], 1e-16) for r in history])
    ax[0].set(xlabel="iteration", ylabel="loss", title="loss")
    e = np.array([r["eps_r"] for r in history])
    s = np.array([r["sigma"] for r in history])
    for k in range(e.shape[1]):
        ax[1].plot(it, e[:, k] / e[-1, k], lw=1)
        ax[1].plot(it, s[:, k] / s[-1, k], lw=1, ls="--")
    ax[1].set(xlabel="iteration", ylabel="value / final value", title="ε_r (solid), σ (dashed) per object")
    if has_mre:
        ax[2].semilogy(it, [r["mre_eps"] for r in history], label="ε_r")
        ax[2].semilogy(it, [r["mre_sigma"] for r in history], label="σ")
        ax[2].set(xlabel="iteration", ylabel="mean relative error", title="error vs true materials")
        ax[2].legend()
    for a_ in ax:
        a_.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


__all__ = ["convergence_png"]
