"""Channel quantities from path coefficients (pure torch): link sums, path power and gain, subcarrier grid
(delay moments, CFR and the other link features: :mod:`rftwin.physics.features`)."""
from __future__ import annotations

import torch


def link_sum(x: torch.Tensor, link: torch.Tensor, num_links: int) -> torch.Tensor:
    """Sum the last (path) dimension of ``x`` [..., N] into links: [..., L]."""
    out = torch.zeros(x.shape[:-1] + (num_links,), dtype=x.dtype, device=x.device)
    return out.index_add(-1, link, x)


def path_power(a: torch.Tensor) -> torch.Tensor:
    """|a|^2 averaged over antenna-pattern pairs: a [..., N, R, T] -> [..., N]."""
    return (a.real ** 2 + a.imag ** 2).mean(dim=(-2, -1))


def path_gain(a: torch.Tensor, link: torch.Tensor, num_links: int) -> torch.Tensor:
    """Linear path gain per link (incoherent sum of path powers) [..., L]."""
    return link_sum(path_power(a), link, num_links)


def to_db(x: torch.Tensor, floor: float = 1e-30) -> torch.Tensor:
    return 10.0 * torch.log10(torch.clamp(x, min=floor))


def subcarrier_frequencies(bandwidth_hz: float, num_subcarriers: int, dtype=torch.float64) -> torch.Tensor:
    """Baseband subcarrier offsets [K] (Hz), spacing W/K, centred on the carrier (Sionna's convention)."""
    df = bandwidth_hz / num_subcarriers
    start = -(num_subcarriers // 2) if num_subcarriers % 2 == 0 else -((num_subcarriers - 1) // 2)
    return (torch.arange(num_subcarriers, dtype=dtype) + start) * df
