"""Channel features (pure torch), for measured and predicted channels alike.

Every function works on *path-major* arrays, so traced paths (a PathSet with engine coefficients) and measured
multipath components (a channel sounder's MPC table) go through the same code:

- ``power`` [..., N]: linear power of each path / MPC (|a|^2, averaged over antenna pairs for traced paths;
  10^(power_db / 10) for MPCs). Leading dimensions (material batch, frequencies) broadcast through.
- ``tau_s`` [N] delays (s), ``link`` [N] link index (int64) of every path, ``num_links`` L.
- ``azimuth_deg`` [N] azimuth (deg) in the scene frame (counter-clockwise from +x, see :func:`direction_angles`).

Per-link outputs are [..., L]. Links without paths get the path-gain floor of ``to_db`` (-300 dB) and NaN for
the delay / angle / K-factor features (undefined). Everything is differentiable with respect
to ``power`` (and to complex amplitudes where these enter) except at the undefined points.

Wideband: :func:`cfr_from_paths` evaluates the OFDM channel frequency response on a subcarrier grid (bandwidth W,
K subcarriers centred on the carrier, spacing W/K, as in Sionna and seed 003), :func:`cir_from_cfr` its
band-limited CIR by the inverse DFT and :func:`cfr_delay_features` gain, mean delay and RMS delay spread of that
CIR (seed 003 eq. 23-24).
"""
from __future__ import annotations

import math

import torch

from rftwin.physics.channel import link_sum, subcarrier_frequencies, to_db

DEFAULT_BANDWIDTH_HZ = 200e6  # seed 003: W = 200 MHz
DEFAULT_NUM_SUBCARRIERS = 256  # seed 003: N = 256
_TINY = 1e-300
_NS = 1e9  # delay sums are kept in ns (keeps p d^2 far from float32 underflow)
_VAR_EPS_NS2 = 1e-22  # (1e-40 s^2) keeps the gradient of the spread finite where it is 0


# ------------------------------------------------------------------------------------------------ basics
def _segment_max(x: torch.Tensor, link: torch.Tensor, num_links: int) -> torch.Tensor:
    """Per-link maximum of ``x`` [..., N] -> [..., L] (-inf for links without paths); differentiable."""
    out = torch.full(x.shape[:-1] + (num_links,), -math.inf, dtype=x.dtype, device=x.device)
    idx = link.expand(x.shape)
    return out.scatter_reduce(-1, idx, x, "amax", include_self=True)


def _has_paths(link: torch.Tensor, num_links: int) -> torch.Tensor:
    return torch.bincount(link, minlength=num_links) > 0


def link_power(power: torch.Tensor, link: torch.Tensor, num_links: int) -> torch.Tensor:
    """Linear path gain per link [..., L]: the incoherent sum of the path powers ``power`` [..., N]."""
    return link_sum(power, link, num_links)


def path_gain_db(power: torch.Tensor, link: torch.Tensor, num_links: int) -> torch.Tensor:
    """Path gain per link (dB) [..., L], floored at -300 dB for links without paths."""
    return to_db(link_power(power, link, num_links))


def delay_reference(tau_s: torch.Tensor, link: torch.Tensor, num_links: int) -> torch.Tensor:
    """Earliest path delay of every link [L] (s, float64, no gradient; 0 for links without paths): the origin of
    :func:`delay_sums`, so that microseconds of absolute delay do not swamp nanosecond spreads (float32 too)."""
    tau = tau_s.detach().to(torch.float64)
    ref = torch.full((num_links,), math.inf, dtype=torch.float64, device=tau.device)
    ref = ref.scatter_reduce(0, link, tau, "amin")
    return torch.where(torch.isfinite(ref), ref, torch.zeros((), dtype=torch.float64, device=ref.device))


