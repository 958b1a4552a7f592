"""Multipath components (MPCs) as a channel sounder exports them, and their matching to traced paths.

MPC table (CSV or Parquet), one row per component ("long" format, seed 002 A.5):

==========================  ====  ==============================================================================
column                      unit  notes
==========================  ====  ==============================================================================
``link_id``                 --    required; the link (row of the measurements table) the MPC belongs to
``delay_s``                 s     required; propagation delay, in [0, 1e-3] (absolute or relative to the first
                                  arrival, see ``delay_reference`` of :func:`match_mpcs`)
``power_db``                dB    required; MPC path gain (received / transmitted power, as the table's
                                  ``path_gain_db``; an unknown constant offset is allowed), in [-300, 300]
``azimuth_arrival_deg``     deg   optional; AoA azimuth in the scene frame (ccw from +x), in [-360, 360]
``elevation_arrival_deg``   deg   optional; AoA elevation above the horizontal, in [-90, 90]; needs the azimuth
``azimuth_departure_deg``   deg   optional; AoD azimuth
``elevation_departure_deg`` deg   optional; AoD elevation; needs the azimuth
==========================  ====  ==============================================================================

Arrival directions point from the receiver towards where the wave comes from, departure directions from the
transmitter along the outgoing wave (PathSet ``k_rx`` / ``k_tx``; :func:`rftwin.physics.features.direction_angles`).
Column names are case-insensitive; extra columns are kept. Problems raise MeasurementError naming file, row, line
and column.
"""
from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from rftwin.data.measurements import (
    MAX_DELAY_SPREAD_S,
    Problem,
    _check_columns,
    _numeric,
    _raise_if,
    _Raw,
    _read_table,
)
from rftwin.physics import features as F

ANGLE_COLUMNS = ("azimuth_arrival_deg", "elevation_arrival_deg", "azimuth_departure_deg", "elevation_departure_deg")
MPC_COLUMNS = ("link_id", "delay_s", "power_db", *ANGLE_COLUMNS)
MAX_ABS_POWER_DB = 300.0
DEFAULT_DELAY_GATE_S = 5e-9  # 1.5 m of path length
DEFAULT_ANGLE_GATE_DEG = 10.0


