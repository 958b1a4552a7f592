"""`rftwin demo` from scratch: wall time, peak RSS and where the time goes.

Runs ``rftwin demo --json`` in a fresh process with an empty path cache; wall time and peak RSS of the process
are measured from outside (psutil polling, :func:`bench_scale.run_child`), the time of every stage (scene, Sionna
simulation, each trace, sweeps, each calibration round) comes from the demo's own ``stages`` record, with Dr.Jit's
compile and kernel time per stage (``RFTWIN_JIT_HISTORY=1``). "outside run_demo" is the rest of the wall time:
interpreter start, imports, the plot, exit. Dr.Jit's own kernel cache (``~/.drjit``) is left as it is.

The machine is shared: compare totals only within one invocation. ``--compare SRC`` runs the same command with
another checkout's ``src`` first (e.g. the main branch), so both totals come from the same minutes.

``--fresh-kernels`` gives every run an empty home folder, so Dr.Jit compiles every kernel as on a new machine.
``--thp`` runs this checkout with transparent huge pages (``RFTWIN_THP=1``) and then without (the default since
:func:`rftwin.runtime.disable_transparent_hugepages`).

Run: .venv/bin/python benchmarks/bench_demo.py [--compare /work/main/src] [--fresh-kernels] [--thp]
     [--out FILE] [--demo-args "--retrace 2"]
Results: benchmarks/results/demo_timing.json and demo_timing.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_scale import run_child  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "demo_timing.json"
RFTWIN = ROOT / ".venv" / "bin" / "rftwin"


def run_demo_child(src: Path, args: list[str], jit_history: bool, label: str, env_extra: dict | None = None,
                   fresh_kernels: bool = False) -> dict:
    """One ``rftwin demo --json`` with ``src`` on PYTHONPATH and an empty cache: wall, peak RSS, the demo's JSON.
    ``fresh_kernels``: with an empty home folder, so Dr.Jit's kernel cache (``~/.drjit``) starts empty as on a new
    machine."""
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        env = dict(os.environ, PYTHONPATH=str(src), RFTWIN_CACHE=str(Path(tmp) / "cache"), RFTWIN_PROGRESS="0",
                   **(env_extra or {}))
        if fresh_kernels:
            (Path(tmp) / "home").mkdir()
            env["HOME"] = str(Path(tmp) / "home")
        env["RFTWIN_JIT_HISTORY"] = "1" if jit_history else "0"
        out = Path(tmp) / "demo.json"
        cmd = " ".join(shlex.quote(str(x)) for x in [RFTWIN, "demo", "--json", "--out", Path(tmp) / "out", *args])
        load_before = os.getloadavg()[0]
        res = run_child(["sh", "-c", f"exec {cmd} > {shlex.quote(str(out))}"], env)
        doc = json.loads(out.read_text())
    return dict(src=str(src), label=label, env=env_extra or {}, fresh_kernels=fresh_kernels, args=args,
                wall_s=res["seconds"],
                peak_rss_bytes=res["peak_rss_bytes"], load_average_before=load_before,
                load_average_after=os.getloadavg()[0], demo=doc)


def stage_rows(run: dict) -> list[dict]:
    """The demo's stages plus the time outside ``run_demo`` (start-up, imports, plot, exit)."""
    d = run["demo"]
    rows = [dict(s) for s in d.get("stages", [])]
    if not rows:  # a demo without a stage record: its coarse split
        rows = [{"stage": "simulation (Sionna)", "seconds": d["simulate_seconds"]},
                {"stage": "traces and sweeps", "seconds": d["trace_seconds"]},
                {"stage": "calibration rounds", "seconds": d["calibration_seconds"]}]
    # run_demo's own time outside its stages (scene, truth draw, priors, targets)
    rows.append({"stage": "rest of run_demo", "seconds": d["seconds"] - sum(r["seconds"] for r in rows)})
    rows.append({"stage": "outside run_demo (start-up, plot)", "seconds": run["wall_s"] - d["seconds"]})
    return rows


