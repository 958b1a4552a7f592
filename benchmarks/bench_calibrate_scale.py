"""Calibration streamed over link shards: wall time and peak memory against the number of links.

For each link count N the room (one transmitter at the ceiling, N receivers, depth 2, 1e4 rays, 3.5 GHz) is traced
once at "true" materials (ITU x lambda, lambda ~ N(1, 0.1^2)), the measurements are Sionna's own path gains + 0.5 dB
noise + a 3 dB unknown offset, and the PathSet is written as link shards (PathSet files) with its targets. Then a
child process calibrates all 9 objects' eps_r and sigma from the labels (LM, closed-form offset, 4 starts, at most
``--iterations`` LM iterations, Laplace report) and its peak RSS is polled from this process:

* ``streamed``: shards loaded one at a time (:class:`rftwin.calibrate.stream.FileShards`), shard size from
  ``--memory-budget`` (:func:`rftwin.calibrate.stream.shard_paths_for_budget`);
* ``whole``: the assembled PathSet in memory, unstreamed (today's path), for comparison (up to ``--whole-max``).

``--measure``: the bytes one path costs per start in a streamed LM pass (peak RSS of calibrations of the 10^4-link
case with shards of at most 2 000 / 8 000 / 32 000 paths; the slope over the largest shard's path count, used for
``BYTES_PER_PATH_START``). Results:
``benchmarks/results/calibrate_scale.json`` and ``calibrate_scale.png``.

    .venv/bin/python benchmarks/bench_calibrate_scale.py [--links 100,1000,10000] [--memory-budget 512MiB]
    .venv/bin/python benchmarks/bench_calibrate_scale.py --measure
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_scale import run_child  # noqa: E402

DEPTH, SAMPLES, FREQ = 2, 10_000, 3.5e9


def prepare(work: Path, n: int, seed: int = 0) -> None:
    """Trace ``n`` room links at the true materials; write ``work/shards`` (link shards of <= 512 paths),
    ``work/whole.npz`` (the PathSet) and ``work/problem.npz`` (targets, labels' values, truth)."""
    from rftwin.calibrate.stream import FileShards, MemoryShards
    from rftwin.evaluate.radiomap import inside_objects
    from rftwin.physics.channel import path_gain
    from rftwin.scene import load
    from rftwin.trace import SolverSettings, trace

    rng = np.random.default_rng(seed)
    twin = load("room")
    rx = np.zeros((0, 3))
    while len(rx) < n:
        c = np.c_[rng.uniform(-4.5, 4.5, (2 * n, 2)), rng.uniform(0.5, 2.5, 2 * n)]
        rx = np.concatenate([rx, c[~inside_objects(twin, c)]])[:n]
    tx = np.repeat([[0.0, 0.0, 2.5]], n, 0)
    eps0 = np.array([o.relative_permittivity for o in twin.objects])
    sig0 = np.array([o.conductivity for o in twin.objects])
    lam = np.clip(rng.normal(1.0, 0.1, (2, len(eps0))), 0.8, 1.2)
    twin.set_materials(eps0 * lam[0], sig0 * lam[1])
    ps = trace(twin, tx, rx, SolverSettings(max_depth=DEPTH, samples_per_src=SAMPLES, seed=seed), cache_dir=False,
               progress=True)
    gain = path_gain(ps.a_ref[None, None], ps.link, ps.num_links)[0, 0].numpy()
    ok = gain > 0
    meas = np.where(ok, 10 * np.log10(np.where(ok, gain, 1.0)) + rng.normal(0, 0.5, n) + 3.0, np.nan)
    work.mkdir(parents=True, exist_ok=True)
    FileShards.write(MemoryShards(ps, max_paths=512), work / "shards", ps.num_links)
    ps.save(work / "whole.npz")
    np.savez(work / "problem.npz", meas=meas, eps0=eps0, sig0=sig0, eps_true=eps0 * lam[0],
             sig_true=sig0 * lam[1], thickness=[o.thickness_m for o in twin.objects],
             labels=np.array([o.label for o in twin.objects]), paths=ps.num_paths)


def calibrate_child(work: Path, mode: str, budget: str | None, shard_paths: int | None, iterations: int) -> None:
    """Calibrate the prepared problem (``mode`` streamed | whole); print one JSON line."""
    import torch

    from rftwin.calibrate import CalibrationConfig, Targets, calibrate
    from rftwin.calibrate.stream import FileShards
    from rftwin.materials import PerObjectMaterials, draw_starts, prior_from_labels
    from rftwin.pathset import PathSet
    from rftwin.trace.budget import parse_budget

    torch.set_num_threads(1)
    z = np.load(work / "problem.npz", allow_pickle=False)
    meas = z["meas"]
    rows = np.nonzero(np.isfinite(meas))[0]
    t = Targets.build(rows, np.full(len(rows), FREQ), meas[rows])
    prior = prior_from_labels([str(x) for x in z["labels"]], FREQ, z["eps0"], z["sig0"])
    e, s = draw_starts(prior, 4, seed=1)
    model = PerObjectMaterials(e, s, [float(x) for x in z["thickness"]])
    if mode == "streamed":  # base shards (512 paths) merged to the size the budget allows, one at a time
        from rftwin.calibrate.stream import shard_paths_for_budget
        from rftwin.trace.budget import current_rss

        base = FileShards(work / "shards")
        limit = shard_paths if shard_paths is not None else \
            shard_paths_for_budget(parse_budget(budget), current_rss(), model.num_starts)
        sub = work / f"shards_{limit}"
        src = FileShards(sub) if sub.exists() else base.regroup(limit, sub)
        cfg = CalibrationConfig(max_iter=iterations, estimate_offset=True, patience=iterations + 1)
    else:
        src = PathSet.load(work / "whole.npz")
        cfg = CalibrationConfig(max_iter=iterations, estimate_offset=True, patience=iterations + 1,
                                shard_paths=10**12)
    t0 = time.perf_counter()
    res = calibrate(src, model, t, cfg, progress=True)
    sec = time.perf_counter() - t0
    me, ms = res.mre(z["eps_true"], z["sig_true"])
    print(json.dumps({"calibrate_seconds": sec, "iterations": res.iterations, "loss": res.loss,
                      "offset_db": res.offset_db, "mre_eps": me, "mre_sigma": ms,
                      "shards": len(src) if mode == "streamed" else 1,
                      "max_shard_paths": max(s.pathset.num_paths for s in src) if mode == "streamed"
                      else src.num_paths,
                      "eps_std_max": float(np.max(res.uncertainty.eps_std))}))


def child(args: list[str], env: dict) -> dict:
    r = run_child([sys.executable, __file__, *args], env, keep_stderr=False)
    return r


def _run_point(work: Path, mode: str, env: dict, budget: str | None, shard_paths: int | None,
               iterations: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "calibrate", "--work", str(work), "--mode", mode,
           "--iterations", str(iterations)]
    if budget:
        cmd += ["--memory-budget", budget]
    if shard_paths:
        cmd += ["--shard-paths", str(shard_paths)]
    r = run_child(cmd, env)
    res = json.loads(r["stdout"].strip().splitlines()[-1])
    return dict(res, mode=mode, seconds=r["seconds"], peak_rss_bytes=r["peak_rss_bytes"])


def plot(rows: list[dict], path: Path, budget: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for mode, st in (("streamed", "o-"), ("whole", "s--")):
        rs = [r for r in rows if r["mode"] == mode]
        if not rs:
            continue
        n = [r["links"] for r in rs]
        ax[0].loglog(n, [r["calibrate_seconds"] / max(r["iterations"], 1) for r in rs], st, label=mode)
        ax[1].semilogx(n, [r["peak_rss_bytes"] / 2**30 for r in rs], st, label=mode)
    if budget:
        from rftwin.trace.budget import parse_budget

        ax[1].axhline(parse_budget(budget) / 2**30, color="k", lw=0.8, ls=":", label=f"budget of 'streamed' ({budget})")
    ax[0].set(xlabel="links", ylabel="calibrate call / LM iterations [s] (incl. Laplace)")
    ax[1].set(xlabel="links", ylabel="peak RSS of the calibration [GiB] (from outside)")
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--links", default="100,1000,10000")
    ap.add_argument("--memory-budget", default="512MiB", help="budget of the streamed calibrations")
    ap.add_argument("--shard-paths", type=int, default=None, help="fixed shard size instead of the budget's")
    ap.add_argument("--iterations", type=int, default=5, help="LM iterations per calibration")
    ap.add_argument("--whole-max", type=int, default=10_000, help="largest link count run unstreamed")
    ap.add_argument("--work", default="/tmp/rftwin_bench_calibrate_scale")
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "calibrate_scale.json"))
    ap.add_argument("--child", choices=("prepare", "calibrate"))
    ap.add_argument("--mode", default="streamed")
    ap.add_argument("--n", type=int, default=0)
    a = ap.parse_args()
    work = Path(a.work)
    if a.child == "prepare":
        prepare(work, a.n)
        return
    if a.child == "calibrate":
        calibrate_child(work, a.mode, a.memory_budget, a.shard_paths, a.iterations)
        return
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), RFTWIN_PROGRESS="1")
    out = Path(a.out)
    doc = json.loads(out.read_text()) if out.exists() else {}
    links = [int(x) for x in a.links.split(",")] if not a.measure else [10_000]
    for n in links:
        wn = work / f"links_{n}"
        if not (wn / "problem.npz").exists():
            print(f"tracing {n} links ...", file=sys.stderr, flush=True)
            r = child(["--child", "prepare", "--work", str(wn), "--n", str(n)], env)
            print(f"  traced in {r['seconds']:.1f} s", file=sys.stderr, flush=True)
    if a.measure:
        wn = work / "links_10000"
        pts = []
        for sp in (2000, 8000, 32000):
            r = _run_point(wn, "streamed", env, None, sp, a.iterations)
            pts.append(dict(r, shard_paths=sp))
            print(f"shard {sp} paths: peak {r['peak_rss_bytes'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
        x = np.array([p["max_shard_paths"] for p in pts], dtype=float)
        y = np.array([p["peak_rss_bytes"] for p in pts], dtype=float)
        slope = float(np.polyfit(x, y, 1)[0])
        doc["measure"] = {"points": pts, "starts": 4, "bytes_per_path": slope, "bytes_per_path_start": slope / 4}
        print(f"bytes per path per start: {slope / 4:.0f}", file=sys.stderr)
    else:
        rows = []
        for n in links:
            wn = work / f"links_{n}"
            paths = int(np.load(wn / "problem.npz")["paths"])
            for mode in ("streamed", "whole"):
                if mode == "whole" and n > a.whole_max:
                    continue
                r = _run_point(wn, mode, env, a.memory_budget if mode == "streamed" else None,
                               a.shard_paths if mode == "streamed" else None, a.iterations)
                rows.append(dict(r, links=n, paths=paths))
                print(f"{n:>6} links {mode:>8}: {r['seconds']:6.1f} s, peak {r['peak_rss_bytes'] / 2**30:.2f} GiB, "
                      f"{r['shards']} shards, {r['iterations']} it", file=sys.stderr, flush=True)
        doc.update(points=rows, memory_budget=a.memory_budget, iterations=a.iterations,
                   settings={"depth": DEPTH, "samples_per_src": SAMPLES, "starts": 4, "optimizer": "lm",
                             "offset": "closed_form"})
        plot(rows, out.with_suffix(".png"), a.memory_budget)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
