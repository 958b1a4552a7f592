"""WEDT benchmark (seed 003, Sec. IV-V): BCM + NLL calibration against ITU labels, direct calibration (Diff-RT),
GP-PU and a NeRF^2-style field, on the street canyon and an indoor multi-room scene.

Protocol per scene: the true materials are the ITU labels with a seeded log-normal perturbation per object;
"measurements" are Sionna RT path coefficients traced at the true materials (path gain with Gaussian noise of
``noise_db``); the twin traces the same links once at the label materials. One fixed transmitter, receivers on a
regular grid (the full data set); M of them measured (random by default). Evaluation:
B2D - the same transmitter, all other grid receivers (MALE, SSIM of the gain map, MCS of the CFR);
D2D - ``d2d_tx`` new transmitter positions, each with a shared coarse receiver grid (MALE, SSIM per transmitter,
MCS). CFR: W = 200 MHz, N = 256 subcarriers (seed 003).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from rftwin.bcm.calibrate import NllConfig, calibrate_nll
from rftwin.bcm.features import FeatureScaler, GeometryFeatures, geometry_features
from rftwin.bcm.map import BayesianChannelMap, BcmConfig, ChannelMap
from rftwin.bcm.sampling import SAMPLING_MODES, sample_measurements
from rftwin.pathset import PathSet, concat
from rftwin.physics.channel import path_power
from rftwin.physics.engine import path_coefficients
from rftwin.physics.features import cfr_from_paths, delay_moments
from rftwin.progress import track
from rftwin.scene.scene_materials import SceneMaterials
from rftwin.studies.wedt_plots import METHOD_LABELS, plot_gain_maps, plot_male_vs_m
from rftwin.trace.tracer import SolverSettings, trace

METHODS = ("itu", "diff_rt", "bcm_map", "bcm_nll", "bcm_nll_nobias", "diff_rt_field", "bcm_nll_field", "gp_pu",
           "nerf2")
# Seed 003 (Table I, Sec. V-A), M = 30, for the write-up; their scenes/materials differ from ours.
SEED_REFERENCE = {
    "b2d_male_db": {"WEDT": [1.56, 1.77, 2.43]},
    "d2d": {"WEDT": {"male_db": [2.11, 2.31, 3.03], "ssim": [0.86, 0.85], "mcs": [0.82, 0.73, 0.75]},
            "Diff-RT": {"male_db": [5.27, 6.79, 5.84], "ssim": [0.74, 0.72], "mcs": [0.71, 0.65, 0.68]},
            "NeRF2": {"male_db": [8.20, 9.14, 8.76], "ssim": [0.55, 0.53], "mcs": [0.58, 0.54, 0.55]}},
}


# ---------------------------------------------------------------------------------------------------- scenes
@dataclass
class Grid:
    """Receiver grid: points [P, 3] and their (row, col) cells in a [ny, nx] map."""

    points: np.ndarray
    ij: np.ndarray
    shape: tuple[int, int]

    def to_map(self, values: np.ndarray) -> np.ndarray:
        m = np.full(self.shape, np.nan)
        m[self.ij[:, 0], self.ij[:, 1]] = values
        return m

    def subset(self, keep: np.ndarray) -> Grid:
        return Grid(self.points[keep], self.ij[keep], self.shape)


def _grid(lo: np.ndarray, hi: np.ndarray, spacing: float, z: float, ok: Callable[[np.ndarray], np.ndarray]) -> Grid:
    xs = np.arange(lo[0] + spacing / 2, hi[0], spacing)
    ys = np.arange(lo[1] + spacing / 2, hi[1], spacing)
    gy, gx = np.meshgrid(np.arange(len(ys)), np.arange(len(xs)), indexing="ij")
    p = np.column_stack([xs[gx.ravel()], ys[gy.ravel()], np.full(gx.size, z)])
    keep = ok(p)
    return Grid(p[keep], np.column_stack([gy.ravel(), gx.ravel()])[keep], (len(ys), len(xs)))


@dataclass
class SceneCase:
    name: str
    twin: object  # TwinScene
    tx: np.ndarray  # [3] the fixed (B2D) transmitter
    grid: Grid  # the data set (B2D receivers)
    coarse: Grid  # D2D receivers
    rx_height_m: float


def _outside_closed(twin, margin: float) -> Callable[[np.ndarray], np.ndarray]:
    from rftwin.scene.sampling import closed_object_boxes

    boxes = closed_object_boxes(twin, margin)

    def ok(p):
        keep = np.ones(len(p), dtype=bool)
        for bmin, bmax in boxes:
            keep &= ~np.all((p[:, :2] >= bmin[:2]) & (p[:, :2] <= bmax[:2]), axis=1)
        return keep
    return ok


def street_canyon_case(frequency_hz: float, spacing_m: float, coarse_m: float) -> SceneCase:
    from rftwin.scene import load

    twin = load("simple_street_canyon", frequency_hz)
    lo, hi = np.array([-88.0, -56.0]), np.array([88.0, 56.0])
    ok = _outside_closed(twin, 1.0)
    return SceneCase("simple_street_canyon", twin, np.array([0.0, 0.5, 10.0]), _grid(lo, hi, spacing_m, 1.5, ok),
                     _grid(lo, hi, coarse_m, 1.5, ok), 1.5)


def indoor_case(frequency_hz: float, spacing_m: float, coarse_m: float) -> SceneCase:
    from rftwin.scene.indoor import IndoorLayout, indoor

    layout = IndoorLayout()
    twin = indoor(frequency_hz, layout)
    z = 1.2
    walls_y = (0.0, *layout.corridor_y, layout.size_y)
    walls_x = (0.0, *layout.south_partitions_x, *layout.north_partitions_x, layout.size_x)
    closed = _outside_closed(twin, 0.2)

    def ok(p):
        keep = closed(p)
        for y in walls_y:
            keep &= np.abs(p[:, 1] - y) > 0.2
        for x in walls_x:
            keep &= np.abs(p[:, 0] - x) > 0.2
        return keep
    lo, hi = np.zeros(2), np.array([layout.size_x, layout.size_y])
    return SceneCase("indoor", twin, np.array([4.0, 6.0, 2.5]), _grid(lo, hi, spacing_m, z, ok),
                     _grid(lo, hi, coarse_m, z, ok), z)


# ---------------------------------------------------------------------------------------------- config
@dataclass
class WedtConfig:
    scenes: tuple[str, ...] = ("simple_street_canyon", "indoor")
    sizes: tuple[int, ...] = (10, 30, 100, 300)
    methods: tuple[str, ...] = METHODS
    frequency_hz: float = 3.5e9
    bandwidth_hz: float = 200e6
    num_subcarriers: int = 256
    settings: SolverSettings = field(default_factory=lambda: SolverSettings(max_depth=3, samples_per_src=100_000,
                                                                           seed=7))
    spacing_m: dict = field(default_factory=lambda: {"simple_street_canyon": 4.0, "indoor": 0.5})
    d2d_tx: int = 100
    d2d_rx: int = 30  # receivers per new transmitter (shared coarse grid, approximately)
    eps_log_std: float = 0.5  # true eps_r = label x exp(N(0, s^2)) (clipped at 2 s), per object
    sigma_log_std: float = 1.2  # true sigma = label x exp(N(0, s^2)) (clipped at 2 s), per object
    noise_db: float = 1.0  # Gaussian noise on the measured path gains (dB)
    sampling_modes: tuple[str, ...] = SAMPLING_MODES
    sampling_size: int = 30
    mcs_links: int = 400  # CFR metrics on at most this many links per evaluation (same links for every method)
    nll: NllConfig = field(default_factory=NllConfig)
    field_lr: float = 2e-3  # Adam learning rate of the Fourier-feature material field (both field methods)
    bcm: BcmConfig = field(default_factory=BcmConfig)
    seed: int = 7

    @classmethod
    def quick(cls) -> WedtConfig:
        return cls(sizes=(10, 30, 100), spacing_m={"simple_street_canyon": 6.0, "indoor": 0.75}, d2d_tx=20,
                   d2d_rx=36, mcs_links=200, sampling_modes=("random", "expert", "trajectory"))


# ----------------------------------------------------------------------------------------- channel data
@dataclass
class LinkData:
    """Per-link channel quantities: gain (dB, NaN without paths), RMS delay spread (ns), CFR rows for ``cfr_links``."""

    gain_db: np.ndarray
    delay_ns: np.ndarray
    cfr: np.ndarray | None = None  # [len(cfr_links), K]
    cfr_links: np.ndarray | None = None


def _cfr_rows(ps: PathSet, a: torch.Tensor, links: np.ndarray, cfg: WedtConfig) -> np.ndarray:
    """CFR [len(links), K] of the given links from coefficients a [N, R, T] (antenna pairs averaged)."""
    out = np.zeros((len(links), cfg.num_subcarriers), dtype=np.complex128)
    for s in range(0, len(links), 128):
        sub = torch.as_tensor(links[s:s + 128], dtype=torch.long)
        remap = torch.full((ps.num_links,), -1, dtype=torch.long)
        remap[sub] = torch.arange(len(sub))
        sel = remap[ps.link] >= 0
        H = cfr_from_paths(a[sel].movedim(0, -1), ps.tau_s[sel], remap[ps.link[sel]], len(sub), cfg.frequency_hz,
                           cfg.bandwidth_hz, cfg.num_subcarriers)  # [R, T, links, K]
        out[s:s + len(sub)] = H.mean(dim=(0, 1)).numpy()
    return out


def link_data(ps: PathSet, a: torch.Tensor, cfg: WedtConfig, cfr_links: np.ndarray | None) -> LinkData:
    """LinkData from path coefficients a [N, R, T] (e.g. ``ps.a_ref`` for Sionna's, or the engine's)."""
    a = a.detach()
    p = path_power(a)
    L = ps.num_links
    g = torch.zeros(L, dtype=p.dtype).index_add(0, ps.link, p).numpy()
    with np.errstate(divide="ignore"):
        gain = np.where(g > 0, 10 * np.log10(np.maximum(g, 1e-300)), np.nan)
    _, ds = delay_moments(path_power(a), ps.tau_s, ps.link, L, empty=0.0)
    H = _cfr_rows(ps, a, cfr_links, cfg) if cfr_links is not None else None
    return LinkData(gain, ds.numpy() * 1e9, H, cfr_links)


def engine_link_data(ps: PathSet, model: torch.nn.Module, cfg: WedtConfig, cfr_links: np.ndarray | None,
                     bias_db: float = 0.0) -> LinkData:
    """Twin prediction with a material model; ``bias_db`` (global gain bias) is added to gains and CFR power."""
    with torch.no_grad():
        f = torch.tensor([cfg.frequency_hz], dtype=torch.float64)
        a = path_coefficients(ps, model(ps, f), cfg.frequency_hz, check=False)[0, 0]
    d = link_data(ps, a, cfg, cfr_links)
    d.gain_db = d.gain_db + bias_db
    if d.cfr is not None:
        d.cfr = d.cfr * 10 ** (bias_db / 20)
    return d


def true_materials(labels_eps: np.ndarray, labels_sigma: np.ndarray, cfg: WedtConfig, salt: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per-object perturbation of the label materials (seeded by ``cfg.seed`` and ``salt``)."""
    rng = np.random.default_rng([cfg.seed, salt])
    K = len(labels_eps)
    fe = np.exp(np.clip(rng.normal(0, cfg.eps_log_std, K), -2 * cfg.eps_log_std, 2 * cfg.eps_log_std))
    fs = np.exp(np.clip(rng.normal(0, cfg.sigma_log_std, K), -2 * cfg.sigma_log_std, 2 * cfg.sigma_log_std))
    return np.maximum(labels_eps * fe, 1.05), labels_sigma * fs


