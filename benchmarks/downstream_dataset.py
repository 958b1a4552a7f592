"""Synthetic datasets for AI (issue 15 part 1): ``rftwin dataset`` export rate and a turbo-learning study.

Export rate: ``rftwin dataset room`` in a child process (peak RSS of the child polled from here with psutil:
bench_scale.run_child), once with an empty path cache (trace + engine) and once more into a new folder with the warm
cache (engine only): links/s, shard count, peak RSS.

Turbo-learning (NeRF^2 seed 001 section 7, WEDT seed 003 section IV RadioFlow experiment): the built-in room at
3.5 GHz whose walls and floor are brick (truth: ITU values x seeded factors lambda ~ N(1, 0.1^2) in [0.8, 1.2]) but
*labelled glass*. "Real" links are Sionna traces of the truth (bench_noharm.simulate) plus Gaussian noise in dB;
the calibrated twin is fitted by rftwin.calibrate.workflow.calibrate_scene from those noisy real links, starting
from the wrong labels. Training data of one small learned model (an MLP on Fourier features of the tx and rx
positions plus log distance, predicting path gain in dB; seeded, full batch Adam) comes from
(a) the label twin's dataset, (b) the calibrated twin's dataset (both exported with rftwin.dataset on the same
transmitter/receiver positions), (c) the few noisy real links alone, (d) real + label-twin data, (e) real +
calibrated-twin data (turbo-learning: real samples carry half of the loss weight; also with equal per-sample
weights). Every model is tested on
held-out truth links (other transmitters, other receivers; noise-free Sionna): absolute error in dB, median and
90th percentile, CDF plot. The twins themselves (engine on the test links) are reported as references.

Run: .venv/bin/python benchmarks/downstream_dataset.py [--quick]
(writes benchmarks/results/downstream_dataset.json and downstream_dataset_cdf.png)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.calibrate import CalibrationConfig, Targets
from rftwin.calibrate.workflow import calibrate_scene
from rftwin.dataset import DatasetSpec, LinkDataset, export_dataset, plan_links
from rftwin.io import atomic_path, write_json
from rftwin.materials import prior_from_labels
from rftwin.materials.itu import itu_eps_sigma
from rftwin.predict.predict import predict_channels
from rftwin.progress import track
from rftwin.runtime import configure_torch_threads
from rftwin.scene import room
from rftwin.trace import SolverSettings
from rftwin.twin_io import materials_document

sys.path.insert(0, str(Path(__file__).parent))
from bench_noharm import simulate  # noqa: E402  (the benchmarks' Sionna truth helper)
from bench_scale import run_child  # noqa: E402  (child process with its peak RSS polled from here)

RESULTS = Path(__file__).parent / "results"
F = 3.5e9
# wrong labels as in bench_downstream.py: brick walls and floor labelled glass
WRONG = {"floor": "glass", "wall_east": "glass", "wall_north": "glass", "wall_south": "glass", "wall_west": "glass"}
REGION_TX = "-4.5:4.5,-4.5:4.5,1.5:2.8"
REGION_RX = "-4.5:4.5,-4.5:4.5,0.5:2.0"
SIZES = {False: dict(train_tx=40, train_rx=60, test_tx=10, test_rx=30, real_tx=6, real_rx=12, epochs=1500),
         True: dict(train_tx=8, train_rx=40, test_tx=4, test_rx=25, real_tx=4, real_rx=10, epochs=600)}


# ------------------------------------------------------------------------------------------ export rate
def export_rate(n_tx: int, n_rx: int, st: SolverSettings, seed: int, per_shard: int) -> dict:
    """``rftwin dataset room`` with a cold and then a warm path cache (child processes)."""
    out: dict = {"tx": f"random:{n_tx},{REGION_TX}", "rx": f"random:{n_rx},{REGION_RX}",
                 "fields": "default scalars + cfr (64 subcarriers)", "links_per_shard": per_shard,
                 "max_depth": st.max_depth, "samples_per_src": st.samples_per_src}
    with tempfile.TemporaryDirectory(prefix="rftwin_ds_bench_") as tmp:
        env = dict(os.environ, RFTWIN_CACHE=str(Path(tmp) / "cache"), RFTWIN_PROGRESS="0")
        src = str(Path(rftwin.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
        for mode in ("cold_cache", "warm_cache"):
            dest = Path(tmp) / f"ds_{mode}"
            cmd = [sys.executable, "-c", "from rftwin.cli.main import app; app()", "dataset", "room",
                   "--tx", out["tx"], "--rx", out["rx"], "--out", str(dest), "--seed", str(seed),
                   "--max-depth", str(st.max_depth), "--samples-per-src", str(st.samples_per_src),
                   "--links-per-shard", str(per_shard), "--fields",
                   "path_gain_db,mean_delay_s,delay_spread_s,k_factor_db,angular_spread_deg,"
                   "angular_spread_departure_deg,num_paths,aoa_azimuth_deg,aoa_elevation_deg,"
                   "aod_azimuth_deg,aod_elevation_deg,cfr"]
            r = run_child(cmd, env, keep_stderr=True)
            schema = json.loads((dest / "schema.json").read_text())
            size = sum(p.stat().st_size for p in dest.glob("shard-*.parquet"))
            m = re.search(r"already\s+finished\)\s+to\s+.*?\s+in\s+([0-9.]+)\s+s", r["stderr"], re.S)
            inner = float(m.group(1)) if m else float("nan")  # the export itself, without process start
            out[mode] = {"links": schema["num_links"], "shards": len(schema["shards"]),
                         "seconds": r["seconds"], "links_per_s": schema["num_links"] / r["seconds"],
                         "export_seconds": inner, "export_links_per_s": schema["num_links"] / inner,
                         "peak_rss_gib": r["peak_rss_bytes"] / 2**30, "bytes_per_link": size / schema["num_links"]}
    return out


# -------------------------------------------------------------------------------------- the learned model
def encode(tx: torch.Tensor, rx: torch.Tensor, octaves: int = 4, scale_m: float = 5.0) -> torch.Tensor:
    """Model input [n, 6 + 12 * octaves + 1]: positions / ``scale_m``, their sin/cos at 2^k pi, log10 distance."""
    x = torch.cat([tx, rx], 1) / scale_m
    f = torch.pi * 2.0 ** torch.arange(octaves, dtype=x.dtype)
    ang = (x[:, :, None] * f).flatten(1)
    d = torch.linalg.vector_norm(tx - rx, dim=1, keepdim=True).clamp_min(0.1)
    return torch.cat([x, torch.sin(ang), torch.cos(ang), torch.log10(d)], 1)


def train_model(tx, rx, y, w, seed: int, epochs: int) -> torch.nn.Module:
    """Seeded MLP (2 x 128, SiLU) on :func:`encode`, weighted MSE on path gain (dB, centred), full-batch Adam."""
    torch.manual_seed(seed)
    X = encode(tx, rx)
    mu = float((w * y).sum() / w.sum())
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 128), torch.nn.SiLU(), torch.nn.Linear(128, 128),
                              torch.nn.SiLU(), torch.nn.Linear(128, 1)).double()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    wn = w / w.sum()
    for _ in range(epochs):
        opt.zero_grad()
        loss = (wn * (net(X)[:, 0] + mu - y) ** 2).sum()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    net.mu = mu
    return net


def predict_model(net, tx, rx) -> np.ndarray:
    with torch.no_grad():
        return (net(encode(tx, rx))[:, 0] + net.mu).numpy()


# -------------------------------------------------------------------------------------------- the study
def _positions(twin, n_tx: int, n_rx: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(tx, rx) [L, 3] of every pair of ``n_tx`` random transmitters and ``n_rx`` receivers (rftwin.dataset)."""
    p = plan_links(twin, None, DatasetSpec(tx=f"random:{n_tx},{REGION_TX}", rx=f"random:{n_rx},{REGION_RX}",
                                           seed=seed))
    return p.tx[p.tx_id], p.rx[p.rx_id]


