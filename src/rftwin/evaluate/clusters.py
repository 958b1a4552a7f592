"""Multipath structure of a snapshot: seed 002's snapshot metrics (M1-M4) and cluster metrics (C1-C2).

A *snapshot* is one link (a row of the truth table): a set of multipath components (MPCs) with power p_i
(linear), delay tau_i (s) and direction(s) of arrival (and departure). Measured MPCs come from a sounder's MPC table
(:mod:`rftwin.data.mpc`), predicted MPCs are the traced paths of a twin with the engine's powers. Both go through
the same processing:

1. **Dynamic range.** MPCs weaker than the link's strongest MPC by more than ``dynamic_range_db`` are dropped (a
   sounder reports components above its noise floor only; the twin's weak paths would otherwise count as clusters).
   With ``delay_reference="first"`` delays are taken relative to the link's first remaining MPC.
2. **Snapshot metrics (M1-M4)** of the remaining MPCs (:mod:`rftwin.physics.features`): M1 path gain
   10 log10 sum p_i (dB; path loss = -gain), M2 RMS delay spread (s), M3 circular azimuth spread of arrival
   (deg), M4 Rician K-factor, strongest MPC vs the rest (dB; +inf for a single MPC). Errors are absolute
   differences predicted - measured: dB, ns, deg, dB.
3. **Clustering.** MPCs are points x_i = (tau_i / s_tau, u_i / s_theta [, v_i / s_theta]) with u (v) the unit
   vector of arrival (departure; azimuth-only unit vectors in the horizontal plane when the measured table has no
   elevation), s_tau = ``delay_scale_s`` and s_theta = ``angle_scale_deg`` in radians. Two MPCs of the same link are
   *neighbours* when ||x_i - x_j|| <= 1 (|u_i - u_j| is the chord, ~ the angle in rad for small angles); clusters
   are the connected components of the neighbour graph (single linkage at the resolution scale, computed for all
   links at once with scikit-learn's ``DBSCAN(eps=1, min_samples=1)``; links never merge). A cluster is described
   by its power P_c = sum p_i (dB), power-weighted mean delay tau_c = sum p_i tau_i / P_c and power-weighted mean
   direction (the normalised resultant sum p_i u_i).
4. **Cluster matching.** Per link, the cost of pairing measured cluster a with predicted cluster b is
   (dtau / g_tau)^2 + (dtheta_AoA / g_theta)^2 [+ (dtheta_AoD / g_theta)^2] (dtheta the great-circle angle between
   the centroid directions); pairs with |dtau| > g_tau or an angle > g_theta are forbidden and the minimum-cost
   one-to-one assignment (Hungarian, :func:`scipy.optimize.linear_sum_assignment`) is kept.
5. **C1, cluster detection**, per link with T measured, P predicted and K matched clusters: missed = T - K, false =
   P - K, precision = K / P, recall = K / T, F1 = 2K / (T + P) (NaN when T + P = 0). Pooled over links:
   F1 = 2 sum K / (sum T + sum P).
   **C2, matched-cluster errors**: per matched pair |P_c,pred - P_c,meas| (dB), |tau_c,pred - tau_c,meas| (ns),
   AoA angle (deg); per link the mean over its pairs, pooled the mean over all pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from rftwin.physics import features as F

__all__ = ["ClusterConfig", "Clusters", "MPCSet", "cluster_metrics", "cluster_mpcs", "match_clusters",
           "prune", "snapshot_metrics", "summarize"]


@dataclass(frozen=True)
class ClusterConfig:
    """Processing of measured and predicted MPCs (see the module docstring). Scales and gates in s and degrees."""

    dynamic_range_db: float | None = 30.0
    delay_scale_s: float = 5e-9  # clustering resolution (~ 1 / bandwidth)
    angle_scale_deg: float = 10.0  # clustering resolution (~ beam width)
    delay_gate_s: float = 10e-9  # cluster matching gates
    angle_gate_deg: float = 20.0
    use_departure: bool | None = None  # None: when the measured MPCs have departure angles
    delay_reference: str = "absolute"  # or "first"

    def __post_init__(self):
        if self.delay_reference not in ("absolute", "first"):
            raise ValueError(f"delay_reference must be 'absolute' or 'first', not '{self.delay_reference}'")
        for name in ("delay_scale_s", "angle_scale_deg", "delay_gate_s", "angle_gate_deg"):
            if not getattr(self, name) > 0:
                raise ValueError(f"cluster config: {name} must be > 0")
        if self.dynamic_range_db is not None and not self.dynamic_range_db > 0:
            raise ValueError("cluster config: dynamic_range_db must be > 0 (or None)")


@dataclass
class MPCSet:
    """Flat MPCs of L links: ``link`` [Q] (0..L-1), ``power`` [Q] linear, ``delay_s`` [Q], arrival / departure
    azimuth and elevation [Q] in degrees (None: not available; elevation None: azimuth-only)."""

    link: np.ndarray
    power: np.ndarray
    delay_s: np.ndarray
    num_links: int
    az_arr: np.ndarray | None = None
    el_arr: np.ndarray | None = None
    az_dep: np.ndarray | None = None
    el_dep: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.link)

    @classmethod
    def from_table(cls, table, link_ids) -> MPCSet:
        """From an :class:`rftwin.data.mpc.MPCTable` whose ids are in ``link_ids`` (the L snapshots, in order)."""
        pos = {str(k): i for i, k in enumerate(link_ids)}
        link = np.array([pos[k] for k in table.link_id], dtype=np.int64)
        return cls(link, 10.0 ** (np.asarray(table.power_db, np.float64) / 10.0), np.asarray(table.delay_s, float),
                   len(pos), table.azimuth_arrival_deg, table.elevation_arrival_deg, table.azimuth_departure_deg,
                   table.elevation_departure_deg)

    def select(self, keep: np.ndarray) -> MPCSet:
        def s(x):
            return None if x is None else np.asarray(x)[keep]

        return MPCSet(self.link[keep], self.power[keep], self.delay_s[keep], self.num_links, s(self.az_arr),
                      s(self.el_arr), s(self.az_dep), s(self.el_dep))

    def like(self, ref: MPCSet, use_departure: bool) -> MPCSet:
        """This set with the same angle information as ``ref`` (drop what ``ref`` lacks)."""
        def pick(mine, theirs):
            return None if theirs is None else mine

        return MPCSet(self.link, self.power, self.delay_s, self.num_links, pick(self.az_arr, ref.az_arr),
                      pick(self.el_arr, ref.el_arr), pick(self.az_dep, ref.az_dep if use_departure else None),
                      pick(self.el_dep, ref.el_dep if use_departure else None))


def prune(m: MPCSet, cfg: ClusterConfig) -> MPCSet:
    """Drop MPCs outside the dynamic range (and non-positive powers); apply the delay reference."""
    keep = m.power > 0
    if cfg.dynamic_range_db is not None and len(m):
        best = np.zeros(m.num_links)
        np.maximum.at(best, m.link[keep], m.power[keep])
        keep &= m.power >= best[m.link] * 10.0 ** (-cfg.dynamic_range_db / 10.0)
    out = m.select(keep)
    if cfg.delay_reference == "first" and len(out):
        first = np.full(m.num_links, np.inf)
        np.minimum.at(first, out.link, out.delay_s)
        out.delay_s = out.delay_s - first[out.link]
    return out


def _unit(az, el) -> np.ndarray:
    if el is None:
        el = np.zeros_like(az)
    return F.unit_vectors(torch.as_tensor(np.asarray(az, np.float64)), torch.as_tensor(np.asarray(el, np.float64))
                          ).numpy()


def _sides(m: MPCSet) -> list[tuple[np.ndarray, np.ndarray | None]]:
    return [(az, el) for az, el in ((m.az_arr, m.el_arr), (m.az_dep, m.el_dep)) if az is not None]


@dataclass
class Clusters:
    """Clusters of an MPC set: per cluster [C] ``link``, ``power_db``, ``delay_s``, ``num_mpcs`` and unit
    ``directions`` (list over the angle sides used, each [C, 3]; arrival first); ``label`` [Q] cluster of every
    MPC. Clusters are ordered by link, then by decreasing power."""

    link: np.ndarray
    power_db: np.ndarray
    delay_s: np.ndarray
    num_mpcs: np.ndarray
    directions: list[np.ndarray]
    label: np.ndarray
    num_links: int

    def __len__(self) -> int:
        return len(self.link)

    def per_link(self) -> np.ndarray:
        return np.bincount(self.link, minlength=self.num_links)

    def angles_deg(self, side: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Azimuth and elevation (deg) of the cluster centroids of angle side ``side``."""
        az, el = F.direction_angles(torch.as_tensor(self.directions[side]))
        return az.numpy(), el.numpy()


