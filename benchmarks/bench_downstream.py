"""Using the twin (issue 14): beam selection on label / calibrated / truth twins, and dynamic-scene updates.

Part ``beams`` (seed 002 section 6.8): the built-in room at 28 GHz whose walls and floor are brick (truth: ITU
values x seeded factors) but *labelled glass* (wrong-label prior). The calibrated twin is fitted by
``rftwin.calibrate.workflow.calibrate_scene`` from Sionna-simulated RSS of single-antenna training links
(starting from the wrong labels). On held-out links from an access point with an 4x8 tr38901 array (+x
broadside) to 2x2 iso receivers, every twin chooses its best (tx, rx) DFT beam pair; the choice is scored on the
truth twin (Sionna trace at the true materials): share of correct picks, gain lost, throughput (802.11ad table,
2.16 GHz, NF 10 dB, MAC efficiency 0.65).

Part ``dynamic`` (seed 002 section 6.7): a person (0.4 x 0.3 x 1.8 m box, skin-like material) walks across a
4 m link in the room at 28 GHz while 99 more links (three access points, random receivers) are tracked; at every
step ``rftwin.dynamic.update.run_update`` re-traces only the links whose paths or first Fresnel zones meet the
person's old or new place, and the same walk is repeated with a full re-trace of every link at every step:
time per step of both and their difference in dB per link and step; shadow-loss time series of the 4 m link.

Run: .venv/bin/python benchmarks/bench_downstream.py --part beams [--quick]
     for m in local full local_new_paths_0.1db d2d_local d2d_full compare; do
         .venv/bin/python benchmarks/bench_downstream.py --part dynamic --mode $m; done
(each walk in its own process: a crash in one walk loses only that walk; the Dr.Jit "jit_var: unknown variable"
abort seen first came from solver calls without any path and is fixed in the tracer)
(writes benchmarks/results/downstream.json and downstream_*.png)
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.calibrate import CalibrationConfig, Targets
from rftwin.calibrate.workflow import calibrate_scene
from rftwin.dynamic.region import segments_hit_boxes
from rftwin.io import atomic_path, write_json
from rftwin.materials import prior_from_labels
from rftwin.materials.itu import itu_eps_sigma
from rftwin.physics.arrays import ArraySpec
from rftwin.predict.beams import CodebookSpec, LinkBudget, beam_pair_gains, select_beams, throughput_of_choice
from rftwin.runtime import configure_torch_threads
from rftwin.scene import room
from rftwin.scene.sampling import closed_object_boxes, random_positions
from rftwin.trace import SolverSettings, trace
from rftwin.trace.simulate import reference_link_power

RESULTS = Path(__file__).parent / "results"
F = 28e9
AP = np.array([-4.6, 0.3, 2.5])
TRAIN_TX = np.array([[-4.6, 0.3, 2.5], [2.0, -3.0, 2.2]])
WRONG = {"floor": "glass", "wall_east": "glass", "wall_north": "glass", "wall_south": "glass", "wall_west": "glass"}


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def beam_study(n_train: int, n_test: int, st: SolverSettings, starts: int, seed: int, tx_power_dbm: float) -> dict:
    rng = np.random.default_rng(seed)
    base = room(F)
    names = base.names
    true_labels = [o.label for o in base.objects]
    itu = np.array([itu_eps_sigma(lab, F) for lab in true_labels])
    lam = np.clip(rng.normal(1.0, 0.1, (len(itu), 2)), 0.8, 1.2)
    eps_t, sig_t = np.maximum(itu[:, 0] * lam[:, 0], 1.0), itu[:, 1] * lam[:, 1]
    wrong = [WRONG.get(n, lab) for n, lab in zip(names, true_labels)]
    itu_w = np.array([itu_eps_sigma(lab, F) for lab in wrong])
    # links
    tr_tx = TRAIN_TX[np.arange(n_train) % len(TRAIN_TX)]
    tr_rx = random_positions(base, n_train, rng, (0.5, 2.5))
    # half the test receivers in line of sight of the AP, half behind the 1 m boxes (direct line blocked)
    te_los = random_positions(base, n_test - n_test // 2, rng, (0.8, 2.0))
    boxes = closed_object_boxes(base)
    lo_b = torch.tensor(np.array([b[0] for b in boxes]))
    hi_b = torch.tensor(np.array([b[1] for b in boxes]))
    cand = random_positions(base, 4000, rng, (0.3, 0.8))
    blocked = segments_hit_boxes(torch.tensor(np.repeat(AP[None], len(cand), 0)), torch.tensor(cand), lo_b,
                                 hi_b).any(-1).numpy()
    te_rx = np.concatenate([te_los, cand[blocked][: n_test // 2]])
    nlos = np.arange(len(te_rx)) >= len(te_los)
    n_test = len(te_rx)
    te_tx = np.repeat(AP[None], n_test, 0)
    f_te = np.full(n_test, F)
    tx_arr = ArraySpec(num_rows=4, num_cols=8, pattern="tr38901", polarization="V")
    rx_arr = ArraySpec(num_rows=2, num_cols=2, pattern="iso", polarization="V")
    cb_tx, cb_rx = CodebookSpec("dft", oversampling=2), CodebookSpec("dft", oversampling=1)
    budget = LinkBudget(tx_power_dbm=tx_power_dbm)
    out: dict = {"test_receivers": "half in line of sight of the AP (0.8-2 m high), half behind the 1 m boxes",
                 "frequency_hz": F, "objects": names, "true_labels": true_labels, "wrong_labels": wrong,
                 "eps_true": eps_t.tolist(), "sigma_true": sig_t.tolist(), "n_train": n_train, "n_test": n_test,
                 "tx_array": "4x8 tr38901 V, broadside +x, DFT x2 oversampled (8 x 16 = 128 beams)",
                 "rx_array": "2x2 iso V, DFT (4 beams)", "tx_power_dbm": tx_power_dbm,
                 "noise_power_dbm": budget.noise_power_dbm, "mac_efficiency": budget.mac_efficiency,
                 "solver": {"max_depth": st.max_depth, "samples_per_src": st.samples_per_src}}
    # truth: Sionna trace at the true materials; training RSS from its coefficients (single iso antennas)
    truth = room(F)
    truth.set_materials(eps_t, sig_t)
    t0 = time.perf_counter()
    ps_tr = trace(truth, tr_tx, tr_rx, st, cache_dir=False, progress=False)
    pg = reference_link_power(ps_tr)
    ok = pg > 0
    pg_db = np.where(ok, 10 * np.log10(np.maximum(pg, 1e-300)), np.nan)
    g_truth = beam_pair_gains(truth, None, te_tx, te_rx, f_te, tx_arr, rx_arr, cb_tx, cb_rx, st, cache_dir=False,
                              progress=False)
    out["truth_seconds"] = time.perf_counter() - t0
    # label twin: wrong labels' ITU values
    label = room(F)
    label.set_materials(itu_w[:, 0], itu_w[:, 1])
    g_label = beam_pair_gains(label, None, te_tx, te_rx, f_te, tx_arr, rx_arr, cb_tx, cb_rx, st, cache_dir=False,
                              progress=False)
    # calibrated twin: from the wrong labels, fitted to the training RSS
    cal = room(F)
    cal.set_materials(itu_w[:, 0], itu_w[:, 1])
    prior = prior_from_labels(wrong, F)
    targets = Targets.build(np.arange(n_train)[ok], np.full(int(ok.sum()), F), pg_db[ok])
    t0 = time.perf_counter()
    res, _ = calibrate_scene(cal, tr_tx, tr_rx, targets, prior, CalibrationConfig(), st, num_starts=starts,
                             retrace=1, seed=seed, truth=(eps_t, sig_t), progress=False, cache_dir=False,
                             global_sweeps=1, bounded=True)
    out["calibration_seconds"] = time.perf_counter() - t0
    out["calibration"] = {"eps_r": res.eps_r.tolist(), "sigma": res.sigma.tolist(),
                          "mre_eps": res.mre(eps_t, sig_t)[0], "mre_sigma": res.mre(eps_t, sig_t)[1],
                          "mre_eps_label": float(np.mean(np.abs(itu_w[:, 0] - eps_t) / eps_t)),
                          "mre_sigma_label": float(np.mean(np.abs(itu_w[:, 1] - sig_t) / sig_t))}
    cal.set_materials(res.eps_r, res.sigma)
    g_cal = beam_pair_gains(cal, None, te_tx, te_rx, f_te, tx_arr, rx_arr, cb_tx, cb_rx, st, cache_dir=False,
                            progress=False)
    # scoring on the truth
    gt = g_truth.gain_db
    valid = np.isfinite(gt.reshape(n_test, -1).max(1))
    best_t = select_beams(gt, None, budget)
    ideal = best_t["throughput_bps"].to_numpy()
    twins = {}
    curves = {"truth (oracle)": ideal[valid]}
    for name, g in (("label", g_label.gain_db), ("calibrated", g_cal.gain_db)):
        sel = select_beams(g, None, budget)
        real = throughput_of_choice(gt, sel["tx_beam"].to_numpy(), sel["rx_beam"].to_numpy(), None, budget)
        correct = (sel["tx_beam"].to_numpy() == best_t["tx_beam"].to_numpy()) & \
                  (sel["rx_beam"].to_numpy() == best_t["rx_beam"].to_numpy())
        loss_db = best_t["beam_gain_db"].to_numpy() - (real["rx_power_dbm"] - tx_power_dbm)
        thr = real["throughput_bps"]
        twins[name] = {
            "correct_pick_share": float(correct[valid].mean()),
            "correct_pick_share_los": float(correct[valid & ~nlos].mean()),
            "correct_pick_share_nlos": float(correct[valid & nlos].mean()),
            "median_throughput_mbps_nlos": float(np.median(thr[valid & nlos]) / 1e6),
            "median_gain_loss_db_nlos": float(np.median(loss_db[valid & nlos])),
            "mean_gain_loss_db_nlos": float(np.mean(loss_db[valid & nlos])),
            "within_1db_share": float((loss_db[valid] <= 1.0).mean()),
            "median_gain_loss_db": float(np.median(loss_db[valid])),
            "p90_gain_loss_db": float(np.quantile(loss_db[valid], 0.9)),
            "median_throughput_mbps": float(np.median(thr[valid]) / 1e6),
            "mean_throughput_mbps": float(np.mean(thr[valid]) / 1e6),
            "median_throughput_loss_mbps": float(np.median((ideal - thr)[valid]) / 1e6),
            "mean_throughput_loss_mbps": float(np.mean((ideal - thr)[valid]) / 1e6),
            "median_predicted_gain_error_db": float(np.median(np.abs(sel["beam_gain_db"].to_numpy()
                                                                     - best_t["beam_gain_db"].to_numpy())[valid])),
        }
        curves[name] = thr[valid]
    twins["truth"] = {"median_throughput_mbps": float(np.median(ideal[valid]) / 1e6),
                      "median_throughput_mbps_nlos": float(np.median(ideal[valid & nlos]) / 1e6),
                      "mean_throughput_mbps": float(np.mean(ideal[valid]) / 1e6)}
    out["twins"] = twins
    out["links_with_paths"] = int(valid.sum())
    out["nlos_links"] = int(nlos.sum())
    lab, calm = twins["label"]["median_throughput_mbps"], twins["calibrated"]["median_throughput_mbps"]
    out["median_throughput_gain_calibrated_vs_label"] = (calm / lab - 1.0) if lab > 0 else None
    out["peak_rss_gib"] = _peak_gib()
    _cdf_png(curves, RESULTS / "downstream_throughput_cdf.png")
    return out


DYN_MODES = {"local": {}, "full": {"full_retrace": True}, "local_new_paths_0.1db": {"new_path_tolerance_db": 0.1}}


def _walk_setup(quick: bool, seed: int = 5):
    rng = np.random.default_rng(seed)
    n_links = 20 if quick else 100
    aps = np.array([[-4.6, 0.3, 2.5], [4.6, -4.0, 2.5], [0.5, 4.6, 2.5]])
    base = room(F)
    tx = np.concatenate([[[-2.0, -1.0, 1.2]], aps[np.arange(n_links - 1) % len(aps)]])
    rx = np.concatenate([[[2.0, -1.0, 1.2]], random_positions(base, n_links - 1, rng, (0.8, 2.0))])
    ys = np.arange(-3.0, 1.0 + 1e-9, 0.4 if quick else 0.2)
    pos = np.stack([np.zeros_like(ys), ys, np.full_like(ys, 0.91)], 1)
    return rng, tx, rx, ys, pos, ys - ys[0], base  # walking at 1 m/s


def dynamic_mode(mode: str, quick: bool = False) -> dict:
    """One walk (``mode`` in :data:`DYN_MODES`, or ``d2d``) in its own process; path gains go to an NPZ so that the
    modes can be compared afterwards."""
    from rftwin.dynamic.proxy import ProxySpec  # noqa: PLC0415
    from rftwin.dynamic.update import run_update  # noqa: PLC0415

    st = SolverSettings(max_depth=3, samples_per_src=100_000)
    rng, tx, rx, ys, pos, t, base = _walk_setup(quick)
    if mode.startswith("d2d"):
        return _d2d(rng, st, pos[::2], t[::2], mode == "d2d_full", base)  # one Sionna scene per process
    t0 = time.perf_counter()
    r = run_update(base, None, tx, rx, np.full(len(tx), F), ProxySpec(), t, pos, st, progress=False,
                   cache_dir=False, **DYN_MODES[mode])
    wall = time.perf_counter() - t0
    g = r.series.pivot(index="step", columns="link", values="path_gain_db").to_numpy()
    with atomic_path(RESULTS / f".dyn_{mode}.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, g=g, sl=r.series[r.series.link == 0]["shadow_loss_db"].to_numpy(),
                 sec=r.steps["seconds"].to_numpy(), n=r.steps["links_retraced"].to_numpy(), ys=ys)
    sec = r.steps["seconds"].to_numpy()[1:]
    return {"median_step_seconds": float(np.median(sec)), "max_step_seconds": float(sec.max()),
            "first_step_seconds": float(r.steps["seconds"].iloc[0]),
            "mean_links_retraced": float(r.steps["links_retraced"].iloc[1:].mean()), "wall_seconds": wall,
            "links": len(tx), "steps": len(ys), "step_m": float(ys[1] - ys[0]), "peak_rss_gib": _peak_gib()}


def dynamic_compare(doc: dict) -> None:
    """Differences to the full re-trace and the figure, from the modes' NPZ files."""
    runs = {m: dict(np.load(RESULTS / f".dyn_{m}.npz")) for m in DYN_MODES if (RESULTS / f".dyn_{m}.npz").is_file()}
    if "full" not in runs:
        return
    full = runs["full"]["g"]
    for m, r in runs.items():
        d = np.abs(r["g"] - full)[1:]
        doc["dynamic"]["modes"].setdefault(m, {}).update(
            median_abs_diff_db=float(np.nanmedian(d)), p99_abs_diff_db=float(np.nanquantile(d, 0.99)),
            max_abs_diff_db=float(np.nanmax(d)), max_abs_diff_db_4m_link=float(np.nanmax(d[:, 0])))
    d2d = {m: np.load(RESULTS / f".dyn_d2d_{m}.npz")["g"] for m in ("local", "full")
           if (RESULTS / f".dyn_d2d_{m}.npz").is_file()}
    if len(d2d) == 2:
        d = np.abs(d2d["local"] - d2d["full"])[1:]
        doc["dynamic"].setdefault("d2d", {})["local_vs_full"] = {
            "max_abs_diff_db": float(np.nanmax(d)), "p99_abs_diff_db": float(np.nanquantile(d, 0.99))}
    ys = runs["full"]["ys"]
    doc["dynamic"]["shadow_loss_db_4m_link"] = {"y_m": ys.tolist(), **{m: r["sl"].tolist() for m, r in runs.items()}}
    _dynamic_png(ys, {m: r["sl"] for m, r in runs.items()}, {m: r["sec"] for m, r in runs.items()},
                 int(full.shape[1]), RESULTS / "downstream_dynamic.png")


