"""--shrinkage auto (issue #17): the hierarchical prior's within-class correlation rho chosen by type-II maximum
likelihood on the Laplace evidence. Real Sionna traces: the room's five brick surfaces sharing one value (high rho),
floor_wall with both surfaces labelled concrete but differing (low rho)."""
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import _floor_wall as fw
from rftwin.calibrate import Targets
from rftwin.calibrate.bayes import SHRINKAGE_GRID, BayesConfig, ObjectPriors
from rftwin.calibrate.inference import BayesSetup, calibrate_posterior
from rftwin.cli.main import app
from rftwin.materials import itu_eps_sigma
from rftwin.materials.class_prior import itu_table
from rftwin.physics.channel import path_gain
from rftwin.scene import load
from rftwin.scene.sampling import random_positions
from rftwin.trace import SolverSettings, trace

ROOT = Path(__file__).resolve().parents[2]
F = 3.5e9
SETTINGS = SolverSettings(max_depth=2, samples_per_src=100_000)
LABEL = "concrete"  # both surfaces are labelled concrete: one class of two objects


def _gain_db(ps):
    with np.errstate(divide="ignore"):
        return 10 * np.log10(path_gain(ps.a_ref[None, None], ps.link, ps.num_links)[0, 0].numpy())


@pytest.fixture(scope="module")
def floor_wall():
    twin = load("floor_wall")
    tx, rx = fw.links(20, seed=5)
    e0, s0 = itu_eps_sigma(LABEL, F)
    e0, s0 = np.full(2, e0), np.full(2, s0)
    twin.set_materials(e0, s0)
    ps = trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False)
    return twin, e0, s0, tx, rx, ps


def _chosen_rho(case, eps_mult, sig_mult):
    """Truth: the two surfaces' eps_r - 1 and sigma times the given multipliers; 0.3 dB noise; the posterior with
    rho chosen by the evidence."""
    twin, e0, s0, tx, rx, ps = case
    twin.set_materials(1.0 + (e0 - 1.0) * np.asarray(eps_mult), s0 * np.asarray(sig_mult))
    y = _gain_db(trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False))
    y = y + np.random.default_rng(1).normal(0.0, 0.3, len(y))
    twin.set_materials(e0, s0)
    ok = np.isfinite(y)
    t = Targets.build(np.arange(len(y))[ok], np.full(ok.sum(), F), y[ok])
    setup = BayesSetup(ObjectPriors(twin.names, [LABEL, LABEL], itu_table(F), F),
                       BayesConfig(folds=0, label_correction=False, shrinkage_auto=True))
    res = calibrate_posterior(ps, t, setup, [o.thickness_m for o in twin.objects], num_starts=4)
    return _read(res, setup)


def _read(res, setup):
    """(chosen rho, {rho: log evidence}); checks the choice is the grid's best and is reported."""
    inf = res.inference
    grid = inf["shrinkage_evidence"]
    assert [r["shrinkage"] for r in grid] == list(SHRINKAGE_GRID)
    best = max(grid, key=lambda r: r["log_evidence"])
    assert inf["shrinkage"] == best["shrinkage"] == setup.priors.shrinkage
    assert inf["shrinkage_method"].startswith("evidence")
    return inf["shrinkage"], {r["shrinkage"]: r["log_evidence"] for r in grid}


@pytest.fixture(scope="module")
def room():
    """The room (five brick surfaces: one class), 60 links from three transmitters, traced at the labels."""
    twin = load("room")
    labels = [o.label for o in twin.objects]
    e0 = np.array([itu_eps_sigma(c, F)[0] for c in labels])
    s0 = np.array([itu_eps_sigma(c, F)[1] for c in labels])
    rng = np.random.default_rng(3)
    tx = random_positions(twin, 3, rng, (1.8, 2.5))
    rx = random_positions(twin, 60, rng, (0.8, 2.0))
    tx = tx[np.arange(60) % 3]
    settings = SolverSettings(max_depth=2, samples_per_src=30_000, seed=5)
    twin.set_materials(e0, s0)
    ps = trace(twin, tx, rx, settings, cache_dir=False, progress=False)
    return twin, labels, e0, s0, tx, rx, ps, settings


def test_evidence_prefers_high_rho_when_a_class_shares_its_values(room):
    """All five brick surfaces of the room are the same brick, 45 % above the label in eps_r - 1, sigma at 0.3 x
    (0.5 dB noise)."""
    twin, labels, e0, s0, tx, rx, ps, settings = room
    brick = np.array([c == "brick" for c in labels])
    assert brick.sum() == 5
    e, s = e0.copy(), s0.copy()
    e[brick] = 1.0 + (e0[brick] - 1.0) * 1.45
    s[brick] = s0[brick] * 0.3
    twin.set_materials(e, s)
    y = _gain_db(trace(twin, tx, rx, settings, cache_dir=False, progress=False))
    y = y + np.random.default_rng(1).normal(0.0, 0.5, len(y))
    twin.set_materials(e0, s0)
    ok = np.isfinite(y)
    t = Targets.build(np.arange(len(y))[ok], np.full(ok.sum(), F), y[ok])
    setup = BayesSetup(ObjectPriors(twin.names, labels, itu_table(F), F),
                       BayesConfig(folds=0, label_correction=False, shrinkage_auto=True))
    res = calibrate_posterior(ps, t, setup, [o.thickness_m for o in twin.objects], num_starts=4)
    rho, le = _read(res, setup)
    assert rho >= 0.7, le
    assert le[rho] > le[0.0] + 1.0, le  # decisively better than independent objects


def test_evidence_prefers_low_rho_when_the_objects_of_a_class_differ(floor_wall):
    """floor_wall, both surfaces labelled concrete: the floor's concrete lies below the label, the wall's above it
    (0.3 dB noise). (The room's brick walls are not individually determined by 60 links, so the evidence cannot
    tell there whether they differ.)"""
    rho, le = _chosen_rho(floor_wall, [0.55, 1.7], [3.0, 0.35])
    assert rho <= 0.25, le
    assert le[rho] > le[0.95] + 1.0, le


def test_cli_shrinkage_auto_reports_the_choice_and_bad_values_are_errors(tmp_path):
    meas = str(ROOT / "examples" / "measurements_v1.csv")
    out = tmp_path / "auto"
    res = CliRunner().invoke(app, ["calibrate", "room", meas, "--out", str(out), "--max-depth", "2",
                                   "--samples-per-src", "20000", "--retrace", "0", "--starts", "2", "--sweeps", "0",
                                   "--shrinkage", "auto", "--no-label-correction", "--folds", "0"])
    assert res.exit_code == 0, res.output
    inf = json.loads((out / "calibration.json").read_text())["inference"]
    assert inf["shrinkage_method"].startswith("evidence") and len(inf["shrinkage_evidence"]) == len(SHRINKAGE_GRID)
    assert inf["shrinkage"] in SHRINKAGE_GRID
    assert json.loads((out / "spec.json").read_text())["model"]["shrinkage"] is None  # 'auto' round-trips
    assert "chosen by evidence" in (out / "report.md").read_text()
    for value, word in (("abc", "--shrinkage"), ("1.5", "--shrinkage")):
        bad = tmp_path / f"bad_{value}"
        r = CliRunner().invoke(app, ["calibrate", "room", meas, "--out", str(bad), "--shrinkage", value])
        assert r.exit_code == 2 and word in r.output and "auto" in r.output, r.output
        assert not bad.exists()
