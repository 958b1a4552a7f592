"""The seed-004 study on its room: how initialisation and receiver placement change calibration speed and error.

Set-up (seed 004, Sec. "Experiment Setup"): the 10 x 10 x 3 m room (:func:`rftwin.scene.room`), true materials =
ITU values x lambda, lambda ~ N(1, 0.1^2) truncated to [0.8, 1.2] (:func:`rftwin.demo.true_materials`), M trials
with the transmitters of :data:`rftwin.demo.DEMO_TX`, N receivers per trial. Initialisations: ``label`` (the
text-encoder prior of the object names, our offline stand-in for the VLM's material proposal), ``uniform`` (ITU
mean for every object), ``random`` (sigma ~ U[0.01, 0.06] S/m as in the seed, eps_r ~ U[1.5, 8]). Placements:
``random`` (uniform draw from the candidate grid), ``planner`` (greedy D-optimal design, round-robin over the
trials, from the Jacobian at the label prior) and ``expert`` (a fixed hand-made list: receivers in front of each
box and near each wall, rotated between trials).

Cost control: every candidate receiver of every transmitter is traced once with Sionna RT at the true materials
(the "measurements" are Sionna's own path coefficients), and every combination calibrates on
``PathSet.select_links`` of that trace. Rows are appended to a JSON-lines file as they finish, so an interrupted
run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rftwin.trace.tracer import SolverSettings

INITS = ("label", "uniform", "random")
PLACEMENTS = ("random", "planner", "expert")
OPTIMIZERS = ("adam", "lm")

# Hand-made receiver positions (m): in front of each box's inner face below its top (reflection / transmission
# through the box) and near each wall, interleaved so that any prefix covers boxes and walls.
EXPERT_RX = np.array([
    [-1.8, 3.0, 0.6],   # box_wood
    [0.0, -4.2, 2.2],   # wall_south
    [1.8, -3.0, 0.6],   # box_concrete
    [0.0, 4.2, 1.5],    # wall_north
    [1.8, 3.0, 0.6],    # box_chipboard
    [-4.2, 0.0, 1.5],   # wall_west
    [-1.8, -3.0, 0.6],  # box_marble
    [4.2, 0.0, 2.2],    # wall_east
])


@dataclass
class StudyConfig:
    """Sizes and solver settings of the study (defaults: the full study)."""

    frequency_hz: float = 3.5e9
    n_receivers: tuple[int, ...] = (2, 3, 4, 8)
    trials: int = 3
    inits: tuple[str, ...] = INITS
    placements: tuple[str, ...] = PLACEMENTS
    optimizers: tuple[str, ...] = OPTIMIZERS
    reps: int = 1  # repetitions of the random draws (random init / random placement)
    settings: SolverSettings = field(default_factory=lambda: SolverSettings(max_depth=4, samples_per_src=100_000))
    grid_spacing_m: float = 1.0
    rx_heights_m: tuple[float, ...] = (1.0, 2.0)
    planner_noise_db: float = 1.0
    noise_db: float = 0.0  # measurement noise std added to the simulated RSS (dB)
    adam_lr: float = 1e-3
    adam_max_iter: int = 1000
    lm_max_iter: int = 200
    # fitted quantities: ("sigma",) is the seed's problem (eps_r known = true); ("eps_r", "sigma") is ours
    fits: tuple[tuple[str, ...], ...] = (("sigma",), ("eps_r", "sigma"))
    seed: int = 7

    def key(self) -> str:
        d = dict(asdict(self), study_version=2)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def quick_config() -> StudyConfig:
    """A reduced study for a CPU check: N in {3, 8}, shorter iteration limits, depth 3, fewer rays."""
    return StudyConfig(n_receivers=(3, 8), settings=SolverSettings(max_depth=3, samples_per_src=100_000),
                       adam_max_iter=400, lm_max_iter=100)


def fit_name(fit: Sequence[str]) -> str:
    return ",".join(fit)


@dataclass
class StudyData:
    """The traced pool: per trial the candidate-grid link indices and the expert link indices into ``paths``."""

    paths: object  # PathSet of all pool links, traced at the true materials
    measured_db: np.ndarray  # [L] Sionna path gain (dB) of every pool link
    grid_links: list[np.ndarray]  # per trial
    expert_links: list[np.ndarray]  # per trial, in EXPERT_RX order
    eps_true: np.ndarray
    sigma_true: np.ndarray
    names: list[str]
    labels: list[str]
    thickness: np.ndarray
    trace_seconds: float


def build_pool(cfg: StudyConfig, progress: bool = True, cache_dir=None) -> StudyData:
    """Trace every candidate receiver (grid + expert) of every trial's transmitter once at the true materials."""
    from rftwin.demo import DEMO_TX, DemoConfig, true_materials  # noqa: PLC0415
    from rftwin.scene import room  # noqa: PLC0415
    from rftwin.scene.candidates import candidate_grid  # noqa: PLC0415
    from rftwin.scene.scene_materials import SceneMaterials  # noqa: PLC0415
    from rftwin.trace.simulate import trace_path_gain_db  # noqa: PLC0415

    if not 1 <= cfg.trials <= len(DEMO_TX):
        raise ValueError(f"trials must be in 1..{len(DEMO_TX)}, got {cfg.trials}")
    twin = room(cfg.frequency_hz)
    eps_t, sig_t = true_materials(twin, DemoConfig(frequency_hz=cfg.frequency_hz, seed=cfg.seed))
    grid = candidate_grid(twin, cfg.grid_spacing_m, cfg.rx_heights_m)
    pool = np.vstack([grid, EXPERT_RX])
    tx = DEMO_TX[:cfg.trials]
    T, R = np.repeat(tx, len(pool), 0), np.tile(pool, (len(tx), 1))
    t0 = time.perf_counter()
    ps, meas = trace_path_gain_db(twin, T, R, cfg.settings, cache_dir=cache_dir, progress=progress,
                                  materials=SceneMaterials(eps_t, sig_t))
    t_trace = time.perf_counter() - t0
    ok = np.isfinite(meas)
    n = len(pool)
    grid_links = [m * n + np.arange(len(grid)) for m in range(len(tx))]
    grid_links = [g[ok[g]] for g in grid_links]
    expert_links = [m * n + len(grid) + np.arange(len(EXPERT_RX)) for m in range(len(tx))]
    if not all(ok[e].all() for e in expert_links):
        raise RuntimeError("an expert receiver has no traced path; check EXPERT_RX against the room")
    return StudyData(paths=ps, measured_db=meas, grid_links=grid_links, expert_links=expert_links,
                     eps_true=eps_t, sigma_true=sig_t, names=twin.names, labels=[o.label for o in twin.objects],
                     thickness=np.array([o.thickness_m for o in twin.objects]), trace_seconds=t_trace)


