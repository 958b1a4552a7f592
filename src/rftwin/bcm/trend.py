"""Macroscopic trends of the channel parameters (seed 003, eq. 14), fitted by least squares on LoS samples.

g_p(d) = G0 - 10 n0 log10 d  (path gain, dB);   g_tau(d) = A0 d^b0  (RMS delay spread, ns).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_DISTANCE_M = 1.0
MIN_SAMPLES = 3  # fewer LoS samples than this: fit on all samples (and fix the exponent below 2 samples)
N0_BOUNDS = (1.0, 6.0)  # physical range of the path-loss exponent
B0_BOUNDS = (-1.0, 2.0)  # and of the delay-spread distance exponent


@dataclass(frozen=True)
class LogDistanceTrend:
    """g_p(d) = g0_db - 10 n0 log10(d / 1 m)."""

    g0_db: float
    n0: float
    num_samples: int
    used_los_only: bool

    def __call__(self, d_m: np.ndarray) -> np.ndarray:
        return self.g0_db - 10.0 * self.n0 * np.log10(np.maximum(np.asarray(d_m, dtype=np.float64), MIN_DISTANCE_M))


@dataclass(frozen=True)
class PowerLawTrend:
    """g_tau(d) = a0 d^b0 (units of the fitted values; d in m)."""

    a0: float
    b0: float
    num_samples: int
    used_los_only: bool

    def __call__(self, d_m: np.ndarray) -> np.ndarray:
        return self.a0 * np.maximum(np.asarray(d_m, dtype=np.float64), MIN_DISTANCE_M) ** self.b0


def _subset(los: np.ndarray | None, n: int) -> tuple[np.ndarray, bool]:
    if los is not None and int(np.sum(los)) >= MIN_SAMPLES:
        return np.asarray(los, dtype=bool), True
    return np.ones(n, dtype=bool), False


def _bounded_line(x: np.ndarray, y: np.ndarray, bounds: tuple[float, float]) -> tuple[float, float]:
    """Least-squares intercept and slope of y = c + s x with the slope constrained to ``bounds`` (a clipped
    slope gets its intercept refitted). Samples spanning a short distance range otherwise give absurd slopes
    that the trend then extrapolates over the whole map."""
    A = np.column_stack([np.ones_like(x), x])
    (c, sl), *_ = np.linalg.lstsq(A, y, rcond=None)
    if not bounds[0] <= sl <= bounds[1]:
        sl = float(np.clip(sl, *bounds))
        c = float(np.mean(y - sl * x))
    return float(c), float(sl)


def fit_log_distance(d_m: np.ndarray, gain_db: np.ndarray, los: np.ndarray | None = None,
                     default_n0: float = 2.0) -> LogDistanceTrend:
    """Least-squares (G0, n0) on the LoS samples (all samples when fewer than 3 are LoS; with a single sample
    n0 = ``default_n0``, free space); n0 is constrained to :data:`N0_BOUNDS`."""
    d_m, gain_db = np.asarray(d_m, dtype=np.float64), np.asarray(gain_db, dtype=np.float64)
    if d_m.shape != gain_db.shape or d_m.ndim != 1 or len(d_m) == 0:
        raise ValueError(f"distances {d_m.shape} and gains {gain_db.shape} must be non-empty vectors of one length")
    sel, los_only = _subset(los, len(d_m))
    x = -10.0 * np.log10(np.maximum(d_m[sel], MIN_DISTANCE_M))
    y = gain_db[sel]
    if len(y) < 2 or np.ptp(x) < 1e-9:
        return LogDistanceTrend(float(np.mean(y - default_n0 * x)), default_n0, len(y), los_only)
    g0, n0 = _bounded_line(x, y, N0_BOUNDS)
    return LogDistanceTrend(g0, n0, len(y), los_only)


def fit_power_law(d_m: np.ndarray, value: np.ndarray, los: np.ndarray | None = None,
                  floor: float = 1e-3) -> PowerLawTrend:
    """Least-squares (A0, b0) of log(value) = log A0 + b0 log d on the LoS samples (values floored at ``floor``;
    fallbacks as in :func:`fit_log_distance`, with b0 = 0 for a single sample); b0 within :data:`B0_BOUNDS`."""
    d_m, value = np.asarray(d_m, dtype=np.float64), np.asarray(value, dtype=np.float64)
    if d_m.shape != value.shape or d_m.ndim != 1 or len(d_m) == 0:
        raise ValueError(f"distances {d_m.shape} and values {value.shape} must be non-empty vectors of one length")
    sel, los_only = _subset(los, len(d_m))
    x = np.log(np.maximum(d_m[sel], MIN_DISTANCE_M))
    y = np.log(np.maximum(value[sel], floor))
    if len(y) < 2 or np.ptp(x) < 1e-9:
        return PowerLawTrend(float(np.exp(np.mean(y))), 0.0, len(y), los_only)
    la, b0 = _bounded_line(x, y, B0_BOUNDS)
    return PowerLawTrend(float(np.exp(la)), b0, len(y), los_only)


__all__ = ["LogDistanceTrend", "PowerLawTrend", "fit_log_distance", "fit_power_law"]