def cluster_mpcs(m: MPCSet, cfg: ClusterConfig) -> Clusters:
    """Single-linkage clusters at the resolution scale (module docstring, step 3); ``m`` already pruned."""
    from sklearn.cluster import DBSCAN  # noqa: PLC0415

    sides = _sides(m)
    units = [_unit(az, el) for az, el in sides]
    if not len(m):
        return Clusters(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64),
                        [np.zeros((0, 3)) for _ in units], np.zeros(0, np.int64), m.num_links)
    t = m.delay_s / cfg.delay_scale_s
    cols = [t[:, None]] + [u / math.radians(cfg.angle_scale_deg) for u in units]
    X = np.concatenate(cols + [(m.link * 10.0)[:, None]], 1)  # MPCs of different links are >= 10 apart
    raw = DBSCAN(eps=1.0, min_samples=1).fit(X).labels_
    _, raw = np.unique(raw, return_inverse=True)
    C = int(raw.max()) + 1
    P = np.bincount(raw, weights=m.power, minlength=C)
    link = np.zeros(C, np.int64)
    link[raw] = m.link
    order = np.lexsort((-P, link))  # by link, then by decreasing power
    rank = np.empty(C, np.int64)
    rank[order] = np.arange(C)
    label = rank[raw]
    P = P[order]
    tau = np.bincount(label, weights=m.power * m.delay_s, minlength=C) / P
    dirs = []
    for u in units:
        r = np.stack([np.bincount(label, weights=m.power * u[:, k], minlength=C) for k in range(3)], 1)
        dirs.append(r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-300))
    return Clusters(link[order], 10.0 * np.log10(P), tau, np.bincount(label, minlength=C), dirs, label, m.num_links)


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip(u @ v.T, -1.0, 1.0)))


