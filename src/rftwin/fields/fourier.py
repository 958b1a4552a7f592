"""Fourier-feature material field (seed 003, eqs. 20-22): M(q) = A(f_Theta(z(q))).

z(q): normalised coordinates x in [-1, 1]^3 -> [x, sin(2 pi B x), cos(2 pi B x)] with B [M, 3] ~ N(0, scale^2)
(random Fourier features, Tancik et al.; fixed, seeded), optionally concatenated with a learnable per-object
embedding; f_Theta: ReLU MLP; A: the read-out (default ``exp``: eps_r = 1 + exp, sigma = exp, S and K_xpd =
sigmoid; ``power_law`` for multi-band data).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from rftwin.fields.base import MaterialField, mlp


class FourierFeatures(nn.Module):
    """[P, 3] -> [P, 3 + 2 M] random Fourier features with a fixed Gaussian matrix B [M, 3] (std ``scale``)."""

    def __init__(self, num_features: int = 64, scale: float = 4.0, seed: int = 0, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(num_features, 3, generator=g, dtype=dtype) * scale)
        self.out_dim = 3 + 2 * num_features

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        proj = 2.0 * math.pi * xn @ self.B.T
        return torch.cat([xn, torch.sin(proj), torch.cos(proj)], -1)


class FourierField(MaterialField):
    """Fourier features -> ``depth`` x ReLU(Linear(width)) -> read-out (see :class:`MaterialField` for the
    common arguments)."""

    kind = "fourier"

    def __init__(self, bbox, thickness, prior_eps, prior_sigma, *, num_features: int = 64, scale: float = 4.0,
                 width: int = 128, depth: int = 4, seed: int = 0, **kw):
        super().__init__(bbox, thickness, prior_eps, prior_sigma, **kw)
        torch.manual_seed(seed)
        self.arch = dict(num_features=num_features, scale=scale, width=width, depth=depth, seed=seed)
        self.features = FourierFeatures(num_features, scale, seed, self.dtype_)
        self.encoding_dim = self.features.out_dim
        self.net = mlp(self.encoding_dim + self.embedding_dim, width, depth, self.dtype_)
        self._init_head(width)

    def encode(self, xn):
        return self.features(xn)

    def backbone(self, feats):
        return self.net(feats)

    def config(self) -> dict:
        return {**super().config(), **self.arch}
