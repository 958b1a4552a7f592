"""Wideband sidecar: CFR (complex, per subcarrier) and/or CIR taps per link, keyed by ``link_id``.

One file (HDF5 ``.h5``/``.hdf5`` via h5py, or NumPy ``.npz``) holds a logical tree::

    format = "rftwin-wideband", version = 1          (optional on reading; checked when present)
    carrier_hz, bandwidth_hz, num_subcarriers        file-wide values (each may be overridden per link)
    links/<link_id>/cfr          [K] complex          H[n] on the subcarriers n = -K/2 .. K/2-1 (increasing frequency)
    links/<link_id>/delay_s      [P] float            CIR tap delays (s), >= 0
    links/<link_id>/amplitude    [P] complex          baseband CIR tap amplitudes (a exp(-j 2 pi f_c tau))
    links/<link_id>/carrier_hz, bandwidth_hz, num_subcarriers   optional per-link overrides

In HDF5 the scalars are attributes (of the root / of the link group) and the arrays datasets; in NPZ every node is
an array under its path (``"links/M001/cfr"``, ``"carrier_hz"``). A link has a CFR, CIR taps, or both. The
subcarrier grid is Sionna's and seed 003's: K subcarriers at f_c + n W / K. ``carrier_hz`` and ``bandwidth_hz``
are required (file-wide or per link); ``num_subcarriers`` defaults to the CFR length (it is required for links with
taps only). :func:`simulate_wideband` produces the same quantities from traced paths and engine coefficients.

Every problem raises :class:`~rftwin.data.measurements.MeasurementError` naming the file and the link (``key``).
"""
from __future__ import annotations

import difflib
import math
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rftwin.data.measurements import (
    MAX_DELAY_SPREAD_S,
    MAX_FREQUENCY_HZ,
    MIN_FREQUENCY_HZ,
    MeasurementError,
    Problem,
)
from rftwin.physics.features import (
    DEFAULT_BANDWIDTH_HZ,
    DEFAULT_NUM_SUBCARRIERS,
    baseband_taps,
    cfr_delay_features,
    cfr_from_paths,
)

FORMAT = "rftwin-wideband"
VERSION = 1
HDF5_SUFFIXES = (".h5", ".hdf5")
NPZ_SUFFIXES = (".npz",)
GRID_KEYS = ("carrier_hz", "bandwidth_hz", "num_subcarriers")
ARRAY_KEYS = ("cfr", "delay_s", "amplitude")
ROOT_KEYS = ("format", "version", *GRID_KEYS)
CARRIER_RTOL = 1e-6
MAX_SUBCARRIERS = 1 << 20