def label_material_prior(names: Sequence[str], frequency_hz: float):
    """The 'VLM-like' prior: text-encoder priors of the object names (:mod:`rftwin.priors.labels`)."""
    from rftwin.priors.labels import label_priors  # noqa: PLC0415

    return label_priors(list(names), frequency_hz)


def initial_values(kind: str, data: StudyData, cfg: StudyConfig, rep: int,
                   fit: Sequence[str] = ("eps_r", "sigma")) -> tuple[np.ndarray, np.ndarray]:
    """(eps_r [K], sigma [K]) of initialisation ``kind``; quantities not in ``fit`` are known (true values)."""
    e, s = _initial_values(kind, data, cfg, rep)
    return (e if "eps_r" in fit else data.eps_true.copy()), (s if "sigma" in fit else data.sigma_true.copy())


def _initial_values(kind: str, data: StudyData, cfg: StudyConfig, rep: int) -> tuple[np.ndarray, np.ndarray]:
    from rftwin.materials import prior_from_labels  # noqa: PLC0415
    from rftwin.priors.labels import to_material_prior  # noqa: PLC0415

    if kind == "label":
        mp = to_material_prior(label_material_prior(data.names, cfg.frequency_hz))
        return mp.eps_r, mp.sigma
    if kind not in INITS:
        raise ValueError(f"unknown initialisation '{kind}', expected one of {INITS}")
    mp = prior_from_labels(data.labels, cfg.frequency_hz, strategy=kind, seed=cfg.seed + 1000 * rep)
    return mp.eps_r, mp.sigma


