"""Hash-grid material field (seed 000 §3.4, NEMF decoder): multi-resolution hash encoding (Müller et al. 2022)
in parallel with a sinusoidal encoding, concatenated, a residual MLP, learnable per-level gates (L1 sparsity) and
an L2 penalty on the hash embeddings; the power-law read-out (a, b, c, d) makes one field serve all
frequencies (eps_r = a f^b, sigma = c f^d, f in GHz).

The hash encoding is plain PyTorch (runs on CPU and CUDA); no fused CUDA kernel (tiny-cuda-nn) is used.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from rftwin.fields.base import MaterialField

# Spatial-hash primes of instant-NGP (first dimension 1)
_PRIMES = (1, 2654435761, 805459861)
_CORNERS = torch.tensor([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=torch.long)


class HashGridEncoding(nn.Module):
    """Multi-resolution hash encoding of points in [-1, 1]^3 -> [P, levels * features].

    Level l has resolution N_l = floor(base_resolution * growth^l) with growth chosen so that the last level has
    ``finest_resolution``; levels whose dense grid (N_l + 1)^3 fits in the table use direct indexing, finer ones
    the XOR spatial hash modulo 2^log2_table_size. Trilinear interpolation of the 8 corner embeddings; each level
    is scaled by a learnable gate g_l (initially 1).
    """

    def __init__(self, levels: int = 8, features: int = 2, log2_table_size: int = 15, base_resolution: int = 4,
                 finest_resolution: int = 128, gates: bool = True, dtype=torch.float64):
        super().__init__()
        self.levels, self.features, self.table_size = levels, features, 2 ** log2_table_size
        growth = math.exp((math.log(finest_resolution) - math.log(base_resolution)) / max(levels - 1, 1))
        self.resolutions = [int(math.floor(base_resolution * growth ** lv)) for lv in range(levels)]
        self.tables = nn.Parameter(torch.empty(levels, self.table_size, features, dtype=dtype).uniform_(-1e-4, 1e-4))
        self.gates = nn.Parameter(torch.ones(levels, dtype=dtype)) if gates else None
        self.out_dim = levels * features

    def hash_index(self, corner: torch.Tensor, res: int) -> torch.Tensor:
        """Table indices of integer grid corners [..., 3]."""
        if (res + 1) ** 3 <= self.table_size:
            return corner[..., 0] + (res + 1) * (corner[..., 1] + (res + 1) * corner[..., 2])
        h = corner[..., 0] * _PRIMES[0]
        h = torch.bitwise_xor(h, corner[..., 1] * _PRIMES[1])
        h = torch.bitwise_xor(h, corner[..., 2] * _PRIMES[2])
        return torch.remainder(h, self.table_size)

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        u = ((xn + 1.0) / 2.0).clamp(0.0, 1.0)
        corners = _CORNERS.to(xn.device)
        out = []
        for lv, res in enumerate(self.resolutions):
            pos = u * res
            p0 = torch.clamp(torch.floor(pos), max=res - 1).long()
            w = pos - p0  # [P, 3]
            c = p0[:, None, :] + corners[None]  # [P, 8, 3]
            wts = torch.where(corners[None].bool(), w[:, None, :], 1.0 - w[:, None, :]).prod(-1)  # [P, 8]
            emb = self.tables[lv][self.hash_index(c, res)]  # [P, 8, F]
            f = (wts[..., None] * emb).sum(1)
            out.append(f * self.gates[lv] if self.gates is not None else f)
        return torch.cat(out, -1)


class SinusoidalEncoding(nn.Module):
    """NeRF positional encoding [P, 3] -> [P, 3 + 6 L]: x, sin(2^k pi x), cos(2^k pi x), k < L."""

    def __init__(self, frequencies: int = 6):
        super().__init__()
        self.frequencies = frequencies
        self.out_dim = 3 + 6 * frequencies

    def forward(self, xn: torch.Tensor) -> torch.Tensor:
        if self.frequencies == 0:
            return xn
        k = (2.0 ** torch.arange(self.frequencies, dtype=xn.dtype, device=xn.device)) * math.pi
        a = (xn[..., None] * k).flatten(-2)
        return torch.cat([xn, torch.sin(a), torch.cos(a)], -1)


class ResidualMLP(nn.Module):
    """Linear(in, W) -> ReLU -> ``blocks`` x [h + Linear(ReLU(Linear(h)))] -> ReLU."""

    def __init__(self, in_dim: int, width: int, blocks: int, dtype=torch.float64):
        super().__init__()
        self.inp = nn.Linear(in_dim, width, dtype=dtype)
        self.blocks = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Linear(width, width, dtype=dtype), nn.ReLU(),
                                                  nn.Linear(width, width, dtype=dtype)) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return torch.relu(h)


class HashGridField(MaterialField):
    """[hash grid || sinusoidal] -> residual MLP -> read-out (default ``power_law``). See
    :class:`MaterialField` for the common arguments."""

    kind = "hashgrid"

    def __init__(self, bbox, thickness, prior_eps, prior_sigma, *, levels: int = 8, features: int = 2,
                 log2_table_size: int = 15, base_resolution: int = 4, finest_resolution: int = 128,
                 gates: bool = True, pe_frequencies: int = 4, width: int = 64, blocks: int = 2, seed: int = 0,
                 readout: str | dict = "power_law", **kw):
        super().__init__(bbox, thickness, prior_eps, prior_sigma, readout=readout, **kw)
        torch.manual_seed(seed)
        self.arch = dict(levels=levels, features=features, log2_table_size=log2_table_size,
                         base_resolution=base_resolution, finest_resolution=finest_resolution, gates=gates,
                         pe_frequencies=pe_frequencies, width=width, blocks=blocks, seed=seed)
        self.hash = HashGridEncoding(levels, features, log2_table_size, base_resolution, finest_resolution, gates,
                                     self.dtype_)
        self.sin = SinusoidalEncoding(pe_frequencies)
        self.encoding_dim = self.hash.out_dim + self.sin.out_dim
        self.net = ResidualMLP(self.encoding_dim + self.embedding_dim, width, blocks, self.dtype_)
        self._init_head(width)

    def encode(self, xn):
        return torch.cat([self.hash(xn), self.sin(xn)], -1)

    def backbone(self, feats):
        return self.net(feats)

    def hash_l2(self) -> torch.Tensor:
        """Mean squared hash embedding."""
        return (self.hash.tables ** 2).mean()

    def gate_l1(self) -> torch.Tensor:
        return self.hash.gates.abs().sum() if self.hash.gates is not None else torch.zeros((), dtype=self.dtype_)

    def regularization(self, lambda_hash: float, lambda_gate: float) -> torch.Tensor:
        """lambda_hash * mean(E^2) + lambda_gate * sum |g_l| (seed 000 eq. 13)."""
        return lambda_hash * self.hash_l2() + lambda_gate * self.gate_l1()

    def param_groups(self, lr_mlp: float, lr_hash: float) -> list[dict]:
        tables = [self.hash.tables]
        rest = [p for p in self.parameters() if p.requires_grad and p is not self.hash.tables]
        return [{"params": rest, "lr": lr_mlp, "name": "mlp"}, {"params": tables, "lr": lr_hash, "name": "hash"}]

    def config(self) -> dict:
        return {**super().config(), **self.arch}