@dataclass
class MPCTable:
    """Measured multipath components (Q rows). Delays in s, powers in dB, angles in degrees (None: not given)."""

    df: pd.DataFrame
    link_id: list[str]  # [Q]
    delay_s: np.ndarray  # [Q]
    power_db: np.ndarray  # [Q]
    azimuth_arrival_deg: np.ndarray | None = None
    elevation_arrival_deg: np.ndarray | None = None
    azimuth_departure_deg: np.ndarray | None = None
    elevation_departure_deg: np.ndarray | None = None
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.link_id)

    @property
    def link_ids(self) -> list[str]:
        """Distinct link ids in order of first appearance."""
        return list(dict.fromkeys(self.link_id))

    def link_index(self, link_ids: Sequence[str] | None = None) -> np.ndarray:
        """Index [Q] of every MPC's link in ``link_ids`` (default :attr:`link_ids`)."""
        ids = self.link_ids if link_ids is None else list(link_ids)
        pos = {k: i for i, k in enumerate(ids)}
        return np.array([pos[k] for k in self.link_id], dtype=np.int64)

    def check_links(self, link_ids: Sequence[str]) -> None:
        """Every MPC's link id must be one of ``link_ids`` (e.g. the measurement table's); names the rows."""
        known = set(link_ids)
        problems = []
        for i, k in enumerate(self.link_id):
            if k not in known:
                close = difflib.get_close_matches(k, sorted(known), n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(Problem(f"unknown link_id '{k}'{hint}; expected a link of the measurements table",
                                        row=i + 1, line=self._lines[i] if self._lines is not None else None,
                                        columns=("link_id",)))
        _raise_if(str(self.source) if self.source else "<mpc>", problems)

    @property
    def _lines(self) -> np.ndarray | None:
        return self.df.attrs.get("lines")

    def subset(self, rows: np.ndarray | Sequence[int]) -> MPCTable:
        """The MPCs of ``rows`` (0-based, in that order) as a new table (file lines kept for error messages)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        df = self.df.iloc[rows].reset_index(drop=True)
        if self._lines is not None:
            df.attrs["lines"] = np.asarray(self._lines)[rows]
        ang = {c: None if getattr(self, c) is None else getattr(self, c)[rows] for c in ANGLE_COLUMNS}
        return MPCTable(df=df, link_id=[self.link_id[i] for i in rows], delay_s=self.delay_s[rows],
                        power_db=self.power_db[rows], source=self.source, **ang)

    def features(self, link_ids: Sequence[str] | None = None, angular_method: str = "circular") -> pd.DataFrame:
        """Per-link channel features of the MPCs: path gain (dB, incoherent sum), mean delay and RMS delay spread
        (s), K-factor (dB, strongest MPC vs the rest) and azimuth angular spread of arrival (deg, when given)."""
        ids = self.link_ids if link_ids is None else list(link_ids)
        li = torch.as_tensor(self.link_index(ids))
        p = torch.as_tensor(10.0 ** (self.power_db / 10.0))
        tau = torch.as_tensor(self.delay_s)
        L = len(ids)
        mean, ds = F.delay_moments(p, tau, li, L)
        out = {"link_id": ids, "path_gain_db": F.path_gain_db(p, li, L).numpy(), "mean_delay_s": mean.numpy(),
               "delay_spread_s": ds.numpy(), "k_factor_db": F.k_factor_db(p, li, L).numpy(),
               "num_mpcs": np.bincount(li.numpy(), minlength=L)}
        if self.azimuth_arrival_deg is not None:
            out["angular_spread_deg"] = F.angular_spread_deg(p, torch.as_tensor(self.azimuth_arrival_deg), li, L,
                                                             angular_method).numpy()
        return pd.DataFrame(out)


def read_mpcs(path: str | os.PathLike, links=None) -> MPCTable:
    """Read and validate an MPC table (CSV or Parquet). With ``links`` (a Measurements / Links or a sequence of
    link ids) every MPC's link id must belong to it. Raises MeasurementError naming file, row and column."""
    raw = _read_table(path, "multipath-component")
    return _build(raw, Path(path), links)


def mpcs_from_arrays(link_id, delay_s, power_db, *, azimuth_arrival_deg=None, elevation_arrival_deg=None,
                     azimuth_departure_deg=None, elevation_departure_deg=None, source: str = "<arrays>") -> MPCTable:
    """Build and validate an MPC table from arrays [Q] (same checks as a file)."""
    q = len(link_id)
    cols: dict[str, np.ndarray] = {"link_id": np.asarray([str(x) for x in link_id], dtype=object),
                                   "delay_s": np.asarray(delay_s, np.float64).reshape(q),
                                   "power_db": np.asarray(power_db, np.float64).reshape(q)}
    for name, v in zip(ANGLE_COLUMNS, (azimuth_arrival_deg, elevation_arrival_deg, azimuth_departure_deg,
                                       elevation_departure_deg)):
        if v is not None:
            cols[name] = np.asarray(v, np.float64).reshape(q)
    return _build(_Raw(source=source, columns=cols, n=q, lines=None), None, None)


def _build(raw: _Raw, path: Path | None, links) -> MPCTable:
    _check_columns(raw, ["link_id", "delay_s", "power_db"], MPC_COLUMNS)
    problems: list[Problem] = []
    for el, az in ((ANGLE_COLUMNS[1], ANGLE_COLUMNS[0]), (ANGLE_COLUMNS[3], ANGLE_COLUMNS[2])):
        if el in raw.columns and az not in raw.columns:
            problems.append(Problem(f"column {el} needs the column {az}", columns=(el,)))
    _raise_if(raw.source, problems)
    ids = []
    for i, v in enumerate(raw.columns["link_id"]):
        s = "" if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else str(v).strip()
        if isinstance(v, (float, np.floating)) and not math.isnan(v) and float(v).is_integer():
            s = str(int(v))
        if not s:
            problems.append(Problem("empty link_id; expected the id of a measured link", columns=("link_id",),
                                    **raw.where(i)))
        ids.append(s)
    numeric = [c for c in MPC_COLUMNS[1:] if c in raw.columns]
    vals = {c: _numeric(raw, c, problems) for c in numeric}
    problems.sort(key=lambda p: p.row or 0)
    _raise_if(raw.source, problems)
    d = vals["delay_s"]
    for i in np.nonzero((d < 0) | (d > MAX_DELAY_SPREAD_S))[0]:
        msg = (f"delay must be >= 0 s, found {d[i]:g}" if d[i] < 0 else
               f"{d[i]:g} s is implausibly large; delay_s must be in seconds (e.g. 3.3e-8 for 10 m)")
        problems.append(Problem(msg, columns=("delay_s",), **raw.where(i)))
    pw = vals["power_db"]
    for i in np.nonzero(np.abs(pw) > MAX_ABS_POWER_DB)[0]:
        problems.append(Problem(f"{pw[i]:g} dB is outside [-{MAX_ABS_POWER_DB:g}, {MAX_ABS_POWER_DB:g}] dB; power_db "
                                "must be in dB (10 log10 of a power ratio)", columns=("power_db",), **raw.where(i)))
    for c in ANGLE_COLUMNS:
        if c not in vals:
            continue
        lim = 90.0 if c.startswith("elevation") else 360.0
        v = vals[c]
        for i in np.nonzero(np.abs(v) > lim)[0]:
            problems.append(Problem(f"{v[i]:g} is outside [-{lim:g}, {lim:g}]; {c} must be in degrees"
                                    + (" above the horizontal" if lim == 90.0 else ""), columns=(c,),
                                    **raw.where(i)))
    problems.sort(key=lambda p: p.row or 0)
    _raise_if(raw.source, problems)
    data: dict[str, object] = {"link_id": ids, **{c: vals[c] for c in numeric}}
    data.update({c: cells for c, cells in raw.columns.items() if c not in data})
    df = pd.DataFrame(data)
    if raw.lines is not None:
        df.attrs["lines"] = raw.lines
    t = MPCTable(df=df, link_id=ids, delay_s=vals["delay_s"].copy(), power_db=vals["power_db"].copy(), source=path,
                 **{c: vals[c].copy() for c in ANGLE_COLUMNS if c in vals})
    if links is not None:
        t.check_links(list(links.link_id) if hasattr(links, "link_id") else list(links))
    return t


def write_mpcs(path: str | os.PathLike, table: MPCTable) -> Path:
    """Write ``table`` as an MPC file (CSV or Parquet by suffix), atomically; known columns first."""
    from rftwin.io import write_table

    known = [c for c in MPC_COLUMNS if c in table.df.columns]
    write_table(path, table.df[known + [c for c in table.df.columns if c not in known]])
    return Path(path)


def mpcs_from_paths(ps, power: torch.Tensor | np.ndarray, link_ids: Sequence[str], row_link: np.ndarray,
                    row_freq: np.ndarray | None = None, *, dynamic_range_db: float | None = None,
                    source: str = "<traced paths>") -> MPCTable:
    """Traced paths as an MPC table: one MPC per path of each row's link (what an ideal sounder would report).

    ``power`` [F, N] or [N] linear path power (e.g. :func:`rftwin.physics.channel.path_power` of engine
    coefficients); row r (id ``link_ids[r]``) takes the paths of PathSet link ``row_link[r]`` at frequency index
    ``row_freq[r]`` (default 0). ``dynamic_range_db``: keep only paths within this many dB of the row's strongest
    path (a sounder's dynamic range; None keeps all paths with power > 0). Delays are the traced ones (s), angles of
    arrival / departure from ``k_rx`` / ``k_tx`` (deg). The traced path index is kept in column ``path_index``.
    """
    p = torch.as_tensor(power).detach().cpu().numpy().astype(np.float64)
    p = p[None] if p.ndim == 1 else p
    row_link = np.asarray(row_link, dtype=np.int64).reshape(-1)
    R = len(row_link)
    if len(link_ids) != R:
        raise ValueError(f"mpcs_from_paths: {len(link_ids)} link ids for {R} rows")
    row_freq = np.zeros(R, np.int64) if row_freq is None else np.asarray(row_freq, dtype=np.int64).reshape(R)
    plink = ps.link.cpu().numpy()
    order = np.argsort(plink, kind="stable")
    counts = np.bincount(plink, minlength=ps.num_links)
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    n_r = counts[row_link]
    row = np.repeat(np.arange(R), n_r)  # [P] row of every (row, path) pair
    offs = np.arange(len(row)) - np.repeat(np.cumsum(n_r) - n_r, n_r)
    path = order[starts[row_link][row] + offs]
    pw = p[row_freq[row], path]
    keep = pw > 0
    if dynamic_range_db is not None:
        best = np.zeros(R)
        np.maximum.at(best, row[keep], pw[keep])
        keep &= pw >= best[row] * 10.0 ** (-float(dynamic_range_db) / 10.0)
    row, path, pw = row[keep], path[keep], pw[keep]
    angles = {}
    for side, k in (("arrival", ps.k_rx), ("departure", ps.k_tx)):
        az, el = (x.cpu().numpy() for x in F.direction_angles(k.detach().to(torch.float64)))
        angles[f"azimuth_{side}_deg"], angles[f"elevation_{side}_deg"] = az[path], el[path]
    t = mpcs_from_arrays([str(link_ids[r]) for r in row], ps.tau_s.detach().cpu().numpy().astype(np.float64)[path],
                         10.0 * np.log10(pw), source=source, **angles)
    t.df["path_index"] = path
    return t


# -------------------------------------------------------------------------------------------------- matching
@dataclass
class MPCMatch:
    """Measured MPCs matched one-to-one to traced paths (K pairs).

    ``mpc_row`` [K] 0-based row of the MPC table, ``path_index`` [K] index into the PathSet's paths, ``link``
    [K] PathSet link index, ``measured_power_db`` [K], ``delay_error_s`` [K] (traced - measured, after the delay
    reference), ``aoa_error_deg`` / ``aod_error_deg`` [K] great-circle (or azimuth-only) angle between measured
    and traced directions (NaN where not measured). ``unmatched_rows``: MPC rows without a partner inside the
    gates.
    """

    mpc_row: np.ndarray
    path_index: np.ndarray
    link: np.ndarray
    measured_power_db: np.ndarray
    delay_error_s: np.ndarray
    aoa_error_deg: np.ndarray
    aod_error_deg: np.ndarray
    unmatched_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.mpc_row)

    def predicted_power_db(self, a: torch.Tensor) -> torch.Tensor:
        """Traced powers (dB) of the matched paths [..., K] from engine coefficients ``a`` [..., N, R, T]
        (|a|^2 averaged over antenna pairs), differentiable; compare with ``measured_power_db``."""
        from rftwin.physics.channel import path_power, to_db

        return to_db(path_power(a)[..., torch.as_tensor(self.path_index, device=a.device)])