# ------------------------------------------------------------------------------------------- metrics
def _metrics(pred: LinkData | None, truth: LinkData, links: np.ndarray, grid: Grid | None, groups=None) -> dict:
    """MALE over ``links``; SSIM of gain maps (``grid``: one map, or ``groups`` [(links, grid)] averaged);
    MCS over the CFR rows."""
    from rftwin.evaluate.metrics import male_db, mcs, ssim

    if pred is None:
        return {"male_db": None, "ssim": None, "mcs": None}
    out = {"male_db": male_db(pred.gain_db[links], truth.gain_db[links])}
    if groups is not None:
        vals = [ssim(g.to_map(pred.gain_db[lk]), g.to_map(truth.gain_db[lk])) for lk, g in groups]
        out["ssim"] = float(np.nanmean(vals))
    elif grid is not None:
        out["ssim"] = ssim(grid.to_map(pred.gain_db), grid.to_map(truth.gain_db))
    out["mcs"] = mcs(pred.cfr, truth.cfr) if pred.cfr is not None else None
    return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------- run
@dataclass
class SceneData:
    case: SceneCase
    eps_label: np.ndarray
    sigma_label: np.ndarray
    eps_true: np.ndarray
    sigma_true: np.ndarray
    ps_b2d: PathSet  # twin trace (label materials) of the grid
    ps_d2d: PathSet
    truth_b2d: LinkData
    truth_d2d: LinkData
    truth_ps_b2d: PathSet  # Sionna trace at the true materials (its a_ref are the 'measurements')
    valid: np.ndarray  # grid receivers with paths in truth and twin
    d2d_links: np.ndarray  # evaluated D2D links
    d2d_groups: list  # (link indices, coarse grid) per new transmitter
    d2d_tx: np.ndarray
    features: GeometryFeatures
    trace_seconds: float


