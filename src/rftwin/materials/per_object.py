"""Per-object material parameterisation (torch.nn.Module) with positivity by construction.

Constant model: eps_r = 1 + exp(u), sigma = exp(v) per object.
Power-law model (ITU-R P.2040 form): eps_r = a f_GHz^b with a = exp(alpha) (floored at 1),
sigma = c f_GHz^d with c = exp(gamma). A leading batch dimension B holds independent starts.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rftwin.materials.itu import itu_eps_sigma, itu_mean, itu_power_law
from rftwin.physics.engine import MaterialValues

INIT_STRATEGIES = ("label", "uniform", "random")


@dataclass
class MaterialPrior:
    """Initial per-object values at ``frequency_hz`` and the prior range used for multi-start draws."""

    eps_r: np.ndarray  # [K]
    sigma: np.ndarray  # [K] S/m
    eps_range: np.ndarray  # [K, 2]
    sigma_range: np.ndarray  # [K, 2]
    power_law: np.ndarray | None = None  # [K, 4] (a, b, c, d) when known
    frequency_hz: float = 3.5e9


def prior_from_labels(labels: Sequence[str | None], frequency_hz: float, fallback_eps: Sequence[float] | None = None,
                      fallback_sigma: Sequence[float] | None = None, strategy: str = "label",
                      seed: int = 0) -> MaterialPrior:
    """Initial values per object.

    ``label``: the ITU value of each object's label (objects without a label use the fallback, i.e. the
    scene's own values); ``uniform``: the mean over ITU dielectrics for every object; ``random``: sigma ~
    U[0.01, 0.06] S/m (seed 004) and eps_r ~ U[1.5, 8]. Prior ranges: eps_r in [max(1, eps/2), 2 eps],
    sigma in [sigma/10, 10 sigma].
    """
    if strategy not in INIT_STRATEGIES:
        raise ValueError(f"unknown initialisation '{strategy}', expected one of {INIT_STRATEGIES}")
    K = len(labels)
    eps = np.empty(K)
    sig = np.empty(K)
    pl = np.full((K, 4), np.nan)
    for i, lab in enumerate(labels):
        if lab is not None:
            eps[i], sig[i] = itu_eps_sigma(lab, frequency_hz)
            p = itu_power_law(lab, frequency_hz)
            pl[i] = (p.a, p.b, p.c, p.d)
        elif fallback_eps is not None and fallback_sigma is not None:
            eps[i], sig[i] = fallback_eps[i], fallback_sigma[i]
        else:
            eps[i], sig[i] = itu_mean(frequency_hz)
    if strategy == "uniform":
        e0, s0 = itu_mean(frequency_hz)
        eps[:], sig[:] = e0, s0
        pl[:] = np.nan
    elif strategy == "random":
        rng = np.random.default_rng(seed)
        sig = rng.uniform(0.01, 0.06, K)
        eps = rng.uniform(1.5, 8.0, K)
        pl[:] = np.nan
    sig = np.maximum(sig, 1e-6)
    eps = np.maximum(eps, 1.0 + 1e-6)
    eps_range = np.stack([np.maximum(1.0 + 1e-3, eps / 2), eps * 2], 1)
    sigma_range = np.stack([sig / 10, sig * 10], 1)
    return MaterialPrior(eps, sig, eps_range, sigma_range, pl, frequency_hz)


def draw_starts(prior: MaterialPrior, num_starts: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[B, K] starts: the prior itself first, then log-uniform draws inside the prior ranges."""
    rng = np.random.default_rng(seed)
    K = len(prior.eps_r)
    eps = np.empty((num_starts, K))
    sig = np.empty((num_starts, K))
    eps[0], sig[0] = prior.eps_r, prior.sigma
    if num_starts > 1:
        lo, hi = np.log(prior.eps_range[:, 0] - 1), np.log(prior.eps_range[:, 1] - 1)
        eps[1:] = 1 + np.exp(rng.uniform(lo, hi, (num_starts - 1, K)))
        lo, hi = np.log(prior.sigma_range[:, 0]), np.log(prior.sigma_range[:, 1])
        sig[1:] = np.exp(rng.uniform(lo, hi, (num_starts - 1, K)))
    return eps, sig


