"""Beam selection on a (calibrated) twin: per-beam gains from cached paths -> best pair -> SNR -> MCS -> throughput
(the seed-002 section 6.8 pipeline, after SpaceBeam).

For every link and every (tx beam, rx beam) pair of two codebooks the effective gain
G = sum_paths |w_rx^H H_p w_tx|^2 comes from one trace (:func:`rftwin.physics.arrays.beam_gains`); the best pair
maximises G; received power P = P_tx + G (dB); SNR = P - (-174 dBm/Hz + 10 log10 B + NF); the MCS is the fastest
one whose SNR threshold is met; throughput = PHY rate x MAC efficiency.

The default MCS table is IEEE 802.11ad (DMG control MCS 0 and single-carrier MCS 1-12): PHY rates of the standard
and SNR thresholds = receiver sensitivity of the standard (802.11ad-2012 Table 21-3: -78, -68, -66, -65, -64,
-62, -63, -62, -61, -59, -55, -54, -53 dBm) minus the noise floor of the default noise model (2.16 GHz, NF 10 dB:
-70.65 dBm). A table file overrides it (:func:`rftwin.data.beam_files.read_mcs_table`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rftwin.pathset import PathSet
from rftwin.physics.arrays import ArraySpec, beam_gains
from rftwin.physics.codebook import dft_weights, expand_patterns, normalize_weights, steering_weights, unit_vectors
from rftwin.physics.engine import path_coefficients
from rftwin.scene.load import TwinScene
from rftwin.trace.arrays import array_geometry, with_arrays
from rftwin.trace.tracer import SolverSettings, trace
from rftwin.twin_io import material_values, unique_links

_SENSITIVITY_80211AD_DBM = (-78.0, -68.0, -66.0, -65.0, -64.0, -62.0, -63.0, -62.0, -61.0, -59.0, -55.0, -54.0,
                            -53.0)
_RATE_80211AD_BPS = (27.5e6, 385e6, 770e6, 962.5e6, 1155e6, 1251.25e6, 1540e6, 1925e6, 2310e6, 2502.5e6, 3080e6,
                     3850e6, 4620e6)
_NOISE_FLOOR_80211AD_DBM = -174.0 + 10.0 * math.log10(2.16e9) + 10.0


@dataclass(frozen=True)
class McsTable:
    """MCS index, minimum SNR (dB) and PHY rate (bit/s) per entry."""

    mcs: tuple[int, ...]
    snr_db: tuple[float, ...]
    phy_rate_bps: tuple[float, ...]

    @classmethod
    def ieee_80211ad(cls) -> McsTable:
        return cls(tuple(range(13)), tuple(s - _NOISE_FLOOR_80211AD_DBM for s in _SENSITIVITY_80211AD_DBM),
                   _RATE_80211AD_BPS)

    @classmethod
    def from_file(cls, path: str | Path) -> McsTable:
        from rftwin.data.beam_files import read_mcs_table  # noqa: PLC0415

        m, s, r = read_mcs_table(path)
        return cls(tuple(int(x) for x in m), tuple(float(x) for x in s), tuple(float(x) for x in r))

    def select(self, snr_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(MCS index, PHY rate) of the fastest entry whose threshold ``snr_db`` meets; (-1, 0) below all."""
        snr = np.asarray(snr_db, dtype=np.float64)
        thr, rate = np.asarray(self.snr_db), np.asarray(self.phy_rate_bps)
        ok = snr[..., None] >= thr  # [..., K]
        r = np.where(ok, rate, 0.0)
        best = np.argmax(r, axis=-1)
        has = ok.any(-1)
        return np.where(has, np.asarray(self.mcs)[best], -1), np.where(has, r.max(-1, initial=0.0), 0.0)


@dataclass(frozen=True)
class LinkBudget:
    """Transmit power (used where a link has no ``tx_power_dbm``), noise bandwidth, receiver noise figure and
    the MAC efficiency (throughput / PHY rate)."""

    tx_power_dbm: float = 10.0
    noise_bandwidth_hz: float = 2.16e9
    noise_figure_db: float = 10.0
    mac_efficiency: float = 0.65
    mcs: McsTable = field(default_factory=McsTable.ieee_80211ad)

    def __post_init__(self) -> None:
        if not (self.noise_bandwidth_hz > 0 and math.isfinite(self.noise_bandwidth_hz)):
            raise ValueError(f"noise bandwidth must be a positive number of Hz, got {self.noise_bandwidth_hz}")
        if not (0 < self.mac_efficiency <= 1):
            raise ValueError(f"MAC efficiency must lie in (0, 1], got {self.mac_efficiency}")
        if not math.isfinite(self.noise_figure_db) or not math.isfinite(self.tx_power_dbm):
            raise ValueError("noise figure and transmit power must be finite")

    @property
    def noise_power_dbm(self) -> float:
        return -174.0 + 10.0 * math.log10(self.noise_bandwidth_hz) + self.noise_figure_db


