"""Bayesian channel map and uncertainty-aware (NLL) calibration (seed 003, issue #6)."""
import numpy as np
import pytest
import torch

from rftwin.bcm import (
    BayesianChannelMap,
    BcmConfig,
    EmaBias,
    GpConfig,
    NllConfig,
    ResidualGp,
    calibrate_nll,
    fit_log_distance,
    fit_power_law,
    geometry_features,
    link_channel_parameters,
    sample_measurements,
)
from rftwin.evaluate.metrics import male_db
from rftwin.materials import PerObjectMaterials
from rftwin.physics.channel import path_power
from rftwin.physics.features import delay_moments
from rftwin.scene.indoor import IndoorLayout, free_grid, indoor
from rftwin.trace import SolverSettings, trace

F = 3.5e9
SETTINGS = SolverSettings(max_depth=2, samples_per_src=30_000, seed=3)


def test_trend_fit_on_los_subset_recovers_known_exponents():
    rng = np.random.default_rng(0)
    d = rng.uniform(2.0, 80.0, 200)
    los = rng.random(200) < 0.4
    gain = -40.0 - 10 * 2.3 * np.log10(d) - 18.0 * ~los + rng.normal(0, 0.5, 200)  # blocked links lose 18 dB
    tau = 4.0 * d ** 0.6 * np.where(los, 1.0, 3.0) * np.exp(rng.normal(0, 0.05, 200))
    g = fit_log_distance(d, gain, los)
    t = fit_power_law(d, tau, los)
    assert g.used_los_only and t.used_los_only
    assert g.n0 == pytest.approx(2.3, abs=0.1) and g.g0_db == pytest.approx(-40.0, abs=1.0)
    assert t.b0 == pytest.approx(0.6, abs=0.05) and t.a0 == pytest.approx(4.0, rel=0.15)
    biased = fit_log_distance(d, gain, None)  # all samples: the blocked ones distort the trend
    assert abs(biased.g0_db + 40.0) > abs(g.g0_db + 40.0)
    # too few LoS samples: falls back to all of them; one sample: free-space exponent
    assert not fit_log_distance(d, gain, np.arange(200) < 2).used_los_only
    assert fit_log_distance(d[:1], gain[:1]).n0 == 2.0
    # samples over a narrow distance range: the exponent stays physical (bounded least squares)
    dn = np.linspace(20.0, 21.0, 12)
    narrow = fit_log_distance(dn, -60.0 + rng.normal(0, 2.0, 12) + 40 * (dn - 20.0), np.ones(12, bool))
    assert 1.0 <= narrow.n0 <= 6.0 and np.isfinite(narrow(np.array([100.0])))
    with pytest.raises(ValueError, match="one length"):
        fit_log_distance(d, gain[:10])


def test_gp_posterior_variance_small_at_measurements_large_away():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (25, 2))
    y = 3 * np.sin(2 * X[:, 0]) + 2 * np.cos(3 * X[:, 1]) + rng.normal(0, 0.1, 25)
    gp = ResidualGp(GpConfig(restarts=1)).fit(X, y)
    m_at, v_at = gp.predict(X)
    far = np.array([[600.0, 600.0], [-700.0, 500.0]])  # far beyond the largest allowed length scale
    m_far, v_far = gp.predict(far)
    hp = gp.hyperparameters()
    assert np.max(v_at) < 0.2 * np.min(v_far)  # shrinks where measured, grows away
    assert v_far == pytest.approx(hp["amplitude_var"] + hp["noise_var"], rel=1e-3)  # prior variance far away
    assert np.abs(m_far).max() < 0.05 * np.abs(y).max()  # reverts to the zero prior mean
    assert np.sqrt(np.mean((m_at - y) ** 2)) < 0.5


@pytest.fixture(scope="module")
def indoor_case():
    """Indoor multi-room scene: truth = labels with the room walls changed; the twin is traced at the labels."""
    layout = IndoorLayout()
    twin = indoor(F, layout)
    eps0 = np.array([o.relative_permittivity for o in twin.objects])
    sig0 = np.array([o.conductivity for o in twin.objects])
    walls = np.array([n.startswith(("corridor_wall", "partitions")) for n in twin.names])
    eps_t, sig_t = np.where(walls, eps0 * 2.0, eps0), np.where(walls, sig0 * 8.0, sig0)
    grid = free_grid(layout, 1.0, 1.2)
    rx = grid[np.random.default_rng(2).choice(len(grid), 80, replace=False)]
    tx = np.repeat([[4.0, 6.0, 2.5]], len(rx), 0)
    twin.set_materials(eps_t, sig_t)
    ps_true = trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False)
    twin.set_materials(eps0, sig0)
    ps = trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False)
    keep = torch.nonzero((ps_true.paths_per_link() > 0) & (ps.paths_per_link() > 0)).squeeze(1)  # receivers reached
    ps_true, ps = ps_true.select_links(keep), ps.select_links(keep)
    p = (ps_true.a_ref.abs() ** 2).mean(dim=(1, 2))
    gain = 10 * np.log10(np.bincount(ps_true.link.numpy(), p.numpy(), minlength=ps.num_links))
    _, ds = delay_moments(path_power(ps_true.a_ref), ps_true.tau_s, ps_true.link, ps.num_links, empty=0.0)
    labels = PerObjectMaterials(eps0[None], sig0[None], [o.thickness_m for o in twin.objects])
    return {"twin": twin, "ps": ps, "gain": gain, "ds_ns": ds.numpy() * 1e9, "eps0": eps0, "sig0": sig0,
            "labels": labels}


