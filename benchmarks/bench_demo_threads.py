"""The demo's calibration rounds with 1 or 2 torch threads and OpenMP's wait policies, on idle cores and with one
core kept busy by another process.

Every run is a fresh process (``OMP_WAIT_POLICY`` is read when torch loads) running ``run_demo`` on the path cache
``--cache`` (filled by a first, untimed run), so only the calibration differs; it reports the demo's calibration
stages and MRE. Results: benchmarks/results/demo_threads.json.

Run: .venv/bin/python benchmarks/bench_demo_threads.py [--cache /tmp/demo_threads_cache]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "demo_threads.json"
CHILD = """
import json
from rftwin.demo import run_demo
d = run_demo(progress=False)
st = [s for s in d.stages if s["stage"].startswith("calibration")]
print(json.dumps({"calibration_s": sum(s["seconds"] for s in st), "rounds_s": [s["seconds"] for s in st],
                  "mre_eps": d.mre_eps, "mre_sigma": d.mre_sigma, "iterations": d.result.iterations,
                  "loss": d.result.loss, "torch_threads": d.torch_threads}))
"""
CASES = [("1", "PASSIVE"), ("2", "PASSIVE"), ("2", "ACTIVE")]


def run(threads: str, policy: str, cache: Path, src: Path = ROOT / "src") -> dict:
    """``run_demo`` in a fresh process with ``src`` on the path and the path cache ``cache``: its calibration."""
    env = dict(os.environ, RFTWIN_TORCH_THREADS=threads, OMP_WAIT_POLICY=policy, RFTWIN_CACHE=str(cache),
               PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/demo_threads_cache"))
    a = ap.parse_args()
    run("1", "PASSIVE", a.cache)  # fills the path cache
    rows = []
    for load in ("idle", "one core busy"):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None
        try:
            time.sleep(0.5)
            for threads, policy in CASES:
                r = run(threads, policy, a.cache)
                rows.append(dict(r, load=load, threads=int(threads), policy=policy))
                print(f"{load:14s} threads {threads} {policy:7s} calibration {r['calibration_s']:6.2f} s "
                      f"(MRE {r['mre_eps']:.3g} / {r['mre_sigma']:.3g}, {r['iterations']} it)", flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"command": "benchmarks/bench_demo_threads.py", "cpus": os.cpu_count(),
                               "rows": rows}, indent=1))
    tmp.replace(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