def table(run: dict) -> list[str]:
    """The stage table of one run, 80 columns."""
    rows = stage_rows(run)
    lines = [f"{'stage':<34} {'s':>7} {'%':>5} {'jit compile s':>13} {'jit kernels s':>13}", "-" * 76]
    for r in rows:
        c, k = r.get("jit_compile_s"), r.get("jit_kernels_s")
        lines.append(f"{r['stage'][:34]:<34} {r['seconds']:7.2f} {100 * r['seconds'] / run['wall_s']:5.1f} "
                     f"{'-' if c is None else f'{c:.2f}':>13} {'-' if k is None else f'{k:.2f}':>13}")
    d = run["demo"]
    lines += ["-" * 76, f"{'total (wall, outside)':<34} {run['wall_s']:7.2f}",
              f"peak RSS {run['peak_rss_bytes'] / 2**30:.2f} GiB; MRE eps_r {d['mre_eps']:.2e}, sigma "
              f"{d['mre_sigma']:.2e}; {d['iterations']} iterations; load average "
              f"{run['load_average_before']:.1f} -> {run['load_average_after']:.1f}"]
    return lines


def plot(runs: list[dict], path: Path) -> None:
    """Stacked bars of the stages (``run['stages']``: :func:`stage_rows`) of every run."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.9 * len(runs)))
    for i, run in enumerate(runs):
        left = 0.0
        for r in run["stages"]:
            ax.barh(i, r["seconds"], left=left, color=_colour(r["stage"]), edgecolor="white")
            if r["seconds"] > 1.5:
                ax.text(left + r["seconds"] / 2, i, r["stage"].split(" (")[0], ha="center", va="center", fontsize=6,
                        rotation=90)
            left += r["seconds"]
    ax.set_yticks(range(len(runs)), [f"{r.get('label') or Path(r['src']).parent.name}\n{r['wall_s']:.1f} s"
                                     for r in runs])
    ax.set_xlabel("wall time [s] (start-up and plot: 'outside run_demo')")
    ax.set_title("rftwin demo from scratch: where the time goes")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _colour(stage: str) -> str:
    for key, c in (("simulation", "tab:red"), ("trace", "tab:orange"), ("calibration", "tab:blue"),
                   ("sweeps", "tab:cyan"), ("scene", "tab:gray")):
        if stage.startswith(key):
            return c
    return "tab:olive"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare", type=Path, default=None, help="another checkout's src folder, run first")
    ap.add_argument("--demo-args", default="", help="extra options of rftwin demo, e.g. '--retrace 1'")
    ap.add_argument("--no-jit-history", action="store_true", help="do not record Dr.Jit's kernel history")
    ap.add_argument("--out", type=Path, default=OUT.relative_to(ROOT), help="results JSON (the PNG goes beside it)")
    ap.add_argument("--fresh-kernels", action="store_true",
                    help="every run with an empty Dr.Jit kernel cache (an empty home folder), as on a new machine")
    ap.add_argument("--thp", action="store_true",
                    help="this checkout twice: with transparent huge pages (RFTWIN_THP=1) first, then without")
    a = ap.parse_args()
    args = shlex.split(a.demo_args)
    plan = [(a.compare, a.compare.parent.name, {})] if a.compare else []
    if a.thp:
        plan.append((ROOT / "src", "huge pages on", {"RFTWIN_THP": "1"}))
    plan.append((ROOT / "src", "huge pages off" if a.thp else ROOT.name, {"RFTWIN_THP": "0"} if a.thp else {}))
    runs = []
    for src, label, extra in plan:
        print(f"rftwin demo {' '.join(args)} with {src} ({label}) ...", file=sys.stderr, flush=True)
        runs.append(run_demo_child(src, args, not a.no_jit_history, label, extra, a.fresh_kernels))
        print("\n".join(table(runs[-1])), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    doc = {"command": "benchmarks/bench_demo.py" + (f" --compare {a.compare}" if a.compare else "")
           + (" --thp" if a.thp else "") + (" --fresh-kernels" if a.fresh_kernels else "")
           + (" --no-jit-history" if a.no_jit_history else "")
           + (f" --out {a.out}" if ROOT / a.out != OUT else "")
           + (f" --demo-args {shlex.quote(a.demo_args)}" if a.demo_args else ""), "commit": commit.stdout.strip(),
           "cpus": os.cpu_count(), "runs": [dict(r, stages=stage_rows(r)) for r in runs]}
    for r in doc["runs"]:  # keep the record small: the per-object table stays in the demo's own output
        r["demo"] = {k: v for k, v in r["demo"].items() if k not in ("objects", "stages")}
    from rftwin.io import write_json  # noqa: PLC0415

    out = ROOT / a.out
    write_json(out, doc)
    plot(doc["runs"], out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