def prepare_scene(case: SceneCase, cfg: WedtConfig, progress: bool = True) -> SceneData:
    """Trace truth and twin (cached), choose D2D transmitters, compute truth channels and twin features."""
    from rftwin.materials import PerObjectMaterials

    twin = case.twin
    eps0 = np.array([o.relative_permittivity for o in twin.objects])
    sig0 = np.array([o.conductivity for o in twin.objects])
    thick = [o.thickness_m for o in twin.objects]
    eps_t, sig_t = true_materials(eps0, sig0, cfg, salt=sum(map(ord, case.name)))
    rng = np.random.default_rng([cfg.seed, 11])
    P = len(case.grid.points)
    cand = case.grid.points[np.linalg.norm(case.grid.points[:, :2] - case.tx[:2], axis=1) > 2.0]
    d2d_tx = cand[rng.choice(len(cand), min(cfg.d2d_tx, len(cand)), replace=False)]
    R = len(case.coarse.points)
    b2d_tx = np.repeat(case.tx[None], P, 0)
    d_tx, d_rx = np.repeat(d2d_tx, R, 0), np.tile(case.coarse.points, (len(d2d_tx), 1))
    t0 = time.perf_counter()
    traces = {}
    for which, (e, s) in (("truth", (eps_t, sig_t)), ("twin", (eps0, sig0))):
        mats = SceneMaterials(e, s)  # traced at these values; the scene keeps its own
        # one solver call (and cache entry) per D2D transmitter: a single call with all of them needs ~10 GB
        d2d = [trace(twin, d_tx[j * R:(j + 1) * R], d_rx[j * R:(j + 1) * R], cfg.settings, progress=False,
                     materials=mats)
               for j in track(range(len(d2d_tx)), f"tracing D2D ({which}, {case.name})", enabled=progress)]
        traces[which] = (trace(twin, b2d_tx, case.grid.points, cfg.settings, progress=progress, materials=mats),
                         concat(d2d))
    trace_s = time.perf_counter() - t0
    ps_b2d, ps_d2d = traces["twin"]
    tb, td = traces["truth"]
    sel = np.random.default_rng([cfg.seed, 12])
    d2d_len = np.linalg.norm(d_tx - d_rx, axis=1)
    has_t = np.bincount(td.link.numpy(), minlength=len(d_tx)) > 0
    has_w = np.bincount(ps_d2d.link.numpy(), minlength=len(d_tx)) > 0
    d2d_ok = np.nonzero((d2d_len > 1.0) & has_t & has_w)[0]
    d2d_cfr = np.sort(sel.choice(d2d_ok, min(cfg.mcs_links, len(d2d_ok)), replace=False))
    truth_d2d = link_data(td, td.a_ref, cfg, d2d_cfr)
    truth_d2d.gain_db[np.setdiff1d(np.arange(len(d_tx)), d2d_ok)] = np.nan
    groups = []
    for j in range(len(d2d_tx)):
        lk = np.arange(j * R, (j + 1) * R)
        groups.append((lk, case.coarse))
    valid = (np.bincount(tb.link.numpy(), minlength=P) > 0) & (np.bincount(ps_b2d.link.numpy(), minlength=P) > 0)
    truth_b2d = link_data(tb, tb.a_ref, cfg, None)
    truth_b2d.gain_db[~valid] = np.nan
    label_model = PerObjectMaterials(eps0[None], sig0[None], thick)
    with torch.no_grad():
        feats = geometry_features(ps_b2d, label_model(cfg.frequency_hz), cfg.frequency_hz, cfg.bandwidth_hz,
                                  cfg.num_subcarriers)
    return SceneData(case, eps0, sig0, eps_t, sig_t, ps_b2d, ps_d2d, truth_b2d, truth_d2d, tb, valid, d2d_ok,
                     groups, d2d_tx, feats, trace_s)


