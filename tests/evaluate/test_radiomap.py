"""`rftwin radiomap`: Sionna's radio-map solver on the twin's (calibrated) materials."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from rftwin.cli.main import app
from rftwin.evaluate.radiomap import compute_radio_map
from rftwin.materials.itu import itu_eps_sigma
from rftwin.predict import predict_links
from rftwin.scene import room
from rftwin.scene.export import export_scene
from rftwin.trace import SolverSettings
from rftwin.twin_io import MATERIALS_FILE, load_twin, materials_document

FREQ = 3.5e9
TX = [0.5, 0.2, 2.5]


@pytest.fixture(scope="module")
def metal_twin(tmp_path_factory):
    """A 'calibrated' twin folder whose materials reflect much more strongly than the room's ITU labels."""
    d = tmp_path_factory.mktemp("twin")
    tw = room(FREQ)
    eps = np.array([itu_eps_sigma(o.label, FREQ)[0] for o in tw.objects])
    sig = np.full(len(eps), 1e3)
    tw.set_materials(eps_r=eps, sigma=sig)
    export_scene(tw, d)
    doc = materials_document(tw, eps, sig, FREQ, labels=[o.label for o in room(FREQ).objects])
    (d / MATERIALS_FILE).write_text(json.dumps(doc))
    return d


def test_radiomap_cli_uses_twin_materials(metal_twin, tmp_path):
    out = tmp_path / "map"
    r = CliRunner().invoke(app, ["radiomap", str(metal_twin), "--tx", "0.5, 0.2, 2.5", "--cell", "1",
                                 "--height", "1.5", "--samples-per-tx", "1000000", "--max-depth", "3",
                                 "--tx-power-dbm", "20", "--out", str(out)])
    assert r.exit_code == 0, r.output
    z = np.load(out / "radiomap.npz")
    pg, cc = z["path_gain_db"], z["cell_centers_m"]
    assert pg.shape == (1, 10, 10) and cc.shape == (10, 10, 3)  # the 10 x 10 m room in 1 m cells
    np.testing.assert_allclose(cc[..., 2], 1.5, atol=1e-5)
    np.testing.assert_allclose(z["x_m"], np.arange(10) - 4.5, atol=1e-5)
    np.testing.assert_allclose(z["rss_dbm"], pg + 20.0)
    assert float(z["frequency_hz"]) == FREQ and np.isfinite(pg).all()
    assert (out / "radiomap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # cells away from the transmitter agree with rftwin's point predictions at the cell centres (same materials)
    centres = cc.reshape(-1, 3)
    sel = np.random.default_rng(0).choice(len(centres), 20, replace=False)
    sel = sel[np.linalg.norm(centres[sel, :2] - TX[:2], axis=1) > 1.5]
    tw, doc = load_twin(metal_twin)
    pred = predict_links(tw, doc, np.tile(TX, (len(sel), 1)), centres[sel], np.full(len(sel), FREQ),
                         SolverSettings(max_depth=3, samples_per_src=100_000), progress=False)
    diff = pg.reshape(-1)[sel] - pred["path_gain_db"].to_numpy()
    assert np.median(np.abs(diff)) < 0.5

    # the uncalibrated (ITU) room gives a clearly different map: the twin's materials were used
    itu = compute_radio_map(room(FREQ), None, [TX], FREQ, 1.5, 1.0,
                            settings=SolverSettings(max_depth=3, samples_per_src=1_000_000))
    assert np.median(np.abs(itu.path_gain_db.reshape(-1)[sel] - pg.reshape(-1)[sel])) > 2.0


def test_radiomap_cli_errors(tmp_path):
    r = CliRunner().invoke(app, ["radiomap", "room", "--tx", "1 2", "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "--tx #1: expected three numbers" in r.output
    r = CliRunner().invoke(app, ["radiomap", "room", "--tx", "0 0 2", "--cell", "0", "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "--cell must be > 0" in r.output
    r = CliRunner().invoke(app, ["radiomap", str(tmp_path / "nope.xml"), "--tx", "0 0 2", "--out",
                                 str(tmp_path / "m")])
    assert r.exit_code == 2 and "nope.xml" in r.output
    assert not (tmp_path / "m").exists()


def test_cells_inside_closed_objects_are_masked():
    from rftwin.evaluate.radiomap import inside_objects

    tw = room(FREQ)
    pts = np.array([[-3.0, 3.0, 0.5], [3.0, -3.0, 0.5], [0.0, 0.0, 0.5], [-3.0, 3.0, 1.5], [-3.0, 4.5, 0.5]])
    np.testing.assert_array_equal(inside_objects(tw, pts), [True, True, False, False, False])
