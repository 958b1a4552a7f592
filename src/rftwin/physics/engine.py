"""The differentiable channel engine: path coefficients from a PathSet, material values and frequencies.

a = lambda / (4 pi L) * f_rx^H  J_D ... J_1  f_tx, with J_i = R_out,i diag(c_TE, c_TM) R_in,i (Sionna RT's
field model for LoS, specular reflection and refraction). Shapes: B material batch (e.g. multi-start),
F frequencies, N paths, D interaction depth, R/T receive/transmit antenna patterns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rftwin.physics.slab import SPEED_OF_LIGHT, complex_permittivity, slab_coefficients
from rftwin.trace.pathset import DIFFRACTION, DIFFUSE, NONE, REFRACTION, SPECULAR, PathSet


@dataclass
class MaterialValues:
    """Material parameters, each broadcastable to [B, F, K] (per object, ``per_object=True``) or to
    [B, F, N, D] (per interaction point). ``thickness`` in metres, ``sigma`` in S/m."""

    eps_r: torch.Tensor
    sigma: torch.Tensor
    thickness: torch.Tensor
    scattering: torch.Tensor | None = None
    xpd: torch.Tensor | None = None
    per_object: bool = True

    def at_interactions(self, obj: torch.Tensor) -> MaterialValues:
        """Gather per-object values at interactions ([N, D] object indices, -1 = none) -> [B, F, N, D]."""
        if not self.per_object:
            return self
        idx = obj.clamp_min(0)

        def g(x):
            return None if x is None else x[..., idx]

        return MaterialValues(g(self.eps_r), g(self.sigma), g(self.thickness), g(self.scattering), g(self.xpd),
                              per_object=False)


SUPPORTED = {NONE, SPECULAR, REFRACTION}


def check_supported(ps: PathSet) -> None:
    present = set(torch.unique(ps.itype).tolist())
    missing = present - SUPPORTED
    if missing:
        names = {DIFFUSE: "diffuse reflection", DIFFRACTION: "diffraction"}
        raise ValueError("the channel engine does not support these traced mechanisms yet: "
                         + ", ".join(names.get(m, str(m)) for m in sorted(missing))
                         + "; trace with diffuse_reflection=False, diffraction=False")


def interaction_coefficients(ps: PathSet, mat: MaterialValues, frequency_hz: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal Jones terms (c_TE, c_TM) of every interaction: complex [B, F, N, D] (1 where no interaction)."""
    m = mat.at_interactions(ps.obj)
    f = frequency_hz.reshape(1, -1, 1, 1)
    lam = SPEED_OF_LIGHT / f
    mask = ps.itype != NONE
    cos_i = torch.where(mask, ps.cos_i, torch.ones_like(ps.cos_i))
    eta = complex_permittivity(m.eps_r, m.sigma, f)
    r_te, r_tm, t_te, t_tm = slab_coefficients(cos_i, eta, m.thickness, lam)
    refr = ps.itype == REFRACTION
    c_te = torch.where(refr, t_te, r_te)
    c_tm = torch.where(refr, t_tm, r_tm)
    if m.scattering is not None:
        spec_fac = torch.sqrt(torch.clamp(1.0 - m.scattering * m.scattering, min=0.0))
        fac = torch.where(ps.itype == SPECULAR, spec_fac, torch.ones_like(spec_fac)).to(c_te.dtype)
        c_te, c_tm = c_te * fac, c_tm * fac
    one = torch.ones((), dtype=c_te.dtype)
    return torch.where(mask, c_te, one), torch.where(mask, c_tm, one)


def path_coefficients(ps: PathSet, mat: MaterialValues, frequency_hz: torch.Tensor | float,
                      check: bool = True) -> torch.Tensor:
    """Complex path coefficients a [B, F, N, R, T] (without the delay phase exp(-j 2 pi f tau), as Sionna)."""
    if check:
        check_supported(ps)
    dtype = ps.cos_i.dtype
    f = torch.as_tensor(frequency_hz, dtype=dtype, device=ps.cos_i.device).reshape(-1)
    c_te, c_tm = interaction_coefficients(ps, mat, f)  # [B, F, N, D]
    es = ps.f_tx[..., 0].to(c_te.dtype)  # [N, T]
    ep = ps.f_tx[..., 1].to(c_te.dtype)
    es = es.expand(c_te.shape[:2] + es.shape)  # [B, F, N, T]
    ep = ep.expand(c_te.shape[:2] + ep.shape)
    for d in range(ps.max_depth):
        ri = ps.rot_in[:, d, :, :, None]  # [N, 2, 2, 1] broadcast over T
        ro = ps.rot_out[:, d, :, :, None]
        s1 = ri[:, 0, 0] * es + ri[:, 0, 1] * ep
        p1 = ri[:, 1, 0] * es + ri[:, 1, 1] * ep
        s1 = s1 * c_te[..., d, None]
        p1 = p1 * c_tm[..., d, None]
        es = ro[:, 0, 0] * s1 + ro[:, 0, 1] * p1
        ep = ro[:, 1, 0] * s1 + ro[:, 1, 1] * p1
    fr = ps.f_rx.to(es.dtype).conj()  # [N, R, 2]
    a = fr[None, None, :, :, 0, None] * es[..., None, :] + fr[None, None, :, :, 1, None] * ep[..., None, :]
    lam = (SPEED_OF_LIGHT / f).reshape(1, -1, 1, 1, 1)
    return a * (lam / (4.0 * math.pi * ps.length_m.reshape(1, 1, -1, 1, 1)))
