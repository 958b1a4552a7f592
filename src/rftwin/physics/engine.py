"""The differentiable channel engine: path coefficients from a PathSet, material values and frequencies.

a = lambda / (4 pi) * g * f_rx^H  J_D ... J_1  f_tx (Sionna RT 2.2's field model) with
- specular reflection / refraction: J = R_out diag(c_TE, c_TM) R_in (slab coefficients, x sqrt(1 - S^2) on
  specular reflection),
- diffuse reflection: J = S sqrt(f_s Omega) gamma W_out X(K_x) W_in, gamma computed from the current field
  (so the per-depth loop carries the field),
- first-order UTD diffraction: J = D14 out_0 diag(R_0) in_0 + D23 out_n diag(R_n) in_n,
and the spreading factor g = 1 / (ray-tube length after the last diffuse interaction), or
1 / sqrt(s s' (s + s')) for diffracted paths. Shapes: B material batch (e.g. multi-start), F frequencies,
N paths, D interaction depth, R/T receive/transmit antenna patterns. Loops run over depth (and over path chunks
with ``chunk_size``) only.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from rftwin.pathset import DIFFRACTION, DIFFUSE, NONE, REFRACTION, SPECULAR, PathSet
from rftwin.physics.channel import path_gain, to_db
from rftwin.physics.diffraction import diffraction_jones, utd_coefficients
from rftwin.physics.diffuse import LAMBERTIAN, diffuse_field, scattering_pattern, series_terms
from rftwin.physics.slab import SPEED_OF_LIGHT, complex_permittivity, slab_coefficients

_FLOAT_FIELDS = ("eps_r", "sigma", "thickness", "scattering", "xpd", "alpha_r", "alpha_i", "lambda_")


@dataclass
class MaterialValues:
    """Material parameters, each broadcastable to [B, F, K] (per object, ``per_object=True``) or to
    [B, F, N, D] (per interaction point). ``thickness`` in metres, ``sigma`` in S/m.

    Diffuse reflection: ``scattering`` S in [0, 1] (None = 0: no diffuse field, specular not reduced),
    ``xpd`` K_x in [0, 1] (None = 0), ``pattern`` integer scattering-pattern codes per object [K] (or [N, D];
    :data:`rftwin.physics.diffuse.LAMBERTIAN` / ``DIRECTIVE`` / ``BACKSCATTERING``; None = lambertian) and the
    lobe parameters ``alpha_r``, ``alpha_i`` (>= 1; integers in Sionna, real values allowed and
    differentiable here) and ``lambda_`` in [0, 1] (None = 1).
    """

    eps_r: torch.Tensor
    sigma: torch.Tensor
    thickness: torch.Tensor
    scattering: torch.Tensor | None = None
    xpd: torch.Tensor | None = None
    per_object: bool = True
    pattern: torch.Tensor | None = None
    alpha_r: torch.Tensor | None = None
    alpha_i: torch.Tensor | None = None
    lambda_: torch.Tensor | None = None

    def at_interactions(self, obj: torch.Tensor) -> MaterialValues:
        """Gather per-object values at interactions ([N, D] object indices, -1 = none) -> [B, F, N, D]."""
        if not self.per_object:
            return self
        idx = obj.clamp_min(0)

        def g(x):
            return None if x is None else torch.as_tensor(x)[..., idx]

        return MaterialValues(g(self.eps_r), g(self.sigma), g(self.thickness), g(self.scattering), g(self.xpd),
                              per_object=False, pattern=g(self.pattern), alpha_r=g(self.alpha_r),
                              alpha_i=g(self.alpha_i), lambda_=g(self.lambda_))

    def select_paths(self, index) -> MaterialValues:
        """Per-interaction values ([..., N, D]) of the paths ``index``; per-object values are returned as is."""
        if self.per_object:
            return self
        kw = {}
        for fl in fields(self):
            t = getattr(self, fl.name)
            if fl.name != "per_object" and isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-2] != 1:
                kw[fl.name] = t[..., index, :]
        return replace(self, **kw)

    def to(self, device) -> MaterialValues:
        """A copy with every tensor on ``device``."""
        kw = {fl.name: getattr(self, fl.name).to(device) for fl in fields(self)
              if isinstance(getattr(self, fl.name), torch.Tensor)}
        return replace(self, **kw)

    def tensors(self) -> list[torch.Tensor]:
        """The floating-point tensors (for autograd bookkeeping)."""
        return [getattr(self, n) for n in _FLOAT_FIELDS if isinstance(getattr(self, n), torch.Tensor)]


SUPPORTED = {NONE, SPECULAR, REFRACTION, DIFFUSE, DIFFRACTION}


def check_supported(ps: PathSet) -> None:
    """Raise if the PathSet holds mechanisms whose geometry records are missing (traced before format 2)."""
    counts = torch.bincount(ps.itype.reshape(-1).clamp_min(0)) if ps.itype.numel() else torch.zeros(0)
    present = {int(c) for c in torch.nonzero(counts).reshape(-1)}
    missing = []
    if DIFFUSE in present and (ps.w_in is None or ps.solid_angle is None or ps.tube_length_m is None):
        missing.append("diffuse reflection")
    if DIFFRACTION in present and (ps.utd_rot is None or ps.s_m is None):
        missing.append("diffraction")
    unknown = present - SUPPORTED
    if unknown:
        missing.append(f"interaction codes {sorted(unknown)}")
    if missing:
        raise ValueError("the PathSet lacks the geometry records for: " + ", ".join(missing)
                         + "; re-trace it with this version of rftwin (format 2)")


def _lead_shape(*tensors: torch.Tensor | None) -> tuple[int, int]:
    """Broadcast leading [B, F] of tensors shaped [..., X, Y] (gathered material values [..., N, D])."""
    # numpy's rule: torch.broadcast_shapes imports torch.fx's symbolic shapes (and sympy) on first use, ~0.5 s
    shape = np.broadcast_shapes(*(tuple(t.shape[:-2]) for t in tensors if t is not None))
    if len(shape) > 2:
        raise ValueError(f"material values have too many leading dimensions: {tuple(shape)} (expected [B, F])")
    return tuple([1] * (2 - len(shape)) + list(shape))


def _coefficients(ps: PathSet, m: MaterialValues, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal terms (c_TE, c_TM) of all interaction slots, complex [B, F, N, D] (materials gathered)."""
    f4 = f.reshape(1, -1, 1, 1)
    lam = SPEED_OF_LIGHT / f4
    mask = ps.itype != NONE
    cos_i = torch.where(mask, ps.cos_i, torch.ones_like(ps.cos_i))
    eta = complex_permittivity(m.eps_r, m.sigma, f4)
    r_te, r_tm, t_te, t_tm = slab_coefficients(cos_i, eta, m.thickness, lam)
    refr = ps.itype == REFRACTION
    c_te = torch.where(refr, t_te, r_te)
    c_tm = torch.where(refr, t_tm, r_tm)
    if m.scattering is not None:
        spec_fac = _specular_reduction(m.scattering)
        fac = torch.where(ps.itype == SPECULAR, spec_fac, torch.ones_like(spec_fac)).to(c_te.dtype)
        c_te, c_tm = c_te * fac, c_tm * fac
    one = torch.ones((), dtype=c_te.dtype)
    return torch.where(mask, c_te, one), torch.where(mask, c_tm, one)