# ----------------------------------------------------------------------------------------------- records
@dataclass
class WidebandLink:
    """Wideband data of one link: grid (carrier Hz, bandwidth Hz, K subcarriers), CFR [K] and/or taps [P]."""

    link_id: str
    carrier_hz: float
    bandwidth_hz: float = DEFAULT_BANDWIDTH_HZ
    num_subcarriers: int = DEFAULT_NUM_SUBCARRIERS
    cfr: np.ndarray | None = None  # [K] complex128
    delay_s: np.ndarray | None = None  # [P] float64
    amplitude: np.ndarray | None = None  # [P] complex128

    def subcarrier_offsets_hz(self) -> np.ndarray:
        """Baseband subcarrier offsets f_n [K] (Hz): n W / K for n = -K/2 .. K/2-1."""
        K = self.num_subcarriers
        return (np.arange(K) - K // 2) * (self.bandwidth_hz / K)

    def frequencies_hz(self) -> np.ndarray:
        """Absolute subcarrier frequencies [K] (Hz)."""
        return self.carrier_hz + self.subcarrier_offsets_hz()

    def cfr_on_grid(self) -> np.ndarray:
        """The CFR [K]: the stored one, else synthesised from the taps, H[n] = sum_p a_p exp(-j 2 pi f_n tau_p)."""
        if self.cfr is not None:
            return self.cfr
        f = self.subcarrier_offsets_hz()
        return np.exp(-2j * np.pi * f[:, None] * self.delay_s[None, :]) @ self.amplitude


@dataclass
class Wideband:
    """Wideband data of several links (ordered by ``link_id``)."""

    links: dict[str, WidebandLink]
    source: Path | None = None
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.links)

    @property
    def link_ids(self) -> list[str]:
        return list(self.links)

    def __getitem__(self, link_id: str) -> WidebandLink:
        return self.links[link_id]

    def grid(self, link_ids: Sequence[str] | None = None) -> tuple[np.ndarray, float, int]:
        """Carrier per link [M] (Hz) and the common bandwidth (Hz) and subcarrier count of ``link_ids``."""
        ids = self.link_ids if link_ids is None else list(link_ids)
        recs = [self._get(i) for i in ids]
        ws = {r.bandwidth_hz for r in recs}
        ks = {r.num_subcarriers for r in recs}
        if len(ws) > 1 or len(ks) > 1:
            raise MeasurementError(self._src, f"links have different subcarrier grids (bandwidths {sorted(ws)} Hz, "
                                              f"subcarrier counts {sorted(ks)}); select links with one grid")
        return (np.array([r.carrier_hz for r in recs]), float(ws.pop()) if ws else DEFAULT_BANDWIDTH_HZ,
                int(ks.pop()) if ks else DEFAULT_NUM_SUBCARRIERS)

    def cfr_matrix(self, link_ids: Sequence[str] | None = None) -> np.ndarray:
        """CFRs [M, K] (complex128) of ``link_ids`` (default: all, in file order); taps-only links synthesised."""
        ids = self.link_ids if link_ids is None else list(link_ids)
        _, _, K = self.grid(ids)
        return np.stack([self._get(i).cfr_on_grid() for i in ids]) if ids else np.zeros((0, K), np.complex128)

    def features(self, link_ids: Sequence[str] | None = None, first_lag: int | None = None,
                 window: str | None = "hann") -> pd.DataFrame:
        """Band-limited gain (dB), mean delay and RMS delay spread (s) of every link (seed 003 eq. 23-24, see
        :func:`rftwin.physics.features.cfr_delay_features`; ``window=None`` for the equations as printed)."""
        ids = self.link_ids if link_ids is None else list(link_ids)
        rows = []
        for i in ids:
            r = self._get(i)
            p, m, s = cfr_delay_features(torch.as_tensor(r.cfr_on_grid()), r.bandwidth_hz, first_lag, window)
            rows.append((i, 10 * math.log10(float(p)) if float(p) > 0 else -math.inf, float(m), float(s)))
        return pd.DataFrame(rows, columns=["link_id", "path_gain_db", "mean_delay_s", "delay_spread_s"])

    def check_links(self, link_ids: Sequence[str], frequency_hz: Sequence[float] | np.ndarray | None = None,
                    require_all: bool = False) -> None:
        """Every sidecar link must be one of ``link_ids`` (e.g. the measurement table's) and, with
        ``frequency_hz`` [M] (the table's carriers, aligned with ``link_ids``), have the same carrier.
        ``require_all``: every one of ``link_ids`` must be in the sidecar too. Raises MeasurementError."""
        index = {k: j for j, k in enumerate(link_ids)}
        problems = []
        for lid, rec in self.links.items():
            if lid not in index:
                close = difflib.get_close_matches(lid, list(index), n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(Problem(f"unknown link id{hint}; the sidecar may only hold links of the table "
                                        f"({len(index)} links)", key=lid))
            elif frequency_hz is not None:
                f = float(frequency_hz[index[lid]])
                if abs(rec.carrier_hz - f) > CARRIER_RTOL * f:
                    problems.append(Problem(f"carrier_hz = {rec.carrier_hz:g} Hz but the table has frequency_hz = "
                                            f"{f:g} Hz for this link", key=lid))
        if require_all:
            problems += [Problem("link of the table missing from the sidecar", key=k) for k in link_ids
                         if k not in self.links]
        if problems:
            raise MeasurementError(self._src, problems)

    @property
    def _src(self) -> str:
        return str(self.source) if self.source is not None else "<wideband>"

    def _get(self, link_id: str) -> WidebandLink:
        try:
            return self.links[link_id]
        except KeyError:
            raise MeasurementError(self._src, Problem("no such link in the wideband sidecar", key=link_id)) from None


# ----------------------------------------------------------------------------------------------- reading
def _load_tree(path: Path, source: str) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]] | None]:
    """(root values, {link_id: {name: array}}, None without a 'links' group) from an HDF5 or NPZ file."""
    suf = path.suffix.lower()
    if suf in HDF5_SUFFIXES:
        import h5py

        try:
            with h5py.File(path, "r") as h:
                root = {k: np.asarray(v) for k, v in h.attrs.items()}
                extra = [k for k in h if k != "links"]
                if extra:
                    raise MeasurementError(source, f"unexpected top-level entries {extra}; expected a 'links' group")
                if "links" not in h or not isinstance(h["links"], h5py.Group):
                    return root, None
                links: dict[str, dict[str, np.ndarray]] = {}
                for lid, g in h["links"].items():
                    if not isinstance(g, h5py.Group):
                        raise MeasurementError(source, Problem("expected a group with datasets cfr / delay_s / "
                                                               "amplitude, found a dataset", key=lid))
                    node = {k: np.asarray(v) for k, v in g.attrs.items()}
                    for k, v in g.items():
                        if not isinstance(v, h5py.Dataset):
                            raise MeasurementError(source, Problem(f"'{k}' is a group; expected a dataset", key=lid))
                        node[k] = v[()]
                    links[lid] = node
        except MeasurementError:
            raise
        except OSError as exc:
            raise MeasurementError(source, f"cannot be read as an HDF5 file: {exc}") from exc
        return root, links
    if suf in NPZ_SUFFIXES:
        if not zipfile.is_zipfile(path):
            raise MeasurementError(source, "cannot be read as an NPZ file (not a zip archive of arrays; write it with "
                                           "numpy.savez)")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except ValueError as exc:  # object arrays need pickle
            raise MeasurementError(source, f"cannot be read without pickle ({exc}); store numeric and string "
                                           "arrays only") from exc
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise MeasurementError(source, f"cannot be read as an NPZ file: {exc}") from exc
        root, links = {}, {}
        for k, v in arrays.items():
            parts = k.split("/")
            if len(parts) == 1:
                root[k] = v
            elif len(parts) == 3 and parts[0] == "links" and parts[1]:
                links.setdefault(parts[1], {})[parts[2]] = v
            else:
                raise MeasurementError(source, f"unexpected array '{k}'; expected links/<link_id>/<name> or one "
                                               f"of {', '.join(ROOT_KEYS)}")
        return root, links
    raise MeasurementError(source, f"unsupported file type '{path.suffix}'; expected an .h5/.hdf5 or .npz wideband "
                                   "sidecar")