def planner_order(data: StudyData, cfg: StudyConfig, n_max: int,
                  fit: Sequence[str] = ("eps_r", "sigma")) -> list[list[int]]:
    """Greedy D-optimal receivers, round-robin over the trials (each round adds the best link of every trial
    given all links chosen so far), at the label prior, for the parameters in ``fit`` (the others are known:
    prior std 0); returns per trial the ``n_max`` link indices in order of choice (a prefix of length N is the
    N-receiver design)."""
    from rftwin.plan.design import ParameterPrior, greedy_design, link_sensitivity  # noqa: PLC0415

    lp = label_material_prior(data.names, cfg.frequency_hz)
    prior = ParameterPrior.from_material_priors(data.names, lp, data.thickness)
    if "eps_r" not in fit:
        prior.log_std_eps[:] = 0.0
    if "sigma" not in fit:
        prior.log_std_sigma[:] = 0.0
    allg = np.concatenate(data.grid_links)
    sens = link_sensitivity(data.paths.select_links(allg), prior, cfg.frequency_hz)
    s0 = prior.std(sens.params)
    offsets = np.cumsum([0] + [len(g) for g in data.grid_links])
    chosen: list[list[int]] = [[] for _ in data.grid_links]
    measured: list[int] = []
    for _ in range(n_max):
        for m in range(len(data.grid_links)):
            cand = np.arange(offsets[m], offsets[m + 1])
            cand = cand[np.isfinite(sens.gain_db[cand])]
            res = greedy_design(sens.jacobian, s0, 1, cfg.planner_noise_db, measured=measured, candidates=cand)
            measured.append(res.selected[0])
            chosen[m].append(int(allg[res.selected[0]]))
    return chosen


def placement_links(kind: str, n: int, data: StudyData, planner: list[list[int]] | None, seed: int) -> np.ndarray:
    """Link indices (into ``data.paths``) of placement ``kind`` with ``n`` receivers per trial."""
    out = []
    for m, grid in enumerate(data.grid_links):
        if kind == "random":
            out.append(np.random.default_rng([seed, m, n]).choice(grid, n, replace=False))
        elif kind == "planner":
            out.append(np.asarray(planner[m][:n]))
        elif kind == "expert":
            e = data.expert_links[m]
            out.append(e[(m * n + np.arange(n)) % len(e)])
        else:
            raise ValueError(f"unknown placement '{kind}', expected one of {PLACEMENTS}")
    return np.concatenate(out)


def _mre(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b) / b))


