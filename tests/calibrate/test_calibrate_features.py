"""Generalised targets and losses (issue #3): path gain + delay spread, complex CFR, per-MPC powers, SMAPE/NAE/MSE
terms, the unknown power reference (closed form and EMA offset) and the MAP prior. Measurements are computed from
Sionna RT's own path coefficients (paths.a) for known materials; calibration starts from perturbed values."""
import numpy as np
import pytest
import torch

import _floor_wall as fw
from rftwin.calibrate import CalibrationConfig, LossTerm, Targets, calibrate, parse_terms
from rftwin.calibrate.problem import simulate_features
from rftwin.materials.per_object import PerObjectMaterials, prior_from_labels
from rftwin.physics.channel import path_gain, path_power
from rftwin.physics.features import cfr_from_paths, delay_moments
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace

SETTINGS = SolverSettings(max_depth=2, samples_per_src=100_000)
F = 3.5e9
BW, NSC = 100e6, 32



@pytest.fixture(scope="module")
def sionna(tmp_path_factory):
    twin = load("floor_wall")
    tx, rx = fw.links(8, seed=5)
    eps0, sig0 = fw.itu_materials(twin)
    eps_t, sig_t = eps0 * np.array([1.06, 0.95]), sig0 * np.array([0.9, 1.15])
    twin.set_materials(eps_t, sig_t)
    ps = trace(twin, tx, rx, SETTINGS, cache_dir=tmp_path_factory.mktemp("cache"))
    a = ps.a_ref[None, None]  # Sionna's coefficients [1, 1, N, R, T]
    g = 10 * np.log10(path_gain(a, ps.link, ps.num_links)[0, 0].numpy())
    md, ds = delay_moments(path_power(a), ps.tau_s, ps.link, ps.num_links, empty=0.0)
    H = cfr_from_paths(a[..., 0, 0], ps.tau_s, ps.link, ps.num_links, F, BW, NSC)[0, 0].numpy()  # [L, K]
    pw = 10 * np.log10(path_power(a)[0, 0].numpy())
    return dict(ps=ps, tx=tx, eps0=eps0, sig0=sig0, eps_t=eps_t, sig_t=sig_t, g=g, ds=ds[0, 0].numpy(),
                md=md[0, 0].numpy(), H=H, pw=pw, thickness=[o.thickness_m for o in twin.objects],
                labels=[o.label for o in twin.objects])


def _model(s, fit=("eps_r", "sigma")):
    return PerObjectMaterials(s["eps0"][None], s["sig0"][None], s["thickness"], fit=fit)


def _rows(s):
    return np.arange(len(s["tx"])), np.full(len(s["tx"]), F)


def _assert_recovered(res, s, rtol=1e-3):
    np.testing.assert_allclose(res.eps_r, s["eps_t"], rtol=rtol)
    np.testing.assert_allclose(res.sigma, s["sig_t"], rtol=rtol)


