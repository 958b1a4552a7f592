"""A calibration problem: cached paths + measured targets -> simulated channel features for a material model.

Targets hold, per measured row (a link at a frequency), any of: path gain (dB), RMS delay spread and mean delay
(s, from paths), a complex OFDM CFR on a subcarrier grid; and per-MPC powers as (path index into the PathSet,
measured power dB) pairs (e.g. from an MPC matcher). Missing values are NaN and are left out of the loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from rftwin.pathset import PathSet
from rftwin.physics.channel import link_sum, path_power, to_db
from rftwin.physics.engine import MaterialValues, link_gain_db, link_reduce, path_coefficients
from rftwin.physics.features import cfr_from_paths, delay_reference, delay_sums, delays_from_sums

DEFAULT_CHUNK = 200_000  # paths per engine chunk (bounded memory; autograd by checkpointing)


@dataclass
class Targets:
    """Measured features of M rows: PathSet link index ``link`` [M], frequency index ``freq_index`` [M] into
    ``frequencies_hz`` [F].

    Row features (NaN = not measured): ``path_gain_db`` [M], ``delay_spread_s`` [M], ``mean_delay_s`` [M];
    ``cfr`` complex [M, K] on ``cfr_subcarriers`` K subcarriers spanning ``cfr_bandwidth_hz`` around each row's
    carrier (Sionna's convention, antenna pair (0, 0)), rows with any non-finite entry are skipped; with
    ``cfr_normalize_delays`` the earliest traced path of each link is at delay 0 (sounders without absolute timing).
    MPC features: ``mpc_path`` [Q] path indices into the PathSet, ``mpc_power_db`` [Q] measured powers,
    ``mpc_freq_index`` [Q] (default 0). ``weight`` [M] / ``mpc_weight`` [Q] optional per-row weights;
    ``feature_weight`` optional per-row weights of single features (e.g. 1 / variance of a channel-map target,
    ``{"delay_spread": w [M]}``), used instead of ``weight`` for those features. With ``mpc_floor_db`` a measured
    MPC power below it (e.g. -inf: traced by the twin but not detected) is an upper bound: only a simulated power
    above the floor is penalised.
    """

    link: torch.Tensor
    freq_index: torch.Tensor
    frequencies_hz: torch.Tensor
    path_gain_db: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    delay_spread_s: torch.Tensor | None = None
    mean_delay_s: torch.Tensor | None = None
    cfr: torch.Tensor | None = None
    cfr_bandwidth_hz: float | None = None
    cfr_normalize_delays: bool = False
    mpc_path: torch.Tensor | None = None
    mpc_power_db: torch.Tensor | None = None
    mpc_freq_index: torch.Tensor | None = None
    mpc_weight: torch.Tensor | None = None
    mpc_floor_db: float | None = None
    feature_weight: dict[str, torch.Tensor] | None = None
    _masks: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num(self) -> int:
        return int(self.link.shape[0])

    @property
    def cfr_subcarriers(self) -> int:
        return 0 if self.cfr is None else int(self.cfr.shape[1])

    def available(self) -> list[str]:
        """Features with at least one measured value."""
        out = []
        for name in ("path_gain", "delay_spread", "mean_delay", "cfr"):
            if bool(self.mask(name).any()):
                out.append(name)
        if self.mpc_path is not None and self.mpc_path.numel():
            out.append("mpc_power")
        return out

    def values(self, feature: str) -> torch.Tensor | None:
        return {"path_gain": self.path_gain_db, "delay_spread": self.delay_spread_s,
                "mean_delay": self.mean_delay_s, "cfr": self.cfr, "mpc_power": self.mpc_power_db}[feature]

    def below_floor(self) -> torch.Tensor | None:
        """MPCs [Q] measured below ``mpc_floor_db`` (upper bounds), None without a floor."""
        if self.mpc_floor_db is None or self.mpc_power_db is None:
            return None
        return ~torch.isnan(self.mpc_power_db) & (self.mpc_power_db < self.mpc_floor_db)

    def mask(self, feature: str) -> torch.Tensor:
        """Rows [M] (or MPCs [Q]) where ``feature`` is measured."""
        if feature not in self._masks:
            v = self.values(feature)
            if v is None:
                n = self.num if feature != "mpc_power" else 0
                m = torch.zeros(n, dtype=torch.bool)
            elif feature == "cfr":
                m = torch.isfinite(torch.view_as_real(v)).all(-1).all(-1)
            elif feature == "mpc_power" and self.mpc_floor_db is not None:
                m = torch.isfinite(v) | (~torch.isnan(v) & (v < self.mpc_floor_db))
            else:
                m = torch.isfinite(v)
            self._masks[feature] = m
        return self._masks[feature]

    def row_weight(self, feature: str) -> torch.Tensor:
        """Per-row weights [M] (or [Q]) of ``feature``, zero where it is not measured."""
        m = self.mask(feature)
        w = (self.feature_weight or {}).get(feature)
        if w is None:
            w = self.mpc_weight if feature == "mpc_power" else self.weight
        dtype = self.frequencies_hz.dtype
        base = torch.ones(m.shape, dtype=dtype) if w is None else w.to(dtype)
        return torch.where(m, base, torch.zeros((), dtype=dtype))

    @classmethod
    def build(cls, link_index, frequency_hz, path_gain_db=None, dtype=torch.float64, weight=None, *,
              delay_spread_s=None, mean_delay_s=None, cfr=None, cfr_bandwidth_hz: float | None = None,
              cfr_normalize_delays: bool = False, mpc_path=None, mpc_power_db=None, mpc_frequency_hz=None,
              mpc_weight=None) -> Targets:
        """Targets from arrays: ``link_index`` [M], ``frequency_hz`` [M] (Hz), features [M] (NaN = missing),
        ``cfr`` complex [M, K], MPC pairs ``mpc_path`` [Q] / ``mpc_power_db`` [Q] (dB) at ``mpc_frequency_hz``
        [Q] or scalar (default: the lowest row frequency)."""
        link = np.asarray(link_index).reshape(-1)
        M = len(link)
        f = np.broadcast_to(np.asarray(frequency_hz, dtype=np.float64), (M,))
        uf, fi = np.unique(f, return_inverse=True)

        def row(x, name):
            if x is None:
                return None
            a = np.asarray(x, dtype=np.float64).reshape(-1)
            if a.shape != (M,):
                raise ValueError(f"targets: '{name}' has {a.size} values, expected one per row ({M})")
            return torch.as_tensor(a, dtype=dtype)

        if path_gain_db is None and delay_spread_s is None and mean_delay_s is None and cfr is None \
                and mpc_path is None:
            raise ValueError("targets: no measured feature given (path_gain_db, delay_spread_s, mean_delay_s, "
                             "cfr or mpc_path/mpc_power_db)")
        for name, x in (("delay_spread_s", delay_spread_s), ("mean_delay_s", mean_delay_s)):
            if x is not None and np.any(np.asarray(x, dtype=np.float64) < 0):
                raise ValueError(f"targets: '{name}' must be >= 0 s")
        ctype = torch.complex128 if dtype == torch.float64 else torch.complex64
        H = None
        if cfr is not None:
            Hn = np.asarray(cfr)
            if Hn.ndim != 2 or Hn.shape[0] != M:
                raise ValueError(f"targets: 'cfr' has shape {Hn.shape}, expected [rows={M}, subcarriers]")
            if not cfr_bandwidth_hz or cfr_bandwidth_hz <= 0:
                raise ValueError("targets: 'cfr' needs a positive cfr_bandwidth_hz")
            H = torch.as_tensor(Hn.astype(np.complex128), dtype=ctype)
        mp = mpw = mfi = mpi = None
        if mpc_path is not None or mpc_power_db is not None:
            if mpc_path is None or mpc_power_db is None:
                raise ValueError("targets: per-MPC powers need both mpc_path and mpc_power_db")
            mpi = np.asarray(mpc_path).reshape(-1)
            mpw_np = np.asarray(mpc_power_db, dtype=np.float64).reshape(-1)
            if mpi.shape != mpw_np.shape:
                raise ValueError(f"targets: mpc_path ({mpi.size}) and mpc_power_db ({mpw_np.size}) differ in length")
            if mpi.size and mpi.min() < 0:
                raise ValueError("targets: mpc_path holds negative path indices")
            mf = np.broadcast_to(np.asarray(uf[0] if mpc_frequency_hz is None else mpc_frequency_hz,
                                            dtype=np.float64), mpi.shape)
            unknown = sorted(set(mf.tolist()) - set(uf.tolist()))
            if unknown:
                uf = np.unique(np.concatenate([uf, unknown]))
                fi = np.searchsorted(uf, f)
            mfi = torch.as_tensor(np.searchsorted(uf, mf), dtype=torch.long)
            mp = torch.as_tensor(mpi, dtype=torch.long)
            mpw = torch.as_tensor(mpw_np, dtype=dtype)
        return cls(torch.as_tensor(link, dtype=torch.long), torch.as_tensor(np.asarray(fi).reshape(-1)),
                   torch.as_tensor(uf, dtype=dtype), row(path_gain_db, "path_gain_db"), row(weight, "weight"),
                   row(delay_spread_s, "delay_spread_s"), row(mean_delay_s, "mean_delay_s"), H,
                   None if cfr_bandwidth_hz is None else float(cfr_bandwidth_hz), bool(cfr_normalize_delays), mp,
                   mpw, mfi, None if mpc_weight is None else torch.as_tensor(np.asarray(mpc_weight), dtype=dtype))

    def check(self, ps: PathSet) -> None:
        """Raise if rows or MPCs refer to links / paths the PathSet does not have."""
        if self.num and (int(self.link.min()) < 0 or int(self.link.max()) >= ps.num_links):
            raise ValueError(f"targets refer to link {int(self.link.max())}, the PathSet has {ps.num_links} links")
        if self.mpc_path is not None and self.mpc_path.numel() and int(self.mpc_path.max()) >= ps.num_paths:
            raise ValueError(f"targets: mpc_path {int(self.mpc_path.max())} is not a path of the PathSet "
                             f"({ps.num_paths} paths)")


@dataclass
class Features:
    """Simulated features per start: ``path_gain_db`` [B, M], ``delay_spread_s`` / ``mean_delay_s`` [B, M],
    ``cfr`` complex [B, M, K], ``mpc_power_db`` [B, Q] (None when not requested); ``materials`` the model's
    MaterialValues they were computed with."""

    path_gain_db: torch.Tensor | None = None
    delay_spread_s: torch.Tensor | None = None
    mean_delay_s: torch.Tensor | None = None
    cfr: torch.Tensor | None = None
    mpc_power_db: torch.Tensor | None = None
    materials: MaterialValues | None = None
    frequencies_hz: torch.Tensor | None = None  # [F] the frequencies of ``materials``

    def get(self, feature: str) -> torch.Tensor | None:
        return {"path_gain": self.path_gain_db, "delay_spread": self.delay_spread_s,
                "mean_delay": self.mean_delay_s, "cfr": self.cfr, "mpc_power": self.mpc_power_db}[feature]


def simulate_features(ps: PathSet, model: torch.nn.Module, targets: Targets, features: set[str] | None = None,
                      chunk_size: int = DEFAULT_CHUNK) -> Features:
    """Simulated features of the target rows under ``model`` (any material model of
    :mod:`rftwin.materials.protocol`: materials -> engine -> per-link reductions).

    Link quantities are accumulated over path chunks of ``chunk_size`` (only per-link sums are kept); the engine is
    run once for all requested features. Per-MPC powers evaluate the engine on the referenced paths only.
    """
    features = set(targets.available()) if features is None else set(features)
    freqs = targets.frequencies_hz
    mv = model(ps, freqs)
    out = Features(materials=mv, frequencies_hz=freqs)
    link_feats = features & {"path_gain", "delay_spread", "mean_delay", "cfr"}
    if link_feats:
        L = ps.num_links
        want_delay = bool(link_feats & {"delay_spread", "mean_delay"})
        K = targets.cfr_subcarriers if "cfr" in link_feats else 0
        ref = delay_reference(ps.tau_s, ps.link, L) if want_delay or targets.cfr_normalize_delays else None
        tmin = ref if K and targets.cfr_normalize_delays else None
        fl = [float(x) for x in freqs]

        def reduce(a: torch.Tensor, p: PathSet) -> torch.Tensor:
            pw = path_power(a)  # [B, F, n]
            if want_delay:
                res = delay_sums(pw, p.tau_s, p.link, L, ref)  # [B, F, L, 3]: power, delay sums
            else:
                res = link_sum(pw, p.link, L)[..., None]  # [B, F, L, 1]
            if K:
                tau = p.tau_s if tmin is None else p.tau_s.to(torch.float64) - tmin[p.link]
                H = torch.stack([cfr_from_paths(a[:, i, :, 0, 0], tau, p.link, L, fl[i], targets.cfr_bandwidth_hz, K)
                                 for i in range(len(fl))], 1)  # [B, F, L, K]
                H = torch.view_as_real(H).flatten(-2).to(res.dtype)  # [B, F, L, 2K]
                res = torch.cat([res, H], -1)
            return res

        if ps.num_paths <= chunk_size:
            red = reduce(path_coefficients(ps, mv, freqs, check=False), ps)
        else:
            B = int(mv.eps_r.shape[0])
            chunk = chunk_size if not K else max(1024, min(chunk_size, int(2e7 // (K * B * len(fl)))))
            red = link_reduce(ps, mv, freqs, reduce, chunk_size=chunk, check=False)
        rows = red[:, targets.freq_index, targets.link]  # [B, M, C]
        p0 = rows[..., 0]
        out.path_gain_db = to_db(p0)
        if want_delay:  # links without paths: 0 s (finite, like the -300 dB path-gain floor)
            out.mean_delay_s, out.delay_spread_s = delays_from_sums(rows[..., :3], ref[targets.link], empty=0.0)
        if K:
            c = rows[..., -2 * K:].reshape(rows.shape[:-1] + (K, 2))
            out.cfr = torch.view_as_complex(c.contiguous())
    if "mpc_power" in features and targets.mpc_path is not None and targets.mpc_path.numel():
        uniq, inv = torch.unique(targets.mpc_path, return_inverse=True)
        sub = ps.select_paths(uniq)
        mv_sub = mv.select_paths(uniq)
        a = path_coefficients(sub, mv_sub, freqs, check=False)  # [B, F, Q', R, T]
        pw = path_power(a)
        out.mpc_power_db = to_db(pw[:, targets.mpc_freq_index, inv])
    return out


def simulate_path_gain_db(ps: PathSet, model: torch.nn.Module, targets: Targets) -> torch.Tensor:
    """Simulated path gain [B, M] (dB) of the target rows under ``model`` (materials -> engine -> links)."""
    g = link_gain_db(ps, model(ps, targets.frequencies_hz), targets.frequencies_hz, check=False)  # [B, F, L]
    return g[:, targets.freq_index, targets.link]
