"""Seed 002 cluster metrics (C1-C2) and MPC snapshot metrics (M1-M4): clustering and matching by hand, and
`rftwin evaluate --mpcs` on MPCs simulated from the true twin with Sionna RT (F1 = 1, ~0 dB) vs a perturbed twin."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from rftwin.cli.main import app
from rftwin.data import Measurements, write_measurements
from rftwin.data.mpc import mpcs_from_paths, write_mpcs
from rftwin.evaluate.clusters import (
    ClusterConfig,
    MPCSet,
    cluster_metrics,
    cluster_mpcs,
    match_clusters,
    prune,
    summarize,
)
from rftwin.materials.itu import itu_eps_sigma
from rftwin.physics.channel import path_power
from rftwin.scene import room
from rftwin.scene.export import export_scene
from rftwin.trace import SolverSettings, trace
from rftwin.twin_io import MATERIALS_FILE, materials_document


def _set(link, p_db, tau_ns, az, el=None, L=2):
    return MPCSet(np.asarray(link), 10 ** (np.asarray(p_db, float) / 10), np.asarray(tau_ns, float) * 1e-9, L,
                  np.asarray(az, float), None if el is None else np.asarray(el, float))


# link 0: A = 3 MPCs near (10 ns, 0 deg), B = 2 near (30 ns, 90 deg), C = 2 straddling azimuth +-180 at 50 ns;
# link 1: one cluster. The MPC at 10 ns / 0 deg of link 1 must not join link 0's cluster A.
LINK = [0, 0, 0, 0, 0, 0, 0, 1]
P_DB = [-60, -63, -66, -70, -71, -75, -76, -65]
TAU = [10, 11, 9.5, 30, 31, 50, 50.5, 10]
AZ = [0, 2, -1, 90, 92, 179, -179, 0]


def test_clusters_by_hand():
    cfg = ClusterConfig(dynamic_range_db=None)
    c = cluster_mpcs(_set(LINK, P_DB, TAU, AZ), cfg)
    assert list(c.link) == [0, 0, 0, 1] and list(c.num_mpcs) == [3, 2, 2, 1]  # by link, strongest first
    p = 10 ** (np.array(P_DB) / 10)
    pa = p[:3].sum()
    assert c.power_db[0] == pytest.approx(10 * math.log10(pa))
    assert c.delay_s[0] == pytest.approx((p[:3] * np.array(TAU[:3])).sum() / pa * 1e-9)
    az, el = c.angles_deg()
    assert abs(abs(az[2]) - 180) < 1.0 and el[2] == pytest.approx(0, abs=1e-9)  # wraps around +-180
    assert list(c.label) == [0, 0, 0, 1, 1, 2, 2, 3]
    # single linkage at the resolution: 0, 4, 8 ns chain into one cluster, 0 and 6 ns stay apart
    assert len(cluster_mpcs(_set([0, 0, 0], [-60] * 3, [0, 4, 8], [0] * 3), cfg)) == 1
    assert len(cluster_mpcs(_set([0, 0], [-60] * 2, [0, 6], [0] * 2), cfg)) == 2
    assert len(cluster_mpcs(_set([0, 0], [-60] * 2, [0, 0], [0, 11]), cfg)) == 2  # 11 deg apart
    # dynamic range: MPCs more than 30 dB below the link's strongest are dropped
    kept = prune(_set([0, 0, 1], [-60, -95, -100], [0, 20, 0], [0, 0, 0]), ClusterConfig())
    assert len(kept) == 2 and list(kept.link) == [0, 1]
    with pytest.raises(ValueError, match="delay_reference"):
        ClusterConfig(delay_reference="relative")


def test_c1_c2_by_hand():
    cfg = ClusterConfig(dynamic_range_db=None)
    meas = _set(LINK, P_DB, TAU, AZ)
    # prediction: every MPC 2 dB stronger and 1 ns later, cluster B missing, a spurious cluster at 80 ns
    keep = [0, 1, 2, 5, 6, 7]
    pred = _set([LINK[i] for i in keep] + [0], [P_DB[i] + 2 for i in keep] + [-62],
                [TAU[i] + 1 for i in keep] + [80], [AZ[i] for i in keep] + [45])
    m = match_clusters(cluster_mpcs(meas, cfg), cluster_mpcs(pred, cfg), cfg)
    assert len(m.true) == 3 and list(m.link) == [0, 0, 1]
    np.testing.assert_allclose(m.power_error_db, 2.0)
    np.testing.assert_allclose(m.delay_error_s, 1e-9, rtol=1e-6)
    r = cluster_metrics(meas, pred, cfg)
    d = r.per_link
    assert list(d["true_clusters"]) == [3, 1] and list(d["pred_clusters"]) == [3, 1]
    assert list(d["clusters_matched"]) == [2, 1] and list(d["missed"]) == [1, 0] and list(d["false"]) == [1, 0]
    assert d["f1"][0] == pytest.approx(2 * 2 / 6) and d["f1"][1] == 1.0
    s = summarize(r)
    assert s["cluster_f1"] == pytest.approx(2 * 3 / 8) and s["cluster_precision"] == pytest.approx(0.75)
    assert s["cluster_power_mae_db"] == pytest.approx(2.0) and s["cluster_delay_mae_ns"] == pytest.approx(1.0)
    assert s["cluster_angle_mae_deg"] == pytest.approx(0.0, abs=1e-5)
    # M1: path gain from MPCs; link 1 has a single MPC (K-factor +inf, its error left out)
    assert d["true_path_gain_db"][1] == pytest.approx(-65.0) and d["pred_path_gain_db"][1] == pytest.approx(-63.0)
    assert d["true_k_factor_db"][1] == math.inf and np.isfinite(s["mpc_k_factor_mae_db"])
    # the same set against itself: perfect
    same = summarize(cluster_metrics(meas, meas, cfg))
    assert same["cluster_f1"] == 1.0 and same["cluster_power_mae_db"] == 0.0 and same["mpc_path_gain_mae_db"] == 0
    # gates: a 15 ns shift is outside the 10 ns delay gate -> nothing matched
    late = _set(LINK, P_DB, np.array(TAU) + 15, AZ)
    assert summarize(cluster_metrics(meas, late, cfg))["cluster_f1"] == 0.0


# ------------------------------------------------------------------------------------------ end to end
FREQ = 3.5e9
SETTINGS = SolverSettings(max_depth=2, samples_per_src=30_000, seed=7)  # = the CLI options used below


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Sionna RT traces the room with the true materials; every traced path within 30 dB is a measured MPC."""
    d = tmp_path_factory.mktemp("cluster_campaign")
    twin = room(FREQ)
    eps = np.array([itu_eps_sigma(o.label, FREQ)[0] for o in twin.objects]) * 1.5
    sig = np.array([itu_eps_sigma(o.label, FREQ)[1] for o in twin.objects]) * 3.0
    twin.set_materials(eps_r=eps, sigma=sig)
    tx = np.tile([0.5, 0.2, 2.5], (5, 1))
    rx = np.random.default_rng(4).uniform([-4.0, -4.0, 1.2], [4.0, 4.0, 2.0], size=(5, 3))
    ps = trace(twin, tx, rx, SETTINGS, cache_dir=False, progress=False)
    ids = [f"T{i}" for i in range(5)]
    gain = 10 * np.log10(np.bincount(ps.link.numpy(), weights=path_power(ps.a_ref).numpy(), minlength=5))
    write_measurements(d / "truth.csv", Measurements.from_arrays(tx, rx, FREQ, gain, link_id=ids))
    mp = mpcs_from_paths(ps, path_power(ps.a_ref), ids[:4], np.arange(4), dynamic_range_db=30.0)  # T4: no MPCs
    write_mpcs(d / "mpcs.csv", mp)
    export_scene(twin, d / "twin")
    doc = materials_document(twin, eps, sig, FREQ, labels=[o.label for o in room(FREQ).objects])
    (d / "twin" / MATERIALS_FILE).write_text(json.dumps(doc))
    return d


