"""Calibration of the scattering coefficient S and K_xpd (issue #4): measurements simulated by Sionna RT with
diffuse reflection on and known S per object -> calibration recovers S (and eps_r, sigma)."""
import numpy as np
import pytest
import torch

import _floor_wall as fw
from rftwin.calibrate import CalibrationConfig, LossTerm, Targets, calibrate
from rftwin.calibrate.workflow import calibrate_scene, calibrated_materials
from rftwin.materials.per_object import (
    PerObjectMaterials,
    draw_start_values,
    prior_from_labels,
    with_roughness,
    with_scattering,
)
from rftwin.physics.channel import path_gain, path_power
from rftwin.physics.features import delay_moments
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace

SETTINGS = SolverSettings(max_depth=2, samples_per_src=30_000, diffuse_reflection=True)
S_TRUE = np.array([0.5, 0.3])  # floor, wall
TERMS = (LossTerm("path_gain", "mse_db"), LossTerm("delay_spread", "mse"))



def _sionna_features(ps):
    """Path gain (dB) and RMS delay spread (s) per link from Sionna's own coefficients (paths.a)."""
    a = ps.a_ref[None, None]
    g = 10 * np.log10(path_gain(a, ps.link, ps.num_links)[0, 0].numpy())
    _, ds = delay_moments(path_power(a), ps.tau_s, ps.link, ps.num_links, empty=0.0)
    return g, ds[0, 0].numpy()


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """floor_wall with ITU eps/sigma and S = S_TRUE, traced by Sionna with diffuse reflection on."""
    twin = load("floor_wall")
    tx, rx = fw.links(6, seed=3)
    eps, sig = fw.itu_materials(twin)
    twin.set_materials(eps, sig, scattering=S_TRUE, xpd=[0.2, 0.1])
    ps = trace(twin, tx, rx, SETTINGS, cache_dir=tmp_path_factory.mktemp("cache"))
    assert "diffuse_reflection" in ps.meta["mechanisms"] and "diffuse_reflection" in ps.meta["mechanisms_present"]
    g, ds = _sionna_features(ps)
    t = Targets.build(np.arange(len(tx)), np.full(len(tx), 3.5e9), g, delay_spread_s=ds)
    return dict(twin=twin, tx=tx, rx=rx, eps=eps, sig=sig, ps=ps, targets=t,
                thickness=[o.thickness_m for o in twin.objects])


def test_recovers_scattering_eps_sigma_from_power_and_delay_spread(measured):
    m = measured
    model = PerObjectMaterials(m["eps"][None] * 1.1, m["sig"][None] * 0.8, m["thickness"], scattering=[[0.2, 0.2]],
                               xpd=[0.2, 0.1], fit=("eps_r", "sigma", "scattering"))
    res = calibrate(m["ps"], model, m["targets"], CalibrationConfig(terms=TERMS, max_iter=100), progress=False,
                    truth={"eps_r": m["eps"], "sigma": m["sig"], "scattering": S_TRUE})
    assert res.loss < 1e-6
    np.testing.assert_allclose(res.scattering, S_TRUE, atol=2e-3)
    np.testing.assert_allclose(res.eps_r, m["eps"], rtol=2e-3)
    np.testing.assert_allclose(res.sigma, m["sig"], rtol=1e-2)
    assert res.history[-1]["mae_scattering"] < 2e-3 and "scattering" in res.history[0]
    u = res.uncertainty
    assert u.scattering_std is not None and np.all(np.isfinite(u.scattering_std)) and np.all(u.scattering_std > 0)
    assert u.xpd_std is not None and np.all(u.xpd_std == 0)  # K_xpd held fixed


def test_recovers_xpd_with_scattering(measured):
    m = measured
    model = PerObjectMaterials(m["eps"][None], m["sig"][None], m["thickness"], scattering=[[0.3, 0.3]],
                               xpd=[[0.4, 0.4]], fit=("scattering", "xpd"))
    res = calibrate(m["ps"], model, m["targets"], CalibrationConfig(terms=TERMS, max_iter=100), progress=False)
    np.testing.assert_allclose(res.scattering, S_TRUE, atol=5e-3)
    np.testing.assert_allclose(res.xpd, [0.2, 0.1], atol=2e-2)