def delay_sums(power: torch.Tensor, tau_s: torch.Tensor, link: torch.Tensor, num_links: int,
               reference_s: torch.Tensor) -> torch.Tensor:
    """Per-link sums [..., L, 3] of p, p d and p d^2, d = (tau - reference_s[link]) in ns (``reference_s`` [L]
    from :func:`delay_reference`). Sums over chunks of paths add up, so links may be split across chunks."""
    d = ((tau_s.to(torch.float64) - reference_s[link]) * _NS).to(power.dtype)
    pd = power * d
    return torch.stack([link_sum(power, link, num_links), link_sum(pd, link, num_links),
                        link_sum(pd * d, link, num_links)], -1)


def delays_from_sums(sums: torch.Tensor, reference_s: torch.Tensor, empty: float = math.nan
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean delay and RMS delay spread (s) [...] from :func:`delay_sums` [..., 3] and their ``reference_s`` [...]
    (broadcast). Rows with no power (links without paths) get ``empty``: NaN (undefined) by default; an
    objective that needs finite values passes 0.0."""
    p0 = sums[..., 0]
    safe = torch.clamp(p0, min=torch.finfo(p0.dtype).tiny)
    m = sums[..., 1] / safe
    var = torch.clamp(sums[..., 2] / safe - m * m, min=0.0)
    mean = reference_s.to(p0.dtype) + m / _NS
    rms = torch.sqrt(var + _VAR_EPS_NS2) / _NS
    ok = p0 > 0
    fill = torch.full((), empty, dtype=p0.dtype, device=p0.device)
    return torch.where(ok, mean, fill), torch.where(ok, rms, fill)


def delay_moments(power: torch.Tensor, tau_s: torch.Tensor, link: torch.Tensor, num_links: int,
                  empty: float = math.nan) -> tuple[torch.Tensor, torch.Tensor]:
    """Power-weighted mean delay and RMS delay spread (s) per link, [..., L] each (``empty``, NaN by default, for
    links without paths). The one implementation of delay moments (calibration, prediction, evaluation, studies).

    tau_bar = sum p tau / sum p,  tau_rms = sqrt(sum p (tau - tau_bar)^2 / sum p), accumulated relative to each
    link's earliest path (:func:`delay_reference`), so absolute delays of microseconds keep their nanosecond
    spreads in float32 too.
    """
    ref = delay_reference(tau_s, link, num_links)
    return delays_from_sums(delay_sums(power, tau_s, link, num_links, ref), ref, empty)


def direction_angles(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Azimuth and elevation (deg) of unit direction vectors ``k`` [..., 3] in the scene frame.

    Azimuth: atan2(k_y, k_x) in (-180, 180], counter-clockwise from +x. Elevation: asin(k_z) in [-90, 90] above
    the horizontal plane (= 90 deg minus Sionna's zenith angle theta). For a PathSet, ``k_tx`` gives the angles
    of departure and ``k_rx`` (pointing from the receiver towards where the wave comes from) those of arrival.
    """
    k = k / torch.linalg.vector_norm(k, dim=-1, keepdim=True).clamp_min(1e-30)
    az = torch.rad2deg(torch.atan2(k[..., 1], k[..., 0]))
    el = torch.rad2deg(torch.asin(k[..., 2].clamp(-1.0, 1.0)))
    return az, el


def unit_vectors(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor) -> torch.Tensor:
    """Unit vectors [..., 3] from azimuth / elevation (deg), the inverse of :func:`direction_angles`."""
    az, el = torch.deg2rad(azimuth_deg), torch.deg2rad(elevation_deg)
    return torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], -1)


