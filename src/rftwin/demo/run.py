"""The main job on the built-in room: simulate RSS with Sionna for true materials, calibrate from labels."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rftwin.calibrate import CalibrationResult, Targets
from rftwin.calibrate.workflow import calibrate_scene
from rftwin.demo.config import DemoConfig
from rftwin.materials import prior_from_labels, with_relative_ranges
from rftwin.progress import Stopwatch
from rftwin.runtime import configure_torch_threads, jit_times
from rftwin.scene import TwinScene, room
from rftwin.scene.sampling import random_positions
from rftwin.scene.scene_materials import SceneMaterials
from rftwin.trace.budget import use_budget
from rftwin.trace.simulate import trace_path_gain_db
from rftwin.twin.calibrator import calibration_config

# Transmitter positions of the three trials (m); receivers are drawn at random (seeded).
DEMO_TX = np.array([[-1.0, 0.0, 1.5], [1.5, 1.0, 2.0], [0.0, -1.5, 1.0]])


@dataclass
class DemoResult:
    twin: TwinScene
    eps_true: np.ndarray
    sigma_true: np.ndarray
    eps_init: np.ndarray
    sigma_init: np.ndarray
    result: CalibrationResult
    rss_dbm: np.ndarray
    tx_pos: np.ndarray
    rx_pos: np.ndarray
    trace_seconds: float
    simulate_seconds: float
    seconds: float
    stages: list[dict]  # wall time [s] of every stage (scene, simulation, traces, sweeps, calibration rounds)
    torch_threads: int = 1  # torch's intra-op threads of the calibration (the idle cores at the start)

    @property
    def mre_eps(self) -> float:
        return self.result.mre(self.eps_true, self.sigma_true)[0]

    @property
    def mre_sigma(self) -> float:
        return self.result.mre(self.eps_true, self.sigma_true)[1]


def demo_links(twin: TwinScene, cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """Links of the demo: per trial one transmitter (``DEMO_TX``) and ``receivers`` receivers drawn uniformly in
    the room outside the boxes (seeded)."""
    rng = np.random.default_rng(cfg.seed)
    tx = np.repeat(DEMO_TX[: cfg.trials], cfg.receivers, axis=0)
    rx = random_positions(twin, cfg.trials * cfg.receivers, rng, (0.3, 2.7))
    return tx, rx


def true_materials(twin: TwinScene, cfg: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """ITU value x lambda, lambda ~ N(1, 0.1^2) truncated to [0.8, 1.2] (seed 004), per object and quantity."""
    rng = np.random.default_rng(cfg.seed + 1)
    K = len(twin.objects)

    def lam():
        x = rng.normal(1.0, 0.1, 4 * K)
        return x[(x >= 0.8) & (x <= 1.2)][:K]

    e0 = np.array([o.relative_permittivity for o in twin.objects])
    s0 = np.array([o.conductivity for o in twin.objects])
    return np.maximum(e0 * lam(), 1.0), s0 * lam()


def first_samples(cfg: DemoConfig) -> int | None:
    """Rays per source of the first trace (None: the spec's, also when ``first_trace_samples`` is not fewer)."""
    n, full = cfg.first_trace_samples, cfg.spec.solver.samples_per_src
    return None if n is None or n >= full else int(n)


def run_demo(cfg: DemoConfig | None = None, progress: bool = True, cache_dir=None) -> DemoResult:
    cfg = DemoConfig() if cfg is None else cfg
    spec, m = cfg.spec, cfg.spec.model
    threads = configure_torch_threads(idle=True)  # the multi-start LM on thousands of paths: all idle cores
    use_budget(spec.solver.budget_bytes())
    watch = Stopwatch(probe=jit_times)
    t_start = time.perf_counter()
    with watch.stage("scene"):
        twin = room(cfg.frequency_hz)
    labels = [o.label for o in twin.objects]
    tx, rx = demo_links(twin, cfg)
    # 1) "measurements": Sionna RT with the true materials
    eps_t, sig_t = true_materials(twin, cfg)
    with watch.stage("simulation (Sionna)"):  # traced at the true materials (the scene itself is not changed)
        _, gain_db = trace_path_gain_db(twin, tx, rx, cfg.settings, cache_dir=cache_dir, progress=progress,
                                        materials=SceneMaterials(eps_t, sig_t))
    rss_dbm = cfg.tx_power_dbm + gain_db
    t_sim = watch.stages[-1]["seconds"]
    # 2) the twin as a user has it: label materials; trace once, calibrate on the cached paths, re-trace
    t0 = time.perf_counter()
    prior = prior_from_labels(labels, cfg.frequency_hz, strategy=m.init, seed=spec.solver.seed)
    if m.prior_spread is not None:
        prior = with_relative_ranges(prior, m.prior_spread)
    targets = Targets.build(np.arange(len(tx)), np.full(len(tx), cfg.frequency_hz), rss_dbm - cfg.tx_power_dbm)
    res, _ = calibrate_scene(twin, tx, rx, targets, prior, replace(calibration_config(spec),
                                                                   prune_every=cfg.prune_every),
                             cfg.settings, num_starts=m.starts, retrace=spec.optimiser.retrace,
                             seed=spec.solver.seed, truth=(eps_t, sig_t), progress=progress, cache_dir=cache_dir,
                             fit=tuple(m.fit), global_sweeps=m.sweeps, bounded=m.bounded, sweep_grid=cfg.sweep_grid,
                             later_rounds=cfg.later_rounds, stopwatch=watch,
                             first_samples_per_src=first_samples(cfg))
    t_trace = time.perf_counter() - t0 - res.seconds
    return DemoResult(twin, eps_t, sig_t, prior.eps_r, prior.sigma, res, rss_dbm, tx, rx, t_trace, t_sim,
                      time.perf_counter() - t_start, watch.stages, threads)


def demo_json(d: DemoResult) -> dict:
    r = d.result
    u = r.uncertainty
    objects = []
    for i, o in enumerate(d.twin.objects):
        objects.append(dict(
            object=o.name, label=o.label,
            eps_true=float(d.eps_true[i]), eps_init=float(d.eps_init[i]), eps_est=float(r.eps_r[i]),
            eps_rel_error=float(abs(r.eps_r[i] - d.eps_true[i]) / d.eps_true[i]),
            eps_std=float(u.eps_std[i]) if u else None,
            sigma_true=float(d.sigma_true[i]), sigma_init=float(d.sigma_init[i]), sigma_est=float(r.sigma[i]),
            sigma_rel_error=float(abs(r.sigma[i] - d.sigma_true[i]) / d.sigma_true[i]),
            sigma_std=float(u.sigma_std[i]) if u else None))
    return dict(mre_sigma=d.mre_sigma, mre_eps=d.mre_eps, iterations=r.iterations, seconds=d.seconds,
                calibration_seconds=r.seconds, trace_seconds=d.trace_seconds, simulate_seconds=d.simulate_seconds,
                loss=r.loss, num_links=len(d.tx_pos), noise_db_for_uncertainty=u.noise_db if u else None,
                objects=objects, stages=d.stages, torch_threads=d.torch_threads)


def convergence_plot(d: DemoResult, path: str | Path) -> Path:
    """PNG of loss, parameters and MRE (eps_r, sigma) per iteration."""
    from rftwin.convergence_plot import convergence_png  # noqa: PLC0415

    return convergence_png(d.result.history, Path(path))


__all__ = ["DEMO_TX", "DemoResult", "convergence_plot", "demo_json", "demo_links", "run_demo", "true_materials"]
