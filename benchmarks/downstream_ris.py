"""RIS in the twin (issue 15, part 2): validation of the reradiation model, then RIS placement on label /
calibrated / truth twins (seed 003, WEDT section on RIS-assisted coverage).

Validation
- anomalous mirror: a 16 x 16, 32 x 32 cm RIS at 6.6 GHz with a linear phase gradient, Tx and Rx 100 m away
  (far field: 2 D^2 / lambda = 9 m); the peak direction of the model (near-field sum over elements, scanned in
  0.01 deg steps) against the generalised Snell law, its peak gain and main-lobe pattern against the closed-form
  far-field array factor (Tang et al. 2021); the same with 2-bit phases (gain lost to quantisation).
- metal plate: a square perfectly conducting plate (Sionna RT, ITU-like metal eps_r = 1, sigma = 1e7 S/m, one
  specular path, image method) against a zero-phase RIS of the same size (2 cm elements) and the image-theory
  gain (lambda / 4 pi (d1 + d2))^2, Tx and Rx 1 m from the plate centre at 30 deg incidence, plate sizes from
  8 cm to 2.56 m: the model meets the tracer once the plate covers the first Fresnel zones, and shows the
  Fresnel-zone oscillation and the fall-off the image method cannot show below that.

Ranking (WEDT set-up: 16 x 16 elements, 2-bit, 32 x 32 cm, 6.6 GHz, 8 candidate positions 0.2 m apart, beam
focusing on the centre of the target area)
- scene: a 10 x 8 x 3 m floor (rftwin.scene.indoor layout): corridor at 3 <= y <= 5, two rooms on each side, 1 m
  doors; Tx in the corridor at (3, 3.5, 2); target area (1.4 x 1.4 m, 49 points at 1.2 m) in the south-east room,
  shadowed by the corridor wall; 8 vertical RIS candidates on the corridor's north wall (y = 4.99, z = 1.5 m,
  x = 7.8 .. 9.2 m, facing -y), each seeing the area through the door.
- truth twin: Sionna RT with true materials (ITU value of the true class x lambda, lambda ~ N(1, 0.1^2) clipped to
  [0.8, 1.2], seeded); label twin: the ITU values of the labels, two of which are wrong; calibrated twin:
  ``calibrate_scene`` from the wrong labels, fitted to Sionna-simulated path gains of 48 training links (Tx in
  the corridor and in the north-east room, random receivers) with 1 dB Gaussian noise (bounded to the label
  ranges, 12 starts, one global sweep, one re-trace). Two scenarios (:data:`SCENARIOS`): plasterboard corridor
  walls labelled concrete (the label twin sees the area more shadowed than it is: it overestimates the RIS gain,
  as WEDT's ITU twin did), and concrete corridor walls labelled brick (it underestimates it).
- per twin and candidate: mean gain over the area of 10 log10((P_twin + P_RIS) / P_twin) (P_twin: Sionna's path
  coefficients at the twin's materials, incoherent sum; P_RIS: the RIS path focused at the area centre), the
  chosen candidate and its gain in the truth.

Run: .venv/bin/python benchmarks/downstream_ris.py [--quick] [--part validate|ranking|all]
(writes benchmarks/results/downstream_ris.json, downstream_ris_mirror.png, downstream_ris_plate.png,
downstream_ris_ranking.png)
"""
from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.io import write_json
from rftwin.ris.closed_forms import plate_specular_gain, quantisation_loss_db
from rftwin.ris.geometry import RisPose
from rftwin.ris.inputs import box_points
from rftwin.ris.physics import (
    C0,
    RisSpec,
    anomalous_angle_deg,
    element_positions,
    far_field_gain,
    gradient_phases,
    quantise_phases,
    reflection,
    ris_channel,
    wavenumber,
)
from rftwin.ris.planning import rank
from rftwin.ris.workflow import candidate_powers
from rftwin.runtime import configure_torch_threads
from rftwin.trace import SolverSettings, trace