def _stats(err: np.ndarray) -> dict:
    return {"median_abs_error_db": float(np.median(err)), "p90_abs_error_db": float(np.quantile(err, 0.9)),
            "mean_abs_error_db": float(np.mean(err)), "links": int(len(err))}


def turbo_study(quick: bool, st: SolverSettings, seed: int, noise_db: float, starts: int,
                png: Path = RESULTS / "downstream_dataset_cdf.png") -> dict:
    sz = SIZES[quick]
    rng = np.random.default_rng(seed)
    base = room(F)
    names = base.names
    true_labels = [o.label for o in base.objects]
    itu = np.array([itu_eps_sigma(lab, F) for lab in true_labels])
    lam = np.clip(rng.normal(1.0, 0.1, (len(itu), 2)), 0.8, 1.2)
    eps_t, sig_t = np.maximum(itu[:, 0] * lam[:, 0], 1.0), itu[:, 1] * lam[:, 1]
    wrong = [WRONG.get(n, lab) for n, lab in zip(names, true_labels)]
    itu_w = np.array([itu_eps_sigma(lab, F) for lab in wrong])
    out: dict = {"frequency_hz": F, "objects": names, "true_labels": true_labels, "wrong_labels": wrong,
                 "eps_true": eps_t.tolist(), "sigma_true": sig_t.tolist(), "noise_db": noise_db, "seed": seed,
                 "solver": {"max_depth": st.max_depth, "samples_per_src": st.samples_per_src}, "sizes": sz}
    timings: dict = {}
    # "real" links (noisy truth) and held-out test links (noise-free truth): Sionna at the true materials
    t0 = time.perf_counter()
    truth = room(F)
    real_tx, real_rx = _positions(base, sz["real_tx"], sz["real_rx"], seed + 1)
    test_tx, test_rx = _positions(base, sz["test_tx"], sz["test_rx"], seed + 2)
    real_db = simulate(truth, real_tx, real_rx, eps_t, sig_t, st, False) + rng.normal(0.0, noise_db, len(real_tx))
    test_db = simulate(truth, test_tx, test_rx, eps_t, sig_t, st, False)
    timings["truth_seconds"] = time.perf_counter() - t0
    ok_r, ok_t = np.isfinite(real_db), np.isfinite(test_db)
    real_tx, real_rx, real_db = real_tx[ok_r], real_rx[ok_r], real_db[ok_r]
    test_tx, test_rx, test_db = test_tx[ok_t], test_rx[ok_t], test_db[ok_t]
    # calibrated twin: from the wrong labels, fitted to the noisy real links
    cal = room(F)
    cal.set_materials(itu_w[:, 0], itu_w[:, 1])
    t0 = time.perf_counter()
    targets = Targets.build(np.arange(len(real_db)), np.full(len(real_db), F), real_db)
    res, _ = calibrate_scene(cal, real_tx, real_rx, targets, prior_from_labels(wrong, F), CalibrationConfig(), st,
                             num_starts=starts, retrace=1, seed=seed, truth=(eps_t, sig_t), progress=False,
                             global_sweeps=1, bounded=True)
    timings["calibration_seconds"] = time.perf_counter() - t0
    mre = res.mre(eps_t, sig_t)
    out["calibration"] = {"real_links": int(len(real_db)), "eps_r": res.eps_r.tolist(), "sigma": res.sigma.tolist(),
                          "mre_eps": mre[0], "mre_sigma": mre[1],
                          "mre_eps_label": float(np.mean(np.abs(itu_w[:, 0] - eps_t) / eps_t)),
                          "mre_sigma_label": float(np.mean(np.abs(itu_w[:, 1] - sig_t) / sig_t))}
    # datasets of the label twin and of the calibrated twin: same positions, same trace (label twin's geometry),
    # materials from the scene (labels) or from the calibrated materials document
    label = room(F)
    label.set_materials(itu_w[:, 0], itu_w[:, 1])
    cal_doc = materials_document(label, res.eps_r, res.sigma, F)
    spec = DatasetSpec(tx=f"random:{sz['train_tx']},{REGION_TX}", rx=f"random:{sz['train_rx']},{REGION_RX}",
                       seed=seed + 3, fields=("path_gain_db", "num_paths"), links_per_shard=1024, settings=st)
    data = {}
    with tempfile.TemporaryDirectory(prefix="rftwin_turbo_") as tmp:
        for name, doc in (("label", None), ("calibrated", cal_doc)):
            t0 = time.perf_counter()
            r = export_dataset(label, doc, spec, Path(tmp) / name, twin_ref=f"room ({name})", progress=True)
            timings[f"export_{name}_seconds"] = time.perf_counter() - t0
            ds = LinkDataset(Path(tmp) / name, fields=["tx_pos", "rx_pos", "path_gain_db"], dtype=torch.float64)
            t = ds.tensors()
            keep = torch.isfinite(t["path_gain_db"])
            data[name] = (t["tx_pos"][keep], t["rx_pos"][keep], t["path_gain_db"][keep])
            out[f"dataset_{name}"] = {"links": r.num_links, "with_paths": int(keep.sum()), "shards": r.num_shards}
    # training sources
    rt, rr, ry = (torch.as_tensor(x) for x in (real_tx, real_rx, real_db))
    sources = {"label twin data": [data["label"]], "calibrated twin data": [data["calibrated"]],
               "real only": [(rt, rr, ry)], "real + label twin (turbo)": [(rt, rr, ry), data["label"]],
               "real + calibrated twin (turbo)": [(rt, rr, ry), data["calibrated"]],
               "real + calibrated, per-sample w.": [(rt, rr, ry), data["calibrated"]]}
    te_tx, te_rx = torch.as_tensor(test_tx), torch.as_tensor(test_rx)
    models, errors = {}, {}
    t0 = time.perf_counter()
    for name, parts in track(list(sources.items()), "training models"):
        tx = torch.cat([p[0] for p in parts])
        rx = torch.cat([p[1] for p in parts])
        y = torch.cat([p[2] for p in parts])
        # turbo: real samples carry half of the loss weight (each part an equal share); "per-sample w.": every
        # sample the same weight (the few real links then barely count)
        share = "per-sample" not in name
        w = torch.cat([torch.full((len(p[2]),), 1.0 / len(p[2]) if share else 1.0, dtype=torch.float64)
                       for p in parts])
        net = train_model(tx, rx, y, w, seed, sz["epochs"])
        err = np.abs(predict_model(net, te_tx, te_rx) - test_db)
        errors[name] = err
        models[name] = {"training_links": int(len(y)), **_stats(err)}
    timings["training_seconds"] = time.perf_counter() - t0
    # references: the twins themselves on the test links (engine on their cached paths)
    refs = {}
    for name, doc in (("label twin itself", None), ("calibrated twin itself", cal_doc)):
        p = predict_channels(label, doc, test_tx, test_rx, np.full(len(test_tx), F), st, progress=False)
        g = p.table["path_gain_db"].to_numpy()
        ok = np.isfinite(g)
        refs[name] = {**_stats(np.abs(g[ok] - test_db[ok])), "links_without_paths": int((~ok).sum())}
    out["models"] = models
    out["twins"] = refs
    out["test_links"] = int(len(test_db))
    out["timings"] = timings
    out["wedt_reference"] = {"median_ale_db_calibrated_twin_data": 3.21, "median_ale_db_itu_data": 4.16}
    _cdf_png(errors, png, len(test_db))
    return out