# ----------------------------------------------------------------------------------------- angular spread
def angular_spread_deg(power: torch.Tensor, azimuth_deg: torch.Tensor, link: torch.Tensor, num_links: int,
                       method: str = "circular") -> torch.Tensor:
    """Power-weighted azimuth angular spread (deg) per link [..., L] (NaN for links without paths).

    ``method="circular"`` (default, smooth): the circular standard deviation sqrt(-2 ln R) with the mean
    resultant length R = |sum p exp(j phi)| / sum p; equals the ordinary power-weighted standard deviation for
    small spreads and does not depend on where the circle is cut.
    ``method="3gpp"``: the minimum over all rotations of the circle of the power-weighted standard deviation of the
    azimuths (3GPP TR 38.901 Annex A.1 / TR 25.996), computed exactly from prefix sums over the sorted azimuths
    (the minimum is attained with a cut between two neighbouring paths); it omits the Annex's second wrap of the
    deviations around the mean, which only matters when paths lie more than 180 deg from the mean.
    """
    phi = torch.deg2rad(azimuth_deg.to(power.dtype))
    p0 = link_sum(power, link, num_links)
    ok = (p0 > 0) & _has_paths(link, num_links)
    safe = torch.clamp(p0, min=_TINY)
    if method == "circular":
        c = link_sum(power * torch.cos(phi), link, num_links) / safe
        s = link_sum(power * torch.sin(phi), link, num_links) / safe
        r = torch.sqrt(c * c + s * s + 1e-300).clamp(max=1.0)
        out = torch.sqrt(-2.0 * torch.log(r) + 1e-30)
    elif method == "3gpp":
        out = _rotation_min_spread(power, phi, link, num_links, safe)
    else:
        raise ValueError(f"unknown angular-spread method '{method}'; expected 'circular' or '3gpp'")
    return torch.where(ok, torch.rad2deg(out), torch.full_like(out, math.nan))


def _rotation_min_spread(power: torch.Tensor, phi: torch.Tensor, link: torch.Tensor, num_links: int,
                         p0: torch.Tensor) -> torch.Tensor:
    """min over cuts c of the weighted std (rad) when the c smallest azimuths of a link are moved up by 2 pi."""
    phi = torch.remainder(phi + math.pi, 2 * math.pi) - math.pi  # [-pi, pi)
    order = torch.argsort(phi)
    order = order[torch.argsort(link[order], stable=True)]  # by link, then azimuth
    lk, ph, p = link[order], phi[order], power[..., order]
    counts = torch.bincount(lk, minlength=num_links)
    start = (torch.cumsum(counts, 0) - counts)[lk]  # [N] first sorted position of each path's link

    def excl_prefix(x: torch.Tensor) -> torch.Tensor:  # sum over the earlier paths of the same link
        cs = torch.cumsum(x, -1) - x
        return cs - cs[..., start]

    c0, c1 = excl_prefix(p), excl_prefix(p * ph)
    a1 = link_sum(p * ph, lk, num_links)[..., lk]
    a2 = link_sum(p * ph * ph, lk, num_links)[..., lk]
    s0 = p0[..., lk]
    s1 = a1 + 2 * math.pi * c0
    s2 = a2 + 4 * math.pi * c1 + 4 * math.pi ** 2 * c0
    var = torch.clamp(s2 / s0 - (s1 / s0) ** 2, min=0.0)  # [..., N]: one candidate cut per path
    best = torch.full(var.shape[:-1] + (num_links,), math.inf, dtype=var.dtype, device=var.device)
    best = best.scatter_reduce(-1, lk.expand(var.shape), var, "amin", include_self=True)
    return torch.sqrt(torch.where(torch.isfinite(best), best, torch.zeros_like(best)) + 1e-30)


# ------------------------------------------------------------------------------------------------- K-factor
def k_factor_db(power: torch.Tensor, link: torch.Tensor, num_links: int, los: torch.Tensor | None = None
                ) -> torch.Tensor:
    """Rician K-factor (dB) per link [..., L]: K = P_ref / (P_total - P_ref).

    P_ref is the power of the line-of-sight path(s) (``los`` [N] bool) where a link has one, else (NLoS links,
    or ``los=None`` as for measured MPCs without a LoS flag) the power of the strongest path. +inf where all
    power is in P_ref (a single path), NaN for links without paths.
    """
    total = link_sum(power, link, num_links)
    ref = _segment_max(power, link, num_links)
    if los is not None:
        los = los.to(torch.bool)
        p_los = link_sum(power * los.to(power.dtype), link, num_links)
        has_los = link_sum(los.to(power.dtype), link, num_links) > 0
        ref = torch.where(has_los, p_los, ref)
    has = _has_paths(link, num_links) & (total > 0)
    ref = torch.where(has, ref, torch.ones_like(ref))
    rest = total - ref
    pos = rest > 1e-12 * total.clamp_min(_TINY)
    k = to_db(ref) - to_db(torch.where(pos, rest, torch.ones_like(rest)))
    k = torch.where(pos, k, torch.full_like(k, math.inf))
    return torch.where(has, k, torch.full_like(k, math.nan))


