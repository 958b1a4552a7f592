"""Wall time of `rftwin --help`, `rftwin CMD --help` and of one argument error per command, each in a fresh
interpreter (as a user types it), with the heavy modules each run loaded; `import torch` and `import sionna.rt`
alone for reference. With ``--compare SRC`` the same runs against another checkout's ``src`` (e.g. the code
before argument errors came first) go beside them.

Run: .venv/bin/python benchmarks/bench_cli.py [--reps 3] [--compare /path/to/other/checkout/src] [--cases TEXT]
[--name cli] (writes benchmarks/results/NAME.json and NAME.png; ``--cases``: only the cases whose name contains
one of the comma-separated texts)
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))
from _cli_probe import WRAPPER, heavy_modules  # noqa: E402 - the wrapper the tests use

LINKS = str(ROOT / "examples" / "links.csv")
MEAS = str(ROOT / "examples" / "measurements_v1.csv")
# one bad argument per command (the cases of the issue and tests/cli/test_cli_fast.py)
CASES: dict[str, list[str]] = {
    "--help": ["--help"],
    "predict --help": ["predict", "--help"],
    "calibrate --optimizer nope": ["calibrate", "room", MEAS, "--out", "c", "--optimizer", "nope"],
    "predict --window nope": ["predict", "room", LINKS, "--out", "p.csv", "--window", "nope"],
    "demo --trials 0": ["demo", "--trials", "0"],
    "radiomap --cell -1": ["radiomap", "room", "--tx", "1 1 1", "--cell", "-1", "--out", "rm"],
    "beams --tx-array 0x0": ["beams", "room", LINKS, "--tx-array", "0x0", "--out", "b.csv"],
    "update --trajectory /nonexist.csv": ["update", "room", "--trajectory", "/nonexist.csv", "--links", LINKS,
                                          "--out", "u"],
    "plan --budget 0": ["plan", "room", "--budget", "0", "--out", "p.csv"],
    "materials-map --spacing 0": ["materials-map", "room", "--object", "nope", "--out", "mm", "--spacing", "0"],
    "materials-map --object nope (needs the scene)": ["materials-map", "room", "--object", "nope", "--out", "mm"],
    "evaluate --methods nope": ["evaluate", "room", MEAS, "--out", "ev", "--methods", "nope"],
    "import-scene --up x": ["import-scene", "in.ply", "--labels", "l.yaml", "--out", "imp", "--up", "x"],
    "bench --reps 0": ["bench", "--reps", "0"],
    "bench priors --optimizer sgd": ["bench", "priors", "--optimizer", "sgd"],
    "bench wedt --scenes mars": ["bench", "wedt", "--scenes", "mars"],
    "bench validate --part nope": ["bench", "validate", "--part", "nope"],
    "doctor --bogus": ["doctor", "--bogus"],
    "ris --bits 9": ["ris", "room", "--candidates", "c.csv", "--target", "0,1,0,1,1", "--tx", "1 1 1", "--bits", "9"],
    "dataset --links-per-shard 0": ["dataset", "room", "--tx", "1,1,1", "--rx", "2,2,1", "--out", "ds",
                                    "--links-per-shard", "0"],
    "predict --memory-budget lots": ["predict", "room", LINKS, "--out", "p.csv", "--memory-budget", "lots"],
    "demo --memory-budget 2XB": ["demo", "--memory-budget", "2XB"],
    "predict --tx-array 2x2,pattern=horn": ["predict", "room", LINKS, "--out", "p.csv", "--tx-array",
                                            "2x2,pattern=horn"],
    "calibrate nope.csv (MEASUREMENTS)": ["calibrate", "room", "nope.csv", "--out", "c"],
}
REFERENCE = {"python -c 'import torch'": "import torch",
             "python -c 'import rftwin, sionna.rt'": "import rftwin, sionna.rt"}


def timed(cmd: list[str], src: Path, work: Path) -> tuple[float, int, list[str]]:
    """Seconds, exit code and heavy modules loaded of one run in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(src), "RFTWIN_CACHE": str(work / "cache"), "RFTWIN_PROGRESS": "0",
           "COLUMNS": "120"}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env, timeout=300)
    dt = time.perf_counter() - t0
    return dt, p.returncode, heavy_modules(p.stderr.splitlines()) or []


def measure(src: Path, reps: int, cases: dict[str, list[str]]) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in cases.items():
            runs = [timed([sys.executable, "-c", WRAPPER, *args], src, Path(tmp)) for _ in range(reps)]
            out[name] = {"seconds": statistics.median(r[0] for r in runs), "exit_code": runs[0][1],
                         "heavy_modules": runs[0][2]}
            print(f"{name:48s} {out[name]['seconds']:6.2f} s  exit {runs[0][1]}  {runs[0][2]}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="runs per case (median)")
    ap.add_argument("--compare", type=Path, default=None, help="another checkout's src folder, measured beside")
    ap.add_argument("--cases", default=None, help="only cases whose name contains one of these (comma-separated)")
    ap.add_argument("--name", default="cli", help="results file stem under benchmarks/results")
    a = ap.parse_args()
    keys = None if a.cases is None else [k.strip() for k in a.cases.split(",") if k.strip()]
    cases = {n: v for n, v in CASES.items() if keys is None or any(k in n for k in keys)}
    if not cases:
        ap.error(f"--cases {a.cases!r} matches no case; cases: {', '.join(CASES)}")
    doc: dict = {"command": " ".join(["benchmarks/bench_cli.py", *sys.argv[1:]]),
                 "reps": a.reps, "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        doc["reference"] = {k: statistics.median(timed([sys.executable, "-c", v], ROOT / "src", Path(tmp))[0]
                                                 for _ in range(a.reps)) for k, v in REFERENCE.items()}
    doc["this_checkout"] = measure(ROOT / "src", a.reps, cases)
    if a.compare is not None:
        doc["compare"] = {"src": str(a.compare), "results": measure(a.compare, a.reps, cases)}
    from rftwin.io import write_json  # noqa: PLC0415

    write_json(RESULTS / f"{a.name}.json", doc)
    plot(doc, RESULTS / f"{a.name}.png")
    print(f"wrote {RESULTS / (a.name + '.json')} and {RESULTS / (a.name + '.png')}")


def plot(doc: dict, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    names = list(doc["this_checkout"])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.2))
    if "compare" in doc:
        ax.barh(y + 0.2, [doc["compare"]["results"][n]["seconds"] for n in names], 0.4, label="before (--compare)",
                color="0.7")
    ax.barh(y - 0.2 if "compare" in doc else y, [doc["this_checkout"][n]["seconds"] for n in names], 0.4,
            label="this checkout", color="C0")
    ax.axvline(1.0, color="C3", lw=1, ls="--", label="1 s")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("wall time of the command in a fresh interpreter [s]")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    from rftwin.io import atomic_path  # noqa: PLC0415

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


if __name__ == "__main__":
    main()