def _field_model(sd: SceneData, cfg: WedtConfig):
    """Seed 003's EM property field: Fourier-feature MLP, initialised to the label materials everywhere."""
    from rftwin.fields import FourierField

    lo, hi = sd.case.twin.bbox()
    return FourierField((lo - 1.0, hi + 1.0), [o.thickness_m for o in sd.case.twin.objects], sd.eps_label,
                        sd.sigma_label, reference_frequency_hz=cfg.frequency_hz, num_features=32, width=64, depth=3,
                        seed=cfg.seed)


def _label_model(sd: SceneData):
    from rftwin.materials import PerObjectMaterials

    return PerObjectMaterials(sd.eps_label[None], sd.sigma_label[None], [o.thickness_m for o in sd.case.twin.objects])


def run_methods(sd: SceneData, measured: np.ndarray, cfg: WedtConfig, methods: tuple[str, ...],
                rng: np.random.Generator, progress: bool = False) -> dict:
    """Fit every method on the ``measured`` grid receivers and evaluate B2D / D2D. Returns per method
    {b2d: metrics, d2d: metrics, seconds, extra} and the B2D gain predictions (for maps)."""
    from rftwin.calibrate import CalibrationConfig, Targets, calibrate

    case = sd.case
    f = cfg.frequency_hz
    P = len(case.grid.points)
    valid_idx = np.nonzero(sd.valid)[0]
    eval_idx = np.setdiff1d(valid_idx, measured)
    cfr_b2d = np.sort(rng.choice(eval_idx, min(cfg.mcs_links, len(eval_idx)), replace=False))
    truth_b2d = LinkData(sd.truth_b2d.gain_db, sd.truth_b2d.delay_ns,
                         _cfr_rows(sd.truth_ps_b2d, sd.truth_ps_b2d.a_ref, cfr_b2d, cfg), cfr_b2d)
    noise = np.random.default_rng([cfg.seed, len(measured), 5]).normal(0, cfg.noise_db, len(measured))
    meas_gain = sd.truth_b2d.gain_db[measured] + noise
    meas_ds = sd.truth_b2d.delay_ns[measured]
    out: dict = {}
    maps: dict = {}
    cm = None

    def record(name, b2d: LinkData | None, d2d: LinkData | None, t0: float, extra: dict | None = None):
        out[name] = {"b2d": _metrics(b2d, truth_b2d, eval_idx, case.grid),
                     "d2d": _metrics(d2d, sd.truth_d2d, sd.d2d_links, None, sd.d2d_groups),
                     "seconds": time.perf_counter() - t0, **(extra or {})}
        if b2d is not None:
            g = b2d.gain_db.copy()
            g[~sd.valid] = np.nan
            maps[name] = g

    def engine_eval(model, bias=0.0):
        return (engine_link_data(sd.ps_b2d, model, cfg, cfr_b2d, bias),
                engine_link_data(sd.ps_d2d, model, cfg, sd.truth_d2d.cfr_links, bias))

    if "itu" in methods:
        t0 = time.perf_counter()
        record("itu", *engine_eval(_label_model(sd)), t0)
    if "diff_rt" in methods:
        t0 = time.perf_counter()
        ps_m = sd.ps_b2d.select_links(torch.as_tensor(measured))
        tg = Targets.build(np.arange(len(measured)), np.full(len(measured), f), meas_gain)
        # the seed's Diff-RT: gradient descent on the measured gains directly (same optimiser and budget as the
        # NLL calibration, so the supervision is the only difference)
        dcfg = CalibrationConfig(optimizer="adam", lr=cfg.nll.lr, max_iter=cfg.nll.iterations,
                                 patience=cfg.nll.iterations)
        res = calibrate(ps_m, _label_model(sd), tg, dcfg, progress=progress, uncertainty=False)
        record("diff_rt", *engine_eval(res.model), t0,
               {"mre_eps": _mre(res.eps_r, sd.eps_true), "mre_sigma": _mre(res.sigma, sd.sigma_true)})
    if {"bcm_map", "bcm_nll", "bcm_nll_nobias"} & set(methods):
        t0 = time.perf_counter()
        feats = sd.features.subset(valid_idx)
        bcm = BayesianChannelMap(cfg.bcm).fit(sd.features.subset(measured), meas_gain, meas_ds, reference=feats)
        cm = bcm.predict(sd.features)
        t_bcm = time.perf_counter() - t0
        gain = np.where(sd.valid, cm.gain_db, np.nan)
        if "bcm_map" in methods:
            record("bcm_map", LinkData(gain, cm.delay_spread_ns), None, t0,
                   {"calibration": _calibration(cm.gain_db[eval_idx], cm.gain_var[eval_idx],
                                                sd.truth_b2d.gain_db[eval_idx]), "bcm": bcm.summary()})
        if "bcm_nll" in methods:
            t1 = time.perf_counter()
            model = _label_model(sd)
            ps_t = sd.ps_b2d.select_links(torch.as_tensor(valid_idx))
            res = calibrate_nll(ps_t, model, cm.subset(valid_idx), f, cfg.nll, progress=progress)
            with torch.no_grad():
                e, s = model.eps_sigma(f)
            extra = {"bias_db": res.bias_db, "nll_seconds": time.perf_counter() - t1, "bcm_seconds": t_bcm,
                     "mre_eps": _mre(e[0, 0].numpy(), sd.eps_true), "mre_sigma": _mre(s[0, 0].numpy(), sd.sigma_true)}
            record("bcm_nll", *engine_eval(model, res.bias_db), t1, extra)
            out["bcm_nll"]["seconds"] += t_bcm  # BCM construction + calibration + prediction
    if "bcm_nll_nobias" in methods and cm is not None:
        t0 = time.perf_counter()
        model = _label_model(sd)
        calibrate_nll(sd.ps_b2d.select_links(torch.as_tensor(valid_idx)), model, cm.subset(valid_idx), f,
                      replace(cfg.nll, gain_bias=False), progress=progress)
        record("bcm_nll_nobias", *engine_eval(model), t0)
    if "diff_rt_field" in methods:
        t0 = time.perf_counter()
        fld = _field_model(sd, cfg)
        ps_m = sd.ps_b2d.select_links(torch.as_tensor(measured))
        direct = ChannelMap(case.grid.points[measured], meas_gain, np.full(len(measured), max(cfg.noise_db, 0.1) ** 2),
                            meas_ds, np.ones(len(measured)))
        dcfg = replace(cfg.nll, lr=cfg.field_lr, gain_bias=False, balance=False, eta_delay=0.0)
        calibrate_nll(ps_m, fld, direct, f, dcfg, progress=progress)
        record("diff_rt_field", *engine_eval(fld), t0)
    if "bcm_nll_field" in methods:
        t0 = time.perf_counter()
        if cm is None:
            bcm = BayesianChannelMap(cfg.bcm).fit(sd.features.subset(measured), meas_gain, meas_ds,
                                                  reference=sd.features.subset(valid_idx))
            cm = bcm.predict(sd.features)
        fld = _field_model(sd, cfg)
        res = calibrate_nll(sd.ps_b2d.select_links(torch.as_tensor(valid_idx)), fld, cm.subset(valid_idx), f,
                            replace(cfg.nll, lr=cfg.field_lr), progress=progress)
        record("bcm_nll_field", *engine_eval(fld, res.bias_db), t0, {"bias_db": res.bias_db})
    if "gp_pu" in methods:
        from rftwin.baselines.gp_pu import GpPu

        t0 = time.perf_counter()
        gp = GpPu().fit(case.tx, case.grid.points[measured], meas_gain)
        m, _ = gp.predict(case.grid.points)
        record("gp_pu", LinkData(np.where(sd.valid, m, np.nan), np.full(P, np.nan)), None, t0)
    if "nerf2" in methods:
        from rftwin.baselines.nerf2 import Nerf2, Nerf2Config

        t0 = time.perf_counter()
        lo, hi = case.twin.bbox()
        net = Nerf2(lo, hi, Nerf2Config(seed=cfg.seed)).fit(case.tx, case.grid.points[measured], meas_gain)
        b = LinkData(net.predict_gain_db(case.tx, case.grid.points), np.full(P, np.nan))
        b.cfr = net.predict_cfr(case.tx, case.grid.points[cfr_b2d], f, cfg.bandwidth_hz, cfg.num_subcarriers)
        tx_d, rx_d = sd.ps_d2d.tx_pos.numpy(), sd.ps_d2d.rx_pos.numpy()
        dl = np.full(len(tx_d), np.nan)
        dl[sd.d2d_links] = _nerf_gain_pairs(net, tx_d[sd.d2d_links], rx_d[sd.d2d_links])
        d = LinkData(dl, np.full(len(tx_d), np.nan))
        cl = sd.truth_d2d.cfr_links
        d.cfr = net.predict_cfr(tx_d[cl], rx_d[cl], f, cfg.bandwidth_hz, cfg.num_subcarriers) if len(cl) else None
        record("nerf2", b, d, t0)
    return {"methods": out, "maps": maps, "num_eval": len(eval_idx)}


