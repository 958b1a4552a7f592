"""Channel prediction for new links from a scene or a calibrated twin (trace once, evaluate the engine)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from rftwin.pathset import NONE, PathSet
from rftwin.physics import features as F
from rftwin.physics.channel import path_power
from rftwin.physics.engine import path_coefficients
from rftwin.scene.load import TwinScene
from rftwin.trace.tracer import SolverSettings, TraceShard, iter_trace, trace
from rftwin.twin_io import material_values, unique_links

#: per-link feature columns of a prediction (units in the names)
FEATURE_COLUMNS = ("path_gain_db", "mean_delay_s", "delay_spread_s", "k_factor_db", "angular_spread_deg",
                   "angular_spread_departure_deg", "num_paths")


@dataclass(frozen=True)
class WidebandGrid:
    """OFDM grid of a wideband prediction: bandwidth W (Hz), K subcarriers, what to produce ("cfr", "cir",
    "both"), delays relative to each link's first path or absolute, window of the band-limited features ("hann",
    or None for seed 003 eq. 24 as printed, whose leakage inflates the spread of off-grid paths)."""

    bandwidth_hz: float = F.DEFAULT_BANDWIDTH_HZ
    num_subcarriers: int = F.DEFAULT_NUM_SUBCARRIERS
    kind: str = "cfr"
    normalize_delays: bool = False
    window: str | None = "hann"


@dataclass
class Prediction:
    """Per-row features (``table``), the traced PathSet, and the wideband data of every row when requested."""

    table: pd.DataFrame
    pathset: PathSet | None  # None when the links were streamed shard by shard
    wideband: object | None = None  # rftwin.data.Wideband
    link_los: np.ndarray | None = None  # [rows] bool: the row's link has a line-of-sight path
    mimo: np.ndarray | None = None  # [rows, R x Mr, T x Mt] narrowband per-element channels (with arrays)


def channel_features(ps: PathSet, a: torch.Tensor, angular_method: str = "circular") -> dict[str, torch.Tensor]:
    """Per-link features of traced paths: path gain (dB), mean delay and RMS delay spread (s), K-factor (dB; LoS
    path vs the rest, strongest path in NLoS), azimuth angular spread of arrival and of departure (deg).

    ``a`` [..., N, R, T] engine coefficients; every output is [..., L] (powers averaged over antenna pairs).
    """
    p = path_power(a)
    L = ps.num_links
    los = (ps.itype == NONE).all(1)
    aoa_az, _ = F.direction_angles(ps.k_rx.to(p.dtype))
    aod_az, _ = F.direction_angles(ps.k_tx.to(p.dtype))
    mean, ds = F.delay_moments(p, ps.tau_s, ps.link, L)
    return {"path_gain_db": F.path_gain_db(p, ps.link, L), "mean_delay_s": mean, "delay_spread_s": ds,
            "k_factor_db": F.k_factor_db(p, ps.link, L, los),
            "angular_spread_deg": F.angular_spread_deg(p, aoa_az, ps.link, L, angular_method),
            "angular_spread_departure_deg": F.angular_spread_deg(p, aod_az, ps.link, L, angular_method)}


def _shard_wideband(sp: PathSet, a: torch.Tensor, uf: np.ndarray, links: np.ndarray, num_links: int,
                    row_link: np.ndarray, row_f: np.ndarray, ids: list[str], grid: WidebandGrid) -> dict:
    """Wideband records (link id -> :class:`rftwin.data.wideband.WidebandLink`) of the rows whose link is in the
    shard (``links``: the shard's global link indices; ``a`` its coefficients [F, N, R, T] at ``uf``)."""
    from rftwin.data.wideband import simulate_wideband  # noqa: PLC0415

    local = np.full(num_links, -1, dtype=np.int64)
    local[links] = np.arange(len(links))
    rows = np.nonzero(local[row_link] >= 0)[0]
    if not len(rows):
        return {}
    wb = simulate_wideband(sp, a, uf, [ids[r] for r in rows], local[row_link[rows]], row_f[rows],
                           bandwidth_hz=grid.bandwidth_hz, num_subcarriers=grid.num_subcarriers, kind=grid.kind,
                           normalize_delays=grid.normalize_delays)
    return wb.links


def predict_channels(twin: TwinScene, doc: dict | None, tx_pos: np.ndarray, rx_pos: np.ndarray,
                     frequency_hz: np.ndarray, settings: SolverSettings | None = None, progress: bool = True,
                     cache_dir=None, link_ids=None, wideband: WidebandGrid | None = None,
                     angular_method: str = "circular", memory_budget: int | None = None,
                     keep_pathset: bool = False, device=None, workers: int = 1,
                     ray_address: str | None = None, tx_array=None, rx_array=None, field=None,
                     materials=None) -> Prediction:
    """Trace every distinct (tx, rx) pair once, evaluate the engine at every distinct frequency and return the
    features of every row (:data:`FEATURE_COLUMNS`; NaN where a link has no path) and, with ``wideband``, the CFR
    / CIR taps of every row (keyed by ``link_ids``) plus the band-limited gain, mean delay and delay spread
    (columns ``*_cfr_*``, seed 003 eq. 23-24).

    Without arrays and ``keep_pathset`` the links are traced and evaluated shard by shard
    (:func:`rftwin.trace.tracer.iter_trace` under ``memory_budget``; the wideband data of each shard's rows too):
    peak memory follows the shard size, not the link count (beyond the per-row results), and
    ``Prediction.pathset`` is None. ``device``: torch device of the engine (default CPU).
    ``workers`` > 1 or ``ray_address``: the links are first traced on Ray workers into the shared cache
    (:func:`rftwin.trace.fanout.fan_out_trace`). With ``tx_array``/``rx_array``
    (:class:`rftwin.physics.arrays.ArraySpec`, spacings at the lowest row frequency unless fixed) the features are
    those of the arrays' patterns averaged over all element pairs, and ``mimo`` holds every row's narrowband
    per-element channel matrix (synthetic arrays from the cached paths). ``field``: a trained material field
    (:class:`rftwin.fields.base.MaterialField`) evaluated at every interaction point instead of the per-object
    materials of ``doc``. ``materials``: the :class:`rftwin.scene.scene_materials.SceneMaterials` to trace at
    (None: the scene's own; without ``doc`` the engine evaluates them too); the scene is never changed.
    """
    from rftwin.scene.scene_materials import applied_materials  # noqa: PLC0415

    utx, urx, row_link = unique_links(tx_pos, rx_pos)
    uf, row_f = np.unique(np.asarray(frequency_hz, dtype=np.float64), return_inverse=True)
    with applied_materials(twin, None if doc is not None else materials):  # values read, then restored
        mv = material_values(twin, doc, uf)
    settings = settings or SolverSettings()
    if mv.scattering is not None and not settings.diffuse_reflection:  # calibrated S > 0: trace its diffuse paths
        settings = replace(settings, diffuse_reflection=True)
    if workers > 1 or ray_address:
        from rftwin.trace.fanout import fan_out_trace  # noqa: PLC0415

        fan_out_trace(twin, utx, urx, settings, cache_dir=cache_dir, workers=workers, address=ray_address,
                      memory_budget=memory_budget, materials=materials)
    dev = torch.device("cpu") if device is None else torch.device(device)
    mv = mv.to(dev)
    freqs = torch.as_tensor(uf, device=dev)
    arrays = tx_array is not None or rx_array is not None
    if keep_pathset or arrays:
        ps = trace(twin, utx, urx, settings, cache_dir=cache_dir, progress=progress, memory_budget=memory_budget,
                   materials=materials)
        if arrays:
            from rftwin.trace.arrays import with_arrays  # noqa: PLC0415

            ps = with_arrays(ps, tx_array, rx_array, float(uf.min()))
        shards = [TraceShard(np.arange(ps.num_links), ps)]
    else:
        ps = None
        shards = iter_trace(twin, utx, urx, settings, cache_dir=cache_dir, progress=progress,
                            memory_budget=memory_budget, materials=materials)
    U = len(utx)
    feats = {name: np.full((len(uf), U), np.nan) for name in FEATURE_COLUMNS if name != "num_paths"}
    npaths_u = np.zeros(U, dtype=np.int64)
    link_los = np.zeros(U, dtype=bool)
    mimo = None
    rf, rl = row_f.reshape(-1), row_link
    ids = ([str(i) for i in range(len(rl))] if link_ids is None else [str(x) for x in link_ids]) \
        if wideband is not None else []
    wb_links: dict = {}  # wideband records of every row, gathered shard by shard
    if field is not None:
        field = field.to(dev)
    for shard in shards:  # one shard in memory at a time
        sp = shard.pathset.to(dev)
        with torch.no_grad():
            a = path_coefficients(sp, mv if field is None else field(sp, freqs), freqs)[0]  # [F, N, R, T]
            for name, v in channel_features(sp, a, angular_method).items():
                feats[name][:, shard.links] = v.cpu().numpy()
            if arrays:
                from rftwin.physics.arrays import narrowband_channels  # noqa: PLC0415

                per_f = torch.stack([narrowband_channels(sp, a[i], float(f)) for i, f in enumerate(uf)]).cpu()
                mimo = per_f[row_f.reshape(-1), row_link].numpy()
        npaths_u[shard.links] = sp.paths_per_link().cpu().numpy()
        los_path = (sp.itype == NONE).all(1)
        link_los[shard.links[sp.link[los_path].cpu().numpy()]] = True
        if wideband is not None:
            wb_links.update(_shard_wideband(sp, a, uf, shard.links, U, rl, rf, ids, wideband))
        del sp, a
    npaths = npaths_u[rl]
    none = npaths == 0  # no propagation path found: gain undefined, not "-300 dB"
    out = {}
    for name, v in feats.items():
        out[name] = np.where(none, np.nan, v[rf, rl].astype(np.float64))
    out["num_paths"] = npaths
    table = pd.DataFrame(out)
    wb = None
    if wideband is not None:
        from rftwin.data.wideband import FORMAT, VERSION, Wideband  # noqa: PLC0415

        wb = Wideband({i: wb_links[i] for i in ids}, None, {"format": FORMAT, "version": VERSION})
        bl = wb.features(ids, window=wideband.window)
        table["path_gain_cfr_db"] = np.where(none, np.nan, bl["path_gain_db"].to_numpy())
        table["mean_delay_cfr_s"] = np.where(none, np.nan, bl["mean_delay_s"].to_numpy())
        table["delay_spread_cfr_s"] = np.where(none, np.nan, bl["delay_spread_s"].to_numpy())
    return Prediction(table=table, pathset=ps, wideband=wb, link_los=link_los[rl], mimo=mimo)


def predict_links(twin: TwinScene, doc: dict | None, tx_pos: np.ndarray, rx_pos: np.ndarray,
                  frequency_hz: np.ndarray, settings: SolverSettings | None = None, progress: bool = True,
                  cache_dir=None) -> pd.DataFrame:
    """Per-row path gain (dB), mean delay and RMS delay spread (s, power-weighted over paths), K-factor (dB),
    angular spreads (deg) and path count (see :func:`predict_channels`)."""
    return predict_channels(twin, doc, tx_pos, rx_pos, frequency_hz, settings, progress, cache_dir).table
