"""Uncertainty-aware loss of seed 003 (eq. 25) and the global gain bias (eqs. 26-27). Pure torch."""
from __future__ import annotations

import math

import torch


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Elementwise -log N(x; mean, var) = (x - mean)^2 / (2 var) + log(2 pi var) / 2."""
    return (x - mean) ** 2 / (2.0 * var) + 0.5 * torch.log(2.0 * math.pi * var)


def batch_gain_bias(gain_rt_db: torch.Tensor, gain_hat_db: torch.Tensor) -> torch.Tensor:
    """Closed-form beta_t = argmin_beta mean((p_RT + beta - p_hat)^2) = mean(p_hat - p_RT) over the last dim."""
    return (gain_hat_db - gain_rt_db).mean(-1)


class EmaBias:
    """beta_t = lam beta_{t-1} + (1 - lam) beta_hat_t (the first update sets beta to beta_hat)."""

    def __init__(self, lam: float = 0.9, value: float | None = None):
        if not 0.0 <= lam < 1.0:
            raise ValueError(f"EMA factor lambda must be in [0, 1), got {lam}")
        self.lam = lam
        self.value = value

    def update(self, beta_hat: float) -> float:
        self.value = beta_hat if self.value is None else self.lam * self.value + (1.0 - self.lam) * beta_hat
        return self.value


def bcm_nll(gain_rt_db: torch.Tensor, delay_rt_ns: torch.Tensor, gain_mean: torch.Tensor, gain_var: torch.Tensor,
            delay_mean: torch.Tensor, delay_var: torch.Tensor, eta_gain: float = 1.0, eta_delay: float = 1.0,
            bias_db: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Eq. 25 averaged over the last (batch) dimension: [..., B] inputs -> [...]."""
    lg = gaussian_nll(gain_rt_db + bias_db, gain_mean, gain_var)
    ld = gaussian_nll(delay_rt_ns, delay_mean, delay_var)
    return (eta_gain * lg + eta_delay * ld).mean(-1)


__all__ = ["EmaBias", "batch_gain_bias", "bcm_nll", "gaussian_nll"]