def _nerf_gain_pairs(net, tx: np.ndarray, rx: np.ndarray, chunk: int = 256) -> np.ndarray:
    with torch.no_grad():
        txt = torch.as_tensor(tx, dtype=torch.float32)
        rxt = torch.as_tensor(rx, dtype=torch.float32)
        return torch.cat([net.gain_db(txt[s:s + chunk], rxt[s:s + chunk])
                          for s in range(0, len(rx), chunk)]).double().numpy()


def _mre(est: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(est) - true) / np.abs(true)))


def _calibration(mean: np.ndarray, var: np.ndarray, truth: np.ndarray) -> dict:
    """How honest the BCM variances are: fraction of truths inside the 1- and 2-sigma intervals, mean z^2."""
    ok = np.isfinite(truth)
    z = (truth[ok] - mean[ok]) / np.sqrt(var[ok])
    return {"within_1sigma": float(np.mean(np.abs(z) <= 1)), "within_2sigma": float(np.mean(np.abs(z) <= 2)),
            "mean_z2": float(np.mean(z * z))}


def run_scene(case: SceneCase, cfg: WedtConfig, out_dir: Path | None = None, progress: bool = True) -> dict:
    """All sizes M (random sampling) and the sampling-mode comparison on one scene."""
    sd = prepare_scene(case, cfg, progress)
    valid_idx = np.nonzero(sd.valid)[0]
    rows, maps_at = [], {}
    jobs = [("random", m) for m in cfg.sizes if m < len(valid_idx)]
    jobs += [(mode, cfg.sampling_size) for mode in cfg.sampling_modes if mode != "random"]
    if "random" in cfg.sampling_modes and ("random", cfg.sampling_size) not in jobs:
        jobs.append(("random", cfg.sampling_size))
    scaler = FeatureScaler().fit(_expert_space(sd.features.subset(valid_idx)))
    for mode, m in track(jobs, f"WEDT benchmark: {case.name}", enabled=progress):
        rng = np.random.default_rng([cfg.seed, m, SAMPLING_MODES.index(mode)])
        pick = sample_measurements(mode, case.grid.points[valid_idx], m, rng,
                                   scaler.transform(_expert_space(sd.features.subset(valid_idx))))
        measured = valid_idx[pick]
        methods = cfg.methods if mode == "random" else tuple(
            x for x in cfg.methods if x in ("bcm_map", "bcm_nll", "bcm_nll_nobias", "bcm_nll_field"))
        t_job = time.perf_counter()
        r = run_methods(sd, measured, cfg, methods, rng, progress=False)
        if progress:
            print(f"[wedt] {case.name} {mode} M={m}: " + ", ".join(
                f"{k} {v['b2d']['male_db']:.2f}/{v['d2d']['male_db'] or float('nan'):.2f} dB"
                for k, v in r["methods"].items()) + f" (B2D/D2D MALE, {time.perf_counter() - t_job:.0f} s)",
                file=sys.stderr, flush=True)
        rows.append({"sampling": mode, "M": int(m), "num_eval_b2d": r["num_eval"], **r["methods"]})
        if mode == "random" and m == cfg.sampling_size:
            maps_at = {"measured": measured, **r["maps"]}
    result = {
        "scene": case.name, "num_objects": len(case.twin.objects), "num_grid": len(case.grid.points),
        "num_valid": len(valid_idx), "grid_spacing_m": float(cfg.spacing_m[case.name]),
        "tx_position_m": case.tx.tolist(), "num_d2d_tx": len(sd.d2d_tx),
        "num_d2d_links": len(sd.d2d_links), "d2d_rx_per_tx": len(case.coarse.points),
        "trace_seconds": sd.trace_seconds, "paths_b2d": sd.ps_b2d.num_paths, "paths_d2d": sd.ps_d2d.num_paths,
        "materials": {"objects": case.twin.names, "eps_label": sd.eps_label.tolist(),
                      "sigma_label": sd.sigma_label.tolist(), "eps_true": sd.eps_true.tolist(),
                      "sigma_true": sd.sigma_true.tolist()},
        "rows": rows,
    }
    if out_dir is not None and maps_at:
        truth = np.where(sd.valid, sd.truth_b2d.gain_db, np.nan)
        result["gain_map_png"] = str(plot_gain_maps(out_dir / f"wedt_maps_{case.name}.png", case.grid, truth,
                                                    maps_at, case.tx, cfg.sampling_size, case.name))
    return result


