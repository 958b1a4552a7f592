"""Using the twin (issue 14): beam selection on label / calibrated / truth twins, and dynamic-scene updates.

Part ``beams`` (seed 002 section 6.8), a room where materials decide the best beam: the built-in room at 28 GHz
whose north and south walls are metal but labelled plasterboard and whose east wall is plasterboard but labelled
metal (truth: ITU values of the true classes x seeded factors). Test receivers mostly behind the 1 m boxes as seen
from the access point (no line of sight: reflections off the walls serve them). Four twins choose the best (tx, rx)
DFT beam pair (4x8 tr38901 array at the AP, 2x2 iso at the receivers): the truth (Sionna at the true materials),
the label twin (ITU values of the labels), a geometry-only twin (every surface concrete, seed 002's baseline) and
the twin calibrated by ``rftwin.twin.Calibrator`` (label priors with label correction) from the wrong labels and
Sionna-simulated single-antenna path gains of 64 training links (1 dB noise) from four transmitters, half of
the receivers low behind a box as seen from their transmitter. Choices are scored on the truth:
share of correct picks, gain lost, throughput (802.11ad table, 2.16 GHz, NF 10 dB, MAC efficiency 0.65).

Part ``dynamic`` (seed 002 section 6.7): a person (0.4 x 0.3 x 1.8 m box, skin-like material) walks across a
4 m link in the room at 28 GHz while 99 more links (three access points, random receivers) are tracked; at every
step ``rftwin.dynamic.update.run_update`` updates every link locally (modes: region and geometric tests that
re-trace some links with Sionna; ``image``: the static paths the person does not block plus every path via the
person by the image method, no Sionna call), and the same walk is repeated with a full re-trace of every link at
every step: time per step (and its parts) and the difference in dB per link and step; shadow-loss time series of
the 4 m link. ``profile``: where one step's seconds go; ``image_check``: where image and full re-trace differ by
more than 0.05 dB, the link re-traced with 1e6 rays.

Run: .venv/bin/python benchmarks/bench_downstream.py --part beams [--quick] [--seeds 3,4,5]
     for m in full local local_new_paths_0.1db geometric geometric_order2 geometric_order1 image d2d_full \
              d2d_local d2d_geometric d2d_image noise profile compare image_check; do
         .venv/bin/python benchmarks/bench_downstream.py --part dynamic --mode $m; done
(each walk in its own process: a crash in one walk loses only that walk; the Dr.Jit "jit_var: unknown variable"
abort seen first came from solver calls without any path and is fixed in the tracer)
(writes benchmarks/results/downstream.json and downstream_*.png)

Part 2 (issue 15): ``--part datasets`` runs benchmarks/downstream_dataset.py (dataset export rate, turbo-learning
table and CDF; results downstream_dataset.json) and ``--part ris`` benchmarks/downstream_ris.py (RIS validation
and the candidate ranking of label / calibrated / truth twins; results downstream_ris.json); ``--quick`` is
passed on.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.dynamic.region import segments_hit_boxes
from rftwin.io import atomic_path, write_json
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
TRAIN_TX = np.array([[-4.6, 0.3, 2.5], [2.0, -3.0, 2.2], [0.0, 4.0, 1.5], [4.0, 1.0, 2.0]])
# materials decide the beam: the north and south walls are metal (e.g. foil-backed panels / low-e glass) but
# labelled plasterboard; the east wall is plasterboard but labelled metal; floor, west wall and boxes are right
TRUE_CLASS = {"floor": "concrete", "wall_north": "metal", "wall_south": "metal", "wall_east": "plasterboard",
              "wall_west": "brick"}
LABELS = {"wall_north": "plasterboard", "wall_south": "plasterboard", "wall_east": "metal"}
GEOMETRY_MATERIAL = "concrete"  # the geometry-only twin: every surface the same default material


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _scenario(seed: int, n_train: int, n_nlos: int, n_los: int):
    """Truth, label and geometry-only materials of the room and the training / test links of one seeded draw."""
    rng = np.random.default_rng(seed)
    base = room(F)
    names = base.names
    true_cls = [TRUE_CLASS.get(n, o.label) for n, o in zip(names, base.objects)]
    labels = [LABELS.get(n, c) for n, c in zip(names, true_cls)]
    itu = np.array([itu_eps_sigma(c, F) for c in true_cls])
    lam = np.clip(rng.normal(1.0, 0.1, (len(itu), 2)), 0.8, 1.2)
    eps_t, sig_t = np.maximum(itu[:, 0] * lam[:, 0], 1.0), itu[:, 1] * lam[:, 1]
    boxes = closed_object_boxes(base)
    lo_b = torch.tensor(np.array([b[0] for b in boxes]))
    hi_b = torch.tensor(np.array([b[1] for b in boxes]))
    # training links (single antennas): TRAIN_TX in turn; half the receivers anywhere (0.5-2.5 m high), half low
    # (0.3-0.8 m) behind a box as seen from their transmitter, where the walls' reflections carry the power
    tr_tx = TRAIN_TX[np.arange(n_train) % len(TRAIN_TX)]
    tr_rx = random_positions(base, n_train, rng, (0.5, 2.5))
    cand_tr = random_positions(base, 4000, rng, (0.3, 0.8))
    for i in range(len(TRAIN_TX)):  # a handful of transmitters, not a loop over links
        rows = np.nonzero(np.arange(n_train) % len(TRAIN_TX) == i)[0][::2]
        hid = segments_hit_boxes(torch.tensor(np.repeat(TRAIN_TX[i][None], len(cand_tr), 0)), torch.tensor(cand_tr),
                                 lo_b, hi_b).any(-1).numpy()
        pick = cand_tr[hid][: len(rows)]
        tr_rx[rows[: len(pick)]] = pick
        cand_tr = cand_tr[~np.isin(np.arange(len(cand_tr)), np.nonzero(hid)[0][: len(rows)])]
    # test receivers: n_nlos behind the 1 m boxes as seen from the AP (direct line blocked), n_los in the open
    cand = random_positions(base, 6000, rng, (0.3, 0.8))
    blocked = segments_hit_boxes(torch.tensor(np.repeat(AP[None], len(cand), 0)), torch.tensor(cand), lo_b,
                                 hi_b).any(-1).numpy()
    te_rx = np.concatenate([cand[blocked][:n_nlos], random_positions(base, n_los, rng, (0.8, 2.0))])
    nlos = np.arange(len(te_rx)) < min(n_nlos, int(blocked.sum()))
    return names, true_cls, labels, eps_t, sig_t, tr_tx, tr_rx, te_rx, nlos, rng


def _calibrate(names: list[str], labels: list[str], tr_tx: np.ndarray, tr_rx: np.ndarray, pg_db: np.ndarray,
               st: SolverSettings, starts: int, seed: int) -> tuple[np.ndarray, np.ndarray, list]:
    """The product's calibration (``Calibrator``, label priors with label correction, ``rftwin calibrate``'s
    defaults except no K-fold check) from the wrong labels and the single-antenna path gains; returns
    (eps_r, sigma, classes after label correction)."""
    import tempfile  # noqa: PLC0415

    import pandas as pd  # noqa: PLC0415

    from rftwin.calibrate.spec import CalibrationSpec, ModelSpec, OptimiserSpec, PriorSpec, SolverSpec  # noqa: PLC0415
    from rftwin.twin import Calibrator  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="rftwin-beams-") as tmp:
        lab = Path(tmp) / "labels.json"
        lab.write_text(json.dumps(dict(zip(names, labels))))
        meas = Path(tmp) / "train.csv"
        pd.DataFrame({"tx_x": tr_tx[:, 0], "tx_y": tr_tx[:, 1], "tx_z": tr_tx[:, 2], "rx_x": tr_rx[:, 0],
                      "rx_y": tr_rx[:, 1], "rx_z": tr_rx[:, 2], "frequency_hz": F, "path_gain_db": pg_db}
                     ).to_csv(meas, index=False)
        spec = CalibrationSpec(prior=PriorSpec(labels=str(lab), folds=0), model=ModelSpec(starts=starts, sweeps=1),
                               optimiser=OptimiserSpec(retrace=1),
                               solver=SolverSpec(max_depth=st.max_depth, samples_per_src=st.samples_per_src,
                                                 seed=seed))
        twin = room(F)
        ct = Calibrator(spec).fit(twin, str(meas), progress=False, cache_dir=False)
    return np.asarray(ct.result.eps_r, float), np.asarray(ct.result.sigma, float), list(ct.labels)


def beam_study(n_train: int, n_nlos: int, n_los: int, st: SolverSettings, starts: int, seed: int,
               tx_power_dbm: float, noise_db: float = 1.0, figure: bool = True) -> dict:
    names, true_cls, labels, eps_t, sig_t, tr_tx, tr_rx, te_rx, nlos, rng = _scenario(seed, n_train, n_nlos, n_los)
    n_test = len(te_rx)
    te_tx = np.repeat(AP[None], n_test, 0)
    f_te = np.full(n_test, F)
    tx_arr = ArraySpec(num_rows=4, num_cols=8, pattern="tr38901", polarization="V")
    rx_arr = ArraySpec(num_rows=2, num_cols=2, pattern="iso", polarization="V")
    cb_tx, cb_rx = CodebookSpec("dft", oversampling=2), CodebookSpec("dft", oversampling=1)
    budget = LinkBudget(tx_power_dbm=tx_power_dbm)
    itu_l = np.array([itu_eps_sigma(c, F) for c in labels])
    out: dict = {"seed": seed, "frequency_hz": F, "objects": names, "true_classes": true_cls, "labels": labels,
                 "geometry_only_material": GEOMETRY_MATERIAL, "eps_true": eps_t.tolist(),
                 "sigma_true": sig_t.tolist(), "n_train": n_train, "train_noise_db": noise_db, "n_test": n_test,
                 "n_nlos": int(nlos.sum()),
                 "tx_array": "4x8 tr38901 V, broadside +x, DFT x2 oversampled (8 x 16 = 128 beams)",
                 "rx_array": "2x2 iso V, DFT (4 beams)", "tx_power_dbm": tx_power_dbm,
                 "noise_power_dbm": budget.noise_power_dbm, "mac_efficiency": budget.mac_efficiency,
                 "solver": {"max_depth": st.max_depth, "samples_per_src": st.samples_per_src}}

    def gains(eps, sig):
        tw = room(F)
        tw.set_materials(eps, sig)
        return beam_pair_gains(tw, None, te_tx, te_rx, f_te, tx_arr, rx_arr, cb_tx, cb_rx, st, cache_dir=False,
                               progress=False).gain_db

    # truth: Sionna at the true materials; training path gains (single iso antennas) with noise_db dB noise
    truth = room(F)
    truth.set_materials(eps_t, sig_t)
    ps_tr = trace(truth, tr_tx, tr_rx, st, cache_dir=False, progress=False)
    pg = reference_link_power(ps_tr)
    ok = pg > 0
    pg_db = 10 * np.log10(pg[ok]) + rng.normal(0.0, noise_db, int(ok.sum()))
    g = {"truth": gains(eps_t, sig_t), "label": gains(itu_l[:, 0], itu_l[:, 1])}
    geo = itu_eps_sigma(GEOMETRY_MATERIAL, F)
    g["geometry-only"] = gains(np.full(len(names), geo[0]), np.full(len(names), geo[1]))
    t0 = time.perf_counter()
    eps_c, sig_c, cls_c = _calibrate(names, labels, tr_tx[ok], tr_rx[ok], pg_db, st, starts, seed)
    out["calibration_seconds"] = time.perf_counter() - t0
    mre = {k: (float(np.mean(np.abs(e - eps_t) / eps_t)), float(np.mean(np.abs(s - sig_t) / sig_t)))
           for k, (e, s) in {"calibrated": (eps_c, sig_c), "label": (itu_l[:, 0], itu_l[:, 1])}.items()}
    out["calibration"] = {"eps_r": eps_c.tolist(), "sigma": sig_c.tolist(), "classes": cls_c,
                          "mre_eps": mre["calibrated"][0], "mre_sigma": mre["calibrated"][1],
                          "mre_eps_label": mre["label"][0], "mre_sigma_label": mre["label"][1]}
    g["calibrated"] = gains(eps_c, sig_c)
    gt = g["truth"]
    valid = np.isfinite(gt.reshape(n_test, -1).max(1))
    best_t = select_beams(gt, None, budget)
    ideal = best_t["throughput_bps"].to_numpy()
    twins = {}
    curves = {"truth (oracle)": ideal[valid & nlos]}
    for name in ("geometry-only", "label", "calibrated"):
        sel = select_beams(g[name], None, budget)
        real = throughput_of_choice(gt, sel["tx_beam"].to_numpy(), sel["rx_beam"].to_numpy(), None, budget)
        correct = (sel["tx_beam"].to_numpy() == best_t["tx_beam"].to_numpy()) & \
                  (sel["rx_beam"].to_numpy() == best_t["rx_beam"].to_numpy())
        loss_db = best_t["beam_gain_db"].to_numpy() - (real["rx_power_dbm"] - tx_power_dbm)
        thr = real["throughput_bps"]
        err = np.abs(sel["beam_gain_db"].to_numpy() - best_t["beam_gain_db"].to_numpy())
        twins[name] = {
            "correct_pick_share_nlos": float(correct[valid & nlos].mean()),
            "correct_pick_share_los": float(correct[valid & ~nlos].mean()) if (valid & ~nlos).any() else None,
            "within_1db_share_nlos": float((loss_db[valid & nlos] <= 1.0).mean()),
            "median_gain_loss_db_nlos": float(np.median(loss_db[valid & nlos])),
            "mean_gain_loss_db_nlos": float(np.mean(loss_db[valid & nlos])),
            "median_throughput_mbps_nlos": float(np.median(thr[valid & nlos]) / 1e6),
            "mean_throughput_mbps_nlos": float(np.mean(thr[valid & nlos]) / 1e6),
            "mean_throughput_loss_mbps_nlos": float(np.mean((ideal - thr)[valid & nlos]) / 1e6),
            "median_throughput_mbps_los": float(np.median(thr[valid & ~nlos]) / 1e6) if (valid & ~nlos).any()
            else None,
            "median_predicted_gain_error_db_nlos": float(np.median(err[valid & nlos])),
        }
        curves[name] = thr[valid & nlos]
    twins["truth"] = {"median_throughput_mbps_nlos": float(np.median(ideal[valid & nlos]) / 1e6),
                      "mean_throughput_mbps_nlos": float(np.mean(ideal[valid & nlos]) / 1e6),
                      "median_throughput_mbps_los": float(np.median(ideal[valid & ~nlos]) / 1e6)
                      if (valid & ~nlos).any() else None}
    out["twins"] = twins
    out["links_with_paths"] = int(valid.sum())
    for ref in ("label", "geometry-only"):
        r, c = twins[ref]["median_throughput_mbps_nlos"], twins["calibrated"]["median_throughput_mbps_nlos"]
        out[f"median_throughput_gain_nlos_calibrated_vs_{ref}"] = (c / r - 1.0) if r > 0 else None
    out["peak_rss_gib"] = _peak_gib()
    if figure:
        _cdf_png(curves, RESULTS / "downstream_throughput_cdf.png")
    return out


def beam_summary(runs: list[dict]) -> dict:
    """Per twin, the NLoS figures of every seed and their mean."""
    keys = ("correct_pick_share_nlos", "median_throughput_mbps_nlos", "mean_gain_loss_db_nlos",
            "mean_throughput_loss_mbps_nlos")
    out = {}
    for name in ("geometry-only", "label", "calibrated"):
        out[name] = {k: {"per_seed": [r["twins"][name][k] for r in runs],
                         "mean": float(np.mean([r["twins"][name][k] for r in runs]))} for k in keys}
    out["truth_median_throughput_mbps_nlos"] = [r["twins"]["truth"]["median_throughput_mbps_nlos"] for r in runs]
    out["seeds"] = [r["seed"] for r in runs]
    return out


DYN_MODES = {"local": {"method": "region"}, "full": {"full_retrace": True},
             "local_new_paths_0.1db": {"method": "region", "new_path_tolerance_db": 0.1},
             "geometric": {"method": "geometric"}, "geometric_order2": {"method": "geometric", "geometric_order": 2},
             "geometric_order1": {"method": "geometric", "geometric_order": 1}, "image": {"method": "image"}}
D2D_MODES = {"d2d_local": {"method": "region"}, "d2d_full": {"full_retrace": True},
             "d2d_geometric": {"method": "geometric"}, "d2d_image": {"method": "image"}}
PARTS = ("move_seconds", "local_seconds", "trace_seconds", "engine_seconds")


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
        return _d2d(rng, st, pos[::2], t[::2], mode, base)  # one Sionna scene per process
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
            "median_part_seconds": {k: float(r.steps[k].iloc[1:].median()) for k in PARTS},
            "p90_step_seconds": float(np.quantile(sec, 0.9)),
            "median_trace_seconds": float(np.median(r.steps["trace_seconds"].to_numpy()[1:])),
            "first_step_seconds": float(r.steps["seconds"].iloc[0]),
            "mean_links_retraced": float(r.steps["links_retraced"].iloc[1:].mean()), "wall_seconds": wall,
            "links": len(tx), "steps": len(ys), "step_m": float(ys[1] - ys[0]), "peak_rss_gib": _peak_gib()}


def sampling_noise(samples: tuple[int, ...] = (100_000, 200_000, 400_000)) -> dict:
    """The tracer's own sampling noise on the walk's links: path gains with the person in the middle of the walk,
    traced at 1e5 rays per source (the walks' setting) against 2e5 and 4e5."""
    from rftwin.dynamic.proxy import ProxySpec, insert_proxy  # noqa: PLC0415
    from rftwin.physics.engine import path_coefficients  # noqa: PLC0415
    from rftwin.predict.predict import channel_features  # noqa: PLC0415
    from rftwin.twin_io import material_values  # noqa: PLC0415

    _, tx, rx, _, pos, _, base = _walk_setup(False)
    insert_proxy(base, ProxySpec(), pos[len(pos) // 2])
    mv = material_values(base, None, np.array([F]))
    g = {}
    for n in samples:
        ps = trace(base, tx, rx, SolverSettings(max_depth=3, samples_per_src=n), cache_dir=False, progress=False)
        with torch.no_grad():
            g[n] = channel_features(ps, path_coefficients(ps, mv, torch.tensor([F]))[0])["path_gain_db"].numpy()[0]
    out = {"links": len(tx), "position": pos[len(pos) // 2].tolist()}
    for n in samples[1:]:
        d = np.abs(g[samples[0]] - g[n])
        out[f"{samples[0]}_vs_{n}"] = {"max_abs_diff_db": float(d.max()),
                                       "p99_abs_diff_db": float(np.quantile(d, 0.99)),
                                       "links_above_0.01db": int((d > 0.01).sum())}
    return out


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
    d2d = {m[4:]: np.load(RESULTS / f".dyn_{m}.npz")["g"] for m in D2D_MODES if (RESULTS / f".dyn_{m}.npz").is_file()}
    for m in ("local", "geometric", "image"):
        if m in d2d and "full" in d2d:
            d = np.abs(d2d[m] - d2d["full"])[1:]
            doc["dynamic"].setdefault("d2d", {})[f"{m}_vs_full"] = {
                "max_abs_diff_db": float(np.nanmax(d)), "p99_abs_diff_db": float(np.nanquantile(d, 0.99))}
    print(_modes_table(doc["dynamic"]["modes"]))
    ys = runs["full"]["ys"]
    doc["dynamic"]["shadow_loss_db_4m_link"] = {"y_m": ys.tolist(), **{m: r["sl"].tolist() for m, r in runs.items()}}
    _dynamic_png(ys, {m: r["sl"] for m, r in runs.items()}, {m: r["sec"] for m, r in runs.items()},
                 int(full.shape[1]), RESULTS / "downstream_dynamic.png")


def _modes_table(modes: dict) -> str:
    """The walks side by side (80 columns): links re-traced, median seconds per step and its parts, |diff| to
    the full re-trace."""
    head = f"{'mode':<18}{'links':>6}{'s/step':>7}{'move':>6}{'local':>6}{'trace':>6}{'engine':>7}" \
           f"{'max dB':>8}{'p99 dB':>8}"
    rows = [head, "-" * len(head)]
    for m, r in modes.items():
        if "median_step_seconds" not in r:
            continue
        p = r.get("median_part_seconds", {})
        rows.append(f"{m[:17]:<18}{r['mean_links_retraced']:>6.1f}{r['median_step_seconds']:>7.2f}"
                    + "".join(f"{p.get(k, float('nan')):>{w}.2f}" for k, w in zip(PARTS, (6, 6, 6, 7)))
                    + f"{r.get('max_abs_diff_db', float('nan')):>8.3f}{r.get('p99_abs_diff_db', float('nan')):>8.3f}")
    return "\n".join(rows)


def image_check(threshold_db: float = 0.05, samples: int = 1_000_000) -> dict:
    """Where the image update and the full re-trace (1e5 rays) differ by more than ``threshold_db``: the link
    re-traced alone at that step with ``samples`` rays, path gains of all three (is the difference the image
    method's or the 1e5-ray trace's?)."""
    from rftwin.dynamic.proxy import ProxySpec, insert_proxy, move_proxy  # noqa: PLC0415
    from rftwin.dynamic.update import _features  # noqa: PLC0415
    from rftwin.twin_io import material_values  # noqa: PLC0415

    img, full = np.load(RESULTS / ".dyn_image.npz")["g"], np.load(RESULTS / ".dyn_full.npz")["g"]
    _, tx, rx, _, pos, _, base = _walk_setup(False)
    insert_proxy(base, ProxySpec(), pos[0])
    mv = material_values(base, None, np.array([F]))
    rows = []
    for step, link in np.argwhere(np.abs(img - full) > threshold_db):  # a handful of (step, link) pairs
        move_proxy(base, "proxy", pos[step])
        ps = trace(base, tx[link:link + 1], rx[link:link + 1], SolverSettings(max_depth=3, samples_per_src=samples),
                   cache_dir=False, progress=False)
        g = float(_features(ps, mv, np.array([F]), np.zeros(1, dtype=np.int64), None)[0][0])
        rows.append({"step": int(step), "link": int(link), "y_m": float(pos[step, 1]),
                     "image_db": float(img[step, link]), "full_1e5_db": float(full[step, link]),
                     f"trace_{samples:.0e}_db": g,
                     "image_minus_more_rays_db": float(img[step, link] - g),
                     "full_minus_more_rays_db": float(full[step, link] - g)})
        print(rows[-1], flush=True)
    return {"threshold_db": threshold_db, "samples": samples, "pairs": rows}


def dynamic_profile() -> dict:
    """Where one step's seconds go, with the person at y = -1 among the walk's 100 links: Sionna scene edit
    (moving the proxy), Sionna solver calls (first call of a receiver count: Dr.Jit compiles; second: warm) and
    our conversion to a PathSet, for a full re-trace and for the 33 links of one access point; the image
    method's parts (static paths test, image-method enumeration, PathSet records, engine)."""
    import rftwin.trace.tracer as tr  # noqa: PLC0415
    from rftwin.dynamic.exact import ImageUpdate, link_path_power  # noqa: PLC0415
    from rftwin.dynamic.proxy import ProxySpec, insert_proxy, move_proxy, proxy_triangles  # noqa: PLC0415
    from rftwin.dynamic.update import _features  # noqa: PLC0415
    from rftwin.twin_io import material_values  # noqa: PLC0415

    st = SolverSettings(max_depth=3, samples_per_src=100_000)
    _, tx, rx, _, pos, _, base = _walk_setup(False)
    ps0 = trace(base, tx, rx, st, cache_dir=False, progress=False)
    mid = pos[len(pos) // 2]
    insert_proxy(base, ProxySpec(), pos[0])
    solver = {"s": 0.0}
    inner = tr.solve_paths

    def timed(*a, **k):  # instrumentation of the real solver call
        t = time.perf_counter()
        out = inner(*a, **k)
        solver["s"] += time.perf_counter() - t
        return out

    tr.solve_paths = timed
    out: dict = {}
    t = time.perf_counter()
    for p in pos[1:6]:
        move_proxy(base, "proxy", p)
    out["move_proxy_seconds"] = (time.perf_counter() - t) / 5
    move_proxy(base, "proxy", mid)
    ap = np.all(tx == tx[1], axis=1)
    for name, sel in (("full_100_links", np.ones(len(tx), bool)), ("one_ap_33_links", ap)):
        for run in ("first", "second"):
            solver["s"] = 0.0
            t = time.perf_counter()
            trace(base, tx[sel], rx[sel], st, cache_dir=False, progress=False)
            total = time.perf_counter() - t
            out[f"{name}_{run}"] = {"total_seconds": total, "solver_seconds": solver["s"],
                                    "conversion_seconds": total - solver["s"]}
    tr.solve_paths = inner
    uf, row = np.array([F]), np.zeros(len(tx), dtype=np.int64)
    mv = material_values(base, None, uf)
    up = ImageUpdate(base, ps0, link_path_power(ps0, mv, uf, row), proxy_triangles(ProxySpec()), len(base.objects) - 1,
                     mv, uf, row, st.max_depth)
    up.step(mid)  # warm-up
    reps = 5
    t = time.perf_counter()
    for _ in range(reps):
        up.blocked(mid)
    t_static = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        pp = up.method.paths(up.proxy_facets0.shifted(torch.as_tensor(mid)), convex=up.convex)
    t_img = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        up.pathset(pp, mid)
    t_rec = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        geo, _ = up.step(mid)
    t_step = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        _features(geo, mv, uf, row, None)
    t_eng = (time.perf_counter() - t) / reps
    out["image_method"] = {"static_paths_test_seconds": t_static, "enumeration_seconds": t_img,
                           "pathset_records_seconds": t_rec, "step_seconds": t_step, "engine_seconds": t_eng,
                           "paths_via_proxy": len(pp.link), "triples_screened": pp.candidates,
                           "static_paths": ps0.num_paths}
    rows = [f"{'part':<44}{'seconds':>10}", "-" * 54, f"{'Sionna scene edit (move the proxy)':<44}"
            f"{out['move_proxy_seconds']:>10.3f}"]
    for name in ("full_100_links", "one_ap_33_links"):
        for run in ("first", "second"):
            r = out[f"{name}_{run}"]
            rows.append(f"{name + ' ' + run + ': solver':<44}{r['solver_seconds']:>10.3f}")
            rows.append(f"{name + ' ' + run + ': PathSet conversion':<44}{r['conversion_seconds']:>10.3f}")
    for k, v in out["image_method"].items():
        if k.endswith("seconds"):
            rows.append(f"{'image: ' + k[:-8].replace('_', ' '):<44}{v:>10.3f}")
    out["table"] = rows
    print("\n".join(rows))
    return out


def _d2d(rng: np.random.Generator, st: SolverSettings, pos: np.ndarray, t: np.ndarray, mode: str, base,
         n: int = 30) -> dict:
    """Device-to-device links (every link its own transmitter): Sionna's cost is per transmitter, so here the
    local update skips whole solver calls."""
    from rftwin.dynamic.proxy import ProxySpec  # noqa: PLC0415
    from rftwin.dynamic.update import run_update  # noqa: PLC0415

    tx = np.concatenate([[[-2.0, -1.0, 1.2]], random_positions(base, n - 1, rng, (0.8, 2.0))])
    rx = np.concatenate([[[2.0, -1.0, 1.2]], random_positions(base, n - 1, rng, (0.8, 2.0))])
    r = run_update(base, None, tx, rx, np.full(n, F), ProxySpec(), t, pos, st, progress=False, cache_dir=False,
                   **D2D_MODES[mode])
    g = r.series.pivot(index="step", columns="link", values="path_gain_db").to_numpy()
    with atomic_path(RESULTS / f".dyn_{mode}.npz") as tmp, open(tmp, "wb") as fh:
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
    ax.set_ylabel("CDF over held-out NLoS links")
    ax.set_title("Beam selection at 28 GHz (NLoS, walls mislabelled)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", default="all", choices=["beams", "dynamic", "datasets", "ris", "all"],
                    help="part 1: beams, dynamic; part 2: datasets, ris; all: every part")
    ap.add_argument("--mode", default=None,
                    choices=[*DYN_MODES, *D2D_MODES, "noise", "profile", "image_check", "compare"],
                    help="dynamic part: run one walk (each in its own process) or compare the saved walks")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--seeds", default=None, help="beam study: comma-separated seeds (default: --seed)")
    ap.add_argument("--tx-power-dbm", type=float, default=0.0)
    args = ap.parse_args()
    if args.part in ("datasets", "ris", "all"):  # part 2 lives in its own scripts (each its own results file)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        quick = ["--quick"] if args.quick else []
        if args.part in ("datasets", "all"):
            import downstream_dataset  # noqa: PLC0415

            downstream_dataset.main(quick)
        if args.part in ("ris", "all"):
            import downstream_ris  # noqa: PLC0415

            downstream_ris.main(quick)
        if args.part != "all":
            return
    configure_torch_threads()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "downstream.json"
    doc = json.loads(path.read_text()) if path.is_file() else {}
    if args.part in ("beams", "all"):
        from rftwin.progress import track  # noqa: PLC0415

        st = SolverSettings(max_depth=3, samples_per_src=100_000)  # 3e5 peaked at 6.6 GiB
        n_train, n_nlos, n_los = (24, 12, 4) if args.quick else (64, 40, 20)
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
        runs = []
        t0 = time.perf_counter()
        for i, sd in enumerate(track(seeds, "beam study seeds", enabled=len(seeds) > 1)):
            runs.append(beam_study(n_train, n_nlos, n_los, st, 4 if args.quick else 8, sd, args.tx_power_dbm,
                                   figure=i == 0))
            print(f"seed {sd}:", json.dumps(runs[-1]["twins"], indent=1), flush=True)
        doc["beams"] = {"runs": runs, "summary": beam_summary(runs), "seconds": time.perf_counter() - t0}
        print(json.dumps(doc["beams"]["summary"], indent=1))
        write_json(path, doc)
    if args.part in ("dynamic", "all"):
        dyn = doc.setdefault("dynamic", {})
        dyn.setdefault("modes", {})
        if args.mode in (None, "compare"):
            dynamic_compare(doc)
        elif args.mode == "noise":
            dyn["sampling_noise"] = sampling_noise()
        elif args.mode == "profile":
            dyn["profile"] = dynamic_profile()
        elif args.mode == "image_check":
            dyn["image_check"] = image_check()
        elif args.mode.startswith("d2d"):
            dyn.setdefault("d2d", {})[args.mode[4:]] = dynamic_mode(args.mode, args.quick)
        else:
            dyn["modes"][args.mode] = dynamic_mode(args.mode, args.quick)
        print(json.dumps(dyn.get("modes"), indent=1), json.dumps(dyn.get("d2d"), indent=1))
    write_json(path, doc)


if __name__ == "__main__":
    main()
