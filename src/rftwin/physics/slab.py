"""Material interaction physics (pure torch): complex permittivity and ITU-R P.2040 single-slab coefficients."""
from __future__ import annotations

import math

import torch

EPSILON_0 = 8.8541878128e-12  # vacuum permittivity [F/m] (scipy.constants value, as Sionna uses)
SPEED_OF_LIGHT = 299_792_458.0


def complex_permittivity(eps_r: torch.Tensor, sigma: torch.Tensor, frequency_hz: torch.Tensor) -> torch.Tensor:
    """eta = eps_r - j sigma / (omega eps_0); all arguments broadcast; returns complex."""
    omega = 2.0 * math.pi * frequency_hz
    return torch.complex(eps_r, -sigma / (omega * EPSILON_0))


def slab_coefficients(cos_theta: torch.Tensor, eta: torch.Tensor, thickness_m: torch.Tensor,
                      wavelength_m: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Reflection and transmission coefficients (R_TE, R_TM, T_TE, T_TM) of a slab in vacuum.

    ITU-R P.2040 eqs. (37), (43), (44): A = sqrt(eta - sin^2), r'_TE = (cos - A)/(cos + A),
    r'_TM = (eta cos - A)/(eta cos + A), q = 2 pi d A / lambda,
    R = r'(1 - e^{-j2q}) / (1 - r'^2 e^{-j2q}), T = (1 - r'^2) e^{-jq} / (1 - r'^2 e^{-j2q}).
    Written with r' = n / m (n = c - A, m = c + A; c = cos for TE, eta cos for TM) and m^2 - n^2 = 4 A c, so
    that each polarisation takes one complex division: R = n m (1 - e^{-j2q}) / D, T = 4 A c e^{-jq} / D,
    D = m^2 - n^2 e^{-j2q} (the same values; divisions dominate the engine's forward and backward passes).
    """
    cos_theta = cos_theta.to(eta.real.dtype)
    sin2 = 1.0 - cos_theta * cos_theta
    A = torch.sqrt(eta - sin2)
    q = (2.0 * math.pi) * thickness_m / wavelength_m * A
    e1 = torch.exp(-1j * q)
    e2 = e1 * e1
    one_minus_e2 = 1.0 - e2
    four_a_e1 = 4.0 * A * e1

    def pair(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, m = c - A, c + A
        inv = 1.0 / (m * m - n * n * e2)
        return n * m * one_minus_e2 * inv, four_a_e1 * c * inv

    R_te, T_te = pair(cos_theta)
    R_tm, T_tm = pair(eta * cos_theta)
    return R_te, R_tm, T_te, T_tm
