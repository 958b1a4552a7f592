"""The Bayesian channel map (seed 003, eqs. 13-19): trend + GP residual per channel parameter.

alpha_hat(r*) = g_alpha(d(r*)) + E[xi_alpha(omega~(r*))],  kappa_alpha(r*) = Var[xi_alpha(omega~(r*))]
for alpha in {p: path gain (dB), tau: RMS delay spread (ns)}.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rftwin.bcm.features import FeatureScaler, GeometryFeatures
from rftwin.bcm.gp import GpConfig, ResidualGp
from rftwin.bcm.trend import (
    LogDistanceTrend,
    PowerLawTrend,
    fit_log_distance,
    fit_power_law,
)

PARAMETERS = ("gain_db", "delay_spread_ns")


@dataclass
class ChannelMap:
    """BCM at P target positions: means and variances of path gain (dB, dB^2) and RMS delay spread (ns, ns^2)."""

    position: np.ndarray  # [P, 3]
    gain_db: np.ndarray  # [P]
    gain_var: np.ndarray  # [P]
    delay_spread_ns: np.ndarray  # [P]
    delay_spread_var: np.ndarray  # [P]

    def subset(self, index) -> ChannelMap:
        return ChannelMap(self.position[index], self.gain_db[index], self.gain_var[index],
                          self.delay_spread_ns[index], self.delay_spread_var[index])


@dataclass
class BcmConfig:
    gp: GpConfig = field(default_factory=GpConfig)
    use_path_features: bool = True  # phi_path in the kernel (False: position-only GP, the classic kriging)
    use_fade_features: bool = True  # phi_fade in the kernel
    min_variance: dict = field(default_factory=lambda: {"gain_db": 0.01, "delay_spread_ns": 0.01})


class BayesianChannelMap:
    """Fit on measured links (features + measured gain/delay spread), query at any target links."""

    def __init__(self, cfg: BcmConfig | None = None):
        self.cfg = cfg or BcmConfig()
        self.scaler = FeatureScaler()
        self.trends: dict[str, LogDistanceTrend | PowerLawTrend] = {}
        self.gps: dict[str, ResidualGp] = {}
        self.position_dims: tuple[int, ...] = (0, 1)

    def _features(self, f: GeometryFeatures) -> np.ndarray:
        parts = [f.position[:, list(self.position_dims)]]
        if self.cfg.use_path_features:
            parts.append(f.path)
        if self.cfg.use_fade_features:
            parts.append(f.fade)
        return np.concatenate(parts, 1)

    def fit(self, measured: GeometryFeatures, gain_db: np.ndarray, delay_spread_ns: np.ndarray | None,
            reference: GeometryFeatures | None = None) -> BayesianChannelMap:
        """``measured``: features of the M measured links; ``gain_db``, ``delay_spread_ns`` [M] measured values
        (``delay_spread_ns`` None: a map of path gain only; its delay spreads are NaN with infinite variance).
        ``reference`` (e.g. the target links): features whose spread defines the normalisation (default: the
        measured ones)."""
        values = {"gain_db": np.asarray(gain_db, np.float64)}
        if delay_spread_ns is not None:
            values["delay_spread_ns"] = np.asarray(delay_spread_ns, np.float64)
        M = len(measured.position)
        for name, v in values.items():
            if v.shape != (M,):
                raise ValueError(f"{name}: expected {M} values (one per measured link), got shape {v.shape}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{name}: measured values must be finite (rows {np.nonzero(~np.isfinite(v))[0][:5]})")
        ref = reference if reference is not None else measured
        self.position_dims = tuple(i for i in range(3) if np.ptp(ref.position[:, i]) > 1e-9) or (0,)
        self.scaler.fit(self._features(ref))
        X = self.scaler.transform(self._features(measured))
        d, los = measured.distance_m, measured.los
        fit_trend = {"gain_db": fit_log_distance, "delay_spread_ns": fit_power_law}
        self.trends = {name: fit_trend[name](d, v, los) for name, v in values.items()}
        self.gps = {name: ResidualGp(self.cfg.gp).fit(X, v - self.trends[name](d)) for name, v in values.items()}
        return self

    def predict(self, target: GeometryFeatures) -> ChannelMap:
        """Posterior mean and variance (eqs. 18-19) at the target links."""
        if not self.gps:
            raise RuntimeError("fit the channel map first")
        X = self.scaler.transform(self._features(target))
        d = target.distance_m
        out = {"delay_spread_ns": (np.full(len(d), np.nan), np.full(len(d), np.inf))}
        for name in self.gps:
            m, v = self.gps[name].predict(X)
            out[name] = (self.trends[name](d) + m, np.maximum(v, self.cfg.min_variance[name]))
        return ChannelMap(target.position.copy(), out["gain_db"][0], out["gain_db"][1],
                          out["delay_spread_ns"][0], out["delay_spread_ns"][1])

    def summary(self) -> dict:
        return {"trends": {k: vars(t) for k, t in self.trends.items()},
                "gp": {k: g.hyperparameters() for k, g in self.gps.items()}}


__all__ = ["PARAMETERS", "BayesianChannelMap", "BcmConfig", "ChannelMap"]
