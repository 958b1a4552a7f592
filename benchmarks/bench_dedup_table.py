"""Paths lost to Sionna's specular-chain tables (rftwin.trace.dedup_table): one solver call of many receivers
against the same links traced four receivers per call, with Sionna's 10^6-slot tables and with tables sized per
call (``RFTWIN_CHAIN_TABLES=sized``). Per case: paths, paths lost, |Delta gain| of the links (max, p99, dB), wall
time of the big call. The reference (four per call, sized tables) has tables far from full.

``--load-sweep 2,0.5,0.125,0.03`` traces the big call instead with sized tables of these slots per lane and the
retry turned off: the load (candidates per slot of the fullest source), paths lost against the best trace of the
case, wall time.

Run: .venv/bin/python benchmarks/bench_dedup_table.py [--cases room-d2,room-d3,demo]
     .venv/bin/python benchmarks/bench_dedup_table.py --load-sweep 2,0.5,0.125,0.03 --out FILE
Results: benchmarks/results/dedup_table.json (the load sweep: benchmarks/results/dedup_load.json)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "dedup_table.json"

# name: (receivers, transmitter, depth, rays per source)
CASES = {"room-d2": (512, (0.0, 0.0, 2.5), 2, 10_000), "room-d3": (256, (0.0, 0.0, 2.5), 3, 100_000),
         "demo": (32, (-1.0, 0.0, 1.5), 4, 500_000)}


def run_case(name: str, densities: list[float]) -> dict:
    from rftwin.scene import load
    from rftwin.scene.sampling import random_positions
    from rftwin.trace import dedup_table, tracer
    from rftwin.trace.budget import GIB
    from rftwin.trace.simulate import reference_path_gain_db
    from rftwin.trace.tracer import SolverSettings, trace

    n, t, depth, rays = CASES[name]
    twin = load("room")
    rx = random_positions(twin, n, np.random.default_rng(0), (0.3, 2.7))
    tx = np.tile(t, (n, 1))
    st = SolverSettings(max_depth=depth, samples_per_src=rays, seed=7)

    def traced(policy: str, per_call: int):
        os.environ["RFTWIN_CHAIN_TABLES"] = policy
        t0 = time.perf_counter()
        parts = [trace(twin, tx[i:i + per_call], rx[i:i + per_call], st, cache_dir=False, progress=False,
                       memory_budget=64 * GIB) for i in range(0, n, per_call)]
        sec = time.perf_counter() - t0
        return sum(p.num_paths for p in parts), np.concatenate([reference_path_gain_db(p) for p in parts]), sec

    ref_paths, ref_gain, _ = traced("sized", 4)
    out = dict(case=name, receivers=n, max_depth=depth, samples_per_src=rays, reference_paths=ref_paths)
    if densities:
        return dict(out, load_sweep=load_sweep(name, densities, traced, n, n * depth * rays, st, ref_paths,
                                               dedup_table, tracer))
    for policy in ("sionna", "sized"):
        paths, gain, sec = traced(policy, n)
        d = np.abs(gain - ref_gain)
        out[policy] = dict(paths=paths, lost_fraction=(ref_paths - paths) / ref_paths, max_abs_db=float(d.max()),
                           p99_abs_db=float(np.quantile(d, 0.99)), call_seconds=sec)
        print(f"{name:8s} {policy:7s} paths {paths:6d} / {ref_paths:6d} lost {out[policy]['lost_fraction']:7.3%} "
              f"max |dG| {d.max():.4f} dB p99 {np.quantile(d, 0.99):.4f} dB call {sec:6.1f} s", flush=True)
    return out


def load_sweep(name, densities, traced, n, lanes, st, ref_paths, dedup_table, tracer) -> list[dict]:
    """The big call at each table density (slots per lane) with the retry off; lost against the best trace."""
    fullest = []
    solve = tracer._solve

    def counting(*args):
        raw = solve(*args)
        fullest.append(int(raw["candidates_per_src"].max(initial=0)))
        return raw

    rows = []
    saved = dedup_table.SLOTS_PER_LANE, dedup_table.MAX_LOAD
    tracer._solve = counting
    try:
        for v in densities:
            dedup_table.SLOTS_PER_LANE, dedup_table.MAX_LOAD = v, float("inf")
            fullest.clear()
            paths, _, sec = traced("sized", n)  # one call of every receiver
            slots = dedup_table.table_slots(lanes, 1, st.max_num_paths_per_src)
            rows.append(dict(slots_per_lane=v, slots=slots, candidates=fullest[0], load=fullest[0] / slots,
                             paths=paths, call_seconds=sec))
    finally:
        tracer._solve = solve
        dedup_table.SLOTS_PER_LANE, dedup_table.MAX_LOAD = saved
    best = max([r["paths"] for r in rows] + [ref_paths])
    for r in rows:
        r["lost_against_best"] = best - r["paths"]
        print(f"{name:8s} {r['slots_per_lane']:5g} slots/lane: load {r['load']:.1e}, lost {r['lost_against_best']:4d} "
              f"of {best}, {r['call_seconds']:.1f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--load-sweep", default="", help="slots per lane to trace the big call with, retry off")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    densities = [float(v) for v in a.load_sweep.split(",") if v.strip()]
    sys.path.insert(0, str(ROOT / "src"))
    from rftwin.runtime import sionna_rt

    sionna_rt()
    rows = [run_case(c, densities) for c in a.cases.split(",")]
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(command=" ".join(sys.argv), cpus=os.cpu_count(), cases=rows), indent=1))
    tmp.replace(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
