"""Zero-mean Gaussian-process residual model on normalised fused features (seed 003, eqs. 15-17).

k(w, w') = c * Matern_ARD(w, w'; l_1..l_F, nu) + white noise; hyper-parameters by maximum log marginal likelihood
(scikit-learn, L-BFGS-B with restarts). The posterior variance includes the white-noise term (k** of eq. 17).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel


@dataclass
class GpConfig:
    nu: float = 1.5  # Matern smoothness (0.5, 1.5, 2.5)
    length_scale_bounds: tuple[float, float] = (5e-2, 1e2)  # in normalised feature units
    noise_bounds: tuple[float, float] = (1e-4, 1e1)  # white-noise variance, in units of the residual variance
    restarts: int = 3
    seed: int = 0


class ResidualGp:
    """GP regression of residuals y [M] on normalised features X [M, F] with a zero prior mean."""

    def __init__(self, cfg: GpConfig | None = None):
        self.cfg = cfg or GpConfig()
        self.gp: GaussianProcessRegressor | None = None
        self.scale = 1.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> ResidualGp:
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise ValueError(f"features {X.shape} and residuals {y.shape} must be [M, F] and [M]")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            raise ValueError("features and residuals must be finite")
        c = self.cfg
        # zero-mean prior: scale only (no centring), so the amplitude hyper-parameter starts near 1
        self.scale = float(np.sqrt(np.mean(y * y))) or 1.0
        kernel = (ConstantKernel(1.0, (1e-3, 1e2))
                  * Matern(length_scale=np.ones(X.shape[1]), length_scale_bounds=c.length_scale_bounds, nu=c.nu)
                  + WhiteKernel(0.1, c.noise_bounds))
        self.gp = GaussianProcessRegressor(kernel, alpha=1e-8, normalize_y=False, n_restarts_optimizer=c.restarts,
                                           random_state=c.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp.fit(X, y / self.scale)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean [P] and variance [P] (units of y^2) of the residual at features X [P, F]."""
        if self.gp is None:
            raise RuntimeError("fit the GP first")
        m, s = self.gp.predict(np.asarray(X, dtype=np.float64), return_std=True)
        return m * self.scale, (s * self.scale) ** 2

    def hyperparameters(self) -> dict:
        """Fitted amplitude, ARD length scales, white-noise variance (residual units) and log marginal likelihood."""
        k = self.gp.kernel_
        return {"amplitude_var": float(k.k1.k1.constant_value) * self.scale ** 2,
                    "length_scales": np.atleast_1d(k.k1.k2.length_scale).tolist(),
                    "noise_var": float(k.k2.noise_level) * self.scale ** 2,
                    "log_marginal_likelihood": float(self.gp.log_marginal_likelihood_value_)}


__all__ = ["GpConfig", "ResidualGp"]
