"""Seed-004 study (issue #7): initialisation (label / uniform / random) x placement (random / planner / expert)
x N receivers x M = 3 trials on the benchmark room, with Adam + NAE (the seed's optimiser) and our LM.

Run: .venv/bin/python benchmarks/bench_priors.py [--quick]
(same as `rftwin bench priors [--quick]`; writes benchmarks/results/priors.json and PNGs under
benchmarks/results/priors/)
"""
import sys
from pathlib import Path

import rftwin  # noqa: F401  (sets DRJIT_LIBLLVM_PATH)
from rftwin.cli.main import app

if __name__ == "__main__":
    out = Path(__file__).parent / "results" / "priors.json"
    app(["bench", "priors", "--out", str(out), *sys.argv[1:]])
