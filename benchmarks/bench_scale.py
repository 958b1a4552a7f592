"""Scale benchmark: time and peak memory of ``rftwin predict`` against the number of links.

Each point runs ``rftwin predict SCENE LINKS.csv`` in a child process (one transmitter, depth 2, 1e4 rays in the
room) with the default memory budget, first with an empty cache (trace + engine) and then again on the cached
shards; peak RSS of the child is polled from this process with psutil. The engine rate on cached paths is also
timed in-process (``predict_channels`` over the cached shards, links/s). Results:
``benchmarks/results/scale.json`` and ``scale.png``.

    .venv/bin/python benchmarks/bench_scale.py [--links 100,1000,2000,5000,20000] [--scene room]
    .venv/bin/python benchmarks/bench_scale.py --ray     # tracing 8 x 250 room links: serial, Ray 1 / 2 workers
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def links_csv(path: Path, scene: str, n: int, seed: int = 0) -> None:
    """``n`` links from one transmitter to receivers in free space (outside every closed object)."""
    from rftwin.evaluate.radiomap import inside_objects
    from rftwin.scene import load

    rng = np.random.default_rng(seed)
    if scene != "room":
        raise ValueError(f"no link generator for scene '{scene}'")
    twin = load(scene)
    tx = np.array([0.0, 0.0, 2.5])
    rx = np.zeros((0, 3))
    while len(rx) < n:
        c = np.c_[rng.uniform(-4.5, 4.5, (2 * n, 2)), rng.uniform(0.5, 2.5, 2 * n)]
        rx = np.concatenate([rx, c[~inside_objects(twin, c)]])[:n]
    df = pd.DataFrame({"link_id": [f"L{i}" for i in range(n)], "tx_x": tx[0], "tx_y": tx[1], "tx_z": tx[2],
                       "rx_x": rx[:, 0], "rx_y": rx[:, 1], "rx_z": rx[:, 2], "frequency_hz": 3.5e9,
                       "tx_power_dbm": 20.0})
    df.to_csv(path, index=False)


def run_child(cmd: list[str], env: dict, keep_stderr: bool = False) -> dict:
    """Run ``cmd``: wall time, peak RSS (bytes) of it and its children, polled every 50 ms, and its ``stdout``
    (``stderr`` too with ``keep_stderr``); RuntimeError with the end of its stderr when it fails."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    proc = psutil.Process(p.pid)
    peak = 0
    while p.poll() is None:
        try:
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            peak = max(peak, rss)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.05)
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {err[-3000:]}")
    res = dict(seconds=time.perf_counter() - t0, peak_rss_bytes=peak, stdout=out)
    return dict(res, stderr=err) if keep_stderr else res


def engine_rate(scene: str, csv: Path, cache: Path, depth: int, samples: int) -> dict:
    """In-process: predict on the cached shards of ``csv`` (shard loading, engine and features; warm), links/s."""
    code = f"""
import json, time, numpy as np, torch
from rftwin.data import read_links
from rftwin.predict.predict import predict_channels
from rftwin.scene import load
from rftwin.trace import SolverSettings
from rftwin.runtime import configure_torch_threads
configure_torch_threads()
twin = load({scene!r}); lk = read_links({str(csv)!r}, twin)
s = SolverSettings(max_depth={depth}, samples_per_src={samples}, seed=7)
for _ in range(2):  # the first call compiles torch.jit kernels; the second is timed
    t0 = time.perf_counter()
    p = predict_channels(twin, None, lk.tx_pos, lk.rx_pos, lk.frequency_hz, s, progress=False,
                         cache_dir={str(cache)!r})
    dt = time.perf_counter() - t0
print(json.dumps(dict(seconds=dt, links=len(lk.tx_pos), links_per_s=len(lk.tx_pos) / dt,
                      paths=int(p.table["num_paths"].sum()))))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), RFTWIN_PROGRESS="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


RAY_CHILD = r"""
import json, sys, time, numpy as np
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace
from rftwin.trace.fanout import fan_out_trace
workers, cache, T, R = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
twin = load("room")
rng = np.random.default_rng(0)
tx = np.c_[rng.uniform(-4, 4, (T, 2)), np.full(T, 2.5)]
rx = np.c_[rng.uniform(-4, -1, (R, 2)), np.full(R, 1.5)]
txl, rxl = np.repeat(tx, R, 0), np.tile(rx, (T, 1))
s = SolverSettings(max_depth=2, samples_per_src=10_000, seed=7)
t0 = time.perf_counter()
if workers > 0:
    fan_out_trace(twin, txl, rxl, s, cache_dir=cache, workers=workers)