RESULTS = Path(__file__).parent / "results"
F = 6.6e9
SPEC = RisSpec(16, 16, 0.32, 0.32, bits=2)
TX = np.array([3.0, 3.5, 2.0])
TARGET = "5.3,6.7,0.4,1.8,1.2"
CAND_X0, CAND_STEP, N_CAND = 7.8, 0.2, 8
RIS_Y, RIS_Z = 4.99, 1.5
# scenario -> (true classes that differ from the layout's defaults, wrong labels of the twin)
SCENARIOS = {
    "plasterboard_labelled_concrete": ({}, {"corridor_wall_south": "concrete", "corridor_wall_north": "concrete"}),
    "concrete_labelled_brick": ({"corridor_wall_south": "concrete", "corridor_wall_north": "concrete"},
                                {"corridor_wall_south": "brick", "corridor_wall_north": "brick"}),
}
TRAIN_TX = np.array([[3.0, 3.5, 2.0], [8.5, 6.5, 2.2]])


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _db(x) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 10 * np.log10(np.asarray(x, dtype=np.float64))


def _frame():
    z = torch.zeros(3, dtype=torch.float64)
    n, u, v = (torch.tensor(a, dtype=torch.float64) for a in ((1.0, 0, 0), (0, 1.0, 0), (0, 0, 1.0)))
    return z, n, u, v


# ------------------------------------------------------------------------------------------ validation
def mirror_validation(quick: bool) -> dict:
    """Anomalous reflection of a linear phase gradient: model vs generalised Snell law and the closed form."""
    c, n, u, v = _frame()
    el = element_positions(c, u, v, SPEC)
    k, R = wavenumber(F), 100.0
    cases = [(30.0, 30.0), (30.0, 0.0), (0.0, 30.0), (45.0, -20.0), (20.0, 60.0)]
    if quick:
        cases = cases[:3]
    th = torch.arange(-89.0, 89.0 + 1e-9, 0.01, dtype=torch.float64)
    rx = torch.stack([R * torch.cos(torch.deg2rad(th)), R * torch.sin(torch.deg2rad(th)), 0 * th], -1)
    rows, curves = [], {}
    for ti, tr in cases:
        g = k * (math.sin(math.radians(ti)) - math.sin(math.radians(tr)))
        tx = torch.tensor([[R * math.cos(math.radians(ti)), -R * math.sin(math.radians(ti)), 0.0]],
                          dtype=torch.float64)
        snell = anomalous_angle_deg(ti, g, F)
        cf = far_field_gain(SPEC, ti, th, R, R, g, F)
        peak_cf = (SPEC.num_elements * SPEC.element_area_m2) ** 2 * (math.cos(math.radians(ti))
                   * math.cos(math.radians(snell))) ** SPEC.q / (16 * math.pi**2 * R**4)
        hpbw = math.degrees(0.886 * (C0 / F) / (SPEC.width_m * math.cos(math.radians(snell))))
        row = {"theta_i_deg": ti, "theta_r_target_deg": tr, "gradient_rad_per_m": g, "snell_deg": snell,
               "hpbw_deg": hpbw}
        for label, bits in (("continuous", None), ("2bit", 2)):
            gam = reflection(quantise_phases(gradient_phases(SPEC, g), bits))
            G = ris_channel(tx, rx, el, n, gam, SPEC, F).abs() ** 2
            i = int(G.argmax())
            j = int(cf.argmax())
            lobe = (th - snell).abs() <= hpbw / 2
            row[label] = {"peak_deg": float(th[i]), "peak_direction_error_deg": float(th[i]) - snell,
                          "peak_minus_closed_form_peak_deg": float(th[i] - th[j]),
                          "peak_gain_db": float(_db(G[i])),
                          "peak_gain_error_db": float(_db(G[i]) - _db(peak_cf)),
                          "main_lobe_max_abs_error_db": float((_db(G[lobe]) - _db(cf[lobe])).__abs__().max())}
            if (ti, tr) == (30.0, 0.0):
                curves[label] = _db(G.numpy())
        if (ti, tr) == (30.0, 0.0):
            curves["closed form"] = _db(cf.numpy())
        rows.append(row)
    _mirror_png(th.numpy(), curves, RESULTS / "downstream_ris_mirror.png")
    cont = [r["continuous"] for r in rows]
    q = [r["2bit"] for r in rows]
    return {"distance_m": R, "cases": rows,
            "max_abs_peak_direction_error_deg": max(abs(r["peak_direction_error_deg"]) for r in cont),
            "max_abs_peak_minus_closed_form_peak_deg": max(abs(r["peak_minus_closed_form_peak_deg"]) for r in cont),
            "max_peak_direction_error_over_hpbw": max(abs(r["continuous"]["peak_direction_error_deg"]) / r["hpbw_deg"]
                                                      for r in rows),
            "max_abs_peak_gain_error_db": max(abs(r["peak_gain_error_db"]) for r in cont),
            "max_abs_main_lobe_error_db": max(r["main_lobe_max_abs_error_db"] for r in cont),
            "2bit_max_abs_peak_direction_error_deg": max(abs(r["peak_direction_error_deg"]) for r in q),
            "2bit_mean_peak_gain_loss_db": float(np.mean([-r["peak_gain_error_db"] for r in q])),
            "2bit_expected_loss_db_uniform_errors": quantisation_loss_db(2)}


