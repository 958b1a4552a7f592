"""City scene end to end on Sionna's ``munich`` (2 367 objects): calibrate with label groups, predict, radio map.

1. One rooftop base station (:mod:`munich_links`), 300 street-level calibration links + 100 held-out links.
   "Measurements": Sionna's own path coefficients traced at true materials = ITU label values x a per-class factor
   (marble, brick, wood, concrete; metal unchanged), with diffraction, depth 2, 1e5 rays.
2. ``rftwin calibrate munich MEAS --groups label --diffraction`` (5 classes instead of 2 367 objects): fitted to
   the data alone (``--prior none``, as first measured), and calibration as inference under the label priors
   with a Gaussian likelihood (step ``calibrate_posterior``; ``--likelihoods gaussian,student,auto`` also with the
   Student-t likelihood and with the command's default, auto: ``calibrate_posterior_student`` / ``_auto``).
3. ``rftwin predict CALIBRATED LINKS`` on ``--links`` links (fresh trace; ``--src`` runs it with another
   source tree, e.g. an older checkout, stored under ``predict_N{--label}``), and on the held-out links
   (error against the truth; the ITU, data-alone and posterior twins).
4. ``rftwin radiomap CALIBRATED --diffraction`` around the base station.
Every step runs in a child process whose peak RSS is polled from here (psutil). Results go into
``benchmarks/results/scale.json`` under "munich".

    .venv/bin/python benchmarks/bench_munich.py [--links 2000] [--calib 300] [--work DIR]
    .venv/bin/python benchmarks/bench_munich.py --work DIR --links 10000 --skip heldout,radiomap
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_scale import run_child  # noqa: E402

TRUTH_FACTORS = {"marble": (1.15, 0.8), "brick": (0.9, 1.3), "wood": (1.1, 1.2), "concrete": (0.85, 1.25)}
SOLVER = ["--max-depth", "2", "--samples-per-src", "100000", "--diffraction"]

SIMULATE = r"""
import json, sys, numpy as np, pandas as pd, torch
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace
from rftwin.physics.channel import link_sum, path_power
from rftwin.materials import prior_from_labels
links, out, factors = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
twin = load("munich")
labels = [o.label for o in twin.objects]
p = prior_from_labels(labels, 3.5e9)
fe = np.array([factors.get(l, [1, 1])[0] for l in labels]); fs = np.array([factors.get(l, [1, 1])[1] for l in labels])
eps_t, sig_t = np.where(p.eps_r > 1.0001, 1 + (p.eps_r - 1) * fe, p.eps_r), p.sigma * fs
twin.set_materials(eps_t, sig_t)
df = pd.read_csv(links)
tx, rx = df[["tx_x", "tx_y", "tx_z"]].to_numpy(), df[["rx_x", "rx_y", "rx_z"]].to_numpy()
ps = trace(twin, tx, rx, SolverSettings(max_depth=2, samples_per_src=100000, seed=7, diffraction=True),
           progress=False)
