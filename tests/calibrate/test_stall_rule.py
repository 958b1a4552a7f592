"""LM's stall rule: a fit ends once its best loss stops falling (posterior fits: 2 x the negative log posterior
fell by less than ``bayes.STALL_CHI2`` over ``bayes.STALL_WINDOW`` iterations), on Sionna-traced paths."""
import math
from dataclasses import replace

import numpy as np
import pytest

import _floor_wall as fw
import rftwin  # noqa: F401 - LLVM set-up before anything imports Dr.Jit
from rftwin.calibrate import CalibrationConfig, Targets, calibrate
from rftwin.calibrate.bayes import STALL_CHI2, STALL_WINDOW, Hyper, posterior_config
from rftwin.calibrate.loop import stalled
from rftwin.materials import PerObjectMaterials

F = 3.5e9


@pytest.fixture(scope="module")
def problem():
    """floor_wall, 20 links traced at ITU x (1.05, 0.95), measured = Sionna's gain + 0.5 dB noise; the fit starts
    at the ITU values x (2, 1/2)."""
    ps, gain_db, eps0, sig0, thick = fw.traced_at_truth()
    meas = gain_db + np.random.default_rng(0).normal(0.0, 0.5, len(gain_db))
    t = Targets.build(np.arange(len(meas)), np.full(len(meas), F), meas)
    return ps, t, (eps0 * 2.0, sig0 * 0.5), thick


def _run(problem, cfg):
    ps, t, (e, s), thick = problem
    return calibrate(ps, PerObjectMaterials(e[None], s[None], thick), t, cfg, progress=False, uncertainty=False)


def test_stalled_compares_every_starts_loss_a_window_ago():
    import torch

    h = [torch.tensor(x) for x in ((10.0, 20.0), (5.0, 10.0), (4.99, 9.9), (4.985, 9.8), (4.982, 9.7))]
    lm = CalibrationConfig(stall_window=3, stall_loss=0.05)
    assert not stalled(h[:4], lm)  # 10 -> 4.985 over 3 iterations
    assert not stalled(h, lm)  # start 0 fell by 0.018 over the last 3, but start 1 by 0.3
    assert stalled(h, replace(lm, stall_loss=0.5))  # both below 0.5
    assert not stalled(h, replace(lm, stall_loss=0.5, stall_window=0))  # off
    assert not stalled(h, replace(lm, stall_loss=0.5, optimizer="adam"))  # LM only
    assert not stalled(h[:3], replace(lm, stall_loss=0.5))  # fewer iterations than the window
    inf = [torch.tensor([math.inf, 1.0])] * 5
    assert not stalled(inf, replace(lm, stall_loss=0.5))  # a start without a finite loss never stalls


def test_lm_stops_at_the_first_stalled_iteration(problem):
    base = CalibrationConfig(max_iter=60, noise_db=0.5)
    full = _run(problem, base)
    losses = [r["loss"] for r in full.history]  # row 0: the start
    w = 4
    falls = np.array([losses[i - w] - losses[i] for i in range(w, len(losses))])  # LM: >= 0
    tol = float(np.median(falls[falls > 0]))
    k = w + int(np.argmax(falls < tol))  # the first iteration whose window fell by less than tol
    print(f"\nfull run {full.iterations} iterations, stall rule (tol {tol:.3g}) {k}")
    assert falls[k - w] < tol and k < full.iterations
    res = _run(problem, replace(base, stall_window=w, stall_loss=tol))
    assert res.iterations == k < full.iterations and res.converged
    np.testing.assert_array_equal([r["loss"] for r in res.history], losses[: k + 1])  # the same steps until then
    # off (0) and LM-only: the run is the one without the rule
    assert _run(problem, replace(base, stall_window=w, stall_loss=0.0)).iterations == full.iterations


def test_posterior_fits_use_the_stall_rule():
    t = Targets.build(np.arange(3), np.full(3, F), np.array([-60.0, -70.0, -80.0]))
    c = posterior_config(CalibrationConfig(), t, Hyper({"path_gain": 1.0}, 1.0), 4)
    assert (c.stall_window, c.stall_loss) == (STALL_WINDOW, STALL_CHI2) and STALL_WINDOW >= 10
    assert CalibrationConfig().stall_window == 0  # plain least squares (the demo): the seed-004 rule alone