def _d2d(rng: np.random.Generator, st: SolverSettings, pos: np.ndarray, t: np.ndarray, full: bool, base,
         n: int = 30) -> dict:
    """Device-to-device links (every link its own transmitter): Sionna's cost is per transmitter, so here the
    local update skips whole solver calls."""
    from rftwin.dynamic.proxy import ProxySpec  # noqa: PLC0415
    from rftwin.dynamic.update import run_update  # noqa: PLC0415

    tx = np.concatenate([[[-2.0, -1.0, 1.2]], random_positions(base, n - 1, rng, (0.8, 2.0))])
    rx = np.concatenate([[[2.0, -1.0, 1.2]], random_positions(base, n - 1, rng, (0.8, 2.0))])
    r = run_update(base, None, tx, rx, np.full(n, F), ProxySpec(), t, pos, st, progress=False, cache_dir=False,
                   full_retrace=full)
    g = r.series.pivot(index="step", columns="link", values="path_gain_db").to_numpy()
    with atomic_path(RESULTS / f".dyn_d2d_{'full' if full else 'local'}.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, g=g)
    return {"links": n, "steps": len(pos), "median_step_seconds": float(np.median(r.steps["seconds"][1:])),
            "mean_links_retraced": float(r.steps["links_retraced"].iloc[1:].mean())}


def _dynamic_png(ys: np.ndarray, sl: dict, secs: dict, n_links: int, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for n, v in sl.items():
        a1.plot(ys, v, marker="o" if n == "local" else None, ms=3, label=n)
    a1.set_xlabel("person position y [m] (4 m link at y = -1)")
    a1.set_ylabel("shadow loss of the 4 m link [dB]")
    a1.grid(alpha=0.3)
    a1.legend()
    for n, sec in secs.items():
        a2.plot(ys[1:], sec[1:], label=f"{n}")
    a2.set_xlabel("person position y [m]")
    a2.set_ylabel("update time per step [s]")
    a2.set_title(f"{n_links} links, room, 28 GHz")
    a2.grid(alpha=0.3)
    a2.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _cdf_png(curves: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, v in curves.items():
        x = np.sort(v) / 1e6
        ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=name)
    ax.set_xlabel("throughput on the truth twin [Mbit/s]")
    ax.set_ylabel("CDF over held-out links")
    ax.set_title("Beam selection at 28 GHz: label vs calibrated twin")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", default="all", choices=["beams", "dynamic", "all"])
    ap.add_argument("--mode", default=None, choices=[*DYN_MODES, "d2d_local", "d2d_full", "compare"],
                    help="dynamic part: run one walk (each in its own process) or compare the saved walks")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--tx-power-dbm", type=float, default=0.0)
    args = ap.parse_args()
    configure_torch_threads()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "downstream.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    if args.part in ("beams", "all"):
        st = SolverSettings(max_depth=3, samples_per_src=100_000)  # 3e5 peaked at 6.6 GiB
        n_train, n_test = (24, 16) if args.quick else (64, 60)
        doc["beams"] = beam_study(n_train, n_test, st, 4 if args.quick else 12, args.seed, args.tx_power_dbm)
        print(json.dumps(doc["beams"]["twins"], indent=1))
        write_json(path, doc)
    if args.part in ("dynamic", "all"):
        dyn = doc.setdefault("dynamic", {})
        dyn.setdefault("modes", {})
        if args.mode in (None, "compare"):
            dynamic_compare(doc)
        elif args.mode.startswith("d2d"):
            dyn.setdefault("d2d", {})[args.mode[4:]] = dynamic_mode(args.mode, args.quick)
        else:
            dyn["modes"][args.mode] = dynamic_mode(args.mode, args.quick)
        print(json.dumps(dyn.get("modes"), indent=1), json.dumps(dyn.get("d2d"), indent=1))
    write_json(path, doc)


if __name__ == "__main__":
    main()
