"""Measurement and link files: reading and validation.

Measurements file (CSV or Parquet, by suffix; v1 columns plus optional v2 ones), one row per measured link:

========================  =====  =====================================================================
column                    unit   notes
========================  =====  =====================================================================
``link_id``               --     optional (generated ``L0001``, ``L0002``, ... when absent); unique
``tx_x,tx_y,tx_z``        m      transmitter position (scene coordinates)
``rx_x,rx_y,rx_z``        m      receiver position
``frequency_hz``          Hz     carrier frequency, > 0
``rss_dbm``               dBm    received power; needs ``tx_power_dbm``
``path_gain_db``          dB     path gain (received / transmitted power); at least one of the two
``tx_power_dbm``          dBm    optional (required with ``rss_dbm``)
``tx_id``                 --     optional transmitter name; rows sharing it must share the tx position
``delay_spread_s``        s      optional RMS delay spread, >= 0
``mean_delay_s``          s      optional power-weighted mean delay, >= 0
``k_factor_db``           dB     optional Rician K-factor, in [-100, 100]
``angular_spread_deg``    deg    optional azimuth angular spread (of arrival), in [0, 360]
========================  =====  =====================================================================

Several transmitters and several carrier frequencies may share one file: every row carries its own
transmitter position and ``frequency_hz`` (the same geometry measured at two frequencies is two rows with
different ``link_id``). Wideband data (CFR / CIR taps) live in a sidecar keyed by ``link_id``
(:mod:`rftwin.data.wideband`), multipath components in a long table (:mod:`rftwin.data.mpc`).

A links file (links to predict) has ``link_id`` (required), the six positions, ``frequency_hz`` and an optional
``tx_power_dbm``. Column names are case-insensitive; extra columns are kept in the DataFrame. CSV files may
contain blank lines and comment lines starting with ``#``.

Every problem raises :class:`MeasurementError` naming the file, the 1-based data row (and, for CSV, the file
line), the column and what was expected. These functions only read; they never write anything.
"""
from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rftwin.materials.itu import ITU_NAMES

