"""Beam codebooks for planar arrays (pure torch): DFT grids, steering vectors towards given directions.

Convention (see :mod:`rftwin.physics.arrays`): y = w_rx^H H w_tx with H[r, t] = a u_r[r] u_t[t] and
u[m] = exp(j 2 pi / lambda k . p_m) (k: departure direction at the tx, arrival direction pointing back along the
incoming wave at the rx). A transmit beam towards k is therefore w_tx = conj(u(k)) / sqrt(M), a receive beam
w_rx = u(k) / sqrt(M); both have unit norm, so the array gain towards k is M. Codebooks hold spatial weights
[B, M] that :func:`expand_patterns` turns into port weights [P x B, P x M] (one beam per pattern and spatial
weight, zero on the other pattern's ports; beam index = pattern x B + b).
"""
from __future__ import annotations

import math

import torch


def unit_vectors(azimuth_rad: torch.Tensor, elevation_rad: torch.Tensor) -> torch.Tensor:
    """Directions [B, 3] from azimuth (from +x towards +y) and elevation (above the x-y plane), radians."""
    az, el = torch.as_tensor(azimuth_rad, dtype=torch.float64), torch.as_tensor(elevation_rad, dtype=torch.float64)
    return torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], -1)


def steering_weights(positions_m: torch.Tensor, directions: torch.Tensor, frequency_hz: float,
                     side: str) -> torch.Tensor:
    """Unit-norm spatial weights [B, M] of beams towards ``directions`` [B, 3] (world frame) for elements at
    ``positions_m`` [M, 3] (rotated offsets, m); ``side`` "tx" (conjugate) or "rx"."""
    if side not in ("tx", "rx"):
        raise ValueError(f"side must be 'tx' or 'rx', not {side!r}")
    d = torch.as_tensor(directions, dtype=torch.float64).reshape(-1, 3)
    d = d / torch.linalg.norm(d, dim=-1, keepdim=True)
    phase = 2.0 * math.pi * frequency_hz / 299_792_458.0 * (d @ positions_m.to(torch.float64).T)
    u = torch.polar(torch.ones_like(phase), phase) / math.sqrt(positions_m.shape[0])
    return u.conj() if side == "tx" else u


def dft_weights(normalized_positions: torch.Tensor, num_rows: int, num_cols: int, vertical_spacing: float,
                horizontal_spacing: float, oversampling: int = 1, side: str = "tx") -> torch.Tensor:
    """2-D DFT codebook [O_r N_r x O_c N_c, M] of a planar array from its *unrotated* element positions
    ``normalized_positions`` [M, 3] (wavelengths, array in the local y-z plane).

    Beam (i, j) steers to the direction cosines nu_y = j' / (O_c N_c d_h), nu_z = i' / (O_r N_r d_v) of the local
    frame, i' and j' running over the centred ranges -floor(O N / 2) ... ceil(O N / 2) - 1 (for half-wavelength
    spacing these cover [-1, 1): the visible region and, at the corners, beams outside it). Equals the classical
    DFT matrix up to a constant phase per beam.
    """
    if oversampling < 1:
        raise ValueError(f"oversampling must be >= 1, got {oversampling}")
    if side not in ("tx", "rx"):
        raise ValueError(f"side must be 'tx' or 'rx', not {side!r}")
    p = torch.as_tensor(normalized_positions, dtype=torch.float64).reshape(-1, 3)
    nr, nc = oversampling * num_rows, oversampling * num_cols
    ir = torch.arange(nr, dtype=torch.float64) - nr // 2
    jc = torch.arange(nc, dtype=torch.float64) - nc // 2
    nu_z = (ir / (nr * vertical_spacing)) if num_rows > 1 else torch.zeros(1, dtype=torch.float64)
    nu_y = (jc / (nc * horizontal_spacing)) if num_cols > 1 else torch.zeros(1, dtype=torch.float64)
    zz, yy = torch.meshgrid(nu_z, nu_y, indexing="ij")
    phase = 2.0 * math.pi * (yy.reshape(-1, 1) * p[None, :, 1] + zz.reshape(-1, 1) * p[None, :, 2])
    u = torch.polar(torch.ones_like(phase), phase) / math.sqrt(p.shape[0])
    return u.conj() if side == "tx" else u


def expand_patterns(w: torch.Tensor, num_patterns: int) -> torch.Tensor:
    """Spatial weights [B, M] -> port weights [P x B, P x M] (beam p x B + b uses pattern p's ports only)."""
    w = torch.as_tensor(w)
    B, M = w.shape
    out = torch.zeros(num_patterns, B, num_patterns, M, dtype=w.dtype if w.is_complex() else torch.complex128)
    for p in range(num_patterns):  # P <= 2
        out[p, :, p, :] = w
    return out.reshape(num_patterns * B, num_patterns * M)


def normalize_weights(w: torch.Tensor) -> torch.Tensor:
    """Scale every beam [B, ports] to unit norm (raises on an all-zero beam)."""
    w = torch.as_tensor(w, dtype=torch.complex128)
    n = torch.linalg.norm(w, dim=-1, keepdim=True)
    if bool((n == 0).any()):
        raise ValueError(f"beam(s) {torch.nonzero(n.reshape(-1) == 0).reshape(-1).tolist()} have all-zero weights")
    return w / n
