"""Calibration streamed over link shards (rftwin.calibrate.stream) equals the unstreamed run; its peak memory does
not grow with the link count."""
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rftwin.calibrate import CalibrationConfig, Targets, calibrate, laplace
from rftwin.calibrate.bayes import Hyper, laplace_stats, num_prior_rows, posterior_config, weighted
from rftwin.calibrate.jacobians import jacobian, trainable_params
from rftwin.calibrate.losses import LossTerm
from rftwin.calibrate.objectives import PriorStats, objective
from rftwin.calibrate.stream import FileShards, MemoryShards, Stream, plan_shards, stream_for
from rftwin.materials import PerObjectMaterials, draw_starts, prior_from_labels
from rftwin.physics.channel import path_gain
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace

F = 3.5e9
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def problem():
    """16 room links (2 transmitters) traced by Sionna at true materials (ITU x lambda); measured path gain =
    Sionna's + 0.3 dB noise + 3 dB offset, delay spread = Sionna's paths' (PathSet, Targets, prior, thickness)."""
    twin = load("room")
    rng = np.random.default_rng(0)
    n = 16
    tx = np.repeat([[0.0, 0.0, 2.5], [-3.0, 3.0, 2.0]], n // 2, 0)
    rx = np.c_[rng.uniform(-4.5, 4.5, (n, 2)), rng.uniform(0.5, 2.5, n)]
    eps0 = np.array([o.relative_permittivity for o in twin.objects])
    sig0 = np.array([o.conductivity for o in twin.objects])
    lam = np.clip(rng.normal(1.0, 0.1, (2, len(eps0))), 0.85, 1.15)
    twin.set_materials(eps0 * lam[0], sig0 * lam[1])
    ps = trace(twin, tx, rx, SolverSettings(max_depth=2, samples_per_src=20_000, seed=1), cache_dir=False,
               progress=False)
    pw = (ps.a_ref.abs() ** 2).mean((-2, -1))[None, None]
    gain = path_gain(ps.a_ref[None, None], ps.link, ps.num_links)[0, 0].numpy()
    tau = ps.tau_s.numpy()
    p = pw[0, 0].numpy()
    mean = np.bincount(ps.link.numpy(), p * tau, n) / gain
    ds = np.sqrt(np.maximum(np.bincount(ps.link.numpy(), p * tau**2, n) / gain - mean**2, 0.0))
    t = Targets.build(np.arange(n), np.full(n, F), 10 * np.log10(gain) + rng.normal(0, 0.3, n) + 3.0,
                      delay_spread_s=ds * (1 + rng.normal(0, 0.02, n)))
    prior = prior_from_labels([o.label for o in twin.objects], F, eps0, sig0)
    return ps, t, prior, [o.thickness_m for o in twin.objects]


def _model(prior, thickness, starts=2):
    e, s = draw_starts(prior, starts, seed=2)
    return PerObjectMaterials(e, s, thickness)


def test_plan_shards_respects_path_limit():
    counts = np.array([3, 5, 2, 9, 1, 1, 4])
    plan = plan_shards(counts, max_paths=6)
    assert plan == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 7)]  # the 9-path link stays alone
    assert plan_shards(counts, max_links=3) == [(0, 3), (3, 6), (6, 7)]
    with pytest.raises(ValueError, match="max_paths"):
        plan_shards(counts, max_paths=0)


def test_streamed_lm_equals_one_shard_run(problem):
    """LM with a closed-form offset and a MAP prior on shards of ~2 links = the unstreamed run (one PathSet):
    materials to 1e-9, same iteration count, same Laplace std."""
    ps, t, prior, th = problem
    out = {}
    for sp in (None, 40):
        cfg = CalibrationConfig(max_iter=200, estimate_offset=True, prior_weight=0.1, shard_paths=sp)
        m = _model(prior, th)
        if sp is not None:
            st = stream_for(ps, m, t, cfg)
            assert st is not None and len(st.shards) >= 6
        else:
            assert stream_for(ps, m, t, cfg) is None  # the default budget holds this problem in one shard
        out[sp] = calibrate(ps, m, t, cfg, progress=False, prior=prior)
    a, b = out[None], out[40]
    assert a.iterations == b.iterations and a.converged and b.converged
    np.testing.assert_allclose(b.eps_r, a.eps_r, rtol=1e-9)
    np.testing.assert_allclose(b.sigma, a.sigma, rtol=1e-9)
    assert b.offset_db == pytest.approx(a.offset_db, rel=1e-9)
    np.testing.assert_allclose(b.uncertainty.eps_std, a.uncertainty.eps_std, rtol=1e-9)
    np.testing.assert_allclose(b.uncertainty.sigma_std, a.uncertainty.sigma_std, rtol=1e-9)