g = link_sum(path_power(ps.a_ref[None]), ps.link, ps.num_links)[0].numpy()
df["path_gain_db"] = np.where(g > 0, 10 * np.log10(np.maximum(g, 1e-300)), np.nan)
df.to_csv(out, index=False)
truth = {l: [float(eps_t[i]), float(sig_t[i])] for i, l in enumerate(labels)}
print(json.dumps(dict(links=len(df), with_paths=int(np.isfinite(df["path_gain_db"]).sum()), truth=truth)))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", type=int, default=2_000)
    ap.add_argument("--calib", type=int, default=300)
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--out", default=str(HERE / "results" / "scale.json"))
    ap.add_argument("--skip", default="", help="steps to skip: posterior,heldout,predict,radiomap")
    ap.add_argument("--likelihoods", default="gaussian",
                    help="likelihoods of the posterior calibrations, comma-separated: gaussian, student, auto")
    ap.add_argument("--src", default=str(ROOT / "src"),
                    help="rftwin source tree for the big predict (e.g. an older checkout, for before/after)")
    ap.add_argument("--label", default="", help="suffix of the big predict's result name (e.g. _before)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="rftwin_munich_"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(HERE)]), RFTWIN_PROGRESS="0",
               RFTWIN_CACHE=str(work / "cache"))
    py, cli = sys.executable, str(ROOT / ".venv/bin/rftwin")
    res: dict = {"settings": "depth 2, 1e5 rays per source, diffraction on, 3.5 GHz", "work": str(work)}

    def step(name: str, cmd: list[str]) -> dict:
        r = run_child(cmd, env)
        res[name] = r
        print(f"{name:10s} {r['seconds']:7.1f} s  peak {r['peak_rss_bytes'] / 2**30:5.2f} GiB", flush=True)
        save()
        return r

    def save():
        out = Path(a.out)
        doc = json.loads(out.read_text()) if out.is_file() else {}
        doc["munich"] = {**doc.get("munich", {}), **res}  # runs with other --links / --skip add to it
        out.write_text(json.dumps(doc, indent=1) + "\n")

    n_all = a.calib + a.heldout
    if not (work / "meas_all.csv").is_file():
        import subprocess

        subprocess.run([py, str(HERE / "munich_links.py"), str(n_all), str(work / "links_all.csv"), "--seed", "1"],
                       env=env, check=True)
        r = run_child([py, "-c", SIMULATE, str(work / "links_all.csv"), str(work / "meas_all.csv"),
                       json.dumps(TRUTH_FACTORS)], env)
        res["simulate"] = r
        print(f"simulate   {r['seconds']:7.1f} s  peak {r['peak_rss_bytes'] / 2**30:5.2f} GiB", flush=True)
    meas = pd.read_csv(work / "meas_all.csv")
    ok = np.isfinite(meas["path_gain_db"].to_numpy())
    cal_rows = meas.iloc[: a.calib][ok[: a.calib]]
    held = meas.iloc[a.calib:][ok[a.calib:]]
    cal_rows.drop(columns=["tx_power_dbm"]).to_csv(work / "meas_cal.csv", index=False)
    held.drop(columns=["path_gain_db"]).to_csv(work / "links_held.csv", index=False)
    res["calibration_links"] = int(len(cal_rows))
    res["heldout_links"] = int(len(held))
    cal = work / "cal"
    if not (cal / "materials.json").is_file():
        step("calibrate", [cli, "calibrate", "munich", str(work / "meas_cal.csv"), "--out", str(cal), "--groups",
                           "label", "--retrace", "0", "--starts", "8", "--refine", "2", "--sweeps", "0",
                           "--max-iter", "60", "--bounded", "--prior-spread", "0.4",
                           "--prior", "none"] + SOLVER)  # as measured for docs/scale.md (fit to the data alone)
    res["calibrated_classes"] = group_values(cal)
    res["truth_factors"] = TRUTH_FACTORS
    twins = {"calibrated": cal, "itu": "munich"}
    for lik in a.likelihoods.split(",") if "posterior" not in a.skip else []:
        # the command's default: calibration as inference under the label priors (Gaussian or Student-t likelihood)
        name = "posterior" + ("" if lik == "gaussian" else f"_{lik}")
        post = work / f"cal_{name}"
        if not (post / "materials.json").is_file():
            step(f"calibrate_{name}", [cli, "calibrate", "munich", str(work / "meas_cal.csv"), "--out", str(post),
                                       "--groups", "label", "--retrace", "0", "--likelihood", lik] + SOLVER)
        inf = json.loads((post / "calibration.json").read_text())["inference"]
        res[name] = {k: inf[k] for k in ("noise", "prior_strength", "effective_parameters", "verdict",
                                         "label_switches")}
        res[name]["calibrated_classes"] = group_values(post)
        twins[name] = post
    # held-out links: prediction of the calibrated twins and of the ITU (label) twin against the truth
    if "heldout" not in a.skip:
        heldout(step, cli, work, twins, held, res, save)
    if "predict" not in a.skip:
        import shutil
        import subprocess

        big = work / f"links_{a.links}.csv"
        if not big.is_file():
            subprocess.run([py, str(HERE / "munich_links.py"), str(a.links), str(big), "--seed", "2", "--radius",
                            "250"], env=env, check=True)
        cache = work / f"cache_predict{a.label}_{a.links}"  # a fresh trace every time
        shutil.rmtree(cache, ignore_errors=True)
        env_big = dict(env, RFTWIN_CACHE=str(cache), PYTHONPATH=os.pathsep.join([a.src, str(HERE)]))
        r = run_child([cli, "predict", str(cal), str(big), "--out", str(work / f"pred_{a.links}.csv")] + SOLVER,
                      env_big)
        res[f"predict_{a.links}{a.label}"] = dict(r, src=a.src)
        print(f"predict_{a.links}{a.label} {r['seconds']:7.1f} s  peak {r['peak_rss_bytes'] / 2**30:5.2f} GiB",
              flush=True)
        pb = pd.read_csv(work / f"pred_{a.links}.csv")
        res[f"predict_{a.links}_links_with_paths"] = float(pb["path_gain_db"].notna().mean())
        res[f"predict_{a.links}_paths_per_link"] = float(pb["num_paths"].mean())
        shutil.rmtree(cache, ignore_errors=True)
        save()
    if "radiomap" not in a.skip:
        from munich_links import rooftop_bs

        from rftwin.scene import load

        bs = rooftop_bs(load("munich"))
        step("radiomap", [cli, "radiomap", str(cal), "--tx", f"{bs[0]} {bs[1]} {bs[2]}", "--out",
                          str(work / "radiomap"), "--cell", "4", "--xlim", str(bs[0] - 250), str(bs[0] + 250),
                          "--ylim", str(bs[1] - 250), str(bs[1] + 250), "--max-depth", "2", "--samples-per-tx",
                          "1000000", "--diffraction"])
    save()


