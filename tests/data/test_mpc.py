"""Multipath-component tables: validation errors naming row/column, features by hand, and matching of Sionna-traced
paths to perturbed MPCs (known assignment recovered)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from _room_pair import traced_pair
from rftwin.data import (
    MeasurementError,
    match_mpcs,
    mpcs_from_arrays,
    read_measurements,
    read_mpcs,
)
from rftwin.physics.channel import path_power
from rftwin.physics.features import direction_angles, unit_vectors
from rftwin.scene import room

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HEADER = "link_id,delay_s,power_db,azimuth_arrival_deg,elevation_arrival_deg"
ROWS = ["M001,7.9e-09,-51.7,153.6,25.0", "M001,1.53e-08,-64.5,153.7,-62.1", "M006,1.68e-08,-57.6,174.5,4.8"]


def write(tmp_path: Path, rows, header=HEADER, name="mpcs.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(["# sounder export", header, *rows]) + "\n")
    return p


def expect(path: Path, *, row=None, line=None, column=None, match=None, **kw) -> MeasurementError:
    with pytest.raises(MeasurementError) as ei:
        read_mpcs(path, **kw)
    msg = str(ei.value)
    assert path.name in msg, msg
    if row is not None:
        assert ei.value.row == row and f"row {row}" in msg, msg
    if line is not None:
        assert ei.value.line == line and f"(line {line})" in msg, msg
    if column is not None:
        assert ei.value.column == column and f"'{column}'" in msg, msg
    if match is not None:
        assert match in msg, msg
    return ei.value


# ------------------------------------------------------------------------------------------ reading
def test_example_file_and_features():
    m = read_measurements(EXAMPLES / "measurements_v2.csv", room())
    t = read_mpcs(EXAMPLES / "mpcs_v2.csv", m)
    assert len(t) == 12 and t.link_ids == ["M001", "M006"]
    assert t.elevation_departure_deg is not None
    f = t.features()
    assert list(f["num_mpcs"]) == [6, 6]
    # the MPC-based gain is close to the table's path gain (the 6 strongest paths carry most power)
    pg = dict(zip(m.link_id, m.path_gain_db))
    for lid, g in zip(f["link_id"], f["path_gain_db"]):
        assert abs(g - pg[lid]) < 1.5


def test_features_by_hand():
    t = mpcs_from_arrays(["a", "a", "b"], [10e-9, 20e-9, 5e-9], [-10.0, -20.0, -30.0],
                         azimuth_arrival_deg=[-10.0, 10.0, 0.0])
    f = t.features().set_index("link_id")
    assert f.loc["a", "path_gain_db"] == pytest.approx(10 * math.log10(0.11))
    assert f.loc["a", "mean_delay_s"] == pytest.approx((0.1 * 10e-9 + 0.01 * 20e-9) / 0.11)
    assert f.loc["a", "k_factor_db"] == pytest.approx(10.0)  # strongest MPC vs the rest
    assert f.loc["b", "k_factor_db"] == math.inf and f.loc["b", "delay_spread_s"] == pytest.approx(0, abs=1e-15)
    r = abs(0.1 * np.exp(-1j * math.radians(10)) + 0.01 * np.exp(1j * math.radians(10))) / 0.11
    assert f.loc["a", "angular_spread_deg"] == pytest.approx(math.degrees(math.sqrt(-2 * math.log(r))))


def test_bad_values_name_row_line_column(tmp_path):
    rows = [ROWS[0], ROWS[1].replace("1.53e-08", "-1e-9"), ROWS[2]]
    expect(write(tmp_path, rows), row=2, line=4, column="delay_s", match="delay must be >= 0 s")
    rows = [ROWS[0], ROWS[1], ROWS[2].replace(",4.8", ",95")]
    expect(write(tmp_path, rows), row=3, line=5, column="elevation_arrival_deg", match="outside [-90, 90]")
    rows = [ROWS[0].replace("-51.7", "abc"), ROWS[1]]
    expect(write(tmp_path, rows), row=1, line=3, column="power_db", match="expected a number, found 'abc'")
    rows = [ROWS[0], ROWS[1].replace("-64.5", "-4000")]
    expect(write(tmp_path, rows), row=2, column="power_db", match="must be in dB")
    rows = [ROWS[0], ",1e-8,-60,0,0"]
    expect(write(tmp_path, rows), row=2, column="link_id", match="empty link_id")
    rows = [ROWS[0], ROWS[1].replace("1.53e-08", "15.3")]
    expect(write(tmp_path, rows), row=2, column="delay_s", match="in seconds")


def test_column_problems(tmp_path):
    expect(write(tmp_path, ["M001,1e-8,-50"], header="link_id,delay_s,pwr_db"),
           match="missing required column power_db")
    expect(write(tmp_path, ["M001,1e-8,-50,10"], header="link_id,delay_s,power_db,elevation_arrival_deg"),
           column="elevation_arrival_deg", match="needs the column azimuth_arrival_deg")


def test_unknown_link_ids(tmp_path):
    m = read_measurements(EXAMPLES / "measurements_v2.csv")
    rows = [ROWS[0], ROWS[1].replace("M001", "M0001"), ROWS[2]]
    expect(write(tmp_path, rows), row=2, line=4, column="link_id",
           match="unknown link_id 'M0001' (did you mean 'M001'?)", links=m)


# ------------------------------------------------------------------------------------------ matching
@pytest.fixture(scope="module")
def traced():
    ps, a = traced_pair(np.array([3.5e9]))
    return ps, a[0]  # [N, R, T]


GATE_S, GATE_DEG = 5e-9, 10.0


def _angles(ps):
    return [x.numpy() for k in (ps.k_rx, ps.k_tx) for x in direction_angles(k)]


def _separated(ps, a, per_link=6):
    """Per link, the strongest paths whose every other path is > 2 gates away (so the truth is unambiguous),
    always including the LoS path."""
    aoa_az, aoa_el, aod_az, aod_el = _angles(ps)
    u_rx = unit_vectors(torch.as_tensor(aoa_az), torch.as_tensor(aoa_el)).numpy()
    u_tx = unit_vectors(torch.as_tensor(aod_az), torch.as_tensor(aod_el)).numpy()
    tau, link, p = ps.tau_s.numpy(), ps.link.numpy(), path_power(a).numpy()
    los = (ps.itype == 0).all(1).numpy()
    chosen = []
    for lk in range(ps.num_links):
        idx = np.nonzero(link == lk)[0]
        d = ((tau[idx, None] - tau[None, idx]) / GATE_S) ** 2
        for u in (u_rx, u_tx):
            ang = np.degrees(np.arccos(np.clip(u[idx] @ u[idx].T, -1, 1)))
            d = d + (ang / GATE_DEG) ** 2
        np.fill_diagonal(d, np.inf)
        ok = idx[d.min(1) > 4.0]
        ok = ok[np.argsort(-p[ok])]
        pick = list(ok[:per_link])
        assert los[pick].any(), "the LoS path should be isolated"
        chosen += pick
    return np.array(chosen)


def _mpcs(ps, a, truth, rng, delay_offset=0.0, spurious=True):
    aoa_az, aoa_el, aod_az, aod_el = _angles(ps)
    n = len(truth)
    names = np.array(["near", "far"])[ps.link.numpy()[truth]]
    perm = rng.permutation(n)
    t = truth[perm]
    cols = {"link_id": list(names[perm]), "delay_s": ps.tau_s.numpy()[t] + rng.normal(0, 0.5e-9, n) + delay_offset,
                "power_db": 10 * np.log10(path_power(a).numpy()[t]) + rng.normal(0, 1.0, n),
                "azimuth_arrival_deg": aoa_az[t] + rng.normal(0, 1.5, n),
                "elevation_arrival_deg": np.clip(aoa_el[t] + rng.normal(0, 1.5, n), -90, 90),
                "azimuth_departure_deg": aod_az[t] + rng.normal(0, 1.5, n),
                "elevation_departure_deg": np.clip(aod_el[t] + rng.normal(0, 1.5, n), -90, 90)}
    if spurious:  # a component no traced path explains (e.g. a person, or an estimation artefact)
        extra = {"link_id": "near", "delay_s": 300e-9 + delay_offset, "power_db": -90.0, "azimuth_arrival_deg": 0.0,
                 "elevation_arrival_deg": 0.0, "azimuth_departure_deg": 0.0, "elevation_departure_deg": 0.0}
        for k, v in extra.items():
            cols[k] = list(cols[k]) + [v]
    cols["delay_s"] = np.clip(cols["delay_s"], 0, None)
    link_id = cols.pop("link_id")
    return mpcs_from_arrays(link_id, cols.pop("delay_s"), cols.pop("power_db"), **cols), t


def test_matching_recovers_known_assignment(traced):
    ps, a = traced
    truth = _separated(ps, a)
    assert len(truth) >= 8
    mp, t = _mpcs(ps, a, truth, np.random.default_rng(1))
    m = match_mpcs(mp, ps, ["near", "far"], delay_gate_s=GATE_S, angle_gate_deg=GATE_DEG)
    assert len(m) == len(t)
    np.testing.assert_array_equal(m.mpc_row, np.arange(len(t)))
    np.testing.assert_array_equal(m.path_index, t)
    np.testing.assert_array_equal(m.link, ps.link.numpy()[t])
    assert list(m.unmatched_rows) == [len(t)]  # the spurious component
    assert np.abs(m.delay_error_s).max() < GATE_S and (m.aoa_error_deg < GATE_DEG).all()
    assert (m.aod_error_deg < GATE_DEG).all()
    np.testing.assert_array_equal(m.measured_power_db, mp.power_db[m.mpc_row])
    # predicted powers of the matched paths (for a per-MPC loss), differentiable through the engine
    pred = m.predicted_power_db(a)
    np.testing.assert_allclose(pred.numpy(), 10 * np.log10(path_power(a).numpy()[t]))
    assert np.abs(pred.numpy() - m.measured_power_db).max() < 5.0


def test_matching_relative_delays_and_gates(traced):
    ps, a = traced
    truth = _separated(ps, a)
    # a sounder without absolute timing: every delay shifted by +37 ns; "first" references the first arrival
    mp, t = _mpcs(ps, a, truth, np.random.default_rng(2), delay_offset=37e-9, spurious=False)
    absolute = match_mpcs(mp, ps, {"near": 0, "far": 1}, delay_gate_s=GATE_S, angle_gate_deg=GATE_DEG)
    assert len(absolute) == 0  # nothing within 5 ns
    m = match_mpcs(mp, ps, {"near": 0, "far": 1}, delay_gate_s=GATE_S, angle_gate_deg=GATE_DEG,
                   delay_reference="first")
    np.testing.assert_array_equal(m.path_index, t)
    # a mask that removes the true paths leaves their MPCs unmatched (no wrong partner inside the gates)
    mask = torch.ones(ps.num_paths, dtype=torch.bool)
    mask[torch.as_tensor(t[:3])] = False
    m2 = match_mpcs(mp, ps, {"near": 0, "far": 1}, delay_gate_s=GATE_S, angle_gate_deg=GATE_DEG,
                    delay_reference="first", path_mask=mask)
    assert list(m2.unmatched_rows) == [0, 1, 2]
    np.testing.assert_array_equal(m2.path_index, t[3:])
    with pytest.raises(MeasurementError, match="unknown link_id 'far'"):
        match_mpcs(mp, ps, ["near"])
    with pytest.raises(ValueError, match="delay_reference"):
        match_mpcs(mp, ps, ["near", "far"], delay_reference="relative")


def test_rows_sharing_a_geometry_and_paths_as_mpcs(traced, tmp_path):
    from rftwin.data.mpc import match_mpcs_to_rows, mpcs_from_paths, write_mpcs

    ps, a = traced
    truth = _separated(ps, a)
    mp, t = _mpcs(ps, a, truth, np.random.default_rng(3), spurious=False)
    # the 'near' geometry measured at two carriers: rows A and B share PathSet link 0 and must not compete
    near = [i for i, k in enumerate(mp.link_id) if k == "near"]
    ids = mp.link_id + ["B"] * len(near)
    both = mpcs_from_arrays(ids, np.concatenate([mp.delay_s, mp.delay_s[near]]),
                            np.concatenate([mp.power_db, mp.power_db[near] - 3.0]),
                            azimuth_arrival_deg=np.concatenate([mp.azimuth_arrival_deg, mp.azimuth_arrival_deg[near]]))
    m = match_mpcs_to_rows(both, ["near", "far", "B"], [0, 1, 0], ps, delay_gate_s=GATE_S, angle_gate_deg=GATE_DEG)
    assert len(m) == len(both) and len(m.unmatched_rows) == 0
    np.testing.assert_array_equal(m.path_index, np.concatenate([t, t[near]]))
    np.testing.assert_array_equal(m.link, ps.link.numpy()[m.path_index])
    # traced paths as an MPC table: every path of each row's link within the dynamic range, written and read back
    p = path_power(a)
    tab = mpcs_from_paths(ps, p, ["near", "far"], np.array([0, 1]), dynamic_range_db=20.0)
    pw, link = p.numpy(), ps.link.numpy()
    best = np.array([pw[link == k].max() for k in range(2)])
    expect_n = sum(int((pw[link == k] >= best[k] / 100).sum()) for k in range(2))
    assert len(tab) == expect_n and (tab.power_db >= 10 * np.log10(best[tab.link_index()]) - 20 - 1e-9).all()
    np.testing.assert_allclose(tab.delay_s, ps.tau_s.numpy()[tab.df["path_index"]])
    write_mpcs(tmp_path / "m.csv", tab)
    back = read_mpcs(tmp_path / "m.csv", ["near", "far"])
    np.testing.assert_allclose(back.power_db, tab.power_db)
    np.testing.assert_allclose(back.azimuth_departure_deg, tab.azimuth_departure_deg)
