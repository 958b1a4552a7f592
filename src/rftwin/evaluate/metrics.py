"""Accuracy metrics for twins and baselines (pure NumPy, NaN-aware).

All functions accept array-likes; entries where either operand is NaN/inf are ignored.

- ``abs_error_stats_db``/``male_db``: absolute errors of path gain (or any dB quantity), in dB.
- ``ssim``: structural similarity of two 2-D maps with a Gaussian window (Wang et al. 2004), NaN cells masked.
- ``mcs``: mean cosine similarity of complex CFR vectors (seed 003, WEDT).
- ``mre``: mean relative error of estimated parameters.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["abs_error_stats_db", "cdf", "male_db", "mcs", "mre", "ssim"]


def _paired(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=float)
    t = np.asarray(true, dtype=float)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: prediction {p.shape} vs truth {t.shape}")
    ok = np.isfinite(p) & np.isfinite(t)
    return p[ok], t[ok]


def abs_error_stats_db(pred_db, true_db) -> dict:
    """Statistics of ``|pred_db - true_db|`` over finite pairs.

    Returns ``{"male_db", "median_db", "p90_db", "bias_db", "rmse_db", "n"}`` (dB; NaN when ``n == 0``).
    ``bias_db`` is the mean signed error pred - true.
    """
    p, t = _paired(pred_db, true_db)
    n = int(p.size)
    if n == 0:
        nan = float("nan")
        return {"male_db": nan, "median_db": nan, "p90_db": nan, "bias_db": nan, "rmse_db": nan, "n": 0}
    e = p - t
    a = np.abs(e)
    return {
        "male_db": float(a.mean()),
        "median_db": float(np.median(a)),
        "p90_db": float(np.percentile(a, 90)),
        "bias_db": float(e.mean()),
        "rmse_db": float(np.sqrt(np.mean(e**2))),
        "n": n,
    }


def male_db(pred_db, true_db) -> float:
    """Mean absolute (log) error in dB over finite pairs (NaN when there is none)."""
    return abs_error_stats_db(pred_db, true_db)["male_db"]


def ssim(map_a, map_b, data_range: float | None = None, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """SSIM of two 2-D maps of equal shape (e.g. path gain in dB on a grid).

    Local statistics use a Gaussian window of std ``sigma`` cells (as scikit-image with
    ``gaussian_weights=True``). Cells that are NaN in either map are excluded by normalised convolution
    (the window weights are renormalised over valid cells), so maps with holes and small maps work;
    the mean is taken over valid cells. ``data_range`` defaults to max - min over the valid cells of both
    maps. Returns a value in [-1, 1]; NaN if no valid cell.
    """
    a = np.asarray(map_a, dtype=float)
    b = np.asarray(map_b, dtype=float)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"ssim expects two 2-D maps of the same shape, got {a.shape} and {b.shape}")
    valid = np.isfinite(a) & np.isfinite(b)
    if not valid.any():
        return float("nan")
    if data_range is None:
        vals = np.concatenate([a[valid], b[valid]])
        data_range = float(vals.max() - vals.min())
    if data_range <= 0:
        # Two constant, equal-valued maps are identical; otherwise use a unit range.
        data_range = 1.0
    w = valid.astype(float)
    a0 = np.where(valid, a, 0.0)
    b0 = np.where(valid, b, 0.0)

    def filt(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, sigma=sigma, mode="constant", cval=0.0, truncate=3.5)

    ws = filt(w)
    ws = np.where(ws > 1e-12, ws, np.nan)
    mu_a = filt(a0 * w) / ws
    mu_b = filt(b0 * w) / ws
    var_a = np.maximum(filt(a0 * a0 * w) / ws - mu_a**2, 0.0)
    var_b = np.maximum(filt(b0 * b0 * w) / ws - mu_b**2, 0.0)
    cov = filt(a0 * b0 * w) / ws - mu_a * mu_b
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(np.nanmean(s[valid]))


def mcs(cfr_pred, cfr_true) -> float:
    """Mean cosine similarity ``|<h_p, h_t>| / (|h_p| |h_t|)`` of complex CFR vectors along the last axis.

    ``cfr_pred``, ``cfr_true``: complex arrays ``[..., n_subcarriers]``. Vectors with zero norm or any
    non-finite entry in either operand are skipped. Returns a value in [0, 1] (NaN if none is valid).
    The measure is invariant to a global complex gain (phase and power offset), as in seed 003.
    """
    p = np.asarray(cfr_pred)
    t = np.asarray(cfr_true)
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: prediction {p.shape} vs truth {t.shape}")
    p = p.reshape(-1, p.shape[-1]) if p.ndim else p.reshape(1, 1)
    t = t.reshape(-1, t.shape[-1]) if t.ndim else t.reshape(1, 1)
    ok = np.all(np.isfinite(p), axis=-1) & np.all(np.isfinite(t), axis=-1)
    num = np.abs(np.sum(np.conj(t) * p, axis=-1))
    den = np.linalg.norm(p, axis=-1) * np.linalg.norm(t, axis=-1)
    ok &= den > 0
    if not ok.any():
        return float("nan")
    return float(np.mean(num[ok] / den[ok]))


def mre(est, true) -> float:
    """Mean relative error ``mean(|est - true| / |true|)`` over finite pairs with ``true != 0``."""
    e, t = _paired(est, true)
    ok = t != 0
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(e[ok] - t[ok]) / np.abs(t[ok])))


def cdf(values) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF of the finite ``values``: sorted values and probabilities ``(i+1)/n``."""
    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(np.asarray(values, dtype=float))])
    return v, (np.arange(v.size) + 1.0) / max(v.size, 1)
