"""Rung 3: measurements simulated by Sionna with known materials -> calibration recovers them."""
import numpy as np
import pytest
import torch

import _floor_wall as fw
from rftwin.calibrate import CalibrationConfig, Targets, calibrate, laplace
from rftwin.materials import PerObjectMaterials, draw_starts, itu_eps_sigma, prior_from_labels, with_relative_ranges
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace

SETTINGS = SolverSettings(max_depth=2, samples_per_src=100_000)


def _setup():
    twin = load("floor_wall")
    tx, rx = fw.links(10, seed=3)
    eps0, sig0 = fw.itu_materials(twin)
    return twin, tx, rx, len(twin.objects), eps0, sig0


def _measure(twin, tx, rx, eps, sig):
    twin.set_materials(eps, sig)
    ps = trace(twin, tx, rx, SETTINGS, cache_dir=False)
    return ps, fw.sionna_gain_db(ps)


@pytest.mark.parametrize("optimizer", ["lm", "lbfgs"])
def test_recovers_materials_on_same_paths(optimizer):
    twin, tx, rx, K, eps0, sig0 = _setup()
    eps_t, sig_t = eps0 * 1.05, sig0 * 0.95
    ps, meas = _measure(twin, tx, rx, eps_t, sig_t)
    t = Targets.build(np.arange(len(tx)), np.full(len(tx), 3.5e9), meas)
    model = PerObjectMaterials(eps0[None], sig0[None], [o.thickness_m for o in twin.objects])
    cfg = CalibrationConfig(optimizer=optimizer, max_iter=300)
    res = calibrate(ps, model, t, cfg, truth=(eps_t, sig_t), progress=False)
    me, ms = res.mre(eps_t, sig_t)
    assert res.loss < 1e-6
    assert me < 1e-3
    assert res.history[-1]["mre_eps"] == pytest.approx(me)
    assert res.uncertainty is not None and np.all(np.isfinite(res.uncertainty.eps_std))


def test_offset_estimation_ignores_constant_power_shift():
    twin, tx, rx, K, eps0, sig0 = _setup()
    eps_t, sig_t = eps0 * 1.1, sig0 * 0.9
    ps, meas = _measure(twin, tx, rx, eps_t, sig_t)
    cfg = CalibrationConfig(max_iter=300, estimate_offset=True)
    out = []
    for shift in (0.0, 7.0):
        t = Targets.build(np.arange(len(tx)), np.full(len(tx), 3.5e9), meas + shift)
        model = PerObjectMaterials(eps0[None], sig0[None], [o.thickness_m for o in twin.objects])
        out.append(calibrate(ps, model, t, cfg, progress=False, uncertainty=False))
    assert out[1].offset_db == pytest.approx(out[0].offset_db + 7.0, abs=1e-3)
    np.testing.assert_allclose(out[1].eps_r, out[0].eps_r, rtol=1e-4)
    np.testing.assert_allclose(out[1].sigma, out[0].sigma, rtol=1e-4)


def test_multistart_screening_and_laplace_flags_unobserved_object():
    twin, tx, rx, K, eps0, sig0 = _setup()
    ps, meas = _measure(twin, tx, rx, eps0, sig0)
    t = Targets.build(np.arange(len(tx)), np.full(len(tx), 3.5e9), meas)
    prior = prior_from_labels([o.label for o in twin.objects], 3.5e9, eps0, sig0)
    e, s = draw_starts(prior, 8, seed=1)
    assert np.allclose(e[0], prior.eps_r) and e.shape == (8, K)
    assert np.all((e >= prior.eps_range[:, 0] - 1e-9) & (e <= prior.eps_range[:, 1] + 1e-9))
    model = PerObjectMaterials(e, s, [o.thickness_m for o in twin.objects])
    res = calibrate(ps, model, t, CalibrationConfig(max_iter=100, refine_starts=3), progress=False)
    assert len(res.start_losses) == 3
    assert res.loss < 1e-6
    # Laplace std shrinks with lower noise (it scales with the assumed noise level)
    u1 = laplace(ps, res.model, t, CalibrationConfig(noise_db=1.0))
    u2 = laplace(ps, res.model, t, CalibrationConfig(noise_db=0.1))
    assert np.all(u2.log_std <= u1.log_std + 1e-12)


def test_power_law_model_reproduces_itu_dispersion():
    m = PerObjectMaterials(np.array([[5.24]]), np.array([[itu_eps_sigma("concrete", 3.5e9)[1]]]), [0.1],
                           power_law=True, reference_frequency_hz=3.5e9, b=np.array([0.0]), d=np.array([0.7822]))
    e, s = m.eps_sigma(torch.tensor([2.4e9, 5.8e9], dtype=torch.float64))
    for i, f in enumerate((2.4e9, 5.8e9)):
        ee, ss = itu_eps_sigma("concrete", f)
        assert float(e[0, i, 0]) == pytest.approx(ee, rel=1e-9)
        assert float(s[0, i, 0]) == pytest.approx(ss, rel=1e-9)
    pl = m.power_law_coefficients()[0, 0]
    assert pl[0] == pytest.approx(5.24) and pl[2] == pytest.approx(0.0462, rel=1e-6)


def test_bounded_fit_stays_in_the_box_and_recovers_truth_inside_it():
    twin, tx, rx, K, eps0, sig0 = _setup()
    eps_t, sig_t = eps0 * 1.1, sig0 * 0.9
    ps, meas = _measure(twin, tx, rx, eps_t, sig_t)
    t = Targets.build(np.arange(len(tx)), np.full(len(tx), 3.5e9), meas)
    th = [o.thickness_m for o in twin.objects]
    cfg = CalibrationConfig(max_iter=300)
    wide = with_relative_ranges(prior_from_labels([o.label for o in twin.objects], 3.5e9), 0.2)
    model = PerObjectMaterials(eps0[None], sig0[None], th, eps_bounds=wide.eps_range, sigma_bounds=wide.sigma_range)
    res = calibrate(ps, model, t, cfg, truth=(eps_t, sig_t), progress=False, uncertainty=False)
    assert max(res.mre(eps_t, sig_t)) < 1e-3
    # truth outside the box: the fit ends on the violated bounds, never outside
    eb, sb = np.stack([eps0 * 0.9, eps0 * 1.05], 1), np.stack([sig0 * 0.95, sig0 * 1.2], 1)
    model = PerObjectMaterials(eps0[None], sig0[None], th, eps_bounds=eb, sigma_bounds=sb)
    res = calibrate(ps, model, t, cfg, progress=False, uncertainty=False)
    assert np.all(res.eps_r >= eb[:, 0] * (1 - 1e-12)) and np.all(res.eps_r <= eb[:, 1] * (1 + 1e-12))
    assert np.all(res.sigma >= sb[:, 0] * (1 - 1e-12)) and np.all(res.sigma <= sb[:, 1] * (1 + 1e-12))
    np.testing.assert_allclose(res.eps_r, eb[:, 1], rtol=1e-6)
    np.testing.assert_allclose(res.sigma, sb[:, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="eps_bounds"):
        PerObjectMaterials(eps0[None], sig0[None], th, eps_bounds=np.stack([eps0, eps0 * 0.5], 1))
    with pytest.raises(ValueError, match="spread"):
        with_relative_ranges(wide, 1.5)
