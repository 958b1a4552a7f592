"""Wideband sidecar: round trips (HDF5, NPZ), validation errors naming file and link, simulated like-for-like
data from a real Sionna trace, and ``rftwin predict --wideband`` end to end."""
from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from _room_pair import traced_pair
from rftwin.cli.main import app
from rftwin.data import (
    MeasurementError,
    Wideband,
    WidebandLink,
    read_measurements,
    read_wideband,
    simulate_wideband,
    write_wideband,
)
from rftwin.physics import features as F
from rftwin.scene import room

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RNG = np.random.default_rng(0)


def _links(K=16):
    cfr = RNG.normal(size=K) + 1j * RNG.normal(size=K)
    return [WidebandLink("A", 3.5e9, 100e6, K, cfr=cfr),
            WidebandLink("B", 5.8e9, 100e6, K, delay_s=np.array([1e-8, 2.5e-8]), amplitude=np.array([1 + 1j, 0.2j])),
            WidebandLink("C", 3.5e9, 100e6, K, cfr=cfr * 0.5, delay_s=np.array([3e-8]), amplitude=np.array([0.5]))]


def _same(a: WidebandLink, b: WidebandLink):
    assert (a.link_id, a.carrier_hz, a.bandwidth_hz, a.num_subcarriers) == (b.link_id, b.carrier_hz, b.bandwidth_hz,
                                                                             b.num_subcarriers)
    for n in ("cfr", "delay_s", "amplitude"):
        x, y = getattr(a, n), getattr(b, n)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("suffix", [".h5", ".npz"])
def test_roundtrip(tmp_path, suffix):
    p = write_wideband(tmp_path / f"wb{suffix}", _links())
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name]  # atomic: no temporary left
    wb = read_wideband(p, ["A", "B", "C", "D"], [3.5e9, 5.8e9, 3.5e9, 1e9])
    assert wb.link_ids == ["A", "B", "C"]
    for rec in _links():
        got = wb[rec.link_id]
        assert got.carrier_hz == rec.carrier_hz and got.num_subcarriers == 16
        if rec.delay_s is not None:
            np.testing.assert_array_equal(got.delay_s, rec.delay_s)
    # taps-only link: CFR synthesised on the grid, equal to the engine's formula on baseband taps
    b = wb["B"]
    H = F.cfr_from_paths(torch.as_tensor(b.amplitude), torch.as_tensor(b.delay_s), torch.tensor([0, 0]), 1,
                         0.0, b.bandwidth_hz, b.num_subcarriers)[0]
    np.testing.assert_allclose(b.cfr_on_grid(), H.numpy(), rtol=1e-12)
    assert wb.cfr_matrix().shape == (3, 16)
    carriers, w, k = wb.grid()
    assert list(carriers) == [3.5e9, 5.8e9, 3.5e9] and w == 100e6 and k == 16
    assert len(wb.features()) == 3


def test_roundtrip_values_exact(tmp_path):
    src = _links()
    for suffix in (".h5", ".npz"):
        wb = read_wideband(write_wideband(tmp_path / f"x{suffix}", Wideband({r.link_id: r for r in src})))
        for r in src:
            _same(r, wb[r.link_id])


def test_example_files_are_valid():
    m = read_measurements(EXAMPLES / "measurements_v2.csv", room())
    wb = read_wideband(EXAMPLES / "wideband_v2.h5", m, require_all=True)
    assert wb.grid()[1:] == (200e6, 256)
    taps = read_wideband(EXAMPLES / "wideband_taps_v2.npz", m)
    assert taps.link_ids == ["M001", "M006"] and taps["M001"].num_subcarriers == 1024


# ------------------------------------------------------------------------------------------ validation
def _h5(path: Path, build) -> Path:
    with h5py.File(path, "w") as h:
        h.attrs["carrier_hz"] = 3.5e9
        h.attrs["bandwidth_hz"] = 200e6
        h.attrs["num_subcarriers"] = 4
        g = h.create_group("links")
        build(h, g)
    return path


def _expect(path: Path, match: str, link: str | None = None, **kw) -> MeasurementError:
    with pytest.raises(MeasurementError) as ei:
        read_wideband(path, **kw)
    msg = str(ei.value)
    assert path.name in msg, msg
    if link is not None:
        assert f"key '{link}'" in msg and ei.value.key == link, msg
    assert match in msg, msg
    return ei.value


