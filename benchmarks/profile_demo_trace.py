"""Where a Sionna trace of the demo's links spends its kernel time (Dr.Jit's kernel history).

Traces the demo's 96 links (seed 7, the demo's solver settings, labels' materials, no path cache) ``--repeat``
times in one process and sums Dr.Jit's kernel execution time per kind of launch: compiled kernels by their
operation count (the ray-tracing kernel is the one with ~1 500 operations), and memsets, reductions and copies
by their size in lanes. Results: benchmarks/results/demo_trace_kernels.json.

Run: .venv/bin/python benchmarks/profile_demo_trace.py [--repeat 2] [--out FILE]
"""
from __future__ import annotations

import argparse
import collections
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "demo_trace_kernels.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=2, help="traces, the first one included in the results")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    from rftwin.demo.config import DemoConfig, demo_spec
    from rftwin.demo.run import demo_links
    from rftwin.scene import room
    from rftwin.trace import trace

    cfg = DemoConfig(demo_spec(32, 7), trials=3, receivers=32, seed=7)
    twin = room()
    tx, rx = demo_links(twin, cfg)
    import drjit as dr

    runs = []
    for rep in range(a.repeat):
        dr.set_flag(dr.JitFlag.KernelHistory, True)
        dr.kernel_history()  # clears it
        t0 = time.perf_counter()
        ps = trace(twin, tx, rx, cfg.settings, cache_dir=False, progress=False)
        wall = time.perf_counter() - t0
        groups: dict = collections.defaultdict(lambda: {"launches": 0, "seconds": 0.0, "max_lanes": 0})
        for h in dr.kernel_history():
            kind = str(h.get("type")).replace("KernelType.", "")
            key = f"{kind} ({h['operation_count']} ops)" if "operation_count" in h else f"{kind} ({h['size']} lanes)"
            g = groups[key]
            g["launches"] += 1
            g["seconds"] += float(h.get("execution_time", 0.0)) / 1e3
            g["max_lanes"] = max(g["max_lanes"], int(h.get("size", 0)))
        total = sum(g["seconds"] for g in groups.values())
        top = sorted(groups.items(), key=lambda kv: -kv[1]["seconds"])[:12]
        runs.append({"wall_s": wall, "kernel_s": total, "paths": ps.num_paths,
                     "groups": [dict(name=k, share=v["seconds"] / total, **v) for k, v in top]})
        print(f"trace {rep}: wall {wall:.2f} s, kernels {total:.2f} s, {ps.num_paths} paths")
        for k, v in top[:8]:
            print(f"  {v['seconds']:6.2f} s {100 * v['seconds'] / total:5.1f} %  {v['launches']:4d} x  {k}")
    doc = {"command": "benchmarks/profile_demo_trace.py", "cpus": os.cpu_count(),
           "settings": {"max_depth": cfg.settings.max_depth, "samples_per_src": cfg.settings.samples_per_src},
           "links": len(tx), "runs": runs}
    from rftwin.io import write_json  # noqa: PLC0415 - staged, then renamed

    write_json(a.out, doc)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
