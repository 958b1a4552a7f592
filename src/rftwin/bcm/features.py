"""Geometry features of receiver positions from a trace of the uncalibrated twin (seed 003, eq. 13).

omega(r) = [r, phi_path(r), phi_fade(r)]:
- phi_path: path structure: line of sight present, number of traced paths, lowest interaction order, the
  power-weighted mean interaction order and the fewest wall transmissions on any path (penetration count);
- phi_fade: small-scale fading severity from wideband samples of the uncalibrated twin (frequency-space
  duality): the spread of |H[n]|^2 over OFDM subcarriers (std in dB, amount of fading).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rftwin.pathset import NONE, REFRACTION, PathSet
from rftwin.physics.channel import link_sum, path_power
from rftwin.physics.engine import MaterialValues, path_coefficients
from rftwin.physics.features import cfr_from_paths

PATH_FEATURES = ("los", "log_num_paths", "min_order", "mean_order", "min_transmissions")
FADE_FEATURES = ("fade_std_db", "log_amount_of_fading")


@dataclass
class GeometryFeatures:
    """Per-link features [L, ...] of the links of one PathSet (receivers of a transmitter)."""

    position: np.ndarray  # [L, 3] receiver positions (m)
    tx_position: np.ndarray  # [L, 3] (m)
    path: np.ndarray  # [L, len(PATH_FEATURES)]
    fade: np.ndarray  # [L, len(FADE_FEATURES)]
    has_paths: np.ndarray  # [L] bool: the twin found at least one path

    @property
    def los(self) -> np.ndarray:
        return self.path[:, 0] > 0.5

    @property
    def distance_m(self) -> np.ndarray:
        return np.linalg.norm(self.position - self.tx_position, axis=1)

    def fused(self, position_dims: tuple[int, ...] | None = None) -> np.ndarray:
        """omega = [r, phi_path, phi_fade] [L, F] (unnormalised). ``position_dims``: coordinates of r to use
        (default: those that vary over the links)."""
        if position_dims is None:
            position_dims = tuple(i for i in range(3) if np.ptp(self.position[:, i]) > 1e-9)
        return np.concatenate([self.position[:, list(position_dims)], self.path, self.fade], axis=1)

    def subset(self, index) -> GeometryFeatures:
        return GeometryFeatures(self.position[index], self.tx_position[index], self.path[index], self.fade[index],
                                self.has_paths[index])


def path_structure(ps: PathSet, power: torch.Tensor) -> np.ndarray:
    """phi_path [L, 5] from the paths' interaction records and their powers ``power`` [N] (uncalibrated twin)."""
    L = ps.num_links
    order = (ps.itype != NONE).sum(1).to(torch.float64)  # [N]
    n_refr = (ps.itype == REFRACTION).sum(1).to(torch.float64)
    only_refr = ((ps.itype == REFRACTION) | (ps.itype == NONE)).all(1)
    count = torch.bincount(ps.link, minlength=L).to(torch.float64)
    big = float(ps.max_depth + 1)
    min_order = torch.full((L,), big, dtype=torch.float64).scatter_reduce(0, ps.link, order, "amin")
    los = (min_order == 0).to(torch.float64)
    pw = power.to(torch.float64)
    p0 = link_sum(pw, ps.link, L)
    mean_order = link_sum(pw * order, ps.link, L) / p0.clamp_min(1e-300)
    mean_order = torch.where(p0 > 0, mean_order, torch.full_like(mean_order, big))
    trans = torch.where(only_refr, n_refr, torch.full_like(n_refr, big))
    min_trans = torch.full((L,), big, dtype=torch.float64).scatter_reduce(0, ps.link, trans, "amin")
    return torch.stack([los, torch.log1p(count), min_order, mean_order, min_trans], 1).numpy()


def fading_statistics(H: torch.Tensor) -> np.ndarray:
    """phi_fade [L, 2] from wideband samples H [L, K] (complex): std of 10 log10 |H|^2 over the K samples (dB)
    and log(1 + AF), AF = Var(|H|^2) / E[|H|^2]^2 the amount of fading (0 for a single path, 1 for Rayleigh)."""
    p = (H.real ** 2 + H.imag ** 2).to(torch.float64)
    db = 10 * torch.log10(p.clamp_min(1e-30))
    mean = p.mean(1)
    af = p.var(1, unbiased=False) / mean.clamp_min(1e-300) ** 2
    ok = mean > 0
    return torch.stack([torch.where(ok, db.std(1), 0.0), torch.where(ok, torch.log1p(af), 0.0)], 1).numpy()


@torch.no_grad()
def geometry_features(ps: PathSet, materials: MaterialValues, carrier_hz: float, bandwidth_hz: float = 200e6,
                      num_subcarriers: int = 256, chunk_links: int = 256) -> GeometryFeatures:
    """Features of all links of ``ps`` under the (uncalibrated) ``materials`` ([1, 1, K] per object)."""
    a = path_coefficients(ps, materials, carrier_hz)[0, 0]  # [N, R, T]
    pw = path_power(a)
    fade = np.zeros((ps.num_links, len(FADE_FEATURES)))
    link = ps.link
    for s in range(0, ps.num_links, chunk_links):  # bound the [N, K] memory of the CFR
        e = min(s + chunk_links, ps.num_links)
        sel = (link >= s) & (link < e)
        H = cfr_from_paths(a[sel].movedim(0, -1), ps.tau_s[sel], link[sel] - s, e - s, carrier_hz, bandwidth_hz,
                           num_subcarriers)  # [R, T, links, K]
        fade[s:e] = fading_statistics(H.mean(dim=(0, 1)))
    has = torch.bincount(link, minlength=ps.num_links).numpy() > 0
    return GeometryFeatures(ps.rx_pos.numpy().copy(), ps.tx_pos.numpy().copy(), path_structure(ps, pw), fade, has)


class FeatureScaler:
    """Per-dimension standardisation (zero mean, unit std; constant dimensions left centred)."""

    def fit(self, x: np.ndarray) -> FeatureScaler:
        self.mean = x.mean(0)
        sd = x.std(0)
        self.std = np.where(sd > 1e-12, sd, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


__all__ = [
    "FADE_FEATURES",
    "PATH_FEATURES",
    "FeatureScaler",
    "GeometryFeatures",
    "fading_statistics",
    "geometry_features",
    "path_structure",
]