def _mirror_png(th, curves, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, y), ls in zip(curves.items(), ("-", "-", "--")):
        ax.plot(th, y, ls, label=name, lw=1.2)
    top = max(np.nanmax(y) for y in curves.values())
    ax.set_ylim(top - 50, top + 3)
    ax.set_xlim(-60, 60)
    ax.axvline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("observation angle theta_r [deg]")
    ax.set_ylabel("path gain Tx-RIS-Rx [dB]")
    ax.set_title("16x16 RIS, 6.6 GHz, theta_i = 30 deg, gradient for theta_r = 0 (100 m)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plate_validation(quick: bool, tmp: Path) -> dict:
    """Zero-phase RIS vs Sionna RT on a metal plate of the same size vs image theory."""
    from rftwin.scene.load import load  # noqa: PLC0415
    from rftwin.validate.scenes import Plate, write_scene  # noqa: PLC0415

    d, theta = 1.0, 30.0
    lam = C0 / F
    tx = np.array([[d * math.cos(math.radians(theta)), -d * math.sin(math.radians(theta)), 0.0]])
    rx = np.array([[d * math.cos(math.radians(theta)), d * math.sin(math.radians(theta)), 0.0]])
    image_db = float(20 * math.log10(lam / (4 * math.pi * 2 * d)))
    fresnel_r = math.sqrt(lam * d * d / (2 * d))
    counts = [4, 8, 12, 16, 24, 32, 64, 128] if quick else [4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128]
    st = SolverSettings(max_depth=1, samples_per_src=100_000, los=False, refraction=False)
    c, n, u, v = _frame()
    rows = []
    for m in counts:
        size = 0.02 * m
        xml = write_scene([Plate("plate", (0.0, 0.0, 0.0), (size, size), 1.0, 1e7, 0.01, tilt_deg=90.0)],
                          tmp / f"plate_{m}")
        ps = trace(load(xml, F), tx, rx, st, cache_dir=False, progress=False)
        pg = float((ps.a_ref.abs() ** 2).sum())
        spec = RisSpec(m, m, size, size, bits=None)
        h = ris_channel(torch.tensor(tx), torch.tensor(rx), element_positions(c, u, v, spec), n,
                        torch.ones(spec.num_elements, dtype=torch.complex128), spec, F)
        po = float(_db(plate_specular_gain(size, size, d, d, theta, F)))
        rows.append({"elements": m, "size_m": size, "half_size_over_fresnel_radius": size / 2 / fresnel_r,
                     "sionna_db": float(_db(pg)) if pg > 0 else None, "ris_db": float(_db(h.abs() ** 2).item()),
                     "fresnel_po_db": po, "image_db": image_db})
        r = rows[-1]
        r["ris_minus_sionna_db"] = None if r["sionna_db"] is None else r["ris_db"] - r["sionna_db"]
        r["ris_minus_fresnel_po_db"] = r["ris_db"] - po
        r["fresnel_po_minus_sionna_db"] = None if r["sionna_db"] is None else po - r["sionna_db"]
    _plate_png(rows, fresnel_r, RESULTS / "downstream_ris_plate.png")
    out = {"distance_m": d, "incidence_deg": theta, "first_fresnel_radius_m": fresnel_r, "plates": rows,
           "max_abs_ris_minus_fresnel_po_db_le_1.5_fresnel_radii": max(
               abs(r["ris_minus_fresnel_po_db"]) for r in rows if r["half_size_over_fresnel_radius"] <= 1.6),
           "max_abs_ris_minus_fresnel_po_db": max(abs(r["ris_minus_fresnel_po_db"]) for r in rows),
           "largest_plate_ris_minus_sionna_db": rows[-1]["ris_minus_sionna_db"]}
    for kf in (1, 3, 6):
        big = [r for r in rows if r["half_size_over_fresnel_radius"] >= kf and r["ris_minus_sionna_db"] is not None]
        if big:
            out[f"max_abs_ris_minus_sionna_db_ge_{kf}_fresnel_radii"] = max(abs(r["ris_minus_sionna_db"]) for r in big)
            out[f"mean_ris_minus_sionna_db_ge_{kf}_fresnel_radii"] = float(np.mean([r["ris_minus_sionna_db"]
                                                                                    for r in big]))
            out[f"max_abs_fresnel_po_minus_sionna_db_ge_{kf}_fresnel_radii"] = max(
                abs(r["fresnel_po_minus_sionna_db"]) for r in big)
    return out


def _plate_png(rows, fresnel_r, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    s = np.array([r["size_m"] for r in rows])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.semilogx(s, [r["ris_db"] for r in rows], "o-", label="zero-phase RIS model (2 cm elements)")
    ax.semilogx(s, [r["fresnel_po_db"] for r in rows], "-", color="C2", lw=0.9,
                label="physical optics, Fresnel integrals (closed form)")
    ax.semilogx(s, [np.nan if r["sionna_db"] is None else r["sionna_db"] for r in rows], "s--",
                label="Sionna RT, metal plate")
    ax.axhline(rows[0]["image_db"], color="grey", lw=0.8, label="image theory")
    ax.axvline(2 * fresnel_r, color="k", ls=":", lw=0.8, label="first Fresnel zone (diameter)")
    ax.axvline(0.32, color="C3", ls=":", lw=0.8, label="WEDT RIS size (0.32 m)")
    ax.set_xlabel("plate side [m]")
    ax.set_ylabel("path gain [dB]")
    ax.set_title("specular gain of a square plate, 6.6 GHz, 1 m + 1 m at 30 deg", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------- ranking
def study_layout(true_classes: dict | None = None):
    from rftwin.scene.indoor import IndoorLayout  # noqa: PLC0415

    mats = dict(IndoorLayout().materials)
    mats.update(true_classes or {})
    return IndoorLayout(size_x=10.0, size_y=8.0, corridor_y=(3.0, 5.0), south_partitions_x=(5.0,),
                        north_partitions_x=(5.0,), furniture=(), materials=mats)


def _link_gain(twin, tx, rx, st) -> np.ndarray:
    """Sionna's path gain (linear, incoherent sum of its path coefficients) [L] of the links tx[i] -> rx[i]."""
    ps = trace(twin, tx, rx, st, cache_dir=False, progress=False)
    return np.bincount(ps.link.numpy(), (ps.a_ref.abs() ** 2).mean(dim=(1, 2)).numpy(), minlength=len(tx))


def ranking_study(quick: bool, seed: int, scenario: str) -> dict:
    from rftwin.calibrate import CalibrationConfig, Targets  # noqa: PLC0415
    from rftwin.calibrate.workflow import calibrate_scene  # noqa: PLC0415
    from rftwin.materials import prior_from_labels  # noqa: PLC0415
    from rftwin.materials.itu import itu_eps_sigma  # noqa: PLC0415
    from rftwin.scene.indoor import indoor  # noqa: PLC0415
    from rftwin.scene.sampling import random_positions  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    st = SolverSettings(max_depth=3, samples_per_src=100_000, seed=seed)
    true_classes, wrong_labels = SCENARIOS[scenario]
    layout = study_layout(true_classes)
    base = indoor(F, layout)
    names = base.names
    true_labels = [o.label for o in base.objects]
    itu = np.array([itu_eps_sigma(lab, F) for lab in true_labels])
    lam = np.clip(rng.normal(1.0, 0.1, (len(itu), 2)), 0.8, 1.2)
    eps_t, sig_t = np.maximum(itu[:, 0] * lam[:, 0], 1.0), itu[:, 1] * lam[:, 1]
    wrong = [wrong_labels.get(nm, lab) for nm, lab in zip(names, true_labels)]
    itu_w = np.array([itu_eps_sigma(lab, F) for lab in wrong])
    pts = box_points(TARGET, 0.2)
    ids = [f"p{i + 1}" for i in range(N_CAND)]
    poses = [RisPose.from_yaw((CAND_X0 + CAND_STEP * i, RIS_Y, RIS_Z), -90.0) for i in range(N_CAND)]
    t0 = time.perf_counter()
    powers = candidate_powers(base, TX, poses, pts, SPEC, F, "center")  # geometry only: same for every twin
    ris_seconds = time.perf_counter() - t0
    tx_pts = np.repeat(TX[None], len(pts), 0)
    out: dict = {"frequency_hz": F, "ris": {"rows": SPEC.num_rows, "cols": SPEC.num_cols, "width_m": SPEC.width_m,
                                            "height_m": SPEC.height_m, "bits": SPEC.bits},
                 "tx_m": TX.tolist(), "target_box": TARGET, "target_points": len(pts),
                 "candidates": [list(p.center) for p in poses], "objects": names, "true_labels": true_labels,
                 "wrong_labels": wrong, "eps_true": eps_t.tolist(), "sigma_true": sig_t.tolist(),
                 "ris_seconds": ris_seconds, "visible_share": powers.visible_share.tolist(),
                 "ris_path_gain_mean_db": _db(powers.power[:, 0].mean(-1).numpy()).tolist(),
                 "solver": {"max_depth": st.max_depth, "samples_per_src": st.samples_per_src}}
    twins = {}
    truth = indoor(F, layout)
    truth.set_materials(eps_t, sig_t)
    ref_truth = _link_gain(truth, tx_pts, pts, st)
    twins["truth"] = ref_truth
    label = indoor(F, layout)
    label.set_materials(itu_w[:, 0], itu_w[:, 1])
    twins["label"] = _link_gain(label, tx_pts, pts, st)
    # calibrated twin: noisy Sionna path gains of training links, from the wrong labels
    n_train = 24 if quick else 48
    tr_tx = TRAIN_TX[np.arange(n_train) % len(TRAIN_TX)]
    tr_rx = random_positions(base, n_train, rng, (0.8, 2.0))
    pg = _link_gain(truth, tr_tx, tr_rx, st)
    ok = pg > 0
    noisy_db = _db(np.where(ok, pg, 1.0)) + rng.normal(0.0, 1.0, n_train)
    cal = indoor(F, layout)
    cal.set_materials(itu_w[:, 0], itu_w[:, 1])
    targets = Targets.build(np.arange(n_train)[ok], np.full(int(ok.sum()), F), noisy_db[ok])
    t0 = time.perf_counter()
    res, _ = calibrate_scene(cal, tr_tx, tr_rx, targets, prior_from_labels(wrong, F), CalibrationConfig(), st,
                             num_starts=4 if quick else 12, retrace=1, seed=seed, truth=(eps_t, sig_t),
                             progress=True, cache_dir=False, global_sweeps=1, bounded=True)
    out["calibration_seconds"] = time.perf_counter() - t0
    mre = res.mre(eps_t, sig_t)
    out["calibration"] = {"n_train": int(ok.sum()), "noise_db": 1.0, "eps_r": res.eps_r.tolist(),
                          "sigma": res.sigma.tolist(), "mre_eps": mre[0], "mre_sigma": mre[1],
                          "mre_eps_label": float(np.mean(np.abs(itu_w[:, 0] - eps_t) / eps_t)),
                          "mre_sigma_label": float(np.mean(np.abs(itu_w[:, 1] - sig_t) / sig_t))}
    cal.set_materials(res.eps_r, res.sigma)
    twins["calibrated"] = _link_gain(cal, tx_pts, pts, st)
    rk_truth = rank(powers, ref_truth)
    res_tw = {}
    for name in ("truth", "label", "calibrated"):
        rk = rank(powers, twins[name])
        best = int(rk.order[0])
        res_tw[name] = {"mean_gain_db": rk.mean_gain_db.tolist(), "average_over_candidates_db":
                        float(np.mean(rk.mean_gain_db)), "chosen": ids[best],
                        "chosen_gain_in_truth_db": float(rk_truth.mean_gain_db[best]),
                        "loss_vs_truth_best_db": float(rk_truth.mean_gain_db[rk_truth.order[0]]
                                                       - rk_truth.mean_gain_db[best]),
                        "rank_correlation_with_truth": float(np.corrcoef(np.argsort(np.argsort(rk.mean_gain_db)),
                                                             np.argsort(np.argsort(rk_truth.mean_gain_db)))[0, 1]),
                        "mean_abs_gain_error_db": float(np.mean(np.abs(rk.mean_gain_db - rk_truth.mean_gain_db))),
                        "reference_mean_path_gain_db": float(np.nanmean(_db(twins[name]))),
                        "reference_error_db_mean": float(np.nanmean(_db(twins[name]) - _db(ref_truth)))}
    out["twins"] = res_tw
    out["candidate_ids"] = ids
    out["peak_rss_gib"] = _peak_gib()
    return out


def _ranking_png(studies: dict, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(studies), figsize=(6 * len(studies), 4), squeeze=False)
    for ax, (scen, st) in zip(axes[0], studies.items()):
        ids = st["candidate_ids"]
        x = np.arange(len(ids)) + 1
        for (name, r), col in zip(st["twins"].items(), ("k", "C3", "C0")):
            ax.plot(x, r["mean_gain_db"], "o-", color=col, label=f"{name} twin (chooses {r['chosen']})")
            ax.axhline(r["average_over_candidates_db"], color=col, ls="--", lw=0.8)
        ax.set_xticks(x, ids)
        ax.set_xlabel("RIS candidate position (0.2 m apart)")
        ax.set_ylabel("mean gain over the target area [dB]")
        ax.set_title(f"{scen.replace('_', ' ')}\nRIS 16x16, 2-bit, 32x32 cm, 6.6 GHz, focus on area centre",
                     fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", default="all", choices=["validate", "ranking", "all"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    configure_torch_threads()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "downstream_ris.json"
    import json  # noqa: PLC0415

    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc["quick"] = args.quick
    if args.part in ("validate", "all"):
        t0 = time.perf_counter()
        doc["mirror"] = mirror_validation(args.quick)
        with tempfile.TemporaryDirectory() as tmp:
            doc["plate"] = plate_validation(args.quick, Path(tmp))
        doc["validation_seconds"] = time.perf_counter() - t0
        write_json(path, doc)
    if args.part in ("ranking", "all"):
        doc["ranking"] = {}
        for scen in SCENARIOS:
            print(f"ranking study, scenario {scen}", flush=True)
            doc["ranking"][scen] = ranking_study(args.quick, args.seed, scen)
            write_json(path, doc)
        _ranking_png(doc["ranking"], RESULTS / "downstream_ris_ranking.png")
    return doc


if __name__ == "__main__":
    main()
