"""`rftwin calibrate --wideband`: the CFR sidecar of the example campaign supervises calibration."""
import json
from pathlib import Path

from typer.testing import CliRunner

from rftwin.cli.main import app

EX = Path(__file__).resolve().parents[2] / "examples"


def test_calibrate_with_wideband_sidecar(tmp_path):
    out = tmp_path / "twin"
    res = CliRunner().invoke(app, ["calibrate", "room", str(EX / "measurements_v2.csv"), "--wideband",
                                   str(EX / "wideband_v2.h5"), "--terms", "path_gain,cfr:nmse:1", "--out", str(out),
                                   "--max-iter", "3", "--starts", "1", "--retrace", "0", "--sweeps", "0",
                                   "--samples-per-src", "20000", "--max-depth", "2"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "calibration.json").read_text())
    assert doc["loss_terms"] == ["path_gain:mse_db:1", "cfr:nmse:1"]
    assert "cfr" in doc["noise"] and doc["iterations"] >= 1
    bad = CliRunner().invoke(app, ["calibrate", "room", str(EX / "measurements_v1.csv"), "--wideband",
                                   str(EX / "wideband_v2.h5"), "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "wideband_v2.h5" in bad.output
    assert not (tmp_path / "x" / "materials.json").exists()