@dataclass
class ClusterMatch:
    """Matched cluster pairs (K): indices ``true`` / ``pred`` [K] into the two cluster sets, ``link`` [K], errors
    ``power_error_db`` (pred - meas), ``delay_error_s`` (pred - meas), ``angle_error_deg`` [K] (AoA, or the first
    angle side used; NaN without angles)."""

    true: np.ndarray
    pred: np.ndarray
    link: np.ndarray
    power_error_db: np.ndarray
    delay_error_s: np.ndarray
    angle_error_deg: np.ndarray


def match_clusters(true: Clusters, pred: Clusters, cfg: ClusterConfig) -> ClusterMatch:
    """Gated one-to-one assignment of predicted to measured clusters per link (module docstring, step 4)."""
    ti, pi, lk, ang = [], [], [], []
    t_links = np.unique(true.link)
    for link in t_links[np.isin(t_links, pred.link)]:
        a = np.nonzero(true.link == link)[0]
        b = np.nonzero(pred.link == link)[0]
        dt = pred.delay_s[b][None, :] - true.delay_s[a][:, None]
        cost = (dt / cfg.delay_gate_s) ** 2
        ok = np.abs(dt) <= cfg.delay_gate_s
        first = None
        for ut, up in zip(true.directions, pred.directions):
            th = _angle(ut[a], up[b])
            cost = cost + (th / cfg.angle_gate_deg) ** 2
            ok &= th <= cfg.angle_gate_deg
            first = th if first is None else first
        r, c = linear_sum_assignment(np.where(ok, cost, 1e6 + 10.0 * cost.max()))
        good = ok[r, c]
        r, c = r[good], c[good]
        ti.append(a[r])
        pi.append(b[c])
        lk.append(np.full(len(r), link))
        ang.append(first[r, c] if first is not None else np.full(len(r), np.nan))

    def cat(x, dt):
        return np.concatenate(x).astype(dt) if x else np.zeros(0, dt)

    t, p = cat(ti, np.int64), cat(pi, np.int64)
    return ClusterMatch(t, p, cat(lk, np.int64), pred.power_db[p] - true.power_db[t],
                        pred.delay_s[p] - true.delay_s[t], cat(ang, np.float64))


