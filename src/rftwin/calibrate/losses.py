"""Calibration losses over measured rows (pure torch) and the loss-term specification.

Elementwise losses take simulated [B, M] and measured [M] values and return [B] (one value per start); weights
[M] are per-row (zero = row left out). A calibration objective is a weighted sum of :class:`LossTerm` s, each a
(feature, metric, weight) triple, e.g. ``path_gain:smape:1,delay_spread:smape:1`` (seed 002 eq. 11).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

LOSSES = ("mse_db", "nae", "smape", "mse", "nmse")
# metrics allowed per feature; the first is the default
FEATURE_METRICS = {
    "path_gain": ("mse_db", "nae", "smape"),
    "mpc_power": ("mse_db", "nae", "smape"),
    "delay_spread": ("smape", "mse", "nae"),
    "mean_delay": ("mse", "smape", "nae"),
    "cfr": ("nmse",),
}
# metrics that are a sum of squared residuals (usable by Levenberg-Marquardt and the Laplace report)
LEAST_SQUARES = ("mse_db", "mse", "nmse")
DELAY_UNIT_S = 1e-9  # the 'mse' metric on delays is in ns^2


@dataclass(frozen=True)
class LossTerm:
    """One weighted term of the objective: ``feature`` (path_gain, delay_spread, mean_delay, cfr, mpc_power),
    ``metric`` (mse_db: MSE in dB; nae: normalised absolute error on linear power; smape: symmetric mean absolute
    percentage error, on linear power for powers; mse: MSE in ns^2 for delays; nmse: complex CFR NMSE)."""

    feature: str = "path_gain"
    metric: str = "mse_db"
    weight: float = 1.0

    def __post_init__(self):
        if self.feature not in FEATURE_METRICS:
            raise ValueError(f"unknown feature '{self.feature}', expected one of {sorted(FEATURE_METRICS)}")
        if self.metric not in FEATURE_METRICS[self.feature]:
            raise ValueError(f"metric '{self.metric}' does not apply to '{self.feature}'; use one of "
                             f"{FEATURE_METRICS[self.feature]}")
        if not self.weight >= 0:
            raise ValueError(f"loss-term weight must be >= 0, got {self.weight}")

    @property
    def least_squares(self) -> bool:
        return self.metric in LEAST_SQUARES

    def __str__(self) -> str:
        return f"{self.feature}:{self.metric}:{self.weight:g}"


def parse_terms(spec: str) -> tuple[LossTerm, ...]:
    """``"path_gain:smape:1,delay_spread:smape:0.5"`` -> LossTerms. Metric and weight are optional
    (``"path_gain,delay_spread"``: default metric, weight 1)."""
    terms = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        bits = part.split(":")
        if len(bits) > 3:
            raise ValueError(f"loss term '{part}': expected FEATURE[:METRIC[:WEIGHT]]")
        feat = bits[0]
        if feat not in FEATURE_METRICS:
            raise ValueError(f"loss term '{part}': unknown feature '{feat}', expected one of "
                             f"{sorted(FEATURE_METRICS)}")
        metric = bits[1] if len(bits) > 1 and bits[1] else FEATURE_METRICS[feat][0]
        try:
            weight = float(bits[2]) if len(bits) > 2 else 1.0
        except ValueError:
            raise ValueError(f"loss term '{part}': weight '{bits[2]}' is not a number") from None
        terms.append(LossTerm(feat, metric, weight))
    if not terms:
        raise ValueError(f"no loss terms in '{spec}'")
    return tuple(terms)


def _wmean(e: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return e.mean(-1)
    return (weight * e).sum(-1) / weight.sum(-1).clamp_min(1e-30)


def db_offset(sim_db: torch.Tensor, meas_db: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Closed-form global gain offset [B] (dB) minimising the weighted dB MSE of sim + offset vs measured
    (seed 003 eq. 26)."""
    w = torch.ones_like(meas_db) if weight is None else weight.expand_as(meas_db)
    r = torch.where(w > 0, meas_db - sim_db, torch.zeros((), dtype=sim_db.dtype))
    return (r * w).sum(-1) / w.sum(-1).clamp_min(1e-30)


def mse_db(sim_db: torch.Tensor, meas_db: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error (dB^2)."""
    r = sim_db - meas_db
    if weight is not None:
        r = torch.where(weight > 0, r, torch.zeros((), dtype=r.dtype))
    return _wmean(r * r, weight)


mse = mse_db  # the same on any unit


def nae(sim_lin: torch.Tensor, meas_lin: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised absolute error on linear power (seed 004): mean |sim - meas| / meas."""
    e = (sim_lin - meas_lin).abs() / meas_lin
    if weight is not None:
        e = torch.where(weight > 0, e, torch.zeros((), dtype=e.dtype))
    return _wmean(e, weight)


def smape(sim: torch.Tensor, meas: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric mean absolute percentage error (seed 002 eq. 11): mean 2 |sim - meas| / (|sim| + |meas|),
    in [0, 2]."""
    e = 2.0 * (sim - meas).abs() / (sim.abs() + meas.abs()).clamp_min(1e-300)
    if weight is not None:
        e = torch.where(weight > 0, e, torch.zeros((), dtype=e.dtype))
    return _wmean(e, weight)


def cfr_relative_error(sim: torch.Tensor, meas: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """(H_sim - H_meas) / ||H_meas|| per row [B, M, K] (zero on rows with zero weight)."""
    ok = torch.ones(meas.shape[0], dtype=torch.bool) if weight is None else weight > 0
    m = torch.where(ok[:, None], meas, torch.zeros((), dtype=meas.dtype))
    nrm = torch.sqrt((m.real ** 2 + m.imag ** 2).sum(-1)).clamp_min(1e-300)
    e = (sim - m) / nrm[:, None]
    return torch.where(ok[:, None], e, torch.zeros((), dtype=e.dtype))