def test_evaluate_cli_with_mpcs(campaign, tmp_path):
    d = campaign
    out = tmp_path / "eval"
    r = CliRunner().invoke(app, ["evaluate", str(d / "twin"), str(d / "truth.csv"), "--out", str(out), "--mpcs",
                                 str(d / "mpcs.csv"), "--methods", "twin,itu", "--max-depth", "2",
                                 "--samples-per-src", "30000"])
    assert r.exit_code == 0, r.output
    met = json.loads((out / "metrics.json").read_text())
    tw, itu = met["metrics"]["twin"], met["metrics"]["itu"]
    # the true twin against MPCs simulated from itself (Sionna's powers vs rftwin's engine)
    assert tw["cluster_f1"] == 1.0 and tw["clusters_true"] == tw["clusters_matched"] >= 8
    assert tw["cluster_power_mae_db"] < 0.02 and tw["cluster_delay_mae_ns"] < 1e-3
    assert tw["cluster_angle_mae_deg"] < 1e-3 and tw["mpc_path_gain_mae_db"] < 0.02
    assert tw["mpc_delay_spread_mae_ns"] < 0.01 and tw["mpc_k_factor_mae_db"] < 0.02
    # the perturbed (ITU-labelled) twin is worse
    assert itu["cluster_power_mae_db"] > 0.5 > tw["cluster_power_mae_db"] * 10
    assert itu["mpc_path_gain_mae_db"] > 10 * tw["mpc_path_gain_mae_db"]
    assert itu["cluster_f1"] <= 1.0 and itu["mpc_k_factor_mae_db"] > tw["mpc_k_factor_mae_db"]
    per = pd.read_csv(out / "per_link.csv")
    assert np.isnan(per["twin_cluster_f1"][4]) and (per["twin_cluster_f1"][:4] == 1.0).all()  # T4: no MPCs
    assert (per["mpc_true_clusters"][:4] == per["twin_clusters_matched"][:4]).all()
    for c in ("itu_cluster_power_error_db", "twin_mpc_delay_spread_s", "mpc_true_k_factor_db"):
        assert c in per
    rep = (out / "report.md").read_text()
    assert "C1–C2" in rep and "| twin | " in rep
    assert "covers 4 of 5" in " ".join(met["notes"])
    # an MPC of a link that is not in the truth table
    bad = tmp_path / "bad.csv"
    bad.write_text((d / "mpcs.csv").read_text().replace("T1,", "X1,", 1))
    r = CliRunner().invoke(app, ["evaluate", str(d / "twin"), str(d / "truth.csv"), "--out", str(tmp_path / "e2"),
                                 "--mpcs", str(bad), "--methods", "twin"])
    msg = " ".join(r.output.split())
    assert r.exit_code == 2 and "bad.csv" in msg and "unknown link_id 'X1'" in msg, msg
