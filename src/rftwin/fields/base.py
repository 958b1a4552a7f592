"""The common part of all material fields: coordinates -> encoding -> network -> read-out, evaluated at the
interaction points of a PathSet and handed to the channel engine as per-interaction MaterialValues.

A field maps a world point x [m] (normalised to [-1, 1]^3 by the scene bounding box) and the object index of
the surface it lies on to (eps_r, sigma, S, K_xpd). Initialisation: the last network layer starts at zero and a
per-object raw offset (the exact inverse of the read-out at the prior materials) is added, so the untrained field
equals the per-object prior everywhere; training then learns spatial deviations.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from rftwin.fields.readout import PointMaterials, Readout, make_readout
from rftwin.fields.screening import CellPrior, cell_keys
from rftwin.pathset import NONE, PathSet
from rftwin.physics.engine import MaterialValues


class MaterialField(nn.Module):
    """Base class. Subclasses implement :meth:`encode` ([P, 3] in [-1, 1] -> [P, E]) and set ``encoding_dim``.

    Arguments: ``bbox`` (lo [3], hi [3]) world bounds (m); ``thickness`` [K] slab thickness per object (m);
    ``prior_eps``/``prior_sigma`` [K] at ``reference_frequency_hz``; ``prior_abcd`` [K, 4] optional power laws
    (f in GHz, NaN rows unknown); ``prior_scattering``/``prior_xpd`` [K]; ``fit_scattering`` adds S and K_xpd to
    the fitted outputs (else S = K_xpd = prior values, None when all zero); ``embedding_dim`` > 0 concatenates a
    learnable per-object embedding to the encoding (seed 003's optional category embedding).
    """

    kind = ""

    def __init__(self, bbox: tuple[Sequence[float], Sequence[float]], thickness: Sequence[float],
                 prior_eps: Sequence[float], prior_sigma: Sequence[float], *, readout: str | dict = "exp",
                 reference_frequency_hz: float = 3.5e9, prior_abcd: np.ndarray | None = None,
                 prior_scattering: Sequence[float] | None = None, prior_xpd: Sequence[float] | None = None,
                 fit_scattering: bool = False, embedding_dim: int = 0, prior_cell_m: float | None = None,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.readout: Readout = make_readout(readout)
        K = len(thickness)
        for name, v in (("prior_eps", prior_eps), ("prior_sigma", prior_sigma)):
            if len(v) != K:
                raise ValueError(f"{name} has {len(v)} entries, expected one per object ({K})")
        self.num_objects = K
        self.reference_frequency_hz = float(reference_frequency_hz)
        self.fit_scattering = bool(fit_scattering)
        self.embedding_dim = int(embedding_dim)
        self.dtype_ = dtype
        lo, hi = (torch.as_tensor(np.asarray(b, dtype=np.float64), dtype=dtype) for b in bbox)
        if lo.shape != (3,) or hi.shape != (3,) or not bool((hi > lo).all()):
            raise ValueError(f"bbox must be (lo[3], hi[3]) with hi > lo, got {bbox}")
        self.register_buffer("bbox_lo", lo)
        self.register_buffer("bbox_hi", hi)
        self.register_buffer("thickness", torch.as_tensor(np.asarray(thickness, dtype=np.float64), dtype=dtype))

        def t(x, default):
            return torch.as_tensor(np.full(K, default) if x is None else np.asarray(x, dtype=np.float64), dtype=dtype)

        s0, k0 = t(prior_scattering, 0.0), t(prior_xpd, 0.0)
        self.register_buffer("prior_scattering", s0)
        self.register_buffer("prior_xpd", k0)
        abcd = None if prior_abcd is None else torch.as_tensor(np.asarray(prior_abcd, dtype=np.float64), dtype=dtype)
        offset = self.readout.inverse(t(prior_eps, 0.0), t(prior_sigma, 0.0), self.reference_frequency_hz, s0, k0,
                                      abcd)
        self.register_buffer("prior_offset", offset)  # [K, width]
        # optional piecewise-constant prior on cubic cells (set by screening): [K, nx, ny, nz, width]
        self.prior_cell_m = None if prior_cell_m is None else float(prior_cell_m)
        if self.prior_cell_m is not None:
            if self.prior_cell_m <= 0:
                raise ValueError(f"prior_cell_m must be positive, got {prior_cell_m}")
            self.cell_shape = tuple(int(x) for x in np.maximum(np.ceil(((hi - lo) / self.prior_cell_m).numpy()), 1))
            self.register_buffer("cell_offset", offset[:, None, None, None, :].expand(
                (K,) + self.cell_shape + (offset.shape[-1],)).clone())
        self.embedding = nn.Embedding(K, self.embedding_dim, dtype=dtype) if self.embedding_dim else None
        if self.embedding is not None:
            nn.init.normal_(self.embedding.weight, std=0.01)
        self.head: nn.Linear | None = None

    # ------------------------------------------------------------ material-model protocol
    num_starts = 1  # one parameter set (rftwin.materials.protocol)
    lambda_hash = 1e-6  # weights of :meth:`penalty` (seed 000 eq. 13)
    lambda_gate = 1e-6

    def values(self) -> dict[str, np.ndarray]:
        """No per-object read-outs: a field's read-outs are maps (:mod:`rftwin.fields.maps`)."""
        return {}

    def penalty(self) -> torch.Tensor:
        """The field's regularisation [] with its ``lambda_hash`` / ``lambda_gate``."""
        return self.regularization(self.lambda_hash, self.lambda_gate)

    # ------------------------------------------------------------ subclass API
    encoding_dim = 0

    def encode(self, xn: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backbone(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def regularization(self, lambda_hash: float, lambda_gate: float) -> torch.Tensor:
        """Extra loss terms of the field (hash-embedding L2 and level-gate L1 for the hash grid); 0 here."""
        return torch.zeros((), dtype=self.dtype_, device=self.bbox_lo.device)

    def param_groups(self, lr_mlp: float, lr_hash: float) -> list[dict]:
        """Optimizer parameter groups: hash tables (``lr_hash``) and everything else (``lr_mlp``)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr_mlp, "name": "mlp"}]

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable) for :func:`rftwin.fields.io.save_field`."""
        return {"kind": self.kind, "num_objects": self.num_objects, "readout": self.readout.config(),
                "reference_frequency_hz": self.reference_frequency_hz, "fit_scattering": self.fit_scattering,
                "embedding_dim": self.embedding_dim, "prior_cell_m": self.prior_cell_m,
                "dtype": str(self.dtype_).replace("torch.", "")}

    # ------------------------------------------------------------ evaluation
    def _init_head(self, width: int) -> None:
        self.head = nn.Linear(width, self.readout.width, dtype=self.dtype_)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """World coordinates [P, 3] (m) -> [-1, 1]^3 (scene bounding box)."""
        return 2.0 * (x.to(self.bbox_lo.dtype) - self.bbox_lo) / (self.bbox_hi - self.bbox_lo) - 1.0

    def raw(self, x: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """Raw read-out inputs [P, width] at points x [P, 3] (m) on objects obj [P]."""
        if obj.numel() and (int(obj.min()) < 0 or int(obj.max()) >= self.num_objects):
            raise ValueError(f"object indices must lie in [0, {self.num_objects}), got "
                             f"[{int(obj.min())}, {int(obj.max())}]")
        feats = self.encode(self.normalise(x))
        if self.embedding is not None:
            feats = torch.cat([feats, self.embedding(obj)], -1)
        return self.head(self.backbone(feats)) + self.prior_at(x, obj)

    def prior_at(self, x: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """Raw prior offsets [P, width]: the object's, or its cell's after :meth:`set_cell_prior`."""
        if self.prior_cell_m is None:
            return self.prior_offset[obj]
        k = cell_keys(x.to(self.bbox_lo.dtype), obj, self.bbox_lo, self.prior_cell_m, self.cell_shape)
        return self.cell_offset[k[:, 0], k[:, 1], k[:, 2], k[:, 3]]

    def set_cell_prior(self, cells: CellPrior) -> None:
        """Start the field at screened per-cell materials (eps_r, sigma at the reference frequency; frequency
        exponents and S / K_xpd of the object priors). Needs ``prior_cell_m`` equal to the screening cell size."""
        if self.prior_cell_m is None or abs(self.prior_cell_m - cells.cell_m) > 1e-12:
            raise ValueError(f"field prior_cell_m={self.prior_cell_m} does not match the screening cell size "
                             f"{cells.cell_m}")
        if len(cells.keys) == 0:
            return
        k = torch.as_tensor(cells.keys, dtype=torch.long)
        obj = k[:, 0]
        eps = torch.as_tensor(cells.eps_r, dtype=self.dtype_)
        sig = torch.as_tensor(cells.sigma, dtype=self.dtype_)
        abcd = None
        coeffs = getattr(self.readout, "coefficients", None)
        if coeffs is not None:  # keep the object's exponents b, d
            bd = coeffs(self.prior_offset)[obj]
            lf = math.log(self.reference_frequency_hz / 1e9)
            abcd = torch.stack([eps * torch.exp(-bd[:, 1] * lf), bd[:, 1], sig * torch.exp(-bd[:, 3] * lf),
                                bd[:, 3]], -1)
        raw = self.readout.inverse(eps, sig, self.reference_frequency_hz, self.prior_scattering[obj],
                                   self.prior_xpd[obj], abcd)
        with torch.no_grad():
            self.cell_offset[k[:, 0], k[:, 1], k[:, 2], k[:, 3]] = raw

    def point_values(self, x: torch.Tensor, obj: torch.Tensor, frequency_hz) -> PointMaterials:
        """Materials at points x [P, 3] (m) on objects obj [P] for frequencies [F] (Hz)."""
        f = torch.as_tensor(frequency_hz, dtype=self.dtype_, device=self.bbox_lo.device).reshape(-1)
        pm = self.readout(self.raw(x, obj.to(torch.long)), f, self.fit_scattering)
        if not self.fit_scattering and bool((self.prior_scattering != 0).any() or (self.prior_xpd != 0).any()):
            pm.scattering, pm.xpd = self.prior_scattering[obj], self.prior_xpd[obj]
        return pm

    def forward(self, ps: PathSet, frequency_hz) -> MaterialValues:
        """Per-interaction MaterialValues [1, F, N, D] for the paths of ``ps`` (field queried only where an
        interaction exists; padding slots hold harmless neutral values)."""
        mask = ps.itype != NONE
        N, D = mask.shape
        pm = self.point_values(ps.point[mask], ps.obj[mask], frequency_hz)
        F = pm.eps_r.shape[0]
        dt = pm.eps_r.dtype

        def scatter(v: torch.Tensor, fill: float) -> torch.Tensor:
            lead = v.shape[:-1]
            out = torch.full(lead + (N, D), fill, dtype=dt, device=v.device)
            return out.masked_scatter(mask.expand(lead + (N, D)), v) if v.numel() else out

        eps = scatter(pm.eps_r, 2.0)[None]
        sig = scatter(pm.sigma, 0.0)[None]
        thick = self.thickness[ps.obj.clamp_min(0)][None, None]
        s = None if pm.scattering is None else scatter(pm.scattering[None], 0.0)[None]
        k = None if pm.xpd is None else scatter(pm.xpd[None], 0.0)[None]
        assert eps.shape == (1, F, N, D)
        return MaterialValues(eps, sig, thick, s, k, per_object=False)


def mlp(in_dim: int, width: int, depth: int, dtype: torch.dtype) -> nn.Sequential:
    """``depth`` hidden Linear + ReLU layers."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, width, dtype=dtype), nn.ReLU()]
        d = width
    return nn.Sequential(*layers)