def test_unknown_link_ids_and_carrier_mismatch(tmp_path):
    p = write_wideband(tmp_path / "wb.h5", _links())
    _expect(p, "unknown link id (did you mean 'B1'?)", "B", links=["A", "B1", "C"], frequency_hz=[3.5e9, 5.8e9, 3.5e9])
    _expect(p, "carrier_hz = 3.5e+09 Hz but the table has frequency_hz = 2.4e+09 Hz", "C",
            links=["A", "B", "C"], frequency_hz=[3.5e9, 5.8e9, 2.4e9])
    _expect(p, "missing from the sidecar", "D", links=["A", "B", "C", "D"], require_all=True)


def test_cfr_shape_mismatch(tmp_path):
    p = _h5(tmp_path / "s.h5", lambda h, g: g.create_group("L1").create_dataset("cfr", data=np.ones(5, complex)))
    _expect(p, "'cfr' has 5 values but num_subcarriers = 4", "L1")


def test_non_finite_and_real_cfr(tmp_path):
    def build(h, g):
        g.create_group("ok").create_dataset("cfr", data=np.ones(4, complex))
        g.create_group("nan").create_dataset("cfr", data=np.array([1, np.nan, 1, 1], complex))
        g.create_group("real").create_dataset("cfr", data=np.ones(4))

    e = _expect(_h5(tmp_path / "s.h5", build), "non-finite value(s) (first at index 1)", "nan")
    assert "key 'real'" in str(e) and "expected complex values" in str(e)  # every problem is listed


def test_taps_problems(tmp_path):
    def build(h, g):
        a = g.create_group("len")
        a.create_dataset("delay_s", data=[1e-8, 2e-8])
        a.create_dataset("amplitude", data=np.ones(3, complex))
        g.create_group("half").create_dataset("delay_s", data=[1e-8])
        n = g.create_group("neg")
        n.create_dataset("delay_s", data=[-1e-9])
        n.create_dataset("amplitude", data=np.ones(1, complex))
        g.create_group("empty")

    e = _expect(_h5(tmp_path / "s.h5", build), "no data; expected 'cfr' or 'delay_s' and 'amplitude'", "empty")
    msg = str(e)  # every problem is listed, links in the file's (alphabetical) order
    assert "key 'len': 'delay_s' has 2 taps but 'amplitude' 3" in msg
    assert "key 'half'" in msg and "CIR taps need both" in msg
    assert "key 'neg'" in msg and "outside [0, 0.001] s" in msg


def test_grid_problems(tmp_path):
    def build(h, g):
        del h.attrs["carrier_hz"]
        g.create_group("nocarrier").create_dataset("cfr", data=np.ones(4, complex))
        x = g.create_group("mhz")
        x.attrs["carrier_hz"] = 3500.0
        x.create_dataset("cfr", data=np.ones(4, complex))
        y = g.create_group("typo")
        y.attrs["carrier_hz"] = 3.5e9
        y.create_dataset("cfrs", data=np.ones(4, complex))

    e = _expect(_h5(tmp_path / "s.h5", build), "carrier_hz = 3500 is outside [1 MHz, 1 THz]", "mhz")
    assert "key 'nocarrier': no carrier_hz" in str(e)
    assert "unknown entry 'cfrs' (did you mean 'cfr'?)" in str(e)


def test_file_level_problems(tmp_path):
    _expect(tmp_path / "missing.h5", "no such file")
    (tmp_path / "x.txt").write_text("hello")
    _expect(tmp_path / "x.txt", "unsupported file type '.txt'")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5 at all")
    _expect(tmp_path / "bad.h5", "cannot be read as an HDF5 file")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    _expect(tmp_path / "bad.npz", "cannot be read as an NPZ file")
    with h5py.File(tmp_path / "nolinks.h5", "w") as h:
        h.attrs["format"] = "something-else"
    _expect(tmp_path / "nolinks.h5", "format is 'something-else'")
    with h5py.File(tmp_path / "nolinks2.h5", "w") as h:
        h.attrs["carrier_hz"] = 3.5e9
    _expect(tmp_path / "nolinks2.h5", "no 'links' group")
    np.savez(tmp_path / "odd.npz", **{"links/A/cfr": np.ones(4, complex), "stuff/x": np.ones(1)})
    _expect(tmp_path / "odd.npz", "unexpected array 'stuff/x'")
    with pytest.raises(MeasurementError, match="must not contain '/'"):
        write_wideband(tmp_path / "w.h5", [WidebandLink("a/b", 3.5e9, cfr=np.ones(256, complex))])
    assert not (tmp_path / "w.h5").exists()