def _angle_between(az1, el1, az2, el2) -> np.ndarray:
    """Great-circle angle (deg) between directions; azimuth-only (wrapped difference) where an elevation is NaN."""
    if el1 is None or el2 is None:
        return np.abs((az1 - az2 + 180.0) % 360.0 - 180.0)
    u = F.unit_vectors(torch.as_tensor(az1), torch.as_tensor(el1)).numpy()
    v = F.unit_vectors(torch.as_tensor(az2), torch.as_tensor(el2)).numpy()
    return np.rad2deg(np.arccos(np.clip((u * v).sum(-1), -1.0, 1.0)))


def match_mpcs(mpcs: MPCTable, ps, link_index: Mapping[str, int] | Sequence[str], *,
               delay_gate_s: float = DEFAULT_DELAY_GATE_S, angle_gate_deg: float = DEFAULT_ANGLE_GATE_DEG,
               delay_reference: str = "absolute", path_mask: torch.Tensor | np.ndarray | None = None) -> MPCMatch:
    """Match measured MPCs to traced paths by delay and angle (gated one-to-one assignment per link).

    ``link_index`` maps each MPC link id to its PathSet link (a mapping, or the id of every PathSet link in
    order). For every link the cost of pairing MPC q with path i is
    (dtau / delay_gate_s)^2 + (dAoA / angle_gate_deg)^2 + (dAoD / angle_gate_deg)^2 over the measured quantities
    (angles great-circle, azimuth-only when elevations are missing); pairs with |dtau| > delay_gate_s or an
    angle error > angle_gate_deg are forbidden, and the minimum-cost assignment
    (:func:`scipy.optimize.linear_sum_assignment`) is kept. ``delay_reference="first"`` compares delays relative
    to each link's first arrival (measured and traced) for sounders without absolute timing. ``path_mask`` [N]
    restricts the candidates (e.g. to specular paths). Geometry only: powers are not used.
    """
    if delay_reference not in ("absolute", "first"):
        raise ValueError(f"delay_reference must be 'absolute' or 'first', not '{delay_reference}'")
    if delay_gate_s <= 0 or angle_gate_deg <= 0:
        raise ValueError("delay_gate_s and angle_gate_deg must be positive")
    mapping = dict(link_index) if isinstance(link_index, Mapping) else {k: i for i, k in enumerate(link_index)}
    mpcs.check_links(list(mapping))
    L = ps.num_links
    bad = sorted({k for k, v in mapping.items() if not 0 <= int(v) < L})
    if bad:
        raise ValueError(f"link_index maps {bad} outside the PathSet's {L} links")
    tau = ps.tau_s.detach().cpu().numpy().astype(np.float64)
    plink = ps.link.cpu().numpy()
    aoa_az, aoa_el = (x.cpu().numpy() for x in F.direction_angles(ps.k_rx.detach().to(torch.float64)))
    aod_az, aod_el = (x.cpu().numpy() for x in F.direction_angles(ps.k_tx.detach().to(torch.float64)))
    keep = np.ones(len(tau), bool) if path_mask is None else np.asarray(torch.as_tensor(path_mask).cpu(), bool)
    m_link = np.array([int(mapping[k]) for k in mpcs.link_id], dtype=np.int64)
    m_tau = mpcs.delay_s
    has = {c: getattr(mpcs, c) for c in ANGLE_COLUMNS}
    rows, paths, links, derr, e_aoa, e_aod = [], [], [], [], [], []
    order = np.argsort(plink, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(plink, minlength=L))])
    for lk in np.unique(m_link):
        q = np.nonzero(m_link == lk)[0]
        cand = order[bounds[lk]:bounds[lk + 1]]
        cand = cand[keep[cand]]
        if not len(cand):
            continue
        t_m, t_p = m_tau[q], tau[cand]
        if delay_reference == "first":
            t_m, t_p = t_m - t_m.min(), t_p - tau[order[bounds[lk]:bounds[lk + 1]]].min()
        dt = t_p[None, :] - t_m[:, None]  # [q, p]
        cost = (dt / delay_gate_s) ** 2
        ok = np.abs(dt) <= delay_gate_s
        errs = {}
        for side, (az_c, el_c, paz, pel) in {"aoa": (ANGLE_COLUMNS[0], ANGLE_COLUMNS[1], aoa_az, aoa_el),
                                             "aod": (ANGLE_COLUMNS[2], ANGLE_COLUMNS[3], aod_az, aod_el)}.items():
            if has[az_c] is None:
                continue
            el_m = None if has[el_c] is None else has[el_c][q][:, None]
            ang = _angle_between(has[az_c][q][:, None], el_m, paz[cand][None, :],
                                 None if el_m is None else pel[cand][None, :])
            cost = cost + (ang / angle_gate_deg) ** 2
            ok &= ang <= angle_gate_deg
            errs[side] = ang
        big = 1e6 + cost.max() * 10 if cost.size else 1e6
        r, c = linear_sum_assignment(np.where(ok, cost, big))
        good = ok[r, c]
        r, c = r[good], c[good]
        rows.append(q[r])
        paths.append(cand[c])
        links.append(np.full(len(r), lk))
        derr.append(dt[r, c])
        e_aoa.append(errs["aoa"][r, c] if "aoa" in errs else np.full(len(r), np.nan))
        e_aod.append(errs["aod"][r, c] if "aod" in errs else np.full(len(r), np.nan))

    def cat(x, dtype):
        return np.concatenate(x).astype(dtype) if x else np.zeros(0, dtype)

    mpc_row = cat(rows, np.int64)
    srt = np.argsort(mpc_row, kind="stable")
    mpc_row = mpc_row[srt]
    return MPCMatch(mpc_row=mpc_row, path_index=cat(paths, np.int64)[srt], link=cat(links, np.int64)[srt],
                    measured_power_db=mpcs.power_db[mpc_row], delay_error_s=cat(derr, np.float64)[srt],
                    aoa_error_deg=cat(e_aoa, np.float64)[srt], aod_error_deg=cat(e_aod, np.float64)[srt],
                    unmatched_rows=np.setdiff1d(np.arange(len(mpcs)), mpc_row))


