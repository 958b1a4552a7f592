"""Evaluation: metrics, baselines, and `rftwin evaluate` end to end against Sionna-traced truth."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from rftwin.baselines.gp import fit_gp
from rftwin.baselines.pathloss import (
    fit_log_distance,
    scenario_name,
    tr38901_path_gain_db,
)
from rftwin.cli.main import app
from rftwin.data import Measurements, write_measurements
from rftwin.data.wideband import simulate_wideband, write_wideband
from rftwin.evaluate.grid import map_groups
from rftwin.evaluate.metrics import abs_error_stats_db, male_db, mcs, mre, ssim
from rftwin.materials.itu import itu_eps_sigma
from rftwin.scene import room
from rftwin.scene.export import export_scene
from rftwin.trace import SolverSettings, trace
from rftwin.twin_io import MATERIALS_FILE, materials_document

FREQ = 3.5e9
SETTINGS = SolverSettings(max_depth=3, samples_per_src=100_000, seed=7)


# ------------------------------------------------------------------------------------------------ metrics
def test_error_statistics_and_mre():
    st = abs_error_stats_db([1.0, -2.0, np.nan, 4.0], [0.0, 0.0, 0.0, np.nan])
    assert st["n"] == 2 and st["male_db"] == pytest.approx(1.5) and st["bias_db"] == pytest.approx(-0.5)
    assert st["median_db"] == pytest.approx(1.5) and st["p90_db"] == pytest.approx(1.9)
    assert np.isnan(male_db([np.nan], [1.0]))
    assert mre([1.1, 2.0, 5.0], [1.0, 2.0, 0.0]) == pytest.approx(0.05)  # true = 0 left out
    with pytest.raises(ValueError, match="shape mismatch"):
        male_db([1.0, 2.0], [1.0])


def test_ssim_properties():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:24, 0:24]
    a = -60 - 0.8 * np.hypot(x - 8, y - 12) + rng.normal(scale=0.5, size=x.shape)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, a + 3.0) > 0.95  # an offset mostly keeps the structure
    noisy = a + rng.normal(scale=3.0, size=a.shape)
    worse = a + rng.normal(scale=8.0, size=a.shape)
    assert 1.0 > ssim(a, noisy) > ssim(a, worse) > 0.0
    assert ssim(a, rng.permutation(a.ravel()).reshape(a.shape)) < 0.2  # structure destroyed
    holes = a.copy()
    holes[::3, ::4] = np.nan
    assert ssim(holes, a) == pytest.approx(1.0)  # NaN cells are ignored, not treated as errors
    assert ssim(holes, noisy) == pytest.approx(ssim(a, noisy), abs=0.05)
    assert ssim(a, a.T) == pytest.approx(ssim(a.T, a))
    with pytest.raises(ValueError, match="2-D maps"):
        ssim(a, a[:5])


def test_mcs_is_gain_invariant_and_detects_delay_errors():
    rng = np.random.default_rng(1)
    k = np.arange(64) - 32
    tau = rng.uniform(10e-9, 80e-9, size=(5, 4))
    amp = rng.normal(size=(5, 4)) + 1j * rng.normal(size=(5, 4))
    f = k * 200e6 / 64
    h = np.einsum("lp,lpk->lk", amp, np.exp(-2j * np.pi * f[None, None, :] * tau[..., None]))
    assert mcs(h * 3.0 * np.exp(1j * 0.7), h) == pytest.approx(1.0)
    h_shift = np.einsum("lp,lpk->lk", amp, np.exp(-2j * np.pi * f[None, None, :] * (tau[..., None] + 7e-9)))
    h_shift *= np.exp(2j * np.pi * f * 7e-9)  # same CFR up to a common delay ...
    assert mcs(h_shift, h) == pytest.approx(1.0)
    h_bad = np.einsum("lp,lpk->lk", amp[:, ::-1], np.exp(-2j * np.pi * f[None, None, :] * tau[..., None]))
    assert mcs(h_bad, h) < 0.9  # ... but swapped path amplitudes are not
    h_nan = h.copy()
    h_nan[0, 3] = np.nan
    assert mcs(h_nan, h) == pytest.approx(1.0)  # the non-finite vector is skipped


# ---------------------------------------------------------------------------------------------- baselines
def test_log_distance_fit_recovers_exponent():
    rng = np.random.default_rng(2)
    tx = np.zeros((40, 3))
    rx = rng.uniform(-30, 30, size=(40, 3))
    d = np.linalg.norm(rx, axis=1)
    f = rng.choice([2.4e9, 5.8e9], size=40)
    g = -40.0 - 10 * 2.7 * np.log10(d) - 10 * 2.3 * np.log10(f / 3.7e9)
    fit = fit_log_distance(tx, rx, f, g)
    assert fit.exponent == pytest.approx(2.7, abs=1e-9)
    assert fit.freq_exponent == pytest.approx(2.3, abs=1e-9)
    np.testing.assert_allclose(fit.predict(tx, rx, f), g, atol=1e-9)
    one_f = fit_log_distance(tx, rx, 3.5e9, g[f == 2.4e9].mean() - 27 * np.log10(d) + 0 * d)
    assert one_f.freq_exponent == 2.0 and one_f.exponent == pytest.approx(2.7, abs=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        fit_log_distance(tx[:1], rx[:1], 3.5e9, g[:1])


def test_tr38901_formulas():
    tx = np.array([[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]])
    rx = np.array([[10.0, 0.0, 1.0], [10.0, 0.0, 1.0]])
    d3 = np.hypot(10.0, 2.0)
    g, ok = tr38901_path_gain_db(tx, rx, 3.5e9, [True, False], "InH")
    assert ok.all()
    pl_los = 32.4 + 17.3 * np.log10(d3) + 20 * np.log10(3.5)
    pl_nlos = max(pl_los, 38.3 * np.log10(d3) + 17.30 + 24.9 * np.log10(3.5))
    np.testing.assert_allclose(-g, [pl_los, pl_nlos])
    # UMi street canyon: base station 10 m, user 1.5 m, 3.5 GHz; before and after the breakpoint
    tx = np.array([[0.0, 0.0, 10.0]] * 3)
    rx = np.array([[50.0, 0.0, 1.5], [800.0, 0.0, 1.5], [50.0, 0.0, 1.5]])
    g, ok = tr38901_path_gain_db(tx, rx, 3.5e9, [True, True, False], "umi_street_canyon")
    d_bp = 4 * 9.0 * 0.5 * 3.5e9 / 299_792_458.0
    assert 50 < d_bp < 800
    d3 = np.hypot(rx[:, 0], 8.5)
    pl1 = 32.4 + 21 * np.log10(d3[0]) + 20 * np.log10(3.5)
    pl2 = 32.4 + 40 * np.log10(d3[1]) + 20 * np.log10(3.5) - 9.5 * np.log10(d_bp**2 + 8.5**2)
    nlos = max(pl1, 35.3 * np.log10(d3[2]) + 22.4 + 21.3 * np.log10(3.5) - 0.3 * (1.5 - 1.5))
    np.testing.assert_allclose(-g, [pl1, pl2, nlos])
    _, ok = tr38901_path_gain_db(tx[:1], np.array([[5.0, 0.0, 1.5]]), 28e9, [True], "umi")
    assert not ok[0]  # 5 m is below the model's 10 m minimum
    with pytest.raises(ValueError, match="unknown 3GPP scenario"):
        scenario_name("rural")


def test_gp_interpolates_a_smooth_field():
    rng = np.random.default_rng(3)
    rx = np.column_stack([rng.uniform(0, 10, 60), rng.uniform(0, 10, 60), np.full(60, 1.2)])
    tx = np.zeros((60, 3))

    def field(p):
        return -50 - 3 * np.sin(p[:, 0] / 2) - 2 * np.cos(p[:, 1] / 3)

    gp = fit_gp(tx[:50], rx[:50], 3.5e9, field(rx[:50]) + rng.normal(scale=0.1, size=50), seed=0, restarts=0)
    mu, sd = gp.predict(tx[50:], rx[50:], 3.5e9, return_std=True)
    assert np.mean(np.abs(mu - field(rx[50:]))) < 0.5 and np.all(sd > 0)
    assert not gp.use_tx and not gp.use_freq


def test_map_groups_detect_grids_and_bin():
    xs, ys = np.meshgrid(np.arange(4) * 1.5, np.arange(3) * 2.0)
    rx = np.column_stack([xs.ravel(), ys.ravel(), np.ones(12)])
    tx = np.tile([0.0, 0.0, 3.0], (12, 1))
    (g,) = map_groups(tx, rx, np.full(12, 3.5e9))
    assert g.regular and g.shape == (3, 4)
    m = g.to_map(rx[:, 0] + 10 * rx[:, 1])
    np.testing.assert_allclose(m, xs + 10 * ys)
    scattered = rx + np.random.default_rng(0).uniform(-0.2, 0.2, size=rx.shape) * [1, 1, 0]
    assert map_groups(tx, scattered, np.full(12, 3.5e9)) == []
    (b,) = map_groups(tx, scattered, np.full(12, 3.5e9), cell_m=1.0)
    assert not b.regular and np.isfinite(b.to_map(np.ones(12))).sum() >= 9


# ------------------------------------------------------------------------------------------ end to end
def _true_values(twin):
    eps = np.array([itu_eps_sigma(o.label, FREQ)[0] for o in twin.objects]) * 1.3
    sig = np.array([itu_eps_sigma(o.label, FREQ)[1] for o in twin.objects]) * 0.6
    return eps, sig


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A 'measured' campaign: Sionna RT traces the room with the true materials (not rftwin's engine)."""
    d = tmp_path_factory.mktemp("campaign")
    twin = room(FREQ)
    eps, sig = _true_values(twin)
    twin.set_materials(eps_r=eps, sigma=sig)
    tx0 = np.array([0.5, 0.2, 2.5])
    xs, ys = np.meshgrid([-3.6, -1.2, 1.2, 3.6], [-3.6, -1.2, 1.2, 3.6])
    test_rx = np.column_stack([xs.ravel(), ys.ravel(), np.full(16, 1.5)])
    train_rx = np.random.default_rng(5).uniform([-4.5, -4.5, 1.3], [4.5, 4.5, 2.2], size=(10, 3))
    rx = np.vstack([test_rx, train_rx])
    tx = np.tile(tx0, (len(rx), 1))
    ps = trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False)
    p = (ps.a_ref.abs() ** 2).sum(dim=(1, 2)).numpy()
    link = ps.link.numpy()
    pw = np.bincount(link, weights=p, minlength=len(rx))
    tau = ps.tau_s.numpy()
    m1 = np.bincount(link, weights=p * tau, minlength=len(rx)) / pw
    m2 = np.bincount(link, weights=p * tau**2, minlength=len(rx)) / pw
    gain, ds = 10 * np.log10(pw), np.sqrt(np.maximum(m2 - m1**2, 0))
    ids = [f"T{i:02d}" for i in range(16)] + [f"C{i:02d}" for i in range(10)]
    test = Measurements.from_arrays(tx[:16], rx[:16], FREQ, gain[:16], delay_spread_s=ds[:16], link_id=ids[:16])
    train = Measurements.from_arrays(tx[16:], rx[16:], FREQ, gain[16:] + 0.0, link_id=ids[16:],
                                     tx_power_dbm=20.0)
    write_measurements(d / "truth.csv", test)
    write_measurements(d / "train.csv", train)
    wb = simulate_wideband(ps, ps.a_ref, [FREQ], ids[:16], np.arange(16))
    write_wideband(d / "truth_cfr.h5", wb)
    (d / "true_materials.json").write_text(json.dumps(
        {n: {"eps_r": float(e), "sigma": float(s)} for n, e, s in zip(twin.names, eps, sig)}))
    # a 'calibrated' twin folder that found the true materials (as `rftwin calibrate` writes it)
    export_scene(twin, d / "twin")
    labels = [o.label for o in room(FREQ).objects]
    doc = materials_document(twin, eps, sig, FREQ, labels=labels)
    (d / "twin" / MATERIALS_FILE).write_text(json.dumps(doc))
    return d


