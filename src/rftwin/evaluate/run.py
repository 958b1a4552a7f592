"""Evaluate a (calibrated) twin and baselines against measured links.

Methods (columns ``<method>_path_gain_db`` of the per-link table):

- ``twin``: the twin's materials (a calibration folder's ``materials.json``, or the scene's own materials);
- ``itu``: the same scene with the ITU-R P.2040 parameters of each object's label (the uncalibrated twin);
- ``log_distance``: log-distance path-loss fit on the training links;
- ``tr38901``: 3GPP TR 38.901 path loss of the scenario, LoS/NLoS from the traced paths (LoS path present);
- ``gp``: Gaussian-process interpolation of the training path gains over position.

Metrics per method: absolute path-gain error statistics (MALE, median, 90th percentile, bias, RMSE; dB);
delay-spread error (ns) for ray-based methods when the truth has ``delay_spread_s``; SSIM of path-gain maps
when links form maps (regular receiver grids, or binned with ``grid_cell_m``); MCS of CFRs when a wideband
truth sidecar is given; parameter MRE when true materials are given; with a measured MPC table of the truth links,
seed 002's snapshot metrics M1-M4 (path gain, RMS delay spread, azimuth spread, K-factor from MPCs) and cluster
metrics C1-C2 (cluster detection F1, matched-cluster power / delay / angle errors; :mod:`rftwin.evaluate.clusters`)
for the ray-based methods, whose predicted MPCs are their traced paths.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rftwin.evaluate import metrics as M
from rftwin.evaluate.clusters import ClusterConfig
from rftwin.evaluate.grid import MapGroup, map_groups
from rftwin.scene.load import TwinScene
from rftwin.trace.tracer import SolverSettings

METHODS = ("twin", "itu", "log_distance", "tr38901", "gp")
METHOD_TITLES = {"twin": "twin", "itu": "uncalibrated twin (ITU labels)", "log_distance": "log-distance fit",
                 "tr38901": "3GPP TR 38.901", "gp": "GP interpolation"}
UMI_MIN_HEIGHT_M = 8.0  # auto scenario: UMi when some antenna is this far above the scene's lowest point


@dataclass
class EvaluationConfig:
    """Options of :func:`evaluate_twin`. ``scenario``: ``auto``, ``inh-office`` or ``umi-street-canyon``;
    ``ground_z_m``: ground height for UMi antenna heights (None: lowest point of the scene); ``grid_cell_m``:
    bin scattered receivers into maps of this cell size for SSIM (regular grids are detected without it)."""

    methods: tuple[str, ...] = METHODS
    scenario: str = "auto"
    ground_z_m: float | None = None
    grid_cell_m: float | None = None
    settings: SolverSettings = field(default_factory=SolverSettings)
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    seed: int = 7
    progress: bool = True


@dataclass
class EvaluationResult:
    """Per-link table, per-method metrics, maps, parameter errors, notes and baseline descriptions."""

    per_link: pd.DataFrame
    methods: list[str]
    metrics: dict[str, dict]
    maps: list[tuple[MapGroup, np.ndarray, dict[str, np.ndarray]]] = field(default_factory=list)
    params_table: pd.DataFrame | None = None
    params_summary: dict | None = None
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def itu_document(twin: TwinScene, frequency_hz: float) -> tuple[dict, list[str]]:
    """Materials document with the ITU power law (a, b, c, d) of every labelled object (valid at
    ``frequency_hz``) and the list of objects without a usable ITU label (they keep the scene's values)."""
    from rftwin.materials.itu import ITU_NAMES, itu_power_law  # noqa: PLC0415

    objs, missing = {}, []
    for o in twin.objects:
        if o.label in ITU_NAMES:
            pl = itu_power_law(o.label, frequency_hz)
            objs[o.name] = {"label": o.label, "a": pl.a, "b": pl.b, "c": pl.c, "d": pl.d}
        else:
            missing.append(o.name)
            objs[o.name] = {"label": o.label, "relative_permittivity": o.relative_permittivity,
                            "conductivity": o.conductivity}
    return {"reference_frequency_hz": float(frequency_hz), "objects": objs}, missing


def _row_los(ps, row_link: np.ndarray) -> np.ndarray:
    from rftwin.pathset import NONE  # noqa: PLC0415

    los_path = (ps.itype == NONE).all(1).numpy()
    link_los = np.zeros(ps.num_links, dtype=bool)
    np.logical_or.at(link_los, ps.link.numpy()[los_path], True)
    return link_los[row_link]


def _auto_scenario(twin: TwinScene, tx: np.ndarray, rx: np.ndarray) -> str:
    z0 = float(twin.bbox()[0][2])
    top = float(np.max(np.concatenate([tx[:, 2], rx[:, 2]])))
    return "umi-street-canyon" if top - z0 >= UMI_MIN_HEIGHT_M else "inh-office"


def _same_positions(a_tx, a_rx, b_tx, b_rx) -> np.ndarray:
    """[len(a)] bool: link a is also in b (same tx and rx to 1 mm)."""
    key = lambda t, r: {tuple(x) for x in np.round(np.concatenate([t, r], 1), 3)}
    kb = key(b_tx, b_rx)
    return np.array([tuple(x) in kb for x in np.round(np.concatenate([a_tx, a_rx], 1), 3)], dtype=bool)


def _material_estimates(twin: TwinScene, doc: dict | None, frequency_hz: float) -> dict[str, tuple[float, float]]:
    from rftwin.twin_io import material_values  # noqa: PLC0415

    mv = material_values(twin, doc, np.array([frequency_hz]))  # eps_r, sigma [1, 1, K]
    eps, sig = mv.eps_r.reshape(-1).numpy(), mv.sigma.reshape(-1).numpy()
    return {o.name: (float(eps[i]), float(sig[i])) for i, o in enumerate(twin.objects)}


def _mpc_comparison(pr, twin: TwinScene, doc: dict | None, tx: np.ndarray, rx: np.ndarray, f: np.ndarray,
                    ids: list[str], measured, cfg: ClusterConfig):
    """M1-M4 and C1-C2 of the traced paths of one ray method (prediction ``pr``) against measured MPCs."""
    import torch  # noqa: PLC0415

    from rftwin.data.mpc import mpcs_from_paths  # noqa: PLC0415
    from rftwin.evaluate.clusters import MPCSet, cluster_metrics  # noqa: PLC0415
    from rftwin.physics.channel import path_power  # noqa: PLC0415
    from rftwin.physics.engine import path_coefficients  # noqa: PLC0415
    from rftwin.twin_io import material_values, unique_links  # noqa: PLC0415

    ps = pr.pathset
    uf, row_f = np.unique(np.asarray(f, dtype=np.float64), return_inverse=True)
    with torch.no_grad():
        p = path_power(path_coefficients(ps, material_values(twin, doc, uf), torch.as_tensor(uf))[0])  # [F, N]
    rows = np.unique(measured.link)
    _, _, row_link = unique_links(tx, rx)
    table = mpcs_from_paths(ps, p, [ids[r] for r in rows], row_link[rows], row_f.reshape(-1)[rows])
    return cluster_metrics(measured, MPCSet.from_table(table, ids), cfg)


def evaluate_twin(twin: TwinScene, doc: dict | None, truth, train=None, true_materials: Path | None = None,
                  wideband_truth: Path | None = None, config: EvaluationConfig | None = None,
                  mpcs_truth: Path | None = None) -> EvaluationResult:
    """Predict ``truth`` (a :class:`rftwin.data.Measurements`) with every method and compute the metrics.

    ``train``: the measurements used for calibration (needed by the log-distance and GP baselines);
    ``true_materials``: file for parameter MRE (:mod:`rftwin.evaluate.params`); ``wideband_truth``: wideband
    sidecar of ``truth`` (:mod:`rftwin.data.wideband`) for MCS; ``mpcs_truth``: measured MPC table of ``truth``
    (:mod:`rftwin.data.mpc`, ``link_id`` = truth link ids) for M1-M4 and C1-C2 (``config.clusters``). Methods that
    cannot run are skipped with a note.
    """
    from rftwin.predict.predict import WidebandGrid, predict_channels  # noqa: PLC0415

    config = config or EvaluationConfig()
    unknown = set(config.methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; expected some of {', '.join(METHODS)}")
    notes: list[str] = []
    info: dict = {}
    tx, rx, f = truth.tx_pos, truth.rx_pos, truth.frequency_hz
    f_ref = float(np.min(f))
    ids = list(truth.link_id)
    d3 = np.linalg.norm(rx - tx, axis=1)
    df = pd.DataFrame({"link_id": ids, **{c: truth.df[c].to_numpy() for c in
                                          ("tx_x", "tx_y", "tx_z", "rx_x", "rx_y", "rx_z", "frequency_hz")},
                       "distance_m": d3, "true_path_gain_db": truth.path_gain_db})
    has_ds = truth.delay_spread_s is not None and np.isfinite(truth.delay_spread_s).any()
    if has_ds:
        df["true_delay_spread_s"] = truth.delay_spread_s
    if train is not None:
        df["in_train"] = _same_positions(tx, rx, train.tx_pos, train.rx_pos)
        if df["in_train"].any():
            notes.append(f"{int(df['in_train'].sum())} of {len(df)} evaluation links are also training links "
                         "(same positions): the scores of those links are not generalisation scores.")

    wb_true, wb_grid = None, None
    if wideband_truth is not None:
        from rftwin.data.wideband import read_wideband  # noqa: PLC0415

        wb_true = read_wideband(wideband_truth, truth)
        _, bw, k = wb_true.grid()
        wb_grid = WidebandGrid(bandwidth_hz=bw, num_subcarriers=k, kind="cfr")
        info["wideband"] = {"file": str(wideband_truth), "bandwidth_hz": bw, "num_subcarriers": k,
                            "links": len(wb_true)}

    mpc_true = None
    if mpcs_truth is not None:
        from rftwin.data.mpc import read_mpcs  # noqa: PLC0415
        from rftwin.evaluate.clusters import MPCSet  # noqa: PLC0415

        mt = read_mpcs(mpcs_truth, truth)
        mpc_true = MPCSet.from_table(mt, ids)
        info["mpcs"] = {"file": str(mpcs_truth), "mpcs": len(mt), "links": len(mt.link_ids),
                        "config": {k: getattr(config.clusters, k) for k in config.clusters.__dataclass_fields__}}
        if len(mt.link_ids) < len(ids):
            notes.append(f"the MPC table covers {len(mt.link_ids)} of {len(ids)} evaluation links: M1-M4 and C1-C2 "
                         "are computed on those links only.")
    mpc_cmp: dict = {}

    methods: list[str] = []
    preds: dict[str, np.ndarray] = {}
    ds_pred: dict[str, np.ndarray] = {}
    mcs_link: dict[str, np.ndarray] = {}
    los = None
    twin.set_frequency(f_ref)
    ray_docs: dict[str, dict | None] = {}
    if "twin" in config.methods:
        ray_docs["twin"] = doc
    if "itu" in config.methods:
        if doc is None and all(o.label is not None for o in twin.objects):
            notes.append("TWIN is an uncalibrated scene with ITU materials: its 'twin' row is the ITU baseline, "
                         "so no separate 'itu' row is computed.")
        else:
            idoc, missing = itu_document(twin, f_ref)
            if len(missing) == len(twin.objects):
                notes.append("no object has an ITU label: the uncalibrated ITU baseline is skipped.")
            else:
                if missing:
                    notes.append(f"ITU baseline: objects without an ITU label keep the twin's values: "
                                 f"{', '.join(missing)}.")
                ray_docs["itu"] = idoc
    if ray_docs or "tr38901" in config.methods:
        run_docs = ray_docs or {"twin": doc}  # 3GPP needs the LoS state from a trace even when twin is not scored
        for m, d in run_docs.items():
            pr = predict_channels(twin, d, tx, rx, f, config.settings, config.progress, link_ids=ids,
                                  wideband=wb_grid, keep_pathset=mpc_true is not None)  # else: streamed
            if los is None:
                los = pr.link_los
            if m not in ray_docs:
                break
            methods.append(m)
            preds[m] = pr.table["path_gain_db"].to_numpy()
            ds_pred[m] = pr.table["delay_spread_s"].to_numpy()
            df[f"{m}_num_paths"] = pr.table["num_paths"].to_numpy()
            if wb_true is not None and pr.wideband is not None:
                have = [i for i in ids if i in wb_true.links]
                pos = {i: j for j, i in enumerate(ids)}
                per = np.full(len(ids), np.nan)
                if have:
                    ht = wb_true.cfr_matrix(have)
                    hp = pr.wideband.cfr_matrix(have)
                    num = np.abs(np.sum(np.conj(ht) * hp, axis=1))
                    den = np.linalg.norm(ht, axis=1) * np.linalg.norm(hp, axis=1)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        per[[pos[i] for i in have]] = np.where(den > 0, num / den, np.nan)
                    info.setdefault("mcs", {})[m] = M.mcs(hp, ht)
                mcs_link[m] = per
            if mpc_true is not None:
                mpc_cmp[m] = _mpc_comparison(pr, twin, d, tx, rx, f, ids, mpc_true, config.clusters)
        df["los"] = los
        n_none = int(np.sum(df.get("twin_num_paths", pd.Series(np.ones(len(df)))) == 0))
        if n_none:
            notes.append(f"{n_none} links have no traced path in the twin (prediction NaN, left out of its "
                         "statistics).")

    if ("log_distance" in config.methods or "gp" in config.methods) and train is None:
        notes.append("no training measurements (--train): the log-distance and GP baselines are skipped.")
    if "log_distance" in config.methods and train is not None:
        from rftwin.baselines.pathloss import fit_log_distance  # noqa: PLC0415

        try:
            fit = fit_log_distance(train.tx_pos, train.rx_pos, train.frequency_hz, train.path_gain_db)
            preds["log_distance"] = fit.predict(tx, rx, f)
            methods.append("log_distance")
            info["log_distance"] = fit.as_dict()
        except ValueError as exc:
            notes.append(f"log-distance baseline skipped: {exc}.")
    if "tr38901" in config.methods:
        from rftwin.baselines.pathloss import scenario_name, tr38901_path_gain_db  # noqa: PLC0415

        scen = _auto_scenario(twin, tx, rx) if config.scenario == "auto" else scenario_name(config.scenario)
        ground = float(twin.bbox()[0][2]) if config.ground_z_m is None else config.ground_z_m
        g, valid = tr38901_path_gain_db(tx, rx, f, los, scen, ground)
        preds["tr38901"] = g
        df["tr38901_in_range"] = valid
        methods.append("tr38901")
        info["tr38901"] = {"scenario": scen, "auto": config.scenario == "auto", "ground_z_m": ground,
                           "los_links": int(np.sum(los)), "nlos_links": int(np.sum(~los)),
                           "out_of_range_links": int(np.sum(~valid))}
        if (~valid).any():
            notes.append(f"3GPP TR 38.901 ({scen}): {int(np.sum(~valid))} links are outside the model's validity "
                         "range (evaluated at the nearest valid distance; see column tr38901_in_range).")
    if "gp" in config.methods and train is not None:
        from rftwin.baselines.gp import fit_gp  # noqa: PLC0415

        try:
            gp = fit_gp(train.tx_pos, train.rx_pos, train.frequency_hz, train.path_gain_db, seed=config.seed)
            mu, sd = gp.predict(tx, rx, f, return_std=True)
            preds["gp"] = mu
            df["gp_std_db"] = sd
            methods.append("gp")
            info["gp"] = {"kernel": gp.kernel(), "n_train": gp.n_train, "inputs": ["rx_x", "rx_y", "rx_z"]
                          + (["tx_x", "tx_y", "tx_z"] if gp.use_tx else []) + (["log10_f"] if gp.use_freq else [])}
        except ValueError as exc:
            notes.append(f"GP baseline skipped: {exc}.")

    order = [m for m in METHODS if m in methods]
    res_metrics: dict[str, dict] = {}
    for m in order:
        df[f"{m}_path_gain_db"] = preds[m]
        df[f"{m}_abs_error_db"] = np.abs(preds[m] - truth.path_gain_db)
        st = M.abs_error_stats_db(preds[m], truth.path_gain_db)
        if m in ds_pred:
            df[f"{m}_delay_spread_s"] = ds_pred[m]
            if has_ds:
                e = np.abs(ds_pred[m] - truth.delay_spread_s) * 1e9
                e = e[np.isfinite(e)]
                st["delay_spread_mae_ns"] = float(e.mean()) if e.size else math.nan
                st["delay_spread_median_ns"] = float(np.median(e)) if e.size else math.nan
        if m in mcs_link:
            df[f"{m}_mcs"] = mcs_link[m]
            st["mcs"] = info.get("mcs", {}).get(m, math.nan)
        if m in mpc_cmp:
            from rftwin.evaluate.clusters import summarize  # noqa: PLC0415

            c = mpc_cmp[m].per_link
            if "mpc_true_clusters" not in df:
                for k in ("num_mpcs", "clusters", "path_gain_db", "delay_spread_s", "angular_spread_deg",
                          "k_factor_db"):
                    df[f"mpc_true_{k}"] = c[f"true_{k}"].to_numpy()
                info["mpcs"]["angles"] = mpc_cmp[m].info["angles"]
            for k in ("num_mpcs", "path_gain_db", "delay_spread_s", "angular_spread_deg", "k_factor_db"):
                df[f"{m}_mpc_{k}"] = c[f"pred_{k}"].to_numpy()
            for k, col in (("clusters", "pred_clusters"), ("clusters_matched", "clusters_matched"),
                           ("cluster_f1", "f1"), ("cluster_power_error_db", "cluster_power_error_db"),
                           ("cluster_delay_error_ns", "cluster_delay_error_ns"),
                           ("cluster_angle_error_deg", "cluster_angle_error_deg")):
                df[f"{m}_{k}"] = c[col].to_numpy()
            st.update(summarize(mpc_cmp[m]))
        res_metrics[m] = st
    base = [c for c in df.columns if not any(c.startswith(f"{m}_") for m in METHODS)]
    per_method = [c for m in order for c in df.columns if c.startswith(f"{m}_")]
    df = df[base + per_method]
    if wb_true is None:
        notes.append("no wideband truth (--wideband): MCS not computed.")
    if not has_ds:
        notes.append("the truth has no delay_spread_s: delay-spread error not computed.")

    # maps and SSIM
    maps = []
    groups = map_groups(tx, rx, f, config.grid_cell_m)
    if groups:
        acc = {m: [] for m in order}
        for gr in groups:
            tmap = gr.to_map(truth.path_gain_db)
            rng = float(np.nanmax(tmap) - np.nanmin(tmap))
            pm = {}
            for m in order:
                pm[m] = gr.to_map(preds[m])
                s = M.ssim(pm[m], tmap, data_range=rng if rng > 0 else None)
                acc[m].append((s, int(np.isfinite(tmap).sum())))
            maps.append((gr, tmap, pm))
        for m in order:
            vals = [(s, w) for s, w in acc[m] if np.isfinite(s)]
            res_metrics[m]["ssim"] = (float(np.average([s for s, _ in vals], weights=[w for _, w in vals]))
                                      if vals else math.nan)
        info["maps"] = [{"tx": list(g.tx_pos), "frequency_hz": g.frequency_hz, "shape": list(g.shape),
                         "regular_grid": g.regular} for g, _, _ in maps]
    else:
        notes.append("the evaluation links form no map (no regular receiver grid per transmitter and frequency; "
                     "use --grid-cell to bin scattered receivers): SSIM not computed.")

    params_table = params_summary = None
    if true_materials is not None:
        from rftwin.evaluate.params import parameter_errors, read_true_materials  # noqa: PLC0415

        true = read_true_materials(true_materials, twin.names, f_ref)
        est = {m: _material_estimates(twin, ray_docs[m], f_ref) for m in ("twin", "itu") if m in ray_docs}
        params_table, params_summary = parameter_errors(true, est)
        for m, s in params_summary.items():
            if m in res_metrics:
                res_metrics[m]["mre_eps_r"] = s["mre_eps_r"]
                res_metrics[m]["mre_sigma"] = s["mre_sigma"]
        info["parameters_at_hz"] = f_ref
    return EvaluationResult(per_link=df, methods=order, metrics=res_metrics, maps=maps, params_table=params_table,
                            params_summary=params_summary, notes=notes, info=info)


__all__ = ["METHODS", "METHOD_TITLES", "EvaluationConfig", "EvaluationResult", "evaluate_twin", "itu_document"]
