"""Diffuse reflection (Sionna RT 2.2's model, Degli-Esposti et al. 2007) in pure torch.

J_diffuse = S sqrt(f_s Omega) gamma W_out X(K_x) W_in, with gamma = |diag(R_TE, R_TM) R_in E| / |E| evaluated on
the incoming field E. This module holds the material-dependent factors: the scattering patterns f_s
(lambertian, directive, backscattering) with differentiable parameters, the XPD matrix X(K_x) and gamma.
Geometry (cosines, rotations, Omega) comes from the PathSet.
"""
from __future__ import annotations

import math

import numpy as np
import torch

# Scattering-pattern codes (per object): Sionna's registered pattern names
LAMBERTIAN, DIRECTIVE, BACKSCATTERING = 0, 1, 2
PATTERN_CODES = {"lambertian": LAMBERTIAN, "directive": DIRECTIVE, "backscattering": BACKSCATTERING}

# Extra binomial-series terms used when alpha_r / alpha_i are not (or not treated as) integers: the tail of the
# generalised series decays like J^-(alpha + 1.5); 256 terms keep the normalisation error below ~1e-6.
SERIES_EXTRA_TERMS = 256


def _binomials(alpha: torch.Tensor, num_terms: int) -> torch.Tensor:
    """Generalised binomial coefficients C(alpha, j), j = 0..num_terms-1: [..., num_terms] (differentiable).

    Computed as cumulative products prod_{m<j} (alpha - m) / (m + 1), which vanish exactly for j > alpha when
    alpha is an integer (so the finite sums of Sionna are reproduced) and extend smoothly to real alpha.
    """
    m = torch.arange(num_terms - 1, dtype=alpha.dtype, device=alpha.device)
    ratios = (alpha[..., None] - m) / (m + 1.0)
    ones = torch.ones(alpha.shape + (1,), dtype=alpha.dtype, device=alpha.device)
    return torch.cat([ones, torch.cumprod(ratios, -1)], -1)


