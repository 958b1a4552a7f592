"""Calibration that does no harm (issue #17): held-out error of the label twin, of the unregularised calibration
(the fit to the data alone, as before) and of the posterior calibration, over geometries x labels x noise x model
mismatch x link counts; then the transfer study (a second scene calibrated with the first scene's material
library against the ITU labels, over link counts).

Truth: Sionna RT with the true materials (ITU value of the true class x lambda per object and quantity, lambda ~
N(1, 0.15^2) clipped to [0.6, 1.4]); "wrong" labels give some objects another true class (metal cabinets labelled
wood, concrete walls labelled brick, ...). Mismatch: "diffuse" truth traces diffuse reflection (S = 0.3 on every
object) while the twin is specular; "jitter" moves every measured receiver by N(0, (5 cm)^2) per axis while the
twin uses the nominal positions; "blockage" attenuates BLOCKED_FRACTION of the measured links by U(10, 25) dB
(a person or vehicle in the way during the measurement: rows the twin's paths cannot explain) while the held-out
truth is unblocked. Noise: Gaussian in dB on the measured path gains. Held-out error: RMS dB error of
the twin's path gain against the noise-free truth on 100 links never used for fitting. Each calibration runs on
the paths traced once at the labels (no re-trace; depth 2, 5e4 rays per source), with 16 starts; no global
sweeps.

Results: benchmarks/results/noharm.json (resumable: finished cells are skipped) and noharm.png.
Run: .venv/bin/python benchmarks/bench_noharm.py [--quick] [--geometries room,office,street]
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.calibrate import CalibrationConfig, Targets, calibrate
from rftwin.calibrate.bayes import BayesConfig, ObjectPriors
from rftwin.calibrate.inference import BayesSetup, calibrate_posterior, material_library
from rftwin.calibrate.problem import simulate_path_gain_db
from rftwin.io import write_json
from rftwin.materials import PerObjectMaterials, draw_start_values, itu_eps_sigma, prior_from_labels
from rftwin.materials.class_prior import PLAUSIBLE, itu_table, read_library
from rftwin.physics.channel import path_gain
from rftwin.progress import track
from rftwin.scene import load
from rftwin.scene.room import BoxSpec, room_xml
from rftwin.scene.sampling import random_positions
from rftwin.trace import SolverSettings, trace

OUT = Path(__file__).parent / "results" / "noharm.json"
PNG = Path(__file__).parent / "results" / "noharm.png"
F = 3.5e9
N_TEST = 100
REACHABLE_DB = -150.0  # test links the label twin's specular paths reach (above this gain)
OLD_MAX_ITER = 200  # the unregularised fit often runs to its cap; the CLI's cap of 1000 only costs time here
# an 8 x 8 m office split in two by an interior wall (0.12 m, with a 1 m door gap at one end), furniture
OFFICE_BOXES = (BoxSpec("interior_wall", "plasterboard", (0.0, -0.5), (0.12, 7.0, 2.79)),
                BoxSpec("cabinet", "wood", (-2.5, 2.0), (0.6, 1.2, 1.9)),
                BoxSpec("desk", "wood", (2.2, 1.5), (1.6, 0.8, 0.75)),
                BoxSpec("shelf", "chipboard", (2.8, -2.5), (0.5, 1.6, 1.8)),
                BoxSpec("partition", "glass", (-2.0, -1.5), (2.0, 0.1, 2.0)),
                BoxSpec("pillar", "concrete", (1.0, 3.0), (0.4, 0.4, 2.79)))
# object -> true class where the labels are badly wrong
WRONG = {"room": {"box_wood": "metal", "wall_east": "metal", "floor": "concrete"},
         "office": {"interior_wall": "concrete", "cabinet": "metal", "partition": "metal"},
         "street": {"building_6": "metal", "building_2": "concrete"}}
# transfer study: one class multiplier per material class, shared by both scenes
CLASS_LAMBDA = {"brick": (1.25, 0.6), "concrete": (0.85, 1.5), "wood": (1.2, 0.7), "chipboard": (0.8, 1.4),
                "marble": (1.1, 0.8), "glass": (0.9, 1.2)}


def scene(name: str, tmp: Path):
    if name == "room":
        return load("room")
    if name == "office":
        p = tmp / "office.xml"
        if not p.is_file():
            p.write_text(room_xml(size_xy=8.0, height=2.8, wall_material="brick", floor_material="concrete",
                                  boxes=OFFICE_BOXES))
        return load(p)
    if name == "street":
        return load("simple_street_canyon")
    raise ValueError(name)


def geometry_settings(name: str) -> SolverSettings:
    return SolverSettings(max_depth=2, samples_per_src=50_000, seed=1)


def links(twin, name: str, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Three transmitters and ``n`` receivers each cycling over them: tx, rx [n, 3] (m)."""
    tz, rz = ((1.8, 2.5), (0.8, 2.0)) if name != "street" else ((8.0, 12.0), (1.2, 2.0))
    tx = random_positions(twin, 3, rng, tz, xy_margin_m=1.0 if name != "street" else 20.0)
    rx = random_positions(twin, n, rng, rz, xy_margin_m=0.5 if name != "street" else 20.0)
    return tx[np.arange(n) % 3], rx


