"""`rftwin calibrate --mpcs`: per-MPC power supervision from the command line, re-matched after every trace.

The 'sounder' is Sionna RT: the floor_wall scene traced with true materials (not the labels), every traced path
reported as an MPC with Sionna's own power (seeded estimation noise on delay, angle and power). Calibrating from
the ITU labels on the MPC powers alone recovers the true materials."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import _floor_wall as fw
from rftwin.cli.main import app
from rftwin.data import Measurements, write_measurements
from rftwin.data.mpc import mpcs_from_arrays, mpcs_from_paths, write_mpcs
from rftwin.physics.channel import path_power
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace

FREQ = 3.5e9
# true materials = ITU labels x these factors. The 0.1 m slabs of floor_wall make the reflection loss periodic in
# eps_r (thickness resonances): a larger departure from the labels lands in another, equally good basin.
EPS_X, SIG_X = 1.12, 0.7


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    d = tmp_path_factory.mktemp("mpc_campaign")
    twin = load("floor_wall")
    eps0, sig0 = fw.itu_materials(twin)
    twin.set_materials(eps0 * EPS_X, sig0 * SIG_X)
    tx, rx = fw.links(6, seed=3)
    ps = trace(twin, tx, rx, SolverSettings(max_depth=2, samples_per_src=30_000), cache_dir=False, progress=False)
    ids = [f"L{i:02d}" for i in range(len(tx))]
    meas = Measurements.from_arrays(tx, rx, FREQ, fw.sionna_gain_db(ps), link_id=ids)
    write_measurements(d / "meas.csv", meas)
    exact = mpcs_from_paths(ps, path_power(ps.a_ref), ids, np.arange(len(ids)), dynamic_range_db=40.0)
    rng = np.random.default_rng(0)
    q = len(exact)
    ang = {c: getattr(exact, c) + rng.normal(0, 0.5, q) for c in
           ("azimuth_arrival_deg", "elevation_arrival_deg", "azimuth_departure_deg", "elevation_departure_deg")}
    for c in ("elevation_arrival_deg", "elevation_departure_deg"):
        ang[c] = np.clip(ang[c], -90, 90)
    noisy = mpcs_from_arrays(exact.link_id, exact.delay_s + rng.normal(0, 0.2e-9, q),
                             exact.power_db + rng.normal(0, 0.1, q), **ang)
    write_mpcs(d / "mpcs.csv", noisy)
    return {"dir": d, "eps": eps0 * EPS_X, "sig": sig0 * SIG_X, "names": twin.names, "q": q,
            "per_link": pd.Series(exact.link_id).value_counts().to_dict()}


def _run(args):
    return CliRunner().invoke(app, ["calibrate", "floor_wall", *args])


def test_calibrate_from_mpc_powers_recovers_materials(campaign, tmp_path):
    d = campaign["dir"]
    out = tmp_path / "twin"
    r = _run([str(d / "meas.csv"), "--mpcs", str(d / "mpcs.csv"), "--terms", "mpc_power:mse_db:1", "--out",
              str(out), "--max-depth", "2", "--samples-per-src", "30000", "--starts", "4", "--refine", "2",
              "--retrace", "1", "--sweeps", "0", "--max-iter", "60"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "calibration.json").read_text())
    assert doc["loss_terms"] == ["mpc_power:mse_db:1"]
    mp = doc["mpc"]
    assert mp["mpcs"] == campaign["q"] and mp["matched"] == campaign["q"]  # every MPC found its traced path
    assert {k: v["mpcs"] for k, v in mp["per_link"].items()} == campaign["per_link"]
    assert all(v["matched"] == v["mpcs"] for v in mp["per_link"].values())
    assert mp["rms_residual_db"] < 0.5  # noise 0.1 dB
    for i, n in enumerate(campaign["names"]):
        rec = doc["objects"][n]
        assert rec["relative_permittivity"] == pytest.approx(campaign["eps"][i], rel=0.03), n
        assert rec["conductivity"] == pytest.approx(campaign["sig"][i], rel=0.2), n
    table = pd.read_csv(out / "mpc_matches.csv")
    assert len(table) == campaign["q"] and table["matched"].all() and (table["path_index"] >= 0).all()
    assert table["delay_error_s"].abs().max() < 5e-9 and table["aoa_error_deg"].max() < 10
    assert "MPC supervision" in r.output


def test_mpc_input_errors(campaign, tmp_path):
    d = campaign["dir"]
    lines = (d / "mpcs.csv").read_text().splitlines()
    common = ["--out", str(tmp_path / "x"), "--max-depth", "1", "--samples-per-src", "1000"]
    # a malformed value: file, row, line and column named
    bad = tmp_path / "bad_mpcs.csv"
    cells = lines[2].split(",")
    cells[2] = "loud"
    bad.write_text("\n".join([lines[0], lines[1], ",".join(cells), *lines[3:]]) + "\n")
    r = _run([str(d / "meas.csv"), "--mpcs", str(bad), *common])
    msg = " ".join(r.output.split())
    assert r.exit_code == 2 and "bad_mpcs.csv" in msg and "row 2" in msg and "'power_db'" in msg, msg
    # an MPC of a link that is not in the measurements
    unknown = tmp_path / "unknown_mpcs.csv"
    unknown.write_text("\n".join([*lines, "L99" + lines[1][lines[1].index(","):]]) + "\n")
    r = _run([str(d / "meas.csv"), "--mpcs", str(unknown), *common])
    msg = " ".join(r.output.split())
    assert r.exit_code == 2 and "unknown_mpcs.csv" in msg and "unknown link_id 'L99'" in msg, msg
    assert f"row {len(lines)}" in msg
    # MPCs without an mpc_power term, an mpc_power term without MPCs
    r = _run([str(d / "meas.csv"), "--mpcs", str(d / "mpcs.csv"), "--terms", "path_gain", *common])
    assert r.exit_code == 2 and "no mpc_power term" in " ".join(r.output.split())
    r = _run([str(d / "meas.csv"), "--terms", "path_gain,mpc_power", *common])
    assert r.exit_code == 2 and "needs an MPC table" in " ".join(r.output.split())
    assert not (tmp_path / "x" / "materials.json").exists()