def test_streamed_adam_equals_one_shard_run(problem):
    ps, t, prior, th = problem
    out = {}
    for sp in (None, 40):
        cfg = CalibrationConfig(optimizer="adam", lr=1e-2, max_iter=40, estimate_offset=True, shard_paths=sp)
        out[sp] = calibrate(ps, _model(prior, th), t, cfg, progress=False, uncertainty=False)
    assert out[None].iterations == out[40].iterations
    np.testing.assert_allclose(out[40].eps_r, out[None].eps_r, rtol=1e-9)
    np.testing.assert_allclose(out[40].sigma, out[None].sigma, rtol=1e-9)


def test_streamed_gradient_equals_whole_for_every_term(problem):
    """Adam / L-BFGS gradients (path gain + delay spread, closed-form offset, MAP prior) summed over shards =
    the gradient on the whole PathSet. (A whole L-BFGS run is not compared: its line search amplifies the last
    bits near its stopping tolerance.)"""
    ps, t, prior, th = problem
    cfg = CalibrationConfig(optimizer="lbfgs", terms=(LossTerm("path_gain", "smape"),
                                                      LossTerm("delay_spread", "smape", 0.5)),
                            estimate_offset=True, prior_weight=0.1)
    pst = PriorStats.from_prior(prior, ("eps_r", "sigma"))
    m = _model(prior, th, starts=3)
    lo, off, _ = objective(ps, m, t, cfg, None, pst)
    lo.sum().backward()
    g_whole = torch.cat([p.grad.clone() for p in trainable_params(m)], 1)
    for p in trainable_params(m):
        p.grad = None
    st = Stream(MemoryShards(ps, max_paths=40))
    lo2 = st.backward(m, t, cfg, None, pst)
    g_st = torch.cat([p.grad.clone() for p in trainable_params(m)], 1)
    torch.testing.assert_close(lo2, lo.detach(), rtol=1e-13, atol=0)
    torch.testing.assert_close(g_st, g_whole, rtol=1e-10, atol=1e-12 * float(g_whole.abs().max()))