def run_one(data: StudyData, cfg: StudyConfig, optimizer: str, links: np.ndarray, eps0: np.ndarray,
            sig0: np.ndarray, seed: int, fit: Sequence[str] = ("eps_r", "sigma")) -> dict:
    """Calibrate from one initialisation on one set of links; returns iterations, time, MREs and curves."""
    import torch  # noqa: PLC0415

    from rftwin.calibrate import CalibrationConfig, Targets, calibrate  # noqa: PLC0415
    from rftwin.materials import PerObjectMaterials  # noqa: PLC0415

    meas = data.measured_db[links]
    if cfg.noise_db > 0:
        meas = meas + np.random.default_rng(seed).normal(0.0, cfg.noise_db, len(meas))
    t = Targets.build(np.arange(len(links)), np.full(len(links), cfg.frequency_hz), meas)
    ps = data.paths.select_links(links)
    if optimizer == "adam":
        cc = CalibrationConfig(loss="nae", optimizer="adam", lr=cfg.adam_lr, max_iter=cfg.adam_max_iter)
    elif optimizer == "lm":
        cc = CalibrationConfig(loss="mse_db", optimizer="lm", max_iter=cfg.lm_max_iter)
    else:
        raise ValueError(f"unknown optimizer '{optimizer}', expected one of {OPTIMIZERS}")
    model = PerObjectMaterials(eps0[None], sig0[None], data.thickness, fit=tuple(fit))
    torch.manual_seed(seed)
    res = calibrate(ps, model, t, cc, truth=(data.eps_true, data.sigma_true), progress=False, uncertainty=False)
    h = res.history
    step = max(1, len(h) // 200)
    keep = sorted(set(range(0, len(h), step)) | {len(h) - 1})
    max_iter = cc.max_iter
    return dict(iterations=res.iterations, converged=res.iterations < max_iter, seconds=res.seconds,
                seconds_per_iteration=res.seconds / max(res.iterations, 1), loss=res.loss,
                mre_eps=_mre(res.eps_r, data.eps_true), mre_sigma=_mre(res.sigma, data.sigma_true),
                mre_eps_init=_mre(eps0, data.eps_true), mre_sigma_init=_mre(sig0, data.sigma_true),
                curve=dict(iteration=[h[i]["iteration"] for i in keep], loss=[h[i]["loss"] for i in keep],
                           mre_eps=[h[i]["mre_eps"] for i in keep], mre_sigma=[h[i]["mre_sigma"] for i in keep]))


def _combinations(cfg: StudyConfig) -> list[dict]:
    out = []
    for fit in cfg.fits:
        for opt in cfg.optimizers:
            for n in cfg.n_receivers:
                for init in cfg.inits:
                    for place in cfg.placements:
                        reps = cfg.reps if (init == "random" or place == "random") else 1
                        for rep in range(reps):
                            out.append(dict(fit=fit_name(fit), optimizer=opt, n_receivers=n, init=init,
                                            placement=place, rep=rep))
    return out


def _row_key(c: dict) -> str:
    return f"{c['fit']}|{c['optimizer']}|{c['n_receivers']}|{c['init']}|{c['placement']}|{c['rep']}"


def run_study(cfg: StudyConfig, partial: str | Path | None = None, progress: bool = True, cache_dir=None) -> dict:
    """Run every combination (resuming from the JSON-lines file ``partial`` when it holds rows of the same
    configuration) and return the result document (config, rows, summary)."""
    from rftwin.progress import track  # noqa: PLC0415
    from rftwin.runtime import configure_torch_threads  # noqa: PLC0415

    configure_torch_threads()
    key = cfg.key()
    done: dict[str, dict] = {}
    if partial is not None and Path(partial).is_file():
        for line in Path(partial).read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption
            if r.get("config_key") == key:
                done[_row_key(r)] = r
    t0 = time.perf_counter()
    data = build_pool(cfg, progress=progress, cache_dir=cache_dir)
    t1 = time.perf_counter()
    planner = {fit_name(f): planner_order(data, cfg, max(cfg.n_receivers), f) for f in cfg.fits} \
        if "planner" in cfg.placements else {}
    t_plan = time.perf_counter() - t1
    rows = []
    combos = _combinations(cfg)
    for c in track(combos, "priors study", enabled=progress):
        k = _row_key(c)
        if k in done:
            rows.append(done[k])
            continue
        links = placement_links(c["placement"], c["n_receivers"], data, planner.get(c["fit"]),
                                seed=cfg.seed + 1000 * c["rep"])
        fit = tuple(c["fit"].split(","))
        eps0, sig0 = initial_values(c["init"], data, cfg, c["rep"], fit)
        r = dict(c, config_key=key, num_links=len(links), rx=data.paths.rx_pos[links].numpy().round(3).tolist(),
                 **run_one(data, cfg, c["optimizer"], links, eps0, sig0, seed=cfg.seed + c["rep"], fit=fit))
        rows.append(r)
        if partial is not None:
            Path(partial).parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "a") as fh:
                fh.write(json.dumps(r) + "\n")
    doc = dict(config=json.loads(json.dumps(asdict(cfg), default=str)), config_key=key,
               num_pool_links=data.paths.num_links, num_grid_candidates_per_trial=[len(g) for g in data.grid_links],
               trace_seconds=data.trace_seconds, planner_seconds=t_plan, total_seconds=time.perf_counter() - t0,
               eps_true=data.eps_true.tolist(), sigma_true=data.sigma_true.tolist(), objects=data.names,
               rows=rows)
    doc["summary"] = summarize(rows, cfg)
    return doc