def _specular_reduction(s: torch.Tensor) -> torch.Tensor:
    """sqrt(1 - S^2) (clamped away from 0 so that its gradient stays finite at S = 1)."""
    return torch.sqrt(torch.clamp(1.0 - s * s, min=torch.finfo(s.dtype).tiny))


def _rotate(r: torch.Tensor, es: torch.Tensor, ep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real 2x2 rotation r [M, 2, 2] applied to the field (es, ep) [..., M, T]."""
    r = r[:, :, :, None]
    return r[:, 0, 0] * es + r[:, 0, 1] * ep, r[:, 1, 0] * es + r[:, 1, 1] * ep


def _series_terms(mat: MaterialValues) -> int:
    """Scattering-pattern series length for all lobe exponents of ``mat`` (the same for every chunk)."""
    if mat.pattern is None or not bool((torch.as_tensor(mat.pattern) != LAMBERTIAN).any()):
        return 2
    return series_terms(mat.alpha_r, mat.alpha_i)


def _path_coefficients(ps: PathSet, mat: MaterialValues, f: torch.Tensor, num_terms: int | None = None
                       ) -> torch.Tensor:
    """Unchunked engine: complex a [B, F, N, R, T] for frequencies ``f`` [F].

    Depth d only touches the M_d paths that have an interaction there (memory and work scale with the number of
    interactions, not with N x D).
    """
    if num_terms is None:
        num_terms = _series_terms(mat)
    dtype = ps.cos_i.dtype
    tiny = torch.finfo(dtype).tiny
    m = mat.at_interactions(ps.obj)
    itype = ps.itype
    N, D = itype.shape
    F = f.shape[0]
    lead = _lead_shape(*[torch.as_tensor(x) for x in m.tensors()], torch.zeros(F, 1, 1, dtype=dtype))
    ctype = torch.complex128 if dtype == torch.float64 else torch.complex64
    es = ps.f_tx[..., 0].to(ctype).expand(lead + ps.f_tx.shape[:2])  # [B, F, N, T]
    ep = ps.f_tx[..., 1].to(ctype).expand(lead + ps.f_tx.shape[:2])
    T_ = es.shape[-1]
    zeros = torch.zeros((), dtype=dtype, device=ps.cos_i.device)
    lam = (SPEED_OF_LIGHT / f).reshape(-1, 1)  # [F, 1]
    f2 = f.reshape(-1, 1)
    kind = None if m.pattern is None else torch.as_tensor(m.pattern).expand(N, D)

    for d in range(D):
        t_all = itype[:, d]
        idx = torch.nonzero(t_all != NONE).squeeze(1)  # paths with an interaction at depth d
        if idx.numel() == 0:
            continue
        t = t_all[idx]

        def at(x, sub=None):
            """Material value at the interactions (idx[sub], d): [..., M] (x None -> None)."""
            if x is None:
                return None
            v = torch.as_tensor(x)[..., idx, d]
            return v if sub is None else v[..., sub]

        cos_i = ps.cos_i[idx, d]
        eta = complex_permittivity(at(m.eps_r), at(m.sigma), f2)  # [B?, F, M]
        thick = at(m.thickness)
        r_te, r_tm, t_te, t_tm = slab_coefficients(cos_i, eta, thick, lam)
        refr = t == REFRACTION
        c_te, c_tm = torch.where(refr, t_te, r_te), torch.where(refr, t_tm, r_tm)
        s_all = at(m.scattering)
        if s_all is not None:
            fac = torch.where(t == SPECULAR, _specular_reduction(s_all), torch.ones_like(s_all)).to(ctype)
            c_te, c_tm = c_te * fac, c_tm * fac
        e_s, e_p = es[..., idx, :], ep[..., idx, :]
        u_s, u_p = _rotate(ps.rot_in[idx, d], e_s, e_p)  # TE/TM basis
        v_s, v_p = c_te[..., None] * u_s, c_tm[..., None] * u_p
        n_s, n_p = _rotate(ps.rot_out[idx, d], v_s, v_p)
        shape = lead + (idx.numel(), T_)
        n_s, n_p = n_s.expand(shape), n_p.expand(shape)
        j = torch.nonzero(t == DIFFUSE).squeeze(1)
        if j.numel():
            gi = idx[j]
            s_d = zeros if s_all is None else s_all[..., j]
            k = torch.full((j.numel(),), LAMBERTIAN, dtype=torch.long) if kind is None else kind[gi, d]
            fs = scattering_pattern(k, cos_i[j], ps.cos_o[gi, d], ps.cos_psi_r[gi, d], ps.cos_psi_i[gi, d],
                                    at(m.alpha_r, j), at(m.alpha_i, j), at(m.lambda_, j), num_terms)
            amp = s_d * torch.sqrt(torch.clamp(fs * ps.solid_angle[gi, d], min=tiny))
            kx = at(m.xpd, j)
            amp, kx = torch.broadcast_tensors(amp, zeros if kx is None else kx)
            sub = lead + (j.numel(), T_)
            ds, dp = diffuse_field(e_s[..., j, :].expand(sub), e_p[..., j, :].expand(sub), v_s[..., j, :].expand(sub),
                                   v_p[..., j, :].expand(sub), amp, kx, ps.w_in[gi, d], ps.w_out[gi, d])
            n_s = n_s.index_copy(2, j, ds.expand(sub))
            n_p = n_p.index_copy(2, j, dp.expand(sub))
        j = torch.nonzero(t == DIFFRACTION).squeeze(1)
        if j.numel():
            gi = idx[j]
            eta_d, th_d = eta[..., j], thick[..., j]
            r0_te, r0_tm, _, _ = slab_coefficients(ps.utd_cos[gi, 0], eta_d, th_d, lam)
            rn_te, rn_tm, _, _ = slab_coefficients(ps.utd_cos[gi, 1], eta_d, th_d, lam)
            if s_all is not None:
                red = _specular_reduction(s_all[..., j]).to(ctype)
                r0_te, r0_tm, rn_te, rn_tm = r0_te * red, r0_tm * red, rn_te * red, rn_tm * red
            wide = ps.utd_wide[gi]
            minus_one = torch.full((), -1.0, dtype=ctype)
            rn_te, rn_tm = torch.where(wide, minus_one, rn_te), torch.where(wide, minus_one, rn_tm)
            d14, d23 = utd_coefficients(f, ps.utd_n[gi], ps.utd_sin_beta0[gi], ps.utd_L[gi], ps.utd_psi[gi],
                                        ps.utd_a[gi])
            J = diffraction_jones(d14, d23, (r0_te, r0_tm), (rn_te, rn_tm), ps.utd_rot[gi])  # [.., M, 2, 2]
            js = J[..., None, :, :]  # broadcast over T
            x_s, x_p = e_s[..., j, :], e_p[..., j, :]
            sub = lead + (j.numel(), T_)
            n_s = n_s.index_copy(2, j, (js[..., 0, 0] * x_s + js[..., 0, 1] * x_p).expand(sub))
            n_p = n_p.index_copy(2, j, (js[..., 1, 0] * x_s + js[..., 1, 1] * x_p).expand(sub))
        es, ep = es.index_copy(2, idx, n_s), ep.index_copy(2, idx, n_p)
    fr = ps.f_rx.to(ctype).conj()  # [N, R, 2]
    a = fr[None, None, :, :, 0, None] * es[..., None, :] + fr[None, None, :, :, 1, None] * ep[..., None, :]
    lam5 = (SPEED_OF_LIGHT / f).reshape(1, -1, 1, 1, 1)
    return a * (lam5 / (4.0 * math.pi) * spreading_factor(ps).reshape(1, 1, -1, 1, 1))


def spreading_factor(ps: PathSet) -> torch.Tensor:
    """Free-space spreading g [N] (1/m): 1 / ray-tube length, or 1 / sqrt(s s' (s + s')) for diffracted paths."""
    tube = ps.length_m if ps.tube_length_m is None else ps.tube_length_m
    g = 1.0 / tube
    if ps.s_m is not None:
        diffr = (ps.itype == DIFFRACTION).any(1)
        prod = ps.s_m * ps.s_prime_m * (ps.s_m + ps.s_prime_m)
        g = torch.where(diffr, 1.0 / torch.sqrt(torch.where(diffr, prod, torch.ones_like(prod))), g)
    return g


def path_coefficients(ps: PathSet, mat: MaterialValues, frequency_hz: torch.Tensor | float,
                      check: bool = True, chunk_size: int | None = None) -> torch.Tensor:
    """Complex path coefficients a [B, F, N, R, T] (without the delay phase exp(-j 2 pi f tau), as Sionna).

    With ``chunk_size`` the paths are processed in chunks of that many paths; when autograd is recording, each
    chunk is checkpointed (its intermediates are recomputed in the backward pass), so peak memory is bounded by
    one chunk plus the output.
    """
    if check:
        check_supported(ps)
    dtype = ps.cos_i.dtype
    f = torch.as_tensor(frequency_hz, dtype=dtype, device=ps.cos_i.device).reshape(-1)
    N = ps.num_paths
    if chunk_size is None or N <= chunk_size:
        return _path_coefficients(ps, mat, f)
    J = _series_terms(mat)
    parts = [_chunk(ps, mat, f, slice(s, min(s + chunk_size, N)), num_terms=J) for s in range(0, N, chunk_size)]
    return torch.cat(parts, dim=2)


def _needs_grad(mat: MaterialValues) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in mat.tensors())


def _chunk(ps: PathSet, mat: MaterialValues, f: torch.Tensor, sl: slice,
           reduce: Callable[[torch.Tensor, PathSet], torch.Tensor] | None = None, num_terms: int | None = None
           ) -> torch.Tensor:
    """Engine (optionally followed by ``reduce``) on the paths ``sl``, checkpointed when gradients are needed."""
    ps_c, mat_c = ps.select_paths(sl), mat.select_paths(sl)

    def run(*_tensors: torch.Tensor) -> torch.Tensor:
        a = _path_coefficients(ps_c, mat_c, f, num_terms)
        return a if reduce is None else reduce(a, ps_c)

    if _needs_grad(mat):
        return checkpoint(run, *mat.tensors(), use_reentrant=False)
    return run()


def link_reduce(ps: PathSet, mat: MaterialValues, frequency_hz: torch.Tensor | float,
                reduce: Callable[[torch.Tensor, PathSet], torch.Tensor], chunk_size: int = 200_000,
                check: bool = True) -> torch.Tensor:
    """Sum ``reduce(a_chunk, ps_chunk)`` over path chunks with bounded memory (autograd via checkpointing).

    ``reduce`` maps a chunk's coefficients [B, F, n, R, T] and its PathSet (``link`` indices into all
    ``ps.num_links`` links) to a per-link tensor of fixed shape, e.g. ``lambda a, p: path_gain(a, p.link,
    p.num_links)`` -> [B, F, L]. Only the per-link sums are kept, never the N-path coefficients.
    """
    if check:
        check_supported(ps)
    f = torch.as_tensor(frequency_hz, dtype=ps.cos_i.dtype, device=ps.cos_i.device).reshape(-1)
    N = ps.num_paths
    J = _series_terms(mat)
    total = None
    for s in range(0, max(N, 1), chunk_size):
        part = _chunk(ps, mat, f, slice(s, min(s + chunk_size, N)), reduce, num_terms=J)
        total = part if total is None else total + part
    return total


def link_path_gain(ps: PathSet, mat: MaterialValues, frequency_hz: torch.Tensor | float,
                   chunk_size: int = 200_000) -> torch.Tensor:
    """Linear path gain per link [B, F, L] (incoherent sum of |a|^2 averaged over antenna pairs), chunked."""
    return link_reduce(ps, mat, frequency_hz, lambda a, p: path_gain(a, p.link, p.num_links), chunk_size)


def link_gain_db(ps: PathSet, mat: MaterialValues, frequency_hz: torch.Tensor | float, check: bool = True,
                 floor: float = 1e-30) -> torch.Tensor:
    """Engine path gain per link [B, F, L] (dB; ``floor`` (linear, default -300 dB) for links without paths): the
    one composition engine -> :func:`rftwin.physics.channel.path_gain` -> dB, for callers that need nothing else
    from the coefficients (unchunked; :func:`link_path_gain` bounds memory)."""
    return to_db(path_gain(path_coefficients(ps, mat, frequency_hz, check=check), ps.link, ps.num_links), floor=floor)