def _expert_space(f: GeometryFeatures) -> np.ndarray:
    """Coordinates an engineer would spread measurements over: position (x, y) and path structure."""
    return np.concatenate([f.position[:, :2], f.path], 1)


def make_case(name: str, cfg: WedtConfig) -> SceneCase:
    sp = cfg.spacing_m[name]
    area = {"simple_street_canyon": 176.0 * 112.0 * 0.75, "indoor": 20.0 * 12.0 * 0.85}[name]
    coarse = float(np.sqrt(area / max(cfg.d2d_rx, 1)))
    if name == "simple_street_canyon":
        return street_canyon_case(cfg.frequency_hz, sp, coarse)
    if name == "indoor":
        return indoor_case(cfg.frequency_hz, sp, coarse)
    raise ValueError(f"unknown benchmark scene '{name}', expected simple_street_canyon or indoor")


def run_benchmark(cfg: WedtConfig, out_dir: str | Path | None = None, progress: bool = True,
                  results_path: str | Path | None = None) -> dict:
    """Run every scene; write the JSON (after each scene, atomically) and the plots into ``out_dir``."""
    from rftwin.io import write_json
    from rftwin.runtime import configure_torch_threads

    configure_torch_threads()
    out_dir = Path(out_dir) if out_dir is not None else None
    t0 = time.perf_counter()
    cfg_dict = asdict(cfg)
    res: dict = {"config": cfg_dict, "seed_reference": SEED_REFERENCE, "scenes": {}}
    for name in cfg.scenes:
        res["scenes"][name] = run_scene(make_case(name, cfg), cfg, out_dir, progress)
        res["seconds"] = time.perf_counter() - t0
        if results_path is not None:
            write_json(results_path, res)
    if out_dir is not None:
        res["male_vs_m_png"] = str(plot_male_vs_m(out_dir / "wedt_male_vs_m.png", res))
    res["seconds"] = time.perf_counter() - t0
    if results_path is not None:
        write_json(results_path, res)
    return res