def _gmean(x: Sequence[float]) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.exp(np.mean(np.log(np.maximum(x, 1e-300))))) if len(x) else math.nan


MRE_THRESHOLD = 0.01  # "converged to a comparable MRE": first iteration with MRE of the fitted sigma <= 1 %


def iterations_to_mre(row: dict, threshold: float = MRE_THRESHOLD, key: str = "mre_sigma") -> int | None:
    """First iteration at which the row's ``key`` curve is <= ``threshold`` (None if never; the stored curve is
    subsampled to <= ~200 points, so this is exact up to that step)."""
    c = row["curve"]
    for it, v in zip(c["iteration"], c[key]):
        if v <= threshold:
            return int(it)
    return None


def _cell(rows: list[dict], **kw) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in kw.items())]


def summarize(rows: list[dict], cfg: StudyConfig) -> dict:
    """Per optimizer: mean iterations / seconds / MREs per (init, placement) over N and reps, and the seed's two
    comparisons as ratios (geometric means over matching cells): baseline / ours for iterations and final MRE."""
    out: dict = {}
    for fit, opt in [(f, o) for f in cfg.fits for o in cfg.optimizers]:
        rs = _cell(rows, optimizer=opt, fit=fit_name(fit))
        fields = ("iterations", "seconds", "mre_eps", "mre_sigma") if "eps_r" in fit else \
            ("iterations", "seconds", "mre_sigma")
        table = []
        for n in cfg.n_receivers:
            for init in cfg.inits:
                for place in cfg.placements:
                    c = _cell(rs, n_receivers=n, init=init, placement=place)
                    if not c:
                        continue
                    hit = [iterations_to_mre(r) for r in c]
                    hit = [x for x in hit if x is not None]
                    table.append(dict(n_receivers=n, init=init, placement=place, reps=len(c),
                                      reached_1pct=len(hit) / len(c),
                                      iter_to_1pct=float(np.mean(hit)) if hit else None,
                                      iterations=float(np.mean([r["iterations"] for r in c])),
                                      converged=float(np.mean([r["converged"] for r in c])),
                                      seconds=float(np.mean([r["seconds"] for r in c])),
                                      mre_eps=_gmean([r["mre_eps"] for r in c]),
                                      mre_sigma=_gmean([r["mre_sigma"] for r in c])))

        def ratio(field_: str, base: dict, ours: dict, table: list[dict] = table) -> float:
            pairs = []
            for n in cfg.n_receivers:
                b = [t[field_] for t in table if t["n_receivers"] == n and all(t[k] == v for k, v in base.items())]
                o = [t[field_] for t in table if t["n_receivers"] == n and all(t[k] == v for k, v in ours.items())]
                if b and o:
                    pairs.append(_gmean(b) / max(_gmean(o), 1e-300))
            return _gmean(pairs)

        comp = {}
        for other in ("uniform", "random"):
            if other in cfg.inits and "label" in cfg.inits:
                for place in cfg.placements:
                    comp[f"init {other} vs label, {place} placement"] = {
                        f: ratio(f, dict(init=other, placement=place), dict(init="label", placement=place))
                        for f in fields}
        for other in ("random", "expert"):
            if other in cfg.placements and "planner" in cfg.placements:
                for init in cfg.inits:
                    comp[f"placement {other} vs planner, {init} init"] = {
                        f: ratio(f, dict(init=init, placement=other), dict(init=init, placement="planner"))
                        for f in fields}
        out[f"fit {fit_name(fit)}, {opt}"] = dict(fit=fit_name(fit), optimizer=opt, table=table,
                                                   ratios_baseline_over_ours=comp)
    return out


