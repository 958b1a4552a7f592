"""The demo's calibration rounds alone, this checkout against another one's ``src``, on the same cached traces.

Both run ``run_demo`` in fresh processes on one path cache (``--cache``, filled by a first, untimed run of this
checkout; the traces do not depend on the calibration code as long as both sides trace alike), alternating
``--compare SRC`` and this checkout ``--repeat`` times each, so that both see the same minutes of a shared host.
Reports every run's calibration seconds (the demo's calibration stages), iterations, final loss and MRE, and the
ratio of the medians. Results: benchmarks/results/demo_calibration.json.

Run: .venv/bin/python benchmarks/bench_demo_calibration.py --compare OLD/src [--repeat 3] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_demo_threads import ROOT, run  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "demo_calibration.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compare", type=Path, required=True, help="another checkout's src folder")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side (alternating)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/demo_calibration_cache"))
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    sides = {"before": a.compare.resolve(), "now": ROOT / "src"}
    run("2", "PASSIVE", a.cache, sides["now"])  # fills the path cache
    rows = []
    for i in range(a.repeat):
        for label, src in sides.items():
            r = dict(run("2", "PASSIVE", a.cache, src), side=label, src=str(src), run=i)
            rows.append(r)
            print(f"{label:6s} run {i}: calibration {r['calibration_s']:6.2f} s, {r['iterations']} it, "
                  f"loss {r['loss']:.6g}, MRE {r['mre_eps']:.3g} / {r['mre_sigma']:.3g}", flush=True)
    med = {k: statistics.median(r["calibration_s"] for r in rows if r["side"] == k) for k in sides}
    print(f"median calibration: before {med['before']:.2f} s, now {med['now']:.2f} s "
          f"({med['now'] / med['before']:.2f} x)")
    doc = {"command": " ".join(["benchmarks/bench_demo_calibration.py", *sys.argv[1:]]), "cpus": os.cpu_count(),
           "median_calibration_s": med, "ratio": med["now"] / med["before"], "rows": rows}
    from rftwin.io import write_json  # noqa: PLC0415 - staged, then renamed

    write_json(a.out, doc)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
