"""MCMC samplers on cached paths: the hand-written batched MALA against Pyro's NUTS (dense mass matrix).

Problem (as tests/calibrate/test_posterior.py): the floor_wall scene at 3.5 GHz, 20 links traced once at true materials
(ITU x 1.05 / 0.95), measured gain = Sionna's + Gaussian noise. Two cases: well identified (0.02 dB noise, eps_r
and sigma of both objects, 4 parameters) and poorly identified (0.5 dB, eps_r only: a long one-sided posterior).
Per sampler: wall time, min bulk ESS, min ESS per second, max rank-normalised split R-hat (ArviZ), posterior
log-std / Laplace log-std. Writes benchmarks/results/mcmc.json.

    .venv/bin/python benchmarks/bench_mcmc.py [--chains 4 --samples 500 --warmup 500]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import rftwin  # noqa: E402,F401 - LLVM set-up first
from rftwin.calibrate import CalibrationConfig, Targets, calibrate  # noqa: E402
from rftwin.calibrate.posterior import sample_posterior  # noqa: E402
from rftwin.materials import PerObjectMaterials  # noqa: E402

F = 3.5e9


def problem():
    import _floor_wall as fw

    return fw.traced_at_truth()


def case(prob, noise_db: float, fit: tuple[str, ...]):
    ps, gain_db, eps0, sig0, thick = prob
    meas = gain_db + np.random.default_rng(0).normal(0.0, noise_db, len(gain_db))
    t = Targets.build(np.arange(len(gain_db)), np.full(len(gain_db), F), meas)
    model = PerObjectMaterials(eps0[None], sig0[None], thick, fit=fit)
    res = calibrate(ps, model, t, CalibrationConfig(max_iter=200, noise_db=noise_db), progress=False,
                    uncertainty=False)
    return ps, t, res.model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mcmc.json")
    args = ap.parse_args(argv)
    prob = problem()
    out = {"chains": args.chains, "samples": args.samples, "warmup": args.warmup, "cases": {}}
    for name, noise, fit in (("well_identified", 0.02, ("eps_r", "sigma")), ("poorly_identified", 0.5, ("eps_r",))):
        ps, t, model = case(prob, noise, fit)
        rows = {}
        for method in ("mala", "nuts"):
            t0 = time.perf_counter()
            post = sample_posterior(ps, model, t, noise_db=noise, method=method, num_chains=args.chains,
                                    num_samples=args.samples, burn_in=args.warmup, seed=1, progress=True)
            sec = time.perf_counter() - t0
            rows[method] = {"seconds": sec, "min_ess": float(post.ess.min()),
                            "min_ess_per_s": float(post.ess.min() / sec), "max_rhat": float(post.rhat.max()),
                            "std_over_laplace": [float(x) for x in post.log_std() / post.laplace_log_std],
                            "acceptance": float(post.acceptance.mean()), "dropped_chains": post.dropped_chains}
            r = rows[method]
            print(f"{name:18s} {method}: {sec:7.1f} s  min ESS {r['min_ess']:7.0f}  ESS/s {r['min_ess_per_s']:7.1f}"
                  f"  max R-hat {r['max_rhat']:.3f}  std/Laplace {np.round(r['std_over_laplace'], 2)}")
        out["cases"][name] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