def format_summary(doc: dict) -> list[str]:
    """Plain-text table lines of a study document."""
    lines = []
    for opt, s in doc["summary"].items():
        lines.append(f"== {opt} ==")
        lines.append(f"{'N':>2s} {'init':8s} {'placement':9s} {'iter':>7s} {'conv':>5s} {'time s':>8s} "
                     f"{'MRE eps':>9s} {'MRE sigma':>10s} {'iter to 1%':>10s}")
        for t in s["table"]:
            hit = f"{t['iter_to_1pct']:10.0f}" if t.get("iter_to_1pct") is not None else f"{'never':>10s}"
            lines.append(f"{t['n_receivers']:2d} {t['init']:8s} {t['placement']:9s} {t['iterations']:7.1f} "
                         f"{t['converged']:5.2f} {t['seconds']:8.2f} {t['mre_eps']:9.2e} {t['mre_sigma']:10.2e} "
                         f"{hit}")
        lines.append("ratios baseline / ours (>1: ours better):")
        for name, r in s["ratios_baseline_over_ours"].items():
            eps = f"MRE eps {r['mre_eps']:8.2f}x  " if "mre_eps" in r else ""
            lines.append(f"  {name:40s} iter {r['iterations']:6.2f}x  time {r['seconds']:6.2f}x  "
                         f"{eps}MRE sigma {r['mre_sigma']:8.2f}x")
    return lines


def plot_study(doc: dict, out_dir: str | Path) -> list[Path]:
    """Convergence PNGs per optimizer (MRE of sigma and eps_r vs iteration): by initialisation (largest N,
    planner placement; seed Fig. 3), by placement (N = 3 or the smallest N, label and random init; Fig. 5), by
    number of receivers (label init, planner placement; Fig. 6)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from rftwin.io import atomic_path  # noqa: PLC0415

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = doc["rows"]
    ns = sorted({r["n_receivers"] for r in rows})
    n_small = 3 if 3 in ns else ns[0]
    paths = []
    for fit, opt in sorted({(r["fit"], r["optimizer"]) for r in rows}):
        rs = [r for r in rows if r["optimizer"] == opt and r["fit"] == fit and r["rep"] == 0]
        tag = f"{'joint' if 'eps_r' in fit else 'sigma'}_{opt}"
        figs = {
            "init": ([r for r in rs if r["n_receivers"] == ns[-1] and r["placement"] == "planner"],
                     lambda r: f"{r['init']} init", f"initialisation (N = {ns[-1]}, planner placement)"),
            "placement": ([r for r in rs if r["n_receivers"] == n_small and r["init"] in ("label", "random")],
                          lambda r: f"{r['init']} init, {r['placement']}", f"placement (N = {n_small})"),
            "receivers": ([r for r in rs if r["init"] == "label" and r["placement"] == "planner"],
                          lambda r: f"N = {r['n_receivers']}", "receivers per trial (label init, planner)"),
        }
        for name, (sel, lab, title) in figs.items():
            if not sel:
                continue
            panels = [("loss", "loss"), ("mre_sigma", "MRE σ")] + ([("mre_eps", "MRE ε_r")] if "eps_r" in fit else [])
            fig, ax = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
            for r in sel:
                c = r["curve"]
                for a_, (f, _) in zip(ax, panels):
                    a_.semilogy(c["iteration"], np.maximum(c[f], 1e-12), label=lab(r), lw=1.2)
            for a_, (_, f) in zip(ax, panels):
                a_.set(xlabel="iteration", ylabel=f, title=f"{f} — {opt}, fit {fit}")
                a_.grid(True, which="both", alpha=0.3)
            ax[0].legend(fontsize=7)
            fig.suptitle(f"seed-004 study, {title}")
            fig.tight_layout()
            p = out_dir / f"{tag}_{name}.png"
            with atomic_path(p) as tmp:
                fig.savefig(tmp, format="png", dpi=100)
            plt.close(fig)
            paths.append(p)
    return paths


__all__ = ["EXPERT_RX", "INITS", "OPTIMIZERS", "PLACEMENTS", "StudyConfig", "StudyData", "build_pool",
           "format_summary", "initial_values", "placement_links", "planner_order",
           "plot_study", "quick_config", "run_one", "run_study", "summarize"]
