"""Benchmark: one forward + backward step of the channel engine on >= 1e6 interactions with diffuse reflection.

Traces the benchmark room with diffuse reflection (and diffraction) once, tiles the PathSet until it holds at
least ``--interactions`` interactions, then times one engine step (materials -> per-link path gain -> loss ->
backward w.r.t. eps_r, sigma, S, K_x) in a fresh worker process per configuration (unchunked / chunked), and
reports wall time and peak resident memory above the worker's baseline as JSON (also written to
``benchmarks/results/diffuse.json``).

    .venv/bin/python benchmarks/bench_diffuse.py --samples 200000 --interactions 1000000 --chunk 100000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Polls the resident set size in a thread (torch's CPU allocator is invisible to tracemalloc)."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s, self.peak, self._stop = interval_s, 0, threading.Event()

    def __enter__(self) -> _PeakRSS:
        self.peak = _rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def worker(path: str, chunk: int | None, threads: int) -> dict:
    """Load the PathSet (no Sionna import) and time one forward + backward step."""
    import torch  # noqa: PLC0415

    from rftwin.pathset import PathSet  # noqa: PLC0415
    from rftwin.physics.channel import path_gain  # noqa: PLC0415
    from rftwin.physics.engine import MaterialValues, link_path_gain, path_coefficients  # noqa: PLC0415

    torch.set_num_threads(threads)
    ps = PathSet.load(path)
    K = len(ps.object_names)
    tm = ps.meta["trace_materials"]
    leaf = {k: torch.tensor([m[k] for m in tm], dtype=torch.float64, requires_grad=True)
            for k in ("eps_r", "sigma", "scattering", "xpd")}
    thick = torch.tensor([m["thickness"] for m in tm], dtype=torch.float64)
    mat = MaterialValues(leaf["eps_r"], leaf["sigma"], thick, leaf["scattering"], leaf["xpd"])
    f = float(ps.meta["trace_frequency_hz"])
    # warm-up on a few paths (first-call library initialisation is not part of the step)
    warm = ps.select_paths(slice(0, 64))
    if chunk:
        link_path_gain(warm, mat, f, chunk_size=32).sum().backward()
    else:
        path_gain(path_coefficients(warm, mat, f), warm.link, warm.num_links).sum().backward()
    for t in leaf.values():
        t.grad = None
    base = _rss_bytes()
    with _PeakRSS() as peak:
        t0 = time.perf_counter()
        if chunk:
            g = link_path_gain(ps, mat, f, chunk_size=chunk)
        else:
            g = path_gain(path_coefficients(ps, mat, f), ps.link, ps.num_links)
        loss = torch.log(g.clamp_min(1e-30)).mean()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
    grads_finite = all(bool(torch.isfinite(t.grad).all()) for t in leaf.values())
    return dict(chunk_size=chunk, threads=threads, objects=K, forward_s=round(t1 - t0, 3),
                backward_s=round(t2 - t1, 3), step_s=round(t2 - t0, 3),
                peak_rss_above_baseline_mib=round((peak.peak - base) / 2 ** 20, 1),
                peak_rss_mib=round(peak.peak / 2 ** 20, 1),
                grads_finite=grads_finite)


def build(samples: int, interactions: int, num_rx: int, max_depth: int, out: str) -> dict:
    """Trace the room with diffuse reflection and tile the PathSet to >= ``interactions`` interactions."""
    import numpy as np  # noqa: PLC0415

    import rftwin  # noqa: F401, PLC0415 - sets DRJIT_LIBLLVM_PATH
    from rftwin.pathset import concat  # noqa: PLC0415
    from rftwin.scene.load import room  # noqa: PLC0415
    from rftwin.trace.tracer import SolverSettings, trace  # noqa: PLC0415

    tw = room()
    K = len(tw.objects)
    tw.set_materials(scattering=[0.3] * K, xpd=[0.1] * K)
    rng = np.random.default_rng(0)
    rx = np.c_[rng.uniform(-4.5, 4.5, (num_rx, 2)), rng.uniform(0.5, 2.5, num_rx)]
    tx = np.tile([[0.5, 0.3, 2.0]], (num_rx, 1))
    settings = SolverSettings(max_depth=max_depth, samples_per_src=samples, max_num_paths_per_src=10_000_000,
                              diffuse_reflection=True, diffraction=True)
    t0 = time.perf_counter()
    ps = trace(tw, tx, rx, settings, cache_dir=False, progress=False)
    trace_s = time.perf_counter() - t0
    n_int = int(ps.mask.sum())
    reps = max(1, -(-interactions // max(n_int, 1)))
    big = concat([ps] * reps) if reps > 1 else ps
    big.save(out)
    return dict(trace_s=round(trace_s, 2), samples_per_src=samples, receivers=num_rx, max_depth=max_depth,
                traced_paths=ps.num_paths, traced_interactions=n_int,
                diffuse_interactions=int((ps.itype == 2).sum()), tiles=reps, paths=big.num_paths,
                interactions=int(big.mask.sum()), links=big.num_links)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200_000, help="samples_per_src of the trace")
    ap.add_argument("--interactions", type=int, default=1_000_000, help="tile the PathSet to at least this many")
    ap.add_argument("--rx", type=int, default=8, help="receivers")
    ap.add_argument("--max-depth", type=int, default=3)
    ap.add_argument("--chunk", type=int, nargs="*", default=[0, 100_000],
                    help="chunk sizes to time (0 = unchunked)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the worker")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.chunk[0] or None, args.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "paths.npz")
        report = dict(build=build(args.samples, args.interactions, args.rx, args.max_depth, path), runs=[])
        for c in args.chunk:
            res = subprocess.run([sys.executable, __file__, "--worker", path, "--chunk", str(c), "--threads",
                                  str(args.threads)], capture_output=True, text=True, check=True)
            report["runs"].append(json.loads(res.stdout.strip().splitlines()[-1]))
    from rftwin.io import write_json  # noqa: PLC0415

    write_json(Path(__file__).parent / "results" / "diffuse.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
