"""Corpus of malformed inputs (issue 13): every file the CLI reads, each case checked for

- a non-zero exit code,
- a message naming the file and the row / line / column / key / object / element that is wrong,
- no traceback (the command ends through its own error path),
- nothing written (the case's folder holds exactly the same files before and after).

Cases are generated from small valid fixtures (the built-in ``floor_wall`` scene, three links) by one mutation
each. Almost all fail during validation before any tracing; the checkpoint cases trace three links once (shared
cache). The count is printed by ``pytest -q tests/cli/test_bad_inputs.py`` (one test per case).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rftwin.cli.main import app

runner = CliRunner()
HDR = "link_id,tx_x,tx_y,tx_z,rx_x,rx_y,rx_z,frequency_hz"
ROWS = ["A,0.5,0,1.5,1.5,1,1.2,3.5e9", "B,0.5,0,1.5,-1.5,1,1.0,3.5e9", "C,0.5,0,1.5,1.0,-1.5,0.5,3.5e9"]
GAINS = ["-48", "-52", "-50"]
FAST = ["--max-depth", "1", "--samples-per-src", "10000"]


@dataclass
class Case:
    """Files (relative path -> text or bytes, or a callable(dir) that writes them), the CLI arguments ('{d}'
    stands for the case folder) and the substrings the error must contain."""

    id: str
    files: dict[str, str | bytes] | Callable[[Path], None]
    args: list[str]
    expect: list[str]
    env: dict[str, str] = field(default_factory=dict)


CASES: list[Case] = []


def case(*a, **kw) -> None:
    CASES.append(Case(*a, **kw))


# ------------------------------------------------------------------------------------------ measurements
def meas(rows=None, header=HDR + ",path_gain_db", gains=GAINS, extra: str = "") -> str:
    rows = rows or [f"{r},{g}" for r, g in zip(ROWS, gains)]
    return header + extra + "\n" + "\n".join(rows) + "\n"


def meas_row2(value: str, col: str) -> str:
    cols = (HDR + ",path_gain_db").split(",")
    r = [f"{x},{g}".split(",") for x, g in zip(ROWS, GAINS)]
    r[1][cols.index(col)] = value
    return meas([",".join(x) for x in r])


CAL = ["calibrate", "floor_wall", "{d}/m.csv", "--out", "{d}/out"]
for col in ("tx_x", "tx_y", "tx_z", "rx_x", "rx_y", "rx_z", "frequency_hz", "path_gain_db"):
    case(f"meas-text-{col}", {"m.csv": meas_row2("abc", col)}, CAL, ["m.csv", "row 2 (line 3)", f"'{col}'"])
    case(f"meas-empty-{col}", {"m.csv": meas_row2("", col)}, CAL, ["m.csv", "row 2 (line 3)", f"'{col}'",
                                                                   "missing value"])
    case(f"meas-nan-{col}", {"m.csv": meas_row2("nan", col)}, CAL, ["m.csv", "row 2 (line 3)", f"'{col}'"])
    case(f"meas-inf-{col}", {"m.csv": meas_row2("inf", col)}, CAL, ["m.csv", "row 2 (line 3)", f"'{col}'"])
for v, what in (("-3.5e9", "must be positive"), ("3.5", "below 1 MHz"), ("3500", "below 1 MHz"),
                ("3.5e13", "above 1 THz"), ("0", "must be positive")):
    case(f"meas-frequency-{v}", {"m.csv": meas_row2(v, "frequency_hz")}, CAL,
         ["m.csv", "row 2 (line 3)", "'frequency_hz'", what])
for v, what in (("12", "above 0 dB"), ("0.5", "above 0 dB"), ("-400", "below -250 dB"), ("1e9", "above 0 dB")):
    case(f"meas-gain-{v}", {"m.csv": meas_row2(v, "path_gain_db")}, CAL,
         ["m.csv", "row 2 (line 3)", "'path_gain_db'", what])
for col, v, what in (("rx_x", "99", "outside the scene's bounding box"), ("rx_y", "-9", "outside"),
                     ("tx_x", "-50", "outside"), ("rx_z", "-5", "below the scene's bounding box"),
                     ("tx_z", "500", "higher than the scene's top")):
    case(f"meas-pos-{col}-{v}", {"m.csv": meas_row2(v, col)}, CAL, ["m.csv", "row 2 (line 3)", f"'{col}'", what])
case("meas-tx-equals-rx", {"m.csv": meas(["A,0.5,0,1.5,0.5,0,1.5,3.5e9,-48", *[f"{r},-50" for r in ROWS[1:]]])},
     CAL, ["m.csv", "row 1 (line 2)", "coincide"])
case("meas-duplicate-id", {"m.csv": meas_row2("A", "link_id")}, CAL, ["m.csv", "row 2 (line 3)", "'link_id'",
                                                                     "duplicate link_id 'A'"])
case("meas-empty-id", {"m.csv": meas_row2("", "link_id")}, CAL, ["m.csv", "row 2 (line 3)", "empty link_id"])
for col, v, what in (("delay_spread_s", "-1e-9", "must be >= 0"), ("delay_spread_s", "5", "implausibly large"),
                     ("mean_delay_s", "-1", "must be >= 0"), ("k_factor_db", "500", "outside"),
                     ("angular_spread_deg", "400", "above 360"), ("angular_spread_deg", "-3", "must be >= 0"),
                     ("delay_spread_s", "x", "expected a number")):
    rows = [f"{r},{g},{'1e-8' if i != 1 else v}" for i, (r, g) in enumerate(zip(ROWS, GAINS))]
    if col != "delay_spread_s":
        rows = [f"{r},{g},{v if i == 1 else '1'}" for i, (r, g) in enumerate(zip(ROWS, GAINS))]
    case(f"meas-{col}-{v}", {"m.csv": meas(rows, extra="," + col)}, CAL, ["m.csv", "row 2 (line 3)", f"'{col}'",
                                                                          what])
case("meas-rss-without-power", {"m.csv": meas(header=HDR + ",rss_dbm")}, CAL, ["m.csv", "tx_power_dbm"])
case("meas-rss-500", {"m.csv": meas([f"{r},500,20" for r in ROWS], header=HDR + ",rss_dbm,tx_power_dbm")}, CAL,
     ["m.csv", "row 1 (line 2)", "'rss_dbm', 'tx_power_dbm'", "above 0 dB"])
case("meas-rss-gain-disagree", {"m.csv": meas([f"{r},-30,20,-40" for r in ROWS],
                                               header=HDR + ",rss_dbm,tx_power_dbm,path_gain_db")},
     CAL, ["m.csv", "row 1 (line 2)", "disagrees"])
case("meas-missing-column", {"m.csv": meas([",".join(f"{r},{g}".split(",")[:6] + [f"{r},{g}".split(",")[7],
                                                                                  g]) for r, g in zip(ROWS, GAINS)],
                                           header="link_id,tx_x,tx_y,tx_z,rx_x,rx_y,frequency_hz,path_gain_db")},
     CAL, ["m.csv", "rx_z"])
case("meas-no-gain-column", {"m.csv": meas(ROWS, header=HDR)}, CAL, ["m.csv", "path_gain_db"])
case("meas-typo-column", {"m.csv": meas(header=HDR + ",path_gain_db_x")}, CAL, ["m.csv", "path_gain_db_x"])
case("meas-short-row", {"m.csv": meas([ROWS[0] + ",-48", "B,0.5,0,1.5", ROWS[2] + ",-50"])}, CAL,
     ["m.csv", "line 3"])
case("meas-long-row", {"m.csv": meas([ROWS[0] + ",-48,7,8", ROWS[1] + ",-52", ROWS[2] + ",-50"])}, CAL,
     ["m.csv", "line 2"])
case("meas-empty-file", {"m.csv": ""}, CAL, ["m.csv", "empty file"])
case("meas-header-only", {"m.csv": HDR + ",path_gain_db\n"}, CAL, ["m.csv", "no data rows"])
case("meas-nul-bytes", {"m.csv": b"link_id\x00,tx\x00\n"}, CAL, ["m.csv", "NUL bytes"])
case("meas-not-utf8", {"m.csv": meas().encode() + b"\xff\xfe\n"}, CAL, ["m.csv", "UTF-8"])
case("meas-suffix", {"m.xlsx": meas()}, ["calibrate", "floor_wall", "{d}/m.xlsx", "--out", "{d}/out"],
     ["m.xlsx", "unsupported file type"])
case("meas-missing-file", {}, CAL, ["m.csv", "no such file"])
case("meas-is-a-folder", lambda d: (d / "m.csv").mkdir(), CAL, ["m.csv", "not a regular file"])
case("meas-tx-id-two-positions", {"m.csv": meas([f"{r},{g},T1" for r, g in zip(
    ["A,0.5,0,1.5,1.5,1,1.2,3.5e9", "B,0.6,0,1.5,-1.5,1,1.0,3.5e9", ROWS[2]], GAINS)],
    extra=",tx_id")}, CAL, ["m.csv", "row 2 (line 3)", "'tx_id'", "one tx_id must have one position"])
case("meas-tx-id-empty", {"m.csv": meas([f"{r},{g},{t}" for r, g, t in zip(ROWS, GAINS, ["T", "", "T"])],
                                        extra=",tx_id")}, CAL, ["m.csv", "row 2 (line 3)", "empty tx_id"])
case("meas-bool", {"m.csv": meas_row2("true", "rx_x")}, CAL, ["m.csv", "row 2 (line 3)", "'rx_x'"])
case("meas-parquet-garbage", {"m.parquet": b"PAR1 this is not parquet"},
     ["calibrate", "floor_wall", "{d}/m.parquet", "--out", "{d}/out"], ["m.parquet", "Parquet"])


def _parquet_nan(d: Path) -> None:
    import pandas as pd

    df = pd.DataFrame([dict(zip((HDR + ",path_gain_db").split(","), f"{r},{g}".split(",")))
                       for r, g in zip(ROWS, GAINS)])
    for c in df.columns[1:]:
        df[c] = df[c].astype(float)
    df.loc[1, "rx_y"] = np.nan
    df.to_parquet(d / "m.parquet")


case("meas-parquet-nan", _parquet_nan, ["calibrate", "floor_wall", "{d}/m.parquet", "--out", "{d}/out"],
     ["m.parquet", "row 2", "'rx_y'"])
case("meas-all-at-once", {"m.csv": meas(["A,0.5,0,1.5,1.5,1,1.2,x,-48", "B,0.5,0,1.5,-1.5,1,1.0,3.5,-52",
                                         "C,0.5,0,1.5,9,-1.5,0.5,3.5e9,-50"])}, CAL,
     ["m.csv", "row 1 (line 2), column 'frequency_hz'", "row 2 (line 3), column 'frequency_hz'",
      "row 3 (line 4), column 'rx_x'"])

# ---------------------------------------------------------------------------------------------- links
PRED = ["predict", "floor_wall", "{d}/links.csv", "--out", "{d}/p.csv"]


def links_row2(value: str, col: str, extra_cols: str = "") -> str:
    cols = HDR.split(",")
    r = [x.split(",") for x in ROWS]
    r[1][cols.index(col)] = value
    return HDR + "\n" + "\n".join(",".join(x) for x in r) + "\n"


for col in HDR.split(",")[1:]:
    case(f"links-text-{col}", {"links.csv": links_row2("1.2.3", col)}, PRED,
         ["links.csv", "row 2 (line 3)", f"'{col}'"])
    case(f"links-nan-{col}", {"links.csv": links_row2("NaN", col)}, PRED, ["links.csv", "row 2 (line 3)", f"'{col}'"])
case("links-duplicate-id", {"links.csv": links_row2("A", "link_id")}, PRED, ["links.csv", "row 2", "duplicate"])
case("links-no-id-column", {"links.csv": HDR.replace("link_id,", "") + "\n" +
                            "\n".join(r.split(",", 1)[1] for r in ROWS) + "\n"}, PRED, ["links.csv", "link_id"])
case("links-outside", {"links.csv": links_row2("30", "rx_y")}, PRED, ["links.csv", "row 2 (line 3)", "'rx_y'"])
case("links-frequency-ghz", {"links.csv": links_row2("3.5", "frequency_hz")}, PRED,
     ["links.csv", "row 2 (line 3)", "below 1 MHz"])
case("links-power-text", {"links.csv": HDR + ",tx_power_dbm\n" + "\n".join(f"{r},{p}" for r, p in
                                                                              zip(ROWS, ["20", "high", "20"]))},
     PRED, ["links.csv", "row 2 (line 3)", "'tx_power_dbm'"])
case("links-markup-id", {"links.csv": links_row2("[/red]", "link_id").replace("\nC,", "\n[/red],")}, PRED,
     ["links.csv", "row 3 (line 4)", "duplicate link_id '[/red]'"])
case("links-empty", {"links.csv": ""}, PRED, ["links.csv", "empty file"])
case("links-wideband-slash-id", {"links.csv": links_row2("x/y", "link_id")},
     PRED + ["--wideband", "{d}/w.h5"], ["links.csv", "row 2", "'link_id'", "x/y"])

# --------------------------------------------------------------------------------------------- labels
LAB = CAL + ["--labels", "{d}/labels.yaml"]
GOOD_M = {"m.csv": meas()}
for cid, text, expect in (
        ("unknown-object", "floor: concrete\nceiling: brick\n", ["key 'ceiling'"]),
        ("unknown-material", "floor: unobtainium\n", ["key 'floor'", "unobtainium"]),
        ("list", "- floor\n- wall\n", ["expected a mapping"]),
        ("invalid-yaml", "floor: [concrete\n", ["invalid YAML"]),
        ("number-value", "floor: 42\n", ["key 'floor'"]),
        ("nested", "floor:\n  material: concrete\n", ["key 'floor'"]),
        ("empty", "", ["empty file"]),
        ("null-value", "floor:\n", ["key 'floor'"]),
        ("scalar", "concrete\n", ["expected a mapping"]),
        ("python-tag", "floor: !!python/object/apply:os.system ['true']\n", ["labels.yaml"])):
    case(f"labels-{cid}", {**GOOD_M, "labels.yaml": text}, LAB, ["labels.yaml", *expect])
case("labels-invalid-json", {**GOOD_M, "labels.json": '{"floor": "concrete",}'},
     CAL + ["--labels", "{d}/labels.json"], ["labels.json", "line 1", "invalid JSON"])
case("labels-suffix", {**GOOD_M, "labels.txt": "floor: concrete\n"}, CAL + ["--labels", "{d}/labels.txt"],
     ["labels.txt", "unsupported file type"])
case("labels-not-utf8", {**GOOD_M, "labels.yaml": b"floor: \xff\xfe\n"}, LAB, ["labels.yaml", "UTF-8"])
case("labels-missing", GOOD_M, LAB, ["labels.yaml"])

# ------------------------------------------------------------------------------------------ roughness
ROUGH = CAL + ["--roughness", "{d}/rough.yaml"]
for cid, text, expect in (
        ("unknown-object", "ceiling: rough\n", ["ceiling"]),
        ("unknown-class", "floor: sandpaper\n", ["object 'floor'"]),
        ("bool", "floor: true\n", ["object 'floor'"]),
        ("level-7", "floor: 7\n", ["object 'floor'"]),
        ("negative-ra", "floor: -3.0\n", ["object 'floor'"]),
        ("not-mapping", "- floor\n", ["expected a mapping"]),
        ("invalid-yaml", "floor: [rough\n", ["not valid YAML"]),
        ("python-tag", "floor: !!python/object/apply:os.system ['true']\n", ["rough.yaml"])):
    case(f"roughness-{cid}", {**GOOD_M, "rough.yaml": text}, ROUGH, ["rough.yaml", *expect])
case("roughness-missing", GOOD_M, ROUGH, ["rough.yaml", "no such"])


# ------------------------------------------------------------------------------------------- wideband
def wb_npz(mutate=None, drop=None, links=("A", "B", "C"), k=8) -> Callable[[Path], None]:
    def write(d: Path) -> None:
        arrays = {"format": np.array("rftwin-wideband"), "version": np.array(1), "carrier_hz": np.array(3.5e9),
                  "bandwidth_hz": np.array(100e6), "num_subcarriers": np.array(k)}
        for lid in links:
            arrays[f"links/{lid}/cfr"] = (np.ones(k) * 1e-3).astype(np.complex128)
        if mutate:
            mutate(arrays)
        for key in drop or ():
            arrays.pop(key)
        with open(d / "w.npz", "wb") as fh:
            np.savez(fh, **arrays)
        (d / "m.csv").write_text(meas())
    return write


WB = CAL + ["--wideband", "{d}/w.npz", "--terms", "path_gain,cfr:nmse:1"]


def _set(key, value):
    return lambda a: a.__setitem__(key, value)


for cid, w, expect in (
        ("format", wb_npz(_set("format", np.array("something-else"))), ["format"]),
        ("version", wb_npz(_set("version", np.array(7))), ["version"]),
        ("bandwidth-negative", wb_npz(_set("bandwidth_hz", np.array(-1e6))), ["bandwidth_hz"]),
        ("subcarriers-zero", wb_npz(_set("num_subcarriers", np.array(0))), ["num_subcarriers"]),
        ("carrier-mismatch", wb_npz(_set("carrier_hz", np.array(2.4e9))), ["carrier_hz"]),
        ("cfr-nan", wb_npz(_set("links/B/cfr", np.full(8, np.nan + 0j))), ["'B'"]),
        ("cfr-length", wb_npz(_set("links/B/cfr", np.ones(5, complex))), ["'B'"]),
        ("cfr-2d", wb_npz(_set("links/B/cfr", np.ones((2, 8), complex))), ["'B'"]),
        ("unknown-link", wb_npz(links=("A", "B", "Z")), ["'Z'"]),
        ("bad-array-name", wb_npz(_set("links/B/cfr/x", np.ones(8))), ["links/B/cfr/x"]),
        ("top-level-extra", wb_npz(_set("links", np.ones(3))), ["links"]),
        ("taps-without-amplitude", wb_npz(_set("links/B/delay_s", np.array([1e-8]))), ["'B'"]),
        ("object-array", wb_npz(_set("links/B/cfr", np.array([{"a": 1}], dtype=object))), ["pickle"])):
    case(f"wideband-{cid}", w, WB, ["w.npz", *expect])
case("wideband-not-zip", {**GOOD_M, "w.npz": b"not a zip file at all"}, WB, ["w.npz", "NPZ"])
case("wideband-h5-garbage", {**GOOD_M, "w.h5": b"\x89HDF\r\n garbage"},
     CAL + ["--wideband", "{d}/w.h5", "--terms", "path_gain,cfr:nmse:1"], ["w.h5", "HDF5"])
case("wideband-suffix", {**GOOD_M, "w.txt": b"x"},
     CAL + ["--wideband", "{d}/w.txt", "--terms", "path_gain,cfr:nmse:1"], ["w.txt", "unsupported file type"])
case("wideband-no-cfr-term", wb_npz(), CAL + ["--wideband", "{d}/w.npz"], ["w.npz", "no cfr term"])

# ----------------------------------------------------------------------------------------------- MPCs
MPC_HDR = "link_id,delay_s,power_db,azimuth_arrival_deg,elevation_arrival_deg"
MPC_ROWS = ["A,5e-9,-50,10,5", "A,9e-9,-60,40,0", "B,7e-9,-55,-30,10"]


def mpcs_row2(value: str, col: str) -> str:
    cols = MPC_HDR.split(",")
    r = [x.split(",") for x in MPC_ROWS]
    r[1][cols.index(col)] = value
    return MPC_HDR + "\n" + "\n".join(",".join(x) for x in r) + "\n"


MPC = CAL + ["--mpcs", "{d}/mpcs.csv"]
for col, v in (("delay_s", "abc"), ("delay_s", "-1e-9"), ("delay_s", "nan"), ("power_db", "x"),
               ("power_db", "inf"), ("azimuth_arrival_deg", "999"), ("elevation_arrival_deg", "200"),
               ("azimuth_arrival_deg", "east"), ("link_id", "ZZ"), ("link_id", "")):
    case(f"mpcs-{col}-{v or 'empty'}", {**GOOD_M, "mpcs.csv": mpcs_row2(v, col)}, MPC,
         ["mpcs.csv", "row 2 (line 3)", f"'{col}'"])
case("mpcs-missing-column", {**GOOD_M, "mpcs.csv": "link_id,delay_s\nA,5e-9\n"}, MPC, ["mpcs.csv", "power_db"])
case("mpcs-elevation-without-azimuth", {**GOOD_M, "mpcs.csv": "link_id,delay_s,power_db,elevation_arrival_deg\n"
                                        "A,5e-9,-50,3\n"}, MPC, ["mpcs.csv", "azimuth_arrival_deg"])
case("mpcs-empty", {**GOOD_M, "mpcs.csv": ""}, MPC, ["mpcs.csv", "empty file"])
case("mpcs-no-term", {**GOOD_M, "mpcs.csv": mpcs_row2("5e-9", "delay_s")}, MPC + ["--terms", "path_gain"],
     ["mpcs.csv", "mpc_power"])


# ------------------------------------------------------------------------------------ scene XML, meshes
def scene_dir(mutate_xml=None, mutate_files=None) -> Callable[[Path], None]:
    def write(d: Path) -> None:
        shutil.copytree(_FW_DIR, d / "scene")
        xml = d / "scene" / "scene.xml"
        if mutate_xml:
            xml.write_text(mutate_xml(xml.read_text()))
        if mutate_files:
            mutate_files(d / "scene")
        (d / "links.csv").write_text(HDR + "\n" + "\n".join(ROWS) + "\n")
    return write


SCN = ["predict", "{d}/scene/scene.xml", "{d}/links.csv", "--out", "{d}/p.csv"]


def _repl(a, b):
    return lambda t: t.replace(a, b, 1)


def _write(rel, data):
    def f(root: Path):
        p = root / rel
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
    return f


for cid, mx, mf, expect in (
        ("not-well-formed", lambda t: t[: len(t) // 2], None, ["scene.xml", "line", "not well-formed"]),
        ("root-not-scene", lambda t: t.replace("<scene", "<scen", 1).replace("</scene>", "</scen>"), None,
         ["scene.xml", "root element"]),
        ("include", _repl("</scene>", '<include filename="other.xml"/></scene>'), None, ["scene.xml", "<include>"]),
        ("dotdot", _repl("meshes/floor.ply", "../../floor.ply"), None,
         ["scene.xml", "id='floor'", "'../../floor.ply'", "outside the scene's folder"]),
        ("absolute", _repl("meshes/floor.ply", "/etc/passwd"), None,
         ["scene.xml", "id='floor'", "'/etc/passwd'", "outside"]),
        ("missing-mesh", _repl("meshes/floor.ply", "meshes/nope.ply"), None,
         ["scene.xml", "id='floor'", "meshes/nope.ply", "no such file"]),
        ("variable", _repl("meshes/floor.ply", "$meshdir/floor.ply"), None, ["scene.xml", "id='floor'", "variables"]),
        ("empty-filename", _repl("meshes/floor.ply", ""), None, ["scene.xml", "id='floor'"]),
        ("empty-mesh", None, _write("meshes/floor.ply", b""), ["scene.xml", "meshes/floor.ply", "empty file"]),
        ("mesh-not-ply", None, _write("meshes/floor.ply", "SECRET,1,2,3\n"),
         ["scene.xml", "meshes/floor.ply", "not a PLY file"]),
        ("mesh-is-folder", None, lambda r: ((r / "meshes/floor.ply").unlink(), (r / "meshes/floor.ply").mkdir()),
         ["scene.xml", "meshes/floor.ply", "no such file"]),
        ("symlink-out", None, lambda r: ((r / "meshes/floor.ply").unlink(),
                                        os.symlink("/etc/hostname", r / "meshes/floor.ply")),
         ["scene.xml", "meshes/floor.ply", "outside"]),
        ("no-shapes", lambda t: t[: t.index("<shape")] + "</scene>\n", None, ["scene.xml", "no objects"]),
        ("unknown-plugin", _repl('type="ply"', 'type="plyx"'), None, ["scene.xml", "cannot be loaded"]),
        ("binary", None, _write("scene.xml", b"\x00\x01\x02garbage"), ["scene.xml"])):
    case(f"scene-{cid}", scene_dir(mx, mf), SCN, expect)
case("scene-missing", lambda d: (d / "links.csv").write_text(HDR + "\n" + ROWS[0] + "\n"),
     ["predict", "{d}/nope.xml", "{d}/links.csv", "--out", "{d}/p.csv"], ["nope.xml", "no such file"])
case("scene-truncated-mesh", scene_dir(None, lambda r: (r / "meshes/floor.ply").write_bytes(
    (r / "meshes/floor.ply").read_bytes()[:120])), SCN, ["scene.xml", "floor.ply"])


# ------------------------------------------------------------------------ import-scene: meshes, clouds
IMP = ["import-scene", "{d}/in.ply", "--labels", "{d}/labels.yaml", "--out", "{d}/out"]
CUBE_OBJ = ("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 0 1\nv 1 0 1\nv 1 1 1\nv 0 1 1\n"
            "f 1 3 2\nf 1 4 3\nf 5 6 7\nf 5 7 8\nf 1 2 6\nf 1 6 5\nf 2 3 7\nf 2 7 6\nf 3 4 8\nf 3 8 7\nf 4 1 5\n"
            "f 4 5 8\n")
for cid, files, args, expect in (
        ("mesh-missing", {"labels.yaml": "'*': concrete\n"}, IMP, ["in.ply"]),
        ("mesh-empty", {"in.ply": b"", "labels.yaml": "'*': concrete\n"}, IMP, ["in.ply"]),
        ("mesh-garbage", {"in.ply": b"ply\nformat ascii 1.0\nelement vertex x\n", "labels.yaml": "'*': concrete\n"},
         IMP, ["in.ply"]),
        ("mesh-suffix", {"in.xyz1": b"1 2 3\n", "labels.yaml": "'*': concrete\n"},
         ["import-scene", "{d}/in.xyz1", "--labels", "{d}/labels.yaml", "--out", "{d}/out"], ["in.xyz1"]),
        ("labels-unknown-material", {"in.obj": CUBE_OBJ, "labels.yaml": "'*': unobtainium\n"},
         ["import-scene", "{d}/in.obj", "--labels", "{d}/labels.yaml", "--out", "{d}/out"],
         ["labels.yaml", "unobtainium"]),
        ("labels-no-match", {"in.obj": CUBE_OBJ, "labels.yaml": "nothing_like_this: concrete\n"},
         ["import-scene", "{d}/in.obj", "--labels", "{d}/labels.yaml", "--out", "{d}/out"], ["labels.yaml"]),
        ("labels-invalid", {"in.obj": CUBE_OBJ, "labels.yaml": "'*': [concrete\n"},
         ["import-scene", "{d}/in.obj", "--labels", "{d}/labels.yaml", "--out", "{d}/out"], ["labels.yaml"]),
        ("obj-bad-face", {"in.obj": "v 0 0 0\nv 1 0 0\nf 1 2 9\n", "labels.yaml": "'*': concrete\n"},
         ["import-scene", "{d}/in.obj", "--labels", "{d}/labels.yaml", "--out", "{d}/out"], ["in.obj"]),
        ("out-not-empty", {"in.obj": CUBE_OBJ, "labels.yaml": "'*': concrete\n", "out/precious.txt": "x"},
         ["import-scene", "{d}/in.obj", "--labels", "{d}/labels.yaml", "--out", "{d}/out"], ["out"]),
        ("cloud-too-few", {"in.ply": "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                                     "property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n",
                           "labels.yaml": "'*': concrete\n"}, IMP, ["in.ply"]),
        ("cloud-nan", {"in.ply": "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
                                 "property float z\nend_header\n0 0 0\nnan 0 0\n0 1 0\n0 0 1\n",
                       "labels.yaml": "'*': concrete\n"}, IMP, ["in.ply"]),
        ("cloud-xyz-text", {"in.xyz": "1 2 three\n", "labels.yaml": "'*': concrete\n"},
         ["import-scene", "{d}/in.xyz", "--point-cloud", "--labels", "{d}/labels.yaml", "--out", "{d}/out"],
         ["in.xyz"]),
        ("cloud-empty-xyz", {"in.xyz": "", "labels.yaml": "'*': concrete\n"},
         ["import-scene", "{d}/in.xyz", "--point-cloud", "--labels", "{d}/labels.yaml", "--out", "{d}/out"],
         ["in.xyz"])):
    case(f"import-{cid}", files, args, expect)


# -------------------------------------------------------------------------------- twins / materials.json
def twin(mutate=None, raw: bytes | None = None, files=None) -> Callable[[Path], None]:
    def write(d: Path) -> None:
        shutil.copytree(_TWIN_DIR, d / "twin")
        mj = d / "twin" / "materials.json"
        if raw is not None:
            mj.write_bytes(raw)
        elif mutate:
            doc = json.loads(mj.read_text())
            mutate(doc)
            mj.write_text(json.dumps(doc))
        if files:
            files(d / "twin")
        (d / "links.csv").write_text(HDR + "\n" + "\n".join(ROWS) + "\n")
    return write


def _obj(name, key, value):
    return lambda doc: doc["objects"][name].__setitem__(key, value)


def _del(name, key):
    return lambda doc: doc["objects"][name].pop(key)


TW = ["predict", "{d}/twin", "{d}/links.csv", "--out", "{d}/p.csv"]
for key, v in (("relative_permittivity", -5), ("relative_permittivity", 0.5), ("relative_permittivity", "4"),
               ("relative_permittivity", None), ("relative_permittivity", float("inf")), ("conductivity", -1),
               ("conductivity", float("nan")), ("conductivity", True), ("conductivity", [1]), ("thickness", 0),
               ("thickness", -0.1), ("scattering_coefficient", 1.5), ("xpd_coefficient", -0.1),
               ("relative_permittivity_std", -1), ("a", 0), ("d", float("nan")), ("label", "unobtainium"),
               ("label", 7), ("colour", "red")):
    case(f"twin-{key}-{v}", twin(_obj("wall", key, v)), TW, ["materials.json", "object 'wall'", f"key '{key}'"])
for key in ("relative_permittivity", "conductivity"):
    case(f"twin-missing-{key}", twin(_del("floor", key)), TW, ["materials.json", "object 'floor'", f"key '{key}'",
                                                                "missing"])
case("twin-power-law-partial", twin(lambda doc: doc["objects"]["floor"].update(a=4.0, b=0.1)), TW,
     ["materials.json", "object 'floor'", "power-law keys"])
case("twin-unknown-object", twin(lambda doc: doc["objects"].update(ghost={"relative_permittivity": 2,
                                                                         "conductivity": 0})), TW,
     ["materials.json", "object 'ghost'", "not in the scene"])
case("twin-missing-object", twin(lambda doc: doc["objects"].pop("wall")), TW,
     ["materials.json", "object 'wall'", "missing"])
case("twin-object-not-mapping", twin(lambda doc: doc["objects"].__setitem__("wall", 3)), TW,
     ["materials.json", "object 'wall'", "expected a mapping"])
case("twin-objects-list", twin(lambda doc: doc.__setitem__("objects", [])), TW, ["materials.json", "key 'objects'"])
case("twin-frequency", twin(lambda doc: doc.__setitem__("reference_frequency_hz", -1)), TW,
     ["materials.json", "key 'reference_frequency_hz'"])
case("twin-invalid-json", twin(raw=b'{"objects": {,}}'), TW, ["materials.json", "line 1", "invalid JSON"])
case("twin-not-object", twin(raw=b"[1, 2]"), TW, ["materials.json", "expected a JSON object"])
case("twin-not-utf8", twin(raw=b'{"objects": "\xff"}'), TW, ["materials.json", "UTF-8"])
case("twin-empty", twin(raw=b""), TW, ["materials.json", "invalid JSON"])
case("twin-materials-folder", twin(files=lambda t: ((t / "materials.json").unlink(),
                                                    (t / "materials.json").mkdir())), TW,
     ["materials.json", "not a regular file"])
case("twin-no-scene", twin(files=lambda t: (t / "scene.xml").unlink()), TW, ["twin", "scene.xml"])
case("twin-mesh-outside", twin(files=lambda t: (t / "scene.xml").write_text(
    (t / "scene.xml").read_text().replace("meshes/wall.ply", "../../wall.ply"))), TW,
     ["scene.xml", "id='wall'", "outside"])
case("radiomap-twin-bad", twin(_obj("wall", "conductivity", -2)),
     ["radiomap", "{d}/twin", "--tx", "0 0 1", "--out", "{d}/rmap"], ["materials.json", "object 'wall'"])
case("materials-map-twin-bad", twin(_obj("wall", "relative_permittivity", "x")),
     ["materials-map", "{d}/twin", "--object", "wall", "--out", "{d}/mm"], ["materials.json", "object 'wall'"])
case("evaluate-twin-bad", twin(_obj("wall", "conductivity", -2),
                               files=lambda t: (t.parent / "m.csv").write_text(meas())),
     ["evaluate", "{d}/twin", "{d}/m.csv", "--out", "{d}/ev"], ["materials.json", "object 'wall'"])

# ------------------------------------------------------------------------------------ output destinations
for cid, files, args, expect in (
        ("predict-out-dir", {"links.csv": HDR + "\n" + ROWS[0] + "\n", "o/keep": "x"},
         ["predict", "floor_wall", "{d}/links.csv", "--out", "{d}/o"], ["--out", "is a folder"]),
        ("predict-out-parent-file", {"links.csv": HDR + "\n" + ROWS[0] + "\n", "f": "x"},
         ["predict", "floor_wall", "{d}/links.csv", "--out", "{d}/f/p.csv"], ["--out", "is a file, not a folder"]),
        ("predict-wideband-suffix", {"links.csv": HDR + "\n" + ROWS[0] + "\n"},
         PRED + ["--wideband", "{d}/w.txt"], ["--wideband", "w.txt", "unsupported file type"]),
        ("calibrate-out-file", {"m.csv": meas(), "out": "x"}, CAL, ["--out", "out", "is a file"]),
        ("calibrate-out-unrelated", {"m.csv": meas(), "out/materials.json": "{}"}, CAL,
         ["--out", "not empty (materials.json)"]),
        ("evaluate-out-file", {"m.csv": meas(), "ev": "x"}, ["evaluate", "floor_wall", "{d}/m.csv", "--out",
                                                             "{d}/ev"], ["--out", "ev", "is a file"]),
        ("radiomap-out-unrelated", {"rm/notes.txt": "x"},
         ["radiomap", "floor_wall", "--tx", "0 0 1", "--out", "{d}/rm"], ["--out", "not empty (notes.txt)"]),
        ("materials-map-out-file", {"mm": "x"}, ["materials-map", "floor_wall", "--object", "wall", "--out",
                                                 "{d}/mm"], ["--out", "mm", "is a file"]),
        ("plan-out-dir", {"plan.csv/x": "x"}, ["plan", "floor_wall", "--budget", "2", "--out", "{d}/plan.csv"],
         ["--out", "plan.csv", "is a folder"])):
    case(f"out-{cid}", files, args, expect)

# ------------------------------------------------------------------------------------------ path cache
for cmd in (PRED, CAL, ["evaluate", "floor_wall", "{d}/m.csv", "--out", "{d}/ev"],
            ["plan", "floor_wall", "--budget", "2", "--out", "{d}/plan.csv"]):
    case(f"cache-is-a-file-{cmd[0]}", {"m.csv": meas(), "links.csv": HDR + "\n" + ROWS[0] + "\n", "cachefile": "x"},
         cmd, ["path cache", "cachefile", "RFTWIN_CACHE", "is a file"], env={"RFTWIN_CACHE": "{d}/cachefile"})
case("cache-below-a-file", {"links.csv": HDR + "\n" + ROWS[0] + "\n", "cachefile": "x"}, PRED,
     ["path cache", "cachefile/sub", "cannot be created"], env={"RFTWIN_CACHE": "{d}/cachefile/sub"})


# ----------------------------------------------------------------------------------------- checkpoints
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def ckpt(data: bytes | Callable[[Path], None]) -> Callable[[Path], None]:
    def write(d: Path) -> None:
        (d / "m.csv").write_text(meas())
        (d / "out" / "checkpoint").mkdir(parents=True)
        p = d / "out" / "checkpoint" / "round0.pt"
        if callable(data):
            data(p)
        else:
            p.write_bytes(data)
    return write


def _torch_pickle(p: Path) -> None:
    import torch

    torch.save({"fingerprint": "x"}, p)


def _safetensors_foreign(p: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(p), metadata={"format": "pt"})


def _truncated(p: Path) -> None:
    import torch

    from rftwin.calibrate.checkpoint import save_checkpoint

    save_checkpoint(p, {"fingerprint": "x", "model": {"u": torch.zeros(100)}})
    p.write_bytes(p.read_bytes()[:-50])


RES = CAL + ["--resume", "--retrace", "0", "--sweeps", "0", "--starts", "2", "--refine", "1", *FAST]
case("checkpoint-folder", ckpt(lambda p: p.mkdir()), RES, ["checkpoint", "round0.pt", "not a regular file"])
for cid, data, expect in (("pickle-code", pickle.dumps({"fingerprint": _Evil()}), ["cannot be read"]),
                          ("torch-pickle", _torch_pickle, ["cannot be read"]),
                          ("empty", b"", ["cannot be read"]),
                          ("random-bytes", bytes(range(256)) * 4, ["cannot be read"]),
                          ("foreign-safetensors", _safetensors_foreign, ["not an rftwin checkpoint"]),
                          ("truncated", _truncated, ["cannot be read"])):
    case(f"checkpoint-{cid}", ckpt(data), RES, ["checkpoint", "round0.pt", *expect])


# ---------------------------------------------------------------------------------------------- harness
_FW_DIR: Path
_TWIN_DIR: Path


@pytest.fixture(scope="module", autouse=True)
def _fixtures(tmp_path_factory):
    """The exported floor_wall scene folder and a twin folder (scene + materials.json) the cases copy."""
    global _FW_DIR, _TWIN_DIR
    from rftwin.scene import load
    from rftwin.scene.export import export_scene
    from rftwin.twin_io import materials_document

    base = tmp_path_factory.mktemp("corpus")
    tw = load("floor_wall")
    _FW_DIR = base / "fw"
    export_scene(tw, _FW_DIR)
    _TWIN_DIR = base / "twin"
    export_scene(tw, _TWIN_DIR)
    doc = materials_document(tw, np.array([o.relative_permittivity for o in tw.objects]),
                             np.array([o.conductivity for o in tw.objects]), 3.5e9)
    (_TWIN_DIR / "materials.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shared_cache")


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d)
        if rel.parts[0] == "cache":
            continue
        st = p.lstat()
        out[str(rel)] = (st.st_size, st.st_mtime_ns) if p.is_file() else (-1, 0)
    return out


def test_corpus_size():
    assert len(CASES) >= 150 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c: Case, tmp_path, monkeypatch, shared_cache):
    d = tmp_path / "case"
    d.mkdir()
    monkeypatch.chdir(d)  # a PWNED marker from a code-running input would land here
    monkeypatch.setenv("RFTWIN_CACHE", str(shared_cache))
    for k, v in c.env.items():
        monkeypatch.setenv(k, v.format(d=d))
    if callable(c.files):
        c.files(d)
    else:
        for rel, data in c.files.items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
    before = _snapshot(d)
    r = runner.invoke(app, [a.format(d=d) for a in c.args])
    text = " ".join(r.output.split())
    assert r.exit_code != 0, text
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)  # no traceback
    assert "Traceback" not in r.output
    for s in c.expect:
        assert s in text, f"{s!r} not in: {text}"
    assert _snapshot(d) == before, "something was written"
    assert not (d / "PWNED").exists()
