"""Path-loss baselines: a log-distance fit on measured links and 3GPP TR 38.901 (Table 7.4.1-1) models.

All functions are vectorised over links; distances in m, heights in m, frequencies in Hz, gains in dB
(path gain = -path loss).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SPEED_OF_LIGHT = 299_792_458.0
#: scenario name -> (TR 38.901 name, shadow-fading std LoS, NLoS [dB])
SCENARIOS = {"inh-office": ("InH-Office", 3.0, 8.03), "umi-street-canyon": ("UMi-Street Canyon", 4.0, 7.82)}
_ALIASES = {"inh": "inh-office", "inh-office": "inh-office", "indoor": "inh-office", "office": "inh-office",
            "umi": "umi-street-canyon", "umi-street-canyon": "umi-street-canyon", "umi-sc": "umi-street-canyon",
            "street-canyon": "umi-street-canyon"}


def scenario_name(name: str) -> str:
    """Canonical scenario key (``inh-office`` or ``umi-street-canyon``) of ``name`` (case/underscore tolerant)."""
    key = _ALIASES.get(str(name).strip().lower().replace("_", "-").replace(" ", "-"))
    if key is None:
        raise ValueError(f"unknown 3GPP scenario '{name}'; expected one of: {', '.join(SCENARIOS)} "
                         "(or inh, umi)")
    return key


def distances(tx_pos: np.ndarray, rx_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3-D and horizontal distances [M] (m) of links with positions [M, 3]."""
    d = np.asarray(rx_pos, dtype=float) - np.asarray(tx_pos, dtype=float)
    return np.linalg.norm(d, axis=1), np.linalg.norm(d[:, :2], axis=1)


# ------------------------------------------------------------------------------------------ log-distance
@dataclass(frozen=True)
class LogDistanceFit:
    """``g(d, f) = g0_db - 10 n log10(d / 1 m) - 10 m_f log10(f / f0)``: intercept g0 at 1 m and ``f0`` (dB),
    path-loss exponent n, frequency exponent m_f (fitted with several frequencies, else 2 as in free space),
    residual std (dB), number of training links, minimum distance used (m)."""

    g0_db: float
    exponent: float
    freq_exponent: float
    f0_hz: float
    sigma_db: float
    n_train: int
    min_distance_m: float = 0.1

    def predict(self, tx_pos: np.ndarray, rx_pos: np.ndarray, frequency_hz) -> np.ndarray:
        """Path gain [M] (dB)."""
        d3, _ = distances(tx_pos, rx_pos)
        d = np.maximum(d3, self.min_distance_m)
        f = np.broadcast_to(np.asarray(frequency_hz, dtype=float), d.shape)
        return self.g0_db - 10 * self.exponent * np.log10(d) - 10 * self.freq_exponent * np.log10(f / self.f0_hz)

    def as_dict(self) -> dict:
        return asdict(self)


def fit_log_distance(tx_pos: np.ndarray, rx_pos: np.ndarray, frequency_hz, path_gain_db,
                     min_distance_m: float = 0.1) -> LogDistanceFit:
    """Least-squares log-distance fit to measured path gains (finite entries only).

    With one frequency (or frequencies spanning less than 1 %) the frequency exponent is fixed to 2 (Friis).
    Raises ValueError with fewer than two usable links or a single distance.
    """
    d3, _ = distances(tx_pos, rx_pos)
    g = np.asarray(path_gain_db, dtype=float)
    f = np.broadcast_to(np.asarray(frequency_hz, dtype=float), g.shape)
    ok = np.isfinite(g) & np.isfinite(d3) & np.isfinite(f)
    if ok.sum() < 2:
        raise ValueError(f"a log-distance fit needs at least 2 measured links, found {int(ok.sum())}")
    ld = np.log10(np.maximum(d3[ok], min_distance_m))
    if np.ptp(ld) < 1e-6:
        raise ValueError("a log-distance fit needs links at different distances")
    f0 = float(np.exp(np.mean(np.log(f[ok]))))
    lf = np.log10(f[ok] / f0)
    several = np.ptp(f[ok]) > 0.01 * f0 and ok.sum() >= 3
    if several:
        A = np.stack([np.ones_like(ld), -10 * ld, -10 * lf], axis=1)
        coef, *_ = np.linalg.lstsq(A, g[ok], rcond=None)
        g0, n, mf = (float(c) for c in coef)
    else:
        mf = 2.0
        A = np.stack([np.ones_like(ld), -10 * ld], axis=1)
        coef, *_ = np.linalg.lstsq(A, g[ok] + 10 * mf * lf, rcond=None)
        g0, n = (float(c) for c in coef)
    fit = LogDistanceFit(g0, n, mf, f0, 0.0, int(ok.sum()), min_distance_m)
    res = g[ok] - fit.predict(np.asarray(tx_pos)[ok], np.asarray(rx_pos)[ok], f[ok])
    dof = max(int(ok.sum()) - (3 if several else 2), 1)
    return LogDistanceFit(g0, n, mf, f0, float(np.sqrt(np.sum(res**2) / dof)), int(ok.sum()), min_distance_m)


