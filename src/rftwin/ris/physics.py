"""Reradiation of a reconfigurable intelligent surface (RIS): pure torch, vectorised over elements and links.

Model: Tang et al., "Wireless Communications With Reconfigurable Intelligent Surface: Path Loss Modeling and
Experimental Measurement", IEEE Trans. Wireless Commun. 20(1), 2021, Theorem 1. Every element (n, m) of size
d_x x d_y is a reradiating patch in the far field of its own size (not of the whole surface, so the model holds in
the near field of the RIS too). With isotropic transmit and receive antennas (G_t = G_r = 1) the narrowband
channel of the Tx -> RIS -> Rx path is

    h = sqrt(G d_x d_y lambda^2 / (64 pi^3)) * sum_nm sqrt(F(theta_t,nm) F(theta_r,nm)) Gamma_nm
        exp(-j k (r_t,nm + r_r,nm)) / (r_t,nm r_r,nm),

with |h|^2 = P_r / P_t. Choices made here (state them wherever the model is used):

- element gain G = 4 pi d_x d_y / lambda^2 (a lossless element radiating as a uniformly illuminated aperture of
  its size), so the prefactor is d_x d_y / (4 pi): exactly the physical-optics (Kirchhoff) field of a perfectly
  reflecting patch of area d_x d_y;
- normalised element power pattern F(theta) = cos^q(theta) on the front half-space, 0 behind, with q = 1: the
  projected area. sqrt(F_t F_r) = cos(theta) at the specular point, which makes the stationary-phase limit of the
  sum over a large zero-phase (Gamma = 1) surface equal the image-theory gain (lambda / 4 pi (d_1 + d_2))^2 of
  a metal plate (checked against Sionna RT in ``tests/ris/test_ris.py``);
- one polarisation, reradiated as it arrives (co-polar, no depolarisation); |Gamma_nm| = 1 (lossless phase-only
  control; pass a complex Gamma to model loss); no coupling between elements; only the single bounce
  Tx -> RIS -> Rx (no path reaches the RIS through another interaction).

Phase convention: Gamma = exp(j phi). With a linear profile phi(u) = g u along the surface axis u, the far-field
peak satisfies sin(theta_r) = sin(theta_i) - g / k (generalised Snell law), with sin(theta_i) = -a_t . u and
sin(theta_r) = a_r . u for the unit vectors a_t, a_r from the RIS towards Tx and Rx.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

C0 = 299_792_458.0


@dataclass(frozen=True)
class RisSpec:
    """An RIS of ``num_rows`` x ``num_cols`` elements covering ``width_m`` (along its u axis, columns) x
    ``height_m`` (along v, rows); ``bits`` phase bits (None: continuous phases); element pattern cos^q."""

    num_rows: int = 16
    num_cols: int = 16
    width_m: float = 0.32
    height_m: float = 0.32
    bits: int | None = 2
    q: float = 1.0

    def __post_init__(self) -> None:
        if self.num_rows < 1 or self.num_cols < 1:
            raise ValueError(f"RIS element counts must be >= 1, got {self.num_rows} x {self.num_cols}")
        if not (self.width_m > 0 and self.height_m > 0):
            raise ValueError(f"RIS size must be > 0 m, got {self.width_m} x {self.height_m}")
        if self.bits is not None and not 1 <= self.bits <= 8:
            raise ValueError(f"RIS phase bits must be 1..8 or None (continuous), got {self.bits}")
        if self.q < 0:
            raise ValueError(f"element pattern exponent q must be >= 0, got {self.q}")

    @property
    def num_elements(self) -> int:
        return self.num_rows * self.num_cols

    @property
    def element_size_m(self) -> tuple[float, float]:
        return self.width_m / self.num_cols, self.height_m / self.num_rows

    @property
    def element_area_m2(self) -> float:
        dx, dy = self.element_size_m
        return dx * dy


def wavenumber(frequency_hz: float) -> float:
    return 2.0 * math.pi * float(frequency_hz) / C0


def element_offsets(spec: RisSpec, dtype=torch.float64) -> torch.Tensor:
    """Element centres in the RIS's own (u, v) coordinates [E, 2] m, row-major (rows along v, columns along u),
    centred on the RIS centre."""
    dx, dy = spec.element_size_m
    u = (torch.arange(spec.num_cols, dtype=dtype) - (spec.num_cols - 1) / 2) * dx
    v = (torch.arange(spec.num_rows, dtype=dtype) - (spec.num_rows - 1) / 2) * dy
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu.reshape(-1), vv.reshape(-1)], -1)


def element_positions(center: torch.Tensor, u_axis: torch.Tensor, v_axis: torch.Tensor, spec: RisSpec
                      ) -> torch.Tensor:
    """World positions [..., E, 3] of the elements of RISs centred at ``center`` [..., 3] with in-plane unit axes
    ``u_axis``, ``v_axis`` [..., 3]."""
    off = element_offsets(spec, center.dtype)
    return (center[..., None, :] + off[:, 0, None] * u_axis[..., None, :] + off[:, 1, None] * v_axis[..., None, :])


def _geometry(tx: torch.Tensor, rx: torch.Tensor, elements: torch.Tensor, normal: torch.Tensor):
    """Distances and direction cosines: r_t, r_r, cos_t, cos_r, each [..., L, E] (tx, rx [..., L, 3] or [L, 3];
    elements [..., E, 3]; normal [..., 3])."""
    vt = tx[..., :, None, :] - elements[..., None, :, :]
    vr = rx[..., :, None, :] - elements[..., None, :, :]
    rt, rr = vt.norm(dim=-1), vr.norm(dim=-1)
    n = normal[..., None, None, :]
    return rt, rr, (vt * n).sum(-1) / rt, (vr * n).sum(-1) / rr


def ris_channel(tx: torch.Tensor, rx: torch.Tensor, elements: torch.Tensor, normal: torch.Tensor,
                gamma: torch.Tensor, spec: RisSpec, frequency_hz: float,
                visible: torch.Tensor | None = None) -> torch.Tensor:
    """Complex narrowband coefficient h [..., L] of the Tx -> RIS -> Rx path (|h|^2 = path gain, isotropic ends).

    tx, rx: [..., L, 3] m (or [L, 3], broadcast); elements: [..., E, 3] m; normal: [..., 3] unit front normal;
    gamma: [..., E] complex reflection coefficients (broadcast over links); visible: optional bool [..., L, E]
    (both segments Tx -> element and element -> Rx free). Elements seen from behind by Tx or Rx contribute 0.
    """
    rt, rr, ct, cr = _geometry(tx, rx, elements, normal)
    k = wavenumber(frequency_hz)
    f = (ct.clamp(min=0.0) * cr.clamp(min=0.0)) ** (0.5 * spec.q)
    if visible is not None:
        f = f * visible.to(f.dtype)
    amp = f / (rt * rr)
    phase = torch.polar(torch.ones_like(rt), -k * (rt + rr))
    term = amp.to(phase.dtype) * phase * gamma[..., None, :].to(phase.dtype)
    return spec.element_area_m2 / (4.0 * math.pi) * term.sum(-1)


def focus_phases(tx: torch.Tensor, focus: torch.Tensor, elements: torch.Tensor, frequency_hz: float
                 ) -> torch.Tensor:
    """Continuous beam-focusing phases phi [..., E] in [0, 2 pi): phi = k (r_t + r_f) mod 2 pi, which puts all
    element contributions in phase at the focal point ``focus`` [..., 3] (tx [..., 3], elements [..., E, 3])."""
    k = wavenumber(frequency_hz)
    d = (elements - tx[..., None, :]).norm(dim=-1) + (elements - focus[..., None, :]).norm(dim=-1)
    return torch.remainder(k * d, 2 * math.pi)


def gradient_phases(spec: RisSpec, gradient_rad_per_m: float, dtype=torch.float64) -> torch.Tensor:
    """Linear phase profile phi = g u [E] (u: element coordinate along the RIS's u axis) in [0, 2 pi)."""
    return torch.remainder(gradient_rad_per_m * element_offsets(spec, dtype)[:, 0], 2 * math.pi)


def quantise_phases(phi: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Nearest of the 2^bits levels 2 pi m / 2^bits (None: unchanged)."""
    if bits is None:
        return phi
    step = 2 * math.pi / 2**bits
    return torch.remainder(torch.round(phi / step) * step, 2 * math.pi)


def reflection(phi: torch.Tensor) -> torch.Tensor:
    """Lossless phase-only reflection coefficients exp(j phi) (complex, same shape)."""
    return torch.polar(torch.ones_like(phi), phi)


def anomalous_angle_deg(theta_i_deg: float, gradient_rad_per_m: float, frequency_hz: float) -> float:
    """Generalised Snell law: theta_r = asin(sin theta_i - g lambda / 2 pi) [deg] (NaN: evanescent)."""
    s = math.sin(math.radians(theta_i_deg)) - gradient_rad_per_m / wavenumber(frequency_hz)
    return math.degrees(math.asin(s)) if abs(s) <= 1 else float("nan")


def far_field_gain(spec: RisSpec, theta_i_deg: float, theta_r_deg: torch.Tensor, r_t_m: float, r_r_m: float,
                   gradient_rad_per_m: float, frequency_hz: float) -> torch.Tensor:
    """Closed-form far-field path gain (linear) of a uniformly illuminated RIS with a linear phase gradient along
    u, Tx and Rx in the (u, normal) plane at angles theta_i, theta_r [deg] from the normal (Tx on the -u side for
    theta_i > 0): plane waves at both ends, so the sum is a product of Dirichlet kernels,

        G = (d_x d_y / 4 pi)^2 cos^q(theta_i) cos^q(theta_r) / (r_t r_r)^2 * |D_N(psi)|^2 * M^2,
        psi = k d_x (sin theta_r - sin theta_i) + g d_x,  D_N(psi) = sin(N psi / 2) / sin(psi / 2),

    whose peak (psi = 0) is (N M d_x d_y)^2 cos^q cos^q / (16 pi^2 r_t^2 r_r^2) (Tang et al. 2021, far-field
    beamforming case)."""
    k = wavenumber(frequency_hz)
    dx, _ = spec.element_size_m
    tr = torch.deg2rad(torch.as_tensor(theta_r_deg, dtype=torch.float64))
    ti = math.radians(theta_i_deg)
    psi = k * dx * (torch.sin(tr) - math.sin(ti)) + gradient_rad_per_m * dx
    n = spec.num_cols
    half = torch.remainder(psi / 2 + math.pi / 2, math.pi) - math.pi / 2  # D_N is periodic (up to sign)
    small = half.abs() < 1e-9
    dn = torch.where(small, torch.full_like(half, float(n)),
                     torch.sin(n * half) / torch.where(small, torch.ones_like(half), torch.sin(half)))
    pat = (math.cos(ti) ** spec.q) * torch.cos(tr).clamp(min=0) ** spec.q
    return (spec.element_area_m2 / (4 * math.pi)) ** 2 * pat / (r_t_m * r_r_m) ** 2 * dn**2 * spec.num_rows**2


__all__ = ["C0", "RisSpec", "anomalous_angle_deg", "element_offsets", "element_positions", "far_field_gain",
           "focus_phases", "gradient_phases", "quantise_phases", "reflection", "ris_channel", "wavenumber"]
