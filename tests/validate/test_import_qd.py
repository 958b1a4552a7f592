"""NIST Q-D realization importer (benchmarks/data/qd: files of github.com/wigig-tools/qd-realization) and one
real trace of its box lecture room matched against Q-D's own rays (LoS, first and second order)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rftwin.scene.import_qd import (
    QdFormatError,
    import_qd_scene,
    qd_material_of_objects,
    read_amf,
    read_material_library,
    read_mpc_json,
    read_node_positions,
    read_qd_output,
)

QD = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "qd"

AMF = """<?xml version="1.0"?>
<amf unit="{unit}">
  <object id="0"><metadata type="name">Wall</metadata>
    <mesh><vertices>
      <vertex><coordinates><x>0</x><y>0</y><z>0</z></coordinates></vertex>
      <vertex><coordinates><x>{x1}</x><y>0</y><z>0</z></coordinates></vertex>
      <vertex><coordinates><x>0</x><y>0</y><z>3000</z></coordinates></vertex>
    </vertices>
    <volume materialid="{mid}"><triangle><v1>0</v1><v2>1</v2><v3>{v3}</v3></triangle></volume></mesh>
  </object>
  <material id="1"><metadata type="name">Concrete</metadata></material>
</amf>
"""


def _amf(tmp_path, unit="millimeter", x1="4000", mid="1", v3="2"):
    p = tmp_path / "room.xml"
    p.write_text(AMF.format(unit=unit, x1=x1, mid=mid, v3=v3))
    return p


def test_read_lecture_room_amf():
    geo = read_amf(QD / "lecture_room" / "LectureRoom.xml")
    names = [o.name for o in geo.objects]
    assert len(names) == 12 and "RightWall" in names and "GlassDoor005" in names
    mats = {o.name: o.material for o in geo.objects}
    assert mats["GlassDoor005"] == "LeftWall" and mats["Ceiling"] == "Ceiling"  # materialid -> <material> name
    lo = np.min([o.vertices.min(0) for o in geo.objects], 0)
    hi = np.max([o.vertices.max(0) for o in geo.objects], 0)
    assert np.all(hi - lo < 30.0) and hi[2] == pytest.approx(3.0, abs=0.05)  # millimetres became metres
    lib = read_material_library(QD / "materialLibraryLectureRoom.csv")
    assert set(geo.materials) <= set(lib) and lib["RightWall"]["mu_RL"] == pytest.approx(10.8)


def test_amf_errors_name_file_object_and_expectation(tmp_path):
    assert read_amf(_amf(tmp_path, unit="meter", x1="4")).objects[0].vertices[1, 0] == 4.0
    with pytest.raises(QdFormatError, match=r"room\.xml: unit 'parsec' unknown"):
        read_amf(_amf(tmp_path, unit="parsec"))
    with pytest.raises(QdFormatError, match=r"room\.xml: object 'Wall', vertex 1: <x> is 'four', expected a number"):
        read_amf(_amf(tmp_path, x1="four"))
    with pytest.raises(QdFormatError, match=r"object 'Wall': volume materialid '7' is not a <material>"):
        read_amf(_amf(tmp_path, mid="7"))
    with pytest.raises(QdFormatError, match=r"object 'Wall': triangle vertex index 5 outside 0\.\.2"):
        read_amf(_amf(tmp_path, v3="5"))
    bad = tmp_path / "bad.xml"
    bad.write_text("<amf><object>")
    with pytest.raises(QdFormatError, match=r"bad\.xml: cannot be read as XML"):
        read_amf(bad)


def test_node_positions_and_outputs(tmp_path):
    pos = read_node_positions(QD / "box_lecture_room" / "NodePosition1.dat")
    assert pos.shape == (21, 3) and np.allclose(pos[0], [9, 17, 1.6])
    bad = tmp_path / "NodePosition9.dat"
    bad.write_text("1, 2, 3\n1, 2\n")
    with pytest.raises(QdFormatError, match=r"NodePosition9\.dat: line 2: expected three finite numbers"):
        read_node_positions(bad)
    ch = read_qd_output(QD / "lecture_room" / "qdOutput.json")
    assert {(c.tx, c.rx) for c in ch} == {(0, 1), (1, 0)}
    c = next(c for c in ch if c.tx == 0)
    # the first ray is the line of sight: 13.03 m at Q-D's c = 3e8, free-space gain at 60 GHz
    assert c.delay_s[0] * 3e8 == pytest.approx(np.linalg.norm([5, 12, -0.9]), abs=1e-3)
    assert c.gain_db[0] == pytest.approx(20 * np.log10(0.005 / (4 * np.pi * 13.0311)), abs=0.01)


def test_mpc_json_padding_order_and_time_steps(tmp_path):
    p = tmp_path / "Mpc.json"
    lines = [{"TX": 0, "RX": 1, "Rorder": 0, "MPC": [[0, 0, 1, 4, 0, 1]], "TimeSteps": [5]},
             {"TX": 0, "RX": 1, "Rorder": 1, "MPC": [[[4, 0, 1, 2, 0, 0, 0, 0, 1], [None] * 9]], "TimeSteps": [5]}]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rays = read_mpc_json(p, tx_positions={0: np.zeros((6, 3)) + [0, 0, 1]})
    assert [(r.order, r.time_step) for r in rays] == [(0, 5), (1, 5)]  # the null padding is skipped
    assert np.allclose(rays[1].vertices[0], [0, 0, 1]) and rays[1].length_m == pytest.approx(2 * np.sqrt(5))
    lines[1]["MPC"] = [[[4, 0, 1, None, 0, 0, 0, 0, 1]]]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(QdFormatError, match=r"Mpc\.json: line 2, time step 5: a ray of order 1 has missing"):
        read_mpc_json(p)


def test_box_room_trace_matches_qd_rays(tmp_path):
    """Import Q-D's box lecture room, trace one of its links with rftwin (specular, depth 2) and match every Q-D
    ray of orders 0-2 by delay (0.2 ns) and angle (1 deg)."""
    from rftwin.validate.qd_study import QdSettings, match_qd_rays, ray_table, trace_qd_rows

    box = QD / "box_lecture_room"
    xml = import_qd_scene(box / "BoxLectureRoom.xml", tmp_path / "scene")
    assert qd_material_of_objects(tmp_path / "scene")["Floor"] == "Floor"
    geo = read_amf(box / "BoxLectureRoom.xml")
    nodes = {i: read_node_positions(box / f"NodePosition{i}.dat") for i in range(4)}
    rays = [r for r in read_mpc_json(box / "Mpc_t0_t10_t20.json", nodes) if (r.tx, r.rx, r.time_step) == (0, 1, 0)]
    rt = ray_table(rays, geo, read_material_library(QD / "materialLibraryLectureRoom.csv"))
    assert sorted(rt.order.value_counts().items()) == [(0, 1), (1, 6), (2, 18)]
    assert not rt.unknown_surface.any()
    qs = QdSettings(samples_per_src=20_000)
    _, ps, row_link, _ = trace_qd_rows(xml, rt.tx_pos.iloc[0][None], rt.rx_pos.iloc[0][None], qs, max_depth=2)
    m = match_qd_rays(rt, ps, row_link, [0] * len(rt), qs)
    assert len(m) == len(rt) == ps.num_paths  # one-to-one: no Q-D ray unmatched, no extra rftwin path
    assert np.abs(m.delay_error_s).max() < 1e-12
    assert max(m.aoa_error_deg.max(), m.aod_error_deg.max()) < 0.05
