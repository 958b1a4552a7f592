"""Sampling posterior (MALA / RWM on cached paths) against the Laplace approximation, on Sionna-traced paths."""
import numpy as np
import pytest
import torch

import _floor_wall as fw
import rftwin  # noqa: F401 - LLVM set-up before anything imports Dr.Jit
from rftwin.calibrate import CalibrationConfig, Targets, calibrate
from rftwin.calibrate.posterior import effective_sample_size, path_gain_residuals, sample_posterior, split_rhat
from rftwin.materials import PerObjectMaterials

F = 3.5e9


@pytest.fixture(scope="module")
def problem():
    """floor_wall scene, 20 links traced once at true materials (ITU x 1.05 / 0.95); measured gain = Sionna's."""
    return fw.traced_at_truth()


def _fit(problem, links, noise_db):
    ps, gain_db, eps0, sig0, thick = problem
    sub = ps.select_links(links)
    meas = gain_db[links] + np.random.default_rng(0).normal(0.0, noise_db, len(links))
    t = Targets.build(np.arange(len(links)), np.full(len(links), F), meas)
    res = calibrate(sub, PerObjectMaterials(eps0[None], sig0[None], thick), t,
                    CalibrationConfig(max_iter=200, noise_db=noise_db), progress=False, uncertainty=False)
    return sub, t, res


def test_agrees_with_laplace_when_well_identified(problem):
    noise = 0.02
    sub, t, res = _fit(problem, np.arange(20), noise)
    post = sample_posterior(sub, res.model, t, noise_db=noise, num_chains=6, num_samples=250, burn_in=250, seed=1,
                            progress=False)
    assert post.theta.shape == (6, 250, 4) and post.eps_r.shape == (6, 250, 2)
    assert post.converged and not post.dropped_chains, post.rhat
    ratio = post.log_std() / post.laplace_log_std
    print(f"\nwell identified: MCMC / Laplace log-std {np.round(ratio, 2)}, R-hat {np.round(post.rhat, 3)}, "
          f"ESS {np.round(post.ess)}, acceptance {post.acceptance.mean():.2f}")
    assert np.all((ratio > 0.7) & (ratio < 1.5))
    # the posterior mean sits at the least-squares optimum (within its own uncertainty)
    th_map = np.log(np.r_[res.eps_r - 1.0, res.sigma])
    mean = post.theta.reshape(-1, 4).mean(0)
    assert np.all(np.abs(mean - th_map) < 1.0 * post.laplace_log_std)
    assert 0.3 < post.acceptance.mean() < 0.85 and np.all(post.ess > 50)
    # the Laplace std the sampler reports equals the calibration loop's at the same noise
    from rftwin.calibrate import laplace

    lap = laplace(sub, res.model, t, CalibrationConfig(noise_db=noise))
    np.testing.assert_allclose(post.laplace_log_std, lap.log_std, rtol=1e-3)
    # physical read-outs and summary rows
    rows = post.summary()
    assert [(r["object"], r["quantity"]) for r in rows] == [("floor", "eps_r"), ("wall", "eps_r"),
                                                             ("floor", "sigma"), ("wall", "sigma")]
    for r in rows:
        assert r["q05"] <= r["q50"] <= r["q95"] and r["std"] > 0
    np.testing.assert_allclose(post.eps_r, 1.0 + np.exp(post.theta[..., :2]), rtol=1e-12)


def _at_truth(problem, links, noise_db, fit):
    ps, gain_db, eps0, sig0, thick = problem
    meas = gain_db[links] + np.random.default_rng(0).normal(0.0, noise_db, len(links))
    t = Targets.build(np.arange(len(links)), np.full(len(links), F), meas)
    return ps.select_links(links), t, PerObjectMaterials((eps0 * 1.05)[None], (sig0 * 0.95)[None], thick, fit=fit)


def test_wider_than_laplace_when_poorly_identified(problem):
    """At 0.5 dB noise the floor's eps_r is barely constrained by 20 RSS links (the reflection of the 0.1 m slab
    oscillates with eps_r): the chains agree on a posterior far wider than the Laplace Gaussian at the truth,
    while the wall's eps_r stays close to its Laplace std."""
    noise = 0.5
    sub, t, model = _at_truth(problem, np.arange(20), noise, ("eps_r",))
    post = sample_posterior(sub, model, t, noise_db=noise, num_chains=6, num_samples=250, burn_in=250, seed=0,
                            progress=False)
    ratio = post.log_std() / post.laplace_log_std
    z = np.abs(post.theta.reshape(-1, 2) - np.log(1.05 * problem[2] - 1.0)) / post.laplace_log_std
    outside = (z > 3.0).mean(0)  # a Gaussian puts 0.27 % beyond 3 std
    floor = post.summary()[0]
    print(f"\npoorly identified: MCMC / Laplace log-std {np.round(ratio, 2)}, beyond 3 Laplace std "
          f"{np.round(outside, 3)}, R-hat {np.round(post.rhat, 2)}, floor eps_r 90 % [{floor['q05']:.2f}, "
          f"{floor['q95']:.2f}]")
    assert np.all(post.rhat < 1.3)  # the chains agree: the width is the posterior's, not a mixing failure
    assert ratio[0] > 3.0 and outside[0] > 0.2
    assert 0.7 < ratio[1] < 2.0
    assert floor["object"] == "floor" and floor["q95"] / floor["q05"] > 2.0