def format_table(res: dict) -> str:
    """Plain-text table: per scene, sampling mode and M, every method's B2D and D2D metrics."""
    def f(v, nd=2):
        return "   -  " if v is None else f"{v:6.{nd}f}"

    lines = []
    for name, sc in res["scenes"].items():
        lines.append(f"\n{name}: {sc['num_valid']} grid receivers, {sc['num_d2d_tx']} D2D tx x "
                     f"{sc['d2d_rx_per_tx']} rx, {sc['num_objects']} objects")
        lines.append(f"{'sampling':10s} {'M':>4s}  {'method':18s} {'B2D MALE':>8s} {'SSIM':>6s} {'MCS':>6s}   "
                     f"{'D2D MALE':>8s} {'SSIM':>6s} {'MCS':>6s} {'time s':>7s}")
        for row in sc["rows"]:
            for m in METHODS:
                if m not in row:
                    continue
                r = row[m]
                b, d = r["b2d"], r["d2d"]
                lines.append(f"{row['sampling']:10s} {row['M']:4d}  {METHOD_LABELS[m]:18s} {f(b['male_db']):>8s} "
                             f"{f(b.get('ssim'), 3)} {f(b['mcs'], 3)}   {f(d['male_db']):>8s} {f(d.get('ssim'), 3)} "
                             f"{f(d['mcs'], 3)} {r['seconds']:7.1f}")
    return "\n".join(lines)


__all__ = ["METHODS", "SEED_REFERENCE", "WedtConfig", "format_table", "make_case", "prepare_scene", "run_benchmark",
           "run_methods", "run_scene"]