@dataclass(frozen=True)
class CodebookSpec:
    """A codebook: ``kind`` "dft" (``oversampling``), "directions" (azimuth / elevation in radians, world frame)
    or "weights" (complex [B, ports] or spatial [B, M], normalised to unit norm per beam)."""

    kind: str = "dft"
    oversampling: int = 1
    azimuth_rad: tuple[float, ...] = ()
    elevation_rad: tuple[float, ...] = ()
    weights: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("dft", "directions", "weights"):
            raise ValueError(f"codebook kind must be dft, directions or weights, not {self.kind!r}")
        if self.kind == "dft" and (isinstance(self.oversampling, bool) or not isinstance(self.oversampling, int)
                                   or self.oversampling < 1):
            raise ValueError(f"DFT oversampling must be an integer >= 1, got {self.oversampling!r}")


def codebook_weights(cb: CodebookSpec, spec: ArraySpec, frequency_hz: float, side: str) -> torch.Tensor:
    """Port weights [B, P x M] (unit norm) of codebook ``cb`` on array ``spec`` (y = w_rx^H H w_tx)."""
    geo = array_geometry(spec, frequency_hz)
    P, M = spec.num_patterns, spec.num_elements
    if cb.kind == "dft":
        w = dft_weights(torch.as_tensor(geo["normalized"]), spec.num_rows, spec.num_cols, spec.vertical_spacing,
                        spec.horizontal_spacing, cb.oversampling, side)
        return expand_patterns(w, P)
    if cb.kind == "directions":
        d = unit_vectors(torch.tensor(cb.azimuth_rad), torch.tensor(cb.elevation_rad))
        w = steering_weights(torch.as_tensor(geo["positions_m"]), d, frequency_hz, side)
        return expand_patterns(w, P)
    w = torch.as_tensor(np.asarray(cb.weights), dtype=torch.complex128)
    if w.shape[-1] == P * M:
        return normalize_weights(w)
    if P > 1 and w.shape[-1] == M:
        return normalize_weights(expand_patterns(w, P))
    raise ValueError(f"{cb.source or 'codebook'}: beams have {w.shape[-1]} weights, the {side} array has "
                     f"{P * M} ports ({P} pattern(s) x {M} element(s))"
                     + (f" or {M} spatial weights" if P > 1 else ""))


@dataclass
class BeamGains:
    """Beam-pair gains of every row: ``gain_db`` [rows, Br, Bt] (-inf where a link has no path), the PathSet with
    its arrays, and the codebooks' port weights per distinct frequency."""

    gain_db: np.ndarray
    pathset: PathSet
    frequencies_hz: np.ndarray
    row_frequency: np.ndarray
    num_paths: np.ndarray


def beam_pair_gains(twin: TwinScene, doc: dict | None, tx_pos: np.ndarray, rx_pos: np.ndarray,
                    frequency_hz: np.ndarray, tx_array: ArraySpec, rx_array: ArraySpec,
                    tx_codebook: CodebookSpec, rx_codebook: CodebookSpec, settings: SolverSettings | None = None,
                    combine: str = "incoherent", cache_dir=None, progress: bool = True,
                    pathset: PathSet | None = None) -> BeamGains:
    """Trace every distinct link once (or use ``pathset``, traced for the distinct links of ``tx_pos``/``rx_pos``
    in :func:`rftwin.twin_io.unique_links` order), put the arrays on it and evaluate every beam pair per row.
    Array spacings are resolved at the lowest row frequency unless the specs fix a spacing frequency."""
    utx, urx, row_link = unique_links(tx_pos, rx_pos)
    uf, row_f = np.unique(np.asarray(frequency_hz, dtype=np.float64), return_inverse=True)
    f_spacing = float(uf.min())
    tx_array = tx_array if tx_array.spacing_frequency_hz else replace(tx_array, spacing_frequency_hz=f_spacing)
    rx_array = rx_array if rx_array.spacing_frequency_hz else replace(rx_array, spacing_frequency_hz=f_spacing)
    mv = material_values(twin, doc, uf)
    settings = settings or SolverSettings()
    if mv.scattering is not None and not settings.diffuse_reflection:
        settings = replace(settings, diffuse_reflection=True)
    ps = pathset if pathset is not None else trace(twin, utx, urx, settings, cache_dir=cache_dir, progress=progress)
    psa = with_arrays(ps, tx_array, rx_array, f_spacing)
    L = psa.num_links
    gains = np.empty((len(uf), L, 0, 0))
    with torch.no_grad():
        a = path_coefficients(psa, mv, torch.as_tensor(uf))[0]  # [F, N, R, T]
        out = []
        for fi, f in enumerate(uf):
            wt = codebook_weights(tx_codebook, tx_array, float(f), "tx")
            wr = codebook_weights(rx_codebook, rx_array, float(f), "rx")
            g = beam_gains(psa, a[fi], float(f), wt, wr, combine=combine)
            out.append(10.0 * np.log10(np.maximum(g.numpy(), 1e-300)))
        gains = np.stack(out)  # [F, L, Br, Bt]
    npaths = psa.paths_per_link().numpy()
    g_rows = gains[row_f.reshape(-1), row_link]
    g_rows[npaths[row_link] == 0] = -np.inf
    return BeamGains(gain_db=g_rows, pathset=psa, frequencies_hz=uf, row_frequency=row_f.reshape(-1),
                     num_paths=npaths[row_link])


