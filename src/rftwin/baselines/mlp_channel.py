"""Black-box MLP baseline (seed 000 §4.2): (tx position, rx position, frequency) -> positional encoding -> MLP
-> path gain (dB), trained directly on the measurements; it knows no geometry and no materials.

Inputs are normalised to [-1, 1] (positions by a bounding box, frequency by the training band), encoded with
[x, sin(2^k pi x), cos(2^k pi x)] for k < ``pe_frequencies``, and mapped by ``layers`` ReLU layers of ``width``
units to one output: the standardised gain (de-standardised with the training mean / std).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from rftwin.progress import track


@dataclass
class MLPChannelConfig:
    layers: int = 8  # seed 000's strongest baseline: 8 layers
    width: int = 256
    pe_frequencies: int = 6
    iterations: int = 2000
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0


class MLPChannel(nn.Module):
    """The baseline network; :meth:`predict_db` takes raw positions [M, 3] (m) and frequencies [M] (Hz)."""

    def __init__(self, cfg: MLPChannelConfig, pos_lo: np.ndarray, pos_hi: np.ndarray, f_lo_hz: float,
                 f_hi_hz: float, gain_mean_db: float, gain_std_db: float):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("pos_lo", torch.as_tensor(np.asarray(pos_lo, dtype=np.float32)))
        self.register_buffer("pos_hi", torch.as_tensor(np.asarray(pos_hi, dtype=np.float32)))
        self.f_lo, self.f_hi = float(f_lo_hz), float(f_hi_hz)
        self.mean, self.std = float(gain_mean_db), float(gain_std_db)
        in_dim = 7 * (1 + 2 * cfg.pe_frequencies)
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(cfg.layers):
            layers += [nn.Linear(d, cfg.width), nn.ReLU()]
            d = cfg.width
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def encode(self, tx: torch.Tensor, rx: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        span = torch.clamp(self.pos_hi - self.pos_lo, min=1e-6)
        ntx = 2 * (tx - self.pos_lo) / span - 1
        nrx = 2 * (rx - self.pos_lo) / span - 1
        nf = (2 * (f - self.f_lo) / max(self.f_hi - self.f_lo, 1.0) - 1).reshape(-1, 1) if self.f_hi > self.f_lo \
            else torch.zeros_like(f).reshape(-1, 1)
        x = torch.cat([ntx, nrx, nf], -1)
        if self.cfg.pe_frequencies == 0:
            return x
        k = (2.0 ** torch.arange(self.cfg.pe_frequencies, dtype=x.dtype)) * math.pi
        a = (x[..., None] * k).flatten(-2)
        return torch.cat([x, torch.sin(a), torch.cos(a)], -1)

    def forward(self, tx: torch.Tensor, rx: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return self.net(self.encode(tx, rx, f))[:, 0]

    def predict_db(self, tx_pos, rx_pos, frequency_hz) -> np.ndarray:
        """Predicted path gain [M] (dB)."""
        tx, rx, f = _tensors(tx_pos, rx_pos, frequency_hz)
        with torch.no_grad():
            return (self(tx, rx, f) * self.std + self.mean).numpy().astype(np.float64)

    def summary(self) -> dict:
        return {**asdict(self.cfg), "parameters": sum(p.numel() for p in self.parameters())}


def _tensors(tx_pos, rx_pos, frequency_hz):
    tx = torch.as_tensor(np.asarray(tx_pos, dtype=np.float32).reshape(-1, 3))
    rx = torch.as_tensor(np.asarray(rx_pos, dtype=np.float32).reshape(-1, 3))
    f = torch.as_tensor(np.broadcast_to(np.asarray(frequency_hz, dtype=np.float32), (tx.shape[0],)).copy())
    if rx.shape != tx.shape:
        raise ValueError(f"tx_pos {tuple(tx.shape)} and rx_pos {tuple(rx.shape)} must both be [M, 3]")
    return tx, rx, f


def fit_mlp_channel(tx_pos, rx_pos, frequency_hz, path_gain_db, cfg: MLPChannelConfig = MLPChannelConfig(),
                    bbox: tuple[np.ndarray, np.ndarray] | None = None, progress: bool = True) -> MLPChannel:
    """Train the baseline on M measurement rows (full batch Adam, MSE on standardised dB gain)."""
    tx, rx, f = _tensors(tx_pos, rx_pos, frequency_hz)
    y = torch.as_tensor(np.asarray(path_gain_db, dtype=np.float32).reshape(-1))
    if y.shape[0] != tx.shape[0]:
        raise ValueError(f"{y.shape[0]} gains for {tx.shape[0]} links")
    if not torch.isfinite(y).all():
        raise ValueError("path_gain_db contains non-finite values")
    if bbox is None:
        allp = torch.cat([tx, rx]).numpy()
        bbox = (allp.min(0), allp.max(0))
    torch.manual_seed(cfg.seed)
    std = float(y.std()) if y.numel() > 1 and float(y.std()) > 0 else 1.0
    model = MLPChannel(cfg, bbox[0], bbox[1], float(f.min()), float(f.max()), float(y.mean()), std)
    target = (y - model.mean) / model.std
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in track(range(cfg.iterations), "training MLP baseline", enabled=progress):
        opt.zero_grad(set_to_none=True)
        loss = ((model(tx, rx, f) - target) ** 2).mean()
        loss.backward()
        opt.step()
    return model
