"""Read-outs: raw network outputs -> physically valid material parameters (positivity / bounds by construction).

``exp`` (seed 003 eqs. 21-22): raw (u, v, s, k) -> eps_r = 1 + exp(u), sigma = exp(v) [S/m], S = sigmoid(s),
K_xpd = sigmoid(k); frequency independent.

``power_law`` (seed 000 eqs. 7-8): raw (r_a, r_b, r_c, r_d, s, k) -> bounded sigmoids
a in [1, a_max], b in [-b_max, b_max], log10 c in [log10_c_min, log10_c_max], d in [d_min, d_max];
eps_r(f) = max(a f^b, 1), sigma(f) = c f^d with f in GHz (the ITU-R P.2040 convention, so (a, b, c, d) compare
directly with the ITU table and with PerObjectMaterials.power_law_coefficients).

Balance of the heads (``log_a``, ``c_gain``): with a linear a = 1 + (a_max - 1) sigmoid(r_a) and log10 c spread
over 13 decades, one raw unit moved log(sigma) about 10x more than log(eps_r) at typical priors, so training
explained everything with conductivity and eps_r stayed at its prior (measured on the split-wall scene, see
docs/fields.md). By default a = a_max^sigmoid(r_a) (log scale) and the c sigmoid takes ``c_gain`` * r_c, so that a
raw step changes log(eps_r) and log(sigma) by comparable amounts; the bounds are the same.

Every read-out has an exact inverse (:meth:`inverse`), used to start a field at prior materials.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

READOUTS = ("exp", "power_law")
_LOGIT_CLAMP = 1e-6


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_LOGIT_CLAMP, 1.0 - _LOGIT_CLAMP)
    return torch.log(p) - torch.log1p(-p)


@dataclass(frozen=True)
class PowerLawBounds:
    """Ranges of the bounded power-law coefficients (f in GHz)."""

    a_max: float = 30.0
    b_max: float = 1.0  # 0: eps_r independent of frequency (b = 0, as all ITU dielectrics)
    log10_c_min: float = -5.0
    log10_c_max: float = 8.0
    d_min: float = -1.0
    d_max: float = 3.0
    log_a: bool = True  # a = a_max ** sigmoid(r_a) (else 1 + (a_max - 1) sigmoid(r_a))
    c_gain: float = 0.15  # slope of the c sigmoid in its raw input (balances log sigma against log eps_r)

    def __post_init__(self):
        if not (self.a_max > 1.0 and self.b_max >= 0.0 and self.log10_c_max > self.log10_c_min
                and self.d_max > self.d_min and self.c_gain > 0.0):
            raise ValueError(f"invalid power-law bounds {self}: need a_max > 1, b_max >= 0, "
                             "log10_c_max > log10_c_min, d_max > d_min, c_gain > 0")


@dataclass
class PointMaterials:
    """Material values at P points: eps_r, sigma [F, P] (S/m); scattering, xpd [P] or None; power-law
    coefficients ``abcd`` [P, 4] (f in GHz) when the read-out has them."""

    eps_r: torch.Tensor
    sigma: torch.Tensor
    scattering: torch.Tensor | None = None
    xpd: torch.Tensor | None = None
    abcd: torch.Tensor | None = None


class Readout:
    """Base read-out; ``width`` raw outputs per point."""

    kind = ""
    width = 0

    def __call__(self, raw: torch.Tensor, frequency_hz: torch.Tensor, with_scattering: bool) -> PointMaterials:
        raise NotImplementedError

    def inverse(self, eps_r: torch.Tensor, sigma: torch.Tensor, frequency_hz: float,
                scattering: torch.Tensor, xpd: torch.Tensor, abcd: torch.Tensor | None = None) -> torch.Tensor:
        """Raw values [K, width] reproducing the given per-object values exactly (within the bounds)."""
        raise NotImplementedError

    def config(self) -> dict:
        return {"kind": self.kind}


class ExpReadout(Readout):
    kind = "exp"
    width = 4

    def __call__(self, raw, frequency_hz, with_scattering):
        F = frequency_hz.reshape(-1).shape[0]
        eps = (1.0 + torch.exp(raw[:, 0]))[None].expand(F, -1)
        sig = torch.exp(raw[:, 1])[None].expand(F, -1)
        s = torch.sigmoid(raw[:, 2]) if with_scattering else None
        k = torch.sigmoid(raw[:, 3]) if with_scattering else None
        return PointMaterials(eps, sig, s, k)

    def inverse(self, eps_r, sigma, frequency_hz, scattering, xpd, abcd=None):
        u = torch.log(torch.clamp(eps_r - 1.0, min=1e-12))
        v = torch.log(torch.clamp(sigma, min=1e-30))
        return torch.stack([u, v, _logit(scattering), _logit(xpd)], -1)


class PowerLawReadout(Readout):
    kind = "power_law"
    width = 6

    def __init__(self, bounds: PowerLawBounds = PowerLawBounds()):
        self.bounds = bounds

    def coefficients(self, raw: torch.Tensor) -> torch.Tensor:
        """(a, b, c, d) [P, 4] from raw [P, >= 4]."""
        bd = self.bounds
        p = torch.sigmoid(raw[:, :4] * torch.tensor([1.0, 1.0, bd.c_gain, 1.0], dtype=raw.dtype, device=raw.device))
        a = torch.pow(bd.a_max, p[:, 0]) if bd.log_a else 1.0 + (bd.a_max - 1.0) * p[:, 0]
        b = bd.b_max * (2.0 * p[:, 1] - 1.0)
        c = torch.pow(10.0, bd.log10_c_min + (bd.log10_c_max - bd.log10_c_min) * p[:, 2])
        d = bd.d_min + (bd.d_max - bd.d_min) * p[:, 3]
        return torch.stack([a, b, c, d], -1)

    def __call__(self, raw, frequency_hz, with_scattering):
        abcd = self.coefficients(raw)
        lf = torch.log(frequency_hz.reshape(-1, 1).to(raw.dtype) / 1e9)  # [F, 1]
        eps = torch.clamp(abcd[None, :, 0] * torch.exp(abcd[None, :, 1] * lf), min=1.0)
        sig = abcd[None, :, 2] * torch.exp(abcd[None, :, 3] * lf)
        s = torch.sigmoid(raw[:, 4]) if with_scattering else None
        k = torch.sigmoid(raw[:, 5]) if with_scattering else None
        return PointMaterials(eps, sig, s, k, abcd)

    def inverse(self, eps_r, sigma, frequency_hz, scattering, xpd, abcd=None):
        """From ``abcd`` [K, 4] when given (rows with NaN fall back to b = d = 0 at ``frequency_hz``)."""
        bd = self.bounds
        K = eps_r.shape[0]
        lf = math.log(frequency_hz / 1e9)
        if abcd is None:
            abcd = torch.full((K, 4), float("nan"), dtype=eps_r.dtype)
        ok = torch.isfinite(abcd).all(-1)
        b = torch.where(ok, abcd[:, 1], torch.zeros_like(eps_r))
        d = torch.where(ok, abcd[:, 3], torch.zeros_like(eps_r))
        a = torch.where(ok, abcd[:, 0], eps_r * torch.exp(-b * lf))
        c = torch.where(ok, abcd[:, 2], sigma * torch.exp(-d * lf))
        pa = torch.log(torch.clamp(a, min=1.0)) / math.log(bd.a_max) if bd.log_a else (a - 1.0) / (bd.a_max - 1.0)
        pb = (b / bd.b_max + 1.0) / 2.0 if bd.b_max > 0 else torch.full_like(b, 0.5)
        pc = (torch.log10(torch.clamp(c, min=1e-30)) - bd.log10_c_min) / (bd.log10_c_max - bd.log10_c_min)
        pd = (d - bd.d_min) / (bd.d_max - bd.d_min)
        return torch.stack([_logit(pa), _logit(pb), _logit(pc) / bd.c_gain, _logit(pd), _logit(scattering),
                            _logit(xpd)], -1)

    def config(self) -> dict:
        return {"kind": self.kind, **asdict(self.bounds)}


def make_readout(cfg: dict | str) -> Readout:
    """A read-out from its name or its :meth:`Readout.config` dict."""
    cfg = {"kind": cfg} if isinstance(cfg, str) else dict(cfg)
    kind = cfg.pop("kind")
    if kind == "exp":
        return ExpReadout()
    if kind == "power_law":
        return PowerLawReadout(PowerLawBounds(**cfg))
    raise ValueError(f"unknown read-out '{kind}', expected one of {READOUTS}")
