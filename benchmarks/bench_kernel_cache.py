"""Kernels compiled per solver call, on an empty Dr.Jit kernel cache (a new machine): rftwin's kernel inputs
(:mod:`rftwin.trace.kernel_cache`) against Sionna's own literals.

Each mode runs in a child process whose home folder is empty, so ``~/.drjit`` starts empty:

* ``links``: three solver calls of 2 048 room links each (one transmitter, other receivers every call, depth 2,
  10^4 rays), as the shards of a large ``predict``;
* ``materials``: the demo's 96 links (3 transmitters x 32 receivers, depth 4, 10^5 rays) traced at the demo's true
  materials, again at the same ones, and at materials x 1.05 and x 1.1, as the re-traces of a calibration.

Per call: wall time and Dr.Jit's LLVM compile time (kernel history ``backend_time``), the path count. ``sionna``
mode replaces :func:`array_endpoints` and :func:`opaque_materials` by Sionna's own behaviour (the paths are the same
bit for bit: tests/trace/test_trace_kernel_inputs.py).

Run: .venv/bin/python benchmarks/bench_kernel_cache.py   ->  benchmarks/results/kernel_cache.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "kernel_cache.json"

CHILD = r'''
import json, sys, time
import numpy as np
import drjit as dr
import rftwin.trace.tracer as T
from dataclasses import replace
from rftwin.demo.config import DemoConfig
from rftwin.demo.run import demo_links, true_materials
from rftwin.scene import load, room
from rftwin.scene.scene_materials import SceneMaterials

mode, case = sys.argv[1], sys.argv[2]
if mode == "sionna":
    T.array_endpoints = lambda scene, positions: scene._endpoints
    T.opaque_materials = lambda scene: None
rows = []

def timed(label, fn):
    dr.set_flag(dr.JitFlag.KernelHistory, True)
    dr.kernel_history()
    t = time.perf_counter()
    ps = fn()
    hist = dr.kernel_history()
    rows.append(dict(call=label, seconds=time.perf_counter() - t, paths=int(ps.num_paths),
                     compile_seconds=sum(h.get("backend_time", 0.0) for h in hist) / 1e3))

if case == "links":
    twin = load("room")
    rng = np.random.default_rng(11)
    n = 2048
    tx = np.tile([0.0, 0.0, 2.5], (n, 1))
    st = T.SolverSettings(max_depth=2, samples_per_src=10_000)
    for i in range(3):
        rx = np.c_[rng.uniform(-4.5, 4.5, (n, 2)), rng.uniform(0.5, 2.5, n)]
        timed(f"2048 links, set {i + 1}", lambda: T.trace(twin, tx, rx, st, cache_dir=False, progress=False))
else:
    cfg = DemoConfig()
    twin = room(cfg.frequency_hz)
    tx, rx = demo_links(twin, cfg)
    e, s = true_materials(twin, cfg)
    st = replace(cfg.settings, samples_per_src=100_000)
    for label, f in (("true materials", 1.0), ("same again", 1.0), ("materials x 1.05", 1.05),
                     ("materials x 1.1", 1.1)):
        timed(label, lambda: T.trace(twin, tx, rx, st, cache_dir=False, progress=False,
                                     materials=SceneMaterials(e * f, s * f)))
print(json.dumps(rows))
'''


def run(mode: str, case: str) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench_kernels_") as tmp:
        env = dict(os.environ, HOME=tmp, PYTHONPATH=str(ROOT / "src"), RFTWIN_PROGRESS="0")
        r = subprocess.run([sys.executable, "-c", CHILD, mode, case], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{mode} {case} failed: {r.stderr[-2000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    doc = {"cpus": os.cpu_count(), "runs": {}}
    print(f"{'case':<10} {'mode':<7} {'call':<22} {'s':>6} {'compile s':>9} {'paths':>7}")
    for case in ("links", "materials"):
        for mode in ("sionna", "rftwin"):
            rows = run(mode, case)
            doc["runs"][f"{case}/{mode}"] = rows
            for r in rows:
                print(f"{case:<10} {mode:<7} {r['call']:<22} {r['seconds']:6.2f} {r['compile_seconds']:9.2f} "
                      f"{r['paths']:>7d}", flush=True)
    from rftwin.io import write_json  # noqa: PLC0415

    write_json(OUT, doc)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