ps = trace(twin, txl, rxl, s, cache_dir=cache, progress=False)
print(json.dumps(dict(seconds_in_process=time.perf_counter() - t0, paths=ps.num_paths, links=len(txl))))
"""


def ray_points(transmitters: int = 8, receivers: int = 250) -> list[dict]:
    """Tracing of ``transmitters`` x ``receivers`` room links: serial (no Ray), Ray with 1 and with 2 workers."""
    out = []
    for workers in (0, 1, 2):
        work = Path(tempfile.mkdtemp(prefix="rftwin_ray_"))
        try:
            env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), RFTWIN_PROGRESS="0")
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", RAY_CHILD, str(workers), str(work), str(transmitters),
                                str(receivers)], capture_output=True, text=True, env=env, check=True)
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r.update(workers=workers, seconds=time.perf_counter() - t0, transmitters=transmitters,
                     receivers=receivers)
            out.append(r)
            print(f"ray workers {workers} (0 = serial, no Ray): {r['seconds']:.1f} s ({r['seconds_in_process']:.1f} s "
                  f"in process), {r['paths']} paths", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out


def plot(rows: list[dict], path: Path, munich: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for scene in sorted({r["scene"] for r in rows}):
        rs = [r for r in rows if r["scene"] == scene]
        n = [r["links"] for r in rs]
        ax[0].loglog(n, [r["trace"]["seconds"] for r in rs], "o-", label=f"{scene}: trace + predict")
        ax[0].loglog(n, [r["cached"]["seconds"] for r in rs], "s--", label=f"{scene}: cached paths")
        ax[1].semilogx(n, [r["trace"]["peak_rss_bytes"] / 2**30 for r in rs], "o-", label=f"{scene}: trace")
        ax[1].semilogx(n, [r["cached"]["peak_rss_bytes"] / 2**30 for r in rs], "s--", label=f"{scene}: cached")
    if munich:  # bench_munich.py: traced predicts of the calibrated munich twin (diffraction on)
        n_held = munich.get("heldout_links", 43)
        for tag, pts in (("", [(n_held, munich.get("predict_heldout"))] + [
                             (n, munich.get(f"predict_{n}")) for n in (512, 2000, 10000)]),
                         (" (before shared materials)", [(n_held, munich.get("predict_heldout_first_run")),
                                                         (512, munich.get("predict_512_before")),
                                                         (2000, munich.get("predict_2000_earlier_run"))])):
            pts = [(n, r) for n, r in pts if isinstance(r, dict)]
            if pts:
                st = "^-" if not tag else "v:"
                ax[0].loglog([n for n, _ in pts], [r["seconds"] for _, r in pts], st,
                             label=f"munich: trace + predict{tag}")
                ax[1].semilogx([n for n, _ in pts], [r["peak_rss_bytes"] / 2**30 for _, r in pts], st,
                               label=f"munich: trace{tag}")
    ax[1].axhline(4.0, color="k", lw=0.8, ls=":", label="4 GiB target")
    ax[0].set(xlabel="links", ylabel="wall time of rftwin predict [s]")
    ax[1].set(xlabel="links", ylabel="peak RSS [GiB] (measured from outside)")
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", default="100,1000,2000,5000,20000")
    ap.add_argument("--scene", default="room")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--out", default=str(HERE / "results" / "scale.json"))
    ap.add_argument("--ray", action="store_true", help="only the Ray 1 vs 2 workers points")
    a = ap.parse_args()
    out = Path(a.out)
    if a.ray:
        doc = json.loads(out.read_text()) if out.is_file() else {}
        doc["ray"] = ray_points()
        out.write_text(json.dumps(doc, indent=1) + "\n")
        return
    if a.links == "plot":
        doc = json.loads(out.read_text())
        plot(doc["predict"], out.with_suffix(".png"), doc.get("munich"))
        return
    rows = json.loads(out.read_text())["predict"] if out.is_file() else []
    rows = [r for r in rows if not (r["scene"] == a.scene and str(r["links"]) in a.links.split(","))]
    for n in [int(x) for x in a.links.split(",")]:
        work = Path(tempfile.mkdtemp(prefix="rftwin_scale_"))
        try:
            csv = work / "links.csv"
            links_csv(csv, a.scene, n)
            env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), RFTWIN_PROGRESS="0",
                       RFTWIN_CACHE=str(work / "cache"))
            cmd = [str(ROOT / ".venv/bin/rftwin"), "predict", a.scene, str(csv), "--out", str(work / "p.csv"),
                   "--max-depth", str(a.depth), "--samples-per-src", str(a.samples)]
            first = run_child(cmd, env)
            second = run_child(cmd, env)
            rate = engine_rate(a.scene, csv, work / "cache", a.depth, a.samples)
            df = pd.read_csv(work / "p.csv")
            row = dict(scene=a.scene, links=n, depth=a.depth, samples_per_src=a.samples, trace=first,
                       cached=second, engine=rate, paths_per_link=float(df["num_paths"].mean()),
                       links_with_paths=float(df["path_gain_db"].notna().mean()))
            rows.append(row)
            print(f"{a.scene} {n:>6d} links: trace+predict {first['seconds']:7.1f} s, peak "
                  f"{first['peak_rss_bytes'] / 2**30:5.2f} GiB | cached {second['seconds']:6.1f} s, peak "
                  f"{second['peak_rss_bytes'] / 2**30:5.2f} GiB | engine {rate['links_per_s']:9.0f} links/s | "
                  f"{row['paths_per_link']:.1f} paths/link", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = json.loads(out.read_text()) if out.is_file() else {}
        doc["predict"] = sorted(rows, key=lambda r: (r["scene"], r["links"]))
        doc["machine"] = dict(cpus=os.cpu_count(), memory_bytes=psutil.virtual_memory().total)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        plot(doc["predict"], out.with_suffix(".png"), doc.get("munich"))


if __name__ == "__main__":
    main()
