"""Beam selection pipeline: MCS table, link budget, ``rftwin beams`` / ``rftwin predict --tx-array`` end to end and
their input errors."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rftwin.cli.main import app
from rftwin.predict.beams import LinkBudget, McsTable

SOLVER = ["--max-depth", "2", "--samples-per-src", "50000"]
LINKS = """link_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz
a,-1.0,0.5,1.0,1.0,-0.3,1.2,28e9
b,-1.0,0.5,1.0,0.7,1.5,0.9,28e9
c,-1.0,0.5,1.0,-1.5,1.5,0.5,28e9
"""


def _links(tmp_path: Path) -> Path:
    p = tmp_path / "links.csv"
    p.write_text(LINKS)
    return p


def test_80211ad_table_and_noise_model():
    t = McsTable.ieee_80211ad()
    b = LinkBudget()
    assert b.noise_power_dbm == pytest.approx(-174 + 10 * math.log10(2.16e9) + 10)
    # threshold = sensitivity - noise floor (-70.65 dBm): MCS 1 at -68 dBm -> 2.65 dB
    assert t.snr_db[1] == pytest.approx(-68 + 70.654, abs=1e-2)
    mcs, rate = t.select(np.array([-20.0, -7.0, 2.7, 7.7, 17.7]))
    assert mcs.tolist() == [-1, 0, 1, 6, 12]  # 7.7 dB meets MCS 6 (-63 dBm) before MCS 5 (-62 dBm)
    assert rate.tolist() == [0.0, 27.5e6, 385e6, 1540e6, 4620e6]
    with pytest.raises(ValueError, match="MAC efficiency"):
        LinkBudget(mac_efficiency=1.5)


def test_beams_cli_end_to_end(tmp_path):
    links = _links(tmp_path)
    out, gains = tmp_path / "beams.csv", tmp_path / "g.npz"
    r = CliRunner().invoke(app, ["beams", "floor_wall", str(links), "--out", str(out), "--tx-array", "4x2",
                                 "--rx-array", "2x2,polarization=VH", "--codebook", "dft:2", "--gains", str(gains),
                                 "--noise-figure-db", "7", "--mac-efficiency", "0.5", *SOLVER])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    z = np.load(gains)
    g = z["gain_db"]
    assert g.shape == (3, 2 * 16, 32)  # rx: 2 patterns x (4 x 4 DFT beams); tx: 8 x 4 beams (oversampling 2)
    for i, row in df.iterrows():
        assert row.beam_gain_db == pytest.approx(g[i].max())
        assert g[i, row.rx_beam, row.tx_beam] == pytest.approx(g[i].max())
        snr = 10.0 + row.beam_gain_db - (-174 + 10 * math.log10(2.16e9) + 7)
        assert row.snr_db == pytest.approx(snr)
        assert row.throughput_bps == pytest.approx(0.5 * row.phy_rate_bps)
    # a weights file holding the chosen beams reproduces the gain of link a
    w_path = tmp_path / "w.csv"
    from rftwin.physics.arrays import ArraySpec
    from rftwin.predict.beams import CodebookSpec, codebook_weights

    w = codebook_weights(CodebookSpec("dft", oversampling=2), ArraySpec(4, 2), 28e9, "tx").numpy()
    best = w[int(df.tx_beam[0])]
    rows = [f"0,{p},{float(best[p].real)!r},{float(best[p].imag)!r}" for p in range(len(best))]
    w_path.write_text("beam,port,real,imag\n" + "\n".join(rows) + "\n")
    out2 = tmp_path / "beams2.csv"
    r = CliRunner().invoke(app, ["beams", "floor_wall", str(links), "--out", str(out2), "--tx-array", "4x2",
                                 "--rx-array", "2x2,polarization=VH", "--codebook", str(w_path), "--rx-codebook",
                                 "dft:2", *SOLVER])
    assert r.exit_code == 0, r.output
    assert pd.read_csv(out2).beam_gain_db[0] == pytest.approx(df.beam_gain_db[0], abs=1e-9)


def test_predict_with_arrays_writes_mimo(tmp_path):
    links = _links(tmp_path)
    out, h = tmp_path / "p.csv", tmp_path / "h.npz"
    r = CliRunner().invoke(app, ["predict", "floor_wall", str(links), "--out", str(out), "--tx-array", "2x2",
                                 "--rx-array", "1x2", "--mimo", str(h), *SOLVER])
    assert r.exit_code == 0, r.output
    z = np.load(h)
    assert z["h"].shape == (3, 2, 4) and np.iscomplexobj(z["h"])
    # iso elements: the mean per-element power of the incoherent sum is the path gain when paths do not
    # interfere; the narrowband matrix is coherent, so only check its scale within the multipath fading range
    pg = pd.read_csv(out).path_gain_db.to_numpy()
    p = 10 * np.log10((np.abs(z["h"]) ** 2).mean(axis=(1, 2)))
    assert np.all(np.abs(p - pg) < 10)


@pytest.mark.parametrize("args, needle", [
    (["--tx-array", "4by4"], "--tx-array: '4by4' is not ROWSxCOLS"),
    (["--rx-array", "2x2,pattern=horn"], "--rx-array: unknown antenna pattern 'horn'"),
    (["--tx-array", "2x2,tilt=3"], "--tx-array: unknown key 'tilt'"),
    (["--codebook", "dft:0"], "--codebook: DFT oversampling must be an integer >= 1"),
    (["--codebook", "beams.txt"], "neither dft[:N], directions:FILE"),
    (["--mac-efficiency", "0"], "MAC efficiency must lie in (0, 1]"),
    (["--combine", "sum"], "--combine must be incoherent or coherent"),
])
def test_beams_cli_option_errors(tmp_path, args, needle):
    links = _links(tmp_path)
    out = tmp_path / "o.csv"
    r = CliRunner().invoke(app, ["beams", "floor_wall", str(links), "--out", str(out), *args, *SOLVER])
    assert r.exit_code == 2, r.output
    assert needle in " ".join(r.output.split()), r.output
    assert "Traceback" not in r.output and not out.exists()


@pytest.mark.parametrize("name, text, needle", [
    ("w.csv", "beam,port,real,imag\n0,0,1,0\n0,99,1,0\n", "row 2 (line 3), column 'port': port 99 does not exist"),
    ("w.csv", "beam,port,real,imag\n0,0,1,0\n0,0,0,1\n", "beam 0 port 0 repeats row 1"),
    ("w.csv", "beam,port,re,imag\n0,0,1,0\n", "missing required column real"),
    ("w.csv", "beam,port,real,imag\n0,0,x,0\n", "row 1 (line 2), column 'real': expected a number, found 'x'"),
    ("w.csv", "beam,port,real,imag\n1,0,1,0\n", "beam(s) [0] have no non-zero weight"),
    ("d.csv", "azimuth_deg,elevation_deg\n10,95\n", "elevation must lie in [-90, 90]"),
    ("m.csv", "mcs,snr_db,phy_rate_bps\n0,1,1e6\n1.5,2,2e6\n", "expected a non-negative integer MCS index"),
    ("m.csv", "mcs,snr_db,phy_rate_bps\n0,1,-1e6\n", "expected a positive PHY rate"),
])
def test_beams_cli_file_errors(tmp_path, name, text, needle):
    links = _links(tmp_path)
    f = tmp_path / name
    f.write_text(text)
    opt = {"w": ["--codebook", str(f)], "d": ["--codebook", f"directions:{f}"], "m": ["--mcs-table", str(f)]}
    out = tmp_path / "o.csv"
    r = CliRunner().invoke(app, ["beams", "floor_wall", str(links), "--out", str(out), "--tx-array", "2x2",
                                 "--rx-array", "2x2", *opt[name[0]], *SOLVER])
    assert r.exit_code == 2, r.output
    msg = " ".join(r.output.split())
    assert needle in msg and str(f.name) in msg, r.output
    assert "Traceback" not in r.output and not out.exists()


def test_beams_cli_weights_size_and_frequency_errors(tmp_path):
    links = _links(tmp_path)
    w = tmp_path / "w.npz"
    np.savez(w, weights=np.ones((2, 3), dtype=complex))
    out = tmp_path / "o.csv"
    r = CliRunner().invoke(app, ["beams", "floor_wall", str(links), "--out", str(out), "--tx-array", "2x2",
                                 "--codebook", str(w), *SOLVER])
    assert r.exit_code == 2 and "beams have 3 weights, the tx array has 4 ports" in " ".join(r.output.split())
    links.write_text(LINKS.replace("28e9", "60e9"))  # floor_wall's brick is not defined at 60 GHz (ITU)
    r = CliRunner().invoke(app, ["beams", "floor_wall", str(links), "--out", str(out), *SOLVER])
    assert r.exit_code == 2 and "cannot evaluate the scene's materials at 6e+10 Hz" in " ".join(r.output.split())
    assert not out.exists()


def test_beams_cli_directions_codebook_and_mcs_file(tmp_path):
    """Steering beams towards given directions and an MCS table file: the chosen beam is one of them and the
    rate follows the file's thresholds."""
    links = _links(tmp_path)
    d = tmp_path / "dirs.csv"
    d.write_text("azimuth_deg,elevation_deg\n-21.8,5.7\n45,0\n180,0\n")  # first: towards link a's receiver
    m = tmp_path / "mcs.csv"
    m.write_text("mcs,snr_db,phy_rate_bps\n0,-100,1e6\n1,1000,2e9\n")  # only MCS 0 is reachable
    out = tmp_path / "b.csv"
    r = CliRunner().invoke(app, ["beams", "floor_wall", str(links), "--out", str(out), "--tx-array", "1x4",
                                 "--rx-array", "1x1", "--codebook", f"directions:{d}", "--rx-codebook", "dft",
                                 "--mcs-table", str(m), *SOLVER])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    assert set(df.tx_beam) <= {0, 1, 2} and (df.rx_beam == 0).all()
    assert (df.mcs == 0).all() and np.allclose(df.throughput_bps, 0.65e6)