def group_values(cal: Path) -> dict:
    """Per material group of a calibration folder: its object count and (eps_r, sigma)."""
    doc = json.loads((cal / "materials.json").read_text())["objects"]
    groups = json.loads((cal / "calibration.json").read_text()).get("groups", {})
    return {g: dict(objects=len(m), eps_r=doc[m[0]]["relative_permittivity"], sigma=doc[m[0]]["conductivity"])
            for g, m in groups.items()}


def heldout(step, cli: str, work: Path, twins: dict, held: pd.DataFrame, res: dict, save) -> None:
    """Predict the held-out links with every twin of ``twins`` (name -> calibration folder or scene); MAE, RMSE and
    median absolute error against the truth on the links both the twin and the truth reach."""
    for name, twin in twins.items():
        f = work / f"pred_held_{name}.csv"
        step(f"predict_heldout_{name}", [cli, "predict", str(twin), str(work / "links_held.csv"), "--out", str(f)]
             + SOLVER)
        e = pd.read_csv(f)["path_gain_db"].to_numpy() - held["path_gain_db"].to_numpy()
        e = e[np.isfinite(e)]
        for stat, v in (("mae", np.mean(np.abs(e))), ("rmse", np.sqrt(np.mean(e**2))),
                        ("median_abs", np.median(np.abs(e)))):
            res[f"heldout_{stat}_db_{name}"] = float(v) if len(e) else None
        print(f"held-out {name}: MAE {res[f'heldout_mae_db_{name}']:.3f} dB, RMSE {res[f'heldout_rmse_db_{name}']:.3f}"
              f" dB, median {res[f'heldout_median_abs_db_{name}']:.3f} dB on {len(e)} links", flush=True)
    save()


if __name__ == "__main__":
    main()