# -------------------------------------------------------------------------------------------------- wideband
def baseband_taps(amplitude: torch.Tensor, tau_s: torch.Tensor, carrier_hz: torch.Tensor | float,
                  link: torch.Tensor | None = None) -> torch.Tensor:
    """CIR taps a_b = a exp(-j 2 pi f_c tau) [..., N] of complex path amplitudes ``amplitude`` [..., N].

    ``carrier_hz`` is a scalar or per link [L] (then ``link`` [N] is needed). The tap delays are ``tau_s``.
    """
    tau = tau_s.to(torch.float64)
    fc = torch.as_tensor(carrier_hz, dtype=torch.float64, device=tau.device)
    if fc.dim() > 0:
        if link is None:
            raise ValueError("a per-link carrier_hz needs the path -> link index 'link'")
        fc = fc[link]
    return amplitude * torch.exp(-2j * math.pi * fc * tau).to(amplitude.dtype)


def cfr_from_paths(amplitude: torch.Tensor, tau_s: torch.Tensor, link: torch.Tensor, num_links: int,
                   carrier_hz: torch.Tensor | float, bandwidth_hz: float = DEFAULT_BANDWIDTH_HZ,
                   num_subcarriers: int = DEFAULT_NUM_SUBCARRIERS, normalize_delays: bool = False,
                   chunk_size: int = 8192) -> torch.Tensor:
    """OFDM channel frequency response H [..., L, K] = sum_i a_i exp(-j 2 pi (f_c + f_k) tau_i).

    ``amplitude`` [..., N] complex path coefficients (one antenna pair, without the delay phase, as returned by
    :func:`rftwin.physics.engine.path_coefficients`), ``tau_s`` [N] (s), ``carrier_hz`` scalar or per link [L],
    f_k the K subcarrier offsets (spacing W/K, centred on the carrier:
    :func:`rftwin.physics.channel.subcarrier_frequencies`). ``normalize_delays`` moves each link's earliest path
    to tau = 0 (for sounders that report delays relative to the first arrival). Paths are processed in chunks of
    ``chunk_size`` so that memory stays at O(chunk x K).
    """
    tau = tau_s.to(torch.float64)
    if normalize_delays and tau.numel():
        tmin = torch.full((num_links,), math.inf, dtype=tau.dtype, device=tau.device)
        tmin = tmin.scatter_reduce(0, link, tau, "amin")
        tau = tau - tmin[link]
    fk = subcarrier_frequencies(bandwidth_hz, num_subcarriers).to(tau.device)
    ab = baseband_taps(amplitude, tau, carrier_hz, link)
    cdtype = ab.dtype if ab.is_complex() else torch.complex128
    out = torch.zeros(ab.shape[:-1] + (num_links, num_subcarriers), dtype=cdtype, device=ab.device)
    n = tau.shape[0]
    for s in range(0, n, chunk_size):
        sl = slice(s, min(s + chunk_size, n))
        ph = torch.exp(-2j * math.pi * tau[sl, None] * fk[None, :]).to(cdtype)  # [n, K]
        out = out.index_add(out.dim() - 2, link[sl], ab[..., sl, None].to(cdtype) * ph)
    return out