def snapshot_metrics(m: MPCSet, angular_method: str = "circular") -> pd.DataFrame:
    """M1-M4 per link [L] of an (already pruned) MPC set: ``path_gain_db``, ``delay_spread_s``,
    ``angular_spread_deg`` (arrival azimuth; NaN without AoA), ``k_factor_db`` (strongest MPC vs the rest),
    ``num_mpcs``. Links without MPCs: NaN."""
    L = m.num_links
    li = torch.as_tensor(m.link)
    p = torch.as_tensor(m.power)
    _, ds = F.delay_moments(p, torch.as_tensor(m.delay_s), li, L)
    n = np.bincount(m.link, minlength=L)
    out = {"path_gain_db": F.path_gain_db(p, li, L).numpy(), "delay_spread_s": ds.numpy(),
           "angular_spread_deg": (F.angular_spread_deg(p, torch.as_tensor(np.asarray(m.az_arr, np.float64)), li, L,
                                                      angular_method).numpy()
                                  if m.az_arr is not None else np.full(L, np.nan)),
           "k_factor_db": F.k_factor_db(p, li, L).numpy()}
    df = pd.DataFrame({k: np.where(n > 0, v, np.nan) for k, v in out.items()})
    df["num_mpcs"] = n
    return df


@dataclass
class SnapshotComparison:
    """Per-link table (``per_link``: measured and predicted M1-M4, cluster counts and C1/C2 per link) and the
    clusters and match behind it."""

    per_link: pd.DataFrame
    true_clusters: Clusters
    pred_clusters: Clusters
    match: ClusterMatch
    info: dict = field(default_factory=dict)


