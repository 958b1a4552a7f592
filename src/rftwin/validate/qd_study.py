"""rftwin vs the NIST Q-D realization software (60 GHz lecture rooms; reference files in benchmarks/data/qd).

1. Box lecture room (10 x 19 x 3 m, 6 surfaces, 4 nodes): Q-D's deterministic rays of orders 0-2 (vertices from
   its ``Mpc.json``) against rftwin's traced paths (specular only, depth 2), matched by delay and angle of
   departure / arrival (``rftwin.data.match_mpcs``). Q-D's gains of this example are not in the snapshot we have,
   so its deterministic gains are recomputed from its rule with the random generator off (free-space loss +
   ``mu_RL`` of every reflecting surface; ``getNistReflectionLoss.m``, ``randOn = 0``). rftwin's surfaces are
   then calibrated to these library values with ``rftwin calibrate --mpcs`` (per-MPC powers) and the per-surface
   reflection losses compared.
2. Lecture room (12 objects, Q-D's own ``qdOutput.json``): LoS and first-order rays (Q-D ran order 1) vs rftwin's
   paths: delays, angles, and gains with the surfaces calibrated in the box room (held out: other geometry,
   Q-D's gains drawn with its random reflection-loss generator on, so they scatter around the library means).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rftwin.scene.import_qd import (
    QdGeometry,
    QdRay,
    import_qd_scene,
    qd_material_of_objects,
    read_amf,
    read_material_library,
    read_mpc_json,
    read_node_positions,
    read_qd_output,
)
from rftwin.validate import closed_forms as cf

QD_C = 3e8  # Q-D computes delays as distance / 3e8 (multipath.m)
QD_FREQUENCY_HZ = 60e9  # paraCfgCurrent.txt: carrierFrequency
LIBRARY = "materialLibraryLectureRoom.csv"


def default_qd_dir() -> Path:
    """benchmarks/data/qd of the source tree (the reference files are not installed with the package)."""
    return Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "qd"


@dataclass(frozen=True)
class QdSettings:
    samples_per_src: int = 100_000
    seed: int = 42
    delay_gate_s: float = 0.2e-9  # 6 cm of path length
    angle_gate_deg: float = 1.0
    starts: int = 16


# --------------------------------------------------------------------------------------------- geometry
def locate_surfaces(points: np.ndarray, geo: QdGeometry, tol_m: float = 0.02) -> list[str]:
    """Name of the Q-D object whose triangle contains each point [M, 3] (within ``tol_m`` of its plane), or ""
    where none does (nearest plane wins)."""
    out = []
    for p in np.asarray(points, np.float64).reshape(-1, 3):
        best, best_d = "", tol_m
        for o in geo.objects:
            A, B, C = (o.vertices[o.faces[:, i]] for i in range(3))
            n = np.cross(B - A, C - A)
            nn = np.linalg.norm(n, axis=1)
            ok = nn > 1e-12
            n = n[ok] / nn[ok, None]
            A, B, C = A[ok], B[ok], C[ok]
            d = np.abs(np.einsum("ij,ij->i", p - A, n))
            q = p - d[:, None] * n * np.sign(np.einsum("ij,ij->i", p - A, n))[:, None]
            # barycentric inclusion of the projected point
            v0, v1, v2 = B - A, C - A, q - A
            d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
            d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
            den = d00 * d11 - d01 * d01
            v = (d11 * d20 - d01 * d21) / den
            w = (d00 * d21 - d01 * d20) / den
            inside = (v >= -1e-6) & (w >= -1e-6) & (v + w <= 1 + 1e-6)
            if inside.any() and d[inside].min() < best_d:
                best, best_d = o.name, float(d[inside].min())
        out.append(best)
    return out


def _az_el(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = k / np.linalg.norm(k, axis=-1, keepdims=True)
    return np.degrees(np.arctan2(k[..., 1], k[..., 0])), np.degrees(np.arcsin(np.clip(k[..., 2], -1, 1)))


def ray_table(rays: list[QdRay], geo: QdGeometry, library: dict, frequency_hz: float = QD_FREQUENCY_HZ
              ) -> pd.DataFrame:
    """One row per Q-D ray: nodes, time step, order, length, delay (L / c0), the reflecting surfaces and their
    Q-D materials, departure / arrival angles (deg; arrival pointing back along the incoming wave) and Q-D's
    deterministic gain with the random generator off, friis(L) - sum of mu_RL."""
    obj_mat = {o.name: o.material for o in geo.objects}
    rows = []
    for r in rays:
        surf = locate_surfaces(r.vertices[1:-1], geo) if r.order else []
        mats = [obj_mat.get(s, "") for s in surf]
        az_d, el_d = _az_el(r.vertices[1] - r.vertices[0])
        az_a, el_a = _az_el(r.vertices[-2] - r.vertices[-1])
        L = r.length_m
        rl = sum(library[m]["mu_RL"] for m in mats if m in library)
        rows.append({"tx": r.tx, "rx": r.rx, "time_step": r.time_step, "order": r.order, "length_m": L,
                     "delay_s": L / cf.C0, "surfaces": "+".join(surf) or "LoS", "materials": "+".join(mats),
                     "incidence_deg": _incidence_deg(r.vertices) if r.order == 1 else np.nan,
                     "azimuth_departure_deg": float(az_d), "elevation_departure_deg": float(el_d),
                     "azimuth_arrival_deg": float(az_a), "elevation_arrival_deg": float(el_a),
                     "rule_gain_db": float(cf.friis_gain_db(L, frequency_hz)) - rl, "rule_rl_db": rl,
                     "tx_pos": r.vertices[0], "rx_pos": r.vertices[-1], "unknown_surface": "" in surf})
    return pd.DataFrame(rows)


def _incidence_deg(v: np.ndarray) -> float:
    a, b = v[0] - v[1], v[2] - v[1]
    c = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))) / 2)


# ------------------------------------------------------------------------------------------------ tracing
def trace_qd_rows(scene_xml: Path, tx: np.ndarray, rx: np.ndarray, qs: QdSettings, max_depth: int,
             materials: dict[str, tuple[float, float]] | None = None):
    """Trace + engine via the public prediction API; returns (pathset, {row: PathSet link}, per-row taps)."""
    from rftwin.predict.predict import WidebandGrid, predict_channels  # noqa: PLC0415
    from rftwin.scene.load import load  # noqa: PLC0415
    from rftwin.scene.scene_materials import SceneMaterials  # noqa: PLC0415
    from rftwin.trace.tracer import SolverSettings  # noqa: PLC0415

    twin = load(scene_xml, QD_FREQUENCY_HZ)
    mats = None if not materials else SceneMaterials([materials[n][0] for n in twin.names],
                                                     [materials[n][1] for n in twin.names])
    st = SolverSettings(max_depth=max_depth, samples_per_src=qs.samples_per_src, seed=qs.seed, refraction=False)
    ids = [str(i) for i in range(len(tx))]
    pred = predict_channels(twin, None, tx, rx, np.full(len(tx), QD_FREQUENCY_HZ), st, progress=False,
                            link_ids=ids, wideband=WidebandGrid(kind="cir"), materials=mats, keep_pathset=True)
    ps = pred.pathset
    ptx, prx = ps.tx_pos.numpy(), ps.rx_pos.numpy()
    row_link = {}
    for i in range(len(tx)):
        hit = np.nonzero(np.all(np.isclose(ptx, tx[i], atol=1e-6), 1) & np.all(np.isclose(prx, rx[i], atol=1e-6), 1))
        row_link[i] = int(hit[0][0])
    return twin, ps, row_link, pred.wideband


def _path_power_db(ps, wb, row_link: dict[int, int], path_index: np.ndarray, row_of_link: dict[int, int]):
    """Power (dB) of traced paths from the prediction's CIR taps (taps of a link are its paths in index order)."""
    link = ps.link.numpy()
    out = np.full(len(path_index), np.nan)
    for j, i in enumerate(path_index):
        lk = int(link[i])
        members = np.nonzero(link == lk)[0]
        amp = wb[str(row_of_link[lk])].amplitude[np.searchsorted(members, i)]
        out[j] = 20 * np.log10(max(abs(amp), 1e-300))
    return out


