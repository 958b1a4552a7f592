"""Memory of single Sionna solver calls in a city scene, and the peak of a whole ``rftwin calibrate`` there.

Uses a case folder of ``bench_unseen.py`` (``WORK/san_francisco_near``: ``links.csv``, ``meas_train.csv``).

1. Calls: each point traces the first N receivers of the first transmitter in a fresh child process (cache
   off). The child reports its resident memory after loading the scene, the peak of the call (``VmHWM``) and what
   stays resident after it; the parent also polls the child's peak RSS from outside.
2. ``--calibrate``: ``rftwin calibrate SCENE meas_train.csv --groups label`` with the bench's solver, a fresh path
   cache; wall time and peak RSS polled from outside.

Results: benchmarks/results/call_memory.json.

    .venv/bin/python benchmarks/measure_call_memory.py --case WORK/san_francisco_near [--calibrate]
        [--memory-budget 6GiB --skip-calls --out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scale import run_child  # noqa: E402

CHILD = r"""
import json, sys, numpy as np, pandas as pd
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace
from rftwin.trace.budget import current_rss, peak_rss
scene, links, n, diffraction = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
twin = load(scene)
df = pd.read_csv(links)
tx = df[["tx_x", "tx_y", "tx_z"]].to_numpy()
rows = np.nonzero((tx == tx[0]).all(1))[0][:n]
loaded = current_rss()
s = SolverSettings(max_depth=2, samples_per_src=100000, seed=7, diffraction=diffraction)
ps = trace(twin, tx[rows], df[["rx_x", "rx_y", "rx_z"]].to_numpy()[rows], s, cache_dir=False, progress=False)
print(json.dumps({"receivers": int(len(rows)), "paths": ps.num_paths, "rss_loaded_bytes": loaded,
                  "call_peak_bytes": peak_rss(), "rss_after_bytes": current_rss()}))
"""
SOLVER = ["--max-depth", "2", "--samples-per-src", "100000", "--diffraction"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", type=Path, required=True, help="a bench_unseen case folder")
    ap.add_argument("--scene", default="san_francisco")
    ap.add_argument("--calibrate", action="store_true", help="also time rftwin calibrate on the case")
    ap.add_argument("--memory-budget", default=None, help="--memory-budget of that calibrate (default: its own)")
    ap.add_argument("--skip-calls", action="store_true", help="only the calibrate step")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "call_memory.json")
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), RFTWIN_PROGRESS="0")
    doc = {"scene": a.scene, "case": str(a.case), "calls": [], "memory_budget": a.memory_budget}
    for n, diffraction in () if a.skip_calls else ((1, True), (50, True), (1, False)):
        r = run_child([sys.executable, "-c", CHILD, a.scene, str(a.case / "links.csv"), str(n),
                       "1" if diffraction else "0"], env)
        row = dict(json.loads(r["stdout"].strip().splitlines()[-1]), diffraction=diffraction,
                   seconds=r["seconds"], polled_peak_bytes=r["peak_rss_bytes"])
        doc["calls"].append(row)
        print(f"{row['receivers']:3d} receivers, diffraction {diffraction!s:5s}: loaded "
              f"{row['rss_loaded_bytes'] / 2**30:.2f} GiB, call peak {row['call_peak_bytes'] / 2**30:.2f} GiB, "
              f"after {row['rss_after_bytes'] / 2**30:.2f} GiB ({row['seconds']:.0f} s)", flush=True)
    if a.calibrate:
        with tempfile.TemporaryDirectory() as tmp:
            cli = str(Path(sys.executable).with_name("rftwin"))
            r = run_child([cli, "calibrate", a.scene, str(a.case / "meas_train.csv"), "--out", f"{tmp}/twin",
                           "--groups", "label"] + SOLVER
                          + (["--memory-budget", a.memory_budget] if a.memory_budget else []),
                          dict(env, RFTWIN_CACHE=f"{tmp}/cache"))
        doc["calibrate"] = {"seconds": r["seconds"], "peak_rss_bytes": r["peak_rss_bytes"]}
        print(f"calibrate: {r['seconds']:.0f} s, peak {r['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
    tmp_out = a.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(doc, indent=1) + "\n")
    tmp_out.replace(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