# ---------------------------------------------------------------------------------------- 3GPP TR 38.901
def _inh_office(d3: np.ndarray, fc_ghz: np.ndarray, los: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """InH-Office path loss (dB) and validity (1 m <= d3D <= 150 m LoS, <= 86 m NLoS)."""
    d = np.clip(d3, 1.0, None)
    pl_los = 32.4 + 17.3 * np.log10(d) + 20.0 * np.log10(fc_ghz)
    pl_nlos = np.maximum(pl_los, 38.3 * np.log10(d) + 17.30 + 24.9 * np.log10(fc_ghz))
    valid = (d3 >= 1.0) & np.where(los, d3 <= 150.0, d3 <= 86.0)
    return np.where(los, pl_los, pl_nlos), valid


def _umi_street_canyon(d3: np.ndarray, d2: np.ndarray, fc_ghz: np.ndarray, h_bs: np.ndarray, h_ut: np.ndarray,
                       los: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UMi-Street Canyon path loss (dB) and validity (10 m <= d2D <= 5 km, 1.5 m <= h_UT <= 22.5 m)."""
    h_e = 1.0
    hb = np.maximum(h_bs - h_e, 1e-3)
    hu = np.maximum(h_ut - h_e, 1e-3)
    d_bp = 4.0 * hb * hu * fc_ghz * 1e9 / SPEED_OF_LIGHT  # breakpoint distance d'_BP
    d2c = np.clip(d2, 10.0, None)
    d3c = np.sqrt(d2c**2 + (h_bs - h_ut) ** 2)
    d3c = np.maximum(d3c, d3)
    pl1 = 32.4 + 21.0 * np.log10(d3c) + 20.0 * np.log10(fc_ghz)
    pl2 = (32.4 + 40.0 * np.log10(d3c) + 20.0 * np.log10(fc_ghz)
           - 9.5 * np.log10(d_bp**2 + (h_bs - h_ut) ** 2))
    pl_los = np.where(d2c <= d_bp, pl1, pl2)
    pl_nlos_p = 35.3 * np.log10(d3c) + 22.4 + 21.3 * np.log10(fc_ghz) - 0.3 * (h_ut - 1.5)
    pl_nlos = np.maximum(pl_los, pl_nlos_p)
    valid = (d2 >= 10.0) & (d2 <= 5000.0) & (h_ut >= 1.5) & (h_ut <= 22.5)
    return np.where(los, pl_los, pl_nlos), valid


def tr38901_path_gain_db(tx_pos: np.ndarray, rx_pos: np.ndarray, frequency_hz, los, scenario: str,
                         ground_z_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """3GPP TR 38.901 V17 Table 7.4.1-1 path gain [M] (dB, = -PL) and a validity mask [M].

    ``los`` [M] bool (e.g. whether the traced paths have a line-of-sight component); ``scenario``
    ``inh-office`` or ``umi-street-canyon``. For UMi the higher end of a link is the base station and heights
    are measured from ``ground_z_m``. Outside the model's distance range the formula is evaluated at the
    nearest valid distance (1 m InH, 10 m UMi) and the link is flagged invalid. Frequencies are used as given
    (the models are specified for 0.5-100 GHz).
    """
    key = scenario_name(scenario)
    tx = np.asarray(tx_pos, dtype=float).reshape(-1, 3)
    rx = np.asarray(rx_pos, dtype=float).reshape(-1, 3)
    d3, d2 = distances(tx, rx)
    fc = np.broadcast_to(np.asarray(frequency_hz, dtype=float), d3.shape) / 1e9
    los = np.broadcast_to(np.asarray(los, dtype=bool), d3.shape)
    if key == "inh-office":
        pl, valid = _inh_office(d3, fc, los)
    else:
        h_bs = np.maximum(tx[:, 2], rx[:, 2]) - ground_z_m
        h_ut = np.minimum(tx[:, 2], rx[:, 2]) - ground_z_m
        pl, valid = _umi_street_canyon(d3, d2, fc, h_bs, h_ut, los)
    valid = valid & (fc >= 0.5) & (fc <= 100.0)
    return -pl, valid


__all__ = ["SCENARIOS", "LogDistanceFit", "distances", "fit_log_distance", "scenario_name", "tr38901_path_gain_db"]