def _cdf_png(errors: dict[str, np.ndarray], path: Path, n: int) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, e in errors.items():
        x = np.sort(e)
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=f"{name} (median {np.median(e):.2f} dB)")
    ax.set_xlabel("absolute path-gain error on held-out truth links [dB]")
    ax.set_ylabel(f"CDF over {n} test links")
    ax.set_title("Learned path-gain model by training data (room, 3.5 GHz)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def table(doc: dict) -> str:
    """80-column text table of the study."""
    rows = [f"{'training data':34s} {'links':>6s} {'median dB':>10s} {'p90 dB':>8s} {'mean dB':>8s}"]
    for name, m in {**doc["turbo"]["models"], **doc["turbo"]["twins"]}.items():
        n = m.get("training_links", "-")
        rows.append(f"{name:34s} {n!s:>6s} {m['median_abs_error_db']:10.2f} {m['p90_abs_error_db']:8.2f} "
                    f"{m['mean_abs_error_db']:8.2f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sets (about 2 minutes)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--noise-db", type=float, default=2.0, help="noise of the real links (dB)")
    ap.add_argument("--part", choices=["all", "export", "turbo"], default="all")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. _seed6 for a repeat)")
    args = ap.parse_args(argv)
    configure_torch_threads()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"downstream_dataset{args.tag}.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    st = SolverSettings(max_depth=3, samples_per_src=100_000, seed=args.seed)
    doc["quick"] = args.quick
    doc["machine"] = {"cpus": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total}
    if args.part in ("all", "export"):
        n_tx, n_rx = (2, 200) if args.quick else (8, 500)
        doc["export"] = export_rate(n_tx, n_rx, st, args.seed, 1000)
        print(json.dumps(doc["export"], indent=1))
        write_json(path, doc)
    if args.part in ("all", "turbo"):
        doc["turbo"] = turbo_study(args.quick, st, args.seed, args.noise_db, 2 if args.quick else 6,
                                   RESULTS / f"downstream_dataset_cdf{args.tag}.png")
        print(table(doc))
        write_json(path, doc)
    return doc


if __name__ == "__main__":
    main()