def cluster_metrics(measured: MPCSet, predicted: MPCSet, cfg: ClusterConfig | None = None,
                    links: np.ndarray | None = None) -> SnapshotComparison:
    """Compare predicted with measured MPCs of the same L links (M1-M4 and C1-C2; module docstring).

    ``links`` [L] bool: snapshots to score (default: links with at least one measured MPC); the others get NaN.
    Columns of ``per_link``: ``true_*`` / ``pred_*`` for ``path_gain_db``, ``delay_spread_s``,
    ``angular_spread_deg``, ``k_factor_db``, ``num_mpcs``, ``clusters``; ``clusters_matched``, ``missed``,
    ``false``, ``precision``, ``recall``, ``f1``; mean absolute ``cluster_power_error_db``,
    ``cluster_delay_error_ns``, ``cluster_angle_error_deg``.
    """
    cfg = cfg or ClusterConfig()
    if measured.num_links != predicted.num_links:
        raise ValueError(f"measured ({measured.num_links}) and predicted ({predicted.num_links}) links differ")
    L = measured.num_links
    use_dep = cfg.use_departure if cfg.use_departure is not None else measured.az_dep is not None
    if use_dep and measured.az_dep is None:
        raise ValueError("use_departure: the measured MPCs have no departure angles")
    meas = measured.like(measured, use_dep)
    if links is None:
        links = np.bincount(meas.link, minlength=L) > 0
    links = np.asarray(links, bool)
    meas = prune(meas.select(links[meas.link]), cfg)
    pred = prune(predicted.like(meas, use_dep).select(links[predicted.link]), cfg)
    ct, cp = cluster_mpcs(meas, cfg), cluster_mpcs(pred, cfg)
    mt = match_clusters(ct, cp, cfg)
    st, sp = snapshot_metrics(meas), snapshot_metrics(pred)
    df = pd.DataFrame(index=np.arange(L))
    for name in ("path_gain_db", "delay_spread_s", "angular_spread_deg", "k_factor_db", "num_mpcs"):
        df[f"true_{name}"] = st[name].to_numpy(dtype=float)
        df[f"pred_{name}"] = sp[name].to_numpy(dtype=float)
    T, P = ct.per_link().astype(float), cp.per_link().astype(float)
    K = np.bincount(mt.link, minlength=L).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        df["true_clusters"], df["pred_clusters"], df["clusters_matched"] = T, P, K
        df["missed"], df["false"] = T - K, P - K
        df["precision"] = np.where(P > 0, K / P, np.nan)
        df["recall"] = np.where(T > 0, K / T, np.nan)
        df["f1"] = np.where(T + P > 0, 2 * K / (T + P), np.nan)

        def mean_abs(v):
            s = np.bincount(mt.link, weights=np.abs(v), minlength=L)
            return np.where(K > 0, s / K, np.nan)

        df["cluster_power_error_db"] = mean_abs(mt.power_error_db)
        df["cluster_delay_error_ns"] = mean_abs(mt.delay_error_s * 1e9)
        df["cluster_angle_error_deg"] = mean_abs(mt.angle_error_deg)
    df.loc[~links, :] = np.nan
    info = {"angles": (["arrival"] if meas.az_arr is not None else []) + (["departure"] if use_dep else []),
            "elevation": meas.el_arr is not None, "links_scored": int(links.sum())}
    return SnapshotComparison(df, ct, cp, mt, info)


def summarize(c: SnapshotComparison) -> dict:
    """Pooled C1/C2 and mean absolute M1-M4 errors over the scored links (NaN-aware)."""
    d = c.per_link
    T, P, K = (float(np.nansum(d[k])) for k in ("true_clusters", "pred_clusters", "clusters_matched"))

    def mae(a, b, scale=1.0):
        with np.errstate(invalid="ignore"):  # inf - inf (single-MPC K-factors): undefined, left out
            e = np.abs(d[f"pred_{a}"].to_numpy() - d[f"true_{b}"].to_numpy()) * scale
        e = e[np.isfinite(e)]
        return float(e.mean()) if e.size else math.nan

    def pooled(v, scale=1.0):
        v = np.abs(v[np.isfinite(v)]) * scale
        return float(v.mean()) if v.size else math.nan

    f1 = d["f1"].to_numpy()
    return {"clusters_true": int(T), "clusters_pred": int(P), "clusters_matched": int(K),
            "cluster_precision": K / P if P else math.nan, "cluster_recall": K / T if T else math.nan,
            "cluster_f1": 2 * K / (T + P) if T + P else math.nan,
            "cluster_f1_mean_link": float(np.nanmean(f1)) if np.isfinite(f1).any() else math.nan,
            "cluster_power_mae_db": pooled(c.match.power_error_db),
            "cluster_delay_mae_ns": pooled(c.match.delay_error_s, 1e9),
            "cluster_angle_mae_deg": pooled(c.match.angle_error_deg),
            "mpc_path_gain_mae_db": mae("path_gain_db", "path_gain_db"),
            "mpc_delay_spread_mae_ns": mae("delay_spread_s", "delay_spread_s", 1e9),
            "mpc_angular_spread_mae_deg": mae("angular_spread_deg", "angular_spread_deg"),
            "mpc_k_factor_mae_db": mae("k_factor_db", "k_factor_db")}