def cir_lags(num_subcarriers: int, first_lag: int | None = None) -> torch.Tensor:
    """Lag indices l [K] of the band-limited CIR: ``first_lag`` .. first_lag + K - 1 (default -K/2, seed 003)."""
    start = -(num_subcarriers // 2) if first_lag is None else int(first_lag)
    return torch.arange(start, start + num_subcarriers, dtype=torch.int64)


def cir_from_cfr(cfr: torch.Tensor, first_lag: int | None = None, window: str | None = None) -> torch.Tensor:
    """Band-limited CIR h [..., K] from the CFR ``cfr`` [..., K] (subcarriers in increasing frequency, centred).

    h[l] = (1/K) sum_n w_n H[n] exp(j 2 pi n l / K) for n = -K/2 .. K/2 - 1 and the lags of :func:`cir_lags`
    (tap l sits at delay l / W). Seed 003 eq. 24 uses 1/sqrt(K); 1/K makes sum_l |h[l]|^2 the mean of |H|^2,
    i.e. the narrowband path gain of a flat channel. ``window`` (None or "hann") tapers the band to reduce the
    leakage of off-grid delays into far lags; the window is normalised to unit mean power, so the gain stays
    unbiased.
    """
    K = cfr.shape[-1]
    s = K // 2  # subcarrier n sits at array position n + s
    lags = cir_lags(K, first_lag).to(cfr.device)
    h = cfr.to(torch.complex128)
    if window is not None:
        h = h * _window(window, K, h.device)
    # (1/K) sum_m H[m - s] exp(j 2 pi (m - s) l / K) = exp(-j 2 pi s l / K) ifft(H)[l mod K]
    g = torch.fft.ifft(h, dim=-1)[..., torch.remainder(lags, K)]
    out = g * torch.exp(-2j * math.pi * s * lags.to(torch.float64) / K)
    return out.to(cfr.dtype if cfr.is_complex() else torch.complex128)


def _window(name: str, K: int, device) -> torch.Tensor:
    if name == "hann":
        w = torch.hann_window(K, periodic=False, dtype=torch.float64, device=device)
    else:
        raise ValueError(f"unknown window '{name}'; expected None or 'hann'")
    return w / torch.sqrt(torch.mean(w * w))


def cfr_delay_features(cfr: torch.Tensor, bandwidth_hz: float, first_lag: int | None = None,
                       window: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gain (linear), mean delay (s) and RMS delay spread (s) of the band-limited CIR of ``cfr`` [..., K].

    Seed 003 eq. 23-24: p = sum_l |h[l]|^2, tau_bar = sum_l (l / W) |h[l]|^2 / p,
    tau_rms = sqrt(sum_l (l / W - tau_bar)^2 |h[l]|^2 / p). Delays are those of the lag window
    [first_lag / W, (first_lag + K) / W): later energy wraps around (aliasing). Without a window an off-grid path
    leaks power into all lags, which adds roughly sqrt(K) / (pi W) to the spread; ``window="hann"`` removes most
    of that. Shapes [...] each; NaN delays where the CFR is zero.
    """
    h = cir_from_cfr(cfr, first_lag, window)
    p = h.real ** 2 + h.imag ** 2  # [..., K]
    t = cir_lags(cfr.shape[-1], first_lag).to(device=p.device, dtype=p.dtype) / bandwidth_hz
    p0 = p.sum(-1)
    safe = p0.clamp_min(_TINY)
    mean = (p * t).sum(-1) / safe
    var = (p * (t - mean[..., None]) ** 2).sum(-1) / safe
    rms = torch.sqrt(var.clamp_min(0.0) + 1e-40)
    nan = torch.full_like(mean, math.nan)
    return p0, torch.where(p0 > 0, mean, nan), torch.where(p0 > 0, rms, nan)


def cfr_nmse_db(predicted: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """Normalised MSE (dB) of complex CFRs [..., K]: 10 log10(sum |H_p - H_m|^2 / sum |H_m|^2) -> [...]."""
    err = (predicted - measured).abs().pow(2).sum(-1)
    ref = measured.abs().pow(2).sum(-1)
    return to_db(err / ref.clamp_min(_TINY))


__all__ = ["DEFAULT_BANDWIDTH_HZ", "DEFAULT_NUM_SUBCARRIERS", "angular_spread_deg", "baseband_taps",
           "cfr_delay_features", "cfr_from_paths", "cfr_nmse_db", "cir_from_cfr", "cir_lags", "delay_moments",
           "delay_reference", "delay_sums", "delays_from_sums",
           "direction_angles", "k_factor_db", "link_power", "path_gain_db", "unit_vectors"]