def match_mpcs_to_rows(mpcs: MPCTable, row_ids: Sequence[str], row_link: np.ndarray, ps, **kw) -> MPCMatch:
    """:func:`match_mpcs` for MPCs whose ``link_id`` names a row of a measurements table (``row_ids`` [M]) whose
    PathSet link is ``row_link`` [M]. Rows sharing a PathSet link (the same geometry at several carriers, or a
    repeated measurement) are matched separately, each one-to-one against all traced paths. ``kw``: gates,
    ``delay_reference``, ``path_mask`` of :func:`match_mpcs`. Raises MeasurementError for unknown link ids."""
    row_ids = [str(x) for x in row_ids]
    row_link = np.asarray(row_link, dtype=np.int64).reshape(-1)
    mpcs.check_links(row_ids)
    pos = {k: i for i, k in enumerate(row_ids)}
    mrow = np.array([pos[k] for k in mpcs.link_id], dtype=np.int64)
    used = np.unique(mrow)
    # rank of each used row among the used rows of its PathSet link: rows of equal rank are matched together
    rank = np.zeros(len(row_ids), np.int64)
    rank[used] = pd.Series(row_link[used]).groupby(row_link[used]).cumcount().to_numpy()
    parts = []
    for r in range(int(rank[used].max()) + 1 if len(used) else 0):
        sel = np.nonzero(rank[mrow] == r)[0]
        sub = mpcs.subset(sel)
        m = match_mpcs(sub, ps, {row_ids[i]: int(row_link[i]) for i in used[rank[used] == r]}, **kw)
        parts.append((sel, m))
    if not parts:
        return match_mpcs(mpcs.subset([]), ps, {}, **kw)

    def cat(name):
        return np.concatenate([getattr(m, name) for _, m in parts])

    rows = np.concatenate([sel[m.mpc_row] for sel, m in parts])
    srt = np.argsort(rows, kind="stable")
    return MPCMatch(mpc_row=rows[srt], path_index=cat("path_index")[srt], link=cat("link")[srt],
                    measured_power_db=cat("measured_power_db")[srt], delay_error_s=cat("delay_error_s")[srt],
                    aoa_error_deg=cat("aoa_error_deg")[srt], aod_error_deg=cat("aod_error_deg")[srt],
                    unmatched_rows=np.sort(np.concatenate([sel[m.unmatched_rows] for sel, m in parts])))


__all__ = ["ANGLE_COLUMNS", "MPCMatch", "MPCTable", "match_mpcs", "match_mpcs_to_rows", "mpcs_from_arrays",
           "mpcs_from_paths", "read_mpcs", "write_mpcs"]
