"""Identifiability of the demo room (issue #2): do RSS links determine all 18 materials, and from how far?

Self-consistent: measurements are Sionna's own coefficients on the paths the calibration uses (no path mismatch),
so every error left is the problem's, not the tracer's. For 3 transmitters x n random receivers (n = 8: the seed's
24 links; n = 32: 96 links) it reports the condition number of the Jacobian of path gain [dB] w.r.t. the
log-parameters and the Laplace log-std at 0.1 dB noise, then the MRE reached by Levenberg-Marquardt started at
truth x (1 +- 5 %) and x (1 +- 15 %) (default damping 1.0, and from the same +-5 % starts with damping 1e-2), and by
global sweeps + LM started at the label prior.

Run: .venv/bin/python benchmarks/bench_identifiability.py  (writes benchmarks/results/identifiability.json)
"""
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.calibrate import CalibrationConfig, Targets, calibrate, jacobian
from rftwin.calibrate.sweep import coordinate_sweep
from rftwin.demo import DEMO_TX, DemoConfig, true_materials
from rftwin.io import write_json
from rftwin.materials import PerObjectMaterials, prior_from_labels
from rftwin.scene import room
from rftwin.scene.sampling import random_positions
from rftwin.trace import SolverSettings, trace
from rftwin.trace.simulate import reference_path_gain_db

NOISE_DB = 0.1
MAX_RX = 32
# the traces of this study as they were made (the demo itself now traces with 5e5 rays and its seed)
SETTINGS = SolverSettings(max_depth=4, samples_per_src=1_000_000)


def main() -> dict:
    torch.set_num_threads(1)
    cfg = DemoConfig()
    twin = room(cfg.frequency_hz)
    rx = np.concatenate([random_positions(twin, MAX_RX, np.random.default_rng([cfg.seed, t]), (0.3, 2.7))
                         for t in range(3)])
    tx = np.concatenate([np.repeat(DEMO_TX[t:t + 1], MAX_RX, 0) for t in range(3)])
    eps, sig = true_materials(twin, cfg)
    labels = [o.label for o in twin.objects]
    th = np.array([o.thickness_m for o in twin.objects])
    twin.set_materials(eps, sig)
    full = trace(twin, tx, rx, SETTINGS)
    prior = prior_from_labels(labels, cfg.frequency_hz)
    out = {"objects": twin.names, "noise_db": NOISE_DB, "cases": []}
    for n in (8, 32):
        ps = full.select_links(np.concatenate([np.arange(n) + k * MAX_RX for k in range(3)]))
        L = ps.num_links
        meas = reference_path_gain_db(ps)
        t = Targets.build(np.arange(L), np.full(L, cfg.frequency_hz), meas)
        truth_model = PerObjectMaterials(eps[None], sig[None], th, reference_frequency_hz=cfg.frequency_hz)
        # the loop's residuals are scaled so that their sum of squares is the mean loss: undo 1/sqrt(L) -> dB
        J = jacobian(ps, truth_model, t, CalibrationConfig())[1][0].numpy() * math.sqrt(L)
        sv = np.linalg.svd(J, compute_uv=False)
        cov = np.linalg.inv(J.T @ J / NOISE_DB**2 + np.eye(J.shape[1]) / math.log(10.0) ** 2)
        log_std = np.sqrt(np.diag(cov))
        case = {"receivers_per_tx": n, "links": L, "cond": float(sv[0] / sv[-1]),
                "eps_log_std": log_std[:9].tolist(), "sigma_log_std": log_std[9:].tolist(), "starts": []}
        rng = np.random.default_rng(0)
        for pert, damping in ((0.05, None), (0.05, 1e-2), (0.15, None)):
            lm = CalibrationConfig(max_iter=150, refine_starts=1)
            if damping is not None:
                lm.lm_damping = damping
            for _ in range(3):
                e0 = eps * (1 + pert * rng.uniform(-1, 1, 9))
                s0 = sig * (1 + pert * rng.uniform(-1, 1, 9))
                r = calibrate(ps, PerObjectMaterials(e0[None], s0[None], th, reference_frequency_hz=cfg.frequency_hz),
                              t, lm, truth=(eps, sig), progress=False, uncertainty=False)
                case["starts"].append({"start": f"truth +-{pert:.0%}", "lm_damping": lm.lm_damping,
                                       "iterations": r.iterations, "loss": r.loss,
                                       "mre_eps": r.mre(eps, sig)[0], "mre_sigma": r.mre(eps, sig)[1]})
        t0 = time.perf_counter()
        e0, s0 = prior.eps_r, prior.sigma
        for _ in range(2):  # sweeps + LM, twice
            sw = coordinate_sweep(ps, np.arange(L), np.full(L, cfg.frequency_hz), meas, e0, s0, th,
                                  prior.eps_range, prior.sigma_range, sweeps=2, progress=False)
            r = calibrate(ps, PerObjectMaterials(sw.eps_r[None], sw.sigma[None], th,
                                                 reference_frequency_hz=cfg.frequency_hz),
                          t, CalibrationConfig(max_iter=60, refine_starts=1), truth=(eps, sig), progress=False,
                          uncertainty=False)
            e0, s0 = r.eps_r, r.sigma
        case["starts"].append({"start": "label prior, (sweeps + LM) x 2", "iterations": r.iterations, "loss": r.loss,
                               "mre_eps": r.mre(eps, sig)[0], "mre_sigma": r.mre(eps, sig)[1],
                               "seconds": time.perf_counter() - t0})
        out["cases"].append(case)
        print(json.dumps({k: v for k, v in case.items() if "log_std" not in k}, indent=1), flush=True)
    return out


if __name__ == "__main__":
    write_json(Path(__file__).parent / "results" / "identifiability.json", main())
