"""GP-PU baseline (seed 003's [43]): Gaussian-process channel-gain interpolation with position uncertainty.

After Muppirisetty, Svensson and Wymeersch, "Spatial wireless channel prediction under location uncertainty"
(IEEE TWC 2016): path gain (dB) = log-distance mean m(x) = G0 - 10 n log10 d(x) + a zero-mean GP whose squared-
exponential kernel is averaged over Gaussian position errors (isotropic std s per coordinate in the D-dimensional
position space). For two uncertain training positions the expected kernel is
  sf^2 (l^2 / (l^2 + 2 s^2))^(D/2) exp(-|x - x'|^2 / (2 (l^2 + 2 s^2))),
for a training and an exactly known test position s^2 replaces 2 s^2, and k(x, x) = sf^2. The mean parameters
and (sf, l, noise) are fitted jointly by maximum marginal likelihood. It predicts gain maps for the measured
transmitter only (no CSI, no other transmitters).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class GpPuConfig:
    position_std_m: float = 0.5  # std of each coordinate of the training positions (m)
    iterations: int = 300
    lr: float = 0.05
    dims: tuple[int, ...] = (0, 1)  # coordinates the GP works in (x, y)


class GpPu:
    def __init__(self, cfg: GpPuConfig | None = None):
        self.cfg = cfg or GpPuConfig()

    def _mean(self, d: torch.Tensor) -> torch.Tensor:
        return self.g0 - 10.0 * self.n * torch.log10(d.clamp_min(1.0))

    def _k(self, a: torch.Tensor, b: torch.Tensor, s2: float) -> torch.Tensor:
        l2 = torch.exp(2 * self.log_l)
        D = a.shape[1]
        r2 = torch.cdist(a, b) ** 2
        return torch.exp(self.log_sf2) * (l2 / (l2 + s2)) ** (D / 2) * torch.exp(-r2 / (2 * (l2 + s2)))

    def fit(self, tx_pos: np.ndarray, rx_pos: np.ndarray, gain_db: np.ndarray) -> GpPu:
        """``tx_pos`` [3] or [M, 3], ``rx_pos`` [M, 3] (m), ``gain_db`` [M]."""
        c = self.cfg
        rx = torch.as_tensor(np.asarray(rx_pos, dtype=np.float64))
        y = torch.as_tensor(np.asarray(gain_db, dtype=np.float64))
        if rx.ndim != 2 or y.shape != (rx.shape[0],):
            raise ValueError(f"rx_pos {tuple(rx.shape)} and gain_db {tuple(y.shape)} must be [M, 3] and [M]")
        self.tx = torch.as_tensor(np.asarray(tx_pos, dtype=np.float64)).reshape(-1, 3)[0]
        self.X = rx[:, list(c.dims)]
        d = torch.linalg.norm(rx - self.tx, dim=1)
        self.d = d
        self.y = y
        # initial values: least-squares log-distance fit, residual variance
        A = torch.stack([torch.ones_like(d), -10 * torch.log10(d.clamp_min(1.0))], 1)
        sol = torch.linalg.lstsq(A, y[:, None]).solution[:, 0] if len(y) > 1 else torch.tensor([float(y[0]), 2.0])
        self.g0 = torch.tensor(float(sol[0]), dtype=torch.float64, requires_grad=True)
        self.n = torch.tensor(float(sol[1]), dtype=torch.float64, requires_grad=True)
        res_var = float(torch.var(y - (sol[0] - 10 * sol[1] * torch.log10(d.clamp_min(1.0))))) if len(y) > 1 else 1.0
        span = float(torch.linalg.norm(self.X.max(0).values - self.X.min(0).values)) or 1.0
        self.log_sf2 = torch.tensor(math.log(max(res_var, 1e-2)), dtype=torch.float64, requires_grad=True)
        self.log_l = torch.tensor(math.log(span / 10), dtype=torch.float64, requires_grad=True)
        self.log_sn2 = torch.tensor(math.log(max(res_var / 10, 1e-3)), dtype=torch.float64, requires_grad=True)
        params = [self.g0, self.n, self.log_sf2, self.log_l, self.log_sn2]
        opt = torch.optim.Adam(params, lr=c.lr)
        for _ in range(c.iterations):
            opt.zero_grad()
            loss = self._nlml()
            loss.backward()
            opt.step()
        with torch.no_grad():
            self._K_chol()
        return self

    def _K_chol(self) -> torch.Tensor:
        s2 = self.cfg.position_std_m ** 2
        K = self._k(self.X, self.X, 2 * s2)
        n = K.shape[0]
        diag = torch.exp(self.log_sf2) + torch.exp(self.log_sn2) + 1e-8
        K = K - torch.diag(torch.diagonal(K)) + torch.diag(diag.expand(n))
        self.L = torch.linalg.cholesky(K)
        self.alpha = torch.cholesky_solve((self.y - self._mean(self.d))[:, None], self.L)
        return self.L

    def _nlml(self) -> torch.Tensor:
        L = self._K_chol()
        r = (self.y - self._mean(self.d))[:, None]
        return 0.5 * (r * self.alpha).sum() + torch.log(torch.diagonal(L)).sum()

    @torch.no_grad()
    def predict(self, rx_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted path gain (dB) [P] and its variance (dB^2) [P] at exactly known positions ``rx_pos`` [P, 3]."""
        rx = torch.as_tensor(np.asarray(rx_pos, dtype=np.float64))
        Xs = rx[:, list(self.cfg.dims)]
        ks = self._k(Xs, self.X, self.cfg.position_std_m ** 2)  # [P, M]
        mean = self._mean(torch.linalg.norm(rx - self.tx, dim=1)) + (ks @ self.alpha)[:, 0]
        v = torch.cholesky_solve(ks.T, self.L)
        var = torch.exp(self.log_sf2) - (ks * v.T).sum(1)
        return mean.numpy(), var.clamp_min(0).numpy()


__all__ = ["GpPu", "GpPuConfig"]
