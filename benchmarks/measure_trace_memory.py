"""Measure what one Sionna PathSolver call of rftwin's tracer really costs in memory.

Each point runs ``rftwin.trace.tracer.trace`` once (one solver call, cache off) in a child process whose peak RSS
is polled from this (parent) process with psutil. A least-squares fit of

    peak - base = bytes_per_lane * lanes + bytes_per_path * paths

(lanes = max(depth, 1) x samples_per_src x T x R, paths = returned paths) gives the constants that
:mod:`rftwin.trace.budget` uses to size solver calls. Results: ``benchmarks/results/trace_memory.json``.

    .venv/bin/python benchmarks/measure_trace_memory.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_scale import run_child  # noqa: E402 - peak RSS of a child, polled from outside

CHILD = r"""
import json, sys, numpy as np
import rftwin
from rftwin.scene.load import load
from rftwin.trace import tracer
scene, depth, samples, R = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
diffraction = sys.argv[5] == "1"
twin = load(scene)
lo, hi = twin.bbox()
rng = np.random.default_rng(0)
if scene == "room":
    tx = np.array([[0.0, 0.0, 2.5]]); rx = np.c_[rng.uniform(-4.5, 4.5, (R, 2)), np.full(R, 1.5)]
else:
    c = (lo + hi) / 2; tx = np.array([[c[0], c[1], hi[2] + 10.0]])
    rx = np.c_[rng.uniform(lo[0], hi[0], (R, 2)) * 0.5 + c[:2] * 0.5, np.full(R, 1.5)]
s = tracer.SolverSettings(max_depth=depth, samples_per_src=samples, diffraction=diffraction, seed=1)
ps = tracer.trace(twin, np.repeat(tx, R, 0), rx, s, cache_dir=False, progress=False,
                  memory_budget=1 << 40)
print(json.dumps({"paths": ps.num_paths}))
"""


def run_point(scene: str, depth: int, samples: int, R: int, diffraction: bool = False) -> dict:
    env = dict(os.environ, RFTWIN_PROGRESS="0", PYTHONPATH=str(HERE.parent / "src"))
    r = run_child([sys.executable, "-c", CHILD, scene, str(depth), str(samples), str(R),
                   "1" if diffraction else "0"], env)
    paths = json.loads(r["stdout"].strip().splitlines()[-1])["paths"]
    lanes = max(depth, 1) * samples * R
    return dict(scene=scene, depth=depth, samples_per_src=samples, receivers=R, diffraction=diffraction,
                lanes=lanes, paths=paths, peak_rss_bytes=r["peak_rss_bytes"], seconds=r["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer points")
    ap.add_argument("--out", default=str(HERE / "results" / "trace_memory.json"))
    a = ap.parse_args()
    grid = [("room", 2, 10_000, 1), ("room", 2, 10_000, 250), ("room", 2, 10_000, 1000),
            ("room", 2, 100_000, 100), ("room", 4, 10_000, 250), ("room", 3, 100_000, 50)]
    if a.quick:
        grid = grid[:3]
    rows = []
    for g in grid:
        r = run_point(*g)
        rows.append(r)
        print(f"{r['scene']:6s} depth {r['depth']} samples {r['samples_per_src']:>8d} R {r['receivers']:>5d}: "
              f"lanes {r['lanes']:.2e} paths {r['paths']:>7d} peak {r['peak_rss_bytes'] / 2**20:8.0f} MiB "
              f"({r['seconds']:.0f} s)", flush=True)
    base = min(r["peak_rss_bytes"] for r in rows)
    X = np.array([[r["lanes"], r["paths"]] for r in rows], dtype=float)
    y = np.array([r["peak_rss_bytes"] - base for r in rows], dtype=float)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    fit = dict(base_bytes=base, bytes_per_lane=float(coef[0]), bytes_per_path=float(coef[1]),
               max_residual_over_max_cost=float(np.max(np.abs(X @ coef - y)) / np.max(y)))
    print(json.dumps(fit, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(points=rows, fit=fit), indent=1) + "\n")


if __name__ == "__main__":
    main()