# ------------------------------------------------------------------------------- from a Sionna trace
@pytest.fixture(scope="module")
def traced():
    freqs = np.array([3.5e9, 5.8e9])
    ps, a = traced_pair(freqs)
    return ps, a, freqs


def test_simulated_cfr_and_taps_agree(traced, tmp_path):
    ps, a, freqs = traced
    # rows: link 0 at both carriers, link 1 at 5.8 GHz
    wb = simulate_wideband(ps, a, freqs, ["x0", "x0b", "x1"], [0, 0, 1], [0, 1, 1], kind="both")
    for lid, lk, f in (("x0", 0, 0), ("x0b", 0, 1), ("x1", 1, 1)):
        rec = wb[lid]
        assert rec.carrier_hz == freqs[f] and rec.num_subcarriers == 256
        direct = F.cfr_from_paths(a[f, :, 0, 0], ps.tau_s, ps.link, 2, freqs[f])[lk].numpy()
        np.testing.assert_allclose(rec.cfr, direct, rtol=1e-12)
        # the taps (one per path) rebuild the same CFR on the grid
        taps_only = WidebandLink(lid, rec.carrier_hz, rec.bandwidth_hz, rec.num_subcarriers, delay_s=rec.delay_s,
                                 amplitude=rec.amplitude)
        np.testing.assert_allclose(taps_only.cfr_on_grid(), rec.cfr, rtol=1e-9, atol=1e-12 * np.abs(rec.cfr).max())
        assert len(rec.delay_s) == int((ps.link == lk).sum())
    # the measured-side reader takes what the simulated side wrote, and the features agree
    back = read_wideband(write_wideband(tmp_path / "sim.npz", wb))
    pd.testing.assert_frame_equal(back.features(), wb.features())


def test_predict_writes_wideband_sidecar(tmp_path):
    links = tmp_path / "links.csv"
    links.write_text("link_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz,tx_power_dbm\n"
                     "P1,0.0,0.0,2.5,2.0,-1.0,1.5,3.5e9,20\n"
                     "P2,0.0,0.0,2.5,2.0,-1.0,1.5,5.8e9,20\n"
                     "P3,-4.0,4.0,2.0,3.0,-0.5,1.0,3.5e9,20\n")
    out, side = tmp_path / "pred.csv", tmp_path / "pred.h5"
    r = CliRunner().invoke(app, ["predict", "room", str(links), "--out", str(out), "--wideband", str(side),
                                 "--max-depth", "3", "--samples-per-src", "20000", "--wideband-kind", "both",
                                 "--window", "hann", "--bandwidth-hz", "400e6", "--subcarriers", "512"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(out)
    for c in ("path_gain_db", "rss_dbm", "mean_delay_s", "delay_spread_s", "k_factor_db", "angular_spread_deg",
              "num_paths", "path_gain_cfr_db", "mean_delay_cfr_s", "delay_spread_cfr_s"):
        assert c in df.columns and df[c].notna().all(), c
    wb = read_wideband(side, df["link_id"].tolist(), df["frequency_hz"].to_numpy(), require_all=True)
    assert wb.grid()[1:] == (400e6, 512)
    feats = wb.features(window="hann")
    np.testing.assert_allclose(feats["delay_spread_s"], df["delay_spread_cfr_s"], rtol=1e-9)
    # band-limited gain near the path gain (coherent combining of unresolved paths makes the difference)
    assert np.abs(feats["path_gain_db"] - df["path_gain_db"]).max() < 3.0
    assert all(math.isfinite(x) for x in df["k_factor_db"])
    # bad option -> clear error, nothing written
    r = CliRunner().invoke(app, ["predict", "room", str(links), "--out", str(tmp_path / "o.csv"), "--wideband",
                                 str(tmp_path / "o.mat")])
    assert r.exit_code != 0 and "unsupported file type '.mat'" in " ".join(r.output.split())
    assert not (tmp_path / "o.csv").exists()
