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
    """
    cos_theta = cos_theta.to(eta.real.dtype)
    sin2 = 1.0 - cos_theta * cos_theta
    A = torch.sqrt(eta - sin2)
    r_te = (cos_theta - A) / (cos_theta + A)
    r_tm = (eta * cos_theta - A) / (eta * cos_theta + A)
    q = (2.0 * math.pi) * thickness_m / wavelength_m * A
    e1 = torch.exp(-1j * q)
    e2 = e1 * e1
    r_te2, r_tm2 = r_te * r_te, r_tm * r_tm
    den_te = 1.0 - r_te2 * e2
    den_tm = 1.0 - r_tm2 * e2
    R_te = r_te * (1.0 - e2) / den_te
    R_tm = r_tm * (1.0 - e2) / den_tm
    T_te = (1.0 - r_te2) * e1 / den_te
    T_tm = (1.0 - r_tm2) * e1 / den_tm
    return R_te, R_tm, T_te, T_tm
