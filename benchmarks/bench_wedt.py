"""WEDT benchmark (issue #6, seed 003): BCM + NLL calibration vs ITU labels, Diff-RT, GP-PU and NeRF^2-style.

Run: .venv/bin/python benchmarks/bench_wedt.py [--quick]
(writes benchmarks/results/wedt.json and benchmarks/results/wedt_*.png; same as ``rftwin bench wedt``)
"""
import os
import platform
import sys
from pathlib import Path

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.io import write_json
from rftwin.studies.wedt import WedtConfig, format_table, run_benchmark

if __name__ == "__main__":
    quick = "--quick" in sys.argv
    out = Path(__file__).parent / "results"
    path = out / "wedt.json"
    res = run_benchmark(WedtConfig.quick() if quick else WedtConfig(), out, results_path=path)
    res["quick"] = quick
    res["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform()}
    write_json(path, res)
    print(format_table(res))