def match_qd_rays(rt: pd.DataFrame, ps, row_link: dict[int, int], row_ids: list[int], qs: QdSettings):
    """Match the Q-D rays ``rt`` of rows ``row_ids`` to the traced paths ``ps`` (``row_link``: row -> link)."""
    from rftwin.data.mpc import match_mpcs, mpcs_from_arrays  # noqa: PLC0415

    mp = mpcs_from_arrays([str(x) for x in row_ids], rt["delay_s"], rt["rule_gain_db"],
                          azimuth_arrival_deg=rt["azimuth_arrival_deg"],
                          elevation_arrival_deg=rt["elevation_arrival_deg"],
                          azimuth_departure_deg=rt["azimuth_departure_deg"],
                          elevation_departure_deg=rt["elevation_departure_deg"], source="Q-D rays")
    return match_mpcs(mp, ps, {str(r): row_link[r] for r in sorted(set(row_ids))}, delay_gate_s=qs.delay_gate_s,
                      angle_gate_deg=qs.angle_gate_deg)


def _path_keys(ps) -> list[tuple]:
    obj = ps.obj.numpy()
    it = ps.itype.numpy()
    return [tuple(int(o) for o, t in zip(obj[i], it[i]) if t != 0) for i in range(ps.num_paths)]


def _duplicates(ps) -> np.ndarray:
    """Per path: how many paths of its link share its object sequence and length (within 1 cm), itself included."""
    keys = _path_keys(ps)
    link = ps.link.numpy()
    L = ps.length_m.numpy()
    out = np.ones(ps.num_paths, np.int64)
    groups: dict = {}
    for i, k in enumerate(keys):
        groups.setdefault((int(link[i]), k), []).append(i)
    for idx in groups.values():
        for i in idx:
            out[i] = int(sum(abs(L[j] - L[i]) < 0.01 for j in idx))
    return out


