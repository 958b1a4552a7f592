"""NeRF^2-style baseline (seed 003's [29]): a neural radio-frequency radiance field learned from measurements.

After Zhao et al., "NeRF^2: Neural Radio-Frequency Radiance Fields" (MobiCom 2023), kept small for a CPU: an MLP
maps the Fourier encoding of a 3-D point and of the transmitter position to an attenuation density
delta(p) >= 0 and a re-radiated amplitude s(p) >= 0. A receiver gathers power along n_dir rays (Fibonacci
directions) with n_samples points each, volume-rendering style:
    P_rx = sum_rays sum_k T_k s_k^2 dt,  T_k = exp(-sum_{j<k} delta_j dt),
and the path gain in dB is trained by MSE on the M measured links. For CSI (MCS) every ray sample is a virtual
path with amplitude sqrt(T_k s_k^2 dt) and delay (|tx - p_k| + |p_k - rx|) / c. It has no geometry prior and
takes the transmitter position as input, so other transmitters are extrapolation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rftwin.physics.channel import subcarrier_frequencies
from rftwin.physics.slab import SPEED_OF_LIGHT


@dataclass
class Nerf2Config:
    width: int = 64
    depth: int = 3
    point_freqs: int = 6
    tx_freqs: int = 2
    n_dir: int = 48
    n_samples: int = 24
    iterations: int = 400
    batch: int = 32
    lr: float = 3e-3
    seed: int = 0


def fibonacci_directions(n: int) -> torch.Tensor:
    """[n, 3] unit vectors spread uniformly on the sphere."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5 ** 0.5) * i
    r = torch.sqrt(1 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], 1)


def _encode(x: torch.Tensor, nf: int) -> torch.Tensor:
    f = 2.0 ** torch.arange(nf, dtype=x.dtype) * math.pi
    xf = x[..., None] * f
    return torch.cat([x, torch.sin(xf).flatten(-2), torch.cos(xf).flatten(-2)], -1)


