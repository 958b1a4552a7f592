"""Channel quantities from path coefficients (pure torch): gains, delay spread, CIR, OFDM CFR."""
from __future__ import annotations

import math

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


def delay_moments(a: torch.Tensor, tau_s: torch.Tensor, link: torch.Tensor, num_links: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Power-weighted mean delay and RMS delay spread [s] per link, [..., L] each (0 for links without paths)."""
    p = path_power(a)
    tau = tau_s.to(p.dtype)
    p0 = link_sum(p, link, num_links)
    p1 = link_sum(p * tau, link, num_links)
    p2 = link_sum(p * tau * tau, link, num_links)
    safe = torch.clamp(p0, min=1e-300)
    mean = p1 / safe
    var = torch.clamp(p2 / safe - mean * mean, min=0.0)
    return mean, torch.sqrt(var + 1e-40) * (p0 > 0)


def cir(a: torch.Tensor, tau_s: torch.Tensor, carrier_hz: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Baseband CIR taps a_b = a exp(-j 2 pi f_c tau) [..., N, R, T] and delays [N] (Sionna's ``cir``)."""
    phase = torch.exp(-2j * math.pi * carrier_hz * tau_s.to(torch.float64)).to(a.dtype)
    return a * phase[:, None, None], tau_s


def subcarrier_frequencies(bandwidth_hz: float, num_subcarriers: int, dtype=torch.float64) -> torch.Tensor:
    """Baseband subcarrier offsets [K] (Hz), spacing W/K, centred on the carrier (Sionna's convention)."""
    df = bandwidth_hz / num_subcarriers
    start = -(num_subcarriers // 2) if num_subcarriers % 2 == 0 else -((num_subcarriers - 1) // 2)
    return (torch.arange(num_subcarriers, dtype=dtype) + start) * df


def cfr(a: torch.Tensor, tau_s: torch.Tensor, link: torch.Tensor, num_links: int, carrier_hz: float,
        bandwidth_hz: float, num_subcarriers: int, normalize_delays: bool = False) -> torch.Tensor:
    """OFDM channel frequency response H [..., L, R, T, K] = sum_i a_i exp(-j 2 pi (f_c + f_k) tau_i).

    With ``normalize_delays`` the earliest path of each link is moved to tau = 0 (Sionna's default in cfr()).
    """
    tau = tau_s.to(torch.float64)
    if normalize_delays:
        tmin = torch.full((num_links,), float("inf"), dtype=tau.dtype).scatter_reduce(0, link, tau, "amin")
        tau = tau - tmin[link]
    ab, _ = cir(a, tau, carrier_hz)
    fk = subcarrier_frequencies(bandwidth_hz, num_subcarriers).to(tau.device)
    ph = torch.exp(-2j * math.pi * tau[:, None] * fk[None, :]).to(a.dtype)  # [N, K]
    contrib = ab[..., None] * ph[:, None, None, :]  # [..., N, R, T, K]
    lead = contrib.shape[:-4]
    out = torch.zeros(lead + (num_links,) + contrib.shape[-3:], dtype=contrib.dtype, device=contrib.device)
    return out.index_add(len(lead), link, contrib)