def _scalar(v: np.ndarray) -> object:
    a = np.asarray(v)
    if a.size != 1:
        raise ValueError(f"expected a scalar, found an array of shape {a.shape}")
    x = a.reshape(()).item()
    return x.decode() if isinstance(x, bytes) else x


def _grid_value(name: str, raw, problems: list[Problem], key: str | None) -> float | int | None:
    try:
        v = _scalar(raw)
        if isinstance(v, (bool, str)) or not isinstance(v, (int, float)):
            raise TypeError(f"expected a number, found {v!r}")
        v = float(v)
    except (TypeError, ValueError) as exc:
        problems.append(Problem(f"{name}: {exc}", key=key))
        return None
    if not math.isfinite(v):
        problems.append(Problem(f"{name} = {v} is not finite", key=key))
        return None
    if name == "carrier_hz" and not MIN_FREQUENCY_HZ <= v <= MAX_FREQUENCY_HZ:
        problems.append(Problem(f"carrier_hz = {v:g} is outside [1 MHz, 1 THz]; expected Hz (e.g. 3.5e9)", key=key))
        return None
    if name == "bandwidth_hz" and v <= 0:
        problems.append(Problem(f"bandwidth_hz must be positive, found {v:g}", key=key))
        return None
    if name == "num_subcarriers":
        if not v.is_integer() or not 1 <= v <= MAX_SUBCARRIERS:
            problems.append(Problem(f"num_subcarriers must be an integer in [1, {MAX_SUBCARRIERS}], found {v:g}",
                                    key=key))
            return None
        return int(v)
    return v