def truth_materials(labels: list[str], rng, wrong: dict[str, str], names: list[str],
                    class_lambda: dict | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    cls = [wrong.get(n, lab) for n, lab in zip(names, labels)]
    eps, sig = np.empty(len(cls)), np.empty(len(cls))
    for i, c in enumerate(cls):
        e, s = itu_eps_sigma(c, F)
        if class_lambda is not None:
            le, ls = class_lambda.get(c, (1.0, 1.0))
        else:
            le, ls = np.clip(rng.normal(1.0, 0.15, 2), 0.6, 1.4)
        eps[i] = max(e * le, 1.0) if c != "metal" else 1.0
        sig[i] = s * ls if c != "metal" else s
    return eps, sig, cls


def gain_db(ps) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 10 * np.log10(path_gain(ps.a_ref[None, None], ps.link, ps.num_links)[0, 0].numpy())


def simulate(twin, tx, rx, eps, sig, settings: SolverSettings, diffuse: bool) -> np.ndarray:
    """Sionna's path gain [L] (dB) with the true materials. Gains above 0 dB are impossible (a passive channel):
    Sionna's diffuse Monte-Carlo estimate gives ~+200 dB on a few links whose receiver sits at a sampled
    scattering point; such links are dropped (NaN), as rftwin's measurement reader would refuse them."""
    twin.set_materials(eps, sig, scattering=np.full(len(eps), 0.3) if diffuse else None)
    st = replace(settings, diffuse_reflection=diffuse)
    g = gain_db(trace(twin, tx, rx, st, progress=False))
    return np.where(g > 0.0, np.nan, g)


def predict_db(ps, model, n: int) -> np.ndarray:
    t = Targets.build(np.arange(n), np.full(n, F), np.zeros(n))
    with torch.no_grad():
        return simulate_path_gain_db(ps, model, t)[0].numpy()


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


def implausible(eps: np.ndarray, sig: np.ndarray) -> int:
    (e0, e1), (s0, s1) = PLAUSIBLE["eps_r"], PLAUSIBLE["sigma"]
    return int(np.sum((eps < e0) | (eps > e1)) + np.sum((sig < s0) | (sig > s1)))


def mre(est: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(est - true) / true))


TRUE_LAMBDA_STD = 0.15  # std of the truth's per-object multipliers lambda (truth_materials)
ORACLE_ITERS = 8