def _hemisphere_moments(cos_i: torch.Tensor, num_terms: int) -> torch.Tensor:
    """I_j = integral over the reflection hemisphere of (k_spec . k_o)^j, j = 0..num_terms-1: [..., num_terms].

    Even j: 2 pi / (j + 1); odd j = 2n + 1: cos_i K_n 2 pi / (j + 1), K_n = sum_{m<=n} C(2m, m) 4^-m sin_i^2m
    (Degli-Esposti 2007, as in Sionna's ``BackscatteringPattern``).
    """
    dtype, dev = cos_i.dtype, cos_i.device
    j = torch.arange(num_terms, dtype=dtype, device=dev)
    n_odd = (num_terms + 1) // 2  # number of odd j below num_terms (n = 0 .. n_odd-1)
    m = torch.arange(max(n_odd, 1), dtype=dtype, device=dev)
    # C(2m, m) / 4^m = prod_{l=1..m} (2l - 1) / (2l)
    c = torch.cat([torch.ones(1, dtype=dtype, device=dev),
                   torch.cumprod((2.0 * m[1:] - 1.0) / (2.0 * m[1:]), 0)])
    sin2 = torch.clamp(1.0 - cos_i * cos_i, min=0.0)
    k_n = torch.cumsum(c * sin2[..., None] ** m, -1)  # [..., n_odd]
    even = (2.0 * math.pi / (j + 1.0)).expand(cos_i.shape + (num_terms,))
    odd_idx = torch.clamp((torch.arange(num_terms, device=dev) - 1) // 2, min=0)
    odd = cos_i[..., None] * k_n[..., odd_idx] * (2.0 * math.pi / (j + 1.0))
    is_odd = (torch.arange(num_terms, device=dev) % 2) == 1
    return torch.where(is_odd, odd, even)


def series_terms(*alphas: torch.Tensor | None) -> int:
    """Length of the normalisation series for lobe exponents ``alphas`` (None entries ignored).

    Integer, non-differentiated exponents: max alpha + 1 (Sionna's exact finite sum; longer series add exact
    zeros). Otherwise the generalised series is truncated after ``SERIES_EXTRA_TERMS`` more terms. Evaluate it on
    all values of a problem (not per chunk) so that chunked and unchunked results agree.
    """
    alphas = tuple(torch.as_tensor(a, dtype=torch.float64) for a in alphas if a is not None)
    if not alphas:
        return 2
    amax = max(int(math.ceil(float(a.detach().max()))) for a in alphas)
    exact = all((not a.requires_grad) and bool(torch.all(a == torch.round(a))) for a in alphas)
    return max(amax, 1) + 1 + (0 if exact else SERIES_EXTRA_TERMS)


def backscattering_pattern(cos_i: torch.Tensor, cos_psi_r: torch.Tensor, cos_psi_i: torch.Tensor,
                           alpha_r: torch.Tensor, alpha_i: torch.Tensor, lambda_: torch.Tensor,
                           num_terms: int | None = None) -> torch.Tensor:
    """Sionna's backscattering lobe model, normalised over the reflection hemisphere.

    f = [L v_r + (1 - L) v_i] / [L F(alpha_r) + (1 - L) F(alpha_i)], v_x = ((1 + cos psi_x) / 2)^alpha_x,
    F(alpha) = 2^-alpha sum_j C(alpha, j) I_j(theta_i). ``cos_i`` = cos theta_i, ``cos_psi_r`` = k_spec . k_o,
    ``cos_psi_i`` = -k_i . k_o (geometry, shape [...]); ``alpha_r``, ``alpha_i`` (>= 1, integers in Sionna; real
    values use the generalised binomial series) and ``lambda_`` in [0, 1] broadcast to [...]; ``num_terms``
    series length (default :func:`series_terms` of the given exponents). Returns [...].
    """
    shape = np.broadcast_shapes(*(tuple(t.shape) for t in (cos_i, alpha_r, alpha_i, lambda_)))  # as _lead_shape
    tiny = torch.finfo(cos_i.dtype).tiny
    v_r = torch.clamp(0.5 * (1.0 + cos_psi_r), min=tiny) ** alpha_r
    v_i = torch.clamp(0.5 * (1.0 + cos_psi_i), min=tiny) ** alpha_i
    w = lambda_ * v_r + (1.0 - lambda_) * v_i
    J = series_terms(alpha_r, alpha_i) if num_terms is None else num_terms
    I = _hemisphere_moments(cos_i, J)  # [..., J]  # noqa: E741
    ar, ai = alpha_r.expand(shape), alpha_i.expand(shape)
    f_r = (_binomials(ar, J) * I).sum(-1) * 2.0 ** (-ar)
    f_i = (_binomials(ai, J) * I).sum(-1) * 2.0 ** (-ai)
    return w / (lambda_ * f_r + (1.0 - lambda_) * f_i)


def scattering_pattern(kind: torch.Tensor, cos_i: torch.Tensor, cos_o: torch.Tensor, cos_psi_r: torch.Tensor,
                       cos_psi_i: torch.Tensor, alpha_r: torch.Tensor | None = None,
                       alpha_i: torch.Tensor | None = None, lambda_: torch.Tensor | None = None,
                       num_terms: int | None = None) -> torch.Tensor:
    """Scattering pattern f_s (1/sr) per diffuse interaction.

    ``kind`` (int codes LAMBERTIAN / DIRECTIVE / BACKSCATTERING) and the geometry (``cos_o`` = |k_o . n| etc.)
    have shape [M]; pattern parameters broadcast to [..., M]. Lambertian: cos_o / pi. Directive: backscattering
    with alpha_i = 1, lambda = 1. Returns [..., M].
    """
    dtype = cos_o.dtype
    lamb = cos_o / math.pi
    lobe = kind != LAMBERTIAN
    if not bool(lobe.any()):
        return lamb
    one = torch.ones((), dtype=dtype, device=cos_o.device)
    ar = one if alpha_r is None else alpha_r
    ai = one if alpha_i is None else alpha_i
    la = one if lambda_ is None else lambda_
    directive = kind == DIRECTIVE
    ai = torch.where(directive, one, ai)
    la = torch.where(directive, one, la)
    ar = torch.where(lobe, ar, one)  # lambertian lanes: any valid value, result not used
    ai = torch.where(lobe, ai, one)
    la = torch.where(lobe, la, one)
    back = backscattering_pattern(cos_i, cos_psi_r, cos_psi_i, ar, ai, la, num_terms)
    return torch.where(lobe, back, lamb)


def xpd_matrix(kx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entries (a, b) of the XPD Jones matrix X = [[a, -b], [b, a]], a = sqrt(1 - K_x), b = sqrt(K_x)."""
    tiny = torch.finfo(kx.dtype).tiny
    return torch.sqrt(torch.clamp(1.0 - kx, min=tiny)), torch.sqrt(torch.clamp(kx, min=tiny))


def diffuse_field(es: torch.Tensor, ep: torch.Tensor, ref_s: torch.Tensor, ref_p: torch.Tensor,
                  amplitude: torch.Tensor, kx: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the diffuse Jones matrix to incoming fields.

    ``es``/``ep`` [..., M, T] complex incoming field (implicit basis); ``ref_s``/``ref_p`` [..., M, T] the field
    after the specular reflection coefficients in the TE/TM basis (diag(R) R_in E, gives gamma);
    ``amplitude`` [..., M] = S sqrt(f_s Omega); ``kx`` [..., M]; ``w_in``/``w_out`` [M, 2, 2] real rotations.
    Returns the outgoing field (s, p) [..., M, T] in the implicit basis of the actual outgoing direction.
    """
    tiny = torch.finfo(amplitude.dtype).tiny
    num = ref_s.real ** 2 + ref_s.imag ** 2 + ref_p.real ** 2 + ref_p.imag ** 2
    den = es.real ** 2 + es.imag ** 2 + ep.real ** 2 + ep.imag ** 2
    gamma = torch.where(den > 0, torch.sqrt(torch.clamp(num, min=tiny) / torch.clamp(den, min=tiny)),
                        torch.zeros_like(den))
    a, b = xpd_matrix(kx)
    wi, wo = w_in[:, :, :, None], w_out[:, :, :, None]  # [M, 2, 2, 1]: broadcast over T
    u_s = wi[:, 0, 0] * es + wi[:, 0, 1] * ep
    u_p = wi[:, 1, 0] * es + wi[:, 1, 1] * ep
    a, b = a[..., None], b[..., None]
    x_s = a * u_s - b * u_p
    x_p = b * u_s + a * u_p
    scale = (amplitude[..., None] * gamma).to(es.dtype)
    return scale * (wo[:, 0, 0] * x_s + wo[:, 0, 1] * x_p), scale * (wo[:, 1, 0] * x_s + wo[:, 1, 1] * x_p)
