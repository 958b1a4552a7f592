"""Calibration losses over measured links (pure torch). Inputs [B, M]; outputs [B] (one value per start)."""
from __future__ import annotations

import torch

LOSSES = ("mse_db", "nae")


def db_offset(sim_db: torch.Tensor, meas_db: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Closed-form global gain offset [B] (dB) minimising the weighted dB MSE of sim + offset vs measured."""
    w = torch.ones_like(meas_db) if weight is None else weight.expand_as(meas_db)
    return ((meas_db - sim_db) * w).sum(-1) / w.sum(-1)


def mse_db(sim_db: torch.Tensor, meas_db: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    r = sim_db - meas_db
    return (r * r).mean(-1) if weight is None else (weight * r * r).sum(-1) / weight.sum(-1).clamp_min(1e-30)


def nae(sim_lin: torch.Tensor, meas_lin: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised absolute error on linear power (seed 004): mean |sim - meas| / meas."""
    e = (sim_lin - meas_lin).abs() / meas_lin
    return e.mean(-1) if weight is None else (weight * e).sum(-1) / weight.sum(-1).clamp_min(1e-30)