# ------------------------------------------------------------------------------------------------ box room
def box_room(data: Path, qs: QdSettings, work: Path, progress: bool) -> dict:
    box = data / "box_lecture_room"
    geo = read_amf(box / "BoxLectureRoom.xml")
    lib = read_material_library(data / LIBRARY)
    nodes = {i: read_node_positions(box / f"NodePosition{i}.dat") for i in range(4)}
    rays = read_mpc_json(box / "Mpc_t0_t10_t20.json", tx_positions=nodes)
    rt = ray_table(rays, geo, lib)
    links = rt.drop_duplicates(["tx", "rx", "time_step"])[["tx", "rx", "time_step"]].reset_index(drop=True)
    key = {tuple(r): i for i, r in enumerate(links.itertuples(index=False, name=None))}
    rt["row"] = [key[(a, b, c)] for a, b, c in zip(rt.tx, rt.rx, rt.time_step)]
    first = rt.drop_duplicates("row").sort_values("row")
    tx, rx = np.stack(first.tx_pos.to_numpy()), np.stack(first.rx_pos.to_numpy())
    xml = import_qd_scene(box / "BoxLectureRoom.xml", work / "box_scene")
    obj_mat = qd_material_of_objects(work / "box_scene")
    twin, ps, row_link, wb = trace_qd_rows(xml, tx, rx, qs, max_depth=2)
    m = match_qd_rays(rt, ps, row_link, rt["row"].tolist(), qs)
    row_of_link = {v: k for k, v in row_link.items()}
    rt["matched"] = False
    rt.loc[m.mpc_row, "matched"] = True
    for col, v in (("path_index", m.path_index), ("delay_error_s", m.delay_error_s),
                   ("aoa_error_deg", m.aoa_error_deg), ("aod_error_deg", m.aod_error_deg)):
        rt[col] = np.nan
        rt.loc[m.mpc_row, col] = v
    dup = _duplicates(ps)
    rt["rftwin_copies"] = 0
    rt.loc[m.mpc_row, "rftwin_copies"] = dup[m.path_index]
    rt["prior_power_db"] = np.nan
    rt.loc[m.mpc_row, "prior_power_db"] = _path_power_db(ps, wb, row_link, m.path_index, row_of_link)
    # rftwin paths per order without a Q-D partner
    depth = (ps.itype.numpy() != 0).sum(1)
    matched_paths = np.zeros(ps.num_paths, bool)
    matched_paths[m.path_index] = True
    keys = _path_keys(ps)
    link = ps.link.numpy()
    geometry = []
    for order in (0, 1, 2):
        sub = rt[rt.order == order]
        extra = ~matched_paths & (depth == order)
        distinct_extra = len({(int(link[i]), keys[i]) for i in np.nonzero(extra)[0]})
        def worst(col, sub=sub):
            return float(np.nanmax(np.abs(sub[col]))) if sub.matched.any() else float("nan")

        geometry.append({"order": order, "qd_rays": int(len(sub)), "rftwin_paths": int((depth == order).sum()),
                         "matched": int(sub.matched.sum()), "rftwin_unmatched": int(extra.sum()),
                         "rftwin_unmatched_distinct": distinct_extra,
                         "max_abs_delay_error_s": worst("delay_error_s"), "max_aoa_error_deg": worst("aoa_error_deg"),
                         "max_aod_error_deg": worst("aod_error_deg"),
                         "duplicated_matches": int((rt.loc[rt.order == order, "rftwin_copies"] > 1).sum())})
    if progress:
        print(f"validate: qd box room: {len(links)} links, {len(rt)} Q-D rays, {int(rt.matched.sum())} matched",
              flush=True)
    cal = _calibrate_box(xml, rt, links, tx, rx, qs, work, progress)
    rt["fitted_power_db"] = cal.pop("fitted_power_db")
    per_surface = []
    for surf, g in rt[(rt.order == 1) & rt.matched].groupby("surfaces"):
        mat = obj_mat.get(surf, "")
        prior_res = g.prior_power_db - g.rule_gain_db
        fit_res = g.fitted_power_db - g.rule_gain_db
        fr = cf.friis_gain_db(g.length_m, QD_FREQUENCY_HZ)
        per_surface.append({"surface": surf, "qd_material": mat, "mu_rl_db": lib[mat]["mu_RL"], "mpcs": int(len(g)),
                            "incidence_min_deg": float(g.incidence_deg.min()),
                            "incidence_max_deg": float(g.incidence_deg.max()),
                            "prior_rl_mean_db": float((fr - g.prior_power_db).mean()),
                            "fitted_rl_mean_db": float((fr - g.fitted_power_db).mean()),
                            "fitted_rl_min_db": float((fr - g.fitted_power_db).min()),
                            "fitted_rl_max_db": float((fr - g.fitted_power_db).max()),
                            "prior_rms_db": float(np.sqrt((prior_res ** 2).mean())),
                            "fitted_rms_db": float(np.sqrt((fit_res ** 2).mean())),
                            "eps_r": cal["materials"].get(surf, {}).get("relative_permittivity"),
                            "sigma_s_per_m": cal["materials"].get(surf, {}).get("conductivity")})
    order2 = rt[(rt.order == 2) & rt.matched]
    return {"links": int(len(links)), "geometry": geometry, "per_surface": per_surface,
            "order2_prior_rms_db": float(np.sqrt(((order2.prior_power_db - order2.rule_gain_db) ** 2).mean())),
            "order2_fitted_rms_db": float(np.sqrt(((order2.fitted_power_db - order2.rule_gain_db) ** 2).mean())),
            "calibration": cal, "unknown_surfaces": int(rt.unknown_surface.sum()),
            "rays": rt.drop(columns=["tx_pos", "rx_pos"]).to_dict(orient="records")}


