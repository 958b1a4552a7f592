"""PathSet storage, caching, device-to-device tracing, and the CLI commands end to end."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from rftwin.cli.main import app
from rftwin.pathset import PathSet
from rftwin.scene import load
from rftwin.trace import SolverSettings, trace
from rftwin.trace.tracer import plan_calls

ROOT = Path(__file__).resolve().parents[2]
S = SolverSettings(max_depth=2, samples_per_src=50_000)


def test_pathset_cache_roundtrip_and_views(tmp_path):
    twin = load("room")
    tx = np.array([[0.0, 0.0, 1.5], [1.0, 1.0, 2.0]])
    rx = np.array([[3.0, 1.0, 1.0], [-4.0, -1.0, 2.0]])
    ps = trace(twin, tx, rx, S, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    ps2 = trace(twin, tx, rx, S, cache_dir=tmp_path)  # from cache
    assert torch.equal(ps.a_ref, ps2.a_ref) and ps2.meta["object_names"] == twin.names
    sub = ps.select_links([1])
    assert sub.num_links == 1 and sub.num_paths == int((ps.link == 1).sum())
    pad = ps.padded()
    assert pad["path_mask"].shape[0] == 2 and int(pad["path_mask"].sum()) == ps.num_paths
    back = PathSet.load(files[0])
    assert back.num_paths == ps.num_paths


def test_device_to_device_traces_only_requested_pairs():
    tx = np.array([[0, 0, 1.0], [1, 0, 1.0], [2, 0, 1.0]], dtype=float)
    rx = np.array([[0, 1, 1.0], [1, 1, 1.0], [2, 1, 1.0]], dtype=float)
    calls = plan_calls(tx, rx)  # 3 pairs of a 3x3 grid: grouped by transmitter
    assert len(calls) == 3 and sum(int((g >= 0).sum()) for _, _, g in calls) == 3
    assert all(len(r) == 1 for _, r, _ in calls)
    full_tx, full_rx = np.repeat(tx, 3, 0), np.tile(rx, (3, 1))
    whole = plan_calls(full_tx, full_rx)  # the full grid: one call per transmitter
    assert len(whole) == 3 and all(len(t) == 1 and len(r) == 3 for t, r, _ in whole)
    split = plan_calls(full_tx, full_rx, lanes_per_pair=10, max_lanes=20)  # 2 pairs per call at most
    links = np.concatenate([g[g >= 0] for _, _, g in split])
    assert len(split) == 6 and all(g.size <= 2 for _, _, g in split) and sorted(links.tolist()) == list(range(9))
    twin = load("room")
    ps = trace(twin, tx, rx, S, cache_dir=False)
    assert ps.num_links == 3 and set(ps.link.tolist()) == {0, 1, 2}


def test_large_link_sets_are_split_into_solver_calls(monkeypatch):
    """Calls above the solver's lane budget are split over receivers; the traced paths do not change."""
    import rftwin.trace.tracer as tracer

    twin = load("room")
    tx = np.array([[-1.0, 0.0, 1.5], [1.5, 1.0, 2.0]])
    rx = np.array([[0.5, 2.0, 1.0], [-2.0, -1.0, 1.5], [1.0, -2.0, 2.0]])
    txl, rxl = np.repeat(tx, 3, 0), np.tile(rx, (2, 1))
    whole = trace(twin, txl, rxl, S, cache_dir=False)
    monkeypatch.setattr(tracer, "MAX_SOLVER_LANES", S.max_depth * S.samples_per_src)  # one pair per call
    assert len(plan_calls(txl, rxl, S.max_depth * S.samples_per_src)) == 6
    parts = trace(twin, txl, rxl, S, cache_dir=False)
    for lk in range(6):
        a = np.sort(whole.a_ref[whole.link == lk].abs().flatten().numpy())
        b = np.sort(parts.a_ref[parts.link == lk].abs().flatten().numpy())
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_cli_doctor_predict_calibrate(tmp_path):
    r = CliRunner()
    res = r.invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["sionna_ok"] is True
    out = tmp_path / "pred.csv"
    res = r.invoke(app, ["predict", "room", str(ROOT / "examples/links.csv"), "--out", str(out),
                         "--max-depth", "2", "--samples-per-src", "50000"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert {"path_gain_db", "rss_dbm", "delay_spread_s"} <= set(df.columns) and df["path_gain_db"].notna().all()
    cal = tmp_path / "cal"
    res = r.invoke(app, ["calibrate", "room", str(ROOT / "examples/measurements_v1.csv"), "--out", str(cal),
                         "--max-depth", "2", "--samples-per-src", "50000", "--starts", "2", "--refine", "1",
                         "--max-iter", "20"])
    assert res.exit_code == 0, res.output
    doc = json.loads((cal / "materials.json").read_text())
    assert doc["reference_frequency_hz"] == 3.5e9 and set(doc["objects"]) == set(load("room").names)
    assert (cal / "scene.xml").is_file() and (cal / "report.md").is_file() and (cal / "convergence.png").is_file()
    # the calibrated twin folder is a valid input of predict, and its Sionna XML loads with the same objects
    assert load(cal / "scene.xml").names == load("room").names
    res = r.invoke(app, ["predict", str(cal), str(ROOT / "examples/links.csv"), "--out", str(tmp_path / "p2.csv"),
                         "--max-depth", "2", "--samples-per-src", "50000"])
    assert res.exit_code == 0, res.output


def test_cli_bad_measurements_give_clear_error_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz,path_gain_db\n0,0,1.5,1,1,1,-5,-60\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["calibrate", "room", str(bad), "--out", str(out)])
    assert res.exit_code == 2
    assert "bad.csv" in res.output and "frequency_hz" in res.output
    assert not out.exists()