def _array(name: str, raw: np.ndarray, complex_: bool, problems: list[Problem], key: str) -> np.ndarray | None:
    a = np.asarray(raw)
    if a.ndim != 1:
        problems.append(Problem(f"'{name}' has shape {a.shape}; expected a 1-D array", key=key))
        return None
    if complex_ and not np.iscomplexobj(a):
        problems.append(Problem(f"'{name}' has dtype {a.dtype}; expected complex values (real and imaginary "
                                "part)", key=key))
        return None
    if not complex_ and (np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number)):
        problems.append(Problem(f"'{name}' has dtype {a.dtype}; expected real numbers", key=key))
        return None
    a = a.astype(np.complex128 if complex_ else np.float64)
    bad = np.nonzero(~np.isfinite(a))[0]
    if len(bad):
        problems.append(Problem(f"'{name}' has {len(bad)} non-finite value(s) (first at index {bad[0]}); expected "
                                "finite numbers", key=key))
        return None
    return a


def _build_link(lid: str, node: dict[str, np.ndarray], root_grid: dict, problems: list[Problem]
                ) -> WidebandLink | None:
    n0 = len(problems)
    unknown = [k for k in node if k not in ARRAY_KEYS + GRID_KEYS]
    for k in unknown:
        close = difflib.get_close_matches(k, ARRAY_KEYS + GRID_KEYS, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(Problem(f"unknown entry '{k}'{hint}; expected {', '.join(ARRAY_KEYS + GRID_KEYS)}", key=lid))
    if "/" in lid or not lid.strip():
        problems.append(Problem("invalid link id (empty or containing '/')", key=lid))
    grid = dict(root_grid)
    for g in GRID_KEYS:
        if g in node:
            grid[g] = _grid_value(g, node[g], problems, lid)
    cfr = _array("cfr", node["cfr"], True, problems, lid) if "cfr" in node else None
    has_d, has_a = "delay_s" in node, "amplitude" in node
    delay = amp = None
    if has_d != has_a:
        problems.append(Problem(f"'{'delay_s' if has_d else 'amplitude'}' without "
                                f"'{'amplitude' if has_d else 'delay_s'}'; CIR taps need both", key=lid))
    elif has_d:
        delay = _array("delay_s", node["delay_s"], False, problems, lid)
        amp = _array("amplitude", node["amplitude"], True, problems, lid)
        if delay is not None and amp is not None and delay.shape != amp.shape:
            problems.append(Problem(f"'delay_s' has {delay.shape[0]} taps but 'amplitude' {amp.shape[0]}; expected "
                                    "one amplitude per delay", key=lid))
        if delay is not None and len(delay) and (delay.min() < 0 or delay.max() > MAX_DELAY_SPREAD_S):
            bad = delay.min() if delay.min() < 0 else delay.max()
            problems.append(Problem(f"tap delay {bad:g} s is outside [0, {MAX_DELAY_SPREAD_S:g}] s; delay_s must be "
                                    "in seconds", key=lid))
    if cfr is None and not has_d and "cfr" not in node:
        problems.append(Problem("no data; expected 'cfr' or 'delay_s' and 'amplitude'", key=lid))
    if grid.get("carrier_hz") is None and "carrier_hz" not in node:
        problems.append(Problem("no carrier_hz (neither for the file nor for this link)", key=lid))
    if grid.get("bandwidth_hz") is None and "bandwidth_hz" not in node:
        problems.append(Problem("no bandwidth_hz (neither for the file nor for this link)", key=lid))
    K = grid.get("num_subcarriers")
    if cfr is not None:
        if K is None and "num_subcarriers" not in node:
            K = len(cfr)
        elif K is not None and len(cfr) != K:
            problems.append(Problem(f"'cfr' has {len(cfr)} values but num_subcarriers = {K}; expected one value per "
                                    "subcarrier", key=lid))
    elif K is None and "num_subcarriers" not in node and has_d:
        problems.append(Problem("no num_subcarriers (needed for links with CIR taps only)", key=lid))
    if len(problems) > n0:
        return None
    return WidebandLink(lid, float(grid["carrier_hz"]), float(grid["bandwidth_hz"]), int(K), cfr, delay, amp)


def read_wideband(path: str | os.PathLike, links=None, frequency_hz=None, require_all: bool = False) -> Wideband:
    """Read and validate a wideband sidecar (.h5/.hdf5 or .npz).

    ``links``: the table it belongs to (a :class:`~rftwin.data.Measurements` / :class:`~rftwin.data.Links`, or a
    sequence of link ids with ``frequency_hz`` [M]); then every sidecar link must be in it and carry the same
    carrier, and with ``require_all`` every table link must be in the sidecar. Raises MeasurementError naming the
    file and the link.
    """
    p = Path(path)
    source = str(p)
    if not p.exists():
        raise MeasurementError(source, "no such file (expected a wideband sidecar .h5/.hdf5/.npz)")
    if not p.is_file():
        raise MeasurementError(source, "not a regular file (expected a wideband sidecar .h5/.hdf5/.npz)")
    root, nodes = _load_tree(p, source)
    problems: list[Problem] = []
    for k in root:
        if k not in ROOT_KEYS:
            close = difflib.get_close_matches(k, ROOT_KEYS, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(Problem(f"unknown file attribute '{k}'{hint}; expected {', '.join(ROOT_KEYS)}"))
    if "format" in root and str(_scalar(root["format"])) != FORMAT:
        problems.append(Problem(f"format is '{_scalar(root['format'])}'; expected '{FORMAT}'"))
    if "version" in root and str(_scalar(root["version"])) != str(VERSION):
        problems.append(Problem(f"version {_scalar(root['version'])} is not supported; expected {VERSION}"))
    grid = {g: _grid_value(g, root[g], problems, None) for g in GRID_KEYS if g in root}
    if problems:
        raise MeasurementError(source, problems)
    if nodes is None:
        raise MeasurementError(source, "no 'links' group; expected links/<link_id>/cfr (or delay_s and amplitude) "
                                       "datasets")
    if not nodes:
        raise MeasurementError(source, "no links; expected links/<link_id>/cfr (or delay_s and amplitude)")
    out: dict[str, WidebandLink] = {}
    for lid, node in nodes.items():
        rec = _build_link(lid, node, grid, problems)
        if rec is not None:
            out[lid] = rec
    if problems:
        raise MeasurementError(source, problems)
    wb = Wideband(out, p, {k: _scalar(v) for k, v in root.items()})
    if links is not None:
        if hasattr(links, "link_id"):
            frequency_hz = links.frequency_hz if frequency_hz is None else frequency_hz
            links = links.link_id
        wb.check_links(list(links), frequency_hz, require_all)
    return wb


# ----------------------------------------------------------------------------------------------- writing
def write_wideband(path: str | os.PathLike, data: Wideband | Iterable[WidebandLink]) -> Path:
    """Write a wideband sidecar (.h5/.hdf5 or .npz by suffix) atomically; grid values shared by all links are
    stored once at the top level."""
    from rftwin.io import atomic_path

    p = Path(path)
    recs = list(data.links.values()) if isinstance(data, Wideband) else list(data)
    src = str(p)
    if p.suffix.lower() not in HDF5_SUFFIXES + NPZ_SUFFIXES:
        raise MeasurementError(src, f"unsupported file type '{p.suffix}'; expected .h5, .hdf5 or .npz")
    if not recs:
        raise MeasurementError(src, "nothing to write (no links)")
    problems = []
    seen: set[str] = set()
    for r in recs:
        if "/" in r.link_id or not r.link_id.strip():
            problems.append(Problem("link ids must be non-empty and must not contain '/'", key=r.link_id))
        if r.link_id in seen:
            problems.append(Problem("duplicate link id", key=r.link_id))
        seen.add(r.link_id)
        if r.cfr is None and r.delay_s is None:
            problems.append(Problem("no data (neither cfr nor taps)", key=r.link_id))
        if r.cfr is not None and len(r.cfr) != r.num_subcarriers:
            problems.append(Problem(f"cfr has {len(r.cfr)} values, num_subcarriers = {r.num_subcarriers}",
                                    key=r.link_id))
    if problems:
        raise MeasurementError(src, problems)
    shared = {g: getattr(recs[0], g) for g in GRID_KEYS if len({getattr(r, g) for r in recs}) == 1}
    root: dict[str, object] = {"format": FORMAT, "version": VERSION, **shared}
    nodes = {}
    for r in recs:
        node: dict[str, np.ndarray] = {g: np.asarray(getattr(r, g)) for g in GRID_KEYS if g not in shared}
        if r.cfr is not None:
            node["cfr"] = np.asarray(r.cfr, dtype=np.complex128)
        if r.delay_s is not None:
            node["delay_s"] = np.asarray(r.delay_s, dtype=np.float64)
            node["amplitude"] = np.asarray(r.amplitude, dtype=np.complex128)
        nodes[r.link_id] = node
    with atomic_path(p) as tmp:
        if p.suffix.lower() in HDF5_SUFFIXES:
            import h5py

            with h5py.File(tmp, "w") as h:
                for k, v in root.items():
                    h.attrs[k] = v
                grp = h.create_group("links")
                for lid, node in nodes.items():
                    g = grp.create_group(lid)
                    for k, v in node.items():
                        if k in GRID_KEYS:
                            g.attrs[k] = v
                        else:
                            g.create_dataset(k, data=v)
        else:
            arrays = {k: np.asarray(v) for k, v in root.items()}
            arrays.update({f"links/{lid}/{k}": v for lid, node in nodes.items() for k, v in node.items()})
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    return p


# ------------------------------------------------------------------------------------- from traced paths
def simulate_wideband(ps, a: torch.Tensor, frequencies_hz, link_ids: Sequence[str] | None = None,
                      link_index: Sequence[int] | np.ndarray | None = None,
                      freq_index: Sequence[int] | np.ndarray | None = None, *,
                      bandwidth_hz: float = DEFAULT_BANDWIDTH_HZ, num_subcarriers: int = DEFAULT_NUM_SUBCARRIERS,
                      kind: str = "cfr", pattern: tuple[int, int] = (0, 0), normalize_delays: bool = False
                      ) -> Wideband:
    """Wideband data of traced links, on the same grid as a measured sidecar.

    ``ps`` a PathSet, ``a`` engine coefficients [F, N, R, T] (or [1, F, N, R, T] / [N, R, T]) at the carriers
    ``frequencies_hz`` [F], e.g. ``path_coefficients(ps, materials, frequencies_hz)[0]``. Output link m is PathSet
    link ``link_index[m]`` at carrier ``frequencies_hz[freq_index[m]]`` named ``link_ids[m]`` (defaults: every
    PathSet link at the first carrier, ids "0", "1", ...). ``kind``: "cfr" (CFR on K subcarriers of bandwidth W,
    :func:`rftwin.physics.features.cfr_from_paths`), "cir" (one tap per path: delay and baseband amplitude) or
    "both". ``pattern`` (receive, transmit) selects the antenna-pattern pair of ``a``.
    """
    if kind not in ("cfr", "cir", "both"):
        raise ValueError(f"kind must be 'cfr', 'cir' or 'both', not '{kind}'")
    a = torch.as_tensor(a)
    if a.dim() == 5:
        a = a[0]
    if a.dim() == 3:
        a = a[None]
    if a.dim() != 4 or a.shape[1] != ps.num_paths:
        raise ValueError(f"coefficients of shape {tuple(a.shape)} do not fit {ps.num_paths} paths; expected "
                         "[F, N, R, T]")
    freqs = np.asarray(frequencies_hz, dtype=np.float64).reshape(-1)
    if len(freqs) != a.shape[0]:
        raise ValueError(f"{len(freqs)} frequencies for coefficients at {a.shape[0]} frequencies")
    L = ps.num_links
    li = np.arange(L) if link_index is None else np.asarray(link_index, dtype=np.int64)
    fi = np.zeros(len(li), np.int64) if freq_index is None else np.asarray(freq_index, dtype=np.int64)
    ids = [str(i) for i in range(len(li))] if link_ids is None else [str(x) for x in link_ids]
    if not len(ids) == len(li) == len(fi):
        raise ValueError(f"link_ids ({len(ids)}), link_index ({len(li)}) and freq_index ({len(fi)}) differ in length")
    amp = a[..., pattern[0], pattern[1]].detach().cpu().to(torch.complex128)  # [F, N]
    tau = ps.tau_s.detach().cpu().to(torch.float64)
    link = ps.link.cpu()
    cfr_rows = np.zeros((len(li), num_subcarriers), np.complex128)
    if kind in ("cfr", "both"):
        for f in np.unique(fi):
            sel = np.nonzero(fi == f)[0]
            H = cfr_from_paths(amp[f], tau, link, L, float(freqs[f]), bandwidth_hz, num_subcarriers,
                               normalize_delays=normalize_delays)  # [L, K]
            cfr_rows[sel] = H[torch.as_tensor(li[sel])].numpy()
    taps_by_link: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    if kind in ("cir", "both"):
        order = torch.argsort(link, stable=True).numpy()
        counts = torch.bincount(link, minlength=L).numpy()
        bounds = np.concatenate([[0], np.cumsum(counts)])
        t_np = tau.numpy()
        if normalize_delays and len(t_np):
            tmin = np.full(L, np.inf)
            np.minimum.at(tmin, link.numpy(), t_np)
            t_np = t_np - tmin[link.numpy()]
        for f in np.unique(fi):
            ab = baseband_taps(amp[f], tau, float(freqs[f])).numpy()
            for lk in np.unique(li[fi == f]):
                idx = order[bounds[lk]:bounds[lk + 1]]
                taps_by_link[(int(f), int(lk))] = (t_np[idx], ab[idx])
    out = {}
    for m, (lid, lk, f) in enumerate(zip(ids, li, fi)):
        d, amp_m = taps_by_link.get((int(f), int(lk)), (None, None))
        out[lid] = WidebandLink(lid, float(freqs[f]), float(bandwidth_hz), int(num_subcarriers),
                                cfr=cfr_rows[m] if kind in ("cfr", "both") else None, delay_s=d, amplitude=amp_m)
    return Wideband(out, None, {"format": FORMAT, "version": VERSION})


__all__ = ["Wideband", "WidebandLink", "read_wideband", "simulate_wideband", "write_wideband"]