def _gains_at(p: dict, lam: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Twin path gain [B, L] (dB) on the label twin's paths with eps_r, sigma = true class value x lambda;
    ``lam`` [B, 2 F] = (lambda_eps, lambda_sigma) of the F objects ``free`` (the rest at their truth)."""
    B = lam.shape[0]
    eps = np.tile(p["eps_t"], (B, 1))
    sig = np.tile(p["sig_t"], (B, 1))
    nf = len(free)
    eps[:, free] = np.maximum(p["e_cls"][free] * lam[:, :nf], 1.0)
    sig[:, free] = p["s_cls"][free] * lam[:, nf:]
    n = p["n"]
    t = Targets.build(np.arange(n), np.full(n, F), np.zeros(n))
    with torch.no_grad():
        return simulate_path_gain_db(p["ps"], PerObjectMaterials(eps, sig, p["thickness"]), t).numpy()


def oracle(p: dict, rows: np.ndarray, y: np.ndarray, noise_db: float, test: np.ndarray) -> dict:
    """The best any calibration of this twin can do with these data: the posterior mean of the truth's own
    multipliers lambda (prior N(1, 0.15^2) per object and quantity, the true classes; metal fixed) under the true
    noise, by damped Gauss-Newton on the twin's paths (iterated linearisation), and its expected error (the
    linearised posterior predictive std on the test links). Also the twin's error at the exact true materials (the
    floor no material calibration removes: the paths were traced at the labels). ``rows`` [M] training links,
    ``y`` [M] their measured gains (dB). Returns RMS errors [dB] on all / reached test links."""
    free = np.array([i for i, c in enumerate(p["cls_t"]) if c != "metal"], dtype=np.int64)
    nf = len(free)
    P = 2 * nf
    s = max(noise_db, 0.01)  # noise-free data: a 0.01 dB floor keeps the normal equations finite
    h = 1e-4
    prior_prec = np.eye(P) / TRUE_LAMBDA_STD**2
    lam_true = np.concatenate([p["eps_t"][free] / p["e_cls"][free], p["sig_t"][free] / p["s_cls"][free]])

    def cost(g0: np.ndarray, lam: np.ndarray) -> float:
        ok = np.isfinite(y) & (g0[rows] > REACHABLE_DB)
        return float(np.sum((y - g0[rows])[ok] ** 2) / s**2 + np.sum((lam - 1.0) ** 2) / TRUE_LAMBDA_STD**2)

    def linearise(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = _gains_at(p, np.concatenate([lam[None], lam + h * np.eye(P), lam - h * np.eye(P)]), free)
        J = np.nan_to_num(((g[1:P + 1] - g[P + 1:]) / (2 * h)).T, nan=0.0, posinf=0.0, neginf=0.0)  # [L, P]
        return g[0], J

    lam = np.ones(P)
    g0, J = linearise(lam)
    for _ in range(ORACLE_ITERS):
        ok = np.isfinite(y) & (g0[rows] > REACHABLE_DB)
        Jr, r = J[rows][ok], (y - g0[rows])[ok]
        step = np.linalg.solve(Jr.T @ Jr / s**2 + prior_prec, Jr.T @ r / s**2 - prior_prec @ (lam - 1.0))
        c0 = cost(g0, lam)
        for _ in range(6):  # halve the step until the posterior cost falls
            g1 = _gains_at(p, (lam + step)[None], free)[0]
            if cost(g1, lam + step) <= c0:
                break
            step = step / 2
        else:
            break
        lam = lam + step
        g0, J = linearise(lam)
        if np.max(np.abs(step)) < 1e-6:
            break
    ok = np.isfinite(y) & (g0[rows] > REACHABLE_DB)
    Jr = J[rows][ok]
    cov = np.linalg.inv(Jr.T @ Jr / s**2 + prior_prec)
    g_true = _gains_at(p, lam_true[None], free)[0]
    truth = p["truth_nom"][test]
    pred = g0[test]
    reach = pred > REACHABLE_DB
    Jt = J[test][reach]
    return {"oracle_db": rmse(pred, truth), "oracle_reached_db": rmse(pred[reach], truth[reach]),
            "oracle_expected_db": float(np.sqrt(np.mean(np.einsum("lp,pq,lq->l", Jt, cov, Jt)))),
            "floor_db": rmse(g_true[test], truth), "floor_reached_db": rmse(g_true[test][reach], truth[reach]),
            "test_links_floor_unreached": int(np.sum(np.isfinite(truth) & ~(g_true[test] > REACHABLE_DB)))}


def old_calibration(ps, labels, thickness, t: Targets, seed: int):
    """The fit to the data alone (the CLI's former default: LM on dB, 16 starts in label x [1/2, 2] / [1/10, 10],
    4 refined; at most OLD_MAX_ITER iterations)."""
    prior = prior_from_labels(labels, F)
    st = draw_start_values(prior, 16, seed)
    model = PerObjectMaterials(st["eps_r"], st["sigma"], thickness)
    return calibrate(ps, model, t, CalibrationConfig(refine_starts=4, max_iter=OLD_MAX_ITER), progress=False,
                     uncertainty=False)


def new_calibration(ps, names, labels, thickness, t: Targets, tx_of_link: np.ndarray, seed: int,
                    table=None, with_setup: bool = False):
    """The posterior calibration (the CLI's default inference) on one traced PathSet; with ``with_setup`` also its
    BayesSetup (whose ``fit.model`` is the posterior before the held-out check's decision)."""
    op = ObjectPriors(names, list(labels), table or itu_table(F), F)
    setup = BayesSetup(op, BayesConfig(seed=seed, check_switches=CHECK_SWITCHES,
                                       switch_probability=SWITCH_PROBABILITY, likelihood=LIKELIHOOD))
    res = calibrate_posterior(ps, t, setup, thickness, num_starts=16, seed=seed, link_tx=tx_of_link)
    return (res, setup) if with_setup else res


SWITCH_PROBABILITY = 0.95  # --switch-probability of the posterior calibrations
LIKELIHOOD = "gaussian"  # --likelihood of the posterior calibrations
BLOCKED_FRACTION = 0.1  # measured links attenuated by 10-25 dB in the "blockage" mismatch
CHECK_SWITCHES = False  # --check-switches: the posterior calibrations run with BayesConfig(check_switches=True)
DETECTABLE_HALF_CHI2 = 5.0  # a wrong label is detectable when fixing it alone could gain this much log likelihood


def wrong_label_detail(p: dict, wrong: list[int], rows: np.ndarray, noise_db: float, inf: dict, n: int) -> list[dict]:
    """Per wrong label: how much the training data could see it (half the chi^2 gain of setting that object
    alone to its true material on the label twin's paths, noise ``noise_db`` floored at 0.1 dB, against
    :data:`DETECTABLE_HALF_CHI2`: about the label's prior odds ln(14) against one other class plus the Occam factor
    of two parameters), its class posterior probabilities (label, true class, the most probable) and its final
    class. ``rows`` [M]: training links."""
    g0 = predict_db(p["ps"], PerObjectMaterials(p["e0"][None], p["s0"][None], p["thickness"]), n)
    s = max(noise_db, 0.1)
    out = []
    for i in wrong:
        e, sg = p["e0"].copy(), p["s0"].copy()
        e[i], sg[i] = p["eps_t"][i], p["sig_t"][i]
        d = (predict_db(p["ps"], PerObjectMaterials(e[None], sg[None], p["thickness"]), n) - g0)[rows]
        d = d[np.isfinite(d)]
        half_chi2 = 0.5 * float(np.sum(d**2)) / s**2
        name, lab, true = p["names"][i], p["labels"][i], p["cls_t"][i]
        post = inf["class_posteriors"].get(name, {})
        top = max(post, key=post.get) if post else None
        out.append({"object": name, "label": lab, "true": true, "final": inf["classes"][i],
                    "half_chi2": half_chi2, "detectable": half_chi2 >= DETECTABLE_HALF_CHI2,
                    "train_change_rms_db": float(np.sqrt(np.mean(d**2))) if len(d) else 0.0,
                    "p_label": post.get(lab), "p_true": post.get(true), "most_probable": top,
                    "p_most_probable": post.get(top) if top else None})
    return out


def prepare(geom: str, labels_case: str, mismatch: str, tmp: Path, seed: int, n_train: int) -> dict:
    """Traces of one (geometry, labels, mismatch): truth gains at the measured positions and noise-free truth at the
    nominal ones, and the label twin's PathSet over train + test links."""
    rng = np.random.default_rng(seed)
    twin = scene(geom, tmp)
    names = twin.names
    labels = [o.label for o in twin.objects]
    thickness = [o.thickness_m for o in twin.objects]
    n = n_train + N_TEST
    tx, rx = links(twin, geom, n, rng)
    eps_t, sig_t, cls_t = truth_materials(labels, rng, WRONG[geom] if labels_case == "wrong" else {}, names)
    st = geometry_settings(geom)
    rx_meas = rx + (rng.normal(0.0, 0.05, rx.shape) if mismatch == "jitter" else 0.0)
    diffuse = mismatch == "diffuse"
    truth_meas = simulate(twin, tx, rx_meas, eps_t, sig_t, st, diffuse)
    truth_nom = truth_meas if mismatch in ("none", "blockage") else simulate(twin, tx, rx, eps_t, sig_t, st, diffuse)
    if mismatch == "blockage":
        blocked = rng.random(n) < BLOCKED_FRACTION
        truth_meas = truth_meas - np.where(blocked, rng.uniform(10.0, 25.0, n), 0.0)
    e0 = np.array([itu_eps_sigma(lab, F)[0] for lab in labels])
    s0 = np.array([itu_eps_sigma(lab, F)[1] for lab in labels])
    twin.set_materials(e0, s0)
    ps = trace(twin, tx, rx, st, progress=False)
    _, tx_id = np.unique(tx, axis=0, return_inverse=True)
    e_cls = np.array([itu_eps_sigma(c, F)[0] for c in cls_t])
    s_cls = np.array([itu_eps_sigma(c, F)[1] for c in cls_t])
    return {"ps": ps, "names": names, "labels": labels, "thickness": thickness, "eps_t": eps_t, "sig_t": sig_t,
            "cls_t": cls_t, "e_cls": e_cls, "s_cls": s_cls, "truth_meas": truth_meas, "truth_nom": truth_nom,
            "tx_id": tx_id.reshape(-1), "e0": e0, "s0": s0, "n": n}


def run_cell(p: dict, noise_db: float, n_links: int, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1000)
    n = p["n"]
    train = np.arange(n_links)
    test = np.arange(n - N_TEST, n)
    y = p["truth_meas"] + rng.normal(0.0, noise_db, n)
    ok = np.isfinite(y[train])
    rows = train[ok]
    # the calibrations see the training links' paths only (the PathSet also holds the test links and, for cells
    # sharing a draw, up to 1 000 training links: computing all of them in every LM step made the calibrations
    # up to 20x slower); the materials they return predict the test links on the full PathSet
    ps_fit = p["ps"].select_links(rows)
    t = Targets.build(np.arange(len(rows)), np.full(len(rows), F), y[rows])
    thickness = p["thickness"]
    lab_model = PerObjectMaterials(p["e0"][None], p["s0"][None], thickness)
    truth = p["truth_nom"][test]
    lab_pred = predict_db(p["ps"], lab_model, n)[test]
    # links the specular twin reaches at all (a diffuse-only link is -250 dB in the twin, a 200 dB "error")
    reach = lab_pred > REACHABLE_DB
    out = {"label_twin_db": rmse(lab_pred, truth), "test_links_unreached": int((~reach).sum()),
           "label_twin_reached_db": rmse(lab_pred[reach], truth[reach])}
    t0 = time.perf_counter()
    out.update(oracle(p, rows, y[rows], noise_db, test))
    out["oracle_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    old = old_calibration(ps_fit, p["labels"], thickness, t, seed)
    out["old_seconds"] = time.perf_counter() - t0
    pred = predict_db(p["ps"], old.model, n)[test]
    out["old_db"], out["old_reached_db"] = rmse(pred, truth), rmse(pred[reach], truth[reach])
    out["old_mre_eps"], out["old_mre_sigma"] = mre(old.eps_r, p["eps_t"]), mre(old.sigma, p["sig_t"])
    out["old_implausible"] = implausible(old.eps_r, old.sigma)
    t0 = time.perf_counter()
    new, setup = new_calibration(ps_fit, p["names"], p["labels"], thickness, t, p["tx_id"][rows], seed,
                                 with_setup=True)
    out["new_seconds"] = time.perf_counter() - t0
    # the posterior before the held-out check's decision: was keeping / reverting right on the truth?
    before = predict_db(p["ps"], setup.fit.model, n)[test]
    out["posterior_before_check_db"] = rmse(before, truth)
    pred = predict_db(p["ps"], new.model, n)[test]
    out["new_db"], out["new_reached_db"] = rmse(pred, truth), rmse(pred[reach], truth[reach])
    out["new_mre_eps"], out["new_mre_sigma"] = mre(new.eps_r, p["eps_t"]), mre(new.sigma, p["sig_t"])
    out["new_implausible"] = implausible(new.eps_r, new.sigma)
    inf = new.inference
    out["verdict"] = inf["verdict"]
    out["reverted"] = inf["reverted_to_labels"]
    out["switches"] = [(s["object"], s["to"]) for s in inf["label_switches"]]
    out["noise_estimate_db"] = inf["noise"]["path_gain"]
    out["likelihood"] = inf["likelihood"]
    out["outliers"] = inf.get("outliers", {}).get("count")
    out["gaussian_outliers"] = ((inf.get("likelihood_choice") or {}).get("gaussian_outliers") or {}).get("count")
    out["prior_strength"] = inf["prior_strength"]
    out["heldout_cv_label_db"] = inf["heldout"]["features"]["path_gain"]["label_rmse"]
    out["heldout_cv_new_db"] = inf["heldout"]["features"]["path_gain"]["calibrated_rmse"]
    wrong = [i for i, (a, b) in enumerate(zip(p["labels"], p["cls_t"])) if a != b]
    classes = inf["classes"]
    out["wrong_labels"] = len(wrong)
    out["wrong_labels_corrected"] = int(sum(classes[i] == p["cls_t"][i] for i in wrong))
    out["right_labels_switched"] = int(sum(classes[i] != p["labels"][i] for i in range(len(classes))
                                           if i not in wrong))
    out["wrong_label_detail"] = wrong_label_detail(p, wrong, rows, noise_db, inf, n)
    out["wrong_labels_detectable"] = int(sum(w["detectable"] for w in out["wrong_label_detail"]))
    out["wrong_labels_detectable_corrected"] = int(sum(w["detectable"] and w["final"] == w["true"]
                                                       for w in out["wrong_label_detail"]))
    out["heldout_mse_difference"] = inf["heldout"]["features"]["path_gain"]["mse_difference"]
    out["heldout_mse_difference_se"] = inf["heldout"]["features"]["path_gain"]["mse_difference_se"]
    out["rows_without_paths"] = inf.get("rows_without_paths", 0)
    return out


def transfer(tmp: Path, seed: int, sizes: list[int], noise_db: float = 1.0) -> list[dict]:
    """Scene 1 (room, 200 links) -> material library -> scene 2 (office) calibrated from the library vs the ITU
    labels, over link counts; truth shares one multiplier per class across both scenes."""
    rng = np.random.default_rng(seed)
    st = geometry_settings("room")
    # scene 1
    twin = scene("room", tmp)
    names, labels = twin.names, [o.label for o in twin.objects]
    thickness = [o.thickness_m for o in twin.objects]
    tx, rx = links(twin, "room", 200, rng)
    eps_t, sig_t, _ = truth_materials(labels, rng, {}, names, CLASS_LAMBDA)
    y = simulate(twin, tx, rx, eps_t, sig_t, st, False) + rng.normal(0, noise_db, 200)
    e0 = np.array([itu_eps_sigma(lab, F)[0] for lab in labels])
    s0 = np.array([itu_eps_sigma(lab, F)[1] for lab in labels])
    twin.set_materials(e0, s0)
    ps = trace(twin, tx, rx, st, progress=False)
    ok = np.isfinite(y)
    _, tx_id = np.unique(tx, axis=0, return_inverse=True)
    res = new_calibration(ps, names, labels, thickness, Targets.build(np.arange(200)[ok], np.full(ok.sum(), F),
                                                                       y[ok]), tx_id.reshape(-1), seed)
    op = ObjectPriors(names, labels, itu_table(F), F, classes=list(res.inference["classes"]))
    lib = material_library(res, BayesSetup(op), F)
    lib_path = tmp / "library.json"
    write_json(lib_path, lib)
    table = itu_table(F)
    table.classes.update(read_library(lib_path, F))
    # scene 2
    twin2 = scene("office", tmp)
    names2, labels2 = twin2.names, [o.label for o in twin2.objects]
    th2 = [o.thickness_m for o in twin2.objects]
    n = max(sizes) + N_TEST
    tx2, rx2 = links(twin2, "office", n, rng)
    e2, s2, _ = truth_materials(labels2, rng, {}, names2, CLASS_LAMBDA)
    truth2 = simulate(twin2, tx2, rx2, e2, s2, st, False)
    e20 = np.array([itu_eps_sigma(lab, F)[0] for lab in labels2])
    s20 = np.array([itu_eps_sigma(lab, F)[1] for lab in labels2])
    twin2.set_materials(e20, s20)
    ps2 = trace(twin2, tx2, rx2, st, progress=False)
    _, txid2 = np.unique(tx2, axis=0, return_inverse=True)
    y2 = truth2 + rng.normal(0, noise_db, n)
    test = np.arange(n - N_TEST, n)
    lab_db = rmse(predict_db(ps2, PerObjectMaterials(e20[None], s20[None], th2), n)[test], truth2[test])
    rows = []
    for m in sizes:
        tr = np.arange(m)
        ok = np.isfinite(y2[tr])
        t = Targets.build(np.arange(ok.sum()), np.full(ok.sum(), F), y2[tr][ok])
        ps_fit = ps2.select_links(tr[ok])  # the training links' paths only (as in run_cell)
        row = {"links": m, "label_twin_db": lab_db}
        for key, tab in (("itu", None), ("library", table)):
            r = new_calibration(ps_fit, names2, labels2, th2, t, txid2.reshape(-1)[tr[ok]], seed, tab)
            row[f"{key}_db"] = rmse(predict_db(ps2, r.model, n)[test], truth2[test])
            row[f"{key}_mre_eps"], row[f"{key}_mre_sigma"] = mre(r.eps_r, e2), mre(r.sigma, s2)
        rows.append(row)
    return rows


def oracle_sweep(geoms: list[str], sizes: list[int], noise_db: float, seed: int, out: Path) -> list[dict]:
    """How the bound falls with the number of links where labels are near-right (no mismatch): label twin, oracle
    posterior (realised and expected) and the twin's floor for every link count, one truth and link draw per
    geometry (the same draw as the grid's cells of that geometry with ``max(sizes)`` training links)."""
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for g in track(geoms, "oracle sweep"):
            p = prepare(g, "near", "none", Path(td), seed, max(sizes))
            rng = np.random.default_rng(seed + 1000)
            n = p["n"]
            y = p["truth_meas"] + rng.normal(0.0, noise_db, n)
            test = np.arange(n - N_TEST, n)
            lab = predict_db(p["ps"], PerObjectMaterials(p["e0"][None], p["s0"][None], p["thickness"]), n)
            for m in sizes:
                tr = np.arange(m)
                ok = np.isfinite(y[tr])
                rows.append({"geometry": g, "noise_db": noise_db, "links": m,
                             "label_twin_db": rmse(lab[test], p["truth_nom"][test]),
                             **oracle(p, tr[ok], y[tr][ok], noise_db, test)})
                print(f"{g:6} {m:5d} links: label {rows[-1]['label_twin_db']:.3f} dB, oracle "
                      f"{rows[-1]['oracle_db']:.3f} dB (expected {rows[-1]['oracle_expected_db']:.3f}), floor "
                      f"{rows[-1]['floor_db']:.3f} dB", flush=True)
    write_json(out, {"noise_db": noise_db, "seed": seed, "rows": rows})
    plot_sweep(rows, out.with_suffix(".png"))
    return rows


def plot_sweep(rows: list[dict], png: Path) -> None:
    """Held-out error [dB] against the number of training links per geometry: label twin, oracle posterior
    (realised and expected) and the twin's floor, with the 0.1 dB target."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    geoms = list(dict.fromkeys(r["geometry"] for r in rows))
    fig, axes = plt.subplots(1, len(geoms), figsize=(4.2 * len(geoms), 4), sharey=True, squeeze=False)
    for ax, g in zip(axes[0], geoms):
        rs = [r for r in rows if r["geometry"] == g]
        n = [r["links"] for r in rs]
        for key, lab, st in (("label_twin_db", "label twin", "k--"), ("oracle_db", "oracle (realised)", "o-"),
                             ("oracle_expected_db", "oracle (expected)", "s:"), ("floor_db", "floor", "v-.")):
            ax.plot(n, [max(r[key], 1e-3) for r in rs], st, label=lab)
        ax.axhline(0.1, color="r", lw=0.8, label="0.1 dB target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training links")
        ax.set_title(f"{g}, labels near-right, {rs[0]['noise_db']:g} dB noise")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("held-out RMS error vs truth [dB]")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def plot(doc: dict, png: Path = PNG) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cells = doc["cells"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, case in zip(axes, ("near", "wrong")):
        rows = sorted((c for c in cells if c["labels"] == case),
                      key=lambda c: (c["geometry"], c["mismatch"], c["noise_db"], c["links"]))
        x = np.arange(len(rows))
        for key, lab, mk in (("label_twin_db", "label twin", "o"), ("old_db", "unregularised", "o"),
                             ("new_db", "posterior", "s"), ("oracle_db", "oracle posterior", "_")):
            ax.plot(x, [r.get(key, np.nan) for r in rows], mk, label=lab, ms=4 if mk != "_" else 10)
        ax.set_yscale("log")
        ax.set_xticks(x, [f"{r['geometry']} {r['mismatch']} {r['noise_db']:g} dB {r['links']}" for r in rows],
                      rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("held-out RMS error vs truth [dB]")
        ax.set_title(f"labels {case}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


VERDICT_SHORT = {"improves": "better", "no_difference": "same", "worse": "worse", "not_checked": "-"}


def table(doc: dict) -> str:
    """The cells in 80 columns: held-out RMS error [dB] of the label twin, the fit to the data alone, the posterior
    and the oracle posterior; implausible values (data alone / posterior), wrong labels fixed, the verdict."""
    lines = [f"{'geom':6} {'lab':5} {'mism':4} {'nz':>3} {'n':>4} {'label':>6} {'alone':>6} {'post':>6} "
             f"{'oracle':>6} {'impl':>5} {'fix':>5} verdict"]
    for c in doc["cells"]:
        lines.append(f"{c['geometry']:6} {c['labels']:5} {c['mismatch'][:4]:4} {c['noise_db']:3g} {c['links']:4d} "
                     f"{c['label_twin_db']:6.3f} {c['old_db']:6.3f} {c['new_db']:6.3f} "
                     f"{c.get('oracle_db', math.nan):6.3f} {c['old_implausible']:>2}/{c['new_implausible']:<2} "
                     f"{fixed(c):>5} {VERDICT_SHORT.get(c['verdict'], c['verdict'])}")
    return "\n".join(lines)


def fixed(c: dict) -> str:
    """'corrected/detectable/wrong' labels of a cell ('corrected/wrong' for cells run before detectability was
    recorded)."""
    if "wrong_labels_detectable" not in c:
        return f"{c['wrong_labels_corrected']}/{c['wrong_labels']}"
    return f"{c['wrong_labels_corrected']}/{c['wrong_labels_detectable']}/{c['wrong_labels']}"


def markdown(doc: dict) -> str:
    """The cells and the transfer study as Markdown tables (benchmarks/results/noharm.md)."""
    lines = ["# Calibration that does no harm: results", "",
             "Held-out RMS error [dB] against the noise-free truth on 100 test links; `impl` = implausible values "
             "(fit to the data alone / posterior); `fixed` = wrong labels switched to the true class / wrong labels "
             "the training data can detect (half the chi^2 gain of fixing that label alone >= 5) / wrong labels; "
             "`oracle` = "
             "the posterior mean under the truth's own prior (true classes, lambda ~ N(1, 0.15^2)) and the true noise "
             "(Gauss-Newton on the twin's paths), the best any calibration of this twin can do with these data, and "
             "its expected error (linearised posterior predictive std); `floor` = the twin at the exact true materials "
             "(its paths were traced at the labels: no material calibration removes this error). Where labels are "
             "wrong the paths were traced with the wrong classes (e.g. transmission through a 'wooden' metal "
             "cabinet): the oracle, held to the true classes' prior, cannot absorb that, a calibration partly can, so "
             "there the oracle is no bound.", "",
             "| geometry | labels | mismatch | noise dB | links | label twin | data alone | posterior | oracle | "
             "oracle expected | floor | impl | fixed | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    key = {"labels": {"wrong": 0, "near": 1}, "mismatch": {"none": 0, "jitter": 1, "diffuse": 2, "blockage": 3}}
    for c in sorted(doc["cells"], key=lambda c: (c["geometry"], key["labels"][c["labels"]],
                                                   key["mismatch"][c["mismatch"]], c["noise_db"], c["links"])):
        reach = (f" ({c['label_twin_reached_db']:.3f} / {c['old_reached_db']:.3f} / {c['new_reached_db']:.3f} on "
                 f"{100 - c['test_links_unreached']} reached links)") if c.get("test_links_unreached") else ""
        lines.append(f"| {c['geometry']} | {c['labels']} | {c['mismatch']} | {c['noise_db']:g} | {c['links']} | "
                     f"{c['label_twin_db']:.3f} | {c['old_db']:.3f} | {c['new_db']:.3f}{reach} | "
                     f"{c.get('oracle_db', math.nan):.3f} | {c.get('oracle_expected_db', math.nan):.3f} | "
                     f"{c.get('floor_db', math.nan):.3f} | "
                     f"{c['old_implausible']}/{c['new_implausible']} | {fixed(c)} | {c['verdict']} |")
    if doc.get("transfer"):
        lines += ["", "Transfer (room, 200 links -> material library -> office; noise 1 dB):", "",
                  "| office links | label twin | posterior, ITU priors | posterior, library priors |",
                  "|---|---|---|---|"]
        lines += [f"| {r['links']} | {r['label_twin_db']:.3f} | {r['itu_db']:.3f} | {r['library_db']:.3f} |"
                  for r in doc["transfer"]]
    if doc.get("summary"):
        lines += ["", "Summary: " + json.dumps(doc["summary"])]
    return "\n".join(lines) + "\n"


# The grid of this session (issue 17), in the order it runs: the street canyon first, then the issue's target cells
# (60 links, 1 dB) of every geometry, the other noise levels, model mismatch, link counts, noise-free cells (slow:
# many label switches, one pass each) last; then the link-count sweep of the near-right, 1 dB cells (60 / 200 /
# 1000 links; the 1000-link cells run after the transfer study).
PRESET_ISSUE17 = (
    [("street", lc, "none", 1.0, 60) for lc in ("wrong", "near")] + [("street", "near", "none", 1.0, 200)]
    + [(g, lc, "none", 1.0, 60) for g in ("office", "room") for lc in ("wrong", "near")]
    + [(g, lc, "none", 2.0, 60) for g in ("office", "room") for lc in ("wrong", "near")]
    + [("office", lc, mm, 1.0, 60) for mm in ("jitter", "diffuse") for lc in ("wrong", "near")]
    + [("room", lc, "diffuse", 1.0, 60) for lc in ("wrong", "near")]
    + [("office", lc, "none", 1.0, m) for lc in ("wrong", "near") for m in (24, 200)]
    + [("room", lc, "none", 2.0, 24) for lc in ("wrong", "near")] + [("room", "near", "none", 1.0, 200)]
    + [("office", lc, "none", 0.0, 60) for lc in ("wrong", "near")]
    + [("room", lc, "none", 0.0, m) for lc in ("wrong", "near") for m in (24, 60)]
    + [(g, lc, "blockage", 1.0, 60) for g in ("room", "office", "street") for lc in ("wrong", "near")]
    + [(g, "near", "none", 1.0, 1000) for g in ("street", "room", "office")])
LATE_LINKS = 1000  # cells with at least this many links run after the transfer study


def grid(geoms: list[str], noises: list[float], sizes: list[int], mismatches: list[str], cases: list[str]
         ) -> list[tuple]:
    """The full product of the options as cells (geometry, labels, mismatch, noise dB, links)."""
    return [(g, lc, mm, nz, m) for g in geoms for lc in cases for mm in mismatches for nz in noises for m in sizes]


def main(cells: list[tuple], seed: int, transfer_sizes: list[int], out: Path = OUT, fresh: bool = False,
         report_only: bool = False) -> dict:
    """Run the missing ``cells`` (resumable: cells already in ``out`` are skipped; ``fresh`` starts a new file), the
    transfer study, then the summary, ``noharm.md`` and ``noharm.png`` next to ``out``. Cells of one (geometry,
    labels, mismatch) share one draw of truth and links, with as many training links as the largest cell."""
    doc = json.loads(out.read_text()) if out.is_file() and not fresh else {"cells": [], "transfer": None}
    done = {(c["geometry"], c["labels"], c["mismatch"], c["noise_db"], c["links"]) for c in doc["cells"]}
    todo = [] if report_only else [c for c in dict.fromkeys(cells) if c not in done]
    n_train = {}
    for g, lc, mm, _, m in cells:
        n_train[(g, lc, mm)] = max(n_train.get((g, lc, mm), 0), m)
    early = [c for c in todo if c[4] < LATE_LINKS]
    late = [c for c in todo if c[4] >= LATE_LINKS]
    prepared: dict[tuple, dict] = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)

        def run(batch: list[tuple]) -> None:
            for g, lc, mm, nz, m in track(batch, "noharm cells"):
                key = (g, lc, mm)
                if key not in prepared:
                    prepared.clear()  # one case's traces at a time (memory; the traces themselves are cached)
                    prepared[key] = prepare(g, lc, mm, tmp, seed, n_train[key])
                cell = {"geometry": g, "labels": lc, "mismatch": mm, "noise_db": nz, "links": m,
                        **run_cell(prepared[key], nz, m, seed)}
                doc["cells"].append(cell)
                write_json(out, doc)
                print(table({"cells": [cell]}).splitlines()[1], flush=True)

        run(early)
        if transfer_sizes and not doc.get("transfer") and not report_only:
            doc["transfer"] = transfer(tmp, seed, transfer_sizes)
            write_json(out, doc)
        run(late)
    cells = doc["cells"]
    if cells:
        def tol(c):  # the held-out estimate's own noise: a 100-link RMSE of noise-like errors, ~ rmse / sqrt(2 n)
            return 2.0 * c["label_twin_db"] / math.sqrt(2 * N_TEST)

        target = [c for c in cells if c["labels"] == "near" and c["noise_db"] <= 1 and c["links"] >= 60]
        doc["summary"] = {
            "cells": len(cells),
            "new_not_worse_than_labels": int(sum(c["new_db"] <= c["label_twin_db"] + tol(c) for c in cells)),
            "old_not_worse_than_labels": int(sum(c["old_db"] <= c["label_twin_db"] + tol(c) for c in cells)),
            "near_noise_le1_links_ge60_new_le_0.1db": [int(sum(c["new_db"] <= 0.1 for c in target)), len(target)],
            "near_noise_le1_links_ge60_oracle_le_0.1db": [
                int(sum(c.get("oracle_db", math.inf) <= 0.1 for c in target)), len(target)],
            "wrong_labels_gain_ge_5x": [
                int(sum(c["label_twin_db"] >= 5 * c["new_db"] for c in cells if c["labels"] == "wrong")),
                int(sum(1 for c in cells if c["labels"] == "wrong"))],
            "wrong_labels_gain_ge_5x_on_reached_links": [
                int(sum(c["label_twin_reached_db"] >= 5 * c["new_reached_db"] for c in cells
                        if c["labels"] == "wrong")),
                int(sum(1 for c in cells if c["labels"] == "wrong"))],
            "wrong_labels_corrected": [int(sum(c["wrong_labels_corrected"] for c in cells if c["labels"] == "wrong")),
                                       int(sum(c["wrong_labels"] for c in cells if c["labels"] == "wrong"))],
            "detectable_wrong_labels_corrected": [
                int(sum(c.get("wrong_labels_detectable_corrected", 0) for c in cells)),
                int(sum(c.get("wrong_labels_detectable", 0) for c in cells))],
            "right_labels_switched": int(sum(c.get("right_labels_switched", 0) for c in cells)),
            "implausible_new": int(sum(c["new_implausible"] for c in cells)),
            "implausible_old": int(sum(c["old_implausible"] for c in cells)),
        }
        write_json(out, doc)
        plot(doc, out.with_suffix(".png"))
        out.with_suffix(".md").write_text(markdown(doc))
    return doc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=["issue17"], default=None,
                    help="run the cells of PRESET_ISSUE17 instead of the product of the options below")
    ap.add_argument("--geometries", default="room,office,street")
    ap.add_argument("--noise", default="0,0.5,1,2")
    ap.add_argument("--links", default="24,60,200")
    ap.add_argument("--mismatch", default="none,diffuse,jitter")
    ap.add_argument("--labels", default="near,wrong")
    ap.add_argument("--transfer", default="6,12,24,60")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT, help="results JSON (.md and .png are written next to it)")
    ap.add_argument("--fresh", action="store_true", help="ignore the cells already in --out")
    ap.add_argument("--report-only", action="store_true", help="no new cells: summary, table and plot of --out")
    ap.add_argument("--check-switches", action="store_true",
                    help="posterior calibrations with rftwin calibrate --check-switches (write to another --out)")
    ap.add_argument("--switch-probability", type=float, default=0.95,
                    help="the posterior calibrations' --switch-probability (write to another --out)")
    ap.add_argument("--likelihood", default="gaussian", choices=["gaussian", "student", "auto"],
                    help="the posterior calibrations' --likelihood (write to another --out)")
    ap.add_argument("--labels-only", default=None, choices=["near", "wrong"],
                    help="with --preset: only the cells of these labels")
    ap.add_argument("--wrong-first", action="store_true",
                    help="run the wrong-label cells first, then the near-right ones, the noise-free cells last "
                         "(each group in the preset's order)")
    ap.add_argument("--quick", action="store_true", help="room only, noise 1 dB, 24 and 60 links, no mismatch")
    ap.add_argument("--oracle-sweep", default=None, metavar="LINKS",
                    help="only the oracle bound over these link counts (e.g. 60,200,1000) in the near-right, "
                         "noise --noise (first value) cells of --geometries; writes noharm_sweep.json next to --out")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.oracle_sweep:
        oracle_sweep(a.geometries.split(","), [int(x) for x in a.oracle_sweep.split(",")],
                     float(a.noise.split(",")[0]), a.seed, a.out.with_name("noharm_sweep.json"))
        raise SystemExit(0)
    if a.quick:
        a.geometries, a.noise, a.links, a.mismatch, a.transfer = "room", "1", "24,60", "none", "12,24"
    todo = list(PRESET_ISSUE17) if a.preset == "issue17" else grid(
        a.geometries.split(","), [float(x) for x in a.noise.split(",")], [int(x) for x in a.links.split(",")],
        a.mismatch.split(","), a.labels.split(","))
    CHECK_SWITCHES, SWITCH_PROBABILITY, LIKELIHOOD = a.check_switches, a.switch_probability, a.likelihood
    if a.labels_only:
        todo = [c for c in todo if c[1] == a.labels_only]
    if a.wrong_first:
        todo.sort(key=lambda c: (c[3] == 0.0, c[1] != "wrong"))
    d = main(todo, a.seed, [int(x) for x in a.transfer.split(",") if x], a.out, a.fresh, a.report_only)
    print(table(d))
    print(json.dumps(d.get("summary", {}), indent=1))
    if d.get("transfer"):
        for r in d["transfer"]:
            print(f"transfer {r['links']:3d} links: labels {r['label_twin_db']:.3f} dB, ITU prior "
                  f"{r['itu_db']:.3f} dB, library prior {r['library_db']:.3f} dB")