class Nerf2(nn.Module):
    def __init__(self, bbox_min: np.ndarray, bbox_max: np.ndarray, cfg: Nerf2Config | None = None):
        super().__init__()
        cfg = cfg or Nerf2Config()
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.register_buffer("lo", torch.as_tensor(np.asarray(bbox_min, dtype=np.float32)))
        self.register_buffer("hi", torch.as_tensor(np.asarray(bbox_max, dtype=np.float32)))
        d_in = 3 * (1 + 2 * cfg.point_freqs) + 3 * (1 + 2 * cfg.tx_freqs)
        layers: list[nn.Module] = []
        w = d_in
        for _ in range(cfg.depth):
            layers += [nn.Linear(w, cfg.width), nn.ReLU()]
            w = cfg.width
        layers.append(nn.Linear(w, 2))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("dirs", fibonacci_directions(cfg.n_dir).float())
        self.offset_db = nn.Parameter(torch.zeros(()))
        self.far = float(torch.linalg.norm(self.hi - self.lo))

    def _norm(self, p: torch.Tensor) -> torch.Tensor:
        return 2 * (p - self.lo) / (self.hi - self.lo).clamp_min(1e-6) - 1

    def samples(self, rx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Sample points [R, n_dir, n_samples, 3], distances from the receiver [n_samples], step dt (m)."""
        n = self.cfg.n_samples
        dt = self.far / n
        t = (torch.arange(n, dtype=torch.float32) + 0.5) * dt
        p = rx[:, None, None, :] + self.dirs[None, :, None, :] * t[None, None, :, None]
        return p, t, dt

    def field(self, p: torch.Tensor, tx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attenuation density and amplitude at points p [R, A, S, 3] for transmitters tx [R, 3]."""
        inside = ((p >= self.lo) & (p <= self.hi)).all(-1)
        x = torch.cat([_encode(self._norm(p), self.cfg.point_freqs),
                       _encode(self._norm(tx), self.cfg.tx_freqs)[:, None, None, :].expand(*p.shape[:3], -1)], -1)
        out = self.mlp(x)
        dens = nn.functional.softplus(out[..., 0]) * inside / self.far
        amp = torch.exp(out[..., 1].clamp(-20, 20) / 2) * inside
        return dens, amp

    def ray_powers(self, tx: torch.Tensor, rx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample received powers w [R, A, S] and the sample points [R, A, S, 3]."""
        p, _, dt = self.samples(rx)
        dens, amp = self.field(p, tx)
        trans = torch.exp(-torch.cumsum(dens * dt, -1) + dens * dt)  # exclusive cumulative attenuation
        return trans * amp ** 2 * dt, p

    def gain_db(self, tx: torch.Tensor, rx: torch.Tensor) -> torch.Tensor:
        w, _ = self.ray_powers(tx, rx)
        return 10 * torch.log10(w.sum((1, 2)).clamp_min(1e-30)) - 100.0 + self.offset_db * 10

    def fit(self, tx: np.ndarray, rx: np.ndarray, gain_db: np.ndarray) -> Nerf2:
        c = self.cfg
        txt = torch.as_tensor(np.asarray(tx, dtype=np.float32)).reshape(-1, 3).expand(len(rx), 3)
        rxt = torch.as_tensor(np.asarray(rx, dtype=np.float32))
        y = torch.as_tensor(np.asarray(gain_db, dtype=np.float32))
        with torch.no_grad():  # start at the measured mean level
            self.offset_db.fill_(float(y.mean() - self.gain_db(txt[:8], rxt[:8]).mean()) / 10)
        opt = torch.optim.Adam(self.parameters(), lr=c.lr)
        g = torch.Generator().manual_seed(c.seed)
        for _ in range(c.iterations):
            idx = torch.randperm(len(rxt), generator=g)[: c.batch]
            opt.zero_grad()
            loss = ((self.gain_db(txt[idx], rxt[idx]) - y[idx]) ** 2).mean()
            loss.backward()
            opt.step()
        return self

    @torch.no_grad()
    def predict_gain_db(self, tx: np.ndarray, rx: np.ndarray, chunk: int = 256) -> np.ndarray:
        txt = torch.as_tensor(np.asarray(tx, dtype=np.float32)).reshape(-1, 3).expand(len(rx), 3)
        rxt = torch.as_tensor(np.asarray(rx, dtype=np.float32))
        return torch.cat([self.gain_db(txt[s:s + chunk], rxt[s:s + chunk])
                          for s in range(0, len(rxt), chunk)]).double().numpy()

    @torch.no_grad()
    def predict_cfr(self, tx: np.ndarray, rx: np.ndarray, carrier_hz: float, bandwidth_hz: float,
                    num_subcarriers: int, chunk: int = 16) -> np.ndarray:
        """CFR [R, K] (complex) from the ray samples as virtual paths; ``tx`` [3] or one per receiver [R, 3]."""
        txt = torch.as_tensor(np.asarray(tx, dtype=np.float32)).reshape(-1, 3).expand(len(rx), 3)
        rxt = torch.as_tensor(np.asarray(rx, dtype=np.float32))
        fk = (carrier_hz + subcarrier_frequencies(bandwidth_hz, num_subcarriers)).to(torch.float64)
        out = []
        for s in range(0, len(rxt), chunk):
            w, p = self.ray_powers(txt[s:s + chunk], rxt[s:s + chunk])
            dist = (torch.linalg.norm(p - txt[s:s + chunk, None, None], dim=-1)
                    + torch.linalg.norm(p - rxt[s:s + chunk, None, None], dim=-1)).double()
            tau = (dist / SPEED_OF_LIGHT).flatten(1)  # [r, A*S]
            amp = torch.sqrt(w.double()).flatten(1)
            out.append(torch.einsum("rp,rpk->rk", amp.to(torch.complex128),
                                    torch.exp(-2j * math.pi * tau[..., None] * fk)))
        return torch.cat(out).numpy()


__all__ = ["Nerf2", "Nerf2Config", "fibonacci_directions"]