POS_COLS = ("tx_x", "tx_y", "tx_z", "rx_x", "rx_y", "rx_z")
TX_COLS, RX_COLS = POS_COLS[:3], POS_COLS[3:]
CSV_SUFFIXES = (".csv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
LABEL_SUFFIXES = (".yaml", ".yml", ".json")
#: known columns of each file kind, in canonical order
#: optional scalar channel features of a measurement row (units in the column names)
FEATURE_COLUMNS = ("delay_spread_s", "mean_delay_s", "k_factor_db", "angular_spread_deg")
MEASUREMENT_COLUMNS = ("link_id", "tx_id", *POS_COLS, "frequency_hz", "path_gain_db", "rss_dbm", "tx_power_dbm",
                       *FEATURE_COLUMNS)
LINK_COLUMNS = ("link_id", *POS_COLS, "frequency_hz", "tx_power_dbm")
MIN_FREQUENCY_HZ = 1e6  # below this the value is almost certainly in MHz/GHz, and no ITU material is defined
MAX_FREQUENCY_HZ = 1e12
MAX_DELAY_SPREAD_S = 1e-3  # above this the value is almost certainly not in seconds
MAX_ABS_K_FACTOR_DB = 100.0
MAX_ANGULAR_SPREAD_DEG = 360.0
RSS_GAIN_TOLERANCE_DB = 0.01
MAX_PATH_GAIN_DB = 0.0  # a passive channel does not amplify
MIN_PATH_GAIN_DB = -250.0  # ~ -170 dBm at 80 dBm EIRP: below every receiver's noise floor
MAX_LISTED_PROBLEMS = 20


# ----------------------------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class Problem:
    """One validation problem: where (1-based data row, file line, columns or mapping key) and what."""

    message: str
    row: int | None = None
    line: int | None = None
    columns: tuple[str, ...] = ()
    key: str | None = None

    def format(self, source: str) -> str:
        parts = [source]
        if self.row is not None:
            parts.append(f"row {self.row}" + (f" (line {self.line})" if self.line is not None else ""))
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if len(self.columns) == 1:
            parts.append(f"column '{self.columns[0]}'")
        elif self.columns:
            parts.append("columns " + ", ".join(f"'{c}'" for c in self.columns))
        if self.key is not None:
            parts.append(f"key '{self.key}'")
        return ", ".join(parts) + ": " + self.message


class MeasurementError(ValueError):
    """Invalid measurement / link / label input. ``problems`` lists every problem found (first one first);
    ``path``, ``row``, ``line``, ``column`` describe the first."""

    def __init__(self, source: str | os.PathLike, problems: Sequence[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.source = str(source)
        self.problems: list[Problem] = list(problems)
        first = self.problems[0]
        self.row, self.line, self.key = first.row, first.line, first.key
        self.column = first.columns[0] if first.columns else None
        lines = [p.format(self.source) for p in self.problems[:MAX_LISTED_PROBLEMS]]
        if len(self.problems) > MAX_LISTED_PROBLEMS:
            lines.append(f"... and {len(self.problems) - MAX_LISTED_PROBLEMS} more problems in {self.source}")
        super().__init__("\n".join(lines))

    @property
    def path(self) -> str:
        return self.source


def _raise_if(source: str, problems: list[Problem]) -> None:
    if problems:
        raise MeasurementError(source, problems)


# -------------------------------------------------------------------------------------------- containers
class _Rows:
    """Row count of a link table (``link_id`` holds one id per row)."""

    link_id: list[str]

    def __len__(self) -> int:
        return len(self.link_id)

    @property
    def num_links(self) -> int:
        return len(self.link_id)


@dataclass
class Links(_Rows):
    """Links to predict (L links). Positions in m, frequencies in Hz, powers in dBm."""

    df: pd.DataFrame
    tx_pos: np.ndarray  # [L, 3] float64
    rx_pos: np.ndarray  # [L, 3] float64
    frequency_hz: np.ndarray  # [L]
    link_id: list[str]
    tx_power_dbm: np.ndarray | None  # [L] or None
    source: Path | None = None



@dataclass
class Measurements(_Rows):
    """Measured links (M rows). Positions in m, frequencies in Hz, gains in dB, powers in dBm, delays in s,
    angles in degrees. ``df`` is the validated table (canonical lower-case column names, numeric columns float64,
    a ``path_gain_db`` column always present, extra columns kept). The optional scalar features
    (``delay_spread_s``, ``mean_delay_s``, ``k_factor_db``, ``angular_spread_deg``) are [M] arrays or None;
    ``tx_id`` [M] transmitter names or None."""

    df: pd.DataFrame
    tx_pos: np.ndarray  # [M, 3] float64
    rx_pos: np.ndarray  # [M, 3] float64
    frequency_hz: np.ndarray  # [M]
    path_gain_db: np.ndarray  # [M]
    delay_spread_s: np.ndarray | None  # [M] or None
    link_id: list[str]
    tx_power_dbm: np.ndarray | None  # [M] or None
    source: Path | None = None
    mean_delay_s: np.ndarray | None = None  # [M] or None
    k_factor_db: np.ndarray | None = None  # [M] or None
    angular_spread_deg: np.ndarray | None = None  # [M] or None
    tx_id: list[str] | None = None

    def features(self) -> dict[str, np.ndarray]:
        """The scalar channel features present in the table ({column name: [M] array}), path gain included."""
        out = {"path_gain_db": self.path_gain_db}
        for c in FEATURE_COLUMNS:
            v = getattr(self, c)
            if v is not None:
                out[c] = v
        return out

    def transmitters(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct transmitter positions [T, 3] (m) and the transmitter index of every row [M]."""
        u, inv = np.unique(self.tx_pos, axis=0, return_inverse=True)
        return u, inv.reshape(-1)

    @property
    def rss_dbm(self) -> np.ndarray | None:
        """Received power [M] (dBm) when the transmit power is known, else None."""
        return None if self.tx_power_dbm is None else self.path_gain_db + self.tx_power_dbm

    def subset(self, index: Sequence[int] | np.ndarray) -> Measurements:
        """Rows ``index`` (integer positions or a boolean mask) as a new Measurements."""
        idx = np.arange(len(self))[np.asarray(index)] if len(self) else np.zeros(0, np.int64)
        return Measurements(
            df=self.df.iloc[idx].reset_index(drop=True), tx_pos=self.tx_pos[idx], rx_pos=self.rx_pos[idx],
            frequency_hz=self.frequency_hz[idx], path_gain_db=self.path_gain_db[idx],
            delay_spread_s=None if self.delay_spread_s is None else self.delay_spread_s[idx],
            link_id=[self.link_id[i] for i in idx],
            tx_power_dbm=None if self.tx_power_dbm is None else self.tx_power_dbm[idx], source=self.source,
            mean_delay_s=None if self.mean_delay_s is None else self.mean_delay_s[idx],
            k_factor_db=None if self.k_factor_db is None else self.k_factor_db[idx],
            angular_spread_deg=None if self.angular_spread_deg is None else self.angular_spread_deg[idx],
            tx_id=None if self.tx_id is None else [self.tx_id[i] for i in idx])

    def links(self) -> Links:
        """The measured links as a :class:`Links` (e.g. to predict at them)."""
        cols = [c for c in LINK_COLUMNS if c in self.df.columns]
        return Links(df=self.df[cols].copy(), tx_pos=self.tx_pos.copy(), rx_pos=self.rx_pos.copy(),
                     frequency_hz=self.frequency_hz.copy(), link_id=list(self.link_id),
                     tx_power_dbm=None if self.tx_power_dbm is None else self.tx_power_dbm.copy(),
                     source=self.source)

    @classmethod
    def from_arrays(cls, tx_pos, rx_pos, frequency_hz, path_gain_db, *, delay_spread_s=None, link_id=None,
                    tx_power_dbm=None, mean_delay_s=None, k_factor_db=None, angular_spread_deg=None, tx_id=None,
                    scene=None, source: str = "<arrays>", **check) -> Measurements:
        """Build and validate Measurements from arrays (positions [M, 3] m, frequency [M] or scalar Hz, gain [M]
        dB, optional delay spread / mean delay [M] s, K-factor [M] dB, angular spread [M] deg, link ids,
        transmitter ids, transmit power [M] or scalar dBm); same checks as a file."""
        tx = np.asarray(tx_pos, dtype=np.float64).reshape(-1, 3)
        rx = np.asarray(rx_pos, dtype=np.float64).reshape(-1, 3)
        m = len(tx)
        cols: dict[str, np.ndarray] = {c: (tx if c.startswith("tx") else rx)[:, i % 3] for i, c in enumerate(POS_COLS)}
        cols["frequency_hz"] = np.broadcast_to(np.asarray(frequency_hz, dtype=np.float64), (m,)).copy()
        cols["path_gain_db"] = np.asarray(path_gain_db, dtype=np.float64).reshape(m)
        if tx_power_dbm is not None:
            cols["tx_power_dbm"] = np.broadcast_to(np.asarray(tx_power_dbm, dtype=np.float64), (m,)).copy()
        for name, v in (("delay_spread_s", delay_spread_s), ("mean_delay_s", mean_delay_s),
                        ("k_factor_db", k_factor_db), ("angular_spread_deg", angular_spread_deg)):
            if v is not None:
                cols[name] = np.asarray(v, dtype=np.float64).reshape(m)
        if tx_id is not None:
            cols["tx_id"] = np.asarray([str(x) for x in tx_id], dtype=object)
        if link_id is not None:
            cols["link_id"] = np.asarray([str(x) for x in link_id], dtype=object)
        raw = _Raw(source=source, columns=cols, n=m, lines=None)
        return _build_measurements(raw, None, scene, **check)

    def to_frame(self) -> pd.DataFrame:
        """The table in the v1 file layout (known columns first, in canonical order)."""
        known = [c for c in MEASUREMENT_COLUMNS if c in self.df.columns]
        return self.df[known + [c for c in self.df.columns if c not in known]].copy()


def write_measurements(path: str | os.PathLike, m: Measurements) -> Path:
    """Write ``m`` as a v1 measurements file (CSV or Parquet by suffix), atomically."""
    from rftwin.io import write_table

    path = Path(path)
    if path.suffix.lower() not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type '{path.suffix}'; expected .csv or .parquet")
    write_table(path, m.to_frame())
    return path


# ----------------------------------------------------------------------------------------------- reading
@dataclass
class _Raw:
    """A table as read: columns (object arrays of cells, or float arrays), row count, CSV line numbers."""

    source: str
    columns: dict[str, np.ndarray]
    n: int
    lines: np.ndarray | None  # [n] 1-based file line of each data row (CSV), None otherwise
    problems: list[Problem] = field(default_factory=list)

    def where(self, i: int) -> dict:
        return {"row": int(i) + 1, "line": None if self.lines is None else int(self.lines[i])}


def _check_file(path: Path, what: str) -> str:
    source = str(path)
    if not path.exists():
        raise MeasurementError(source, f"no such file (expected a {what} file)")
    if not path.is_file():
        raise MeasurementError(source, f"not a regular file (expected a {what} file)")
    return source


def _read_csv(path: Path, source: str) -> _Raw:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MeasurementError(source, f"cannot be read as UTF-8 text ({exc.reason} at byte {exc.start}); "
                                       "expected a CSV file with a header line") from exc
    except OSError as exc:
        raise MeasurementError(source, f"cannot be read: {exc.strerror or exc}") from exc
    if "\x00" in text:
        raise MeasurementError(source, "contains NUL bytes; expected a CSV text file (is it a binary file?)")
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 0
    records: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        for rec in reader:
            first_line, start = start, reader.line_num + 1
            if not rec or all(not c.strip() for c in rec) or rec[0].lstrip().startswith("#"):
                continue
            if header is None:
                header, header_line = rec, first_line
            else:
                records.append(rec)
                lines.append(first_line)
    except csv.Error as exc:
        raise MeasurementError(source, Problem(f"malformed CSV: {exc}", line=reader.line_num)) from exc
    if header is None:
        raise MeasurementError(source, "empty file; expected a header line with column names followed by data rows")
    names = [h.strip().lower() for h in header]
    while names and names[-1] == "":  # trailing delimiter on the header line
        names.pop()
    problems = []
    for j, nme in enumerate(names):
        if not nme:
            problems.append(Problem(f"column {j + 1} of the header has an empty name", line=header_line))
    dup = sorted({n for n in names if n and names.count(n) > 1})
    if dup:
        problems.append(Problem("duplicate column names in the header: " + ", ".join(dup), line=header_line))
    _raise_if(source, problems)
    if not records:
        raise MeasurementError(source, Problem("no data rows after the header", line=header_line))
    k = len(names)
    cells = np.empty((len(records), k), dtype=object)
    for i, rec in enumerate(records):
        if len(rec) > k and all(not c.strip() for c in rec[k:]):
            rec = rec[:k]
        if len(rec) != k:
            problems.append(Problem(f"expected {k} comma-separated fields (as in the header), found {len(rec)}",
                                    row=i + 1, line=lines[i]))
            continue
        cells[i] = rec
    _raise_if(source, problems)
    cols = {n: cells[:, j] for j, n in enumerate(names)}
    return _Raw(source=source, columns=cols, n=len(records), lines=np.asarray(lines, dtype=np.int64))


def _read_parquet(path: Path, source: str) -> _Raw:
    try:
        df = pd.read_parquet(path)
    except ImportError as exc:  # pragma: no cover - install problem
        raise MeasurementError(source, f"cannot read Parquet: {exc}") from exc
    except Exception as exc:
        raise MeasurementError(source, f"cannot be read as a Parquet file: {exc}") from exc
    names = [str(c).strip().lower() for c in df.columns]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MeasurementError(source, "duplicate column names: " + ", ".join(dup))
    if len(df.columns) == 0:
        raise MeasurementError(source, "empty file; expected columns with data rows")
    if len(df) == 0:
        raise MeasurementError(source, "no data rows")
    cols = {}
    for n, c in zip(names, df.columns):
        s = df[c]
        if pd.api.types.is_float_dtype(s.dtype) or (pd.api.types.is_integer_dtype(s.dtype)
                                                     and not pd.api.types.is_bool_dtype(s.dtype)):
            cols[n] = s.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            cols[n] = s.to_numpy(dtype=object)
    return _Raw(source=source, columns=cols, n=len(df), lines=None)


def _read_table(path: str | os.PathLike, what: str) -> _Raw:
    path = Path(path)
    source = _check_file(path, what)
    suf = path.suffix.lower()
    if suf in CSV_SUFFIXES:
        return _read_csv(path, source)
    if suf in PARQUET_SUFFIXES:
        return _read_parquet(path, source)
    raise MeasurementError(source, f"unsupported file type '{path.suffix}'; expected a .csv or .parquet {what} file")


# ------------------------------------------------------------------------------------------- validation
def _describe(v: object) -> str:
    s = repr(v) if not isinstance(v, str) else repr(v.strip())
    return s if len(s) <= 40 else s[:37] + "..."


def _numeric(raw: _Raw, col: str, problems: list[Problem]) -> np.ndarray:
    """Column ``col`` as float64 [n]; non-numeric, empty, NaN and infinite cells become problems."""
    cells = raw.columns[col]
    if cells.dtype == np.float64:
        vals = cells.astype(np.float64, copy=True)
        bad = ~np.isfinite(vals)
    else:
        vals = np.full(raw.n, np.nan)
        ok = np.zeros(raw.n, dtype=bool)
        for i, v in enumerate(cells):
            if isinstance(v, (bool, np.bool_)) or v is None:
                continue
            try:
                vals[i] = float(v.strip() if isinstance(v, str) else v)
                ok[i] = True
            except (TypeError, ValueError):
                continue
        bad = ~ok | ~np.isfinite(vals)
    for i in np.nonzero(bad)[0]:
        v = cells[i]
        if v is None or (isinstance(v, str) and not v.strip()) or v is pd.NA:
            msg = "missing value; expected a finite number"
        elif isinstance(v, (float, np.floating)) and math.isnan(v):
            msg = "missing value (NaN); expected a finite number"
        elif np.isnan(vals[i]) and not (isinstance(v, str) and v.strip().lower() in ("nan", "+nan", "-nan")):
            msg = f"expected a number, found {_describe(v)}"
        elif np.isnan(vals[i]):
            msg = "NaN is not allowed; expected a finite number"
        else:
            msg = f"{_describe(v)} is not finite; expected a finite number"
        problems.append(Problem(msg, columns=(col,), **raw.where(i)))
    return vals


def _identifier(v) -> str:
    """A table cell as an identifier string: empty for missing values, integral floats without '.0'."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _link_ids(raw: _Raw, problems: list[Problem]) -> list[str]:
    if "link_id" not in raw.columns:
        width = max(4, len(str(raw.n)))
        return [f"L{i + 1:0{width}d}" for i in range(raw.n)]
    out: list[str] = []
    first: dict[str, int] = {}
    for i, v in enumerate(raw.columns["link_id"]):
        s = _identifier(v)
        if not s:
            problems.append(Problem("empty link_id; expected a non-empty identifier", columns=("link_id",),
                                    **raw.where(i)))
        elif s in first:
            j = first[s]
            where = f"row {j + 1}" + ("" if raw.lines is None else f" (line {raw.lines[j]})")
            problems.append(Problem(f"duplicate link_id '{s}' (also in {where}); link ids must be unique",
                                    columns=("link_id",), **raw.where(i)))
        else:
            first[s] = i
        out.append(s)
    return out


def _tx_ids(raw: _Raw, tx: np.ndarray, problems: list[Problem], tolerance_m: float) -> list[str]:
    """Transmitter names [n]; rows with the same name must have the same transmitter position."""
    out: list[str] = []
    first: dict[str, int] = {}
    for i, v in enumerate(raw.columns["tx_id"]):
        s = _identifier(v)
        out.append(s)
        if not s:
            problems.append(Problem("empty tx_id; expected a transmitter name", columns=("tx_id",),
                                    **raw.where(i)))
            continue
        j = first.setdefault(s, i)
        d = float(np.linalg.norm(tx[i] - tx[j]))
        if j != i and np.isfinite(d) and d > tolerance_m:
            where = f"row {j + 1}" + ("" if raw.lines is None else f" (line {raw.lines[j]})")
            problems.append(Problem(
                f"transmitter '{s}' is at ({tx[i, 0]:g}, {tx[i, 1]:g}, {tx[i, 2]:g}) m here but at "
                f"({tx[j, 0]:g}, {tx[j, 1]:g}, {tx[j, 2]:g}) m in {where} ({d:.3g} m apart); one tx_id must "
                "have one position", columns=("tx_id", *TX_COLS), **raw.where(i)))
    return out


def _check_columns(raw: _Raw, required: Sequence[str], known: Sequence[str], one_of: Sequence[str] = ()) -> None:
    missing = [c for c in required if c not in raw.columns]
    need_one = bool(one_of) and not any(c in raw.columns for c in one_of)
    if not missing and not need_one:
        return
    msg = []
    if missing:
        msg.append("missing required column" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
    if need_one:
        msg.append("needs at least one of the columns " + " or ".join(one_of))
    unknown = [c for c in raw.columns if c not in known]
    hints = []
    for c in unknown:
        close = difflib.get_close_matches(c, list(missing) + list(one_of), n=1, cutoff=0.75)
        if close:
            hints.append(f"'{c}' (did you mean '{close[0]}'?)")
    text = "; ".join(msg) + f" (found columns: {', '.join(raw.columns)})"
    if hints:
        text += "; unrecognised: " + ", ".join(hints)
    raise MeasurementError(raw.source, text)


def _check_values(raw: _Raw, vals: dict[str, np.ndarray], problems: list[Problem]) -> None:
    f = vals["frequency_hz"]
    for i in np.nonzero(np.isfinite(f) & ((f < MIN_FREQUENCY_HZ) | (f > MAX_FREQUENCY_HZ)))[0]:
        if f[i] <= 0:
            msg = f"frequency must be positive, found {f[i]:g}; expected Hz (e.g. 3.5e9)"
        elif f[i] < MIN_FREQUENCY_HZ:
            msg = (f"{f[i]:g} Hz is below 1 MHz; frequency_hz must be in Hz (e.g. 3.5e9 for 3.5 GHz), "
                   "not MHz or GHz")
        else:
            msg = f"{f[i]:g} Hz is above 1 THz; expected a radio frequency in Hz (e.g. 3.5e9)"
        problems.append(Problem(msg, columns=("frequency_hz",), **raw.where(i)))
    for col, what in (("delay_spread_s", "delay spread"), ("mean_delay_s", "mean delay")):
        if col not in vals:
            continue
        d = vals[col]
        for i in np.nonzero(np.isfinite(d) & ((d < 0) | (d > MAX_DELAY_SPREAD_S)))[0]:
            msg = (f"{what} must be >= 0 s, found {d[i]:g}" if d[i] < 0 else
                   f"{d[i]:g} s is implausibly large; {col} must be in seconds (e.g. 2.5e-8 for 25 ns)")
            problems.append(Problem(msg, columns=(col,), **raw.where(i)))
    if "k_factor_db" in vals:
        k = vals["k_factor_db"]
        for i in np.nonzero(np.isfinite(k) & (np.abs(k) > MAX_ABS_K_FACTOR_DB))[0]:
            problems.append(Problem(f"{k[i]:g} dB is outside [-{MAX_ABS_K_FACTOR_DB:g}, {MAX_ABS_K_FACTOR_DB:g}] "
                                    "dB; k_factor_db must be the Rician K-factor in dB (10 log10 of the power "
                                    "ratio)", columns=("k_factor_db",), **raw.where(i)))
    if "angular_spread_deg" in vals:
        a = vals["angular_spread_deg"]
        for i in np.nonzero(np.isfinite(a) & ((a < 0) | (a > MAX_ANGULAR_SPREAD_DEG)))[0]:
            msg = (f"angular spread must be >= 0 deg, found {a[i]:g}" if a[i] < 0 else
                   f"{a[i]:g} is above {MAX_ANGULAR_SPREAD_DEG:g}; angular_spread_deg must be in degrees")
            problems.append(Problem(msg, columns=("angular_spread_deg",), **raw.where(i)))


def _check_path_gain(raw: _Raw, vals: dict[str, np.ndarray], problems: list[Problem]) -> None:
    """A passive channel has a path gain below 0 dB; below MIN_PATH_GAIN_DB nothing is measurable."""
    g = vals["path_gain_db"]
    cols = ("path_gain_db",) if "path_gain_db" in raw.columns else ("rss_dbm", "tx_power_dbm")
    what = "path_gain_db" if cols == ("path_gain_db",) else "rss_dbm - tx_power_dbm"
    for i in np.nonzero(np.isfinite(g) & ((g > MAX_PATH_GAIN_DB) | (g < MIN_PATH_GAIN_DB)))[0]:
        if g[i] > MAX_PATH_GAIN_DB:
            msg = (f"path gain {what} = {g[i]:g} dB is above {MAX_PATH_GAIN_DB:g} dB: a passive channel cannot "
                   "amplify (wrong sign, or rss_dbm/tx_power_dbm swapped or in other units?)")
        else:
            msg = (f"path gain {what} = {g[i]:g} dB is below {MIN_PATH_GAIN_DB:g} dB: far below any receiver's "
                   "noise floor (wrong units?)")
        problems.append(Problem(msg, columns=cols, **raw.where(i)))


def _check_geometry(raw: _Raw, tx: np.ndarray, rx: np.ndarray, scene, problems: list[Problem], *,
                    bbox_margin_m: float, above_margin_m: float, tolerance_m: float) -> None:
    ok = np.isfinite(tx).all(1) & np.isfinite(rx).all(1)
    dist = np.linalg.norm(tx - rx, axis=1)
    for i in np.nonzero(ok & (dist < tolerance_m))[0]:
        problems.append(Problem(f"the transmitter and receiver positions coincide (distance {dist[i]:.3g} m); "
                                "expected distinct link end points", columns=POS_COLS, **raw.where(i)))
    if scene is None:
        return
    lo, hi = scene.bbox()
    lo_ok = lo - bbox_margin_m - tolerance_m
    hi_ok = np.array([hi[0] + bbox_margin_m, hi[1] + bbox_margin_m, hi[2] + above_margin_m]) + tolerance_m
    for pos, cols in ((tx, TX_COLS), (rx, RX_COLS)):
        bad = ok[:, None] & ((pos < lo_ok) | (pos > hi_ok))  # [n, 3]
        for i, k in zip(*np.nonzero(bad)):
            v, c = pos[i, k], cols[k]
            if k < 2:
                rng = f"[{lo[k] - bbox_margin_m:g}, {hi[k] + bbox_margin_m:g}] m"
                msg = (f"{v:g} m is outside the scene's bounding box ({'xy'[k]} in {rng}, "
                       f"bbox_margin_m={bbox_margin_m:g})")
            elif v < lo_ok[k]:
                msg = (f"{v:g} m is below the scene's bounding box (z >= {lo[k] - bbox_margin_m:g} m, "
                       f"bbox_margin_m={bbox_margin_m:g})")
            else:
                msg = (f"{v:g} m is higher than the scene's top ({hi[k]:g} m) plus above_margin_m="
                       f"{above_margin_m:g} m")
            problems.append(Problem(msg, columns=(c,), **raw.where(i)))
    _check_inside_objects(raw, tx, rx, ok, scene, problems, tolerance_m)


def _check_inside_objects(raw: _Raw, tx: np.ndarray, rx: np.ndarray, ok: np.ndarray, scene,
                          problems: list[Problem], tolerance_m: float) -> None:
    closed = [(o.name, i) for i, o in enumerate(scene.objects) if getattr(o, "watertight", False)]
    if not closed:
        return
    meshes = scene.meshes()
    found: list[tuple[int, int, Problem]] = []
    for name, oi in closed:
        v, f = meshes[oi]
        if len(f) == 0:
            continue
        vlo, vhi = v.min(0) - tolerance_m, v.max(0) + tolerance_m
        for side, (pos, cols) in enumerate(((tx, TX_COLS), (rx, RX_COLS))):
            cand = np.nonzero(ok & np.all((pos >= vlo) & (pos <= vhi), axis=1))[0]
            if len(cand) == 0:
                continue
            inside = points_inside_mesh(pos[cand], v, f, tolerance_m=tolerance_m)
            for i in cand[inside]:
                p = pos[i]
                what = "transmitter" if side == 0 else "receiver"
                found.append((int(i), side, Problem(
                    f"the {what} at ({p[0]:g}, {p[1]:g}, {p[2]:g}) m is inside the closed object '{name}'; "
                    "expected a position in free space", columns=cols, **raw.where(i))))
    problems.extend(p for _, _, p in sorted(found, key=lambda t: (t[0], t[1])))


# ----------------------------------------------------------------------------------------- point in mesh
def _weld(v: np.ndarray, f: np.ndarray, decimals: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices that coincide after rounding to ``decimals`` (flat-shaded meshes duplicate them)."""
    _, first, inv = np.unique(np.round(v, decimals), axis=0, return_index=True, return_inverse=True)
    return v[first], inv.reshape(-1)[f]


def _orient_consistently(f: np.ndarray) -> np.ndarray:
    """Flip faces so that every shared edge is traversed in opposite directions (per connected component).

    ``f`` [F, 3] welded vertex indices. Non-manifold edges (more than two faces) are ignored for propagation.
    """
    n = len(f)
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for fi, (a, b, c) in enumerate(f.tolist()):
        for u, w in ((a, b), (b, c), (c, a)):
            key = (u, w) if u < w else (w, u)
            edges.setdefault(key, []).append((fi, 1 if u < w else -1))
    nbrs: list[list[tuple[int, bool]]] = [[] for _ in range(n)]
    for lst in edges.values():
        if len(lst) == 2:
            (f1, d1), (f2, d2) = lst
            same = d1 == d2  # same traversal direction -> the two faces disagree in orientation
            nbrs[f1].append((f2, same))
            nbrs[f2].append((f1, same))
    flip = np.zeros(n, dtype=bool)
    seen = np.zeros(n, dtype=bool)
    for s in range(n):
        if seen[s]:
            continue
        seen[s] = True
        stack = [s]
        while stack:
            x = stack.pop()
            for y, same in nbrs[x]:
                if not seen[y]:
                    seen[y] = True
                    flip[y] = flip[x] ^ same
                    stack.append(y)
    out = f.copy()
    out[flip] = out[flip][:, [0, 2, 1]]
    return out


def winding_numbers(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, *,
                    coplanar_tol_m: float = 0.0, chunk: int = 2_000_000) -> np.ndarray:
    """Generalised winding number [P] of ``points`` [P, 3] w.r.t. the triangle mesh (``vertices`` [V, 3] m,
    ``faces`` [F, 3]): the sum of signed solid angles / 4 pi (Van Oosterom & Strackee). For a closed,
    consistently oriented mesh it is +-1 inside and 0 outside. Triangles whose plane is within
    ``coplanar_tol_m`` of a point contribute 0 for that point (points on the surface get about +-1/2)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]  # [F, 3, 3]
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    nlen = np.linalg.norm(nrm, axis=1)
    keep = nlen > 0
    tri, nrm = tri[keep], nrm[keep] / nlen[keep, None]
    out = np.zeros(len(p))
    step = max(1, chunk // max(1, len(tri)))
    for s in range(0, len(p), step):
        q = p[s:s + step, None, None, :]
        r = tri[None] - q  # [p, F, 3, 3]
        a, b, c = r[:, :, 0], r[:, :, 1], r[:, :, 2]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        det = np.einsum("pfk,pfk->pf", a, np.cross(b, c))
        div = (la * lb * lc + np.einsum("pfk,pfk->pf", a, b) * lc + np.einsum("pfk,pfk->pf", b, c) * la
               + np.einsum("pfk,pfk->pf", c, a) * lb)
        omega = 2.0 * np.arctan2(det, div)
        plane_dist = np.abs(np.einsum("pfk,fk->pf", a, nrm))
        omega = np.where(plane_dist <= coplanar_tol_m, 0.0, omega)
        out[s:s + step] = omega.sum(1) / (4.0 * np.pi)
    return out


def points_inside_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, *,
                       tolerance_m: float = 1e-3) -> np.ndarray:
    """Boolean [P]: which ``points`` [P, 3] (m) lie inside the closed triangle mesh by more than
    ``tolerance_m``. Face orientation is repaired first (any consistent orientation works); points on or
    within the tolerance of the surface count as outside."""
    vw, fw = _weld(np.asarray(vertices, np.float64), np.asarray(faces, np.int64))
    fw = _orient_consistently(fw)
    w = winding_numbers(points, vw, fw, coplanar_tol_m=tolerance_m)
    return np.abs(w) > 0.75


# --------------------------------------------------------------------------------------------- building
def _canonical_frame(raw: _Raw, vals: dict[str, np.ndarray], link_id: list[str], order: Sequence[str]
                     ) -> pd.DataFrame:
    data: dict[str, object] = {"link_id": link_id}
    for c in order:
        if c in vals:
            data[c] = vals[c]
    for c, cells in raw.columns.items():
        if c not in data:
            data[c] = cells
    return pd.DataFrame(data)


def _build_measurements(raw: _Raw, path: Path | None, scene, *, labels: Mapping[str, str] | None = None,
                        bbox_margin_m: float = 0.0, above_margin_m: float = 50.0,
                        tolerance_m: float = 1e-3) -> Measurements:
    _check_columns(raw, [*POS_COLS, "frequency_hz"], MEASUREMENT_COLUMNS, one_of=("rss_dbm", "path_gain_db"))
    if "rss_dbm" in raw.columns and "tx_power_dbm" not in raw.columns:
        raise MeasurementError(raw.source, f"column rss_dbm needs the column tx_power_dbm (transmit power, dBm) "
                                           f"to compute the path gain (found columns: {', '.join(raw.columns)})")
    if labels is not None:
        validate_labels(labels, scene)
    problems: list[Problem] = []
    link_id = _link_ids(raw, problems)
    numeric = [c for c in MEASUREMENT_COLUMNS if c not in ("link_id", "tx_id") and c in raw.columns]
    vals = {c: _numeric(raw, c, problems) for c in numeric}
    # one pass: unparsable cells are NaN here and every later check skips NaN, so parse errors, values and
    # positions are all listed at once (ordered by row below)
    _check_values(raw, vals, problems)
    if "rss_dbm" in vals:
        pg = vals["rss_dbm"] - vals["tx_power_dbm"]
        if "path_gain_db" in vals:
            diff = np.abs(vals["path_gain_db"] - pg)
            for i in np.nonzero(diff > RSS_GAIN_TOLERANCE_DB)[0]:
                problems.append(Problem(
                    f"path_gain_db = {vals['path_gain_db'][i]:g} dB disagrees with rss_dbm - tx_power_dbm = "
                    f"{pg[i]:g} dB by {diff[i]:.3g} dB (tolerance {RSS_GAIN_TOLERANCE_DB} dB); give one or make "
                    "them consistent", columns=("path_gain_db", "rss_dbm", "tx_power_dbm"), **raw.where(i)))
        else:
            vals["path_gain_db"] = pg
    _check_path_gain(raw, vals, problems)
    tx = np.stack([vals[c] for c in TX_COLS], 1)
    rx = np.stack([vals[c] for c in RX_COLS], 1)
    tx_id = _tx_ids(raw, tx, problems, tolerance_m) if "tx_id" in raw.columns else None
    _check_geometry(raw, tx, rx, scene, problems, bbox_margin_m=bbox_margin_m, above_margin_m=above_margin_m,
                    tolerance_m=tolerance_m)
    problems.sort(key=lambda p: (p.row or 0))
    _raise_if(raw.source, problems)
    if tx_id is not None:
        vals["tx_id"] = np.asarray(tx_id, dtype=object)
    df = _canonical_frame(raw, vals, link_id, MEASUREMENT_COLUMNS)
    return Measurements(
        df=df, tx_pos=tx, rx_pos=rx, frequency_hz=vals["frequency_hz"].copy(),
        path_gain_db=vals["path_gain_db"].copy(),
        delay_spread_s=vals["delay_spread_s"].copy() if "delay_spread_s" in vals else None,
        link_id=link_id, tx_power_dbm=vals["tx_power_dbm"].copy() if "tx_power_dbm" in vals else None,
        source=path, tx_id=tx_id,
        **{c: vals[c].copy() for c in ("mean_delay_s", "k_factor_db", "angular_spread_deg") if c in vals})


def read_measurements(path: str | os.PathLike, scene=None, *, labels: Mapping[str, str] | None = None,
                      bbox_margin_m: float = 0.0, above_margin_m: float = 50.0,
                      tolerance_m: float = 1e-3) -> Measurements:
    """Read and validate a v1 measurements file (CSV or Parquet, by suffix).

    With ``scene`` (a :class:`rftwin.scene.TwinScene`) positions must lie in the scene's bounding box
    (x, y within ``bbox_margin_m``; z not below the bottom by more than ``bbox_margin_m`` and not above the top
    by more than ``above_margin_m``, e.g. a mast above the roofs) and not inside a closed (watertight) object.
    ``tolerance_m`` (m) applies to all geometric checks. ``labels`` (object name -> ITU material name) are
    validated against the scene and the ITU table. Raises :class:`MeasurementError`.
    """
    raw = _read_table(path, "measurements")
    return _build_measurements(raw, Path(path), scene, labels=labels, bbox_margin_m=bbox_margin_m,
                               above_margin_m=above_margin_m, tolerance_m=tolerance_m)


def read_links(path: str | os.PathLike, scene=None, *, labels: Mapping[str, str] | None = None,
               bbox_margin_m: float = 0.0, above_margin_m: float = 50.0, tolerance_m: float = 1e-3) -> Links:
    """Read and validate a links file (``link_id``, six positions in m, ``frequency_hz``, optional
    ``tx_power_dbm``); same checks and arguments as :func:`read_measurements`."""
    raw = _read_table(path, "links")
    _check_columns(raw, ["link_id", *POS_COLS, "frequency_hz"], LINK_COLUMNS)
    if labels is not None:
        validate_labels(labels, scene)
    problems: list[Problem] = []
    link_id = _link_ids(raw, problems)
    numeric = [c for c in LINK_COLUMNS if c != "link_id" and c in raw.columns]
    vals = {c: _numeric(raw, c, problems) for c in numeric}
    _check_values(raw, vals, problems)
    tx = np.stack([vals[c] for c in TX_COLS], 1)
    rx = np.stack([vals[c] for c in RX_COLS], 1)
    _check_geometry(raw, tx, rx, scene, problems, bbox_margin_m=bbox_margin_m, above_margin_m=above_margin_m,
                    tolerance_m=tolerance_m)
    problems.sort(key=lambda p: (p.row or 0))
    _raise_if(raw.source, problems)
    return Links(df=_canonical_frame(raw, vals, link_id, LINK_COLUMNS), tx_pos=tx, rx_pos=rx,
                 frequency_hz=vals["frequency_hz"].copy(), link_id=link_id,
                 tx_power_dbm=vals["tx_power_dbm"].copy() if "tx_power_dbm" in vals else None, source=Path(path))


# ------------------------------------------------------------------------------------------------ labels
def _normalise_material(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def validate_labels(labels: Mapping[str, str], scene=None, source: str = "labels") -> dict[str, str]:
    """Check a label mapping (object name -> ITU material name, see ``rftwin.materials.itu.ITU_NAMES``):
    object names must exist in ``scene`` (when given), material names in the ITU table (case, spaces and
    hyphens are normalised). Returns the normalised mapping; raises :class:`MeasurementError` naming the key."""
    if not isinstance(labels, Mapping):
        raise MeasurementError(source, f"expected a mapping of object name -> ITU material name, found "
                                       f"{type(labels).__name__}")
    names = set(scene.names) if scene is not None else None
    out: dict[str, str] = {}
    problems: list[Problem] = []
    for k, v in labels.items():
        key = str(k)
        if names is not None and key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(Problem(f"no object '{key}' in the scene{hint}; objects: {', '.join(sorted(names))}",
                                    key=key))
            continue
        if not isinstance(v, str) or not v.strip():
            problems.append(Problem(f"expected an ITU material name (string), found {_describe(v)}", key=key))
            continue
        mat = _normalise_material(v)
        if mat not in ITU_NAMES:
            close = difflib.get_close_matches(mat, ITU_NAMES, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(Problem(f"unknown material '{v}'{hint}; expected one of: {', '.join(ITU_NAMES)}",
                                    key=key))
            continue
        out[key] = mat
    _raise_if(source, problems)
    return out


def read_labels(path: str | os.PathLike, scene=None) -> dict[str, str]:
    """Read a label file (YAML or JSON mapping object name -> ITU material name) and validate it with
    :func:`validate_labels`. A top-level ``labels:`` mapping is accepted too."""
    p = Path(path)
    source = _check_file(p, "labels")
    if p.suffix.lower() not in LABEL_SUFFIXES:
        raise MeasurementError(source, f"unsupported file type '{p.suffix}'; expected a .yaml, .yml or .json "
                                       "labels file")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MeasurementError(source, f"cannot be read as UTF-8 text: {exc}") from exc
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text) if text.strip() else None
        else:
            import yaml

            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise MeasurementError(source, Problem(f"invalid JSON: {exc.msg}", line=exc.lineno)) from exc
    except Exception as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise MeasurementError(source, Problem(f"invalid YAML: {getattr(exc, 'problem', None) or exc}",
                                               line=line)) from exc
    if data is None:
        raise MeasurementError(source, "empty file; expected a mapping of object name -> ITU material name")
    if isinstance(data, Mapping) and set(data) == {"labels"} and isinstance(data["labels"], Mapping):
        data = data["labels"]
    return validate_labels(data, scene, source)


__all__ = ["FEATURE_COLUMNS", "Links", "MeasurementError", "Measurements", "Problem", "points_inside_mesh",
           "read_labels",
           "read_links", "read_measurements", "validate_labels", "winding_numbers", "write_measurements"]
