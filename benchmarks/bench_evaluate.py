"""End-to-end campaign on the built-in room: simulate measurements with Sionna RT at perturbed "true" materials,
calibrate with `rftwin calibrate` (on path gains, and on path gains + per-MPC powers with `--mpcs`), and score the
calibrated twins, the ITU twin, log-distance, 3GPP TR 38.901 and GP interpolation side by side on held-out links
with `rftwin evaluate` (path gain, delay spread, MCS, seed 002 MPC and cluster metrics), timing `evaluate` itself.

Run: .venv/bin/python benchmarks/bench_evaluate.py [--links 36 --test 12 --noise-db 0.5 --depth 3 --samples 100000
     --max-iter 300]
(writes benchmarks/results/evaluate.json and evaluate_cdf.png; the work folder is kept under --work)
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.cli.main import app
from rftwin.data import Measurements, write_measurements
from rftwin.data.mpc import mpcs_from_arrays, mpcs_from_paths, write_mpcs
from rftwin.data.wideband import simulate_wideband, write_wideband
from rftwin.io import atomic_path, write_json
from rftwin.materials.itu import itu_eps_sigma
from rftwin.physics.channel import path_power
from rftwin.physics.features import delay_moments
from rftwin.scene import room
from rftwin.trace import SolverSettings, trace

F = 3.5e9
RESULTS = Path(__file__).parent / "results"
TX = np.array([[0.5, 0.2, 2.5], [-3.0, 3.0, 2.2]])


def simulate(work: Path, n_links: int, n_test: int, noise_db: float, st: SolverSettings, seed: int) -> dict:
    """'Measured' campaign: Sionna RT traces the room at true materials (ITU labels x seeded log-normal factors)."""
    rng = np.random.default_rng(seed)
    twin = room(F)
    itu = np.array([itu_eps_sigma(o.label, F) for o in twin.objects])
    eps = itu[:, 0] * np.exp(rng.normal(0, 0.25, len(itu)))
    sig = itu[:, 1] * np.exp(rng.normal(0, 0.6, len(itu)))
    twin.set_materials(eps_r=eps, sigma=sig)
    tx = TX[np.arange(n_links) % len(TX)]
    rx = rng.uniform([-4.5, -4.5, 1.0], [4.5, 4.5, 2.2], size=(n_links, 3))
    ps = trace(twin, tx, rx, st, cache_dir=False, progress=False)
    p = path_power(ps.a_ref)
    L = ps.num_links  # rows are distinct geometries: link i = row i
    gain = 10 * np.log10(np.bincount(ps.link.numpy(), weights=p.numpy(), minlength=L))
    _, ds = delay_moments(p, ps.tau_s, ps.link, L)
    ids = [f"L{i:03d}" for i in range(L)]
    noisy = gain + rng.normal(0, noise_db, L)
    test, train = np.arange(n_test), np.arange(n_test, L)
    write_measurements(work / "train.csv", Measurements.from_arrays(tx[train], rx[train], F, noisy[train],
                                                                    link_id=[ids[i] for i in train]))
    write_measurements(work / "test.csv", Measurements.from_arrays(
        tx[test], rx[test], F, noisy[test], delay_spread_s=ds.numpy()[test], link_id=[ids[i] for i in test]))
    wb = simulate_wideband(ps, ps.a_ref, [F], [ids[i] for i in test], test)
    write_wideband(work / "test_cfr.h5", wb)
    # sounder MPCs of every link: paths within 30 dB, with estimation noise (noise_db, 0.3 ns, 1 deg)
    m = mpcs_from_paths(ps, p, ids, np.arange(L), dynamic_range_db=30.0)
    q = len(m)
    ang = {c: getattr(m, c) + rng.normal(0, 1.0, q) for c in ("azimuth_arrival_deg", "elevation_arrival_deg",
                                                               "azimuth_departure_deg", "elevation_departure_deg")}
    for c in ("elevation_arrival_deg", "elevation_departure_deg"):
        ang[c] = np.clip(ang[c], -90, 90)
    noisy_m = mpcs_from_arrays(m.link_id, np.clip(m.delay_s + rng.normal(0, 0.3e-9, q), 0, None),
                               m.power_db + rng.normal(0, noise_db, q), **ang)
    is_test = np.isin(noisy_m.link_index(ids), test)
    write_mpcs(work / "test_mpcs.csv", noisy_m.subset(np.nonzero(is_test)[0]))
    write_mpcs(work / "train_mpcs.csv", noisy_m.subset(np.nonzero(~is_test)[0]))
    (work / "true_materials.json").write_text(json.dumps(
        {n: {"eps_r": float(e), "sigma": float(s)} for n, e, s in zip(twin.names, eps, sig)}))
    return {"test_mpcs": int(is_test.sum()), "train_mpcs": int((~is_test).sum()), "paths": int(ps.num_paths)}


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", type=int, default=36, help="measured links (train + test)")
    ap.add_argument("--test", type=int, default=12, help="held-out links")
    ap.add_argument("--noise-db", type=float, default=0.5, help="measurement noise std on powers (dB)")
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--samples", type=int, default=100_000, help="rays per transmitter")
    ap.add_argument("--starts", type=int, default=16)
    ap.add_argument("--max-iter", type=int, default=300, help="calibration iterations per round")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    work.mkdir(parents=True, exist_ok=True)
    st = SolverSettings(max_depth=a.depth, samples_per_src=a.samples, seed=7)
    solver = ["--max-depth", str(a.depth), "--samples-per-src", str(a.samples), "--seed", "7"]
    t0 = time.perf_counter()
    sim = simulate(work, a.links, a.test, a.noise_db, st, a.seed)
    t_sim = time.perf_counter() - t0
    run = CliRunner()

    def invoke(args: list[str]) -> float:
        t0 = time.perf_counter()
        r = run.invoke(app, args)
        if r.exit_code != 0:
            raise SystemExit(f"rftwin {args[0]} failed:\n{r.output}")
        return time.perf_counter() - t0

    # --prior none: the figures in docs/import_evaluate.md were measured with the fit to the data alone (the former
    # default); calibration as inference is compared with it in benchmarks/bench_noharm.py
    cal = ["calibrate", "room", str(work / "train.csv"), "--starts", str(a.starts), "--refine", "4", "--retrace", "1",
           "--max-iter", str(a.max_iter), "--prior", "none", *solver]
    t_cal = invoke([*cal, "--out", str(work / "twin")])
    t_cal_mpc = invoke([*cal, "--out", str(work / "twin_mpc"), "--mpcs", str(work / "train_mpcs.csv")])
    ev = [str(work / "test.csv"), "--train", str(work / "train.csv"), "--true-materials",
          str(work / "true_materials.json"), "--wideband", str(work / "test_cfr.h5"), "--mpcs",
          str(work / "test_mpcs.csv"), *solver]
    t_eval = invoke(["evaluate", str(work / "twin"), "--out", str(work / "eval"), *ev])
    invoke(["evaluate", str(work / "twin_mpc"), "--out", str(work / "eval_mpc"), "--methods", "twin", *ev])
    met = json.loads((work / "eval" / "metrics.json").read_text())
    met_mpc = json.loads((work / "eval_mpc" / "metrics.json").read_text())
    mpc_doc = json.loads((work / "twin_mpc" / "calibration.json").read_text())["mpc"]
    keys = ("n", "male_db", "median_db", "p90_db", "bias_db", "delay_spread_mae_ns", "mcs", "mre_eps_r", "mre_sigma",
            "cluster_f1", "cluster_power_mae_db", "cluster_delay_mae_ns", "cluster_angle_mae_deg",
            "mpc_path_gain_mae_db", "mpc_delay_spread_mae_ns", "mpc_angular_spread_mae_deg", "mpc_k_factor_mae_db")
    out = {"scene": "room", "frequency_hz": F, "links": a.links, "train_links": a.links - a.test,
           "test_links": a.test, "noise_db": a.noise_db, "max_depth": a.depth, "samples_per_src": a.samples,
           "starts": a.starts, "max_iter": a.max_iter, "seed": a.seed, "measured_mpcs": sim,
           "train_mpcs_matched": mpc_doc["matched"],
           "seconds": {"simulate": round(t_sim, 1), "calibrate": round(t_cal, 1),
                       "calibrate_with_mpcs": round(t_cal_mpc, 1), "evaluate": round(t_eval, 1)},
           "methods": {m: {k: met["metrics"][m][k] for k in keys if k in met["metrics"][m]} for m in met["methods"]},
           "notes": met["notes"]}
    out["methods"]["twin_mpc"] = {k: met_mpc["metrics"]["twin"][k] for k in keys if k in met_mpc["metrics"]["twin"]}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "evaluate.json", out)
    with atomic_path(RESULTS / "evaluate_cdf.png") as tmp:
        shutil.copyfile(work / "eval" / "cdf_abs_error.png", tmp)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