def _calibrate_box(xml: Path, rt: pd.DataFrame, links: pd.DataFrame, tx, rx, qs: QdSettings, work: Path,
                   progress: bool) -> dict:
    """``rftwin calibrate --mpcs`` on Q-D's rule gains (orders 0-2) in a subprocess; returns fitted materials,
    per-ray fitted powers (NaN where unmatched), the RMS residual and the command."""
    meas = pd.DataFrame({"link_id": [f"L{i:03d}" for i in range(len(links))],
                         "tx_x": tx[:, 0], "tx_y": tx[:, 1], "tx_z": tx[:, 2],
                         "rx_x": rx[:, 0], "rx_y": rx[:, 1], "rx_z": rx[:, 2],
                         "frequency_hz": QD_FREQUENCY_HZ})
    lin = rt.groupby("row").rule_gain_db.apply(lambda g: 10 * np.log10((10 ** (g / 10)).sum()))
    meas["path_gain_db"] = lin.sort_index().to_numpy()
    mp = pd.DataFrame({"link_id": [f"L{r:03d}" for r in rt.row], "delay_s": rt.delay_s, "power_db": rt.rule_gain_db,
                       "azimuth_arrival_deg": rt.azimuth_arrival_deg, "elevation_arrival_deg": rt.elevation_arrival_deg,
                       "azimuth_departure_deg": rt.azimuth_departure_deg,
                       "elevation_departure_deg": rt.elevation_departure_deg})
    meas.to_csv(work / "box_measurements.csv", index=False)
    mp.to_csv(work / "box_mpcs.csv", index=False)
    out = work / "box_calibration"
    args = [str(xml), str(work / "box_measurements.csv"), "--mpcs", str(work / "box_mpcs.csv"),
            "--terms", "mpc_power:mse_db:1", "--max-depth", "2", "--no-refraction",
            "--samples-per-src", str(qs.samples_per_src), "--seed", str(qs.seed), "--retrace", "0",
            "--starts", str(qs.starts), "--mpc-delay-gate", repr(qs.delay_gate_s),
            "--mpc-angle-gate", repr(qs.angle_gate_deg), "--prior", "none", "--out", str(out)]
    # --prior none: the surfaces are fitted to Q-D's library values alone (a reference to reproduce, not a
    # measurement campaign whose labels carry prior knowledge)
    env = dict(os.environ, RFTWIN_PROGRESS="0")
    if progress:
        print("validate: qd box room: rftwin calibrate --mpcs ...", flush=True)
    res = subprocess.run([sys.executable, "-c", "from rftwin.cli.main import app; app()", "calibrate", *args],
                         capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"rftwin calibrate failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    matches = pd.read_csv(out / "mpc_matches.csv")
    mats = json.loads((out / "materials.json").read_text())["objects"]
    summ = json.loads((out / "calibration.json").read_text())
    shown = ["box_scene/scene.xml", "box_measurements.csv", "--mpcs", "box_mpcs.csv", *args[4:-2]]
    return {"command": "rftwin calibrate " + " ".join(shown) + " --out box_calibration",
            "materials": {k: {"relative_permittivity": v["relative_permittivity"], "conductivity": v["conductivity"]}
                          for k, v in mats.items()},
            "mpc": {**summ.get("mpc", {}), "file": "box_mpcs.csv"},
            "fitted_power_db": matches["fitted_power_db"].to_numpy()}


# -------------------------------------------------------------------------------------------- lecture room
def lecture_room(data: Path, qs: QdSettings, work: Path, box_materials: dict[str, dict] | None) -> dict:
    lr = data / "lecture_room"
    geo = read_amf(lr / "LectureRoom.xml")
    lib = read_material_library(data / LIBRARY)
    nodes = {i: read_node_positions(lr / f"NodePosition{i}.dat") for i in range(2)}
    rays = [r for r in read_mpc_json(lr / "Mpc.json", tx_positions=nodes) if r.tx == 0 and r.rx == 1]
    rt = ray_table(rays, geo, lib)
    ch = next(c for c in read_qd_output(lr / "qdOutput.json") if c.tx == 0 and c.rx == 1 and c.time_step == 0)
    # Q-D's deterministic rays inside its output: the entries whose delay is the ray's length / 3e8
    idx = []
    for L in rt.length_m:
        j = int(np.argmin(np.abs(ch.delay_s * QD_C - L)))
        idx.append(j if abs(ch.delay_s[j] * QD_C - L) < 1e-3 else -1)
    rt["qd_index"] = idx
    ok = rt.qd_index >= 0
    rt["qd_gain_db"] = np.where(ok, ch.gain_db[rt.qd_index], np.nan)
    rt["qd_delay_s"] = np.where(ok, ch.delay_s[rt.qd_index], np.nan)
    rt["qd_rl_db"] = cf.friis_gain_db(rt.length_m, QD_FREQUENCY_HZ) - rt.qd_gain_db
    # angles from Q-D's output (EL measured from +z); arrival as Q-D writes it (towards the transmitter)
    for name, az, el in (("departure", ch.aod_az_deg, ch.aod_el_deg), ("arrival", ch.aoa_az_deg, ch.aoa_el_deg)):
        rt[f"qd_azimuth_{name}_deg"] = np.where(ok, az[rt.qd_index], np.nan)
        rt[f"qd_elevation_{name}_deg"] = np.where(ok, 90.0 - el[rt.qd_index], np.nan)
    rt["row"] = 0
    xml = import_qd_scene(lr / "LectureRoom.xml", work / "lecture_scene")
    obj_mat = qd_material_of_objects(work / "lecture_scene")
    tx, rx = rt.tx_pos.iloc[0][None], rt.rx_pos.iloc[0][None]
    out = {"qd_output_angles_max_diff_deg": _angle_check(rt)}
    for tag, mats in (("prior", None), ("box_calibrated", box_materials)):
        per_obj = None
        if mats is not None:  # every lecture-room object takes the box surface of its Q-D material
            per_obj = {o: (mats[m]["relative_permittivity"], mats[m]["conductivity"]) for o, m in obj_mat.items()}
        twin, ps, row_link, wb = trace_qd_rows(xml, tx, rx, qs, max_depth=1, materials=per_obj)
        m = match_qd_rays(rt, ps, row_link, [0] * len(rt), qs)
        pw = np.full(len(rt), np.nan)
        pw[m.mpc_row] = _path_power_db(ps, wb, row_link, m.path_index, {0: 0})
        rt[f"{tag}_power_db"] = pw
        if tag == "prior":
            rt["matched"] = False
            rt.loc[m.mpc_row, "matched"] = True
            for col, v in (("delay_error_s", m.delay_error_s), ("aoa_error_deg", m.aoa_error_deg),
                           ("aod_error_deg", m.aod_error_deg)):
                rt[col] = np.nan
                rt.loc[m.mpc_row, col] = v
            dup = _duplicates(ps)
            rt["rftwin_copies"] = 0
            rt.loc[m.mpc_row, "rftwin_copies"] = dup[m.path_index]
            out["rftwin_paths"] = int(ps.num_paths)
    rt["qd_delay_error_s"] = rt.qd_delay_s - rt.delay_s  # Q-D's c = 3e8 against c0
    out["rays"] = rt.drop(columns=["tx_pos", "rx_pos"]).to_dict(orient="records")
    return out


def _angle_check(rt: pd.DataFrame) -> float:
    """Largest difference (deg) between Q-D's output angles and the angles of its own ray vertices."""
    d = []
    for name in ("departure", "arrival"):
        for c in ("azimuth", "elevation"):
            a = rt[f"qd_{c}_{name}_deg"] - rt[f"{c}_{name}_deg"]
            d.append(np.nanmax(np.abs((a + 180) % 360 - 180)))
    return float(max(d))


def run_qd_study(data_dir: str | os.PathLike | None = None, samples_per_src: int = 100_000, seed: int = 42,
                 progress: bool = True) -> dict:
    data = Path(data_dir) if data_dir is not None else default_qd_dir()
    if not (data / LIBRARY).is_file():
        raise FileNotFoundError(f"{data}: no Q-D reference files ({LIBRARY} missing); see benchmarks/data/qd")
    qs = QdSettings(samples_per_src=samples_per_src, seed=seed)
    with tempfile.TemporaryDirectory(prefix="rftwin-qd-") as tmp:
        work = Path(tmp)
        box = box_room(data, qs, work, progress)
        mats_by_qd = {}
        obj_mat = qd_material_of_objects(work / "box_scene")
        for obj, v in box["calibration"]["materials"].items():
            mats_by_qd[obj_mat[obj]] = v
        if progress:
            print("validate: qd lecture room ...", flush=True)
        lec = lecture_room(data, qs, work, mats_by_qd)
    geo = box["geometry"]
    summary = {"box_links": box["links"], "box_qd_rays": sum(g["qd_rays"] for g in geo),
               "box_matched": sum(g["matched"] for g in geo),
               "box_rftwin_unmatched": sum(g["rftwin_unmatched"] for g in geo),
               "box_max_abs_delay_error_s": max(g["max_abs_delay_error_s"] for g in geo),
               "box_max_angle_error_deg": max(max(g["max_aoa_error_deg"], g["max_aod_error_deg"]) for g in geo),
               "box_first_order_prior_rms_db": _rms([p["prior_rms_db"] for p in box["per_surface"]]),
               "box_first_order_fitted_rms_db": _rms([p["fitted_rms_db"] for p in box["per_surface"]]),
               "box_all_orders_fitted_rms_db": box["calibration"]["mpc"].get("rms_residual_db"),
               "lecture_rays": len(lec["rays"]), "lecture_matched": int(sum(r["matched"] for r in lec["rays"])),
               "lecture_duplicated_rays": int(sum(r["rftwin_copies"] > 1 for r in lec["rays"]))}
    return {"summary": summary, "settings": {"delay_gate_s": qs.delay_gate_s, "angle_gate_deg": qs.angle_gate_deg,
                         "frequency_hz": QD_FREQUENCY_HZ, "samples_per_src": samples_per_src, "seed": seed},
            "box_room": box, "lecture_room": lec}


def _rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else float("nan")


def qd_markdown(doc: dict) -> dict[str, str]:
    from rftwin.validate.qd_text import render_qd  # noqa: PLC0415

    return {"qd_text": render_qd(doc)}