def test_flags_disagreeing_chains_when_underdetermined(problem):
    """Two links for four parameters: ridges and several optima. The chains end in different places and the
    result says so (split R-hat > 1.1, not converged) instead of reporting one Gaussian std."""
    noise = 0.5
    sub, t, model = _at_truth(problem, np.array([0, 12]), noise, ("eps_r", "sigma"))
    post = sample_posterior(sub, model, t, noise_db=noise, num_chains=6, num_samples=200, burn_in=200, seed=0,
                            progress=False)
    print(f"\nunderdetermined: R-hat {np.round(post.rhat, 2)}, dropped chains {post.dropped_chains}")
    assert not post.converged and np.max(post.rhat) > 1.1
    assert np.ptp(post.chain_means(), axis=0).max() > 1.0
    d = post.to_dict()
    assert d["converged"] is False and len(d["parameters"]) == 4 and len(d["materials"]) == 4


def test_rwm_and_offset_profiling(problem):
    sub, t, model = _at_truth(problem, np.arange(20), 0.05, ("eps_r", "sigma"))
    # a constant power shift is invisible to the profiled-offset likelihood
    t2 = Targets.build(np.arange(20), np.full(20, F), t.path_gain_db.numpy() + 7.0)
    with torch.no_grad():
        r1 = path_gain_residuals(sub, model, t, estimate_offset=True)
        r2 = path_gain_residuals(sub, model, t2, estimate_offset=True)
    torch.testing.assert_close(r1, r2)
    post = sample_posterior(sub, model, t2, noise_db=0.05, estimate_offset=True, method="rwm", num_chains=4,
                            num_samples=200, burn_in=200, seed=2, progress=False)
    assert 0.1 < post.acceptance.mean() < 0.6
    assert np.all(np.isfinite(post.theta)) and post.theta.shape[-1] == 4
    with pytest.raises(ValueError, match="method"):
        sample_posterior(sub, model, t, noise_db=0.1, method="hmc", progress=False)
    with pytest.raises(ValueError, match="init array"):
        sample_posterior(sub, model, t, noise_db=0.1, init=np.zeros((3, 4)), num_chains=4, progress=False)


def test_convergence_diagnostics():
    rng = np.random.default_rng(0)
    iid = rng.standard_normal((4, 1000, 2))
    assert np.all(np.abs(split_rhat(iid) - 1.0) < 0.01)
    ess = effective_sample_size(iid)
    assert np.all(ess > 2500) and np.all(ess <= 4000 * 1.2)
    shifted = iid + np.array([0.0, 0.0, 3.0, 3.0])[:, None, None]
    assert np.all(split_rhat(shifted) > 1.5)
    ar = np.zeros((4, 1000, 1))  # AR(1) with rho 0.9: ESS ~ N (1 - rho) / (1 + rho)
    for i in range(1, 1000):
        ar[:, i] = 0.9 * ar[:, i - 1] + rng.standard_normal((4, 1))
    assert 100 < effective_sample_size(ar)[0] < 400


def test_nuts_sampler_agrees_on_the_identified_parameter(problem):
    """Pyro's NUTS (``method='nuts'``) on the poorly identified case: the wall's eps_r, which the data do pin
    down, gets about its Laplace width; the floor's, which they do not, a far wider one - as with MALA."""
    noise = 0.5
    sub, t, model = _at_truth(problem, np.arange(20), noise, ("eps_r",))
    post = sample_posterior(sub, model, t, noise_db=noise, method="nuts", num_chains=2, num_samples=100, burn_in=100,
                            seed=0, progress=False)
    assert post.theta.shape == (2, 100, 2) and np.all(np.isfinite(post.theta))
    ratio = post.log_std() / post.laplace_log_std
    assert ratio[0] > 2.0 and 0.5 < ratio[1] < 2.5, ratio
    assert 0.5 < post.acceptance.mean() <= 1.0