def test_engine_features_match_sionna_features(sionna):
    s = sionna
    link, f = _rows(s)
    t = Targets.build(link, f, s["g"], delay_spread_s=s["ds"], mean_delay_s=s["md"], cfr=s["H"], cfr_bandwidth_hz=BW)
    m = PerObjectMaterials(s["eps_t"][None], s["sig_t"][None], s["thickness"])
    with torch.no_grad():
        ft = simulate_features(s["ps"], m, t)
        ft_chunked = simulate_features(s["ps"], m, t, chunk_size=50)  # streamed over path chunks
    for name, ref in (("path_gain_db", s["g"]), ("delay_spread_s", s["ds"]), ("mean_delay_s", s["md"])):
        np.testing.assert_allclose(getattr(ft, name)[0].numpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        np.testing.assert_allclose(getattr(ft_chunked, name)[0].numpy(), getattr(ft, name)[0].numpy(), rtol=1e-9)
    err = np.abs(ft.cfr[0].numpy() - s["H"]).max() / np.abs(s["H"]).max()
    assert err < 1e-3
    np.testing.assert_allclose(ft_chunked.cfr.numpy(), ft.cfr.numpy(), rtol=1e-9, atol=1e-18)


@pytest.mark.parametrize("optimizer,spec", [("lm", "path_gain:mse_db,delay_spread:mse:0.5"),
                                            ("lbfgs", "path_gain:smape,delay_spread:smape")])
def test_recovers_materials_from_path_gain_and_delay_spread(sionna, optimizer, spec):
    s = sionna
    link, f = _rows(s)
    t = Targets.build(link, f, s["g"], delay_spread_s=s["ds"])
    cfg = CalibrationConfig(optimizer=optimizer, terms=parse_terms(spec), max_iter=150, patience=10)
    res = calibrate(s["ps"], _model(s), t, cfg, progress=False, uncertainty=optimizer == "lm")
    _assert_recovered(res, s, rtol=2e-3)
    assert res.terms == [str(x) for x in parse_terms(spec)]
    if optimizer == "lm":
        assert set(res.uncertainty.noise) == {"path_gain", "delay_spread"}


def test_recovers_materials_from_complex_cfr(sionna):
    s = sionna
    link, f = _rows(s)
    t = Targets.build(link, f, cfr=s["H"], cfr_bandwidth_hz=BW)
    res = calibrate(s["ps"], _model(s), t, CalibrationConfig(terms=(LossTerm("cfr", "nmse"),), max_iter=100),
                    progress=False)
    assert res.loss < 1e-6
    _assert_recovered(res, s)


def test_recovers_materials_from_matched_mpc_powers(sionna):
    s = sionna
    ps = s["ps"]
    # the three strongest traced paths of every link, as an MPC matcher would pair them (path index, power dB)
    order = np.lexsort((-s["pw"], ps.link.numpy()))
    idx = np.concatenate([order[ps.link.numpy()[order] == k][:3] for k in range(ps.num_links)])
    link, f = _rows(s)
    t = Targets.build(link, f, mpc_path=idx, mpc_power_db=s["pw"][idx])
    res = calibrate(ps, _model(s), t, CalibrationConfig(terms=(LossTerm("mpc_power", "mse_db"),), max_iter=100),
                    progress=False, uncertainty=False)
    _assert_recovered(res, s)


def test_missing_feature_values_are_left_out(sionna):
    s = sionna
    link, f = _rows(s)
    ds = s["ds"].copy()
    ds[::3] = np.nan  # not measured on every third link
    g = s["g"].copy()
    g[1] = np.nan
    t = Targets.build(link, f, g, delay_spread_s=ds)
    assert int(t.mask("delay_spread").sum()) == len(ds) - len(ds[::3]) and t.available() == ["path_gain",
                                                                                               "delay_spread"]
    cfg = CalibrationConfig(optimizer="adam", lr=0.05, terms=parse_terms("path_gain:nae,delay_spread:smape"),
                            max_iter=3)
    res = calibrate(s["ps"], _model(s), t, cfg, progress=False, uncertainty=False)
    assert np.isfinite(res.loss) and np.all(np.isfinite(res.eps_r))
    res = calibrate(s["ps"], _model(s), t, CalibrationConfig(terms=parse_terms("path_gain,delay_spread:mse"),
                                                             max_iter=100), progress=False, uncertainty=False)
    _assert_recovered(res, s, rtol=2e-3)


@pytest.mark.parametrize("mode", ["closed_form", "ema"])
def test_gain_offset_is_estimated_not_absorbed(sionna, mode):
    s = sionna
    link, f = _rows(s)
    out = []
    for shift in (0.0, 7.0):
        t = Targets.build(link, f, s["g"] + shift, delay_spread_s=s["ds"])
        cfg = CalibrationConfig(terms=parse_terms("path_gain,delay_spread:mse"), offset=mode, offset_ema=0.5,
                                max_iter=150)
        out.append(calibrate(s["ps"], _model(s), t, cfg, progress=False, uncertainty=False))
    assert out[0].offset_mode == mode
    assert out[1].offset_db == pytest.approx(out[0].offset_db + 7.0, abs=1e-3)
    np.testing.assert_allclose(out[1].eps_r, out[0].eps_r, rtol=1e-4)
    np.testing.assert_allclose(out[1].sigma, out[0].sigma, rtol=1e-4)
    # measured with +7 dB: the offset carries it, the materials are the true ones
    assert out[1].offset_db == pytest.approx(7.0, abs=0.05)
    _assert_recovered(out[1], s, rtol=5e-3)
    assert all("offset_db" in r for r in out[1].history)


def test_map_prior_pulls_towards_prior(sionna):
    s = sionna
    link, f = _rows(s)
    t = Targets.build(link[:3], f[:3], s["g"][:3])  # 3 links, 4 unknowns: under-determined
    prior = prior_from_labels(s["labels"], F, s["eps0"], s["sig0"])
    far = PerObjectMaterials(s["eps0"][None] * 1.6, s["sig0"][None] * 3.0, s["thickness"])
    res0 = calibrate(s["ps"], far, t, CalibrationConfig(max_iter=100), progress=False, uncertainty=False)
    far = PerObjectMaterials(s["eps0"][None] * 1.6, s["sig0"][None] * 3.0, s["thickness"])
    res1 = calibrate(s["ps"], far, t, CalibrationConfig(max_iter=100, prior_weight=1.0), prior=prior,
                     progress=False, uncertainty=False)

    def dist(r):
        return float(np.sum((np.log(r.eps_r - 1) - np.log(s["eps0"] - 1)) ** 2)
                     + np.sum(np.log(r.sigma / s["sig0"]) ** 2))

    assert dist(res1) < dist(res0)
    with pytest.raises(ValueError, match="MaterialPrior"):
        calibrate(s["ps"], _model(s), t, CalibrationConfig(prior_weight=1.0), progress=False)


def test_loss_spec_and_target_errors(sionna):
    assert parse_terms("path_gain, delay_spread:smape:0.5") == (LossTerm("path_gain", "mse_db", 1.0),
                                                                 LossTerm("delay_spread", "smape", 0.5))
    with pytest.raises(ValueError, match="unknown feature 'k_factor'"):
        parse_terms("k_factor")
    with pytest.raises(ValueError, match="does not apply"):
        parse_terms("cfr:smape")
    with pytest.raises(ValueError, match="weight 'x' is not a number"):
        parse_terms("path_gain:nae:x")
    with pytest.raises(ValueError, match="Levenberg-Marquardt"):
        CalibrationConfig(terms=parse_terms("path_gain:smape"))
    with pytest.raises(ValueError, match="unknown offset mode"):
        CalibrationConfig(offset="median")
    s = sionna
    link, f = _rows(s)
    with pytest.raises(ValueError, match="'delay_spread_s' has 3 values"):
        Targets.build(link, f, s["g"], delay_spread_s=[1e-9, 2e-9, 3e-9])
    with pytest.raises(ValueError, match="cfr_bandwidth_hz"):
        Targets.build(link, f, cfr=s["H"])
    t = Targets.build(link, f, s["g"])
    with pytest.raises(ValueError, match=r"\['delay_spread'\]"):
        calibrate(s["ps"], _model(s), t, CalibrationConfig(terms=parse_terms("delay_spread:mse")), progress=False)