def test_normal_equations_equal_stacked_jacobian(problem):
    """J^T J and J^T r accumulated over shards (offset eliminated) = those of the stacked Jacobian, for path
    gain + delay spread least squares (forward-mode Jacobian) and for path gain alone (one-pass path Jacobian)."""
    ps, t, prior, th = problem
    pst = PriorStats.from_prior(prior, ("eps_r", "sigma"))
    st = Stream(MemoryShards(ps, max_paths=25))
    for terms in ((LossTerm("path_gain", "mse_db"),),
                  (LossTerm("path_gain", "mse_db"), LossTerm("delay_spread", "mse", 0.3))):
        cfg = CalibrationConfig(terms=terms, estimate_offset=True, prior_weight=0.2)
        m = _model(prior, th, starts=2)
        r, J = jacobian(ps, m, t, cfg, None, pst)
        _, off, _ = objective(ps, m, t, cfg, None, pst)
        JtJ, Jtr = st.normal_equations(m, t, cfg, off, True, pst)
        ref = J.transpose(1, 2) @ J
        torch.testing.assert_close(JtJ, ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
        ref_g = (J.transpose(1, 2) @ r[..., None])[..., 0]
        torch.testing.assert_close(Jtr, ref_g, rtol=1e-9, atol=1e-9 * float(ref_g.abs().max()))
        # a held offset (EMA state): nothing to eliminate, the shards' sums as they are
        held = off + 0.7
        r, J = jacobian(ps, m, t, cfg, held, pst)
        JtJ, Jtr = st.normal_equations(m, t, cfg, held, False, pst)
        torch.testing.assert_close(JtJ, J.transpose(1, 2) @ J, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
        torch.testing.assert_close(Jtr, (J.transpose(1, 2) @ r[..., None])[..., 0], rtol=1e-9,
                                   atol=1e-9 * float(ref_g.abs().max()))
    # the posterior's Laplace statistics (evidence, effective parameters, covariance) on shards = on the PathSet
    h = Hyper({"path_gain": 0.3, "delay_spread": 1.0}, 1.0)
    c = posterior_config(cfg, t, h, num_prior_rows(pst))
    tw = weighted(t, h)
    whole = laplace_stats(ps, m, tw, c, pst, h)
    shard = laplace_stats(ps, m, tw, replace(c, shard_paths=25), pst, h)
    for name in ("loss", "log_evidence", "gamma", "zz", "cov"):
        torch.testing.assert_close(getattr(shard, name), getattr(whole, name), rtol=1e-8, atol=1e-12)
    # Laplace on shards = Laplace on the PathSet (two feature blocks, noise estimated from the residuals)
    one = m.select(0)
    u_w = laplace(ps, one, t, cfg)
    u_s = laplace(None, one, t, cfg, stream=st)
    np.testing.assert_allclose(u_s.log_std, u_w.log_std, rtol=1e-9)
    assert u_s.noise == pytest.approx(u_w.noise, rel=1e-12)


def test_file_shards_round_trip_regroup_and_errors(problem, tmp_path):
    ps, t, prior, th = problem
    fs = FileShards.write(MemoryShards(ps, max_links=1), tmp_path / "s", ps.num_links)
    assert len(fs) == ps.num_links and not list(tmp_path.glob("*.tmp"))
    big = fs.regroup(60, tmp_path / "s60")
    assert all(s.pathset.num_paths <= 60 for s in big) and len(big) < len(fs)
    # (a prior makes the problem well posed: without it a parameter the data do not pin down drifts along its
    # flat direction, and last-bit differences of the normal equations move it)
    cfg = CalibrationConfig(max_iter=200, estimate_offset=True, prior_weight=0.1)
    a = calibrate(ps, _model(prior, th), t, cfg, progress=False, uncertainty=False, prior=prior)
    b = calibrate(big, _model(prior, th), t, cfg, progress=False, uncertainty=False, prior=prior)
    assert a.iterations == b.iterations
    np.testing.assert_allclose(b.eps_r, a.eps_r, rtol=1e-9)
    with pytest.raises(ValueError, match="exists already"):
        FileShards.write(iter(fs), tmp_path / "s", ps.num_links)
    with pytest.raises(ValueError, match="not a shard folder"):
        FileShards(tmp_path)
    mt = Targets.build(np.arange(2), np.full(2, F), [-60.0, -70.0], mpc_path=[0, 1], mpc_power_db=[-61.0, -72.0])
    with pytest.raises(ValueError, match="per-MPC power targets"):
        calibrate(big, _model(prior, th), mt, CalibrationConfig(terms=(LossTerm("mpc_power"),)), progress=False)
    with pytest.raises(ValueError, match="gain offset on the path gain only"):
        Stream(big).check_least_squares(mt, CalibrationConfig(terms=(LossTerm("mpc_power"),), offset="closed_form"))


_CHILD = """
import json, sys
import numpy as np, torch
from rftwin.calibrate import CalibrationConfig, Targets, calibrate
from rftwin.calibrate.stream import FileShards
from rftwin.materials import PerObjectMaterials
from rftwin.pathset import PathSet
torch.set_num_threads(1)
folder, mode = sys.argv[1], sys.argv[2]
z = np.load(folder + "/problem.npz")
e, s = z["eps"][None].repeat(16, 0) * np.linspace(0.9, 1.1, 16)[:, None], z["sig"][None].repeat(16, 0)
model = PerObjectMaterials(e, s, z["th"].tolist())
t = Targets.build(np.arange(len(z["meas"])), np.full(len(z["meas"]), 3.5e9), z["meas"])
src = FileShards(folder + "/shards") if mode == "streamed" else PathSet.load(folder + "/whole.npz")
def hwm():  # peak RSS of this process image in KiB (VmHWM starts afresh at exec, unlike ru_maxrss)
    return int(next(x for x in open("/proc/self/status") if x.startswith("VmHWM")).split()[1])
base = hwm()
cfg = CalibrationConfig(max_iter=2, estimate_offset=True, refine_starts=16,
                        shard_paths=None if mode == "streamed" else 10**12)
calibrate(src, model, t, cfg, progress=False)
print(json.dumps({"base_kib": base, "peak_kib": hwm()}))
"""


def test_streamed_calibration_peak_memory_flat_when_links_double(tmp_path):
    """Peak RSS (VmHWM of a child process) of 2 LM iterations + Laplace, 16 starts: streamed over shards of
    <= 600 paths it stays flat from 200 to 400 links (measured: -1.5 MiB); on the whole PathSet it grows (+66 MiB),
    so the test can fail."""
    twin = load("room")
    rng = np.random.default_rng(3)
    rx = np.c_[rng.uniform(-4.5, 4.5, (400, 2)), rng.uniform(0.5, 2.5, 400)]
    tx = np.repeat([[0.0, 0.0, 2.5]], 400, 0)
    ps = trace(twin, tx, rx, SolverSettings(max_depth=2, samples_per_src=10_000, seed=2), cache_dir=False,
               progress=False)
    keep = np.nonzero(ps.paths_per_link().numpy() > 0)[0]
    peaks = {}
    for n in (200, 400):
        sub = ps.select_links(keep[:n])
        folder = tmp_path / str(n)
        FileShards.write(MemoryShards(sub, max_paths=600), folder / "shards", sub.num_links)
        sub.save(folder / "whole.npz")
        g = path_gain(sub.a_ref[None, None], sub.link, sub.num_links)[0, 0].numpy()
        np.savez(folder / "problem.npz", meas=10 * np.log10(g) + 2.0,
                 eps=[o.relative_permittivity for o in twin.objects], sig=[o.conductivity for o in twin.objects],
                 th=[o.thickness_m for o in twin.objects])
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), RFTWIN_PROGRESS="0")
        for mode in ("streamed", "whole"):
            out = subprocess.run([sys.executable, "-c", _CHILD, str(folder), mode], capture_output=True, text=True,
                                 env=env, timeout=600)
            assert out.returncode == 0, out.stderr[-2000:]
            r = json.loads(out.stdout.strip().splitlines()[-1])
            peaks[(mode, n)] = r["peak_kib"] / 1024.0  # MiB
    grow_streamed = peaks[("streamed", 400)] - peaks[("streamed", 200)]
    grow_whole = peaks[("whole", 400)] - peaks[("whole", 200)]
    assert grow_whole > 40.0, peaks  # the unstreamed passes over 200 more links (~3 300 paths) cost > 40 MiB
    assert grow_streamed < 10.0, peaks


def test_memory_budget_of_the_spec_sizes_the_shards(problem):
    """``--memory-budget`` (the spec's solver part) reaches the calibration config; a budget just above the
    resident memory streams this problem over shards of the minimum size, the default keeps one PathSet."""
    from rftwin.calibrate.spec import CalibrationSpec, SolverSpec
    from rftwin.calibrate.stream import MIN_SHARD_PATHS
    from rftwin.trace.budget import current_rss
    from rftwin.twin.calibrator import calibration_config

    ps, t, prior, th = problem
    spec = CalibrationSpec(solver=SolverSpec(memory_budget="3GiB"))
    assert calibration_config(spec).memory_budget == 3 * 2**30
    assert calibration_config(CalibrationSpec()).memory_budget is None
    tight = CalibrationConfig(memory_budget=current_rss() + 2**20)
    st = stream_for(ps, _model(prior, th), t, tight)
    assert st is not None and max(s.pathset.num_paths for s in st.shards) <= MIN_SHARD_PATHS
    assert len(st.shards) >= ps.num_paths // MIN_SHARD_PATHS
    assert stream_for(ps, _model(prior, th), t, CalibrationConfig()) is None