def best_pairs(gain_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tx beam [rows], rx beam [rows]) maximising ``gain_db`` [rows, Br, Bt]."""
    rows, Br, Bt = gain_db.shape
    flat = np.argmax(gain_db.reshape(rows, -1), axis=1)
    return flat % Bt, flat // Bt


def link_throughput(gain_db: np.ndarray, tx_power_dbm: np.ndarray, budget: LinkBudget) -> dict[str, np.ndarray]:
    """Received power, SNR, MCS, PHY rate and throughput of rows with effective gains ``gain_db`` [rows]."""
    p_rx = np.asarray(tx_power_dbm, dtype=np.float64) + gain_db
    snr = p_rx - budget.noise_power_dbm
    mcs, rate = budget.mcs.select(snr)
    return {"rx_power_dbm": p_rx, "snr_db": snr, "mcs": mcs, "phy_rate_bps": rate,
            "throughput_bps": rate * budget.mac_efficiency}


def select_beams(bg: BeamGains | np.ndarray, tx_power_dbm: np.ndarray | None, budget: LinkBudget
                 ) -> pd.DataFrame:
    """Best beam pair per row and its link budget: columns ``tx_beam``, ``rx_beam``, ``beam_gain_db``,
    ``rx_power_dbm``, ``snr_db``, ``mcs`` (-1: no MCS reached), ``phy_rate_bps``, ``throughput_bps``."""
    g = bg.gain_db if isinstance(bg, BeamGains) else np.asarray(bg)
    rows = g.shape[0]
    pt = np.full(rows, budget.tx_power_dbm) if tx_power_dbm is None else np.asarray(tx_power_dbm, np.float64)
    bt, br = best_pairs(g)
    best = g[np.arange(rows), br, bt]
    out = {"tx_beam": bt, "rx_beam": br, "beam_gain_db": best}
    out.update(link_throughput(best, pt, budget))
    df = pd.DataFrame(out)
    none = ~np.isfinite(best)
    df.loc[none, ["tx_beam", "rx_beam"]] = -1
    df.loc[none, "beam_gain_db"] = np.nan
    return df


def throughput_of_choice(truth_gain_db: np.ndarray, tx_beam: np.ndarray, rx_beam: np.ndarray,
                         tx_power_dbm: np.ndarray | None, budget: LinkBudget) -> dict[str, np.ndarray]:
    """Link budget when the beams chosen on one twin are used in another (``truth_gain_db`` [rows, Br, Bt])."""
    rows = truth_gain_db.shape[0]
    pt = np.full(rows, budget.tx_power_dbm) if tx_power_dbm is None else np.asarray(tx_power_dbm, np.float64)
    tb, rb = np.asarray(tx_beam), np.asarray(rx_beam)
    ok = (tb >= 0) & (rb >= 0)
    g = np.where(ok, truth_gain_db[np.arange(rows), np.maximum(rb, 0), np.maximum(tb, 0)], -np.inf)
    return link_throughput(g, pt, budget)


__all__ = ["BeamGains", "CodebookSpec", "LinkBudget", "McsTable", "beam_pair_gains", "best_pairs",
           "codebook_weights", "link_throughput", "select_beams", "throughput_of_choice"]
