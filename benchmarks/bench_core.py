"""Core benchmark (issue #2): engine calibration step vs Sionna RT gradient step, and the demo.

Run: .venv/bin/python benchmarks/bench_core.py  (writes benchmarks/results/core.json)
"""
import json
import platform
import sys
from pathlib import Path

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.io import write_json
from rftwin.studies.core import run_core_benchmark

if __name__ == "__main__":
    r = run_core_benchmark(demo="--no-demo" not in sys.argv)
    r["machine"] = {"cpu_count": __import__("os").cpu_count(), "platform": platform.platform()}
    write_json(Path(__file__).parent / "results" / "core.json", r)
    print(json.dumps(r, indent=2))
