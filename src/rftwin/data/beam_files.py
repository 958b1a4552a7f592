"""Files of the beam-selection pipeline: MCS tables, codebook weights, beam directions (validated).

- MCS table (CSV/Parquet): ``mcs`` (integer), ``snr_db`` (minimum SNR), ``phy_rate_bps`` (> 0).
- Codebook weights: CSV/Parquet with ``beam``, ``port``, ``real``, ``imag`` (one row per non-zero weight; ports
  0-based, pattern-major as Sionna's antenna ports; missing ports are 0), or NPZ with a complex array
  ``weights`` [beams, ports] (read without pickle).
- Beam directions (CSV/Parquet): ``azimuth_deg`` (from +x towards +y), ``elevation_deg`` (above the x-y
  plane), world frame.
Errors name the file, row (and CSV line) and column; nothing here executes code from the files.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rftwin.data.measurements import (
    MeasurementError,
    Problem,
    _check_columns,
    _check_file,
    _numeric,
    _raise_if,
    _read_table,
)


def read_mcs_table(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mcs [K] int, snr_db [K], phy_rate_bps [K]) of an MCS table file."""
    cols = ("mcs", "snr_db", "phy_rate_bps")
    raw = _read_table(path, "MCS table")
    _check_columns(raw, cols, cols)
    problems: list[Problem] = []
    vals = {c: _numeric(raw, c, problems) for c in cols}
    _raise_if(raw.source, problems)
    if raw.n == 0:
        raise MeasurementError(raw.source, "the MCS table has no rows")
    for i in range(raw.n):
        m = vals["mcs"][i]
        if m != np.round(m) or m < 0:
            problems.append(Problem(f"expected a non-negative integer MCS index, found {m:g}", columns=("mcs",),
                                    **raw.where(i)))
        if vals["phy_rate_bps"][i] <= 0:
            problems.append(Problem(f"expected a positive PHY rate (bit/s), found {vals['phy_rate_bps'][i]:g}",
                                    columns=("phy_rate_bps",), **raw.where(i)))
    mcs = vals["mcs"].astype(np.int64)
    seen: dict[int, int] = {}
    for i, m in enumerate(mcs):
        if int(m) in seen:
            problems.append(Problem(f"MCS {int(m)} repeats row {seen[int(m)] + 1}", columns=("mcs",), **raw.where(i)))
        seen.setdefault(int(m), i)
    _raise_if(raw.source, problems)
    return mcs, vals["snr_db"], vals["phy_rate_bps"]


def read_directions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth_rad [B], elevation_rad [B]) of a beam-direction file."""
    cols = ("azimuth_deg", "elevation_deg")
    raw = _read_table(path, "beam-direction")
    _check_columns(raw, cols, cols + ("beam",))
    problems: list[Problem] = []
    vals = {c: _numeric(raw, c, problems) for c in cols}
    _raise_if(raw.source, problems)
    if raw.n == 0:
        raise MeasurementError(raw.source, "the beam-direction file has no rows")
    for i in range(raw.n):
        if abs(vals["elevation_deg"][i]) > 90:
            problems.append(Problem(f"elevation must lie in [-90, 90] degrees, found {vals['elevation_deg'][i]:g}",
                                    columns=("elevation_deg",), **raw.where(i)))
    _raise_if(raw.source, problems)
    return np.deg2rad(vals["azimuth_deg"]), np.deg2rad(vals["elevation_deg"])


def read_weights(path: str | os.PathLike, num_ports: int) -> np.ndarray:
    """Complex beam weights [B, num_ports] (or [B, num_ports / P] spatial weights when the file has that many
    ports: the caller expands them per pattern) of a codebook file (not normalised)."""
    path = Path(path)
    suf = path.suffix.lower()
    if suf == ".npz":
        source = _check_file(path, "codebook")
        try:
            with np.load(path, allow_pickle=False) as z:
                if "weights" not in z.files:
                    raise MeasurementError(source, f"no array 'weights' (found: {', '.join(z.files) or 'none'}); "
                                                   "expected complex weights [beams, ports]")
                w = np.asarray(z["weights"])
        except (ValueError, OSError) as exc:
            if isinstance(exc, MeasurementError):
                raise
            raise MeasurementError(source, f"cannot be read as an NPZ archive without pickle: {exc}") from exc
        if w.ndim != 2 or w.shape[0] == 0:
            raise MeasurementError(source, f"'weights' has shape {w.shape}; expected [beams, ports]")
        if not (np.issubdtype(w.dtype, np.number)):
            raise MeasurementError(source, f"'weights' has dtype {w.dtype}; expected complex numbers")
        w = w.astype(np.complex128)
        if not np.isfinite(w).all():
            raise MeasurementError(source, "'weights' holds NaN or infinite values")
        return w
    cols = ("beam", "port", "real", "imag")
    raw = _read_table(path, "codebook")
    _check_columns(raw, cols, cols)
    problems: list[Problem] = []
    vals = {c: _numeric(raw, c, problems) for c in cols}
    _raise_if(raw.source, problems)
    if raw.n == 0:
        raise MeasurementError(raw.source, "the codebook has no rows")
    for i in range(raw.n):
        for c in ("beam", "port"):
            v = vals[c][i]
            if v != np.round(v) or v < 0:
                problems.append(Problem(f"expected a non-negative integer index, found {v:g}", columns=(c,),
                                        **raw.where(i)))
        if vals["port"][i] >= num_ports:
            problems.append(Problem(f"port {vals['port'][i]:g} does not exist: the array has {num_ports} ports "
                                    f"(0..{num_ports - 1})", columns=("port",), **raw.where(i)))
    _raise_if(raw.source, problems)
    beams = vals["beam"].astype(np.int64)
    ports = vals["port"].astype(np.int64)
    w = np.zeros((int(beams.max()) + 1, num_ports), dtype=np.complex128)
    seen: dict[tuple[int, int], int] = {}
    for i, key in enumerate(zip(beams.tolist(), ports.tolist())):
        if key in seen:
            problems.append(Problem(f"beam {key[0]} port {key[1]} repeats row {seen[key] + 1}",
                                    columns=("beam", "port"), **raw.where(i)))
        seen.setdefault(key, i)
    _raise_if(raw.source, problems)
    w[beams, ports] = vals["real"] + 1j * vals["imag"]
    empty = np.nonzero(~np.any(w != 0, axis=1))[0]
    if len(empty):
        raise MeasurementError(raw.source, Problem(f"beam(s) {empty.tolist()[:10]} have no non-zero weight; "
                                                   "beams are numbered 0..B-1 without gaps", columns=("beam",)))
    return w


__all__ = ["read_directions", "read_mcs_table", "read_weights"]