def test_nll_calibration_improves_male_over_label_prior(indoor_case):
    c = indoor_case
    ps, gain = c["ps"], c["gain"]
    L = ps.num_links
    assert np.all(np.isfinite(gain)) and np.all(ps.paths_per_link().numpy() > 0)
    rng = np.random.default_rng(4)
    measured = sample_measurements("random", ps.rx_pos.numpy(), 25, rng)
    held = np.setdiff1d(np.arange(L), measured)
    noisy = gain[measured] + rng.normal(0, 0.5, len(measured))
    feats = geometry_features(ps, c["labels"](F), F, num_subcarriers=64)
    assert feats.path.shape == (L, 5) and feats.fade.shape == (L, 2) and np.all(np.isfinite(feats.fade))
    bcm = BayesianChannelMap(BcmConfig(gp=GpConfig(restarts=1)))
    bcm.fit(feats.subset(measured), noisy, c["ds_ns"][measured], reference=feats)
    cm = bcm.predict(feats)
    # the map's variance is smaller at the measured receivers than elsewhere
    assert np.median(cm.gain_var[measured]) < np.median(cm.gain_var[held])
    model = PerObjectMaterials(c["eps0"][None], c["sig0"][None], [o.thickness_m for o in c["twin"].objects])
    res = calibrate_nll(ps, model, cm, F, NllConfig(iterations=80, lr=0.05, seed=0),
                        progress=False)
    with torch.no_grad():
        g_label, _ = link_channel_parameters(ps, c["labels"](F), F)
        g_cal, _ = link_channel_parameters(ps, model(F), F)
    male_label = male_db(g_label[0].numpy()[held], gain[held])
    male_cal = male_db(g_cal[0].numpy()[held] + res.bias_db, gain[held])
    assert male_label > 1.0  # the labels are clearly wrong in this case
    assert male_cal < 0.7 * male_label
    assert len(res.history) == 80 and np.isfinite(res.loss)


def test_ema_bias():
    e = EmaBias(0.9)
    assert e.update(2.0) == 2.0 and e.update(0.0) == pytest.approx(1.8)
    with pytest.raises(ValueError, match="lambda"):
        EmaBias(1.0)


def test_sampling_modes_return_distinct_valid_indices():
    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(np.arange(20.0), np.arange(15.0)), -1).reshape(-1, 2)
    pos = np.column_stack([g, np.ones(len(g))])
    for mode in ("random", "expert", "trajectory"):
        idx = sample_measurements(mode, pos, 30, rng, features=pos[:, :2])
        assert len(np.unique(idx)) == 30 and idx.min() >= 0 and idx.max() < len(pos)
    traj = sample_measurements("trajectory", pos, 30, rng)
    steps = np.linalg.norm(np.diff(pos[traj, :2], axis=0), axis=1)
    assert np.median(steps) <= 1.5  # consecutive points of a walk
    spread = sample_measurements("expert", pos, 30, rng, features=pos[:, :2])
    dmin = lambda i: np.min(np.linalg.norm(pos[i, None, :2] - pos[None, i, :2], axis=-1) + 1e9 * np.eye(len(i)))
    assert dmin(spread) >= dmin(traj)  # farthest-point placement spreads out more than a walk
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sample_measurements("nope", pos, 3, rng)


def test_nll_calibration_accepts_a_neural_material_field(indoor_case):
    from rftwin.bcm.map import ChannelMap
    from rftwin.fields import FourierField

    c = indoor_case
    ps = c["ps"]
    L = ps.num_links
    twin = c["twin"]
    lo, hi = twin.bbox()
    fld = FourierField((lo - 1, hi + 1), [o.thickness_m for o in twin.objects], c["eps0"], c["sig0"],
                       reference_frequency_hz=F, num_features=16, width=32, depth=2, seed=0)
    with torch.no_grad():  # the untrained field equals the label materials
        g_fld, _ = link_channel_parameters(ps, fld(ps, torch.tensor([F])), F)
        g_lab, _ = link_channel_parameters(ps, c["labels"](F), F)
    torch.testing.assert_close(g_fld, g_lab, rtol=0, atol=1e-6)
    cm = ChannelMap(ps.rx_pos.numpy(), c["gain"], np.ones(L), c["ds_ns"], np.ones(L))
    calibrate_nll(ps, fld, cm, F, NllConfig(iterations=25, lr=5e-3, gain_bias=False, balance=False,
                                            eta_delay=0.0), progress=False)
    with torch.no_grad():
        g_cal, _ = link_channel_parameters(ps, fld(ps, torch.tensor([F])), F)
    mse = [float(np.mean((g[0].numpy() - c["gain"]) ** 2)) for g in (g_lab, g_cal)]
    assert mse[1] < 0.7 * mse[0]


def test_indoor_scene_loads_by_name():
    from rftwin.scene import load

    twin = load("indoor")
    assert len(twin.objects) >= 10 and len(set(twin.names)) == len(twin.names)
