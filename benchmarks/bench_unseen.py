"""Calibration on scenes the project never tuned on, the way a user runs it: ``rftwin calibrate`` with its defaults,
then ``rftwin predict`` of held-out links with the calibrated twin and with the scene's own labels.

Scenes: Sionna's built-in ``simple_street_canyon_with_cars`` (15 objects, calibrated per object), ``etoile`` (565
objects), ``florence`` (2 639 objects) and ``san_francisco`` (4 735 objects; the last three ``--groups label``).
Links: three small cells 6 m above the street, receivers 1.5 m above it within --radius of them, outside every
closed object; --train measured links, --test held-out links at other receivers. "Measurements": Sionna's path gain
at the true materials plus N(0, --noise-db^2) dB. True materials: the ITU value of the true class x lambda, lambda ~
N(1, 0.15^2) clipped to [0.6, 1.4] per class and quantity, times a per-object N(1, 0.05^2) (the objects of a class
are not identical: the group model is not exact); "wrong" labels give one class of the scene another true class
(WRONG). Solver: depth 2, 1e5 rays per source, diffraction on, in the truth and the twin. Held-out error: RMS / MAE
dB of the twin's path gain against the noise-free truth on the test links both reach; "floor": the exact true
materials on the paths traced at the labels (Sionna draws reflection or refraction at every hit with probabilities
from the materials, so where refraction is on, the paths it finds depend on the materials: no material calibration
of those paths removes this error). Every command runs in a child process whose peak RSS is polled from here.
Results: benchmarks/results/unseen.json (resumable: finished cases are skipped) and unseen.md.

    .venv/bin/python benchmarks/bench_unseen.py [--scenes simple_street_canyon_with_cars,etoile] [--work DIR]
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

SOLVER = ["--max-depth", "2", "--samples-per-src", "100000", "--diffraction"]
GROUPED = {"etoile", "florence", "san_francisco"}  # calibrated with --groups label
WRONG = {  # scene -> {label: true class} of the "wrong" case
    "simple_street_canyon_with_cars": {"wood": "concrete", "glass": "metal"},
    "etoile": {"marble": "brick"},
    "florence": {"marble": "concrete"},
    "san_francisco": {"marble": "metal"},  # metal-clad facades labelled marble
}
F = 3.5e9

SIMULATE = r"""
import json, sys, numpy as np, pandas as pd, torch
from rftwin.calibrate import Targets
from rftwin.calibrate.problem import simulate_path_gain_db
from rftwin.materials import PerObjectMaterials, itu_eps_sigma
from rftwin.physics.channel import link_sum, path_power
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace
scene, links, out, wrong, seed = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5])
refraction = sys.argv[6] == "1"
twin = load(scene)
rng = np.random.default_rng(seed)
labels = [o.label for o in twin.objects]
true = [wrong.get(l, l) for l in labels]
lam = {c: np.clip(rng.normal(1.0, 0.15, 2), 0.6, 1.4) for c in sorted(set(true))}
jit = rng.normal(1.0, 0.05, (len(true), 2))
eps, sig = np.zeros(len(true)), np.zeros(len(true))
for i, c in enumerate(true):
    e, s = itu_eps_sigma(c, 3.5e9)
    eps[i] = 1.0 if c == "metal" else max(1.0 + (e - 1.0) * lam[c][0] * jit[i, 0], 1.0)
    sig[i] = s if c == "metal" else s * lam[c][1] * jit[i, 1]
twin.set_materials(eps, sig)
df = pd.read_csv(links)
tx, rx = df[["tx_x", "tx_y", "tx_z"]].to_numpy(), df[["rx_x", "rx_y", "rx_z"]].to_numpy()
settings = SolverSettings(max_depth=2, samples_per_src=100000, seed=7, diffraction=True, refraction=refraction)
ps = trace(twin, tx, rx, settings, progress=False)
g = link_sum(path_power(ps.a_ref[None]), ps.link, ps.num_links)[0].numpy()
df["path_gain_db"] = np.where(g > 0, 10 * np.log10(np.maximum(g, 1e-300)), np.nan)
# floor: the exact true materials on the paths traced at the labels (what no material calibration removes)
e0 = np.array([itu_eps_sigma(l, 3.5e9)[0] for l in labels]); s0 = np.array([itu_eps_sigma(l, 3.5e9)[1] for l in labels])
twin.set_materials(e0, s0)
ps0 = trace(twin, tx, rx, settings, progress=False)
t = Targets.build(np.arange(len(df)), np.full(len(df), 3.5e9), np.zeros(len(df)))
with torch.no_grad():
    fl = simulate_path_gain_db(ps0, PerObjectMaterials(eps[None], sig[None], [o.thickness_m for o in twin.objects]), t)
