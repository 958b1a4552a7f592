"""rftwin vs NeWRF's MATLAB-traced rooms (github.com/LuHaofan/NeWRF, MIT; NPZ files in benchmarks/data/newrf,
converted by benchmarks/newrf_convert.py).

NeWRF's simulator (``simulator/main.m``) calls MATLAB's ``raytrace`` with the image method, at most two
reflections and ``perfect-reflector`` surfaces on an STL room, then keeps per ray only a free-space coefficient
``10^(-fspl(L)/20) exp(-j 2 pi f L / c)`` (no reflection coefficient, no polarisation) and the last interaction
point. rftwin's nearest setting: every surface ITU metal, specular reflection only, depth 2, vertically
polarised isotropic antennas. Rays are matched per link by delay (the ray length follows from |coefficient|)
and arrival direction (receiver -> last interaction point); gains are compared per matched ray and per link.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rftwin.validate import closed_forms as cf

ROOMS = ("bedroom", "office", "conference")


def default_newrf_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "newrf"


@dataclass(frozen=True)
class NewrfSettings:
    samples_per_src: int = 100_000
    seed: int = 42
    links: int = 30
    delay_gate_s: float = 0.1e-9  # 3 cm of path length
    angle_gate_deg: float = 2.0


@dataclass
class NewrfRoom:
    name: str
    tx_pos: np.ndarray  # [L, 3]
    rx_pos: np.ndarray  # [L, 3]
    frequency_hz: float
    ray_offsets: np.ndarray  # [L + 1]
    ray_coefficient: np.ndarray  # [R] complex
    ray_last_point: np.ndarray  # [R, 3]
    vertices: np.ndarray
    faces: np.ndarray

    @property
    def num_links(self) -> int:
        return len(self.tx_pos)


def load_room(path: str | Path, links: int | None = None) -> NewrfRoom:
    """One converted room (NPZ of plain arrays; nothing in it can run code: ``allow_pickle=False``)."""
    path = Path(path)
    need = ("tx_pos", "rx_pos", "frequency_hz", "ray_offsets", "ray_coefficient", "ray_last_point",
            "mesh_vertices", "mesh_faces")
    try:
        with np.load(path, allow_pickle=False) as d:
            miss = [k for k in need if k not in d]
            if miss:
                raise ValueError(f"missing arrays {', '.join(miss)} (expected a benchmarks/newrf_convert.py file)")
            a = {k: d[k] for k in need}
    except (OSError, ValueError) as exc:  # also object arrays, which would need pickle
        raise ValueError(f"{path}: {exc}") from None
    n = len(a["tx_pos"]) if links is None else min(links, len(a["tx_pos"]))
    off = a["ray_offsets"][: n + 1]
    f = np.unique(a["frequency_hz"][:n])
    if len(f) != 1:
        raise ValueError(f"{path}: links at several frequencies {f}")
    return NewrfRoom(path.stem, a["tx_pos"][:n], a["rx_pos"][:n], float(f[0]), off,
                     a["ray_coefficient"][: off[-1]], a["ray_last_point"][: off[-1]],
                     a["mesh_vertices"].astype(np.float64), a["mesh_faces"].astype(np.int64))


def _az_el(k: np.ndarray):
    k = k / np.linalg.norm(k, axis=-1, keepdims=True)
    return np.degrees(np.arctan2(k[..., 1], k[..., 0])), np.degrees(np.arcsin(np.clip(k[..., 2], -1, 1)))


def compare_room(room: NewrfRoom, ns: NewrfSettings, work: Path) -> dict:
    """Trace the room's links with rftwin (metal, specular, depth 2) and compare with NeWRF's rays."""
    from rftwin.data.mpc import match_mpcs, mpcs_from_arrays  # noqa: PLC0415
    from rftwin.predict.predict import WidebandGrid, predict_channels  # noqa: PLC0415
    from rftwin.scene.import_mesh import MaterialSpec, MeshObject, prepare_objects, write_scene_folder  # noqa
    from rftwin.scene.load import load  # noqa: PLC0415
    from rftwin.trace.tracer import SolverSettings  # noqa: PLC0415

    objs, _ = prepare_objects([MeshObject("room", room.vertices, room.faces, f"NeWRF {room.name}")])
    xml = write_scene_folder(objs, {"room": MaterialSpec("metal", 0.1)}, work / f"newrf_{room.name}",
                             comment=f"NeWRF {room.name} room (STL), all metal")
    twin = load(xml, room.frequency_hz)
    st = SolverSettings(max_depth=2, samples_per_src=ns.samples_per_src, seed=ns.seed, refraction=False)
    ids = [str(i) for i in range(room.num_links)]
    pred = predict_channels(twin, None, room.tx_pos, room.rx_pos, np.full(room.num_links, room.frequency_hz), st,
                            progress=False, link_ids=ids, wideband=WidebandGrid(kind="cir"), keep_pathset=True)
    ps = pred.pathset
    ptx, prx = ps.tx_pos.numpy(), ps.rx_pos.numpy()
    row_link = [int(np.nonzero(np.all(np.isclose(ptx, room.tx_pos[i], atol=1e-6), 1)
                               & np.all(np.isclose(prx, room.rx_pos[i], atol=1e-6), 1))[0][0])
                for i in range(room.num_links)]
    lam = cf.C0 / room.frequency_hz
    # NeWRF rays: length from the free-space amplitude, arrival direction from the last interaction point
    ray_link = np.repeat(np.arange(room.num_links), np.diff(room.ray_offsets))
    amp = np.abs(room.ray_coefficient)
    length = lam / (4 * np.pi * amp)
    phase_err = np.angle(room.ray_coefficient * np.exp(2j * np.pi * length / lam))  # 0 if phase = -k L
    az, el = _az_el(room.ray_last_point - room.rx_pos[ray_link])
    mp = mpcs_from_arrays([str(x) for x in ray_link], length / cf.C0, 20 * np.log10(amp),
                          azimuth_arrival_deg=az, elevation_arrival_deg=el, source=f"NeWRF {room.name}")
    m = match_mpcs(mp, ps, {str(i): row_link[i] for i in range(room.num_links)}, delay_gate_s=ns.delay_gate_s,
                   angle_gate_deg=ns.angle_gate_deg)
    order = (ps.itype.numpy() != 0).sum(1)
    link = ps.link.numpy()
    # rftwin per-path amplitude from the CIR taps (a link's taps are its paths in index order)
    tap = np.zeros(ps.num_paths, np.complex128)
    for i, r in enumerate(row_link):
        members = np.nonzero(link == r)[0]
        tap[members] = pred.wideband[ids[i]].amplitude
    # duplicates: same link, object sequence and primitive sequence, length within 1 mm
    prim = ps.prim.numpy()
    L = ps.length_m.numpy()
    key = {}
    dup = np.zeros(ps.num_paths, bool)
    for i in np.argsort(L, kind="stable"):
        k = (int(link[i]), tuple(prim[i][: order[i]]))
        if k in key and abs(L[key[k]] - L[i]) < 1e-3:
            dup[i] = True
        else:
            key[k] = i
    matched_path = np.zeros(ps.num_paths, bool)
    matched_path[m.path_index] = True
    ray_matched = np.zeros(len(length), bool)
    ray_matched[m.mpc_row] = True
    ray_order = order[m.path_index]
    d_db = 20 * np.log10(np.abs(tap[m.path_index])) - 20 * np.log10(amp[m.mpc_row])
    # link powers: incoherent (rftwin's path gain) and coherent (narrowband, sum of complex amplitudes)
    inc_r = np.array([np.sum(np.abs(tap[link == r]) ** 2) for r in row_link])
    inc_n = np.array([np.sum(amp[ray_link == i] ** 2) for i in range(room.num_links)])
    coh_r = np.array([np.abs(np.sum(tap[link == r])) ** 2 for r in row_link])
    coh_n = np.array([np.abs(np.sum(room.ray_coefficient[ray_link == i])) ** 2 for i in range(room.num_links)])
    inc_r_nodup = np.array([np.sum(np.abs(tap[(link == r) & ~dup]) ** 2) for r in row_link])
    # reflection phase: NeWRF keeps none; rftwin's metal has R_TE = -1, R_TM = +1 (P.2040 convention)
    dphi = np.degrees(np.angle(tap[m.path_index] * np.conj(room.ray_coefficient[m.mpc_row])))
    near0 = np.abs(dphi) < 10.0
    nearpi = np.abs(np.abs(dphi) - 180.0) < 10.0
    max_order = int(ray_order.max()) if len(ray_order) else 0
    inc_r_same = np.array([np.sum(np.abs(tap[(link == r) & ~dup & (order <= max_order)]) ** 2) for r in row_link])
    per_order = []
    for o in (0, 1, 2):
        sel = ray_order == o
        per_order.append({"order": o, "rftwin_paths": int((order == o).sum()),
                          "rftwin_duplicates": int(((order == o) & dup).sum()),
                          "matched": int(sel.sum()),
                          "rftwin_unmatched": int(((order == o) & ~matched_path & ~dup).sum()),
                          "max_abs_delay_error_s": float(np.max(np.abs(m.delay_error_s[sel]))) if sel.any() else None,
                          "max_aoa_error_deg": float(np.max(m.aoa_error_deg[sel])) if sel.any() else None,
                          "gain_diff_median_db": float(np.median(d_db[sel])) if sel.any() else None,
                          "gain_diff_p10_db": float(np.percentile(d_db[sel], 10)) if sel.any() else None,
                          "gain_diff_p90_db": float(np.percentile(d_db[sel], 90)) if sel.any() else None,
                          "phase_same": int((sel & near0).sum()), "phase_opposite": int((sel & nearpi).sum()),
                          "phase_other": int((sel & ~near0 & ~nearpi).sum())})
    um = ~ray_matched
    # reflection order of NeWRF's rays from geometry: LoS length, or Tx -> last point -> Rx (first order)
    los_len = np.linalg.norm(room.tx_pos[ray_link] - room.rx_pos[ray_link], axis=1)
    one_len = (np.linalg.norm(room.tx_pos[ray_link] - room.ray_last_point, axis=1)
               + np.linalg.norm(room.ray_last_point - room.rx_pos[ray_link], axis=1))
    nw_order = np.where(np.abs(length - los_len) < 1e-3, 0, np.where(np.abs(length - one_len) < 1e-3, 1, 2))
    return {"room": room.name, "links": room.num_links, "triangles": int(len(room.faces)),
            "frequency_hz": room.frequency_hz, "newrf_rays": int(len(length)),
            "newrf_phase_max_abs_rad": float(np.max(np.abs(phase_err))),
            "newrf_unmatched": int(um.sum()),
            "newrf_unmatched_length_m": [float(x) for x in np.sort(length[um])[:20]],
            "newrf_unmatched_orders": {str(o): int((nw_order[um] == o).sum()) for o in (0, 1, 2)},
            "rftwin_paths": int(ps.num_paths), "rftwin_duplicates": int(dup.sum()), "per_order": per_order,
            "link_incoherent_diff_db": _stats(10 * np.log10(inc_r / inc_n)),
            "link_incoherent_nodup_diff_db": _stats(10 * np.log10(inc_r_nodup / inc_n)),
            "newrf_max_order": max_order,
            "link_incoherent_same_orders_diff_db": _stats(10 * np.log10(inc_r_same / inc_n)),
            "link_coherent_diff_db": _stats(10 * np.log10(coh_r / coh_n))}


def _stats(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    return {"median": float(np.median(x)), "p10": float(np.percentile(x, 10)), "p90": float(np.percentile(x, 90)),
            "rms": float(np.sqrt(np.mean(x ** 2)))}


def run_newrf_study(data_dir=None, samples_per_src: int = 100_000, seed: int = 42, links: int = 30,
                    rooms=ROOMS, progress: bool = True) -> dict:
    data = Path(data_dir) if data_dir is not None else default_newrf_dir()
    ns = NewrfSettings(samples_per_src=samples_per_src, seed=seed, links=links)
    out = {"settings": {"samples_per_src": samples_per_src, "seed": seed, "links_per_room": links,
                        "delay_gate_s": ns.delay_gate_s, "angle_gate_deg": ns.angle_gate_deg}, "rooms": {}}
    with tempfile.TemporaryDirectory(prefix="rftwin-newrf-") as tmp:
        for name in rooms:
            if progress:
                print(f"validate: newrf {name} ...", flush=True)
            out["rooms"][name] = compare_room(load_room(data / f"{name}.npz", links), ns, Path(tmp))
    return out
