"""A calibration problem: cached paths + measured targets -> simulated features for a material model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rftwin.physics.channel import path_gain, to_db
from rftwin.physics.engine import path_coefficients
from rftwin.trace.pathset import PathSet


@dataclass
class Targets:
    """Measured path gains of M rows: PathSet link index [M], frequency index [M] into ``frequencies_hz`` [F]."""

    link: torch.Tensor
    freq_index: torch.Tensor
    frequencies_hz: torch.Tensor
    path_gain_db: torch.Tensor
    weight: torch.Tensor | None = None

    @property
    def num(self) -> int:
        return int(self.link.shape[0])

    @classmethod
    def build(cls, link_index, frequency_hz, path_gain_db, dtype=torch.float64, weight=None) -> Targets:
        f = np.asarray(frequency_hz, dtype=np.float64)
        uf, fi = np.unique(f, return_inverse=True)
        return cls(torch.as_tensor(np.asarray(link_index), dtype=torch.long), torch.as_tensor(fi.reshape(-1)),
                   torch.as_tensor(uf, dtype=dtype), torch.as_tensor(np.asarray(path_gain_db), dtype=dtype),
                   None if weight is None else torch.as_tensor(np.asarray(weight), dtype=dtype))


def simulate_path_gain_db(ps: PathSet, model: torch.nn.Module, targets: Targets) -> torch.Tensor:
    """Simulated path gain [B, M] (dB) of the target rows under ``model`` (materials -> engine -> links)."""
    mv = model(targets.frequencies_hz)
    a = path_coefficients(ps, mv, targets.frequencies_hz, check=False)
    g = path_gain(a, ps.link, ps.num_links)  # [B, F, L]
    return to_db(g[:, targets.freq_index, targets.link])