df["floor_db"] = np.where(fl[0].numpy() > -250.0, fl[0].numpy(), np.nan)
df.to_csv(out, index=False)
print(json.dumps({"true_classes": sorted(set(true)), "lambda": {c: list(map(float, v)) for c, v in lam.items()}}))
"""


def links_frame(scene: str, n_tx: int, n_rx: int, radius_m: float, seed: int) -> pd.DataFrame:
    """``n_tx`` small cells 6 m above the street near the scene centre, each with ``n_rx`` street receivers."""
    from munich_links import street_receivers

    from rftwin.scene import load

    twin = load(scene)
    rng = np.random.default_rng(seed)
    lo, hi = twin.bbox()
    txs = street_receivers(twin, n_tx, (lo + hi) / 2, radius_m, rng, height_m=6.0, bbox_margin_m=1.0)
    rows = []
    for t in txs:
        rx = street_receivers(twin, n_rx, t, radius_m, rng, height_m=1.5, bbox_margin_m=1.0)
        rows.append(pd.DataFrame({"tx_x": t[0], "tx_y": t[1], "tx_z": t[2], "rx_x": rx[:, 0], "rx_y": rx[:, 1],
                                  "rx_z": rx[:, 2], "frequency_hz": F, "tx_power_dbm": 30.0}))
    df = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return df.assign(link_id=[f"L{i}" for i in range(len(df))])


def errors(pred: np.ndarray, truth: np.ndarray) -> dict:
    e = pred - truth
    e = e[np.isfinite(e)]
    return {"rmse_db": float(np.sqrt(np.mean(e**2))) if len(e) else None,
            "mae_db": float(np.mean(np.abs(e))) if len(e) else None, "links": int(len(e))}


def implausible(cal: Path) -> int:
    """Exported values outside the documented plausible ranges (calibration.json's plausible_ranges)."""
    inf = json.loads((cal / "calibration.json").read_text())["inference"]
    rng = inf["plausible_ranges"]
    objs = json.loads((cal / "materials.json").read_text())["objects"]
    bad = 0
    for o in objs.values():
        e, s = o["relative_permittivity"], o["conductivity"]
        bad += not (rng["eps_r"][0] <= e <= rng["eps_r"][1]) or not (rng["sigma"][0] <= s <= rng["sigma"][1])
    return int(bad)


def run_case(scene: str, case: str, a, work: Path, env: dict, cli: str) -> dict:
    d = work / f"{scene}_{case}{'' if a.refraction else '_norefr'}"
    d.mkdir(parents=True, exist_ok=True)
    out: dict = {"scene": scene, "labels": case, "refraction": a.refraction}
    solver = SOLVER + ([] if a.refraction else ["--no-refraction"])
    n = a.train + a.test
    links = d / "links.csv"
    if not links.is_file():
        links_frame(scene, 3, -(-n // 3), a.radius, a.seed).iloc[:n].to_csv(links, index=False)
    meas = d / "truth.csv"
    if not meas.is_file():
        r = run_child([sys.executable, "-c", SIMULATE, scene, str(links), str(meas),
                       json.dumps(WRONG[scene] if case == "wrong" else {}), str(a.seed), str(int(a.refraction))], env)
        out["simulate"] = {"seconds": r["seconds"], "peak_rss_bytes": r["peak_rss_bytes"], **json.loads(r["stdout"])}
    truth = pd.read_csv(meas)
    rng = np.random.default_rng(a.seed + 1)
    y = truth["path_gain_db"].to_numpy() + rng.normal(0.0, a.noise_db, len(truth))
    train = truth.iloc[: a.train].assign(path_gain_db=y[: a.train])
    train = train[np.isfinite(train["path_gain_db"])]
    test = truth.iloc[a.train:]
    train.drop(columns=["tx_power_dbm", "floor_db"]).to_csv(d / "meas_train.csv", index=False)
    test.drop(columns=["path_gain_db", "floor_db"]).to_csv(d / "links_test.csv", index=False)
    out["train_links"], out["test_links"] = int(len(train)), int(len(test))
    cal = d / "twin"
    if not (cal / "materials.json").is_file():
        cmd = [cli, "calibrate", scene, str(d / "meas_train.csv"), "--out", str(cal)] + solver
        cmd += ["--groups", "label"] if scene in GROUPED else []
        cmd += ["--likelihood", a.likelihood] if a.likelihood else []
        r = run_child(cmd, env)
        out["calibrate"] = {"seconds": r["seconds"], "peak_rss_bytes": r["peak_rss_bytes"]}
        print(f"{scene} {case}: calibrate {r['seconds']:.0f} s, peak {r['peak_rss_bytes'] / 2**30:.2f} GiB",
              flush=True)
    doc = json.loads((cal / "calibration.json").read_text())
    inf = doc["inference"]
    out["path_changes"] = doc.get("path_changes", [])
    out["verdict"] = inf["verdict"]
    out["reverted"] = inf["reverted_to_labels"]
    out["likelihood"] = inf["likelihood"]
    out["switches"] = [[s.get("group", s.get("object")), s["to"]] for s in inf["label_switches"]]
    out["noise_estimate_db"] = inf["noise"].get("path_gain")
    out["implausible"] = implausible(cal)
    t = test["path_gain_db"].to_numpy()
    out["floor"] = errors(test["floor_db"].to_numpy(), t)
    for name, twin in (("label", scene), ("calibrated", str(cal))):
        f = d / f"pred_{name}.csv"
        if not f.is_file():
            r = run_child([cli, "predict", twin, str(d / "links_test.csv"), "--out", str(f)] + solver, env)
            out[f"predict_{name}_seconds"] = r["seconds"]
        out[name] = errors(pd.read_csv(f)["path_gain_db"].to_numpy(), t)
    print(f"{scene} {case}: held-out RMS label twin {out['label']['rmse_db']:.3f} dB, calibrated "
          f"{out['calibrated']['rmse_db']:.3f} dB ({out['verdict']}; switches {out['switches']})", flush=True)
    return out


def markdown(doc: dict) -> str:
    lines = ["| scene | refraction | labels | train | label twin RMS / MAE dB | calibrated RMS / MAE dB | floor RMS dB "
             "| re-trace change RMS dB | verdict | likelihood | switches | implausible | calibrate s / GiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in doc["cases"]:
        cal = c.get("calibrate", {})
        switches = ", ".join(f"{a}->{b}" for a, b in c["switches"]) or "-"
        pc = c.get("path_changes") or [{"gain_change_rms_db": float("nan")}]
        lab, cal_e = c["label"], c["calibrated"]
        lines.append(f"| {c['scene']} | {'on' if c['refraction'] else 'off'} | {c['labels']} | {c['train_links']} | "
                     f"{lab['rmse_db']:.3f} / {lab['mae_db']:.3f} | {cal_e['rmse_db']:.3f} / {cal_e['mae_db']:.3f} | "
                     f"{c['floor']['rmse_db']:.3f} | {pc[-1]['gain_change_rms_db']:.3f} | {c['verdict']} | "
                     f"{c['likelihood']} | {switches} | {c['implausible']} | "
                     f"{cal.get('seconds', float('nan')):.0f} / "
                     f"{cal.get('peak_rss_bytes', float('nan')) / 2**30:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default="simple_street_canyon_with_cars,etoile,florence")
    ap.add_argument("--labels", default="near,wrong", help="cases: near (right classes), wrong (WRONG)")
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--radius", type=float, default=80.0, help="receivers within this distance of their cell [m]")
    ap.add_argument("--noise-db", type=float, default=1.0)
    ap.add_argument("--likelihood", default=None, help="rftwin calibrate --likelihood (default: the command's)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--refraction", action=argparse.BooleanOptionalAction, default=True,
                    help="refraction in the truth and the twin (--no-refraction: both without)")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "unseen.json")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="rftwin_unseen_"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(HERE)]), RFTWIN_PROGRESS="0",
               RFTWIN_CACHE=str(work / "cache"))
    cli = str(Path(sys.executable).with_name("rftwin"))
    doc = json.loads(a.out.read_text()) if a.out.is_file() else {"cases": []}
    doc["settings"] = {k: getattr(a, k) for k in ("train", "test", "radius", "noise_db", "seed")}
    done = {(c["scene"], c["labels"], c["refraction"]) for c in doc["cases"]}
    for scene in a.scenes.split(","):
        for case in a.labels.split(","):
            if (scene, case, a.refraction) in done:
                continue
            doc["cases"].append(run_case(scene, case, a, work, env, cli))
            tmp = a.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=1) + "\n")
            tmp.replace(a.out)
    a.out.with_suffix(".md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
