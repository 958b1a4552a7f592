"""How long ``rftwin demo`` takes to end after its work: from the last exit handler to the end of the process.

The interpreter's teardown (module clean-up and its final garbage collections over the object graphs of torch,
Sionna and Dr.Jit) runs after every command. ``rftwin.cli.main.main`` now freezes the tracked objects first
(``gc.freeze`` at exit). Each run is ``rftwin demo --json`` on one warm path cache (filled by a first, untimed
run), alternating ``--compare SRC`` and this checkout ``--repeat`` times; a child's first exit handler (registered
first, so run last) prints the time, and the parent takes the process end. Results:
benchmarks/results/exit_time.json.

Run: .venv/bin/python benchmarks/measure_exit.py --compare OLD/src [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "exit_time.json"
CHILD = r"""
import atexit, sys, time
atexit.register(lambda: sys.stderr.write(f"EXIT_HANDLERS_DONE {time.time():.6f}\n"))
sys.argv = ["rftwin", "demo", "--json", "--out", sys.argv[1]]
from rftwin.cli.main import main
main()
"""


def run(src: Path, cache: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), RFTWIN_CACHE=str(cache), RFTWIN_PROGRESS="0")
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", CHILD, str(out)], env=env, capture_output=True, text=True)
    end = time.time()
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    done = float(next(x for x in p.stderr.splitlines() if x.startswith("EXIT_HANDLERS_DONE")).split()[1])
    return {"wall_s": end - t0, "exit_s": end - done}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare", type=Path, required=True, help="another checkout's src folder")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/measure_exit_cache"))
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    sides = {"before": a.compare.resolve(), "now": ROOT / "src"}
    work = a.cache / "demo_out"
    run(sides["now"], a.cache, work)  # fills the path cache
    rows = []
    for i in range(a.repeat):
        for label, src in sides.items():
            r = dict(run(src, a.cache, work), side=label, run=i)
            rows.append(r)
            print(f"{label:6s} run {i}: exit {r['exit_s']:.2f} s (whole run {r['wall_s']:.1f} s)", flush=True)
    med = {k: statistics.median(r["exit_s"] for r in rows if r["side"] == k) for k in sides}
    print(f"median exit: before {med['before']:.2f} s, now {med['now']:.2f} s")
    from rftwin.io import write_json  # noqa: PLC0415 - staged, then renamed

    write_json(a.out, {"command": " ".join(["benchmarks/measure_exit.py", *sys.argv[1:]]), "median_exit_s": med,
                       "rows": rows})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