def test_calibrate_scene_traces_diffuse_with_positive_s_and_recovers_it(measured):
    """Independent trace: the twin starts at S = 0 (ITU), the workflow traces with diffuse reflection and a positive
    trace-time S on every object (other Monte-Carlo samples than the measurement), re-traces once and recovers S."""
    m = measured
    twin = load("floor_wall")
    assert all(o.scattering_coefficient == 0 for o in twin.objects)
    prior = prior_from_labels([o.label for o in twin.objects], 3.5e9)
    prior = with_scattering(prior, 0.1, xpd=[0.2, 0.1])
    cfg = CalibrationConfig(terms=TERMS, max_iter=60)
    res, ps = calibrate_scene(twin, m["tx"], m["rx"], m["targets"], prior, cfg,
                              SolverSettings(max_depth=2, samples_per_src=30_000), num_starts=1, retrace=1,
                              fit=("scattering",), progress=False)
    assert "diffuse_reflection" in res.mechanisms
    assert all(tm["scattering"] >= 0.2 - 1e-6 for tm in ps.meta["trace_materials"])  # positive trace-time S
    assert ps.meta["overflowed_sources"] == 0
    np.testing.assert_allclose(res.scattering, S_TRUE, atol=0.05)
    # materials are an argument of every trace: the twin keeps its own S = 0, the result's record holds the fit
    assert all(o.scattering_coefficient == 0 for o in twin.objects)
    np.testing.assert_allclose(calibrated_materials(res).scattering, res.scattering, atol=1e-6)
    with pytest.raises(ValueError, match="diffuse reflection"):
        calibrate_scene(twin, m["tx"], m["rx"], m["targets"], prior, cfg, num_starts=1, fit=("scattering",),
                        diffuse=False, progress=False)
    bare = prior_from_labels([o.label for o in twin.objects], 3.5e9)  # no S anywhere
    twin0 = load("floor_wall")
    with pytest.raises(ValueError, match="needs a scattering coefficient"):
        calibrate_scene(twin0, m["tx"], m["rx"], m["targets"], bare, cfg, num_starts=1, diffuse=True, progress=False)
    with pytest.raises(ValueError, match="fitting xpd needs S > 0"):
        calibrate_scene(twin0, m["tx"], m["rx"], m["targets"], bare, cfg, num_starts=1, fit=("xpd",), progress=False)


def test_roughness_prior_and_sigmoid_readouts():
    prior = prior_from_labels(["concrete", "brick", "wood"], 3.5e9)
    p = with_roughness(prior, ["very_smooth", "brick", None])
    assert p.scattering[0] == pytest.approx(0.085) and tuple(p.scattering_range[0]) == (0.07, 0.10)
    assert p.scattering[1] == pytest.approx(0.4) and tuple(p.scattering_range[1]) == (0.3, 0.5)
    assert 0 < p.scattering_range[2, 0] < p.scattering[2] < p.scattering_range[2, 1] < 1
    assert p.roughness == ["very_smooth", "brick", None]
    with pytest.raises(KeyError, match="unknown roughness class"):
        with_roughness(prior, ["glossy", None, None])
    v = draw_start_values(p, 16, seed=0, fit=("eps_r", "sigma", "scattering"))
    assert v["scattering"].shape == (16, 3) and np.allclose(v["scattering"][0], p.scattering)
    lo, hi = p.scattering_range[:, 0], p.scattering_range[:, 1]
    assert np.all((v["scattering"] >= lo - 1e-12) & (v["scattering"] <= hi + 1e-12))
    assert v["xpd"] is None  # neither in the prior nor fitted
    # eps/sigma draws do not depend on what else is fitted
    v2 = draw_start_values(p, 16, seed=0)
    assert np.array_equal(v["eps_r"], v2["eps_r"]) and np.array_equal(v["sigma"], v2["sigma"])
    model = PerObjectMaterials(v["eps_r"], v["sigma"], [0.1] * 3, scattering=v["scattering"],
                               fit=("eps_r", "sigma", "scattering", "xpd"))
    mv = model(torch.tensor([3.5e9], dtype=torch.float64))
    assert mv.scattering.shape == (16, 1, 3) and torch.allclose(mv.scattering[:, 0], torch.as_tensor(v["scattering"]))
    assert torch.allclose(mv.xpd, torch.full_like(mv.xpd, 0.1))  # default K_xpd start when fitted without prior
    one = model.select(3)
    assert np.allclose(one.values()["scattering"], v["scattering"][3])
    with pytest.raises(ValueError, match="cannot fit"):
        PerObjectMaterials(v["eps_r"], v["sigma"], [0.1] * 3, fit=("roughness",))


def test_multistart_screening_and_first_order_optimizers_carry_s(measured):
    m = measured
    prior = with_scattering(prior_from_labels([o.label for o in m["twin"].objects], 3.5e9), 0.3, xpd=[0.2, 0.1])
    v = draw_start_values(prior, 6, seed=2, fit=("scattering",))
    assert np.all(v["eps_r"] == v["eps_r"][0])  # not fitted: the same in every start
    for opt in ("adam", "lbfgs"):
        model = PerObjectMaterials(v["eps_r"], v["sigma"], m["thickness"], scattering=v["scattering"], xpd=v["xpd"],
                                   fit=("scattering",))
        cfg = CalibrationConfig(optimizer=opt, lr=0.05, terms=(LossTerm("path_gain", "smape"),
                                                               LossTerm("delay_spread", "smape")),
                                refine_starts=2, max_iter=15)
        res = calibrate(m["ps"], model, m["targets"], cfg, progress=False, uncertainty=False)
        assert len(res.start_losses) == 2 and res.model.num_starts == 1
        assert res.history[-1]["loss"] < res.history[0]["loss"]
        assert np.mean(np.abs(res.scattering - S_TRUE)) < 0.1
