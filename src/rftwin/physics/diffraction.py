"""First-order UTD wedge diffraction (Kouyoumjian-Pathak, as implemented by Sionna RT 2.2) in pure torch.

J = D14 out_0 diag(R_0) in_0 + D23 out_n diag(R_n) in_n with D14 = D1 - D4, D23 = D2 - D3,
D_i = -e^{-j pi/4} / (2 n sqrt(2 pi k) sin beta0) cot(psi_i) F(k L a_i), R_0 / R_n the slab reflection
coefficients of the two faces (reduced by sqrt(1 - S^2)), R_n = -I for wide exterior angles. The transition
function F uses the Boersma approximation of the Fresnel integral exactly as Sionna does. Geometry (psi, a, n,
L, beta0, rotations) comes from the PathSet; the material only enters through R_0 and R_n.
"""
from __future__ import annotations

import math

import torch

from rftwin.physics.slab import SPEED_OF_LIGHT

# Boersma coefficients (ITU-R P.526, Section 2.7), as in sionna.rt.utils.electromagnetics.fresnel
_A = (+1.595769140, -0.000001702, -6.808568854, -0.000576361, +6.920691902, -0.016898657, -3.050485660,
      -0.075752419, +0.850663781, -0.025639041, -0.150230960, +0.034404779)
_B = (-0.000000033, +4.255387524, -0.000092810, -7.780020400, -0.009520895, +5.075161298, -0.138341947,
      -1.363729124, -0.403349276, +0.702222016, -0.216195929, +0.019547031)
_C = (+0.000000000, -0.024933975, +0.000003936, +0.005770956, +0.000689892, -0.009497136, +0.011948809,
      -0.006748873, +0.000246420, +0.002102967, -0.001217930, +0.000233939)
_D = (+0.199471140, +0.000000023, -0.009351341, +0.000023006, +0.004851466, +0.001903218, -0.017122914,
      +0.029064067, -0.027928955, +0.016497308, -0.005598515, +0.000838386)
# Float32 thresholds of Sionna's cot_times_f_utd (sqrt of float32 machine epsilon)
_SIN_EPS = math.sqrt(2.0 ** -24)


def fresnel_integral(x: torch.Tensor) -> torch.Tensor:
    """Complex Fresnel integral F_c(x) = int_0^sqrt(2x/pi) exp(j pi s^2 / 2) ds (Boersma approximation). Real
    [...] -> complex [...]."""
    pos = x > 0
    ax = torch.abs(x)
    cond = ax < 4.0
    arg = torch.where(cond, ax / 4.0, 4.0 / torch.clamp(ax, min=4.0))
    re = torch.zeros_like(ax)
    im = torch.zeros_like(ax)
    p = torch.ones_like(ax)
    for a, b, c, d in zip(_A, _B, _C, _D):
        re = re + torch.where(cond, ax.new_tensor(a), ax.new_tensor(c)) * p
        im = im - torch.where(cond, ax.new_tensor(b), ax.new_tensor(d)) * p
        p = p * arg
    sq = torch.sqrt(arg)
    re, im = re * sq, im * sq
    cs, sn = torch.cos(ax), torch.sin(ax)
    f_r = cs * re - sn * im
    f_i = cs * im + sn * re
    c = torch.where(cond, f_r, f_r + 0.5)
    s = torch.where(cond, f_i, f_i + 0.5)
    return torch.complex(torch.where(pos, c, -c), torch.where(pos, s, -s))


def cot_times_transition(psi: torch.Tensor, x: torch.Tensor, n: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """cot(psi) F(x) with the finite UTD limit at shadow/reflection boundaries (Sionna's ``cot_times_f_utd``).

    F(x) = sqrt(pi x / 2) e^{jx} (1 + j - 2j conj(F_c(x))); evaluated as cos(psi) (sqrt(x) / sin(psi)) G(x) with
    G = F / sqrt(x). All arguments broadcast; returns complex.
    """
    sin_psi, cos_psi = torch.sin(psi), torch.cos(psi)
    xs = torch.clamp(x, min=0.0)
    fc = fresnel_integral(xs)
    one_j = torch.complex(torch.ones_like(xs), torch.ones_like(xs))
    g = math.sqrt(0.5 * math.pi) * torch.exp(1j * xs) * (one_j - 2j * fc.conj())
    sgn = torch.where(sin_psi >= 0, 1.0, -1.0).to(xs.dtype)
    r_limit = n * torch.sqrt(torch.clamp(2.0 * kl, min=0.0)) * sgn
    at_pole = (torch.abs(sin_psi) <= _SIN_EPS) & (xs <= _SIN_EPS)
    safe_sin = torch.where(at_pole, torch.ones_like(sin_psi), sin_psi)
    r = torch.where(at_pole, r_limit, torch.sqrt(xs) / safe_sin)
    return cos_psi * r * g


def utd_coefficients(frequency_hz: torch.Tensor, n: torch.Tensor, sin_beta0: torch.Tensor, L: torch.Tensor,
                     psi: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """UTD diffraction coefficients D14 = D1 - D4 and D23 = D2 - D3: complex [F, M].

    ``frequency_hz`` [F]; per diffracted path [M]: ``n`` wedge parameter, ``sin_beta0``, ``L`` (m); [M, 4]:
    ``psi`` cotangent arguments and ``a`` the a+-(beta) terms of D1..D4. Geometry and frequency only.
    """
    k = (2.0 * math.pi * frequency_hz / SPEED_OF_LIGHT).reshape(-1, 1, 1)  # [F, 1, 1]
    factor = -complex(math.cos(math.pi / 4), -math.sin(math.pi / 4)) / (
        2.0 * n[..., None] * torch.sqrt(2.0 * math.pi * k) * sin_beta0[..., None])  # [F, M, 1]
    kl = k * L[..., None]  # [F, M, 1]
    d = factor * cot_times_transition(psi, kl * a, n[..., None], kl)  # [F, M, 4]
    return d[..., 0] - d[..., 3], d[..., 1] - d[..., 2]


def diffraction_jones(d14: torch.Tensor, d23: torch.Tensor, r0: tuple[torch.Tensor, torch.Tensor],
                      rn: tuple[torch.Tensor, torch.Tensor], rot: torch.Tensor) -> torch.Tensor:
    """Diffraction Jones matrices [..., M, 2, 2] (implicit basis in -> implicit basis of the actual k_out).

    ``d14``/``d23`` [..., M] complex; ``r0``/``rn`` (TE, TM) face reflection coefficients [..., M] (already
    reduced by sqrt(1 - S^2), and -1 for wide exterior angles on the n-face); ``rot`` [M, 4, 2, 2] real
    (out_0, in_0, out_n, in_n) from the PathSet.
    """
    ctype = d14.dtype
    rot = rot.to(d14.real.dtype)
    out0, in0, outn, inn = rot[:, 0], rot[:, 1], rot[:, 2], rot[:, 3]

    def term(out, inp, r_te, r_tm, d):
        # out diag(r) in, entries (i, j) = sum_k out[i,k] r_k in[k,j]
        r = torch.stack([r_te, r_tm], -1).to(ctype)  # [..., M, 2]
        m = (out[:, :, :, None] * inp[:, None, :, :]).to(ctype)  # [M, i, k, j]
        return d[..., None, None] * (m * r[..., None, :, None]).sum(-2)

    return term(out0, in0, r0[0], r0[1], d14) + term(outn, inn, rn[0], rn[1], d23)