class PerObjectMaterials(nn.Module):
    """Per-object eps_r and sigma, optionally as frequency power laws; [B, F, K] values from ``forward``.

    ``fit`` selects which quantities are free (subset of {"eps_r", "sigma"}); the others stay at their
    initial values. ``thickness`` [K] (m) is fixed.
    """

    def __init__(self, eps_r: np.ndarray, sigma: np.ndarray, thickness: Sequence[float], *,
                 power_law: bool = False, reference_frequency_hz: float = 3.5e9,
                 b: np.ndarray | None = None, d: np.ndarray | None = None,
                 fit: Sequence[str] = ("eps_r", "sigma"), dtype: torch.dtype = torch.float64):
        super().__init__()
        eps_r = np.atleast_2d(np.asarray(eps_r, dtype=np.float64))
        sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
        B, K = eps_r.shape
        self.power_law = power_law
        self.f_ref_ghz = reference_frequency_hz / 1e9
        self.fit = tuple(fit)
        unknown = set(self.fit) - {"eps_r", "sigma"}
        if unknown:
            raise ValueError(f"cannot fit {sorted(unknown)}; choose from eps_r, sigma")

        def make(name: str, value: np.ndarray, free: bool) -> None:
            t = torch.as_tensor(value, dtype=dtype)
            if free:
                setattr(self, name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)

        fe, fs = "eps_r" in self.fit, "sigma" in self.fit
        if not power_law:
            make("u", np.log(np.maximum(eps_r - 1.0, 1e-12)), fe)
            make("v", np.log(np.maximum(sigma, 1e-30)), fs)
        else:
            b = np.zeros((B, K)) if b is None else np.broadcast_to(np.asarray(b, dtype=np.float64), (B, K)).copy()
            d = np.zeros((B, K)) if d is None else np.broadcast_to(np.asarray(d, dtype=np.float64), (B, K)).copy()
            # a f_ref^b = eps_ref  =>  alpha = log(eps_ref) - b log f_ref
            make("alpha", np.log(eps_r) - b * math.log(self.f_ref_ghz), fe)
            make("b", b, fe)
            make("gamma", np.log(np.maximum(sigma, 1e-30)) - d * math.log(self.f_ref_ghz), fs)
            make("d", d, fs)
        self.register_buffer("thickness", torch.as_tensor(np.asarray(thickness, dtype=np.float64), dtype=dtype))

    @property
    def num_starts(self) -> int:
        return int((self.u if not self.power_law else self.alpha).shape[0])

    def eps_sigma(self, frequency_hz: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """eps_r and sigma [B, F, K] at the given frequencies [F] (Hz)."""
        ref = self.u if not self.power_law else self.alpha
        f = torch.as_tensor(frequency_hz, dtype=ref.dtype, device=ref.device).reshape(1, -1, 1)
        if not self.power_law:
            eps = 1.0 + torch.exp(self.u)[:, None, :]
            sig = torch.exp(self.v)[:, None, :]
            return eps.expand(-1, f.shape[1], -1), sig.expand(-1, f.shape[1], -1)
        lf = torch.log(f / 1e9)
        eps = torch.exp(self.alpha[:, None, :] + self.b[:, None, :] * lf)
        eps = torch.clamp(eps, min=1.0)
        sig = torch.exp(self.gamma[:, None, :] + self.d[:, None, :] * lf)
        return eps, sig

    def forward(self, frequency_hz: torch.Tensor | float) -> MaterialValues:
        eps, sig = self.eps_sigma(frequency_hz)
        return MaterialValues(eps, sig, self.thickness.reshape(1, 1, -1))

    def power_law_coefficients(self) -> np.ndarray:
        """[B, K, 4] (a, b, c, d) with f in GHz (for the constant model b = d = 0)."""
        with torch.no_grad():
            if not self.power_law:
                e, s = self.eps_sigma(self.f_ref_ghz * 1e9)
                z = torch.zeros_like(e[:, 0])
                return torch.stack([e[:, 0], z, s[:, 0], z], -1).cpu().numpy()
            return torch.stack([torch.exp(self.alpha), self.b, torch.exp(self.gamma), self.d], -1).cpu().numpy()

    def select(self, index: int) -> PerObjectMaterials:
        """A single-start copy of start ``index``."""
        e, s = self.eps_sigma(self.f_ref_ghz * 1e9)
        pl = self.power_law_coefficients()[index]
        return PerObjectMaterials(e[index:index + 1, 0].detach().cpu().numpy(),
                                  s[index:index + 1, 0].detach().cpu().numpy(), self.thickness.cpu().numpy(),
                                  power_law=self.power_law, reference_frequency_hz=self.f_ref_ghz * 1e9,
                                  b=pl[:, 1] if self.power_law else None, d=pl[:, 3] if self.power_law else None,
                                  fit=self.fit, dtype=self.thickness.dtype)
