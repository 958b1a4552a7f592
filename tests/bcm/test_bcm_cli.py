"""``rftwin calibrate --terms bcm``: the Bayesian channel map as a supervision term of the one calibration loop,
end to end on the room with badly wrong labels (measurements simulated by Sionna at the scene's true materials)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rftwin.cli.main import app
from rftwin.scene import load
from rftwin.trace import SolverSettings
from rftwin.trace.simulate import trace_path_gain_db

SMALL = ["--max-depth", "2", "--samples-per-src", "20000", "--retrace", "0"]


@pytest.fixture(scope="module")
def wrong_labels(tmp_path_factory):
    """36 measured links of two transmitters in the room (brick walls and floor), labels that call the walls and
    floor wood (a permittivity half the truth): the label twin is several dB off."""
    d = tmp_path_factory.mktemp("bcm_cli")
    twin = load("room")
    rng = np.random.default_rng(3)
    tx = np.array([[0.0, 0.0, 2.5], [-2.0, 1.5, 2.0]])
    rx = np.column_stack([rng.uniform(-3.5, 3.5, 18), rng.uniform(-2.5, 2.5, 18), rng.uniform(1.0, 1.8, 18)])
    TX, RX = np.repeat(tx, len(rx), 0), np.tile(rx, (len(tx), 1))
    _, g = trace_path_gain_db(twin, TX, RX, SolverSettings(max_depth=2, samples_per_src=20000), progress=False)
    ok = np.isfinite(g)
    pd.DataFrame({"tx_x": TX[ok, 0], "tx_y": TX[ok, 1], "tx_z": TX[ok, 2], "rx_x": RX[ok, 0], "rx_y": RX[ok, 1],
                  "rx_z": RX[ok, 2], "frequency_hz": 3.5e9, "path_gain_db": g[ok]}).to_csv(d / "m.csv", index=False)
    (d / "labels.yaml").write_text("".join(f"{n}: wood\n" for n in twin.names if n.startswith(("wall", "floor"))))
    return d


def test_bcm_term_calibrates_and_proves_it_on_held_out_links(wrong_labels):
    d = wrong_labels
    out = d / "out"
    res = CliRunner().invoke(app, ["calibrate", "room", str(d / "m.csv"), "--out", str(out), "--terms", "bcm",
                                   "--labels", str(d / "labels.yaml"), "--bcm-targets", "30", "--folds", "3",
                                   *SMALL])
    assert res.exit_code == 0, res.output
    cal = json.loads((out / "calibration.json").read_text())
    inf = cal["inference"]
    assert inf["supervision"] == "bcm" and inf["targets_per_transmitter"] == 30
    ho = inf["heldout"]["features"]["path_gain"]
    assert ho["rows"] == inf["measured_links"]  # every measured link predicted once, from a map without it
    assert ho["calibrated_rmse"] < 0.5 * ho["label_rmse"], ho  # wrong labels: the map-supervised twin is better
    assert inf["verdict"] == "improves" and not inf["reverted_to_labels"]
    assert set(inf["bcm"]["gp"]) == {"gain_db"}  # no delay spreads measured: a map of path gain alone
    mats = json.loads((out / "materials.json").read_text())
    walls = [mats["objects"][n]["relative_permittivity"] for n in mats["objects"] if n.startswith("wall")]
    assert np.median(walls) > 2.3  # from the wood labels (eps_r 1.99) towards the brick truth (3.91)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["supervision"]["terms"] == "bcm" and spec["supervision"]["bcm_targets"] == 30


@pytest.mark.parametrize("args,message", [
    (["--terms", "bcm,path_gain"], "'bcm' stands alone"),
    (["--terms", "bcm", "--bcm-targets", "0"], "--bcm-targets must be >= 1"),
    (["--terms", "bcm", "--model", "fourier"], "--terms bcm calibrates per-object"),
])
def test_bcm_term_bad_options(tmp_path, args, message):
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["calibrate", "room", "examples/measurements_v1.csv", "--out", str(out), *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not out.exists()


def test_bcm_term_bad_measurements_name_the_problem_and_write_nothing(wrong_labels, tmp_path):
    """Several frequencies (the map is fitted at one), or delay spreads missing on some rows (the reader names the
    rows and the column): a clear error before any fit, no output folder."""
    multi = tmp_path / "multi"
    res = CliRunner().invoke(app, ["calibrate", "room", "examples/measurements_v2.csv", "--out", str(multi),
                                   "--terms", "bcm", *SMALL])
    assert res.exit_code == 2 and "--terms bcm" in res.output and "one frequency" in res.output, res.output
    assert not multi.exists()
    m = pd.read_csv(wrong_labels / "m.csv")
    m["delay_spread_s"] = np.where(np.arange(len(m)) % 2 == 0, 20e-9, np.nan)
    m.to_csv(tmp_path / "partial.csv", index=False)
    part = tmp_path / "partial"
    res = CliRunner().invoke(app, ["calibrate", "room", str(tmp_path / "partial.csv"), "--out", str(part),
                                   "--terms", "bcm", "--bcm-targets", "5", *SMALL])
    assert res.exit_code == 2 and "row 2 (line 3), column 'delay_spread_s': missing value" in res.output, res.output
    assert not part.exists()
