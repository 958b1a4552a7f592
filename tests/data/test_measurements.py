"""Measurement / link / label files: happy paths and one test per validation error (real files, real room)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rftwin  # noqa: F401 - sets up LLVM before Sionna
from rftwin.data import (
    MeasurementError,
    Measurements,
    points_inside_mesh,
    read_labels,
    read_links,
    read_measurements,
    validate_labels,
    write_measurements,
)
from rftwin.scene import room

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HEADER = "link_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz,rss_dbm,tx_power_dbm,delay_spread_s"
ROWS = [
    "A,0.0,0.0,2.5,2.0,-1.0,1.5,3.5e9,-31.26,20.0,7.8e-09",
    "B,0.0,0.0,2.5,-2.0,1.0,1.2,3.5e9,-31.18,20.0,8.1e-09",
    "C,0.0,0.0,2.5,4.0,0.5,1.5,3.5e9,-32.93,20.0,1.01e-08",
    "D,-4.0,4.0,2.0,1.0,3.5,1.5,3.5e9,-37.49,20.0,1.06e-08",
]


@pytest.fixture(scope="module")
def twin():
    return room()


def write_csv(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "measurements.csv",
              preamble: tuple[str, ...] = ()) -> Path:
    p = tmp_path / name
    p.write_text("\n".join([*preamble, header, *rows]) + "\n")
    return p


def with_cell(row: str, column: str, value: str, header: str = HEADER) -> str:
    cells = row.split(",")
    cells[header.split(",").index(column)] = value
    return ",".join(cells)


def expect_error(path: Path, scene=None, *, row: int | None = None, line: int | None = None,
                 column: str | None = None, match: str | None = None, reader=read_measurements, **kw
                 ) -> MeasurementError:
    before = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []
    with pytest.raises(MeasurementError) as ei:
        reader(path, scene, **kw)
    msg = str(ei.value)
    assert path.name in msg
    if row is not None:
        assert f"row {row}" in msg
        assert ei.value.row == row
    if line is not None:
        assert f"(line {line})" in msg
        assert ei.value.line == line
    if column is not None:
        assert f"'{column}'" in msg
        assert ei.value.column == column
    if match is not None:
        assert re.search(match, msg), msg
    # reading never writes anything
    after = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []
    assert after == before
    return ei.value


# ----------------------------------------------------------------------------------------------- happy paths
def test_example_files_are_valid(twin):
    m = read_measurements(EXAMPLES / "measurements_v1.csv", twin)
    assert len(m) == 6 and m.tx_pos.shape == (6, 3) and m.rx_pos.shape == (6, 3)
    assert m.delay_spread_s is not None and m.tx_power_dbm is not None
    links = read_links(EXAMPLES / "links.csv", twin)
    assert len(links) == 4 and links.link_id[0] == "P001" and links.tx_power_dbm is not None


def test_csv_happy_path_and_rss_to_path_gain(tmp_path, twin):
    p = write_csv(tmp_path, ROWS, preamble=("# a comment line", ""))
    m = read_measurements(p, twin)
    assert isinstance(m, Measurements) and m.source == p
    assert m.link_id == ["A", "B", "C", "D"]
    np.testing.assert_allclose(m.path_gain_db, [-51.26, -51.18, -52.93, -57.49])
    np.testing.assert_allclose(m.rss_dbm, [-31.26, -31.18, -32.93, -37.49])
    np.testing.assert_allclose(m.tx_pos[3], [-4.0, 4.0, 2.0])
    np.testing.assert_allclose(m.rx_pos[0], [2.0, -1.0, 1.5])
    np.testing.assert_allclose(m.frequency_hz, 3.5e9)
    np.testing.assert_allclose(m.delay_spread_s, [7.8e-9, 8.1e-9, 1.01e-8, 1.06e-8])
    assert "path_gain_db" in m.df.columns and m.df["rx_z"].dtype == np.float64
    sub = m.subset([1, 3])
    assert sub.link_id == ["B", "D"] and sub.path_gain_db.shape == (2,)


def test_path_gain_only_generated_ids_and_case_insensitive_header(tmp_path, twin):
    header = "TX_X,tx_y,tx_z,rx_x,rx_y,rx_z, Frequency_Hz ,path_gain_db,note"
    rows = ["0,0,2.5,2,-1,1.5,3.5e9,-51.3,hello", "0,0,2.5,-2,1,1.2,2.4e9,-50.0,"]
    m = read_measurements(write_csv(tmp_path, rows, header), twin)
    assert m.link_id == ["L0001", "L0002"]
    assert m.tx_power_dbm is None and m.delay_spread_s is None and m.rss_dbm is None
    np.testing.assert_allclose(m.path_gain_db, [-51.3, -50.0])
    np.testing.assert_allclose(m.frequency_hz, [3.5e9, 2.4e9])
    assert list(m.df["note"]) == ["hello", ""]


def test_both_gain_columns_that_agree(tmp_path):
    header = HEADER + ",path_gain_db"
    rows = [ROWS[0] + ",-51.265", ROWS[1] + ",-51.18"]
    m = read_measurements(write_csv(tmp_path, rows, header))
    np.testing.assert_allclose(m.path_gain_db, [-51.265, -51.18])


def test_parquet_happy_path(tmp_path, twin):
    df = pd.DataFrame({"link_id": [1, 2], "tx_x": [0.0, 0.0], "tx_y": [0.0, 0.0], "tx_z": [2.5, 2.5],
                       "rx_x": [2.0, -2.0], "rx_y": [-1, 1], "rx_z": [1.5, 1.2], "frequency_hz": [3.5e9, 3.5e9],
                       "rss_dbm": [-31.0, -35.0], "tx_power_dbm": [20.0, 23.0]})
    p = tmp_path / "meas.parquet"
    df.to_parquet(p, index=False)
    m = read_measurements(p, twin)
    assert m.link_id == ["1", "2"]
    np.testing.assert_allclose(m.path_gain_db, [-51.0, -58.0])
    np.testing.assert_allclose(m.rx_pos[:, 1], [-1.0, 1.0])


def test_from_arrays_and_write_roundtrip(tmp_path, twin):
    m = read_measurements(EXAMPLES / "measurements_v1.csv", twin)
    m2 = Measurements.from_arrays(m.tx_pos, m.rx_pos, 3.5e9, m.path_gain_db, delay_spread_s=m.delay_spread_s,
                                  link_id=m.link_id, tx_power_dbm=20.0, scene=twin)
    for suffix in (".csv", ".parquet"):
        out = write_measurements(tmp_path / f"copy{suffix}", m2)
        m3 = read_measurements(out, twin)
        assert m3.link_id == m.link_id
        np.testing.assert_allclose(m3.path_gain_db, m.path_gain_db)
        np.testing.assert_allclose(m3.delay_spread_s, m.delay_spread_s)
    with pytest.raises(MeasurementError, match="<arrays>, row 1.*coincide"):
        Measurements.from_arrays(m.tx_pos[:1], m.tx_pos[:1], 3.5e9, [-50.0])


def test_links_to_predict(tmp_path, twin):
    header = "link_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz"
    links = read_links(write_csv(tmp_path, ["p1,0,0,2.5,1,1,1.5,3.5e9"], header, "links.csv"), twin)
    assert links.link_id == ["p1"] and links.tx_power_dbm is None
    np.testing.assert_allclose(links.rx_pos, [[1.0, 1.0, 1.5]])


# ---------------------------------------------------------------------------------------- file-level errors
def test_missing_file(tmp_path):
    expect_error(tmp_path / "nothere.csv", match="no such file")


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "measurements.xlsx"
    p.write_text("x")
    expect_error(p, match=r"unsupported file type '\.xlsx'")


def test_empty_and_header_only_and_binary_files(tmp_path):
    p = tmp_path / "measurements.csv"
    p.write_text("")
    expect_error(p, match="empty file")
    p.write_text("# only a comment\n\n")
    expect_error(p, match="empty file")
    p.write_text(HEADER + "\n")
    expect_error(p, line=None, match="no data rows")
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00")
    expect_error(p, match="cannot be read as UTF-8|NUL bytes")
    q = tmp_path / "broken.parquet"
    q.write_bytes(b"this is not parquet")
    expect_error(q, match="cannot be read as a Parquet file")


def test_missing_required_columns(tmp_path):
    header = "link_id,tx_x,tx_y,rx_x,rx_y,rx_z,rss_dbm,tx_power_dbm"
    e = expect_error(write_csv(tmp_path, ["A,0,0,1,1,1,-40,20"], header),
                     match="missing required columns tx_z, frequency_hz")
    assert "found columns" in str(e)


def test_missing_gain_column_with_typo_hint(tmp_path):
    header = "tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz,rss_dmb"
    expect_error(write_csv(tmp_path, ["0,0,2,1,1,1,3.5e9,-40"], header),
                 match=r"at least one of the columns rss_dbm or path_gain_db.*did you mean 'rss_dbm'")


def test_rss_without_tx_power(tmp_path):
    header = "tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz,rss_dbm"
    expect_error(write_csv(tmp_path, ["0,0,2,1,1,1,3.5e9,-40"], header), match="rss_dbm needs the column tx_power_dbm")


def test_wrong_number_of_fields(tmp_path):
    rows = [ROWS[0], ROWS[1] + ",extra", ROWS[2]]
    expect_error(write_csv(tmp_path, rows), row=2, line=3, match="expected 11 comma-separated fields")


# ----------------------------------------------------------------------------------------- cell-level errors
def test_non_numeric_value_row_and_line(tmp_path):
    rows = [ROWS[0], ROWS[1], with_cell(ROWS[2], "rx_z", "1.5m")]
    expect_error(write_csv(tmp_path, rows), row=3, line=4, column="rx_z", match="expected a number, found '1.5m'")
    # comment and blank lines shift file lines but not data rows
    p = write_csv(tmp_path, [ROWS[0], "", ROWS[1], with_cell(ROWS[2], "rx_z", "abc")], preamble=("# note",))
    expect_error(p, row=3, line=6, column="rx_z")


def test_empty_value(tmp_path):
    rows = [ROWS[0], with_cell(ROWS[1], "frequency_hz", "")]
    expect_error(write_csv(tmp_path, rows), row=2, line=3, column="frequency_hz", match="missing value")


@pytest.mark.parametrize("value,match", [("nan", "NaN is not allowed"), ("inf", "not finite"),
                                         ("-Infinity", "not finite")])
def test_nan_and_inf(tmp_path, value, match):
    rows = [ROWS[0], ROWS[1], with_cell(ROWS[2], "tx_power_dbm", value)]
    expect_error(write_csv(tmp_path, rows), row=3, line=4, column="tx_power_dbm", match=match)


def test_nan_in_parquet_names_row_without_line(tmp_path):
    df = pd.DataFrame({"tx_x": [0.0, 0.0], "tx_y": [0.0, 0.0], "tx_z": [2.5, 2.5], "rx_x": [1.0, 2.0],
                       "rx_y": [1.0, 2.0], "rx_z": [1.0, np.nan], "frequency_hz": [3.5e9, 3.5e9],
                       "path_gain_db": [-50.0, -55.0]})
    p = tmp_path / "meas.parquet"
    df.to_parquet(p, index=False)
    e = expect_error(p, row=2, column="rx_z", match="missing value")
    assert e.line is None and "line" not in str(e)


@pytest.mark.parametrize("value,match", [("0", "must be positive"), ("-3.5e9", "must be positive"),
                                         ("3.5", "below 1 MHz.*must be in Hz")])
def test_bad_frequency(tmp_path, value, match):
    rows = [ROWS[0], with_cell(ROWS[1], "frequency_hz", value)]
    expect_error(write_csv(tmp_path, rows), row=2, line=3, column="frequency_hz", match=match)


def test_bad_delay_spread(tmp_path):
    rows = [with_cell(ROWS[0], "delay_spread_s", "25")]
    expect_error(write_csv(tmp_path, rows), row=1, line=2, column="delay_spread_s", match="in seconds")


def test_duplicate_link_id(tmp_path):
    rows = [ROWS[0], ROWS[1], with_cell(ROWS[2], "link_id", "A")]
    expect_error(write_csv(tmp_path, rows), row=3, line=4, column="link_id",
                 match=r"duplicate link_id 'A' \(also in row 1 \(line 2\)\)")


def test_rss_and_path_gain_disagree(tmp_path):
    header = HEADER + ",path_gain_db"
    rows = [ROWS[0] + ",-51.26", ROWS[1] + ",-50.0"]
    expect_error(write_csv(tmp_path, rows, header), row=2, line=3, column="path_gain_db", match="disagrees")


def test_tx_equals_rx(tmp_path):
    rows = [ROWS[0], "B,1.0,2.0,1.5,1.0,2.0,1.5,3.5e9,-31.18,20.0,8.1e-09"]
    expect_error(write_csv(tmp_path, rows), row=2, line=3, column="tx_x", match="coincide")


# -------------------------------------------------------------------------------------------- scene checks
@pytest.mark.parametrize("column,value,match", [
    ("rx_x", "5.5", r"outside the scene's bounding box \(x in \[-5, 5\] m"),
    ("tx_y", "-7", r"outside the scene's bounding box \(y in"),
    ("rx_z", "-0.2", "below the scene's bounding box"),
    ("tx_z", "60", "higher than the scene's top"),
])
def test_outside_bbox(tmp_path, twin, column, value, match):
    rows = [ROWS[0], ROWS[1], with_cell(ROWS[2], column, value)]
    p = write_csv(tmp_path, rows)
    expect_error(p, twin, row=3, line=4, column=column, match=match)
    read_measurements(p)  # without a scene there is no bounding-box check


def test_bbox_margins(tmp_path, twin):
    rows = [with_cell(ROWS[0], "tx_z", "30"), with_cell(ROWS[1], "rx_x", "5.0005")]  # mast; within 1 mm
    p = write_csv(tmp_path, rows)
    assert len(read_measurements(p, twin)) == 2
    expect_error(p, twin, row=1, column="tx_z", above_margin_m=10.0, match="above_margin_m=10")
    q = write_csv(tmp_path, [with_cell(ROWS[0], "rx_x", "7")], name="outdoor.csv")
    assert len(read_measurements(q, twin, bbox_margin_m=3.0)) == 1


def test_inside_closed_object(tmp_path, twin):
    # box_wood: x in [-3.5, -2.5], y in [2, 4], z in [0.001, 1.001]
    rows = [ROWS[0], "B,0.0,0.0,2.5,-3.0,3.0,0.5,3.5e9,-31.18,20.0,8.1e-09"]
    e = expect_error(write_csv(tmp_path, rows), twin, row=2, line=3, column="rx_x", match="'box_wood'")
    assert "receiver" in str(e)
    # on top of the box (outside) is fine, and so is a point next to it
    ok = ["A,0.0,0.0,2.5,-3.0,3.0,1.2,3.5e9,-31.18,20.0,8.1e-09",
          "B,0.0,0.0,2.5,-2.4,3.0,0.5,3.5e9,-31.18,20.0,8.1e-09"]
    assert len(read_measurements(write_csv(tmp_path, ok, name="ok.csv"), twin)) == 2


def test_point_in_mesh_is_orientation_free(twin):
    v, f = twin.meshes()[twin.index_of("box_marble")]  # 1 x 2 x 1 m box centred at (-3, -3, 0.501)
    c = v.mean(0)
    pts = np.array([c, c + [0.0, 0.0, 2.0], c + [0.49, 0.99, 0.49], c + [0.6, 0.0, 0.0]])
    expect = [True, False, True, False]
    np.testing.assert_array_equal(points_inside_mesh(pts, v, f), expect)
    flipped = f.copy()
    flipped[::2] = flipped[::2][:, [0, 2, 1]]  # inconsistent orientation
    np.testing.assert_array_equal(points_inside_mesh(pts, v, flipped), expect)


# --------------------------------------------------------------------------------------------------- labels
def test_labels_file_happy_path(tmp_path, twin):
    p = tmp_path / "labels.yaml"
    p.write_text("floor: Brick\nbox_wood: wood\nwall_east: vinyl tile\n")
    assert read_labels(p, twin) == {"floor": "brick", "box_wood": "wood", "wall_east": "vinyl_tile"}
    q = tmp_path / "labels.json"
    q.write_text(json.dumps({"labels": {"box_marble": "marble"}}))
    assert read_labels(q, twin) == {"box_marble": "marble"}


def test_labels_unknown_material_and_object(tmp_path, twin):
    p = tmp_path / "labels.yaml"
    p.write_text("floor: brick\nbox_wood: woood\n")
    expect_error(p, twin, reader=lambda path, scene: read_labels(path, scene),
                 match=r"labels\.yaml, key 'box_wood': unknown material 'woood' \(did you mean 'wood'\?\)")
    p.write_text("flor: brick\n")
    expect_error(p, twin, reader=lambda path, scene: read_labels(path, scene),
                 match=r"key 'flor': no object 'flor' in the scene \(did you mean 'floor'\?\)")
    p.write_text("floor: [brick\n")
    expect_error(p, twin, reader=lambda path, scene: read_labels(path, scene), match="invalid YAML")


def test_labels_passed_to_read_measurements(tmp_path, twin):
    p = write_csv(tmp_path, ROWS)
    assert len(read_measurements(p, twin, labels={"floor": "concrete"})) == 4
    with pytest.raises(MeasurementError, match="key 'floor': unknown material 'unobtainium'"):
        read_measurements(p, twin, labels={"floor": "unobtainium"})
    assert validate_labels({"floor": "Metal"}) == {"floor": "metal"}


def test_links_missing_link_id(tmp_path):
    header = "tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz"
    expect_error(write_csv(tmp_path, ["0,0,2.5,1,1,1.5,3.5e9"], header, "links.csv"), reader=read_links,
                 match="missing required column link_id")


# ------------------------------------------------------------------ several transmitters / frequencies, features
V2_HEADER = ("link_id,tx_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz,path_gain_db,delay_spread_s,mean_delay_s,"
             "k_factor_db,angular_spread_deg")
V2_ROWS = [
    "A,AP1,0.0,0.0,2.5,2.0,-1.0,1.5,3.5e9,-51.0,7.8e-09,1.03e-08,9.4,22.8",
    "B,AP1,0.0,0.0,2.5,2.0,-1.0,1.5,5.8e9,-54.3,7.4e-09,9.7e-09,10.2,21.2",
    "C,AP2,-4.0,4.0,2.0,3.0,-0.5,1.0,3.5e9,-59.3,1.02e-08,3.37e-08,0.05,47.1",
]


def test_v2_example_several_transmitters_and_frequencies(twin):
    m = read_measurements(EXAMPLES / "measurements_v2.csv", twin)
    assert len(m) == 8 and set(m.frequency_hz) == {3.5e9, 5.8e9}
    pos, idx = m.transmitters()
    assert len(pos) == 2 and len(set(m.tx_id)) == 2
    assert all(len({m.tx_id[i] for i in np.nonzero(idx == k)[0]}) == 1 for k in range(2))
    assert set(m.features()) == {"path_gain_db", "delay_spread_s", "mean_delay_s", "k_factor_db",
                                 "angular_spread_deg"}
    sub = m.subset([0, 7])
    assert sub.k_factor_db.tolist() == [m.k_factor_db[0], m.k_factor_db[7]] and sub.tx_id == ["AP1", "AP2"]
    assert sub.angular_spread_deg.shape == (2,) and sub.mean_delay_s.shape == (2,)


def test_v2_roundtrip_and_from_arrays(tmp_path, twin):
    m = read_measurements(write_csv(tmp_path, V2_ROWS, V2_HEADER), twin)
    out = write_measurements(tmp_path / "out.parquet", m)
    m2 = read_measurements(out, twin)
    for c in ("delay_spread_s", "mean_delay_s", "k_factor_db", "angular_spread_deg"):
        np.testing.assert_array_equal(getattr(m2, c), getattr(m, c))
    assert m2.tx_id == m.tx_id
    m3 = Measurements.from_arrays(m.tx_pos, m.rx_pos, m.frequency_hz, m.path_gain_db, k_factor_db=m.k_factor_db,
                                  angular_spread_deg=m.angular_spread_deg, mean_delay_s=m.mean_delay_s,
                                  tx_id=m.tx_id, link_id=m.link_id)
    np.testing.assert_array_equal(m3.k_factor_db, m.k_factor_db)
    with pytest.raises(MeasurementError, match="k_factor_db"):
        Measurements.from_arrays(m.tx_pos, m.rx_pos, m.frequency_hz, m.path_gain_db, k_factor_db=[1, 2, 300])


@pytest.mark.parametrize("column,value,match", [
    ("k_factor_db", "150", r"outside \[-100, 100\] dB"),
    ("k_factor_db", "nan", "NaN is not allowed"),
    ("angular_spread_deg", "-3", "must be >= 0 deg"),
    ("angular_spread_deg", "400", "must be in degrees"),
    ("mean_delay_s", "-1e-9", "mean delay must be >= 0 s"),
    ("mean_delay_s", "33", "must be in seconds"),
    ("tx_id", "", "empty tx_id"),
])
def test_bad_feature_values(tmp_path, column, value, match):
    rows = [V2_ROWS[0], with_cell(V2_ROWS[1], column, value, V2_HEADER), V2_ROWS[2]]
    expect_error(write_csv(tmp_path, rows, V2_HEADER), row=2, line=3, column=column, match=match)


def test_tx_id_with_two_positions(tmp_path):
    rows = [V2_ROWS[0], V2_ROWS[1], with_cell(V2_ROWS[2], "tx_id", "AP1", V2_HEADER)]
    expect_error(write_csv(tmp_path, rows, V2_HEADER), row=3, line=4, column="tx_id",
                 match=r"transmitter 'AP1' is at \(-4, 4, 2\) m here but at \(0, 0, 2.5\) m in row 1 \(line 2\)")
