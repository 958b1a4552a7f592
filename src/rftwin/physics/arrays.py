"""Antenna arrays on cached paths (pure torch): per-element channels and per-beam gains.

A PathSet carries one coefficient per antenna *pattern* (``f_tx`` [N, T, 2], ``f_rx`` [N, R, 2]) for the array
centre. The elements of a planar array add the plane-wave phase exp(j 2 pi f / c (k_tx . p_t + k_rx . p_r)) of
their offsets p from the centre: Sionna RT's "synthetic array" (``PathSolver(synthetic_array=True)``,
``Paths._apply_synthetic_array``), so the channels of every element come from the one trace. Ports are ordered
pattern-major (port = pattern x M + element), as in Sionna's ``Paths.a``.

Beams: a precoder ``w_tx`` [Bt, T x Mt] and a combiner ``w_rx`` [Br, R x Mr] give the effective path coefficient
w_rx^H H_p w_tx; the beam-pair gain of a link is the sum over its paths of |w_rx^H H_p w_tx|^2 (``incoherent``: the
paths are resolved in delay, e.g. 0.46 ns at 2.16 GHz) or |sum_p w_rx^H H_p w_tx e^{-j 2 pi f tau_p}|^2
(``coherent``: a narrowband tone).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rftwin.pathset import PathSet
from rftwin.physics.antenna_names import POLARIZATIONS, check_antenna
from rftwin.physics.slab import SPEED_OF_LIGHT


@dataclass(frozen=True)
class ArraySpec:
    """A planar array as Sionna's ``PlanarArray``: ``num_rows`` x ``num_cols`` elements in the y-z plane of the
    device (broadside +x before rotation), spacings in wavelengths at ``spacing_frequency_hz`` (None: the
    frequency at which the array is applied), ``pattern`` and ``polarization`` as in Sionna, and the device
    ``orientation`` (yaw, pitch, roll) in radians (Sionna's convention)."""

    num_rows: int = 1
    num_cols: int = 1
    vertical_spacing: float = 0.5
    horizontal_spacing: float = 0.5
    pattern: str = "iso"
    polarization: str = "V"
    orientation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    spacing_frequency_hz: float | None = None

    def __post_init__(self) -> None:
        for name in ("num_rows", "num_cols"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("vertical_spacing", "horizontal_spacing"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of wavelengths, got {v!r}")
        check_antenna(self.pattern, self.polarization)
        if len(self.orientation) != 3 or not all(math.isfinite(float(x)) for x in self.orientation):
            raise ValueError(f"orientation must be three finite angles (yaw, pitch, roll) in radians, got "
                             f"{self.orientation!r}")
        if self.spacing_frequency_hz is not None and not (self.spacing_frequency_hz > 0):
            raise ValueError(f"spacing_frequency_hz must be positive, got {self.spacing_frequency_hz!r}")

    @property
    def num_elements(self) -> int:
        return self.num_rows * self.num_cols

    @property
    def num_patterns(self) -> int:
        return POLARIZATIONS[self.polarization]

    @property
    def num_ports(self) -> int:
        return self.num_elements * self.num_patterns


def array_record(ps: PathSet, side: str) -> dict | None:
    """The array stored in the PathSet's meta by :func:`rftwin.trace.arrays.with_arrays` (None: one element)."""
    if side not in ("tx", "rx"):
        raise ValueError(f"side must be 'tx' or 'rx', not {side!r}")
    return ps.meta.get(f"{side}_array")


def element_positions(ps: PathSet, side: str, dtype=torch.float64) -> torch.Tensor:
    """Element offsets [M, 3] (m, rotated by the device orientation) of the PathSet's tx / rx array."""
    rec = array_record(ps, side)
    if rec is None:
        return torch.zeros(1, 3, dtype=dtype)
    return torch.as_tensor(rec["positions_m"], dtype=dtype).reshape(-1, 3)


def element_phases(k: torch.Tensor, positions_m: torch.Tensor, frequency_hz: torch.Tensor) -> torch.Tensor:
    """Plane-wave phase factors exp(j 2 pi f / c k . p): k [N, 3], positions [M, 3], f [F] -> complex [F, N, M]."""
    f = torch.as_tensor(frequency_hz, dtype=k.dtype).reshape(-1, 1, 1)
    phase = 2.0 * math.pi * f / SPEED_OF_LIGHT * (k @ positions_m.to(k.dtype).T)[None]
    return torch.polar(torch.ones_like(phase), phase)


def element_channels(ps: PathSet, a: torch.Tensor, frequency_hz) -> torch.Tensor:
    """Per-element path coefficients [B, F, N, R x Mr, T x Mt] from the engine's per-pattern ones ``a``
    [B, F, N, R, T] (ports pattern-major, as Sionna's ``Paths.a``)."""
    B, F, N, R, T = a.shape
    u_t = element_phases(ps.k_tx, element_positions(ps, "tx"), frequency_hz).to(a.dtype)  # [F, N, Mt]
    u_r = element_phases(ps.k_rx, element_positions(ps, "rx"), frequency_hz).to(a.dtype)  # [F, N, Mr]
    h = a[..., :, None, :, None] * u_r[None, :, :, None, :, None, None] * u_t[None, :, :, None, None, None, :]
    return h.reshape(B, F, N, R * u_r.shape[-1], T * u_t.shape[-1])


def _port_gains(u: torch.Tensor, w: torch.Tensor, patterns: int, conj_w: bool) -> torch.Tensor:
    """sum_m w[b, p, m] u[n, m] (conj(w) with ``conj_w``): u [N, M], w [B, P x M] -> [N, B, P]."""
    w = w.to(u.dtype).reshape(w.shape[0], patterns, -1)
    if conj_w:
        w = w.conj()
    return torch.einsum("nm,bpm->nbp", u, w)


def beam_gains(ps: PathSet, a: torch.Tensor, frequency_hz: float, w_tx: torch.Tensor, w_rx: torch.Tensor,
               combine: str = "incoherent", chunk_size: int = 4096) -> torch.Tensor:
    """Linear beam-pair gains [L, Br, Bt] of every link at one frequency.

    ``a`` [N, R, T] engine coefficients at ``frequency_hz`` (one material set), ``w_tx`` [Bt, T x Mt] precoders,
    ``w_rx`` [Br, R x Mr] combiners (ports pattern-major); y = w_rx^H H w_tx. Never forms the per-element
    channels: H_p = a_p (x) u_r u_t^T, so w_rx^H H_p w_tx = sum_{r,t} a_p[r, t] (w_rx[r]^H u_r)(w_tx[t] . u_t).
    Paths are processed in chunks of ``chunk_size`` (memory ~ chunk x Br x Bt complex values).
    """
    if combine not in ("incoherent", "coherent"):
        raise ValueError(f"combine must be 'incoherent' or 'coherent', not {combine!r}")
    N, R, T = a.shape
    pt, pr = element_positions(ps, "tx"), element_positions(ps, "rx")
    if w_tx.shape[-1] != T * pt.shape[0]:
        raise ValueError(f"tx codebook has {w_tx.shape[-1]} ports per beam, the array has {T * pt.shape[0]} "
                         f"({T} pattern(s) x {pt.shape[0]} element(s))")
    if w_rx.shape[-1] != R * pr.shape[0]:
        raise ValueError(f"rx codebook has {w_rx.shape[-1]} ports per beam, the array has {R * pr.shape[0]} "
                         f"({R} pattern(s) x {pr.shape[0]} element(s))")
    L, Bt, Br = ps.num_links, w_tx.shape[0], w_rx.shape[0]
    ctype = a.dtype
    acc = torch.zeros(L, Br, Bt, dtype=ctype if combine == "coherent" else a.real.dtype)
    for s in range(0, N, chunk_size):
        sl = slice(s, min(s + chunk_size, N))
        k_t, k_r = ps.k_tx[sl], ps.k_rx[sl]
        u_t = element_phases(k_t, pt, frequency_hz)[0].to(ctype)  # [n, Mt]
        u_r = element_phases(k_r, pr, frequency_hz)[0].to(ctype)  # [n, Mr]
        g_t = _port_gains(u_t, w_tx, T, conj_w=False)  # [n, Bt, T]
        g_r = _port_gains(u_r, w_rx, R, conj_w=True)  # [n, Br, R]
        eff = torch.einsum("nrt,nbr,nct->nbc", a[sl], g_r, g_t)  # [n, Br, Bt]
        if combine == "coherent":
            tau = ps.tau_s[sl].to(a.real.dtype)
            eff = eff * torch.polar(torch.ones_like(tau), -2.0 * math.pi * frequency_hz * tau)[:, None, None]
            acc.index_add_(0, ps.link[sl], eff)
        else:
            acc.index_add_(0, ps.link[sl], eff.real ** 2 + eff.imag ** 2)
    return acc.real ** 2 + acc.imag ** 2 if combine == "coherent" else acc


def narrowband_channels(ps: PathSet, a: torch.Tensor, frequency_hz: float, chunk_size: int = 4096) -> torch.Tensor:
    """Narrowband MIMO matrices [L, R x Mr, T x Mt] = sum over each link's paths of the per-element coefficients
    times exp(-j 2 pi f tau) (``a`` [N, R, T] at ``frequency_hz``), accumulated over path chunks."""
    N, R, T = a.shape
    mr, mt = element_positions(ps, "rx").shape[0], element_positions(ps, "tx").shape[0]
    out = torch.zeros(ps.num_links, R * mr, T * mt, dtype=a.dtype)
    for s in range(0, N, chunk_size):
        sl = slice(s, min(s + chunk_size, N))
        sub = ps.select_paths(sl)
        h = element_channels(sub, a[None, None, sl], frequency_hz)[0, 0]  # [n, R Mr, T Mt]
        tau = sub.tau_s.to(a.real.dtype)
        h = h * torch.polar(torch.ones_like(tau), -2.0 * math.pi * frequency_hz * tau)[:, None, None]
        out.index_add_(0, sub.link, h)
    return out