def test_evaluate_cli_end_to_end(campaign, tmp_path):
    d = campaign
    out = tmp_path / "eval"
    r = CliRunner().invoke(app, ["evaluate", str(d / "twin"), str(d / "truth.csv"), "--out", str(out),
                                 "--train", str(d / "train.csv"), "--true-materials", str(d / "true_materials.json"),
                                 "--wideband", str(d / "truth_cfr.h5"), "--max-depth", "3",
                                 "--samples-per-src", "100000"])
    assert r.exit_code == 0, r.output
    met = json.loads((out / "metrics.json").read_text())
    assert met["methods"] == ["twin", "itu", "log_distance", "tr38901", "gp"]
    m = met["metrics"]
    # the twin with the true materials reproduces Sionna's measurements ...
    assert m["twin"]["n"] == 16 and m["twin"]["male_db"] < 0.05
    assert m["twin"]["delay_spread_mae_ns"] < 0.1
    assert m["twin"]["ssim"] > 0.99 and m["twin"]["mcs"] > 0.999
    assert m["twin"]["mre_eps_r"] < 1e-6 and m["twin"]["mre_sigma"] < 1e-6
    # ... the ITU-labelled (uncalibrated) twin does not
    assert m["itu"]["male_db"] > 5 * m["twin"]["male_db"] and m["itu"]["male_db"] > 0.1
    assert m["itu"]["mre_eps_r"] == pytest.approx(0.3 / 1.3, rel=1e-6)
    assert m["itu"]["mre_sigma"] == pytest.approx(0.4 / 0.6, rel=1e-6)
    for b in ("log_distance", "tr38901", "gp"):
        assert np.isfinite(m[b]["male_db"]) and m[b]["n"] == 16
        assert "mcs" not in m[b] and "delay_spread_mae_ns" not in m[b]
    assert met["info"]["tr38901"]["scenario"] == "inh-office"
    assert met["info"]["tr38901"]["los_links"] == 16  # the transmitter sees every grid receiver in this room

    per = pd.read_csv(out / "per_link.csv")
    assert list(per["link_id"]) == [f"T{i:02d}" for i in range(16)]
    truth = pd.read_csv(d / "truth.csv")
    np.testing.assert_allclose(per["true_path_gain_db"], truth["path_gain_db"])
    for meth in met["methods"]:
        np.testing.assert_allclose(per[f"{meth}_abs_error_db"],
                                   np.abs(per[f"{meth}_path_gain_db"] - per["true_path_gain_db"]))
    assert per["twin_mcs"].min() > 0.99 and not per["in_train"].any()
    params = pd.read_csv(out / "parameters.csv")
    assert len(params) == 9
    rep = (out / "report.md").read_text()
    assert "| twin | 16 |" in rep and "uncalibrated twin (ITU labels)" in rep and "3GPP TR 38.901" in rep
    for png in ("cdf_abs_error.png", "maps.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_without_optional_inputs_and_bad_input(campaign, tmp_path):
    d = campaign
    out = tmp_path / "eval"
    r = CliRunner().invoke(app, ["evaluate", "room", str(d / "truth.csv"), "--out", str(out), "--methods",
                                 "twin,itu,tr38901", "--scenario", "umi", "--max-depth", "2",
                                 "--samples-per-src", "20000"])
    assert r.exit_code == 0, r.output
    met = json.loads((out / "metrics.json").read_text())
    assert met["methods"] == ["twin", "tr38901"]  # a plain ITU scene: its twin row is the ITU baseline
    assert met["info"]["tr38901"]["scenario"] == "umi-street-canyon"
    notes = " ".join(met["notes"])
    assert "MCS not computed" in notes and "uncalibrated scene" in notes
    assert met["metrics"]["twin"]["male_db"] > 0.1  # ITU materials differ from the true ones

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"no_such_wall": {"eps_r": 3, "sigma": 0.1}}))
    r = CliRunner().invoke(app, ["evaluate", str(d / "twin"), str(d / "truth.csv"), "--out", str(tmp_path / "e2"),
                                 "--true-materials", str(bad), "--methods", "tr38901", "--max-depth", "1",
                                 "--samples-per-src", "10000"])
    assert r.exit_code == 2 and "bad.json, object 'no_such_wall': no such object" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["evaluate", "room", str(d / "truth.csv"), "--out", str(tmp_path / "e3"),
                                 "--methods", "twin,nerf"])
    assert r.exit_code == 2 and "unknown method" in r.output
