"""Where the time of one ``munich`` solver call goes (depth 2, 1e5 rays, diffraction, one transmitter).

For each twin -- Sionna's ``munich`` (5 ITU materials), and the same scene exported with one ``radio-material`` per
object as ``calibrate`` writes it, traced with and without material sharing (:mod:`rftwin.trace.shared_materials`)
-- one warm-up call, then one call measured with Dr.Jit's kernel history (code generation, LLVM compilation,
kernel execution; the rest of the wall time is Python-side: Sionna recording its Dr.Jit programs, rftwin's
conversion of the buffer into a PathSet) and cProfile (functions with the most own time). Each twin runs in a
child process (Dr.Jit's registry of material instances is per process). Writes
``benchmarks/results/munich_shard_profile.json``.

    .venv/bin/python benchmarks/profile_munich_shard.py [--links 128]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import cProfile, io, json, pstats, sys, time
from contextlib import contextmanager
import drjit as dr, pandas as pd
from rftwin.scene import load
from rftwin.trace import tracer
from rftwin.trace.tracer import SolverSettings, iter_trace
scene, links, share = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if not share:
    @contextmanager
    def off(tw):
        yield 0
    tracer.share_materials = off
df = pd.read_csv(links)
tx, rx = df[["tx_x", "tx_y", "tx_z"]].to_numpy(), df[["rx_x", "rx_y", "rx_z"]].to_numpy()
twin = load(scene)
st = SolverSettings(max_depth=2, samples_per_src=100_000, diffraction=True, seed=42)
def run():
    return list(iter_trace(twin, tx, rx, st, cache_dir=False, progress=False, memory_budget=2**34))
t0 = time.perf_counter(); run(); first = time.perf_counter() - t0
dr.set_flag(dr.JitFlag.KernelHistory, True)
pr = cProfile.Profile()
t0 = time.perf_counter(); pr.enable(); shards = run(); pr.disable(); wall = time.perf_counter() - t0
ks = [k for k in dr.kernel_history() if k.get("type") == dr.KernelType.JIT]
tot = lambda key: sum(k.get(key, 0) for k in ks) / 1000
st_ = pstats.Stats(pr, stream=io.StringIO()).sort_stats("tottime")
top = []
for (f, l, fn), (cc, nc, tt, ct, _) in sorted(st_.stats.items(), key=lambda kv: -kv[1][2])[:8]:
    top.append(dict(function=f.rsplit("/", 1)[-1] + ":" + fn, calls=nc, own_s=round(tt, 2)))
rft = sum(tt for (f, l, fn), (cc, nc, tt, ct, _) in st_.stats.items() if "/rftwin/" in f)
print(json.dumps(dict(first_call_s=first, wall_s=wall, kernels=len(ks),
                      cache_hits=sum(bool(k.get("cache_hit")) for k in ks), codegen_s=tot("codegen_time"),
                      compile_s=tot("backend_time"), execution_s=tot("execution_time"), rftwin_own_s=rft,
                      paths=shards[0].pathset.num_paths, top=top)))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", type=int, default=128)
    ap.add_argument("--out", default=str(HERE / "results" / "munich_shard_profile.json"))
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(HERE)]), RFTWIN_PROGRESS="0")
    sys.path[:0] = [str(ROOT / "src"), str(HERE)]
    from munich_links import links_frame

    from rftwin.scene import load
    from rftwin.scene.export import export_scene

    work = Path(tempfile.mkdtemp(prefix="rftwin_profile_"))
    base = load("munich")
    links_frame(base, a.links, seed=2, radius_m=250).to_csv(work / "links.csv", index=False)
    xml = export_scene(base, work / "per_object")
    del base
    cases = [("munich (5 ITU materials)", "munich", "1"),
             ("per-object export, shared while tracing", str(xml), "1"),
             ("per-object export, not shared (before)", str(xml), "0")]
    res: dict = {"settings": "depth 2, 1e5 rays, diffraction, 1 transmitter", "links": a.links, "cases": {}}
    print(f"{'twin':42s} {'wall':>6s} {'1st':>6s} {'codegen':>7s} {'compile':>7s} {'exec':>6s} {'rftwin':>6s}")
    for name, scene, share in cases:
        p = subprocess.run([sys.executable, "-c", CHILD, scene, str(work / "links.csv"), share], env=env,
                           capture_output=True, text=True, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        res["cases"][name] = r
        print(f"{name:42s} {r['wall_s']:6.1f} {r['first_call_s']:6.1f} {r['codegen_s']:7.2f} {r['compile_s']:7.2f} "
              f"{r['execution_s']:6.2f} {r['rftwin_own_s']:6.2f}", flush=True)
        for t in r["top"][:4]:
            print(f"    {t['function'][:52]:52s} {t['calls']:6d} calls {t['own_s']:6.2f} s")
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
