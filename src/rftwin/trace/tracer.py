"""Run Sionna RT's PathSolver once for a set of links and turn its per-path buffer into a PathSet."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rftwin.runtime import sionna_rt
from rftwin.scene.load import TwinScene
from rftwin.trace import geometry as g
from rftwin.trace.pathset import NONE, REFRACTION, PathSet, concat

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SolverSettings:
    """Sionna PathSolver settings (see ``sionna.rt.PathSolver.__call__``)."""

    max_depth: int = 4
    samples_per_src: int = 1_000_000
    max_num_paths_per_src: int = 1_000_000
    los: bool = True
    specular_reflection: bool = True
    diffuse_reflection: bool = False
    refraction: bool = True
    diffraction: bool = False
    edge_diffraction: bool = False
    diffraction_lit_region: bool = True
    seed: int = 42

    def mechanisms(self) -> list[str]:
        names = ("los", "specular_reflection", "diffuse_reflection", "refraction", "diffraction", "edge_diffraction")
        return [n for n in names if getattr(self, n)]


@dataclass(frozen=True)
class AntennaSpec:
    """Single-element antenna: a Sionna pattern name (iso, dipole, hw_dipole, tr38901) and polarisation (V, H,
    VH, cross)."""

    pattern: str = "iso"
    polarization: str = "V"


def _set_arrays(scene, tx_ant: AntennaSpec, rx_ant: AntennaSpec) -> None:
    rt = sionna_rt()
    scene.tx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern=tx_ant.pattern, polarization=tx_ant.polarization)
    scene.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern=rx_ant.pattern, polarization=rx_ant.polarization)


def _clear_devices(scene) -> None:
    for name in list(scene.transmitters):
        scene.remove(name)
    for name in list(scene.receivers):
        scene.remove(name)


def _antenna_vectors(scene, k_tx: np.ndarray, k_in_last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Antenna field vectors (complex [N, T, 2] and [N, R, 2]) in Sionna's world implicit basis."""
    import mitsuba as mi  # noqa: PLC0415

    from sionna.rt.antenna_pattern import antenna_pattern_to_world_implicit  # noqa: PLC0415
    from sionna.rt.utils import rotation_matrix  # noqa: PLC0415

    n = k_tx.shape[0]
    rot = rotation_matrix(mi.Point3f(np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)))

    def vec(x):
        return mi.Vector3f(*(x[:, i].astype(np.float32) for i in range(3)))

    def eval_(patterns, k, direction):
        out = []
        for p in patterns:
            f = antenna_pattern_to_world_implicit(p, rot, vec(k), direction=direction)
            f = np.stack([np.array(f.x), np.array(f.y), np.array(f.z), np.array(f.w)], -1).astype(np.float64)
            out.append(f[:, :2] + 1j * f[:, 2:])
        return np.stack(out, 1)

    f_tx = eval_(scene.tx_array.antenna_pattern.patterns, k_tx, "out")
    f_rx = eval_(scene.rx_array.antenna_pattern.patterns, -k_in_last, "in")
    return f_tx, f_rx


def _buffer_to_numpy(buf) -> dict[str, np.ndarray]:
    n = buf.buffer_size
    dd = buf.depth_dim_size

    def t2(x, dtype):
        return np.array(x.array, dtype=dtype).reshape(n, dd)

    out = {
        "src": np.array(buf.source_indices, dtype=np.int64),
        "tgt": np.array(buf.target_indices, dtype=np.int64),
        "itype": t2(buf.interaction_types, np.int64),
        "shape": t2(buf.shapes, np.int64),
        "prim": t2(buf.primitives, np.int64),
        "prob": t2(buf.probs, np.float64),
        "vert": np.stack([t2(buf.vertices_x, np.float64), t2(buf.vertices_y, np.float64),
                          t2(buf.vertices_z, np.float64)], -1),
    }
    a = buf.a  # list (rx patterns) of lists (tx patterns) of Complex2f
    out["a"] = np.stack([np.stack([np.array(a_.real) + 1j * np.array(a_.imag) for a_ in row], -1) for row in a], 1)
    if buf.max_depth == 0:
        out["itype"][:] = NONE
    return out


def _geometry(raw: dict, src: np.ndarray, tgt: np.ndarray, id_to_index: dict[int, int],
              meshes: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Geometry-only per-path / per-interaction records (float64) from the raw buffer of one solver call."""
    itype = raw["itype"]
    N, D = itype.shape
    mask = itype != NONE
    nint = mask.sum(1)
    V = raw["vert"]
    ps, pt = src[raw["src"]], tgt[raw["tgt"]]  # [N, 3]
    # previous / next points of every interaction
    prev = np.concatenate([ps[:, None], V[:, :-1]], 1)
    d_idx = np.arange(D)[None, :]
    is_last = d_idx == (nint[:, None] - 1)
    nxt = np.concatenate([V[:, 1:], pt[:, None]], 1)
    nxt = np.where(is_last[..., None], pt[:, None], nxt)
    k_in = g.normalize(V - prev)
    # path length: segments up to the last interaction + last vertex -> target
    seg = np.linalg.norm(V - prev, axis=-1) * mask
    last_v = np.where((nint > 0)[:, None], V[np.arange(N), np.maximum(nint - 1, 0)], ps)
    length = seg.sum(1) + np.linalg.norm(pt - last_v, axis=-1)
    k_tx = g.normalize(np.where((nint > 0)[:, None], V[:, 0], pt) - ps)
    k_last_in = g.normalize(pt - last_v)
    # objects and face normals
    obj = np.full((N, D), -1, dtype=np.int64)
    normal = np.zeros((N, D, 3))
    prim = np.where(mask, raw["prim"], -1)
    shp = raw["shape"]
    for sid, oi in id_to_index.items():
        sel = mask & (shp == sid)
        if not sel.any():
            continue
        obj[sel] = oi
        verts, faces = meshes[oi]
        f = faces[prim[sel]]
        normal[sel] = g.normalize(np.cross(verts[f[:, 1]] - verts[f[:, 0]], verts[f[:, 2]] - verts[f[:, 0]]))
    unknown = mask & (obj < 0)
    if unknown.any():
        raise RuntimeError(f"{int(unknown.sum())} interactions hit shapes that are not scene objects")
    normal *= np.sign(g.dot(normal, -k_in))[..., None] + (g.dot(normal, -k_in) == 0)[..., None]
    cos_i = g.dot(-k_in, normal)
    refr = itype == REFRACTION
    k_out = np.where(refr[..., None], k_in, g.reflect(k_in, normal))
    e_te = g.te_basis(k_in, normal)
    rot_in = g.rotator(k_in, g.implicit_basis(k_in), e_te)
    rot_out = g.rotator(k_out, e_te, g.implicit_basis(k_out))
    eye = np.broadcast_to(np.eye(2), rot_in.shape)
    rot_in = np.where(mask[..., None, None], rot_in, eye)
    rot_out = np.where(mask[..., None, None], rot_out, eye)
    return dict(length=length, k_tx=k_tx, k_rx=-k_last_in, k_last_in=k_last_in, obj=obj, prim=prim,
                point=np.where(mask[..., None], V, 0.0), normal=normal, cos_i=np.where(mask, cos_i, 0.0),
                rot_in=rot_in, rot_out=rot_out, prob=np.where(mask, raw["prob"], 0.0), itype=itype)


def _solve(twin: TwinScene, tx: np.ndarray, rx: np.ndarray, settings: SolverSettings):
    """One PathSolver call with transmitters ``tx`` [T, 3] and receivers ``rx`` [R, 3]; returns the raw buffer."""
    rt = sionna_rt()
    sc = twin.scene
    _clear_devices(sc)
    for i, p in enumerate(tx):
        sc.add(rt.Transmitter(name=f"tx{i}", position=[float(v) for v in p]))
    for i, p in enumerate(rx):
        sc.add(rt.Receiver(name=f"rx{i}", position=[float(v) for v in p]))
    solver = rt.PathSolver(deterministic=True)
    s = asdict(settings)
    paths = solver(sc, synthetic_array=True, **s)
    raw = _buffer_to_numpy(paths._paths_buffer)  # noqa: SLF001 - the per-path record is the stable source
    _clear_devices(sc)
    return raw


def _plan_calls(tx_pos: np.ndarray, rx_pos: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Group unique links into solver calls: (tx positions, rx positions, [T, R] link index or -1).

    When the requested pairs cover most of the tx x rx grid one call traces everything; otherwise links are
    grouped by transmitter so that only requested pairs are traced (device-to-device link lists).
    """
    ut, ti = np.unique(tx_pos, axis=0, return_inverse=True)
    ur, ri = np.unique(rx_pos, axis=0, return_inverse=True)
    ti, ri = ti.reshape(-1), ri.reshape(-1)
    L = len(tx_pos)
    if L >= 0.5 * len(ut) * len(ur):
        grid = np.full((len(ut), len(ur)), -1, dtype=np.int64)
        grid[ti, ri] = np.arange(L)
        return [(ut, ur, grid)]
    calls = []
    for t in range(len(ut)):
        links = np.nonzero(ti == t)[0]
        rx_ids, local = np.unique(ri[links], return_inverse=True)
        grid = np.full((1, len(rx_ids)), -1, dtype=np.int64)
        grid[0, local.reshape(-1)] = links
        calls.append((ut[t:t + 1], ur[rx_ids], grid))
    return calls


def cache_key(twin: TwinScene, tx_pos: np.ndarray, rx_pos: np.ndarray, settings: SolverSettings,
              tx_ant: AntennaSpec, rx_ant: AntennaSpec) -> str:
    h = hashlib.sha256()
    h.update(f"v{FORMAT_VERSION}".encode())
    h.update(twin.geometry_hash().encode())
    h.update(np.ascontiguousarray(tx_pos, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(rx_pos, dtype=np.float64).tobytes())
    h.update(json.dumps([asdict(settings), asdict(tx_ant), asdict(rx_ant), float(twin.scene.frequency[0])]).encode())
    return h.hexdigest()[:32]


def default_cache_dir() -> Path:
    return Path(os.environ.get("RFTWIN_CACHE", Path.home() / ".cache" / "rftwin" / "paths"))


def trace(twin: TwinScene, tx_pos, rx_pos, settings: SolverSettings = SolverSettings(),
          tx_antenna: AntennaSpec = AntennaSpec(), rx_antenna: AntennaSpec = AntennaSpec(),
          cache_dir: str | os.PathLike | None | bool = None, progress: bool = True) -> PathSet:
    """Trace the links (``tx_pos[i]`` -> ``rx_pos[i]``, [L, 3] m) once and return their PathSet (float64, CPU).

    The result is cached under ``cache_dir`` (default ``$RFTWIN_CACHE`` or ``~/.cache/rftwin/paths``; ``False``
    disables caching) keyed by a hash of geometry, trace-time materials, links, solver and antenna settings.
    """
    tx_pos = np.asarray(tx_pos, dtype=np.float64).reshape(-1, 3)
    rx_pos = np.asarray(rx_pos, dtype=np.float64).reshape(-1, 3)
    if tx_pos.shape != rx_pos.shape:
        raise ValueError(f"tx_pos {tx_pos.shape} and rx_pos {rx_pos.shape} must have the same shape [L, 3]")
    key = cache_key(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna)
    cpath = None
    if cache_dir is not False:
        cpath = Path(cache_dir or default_cache_dir()) / f"{key}.npz"
        if cpath.is_file():
            try:
                return PathSet.load(cpath)
            except Exception:  # noqa: BLE001 - a corrupt cache entry is re-traced
                pass
    _set_arrays(twin.scene, tx_antenna, rx_antenna)
    id_to_index, meshes = twin.id_to_index(), twin.meshes()
    calls = _plan_calls(tx_pos, rx_pos)
    parts, overflow = [], 0
    from rftwin.progress import track  # noqa: PLC0415

    for ut, ur, grid in track(calls, "tracing (Sionna RT)", enabled=progress and len(calls) > 1):
        raw = _solve(twin, ut, ur, settings)
        counts = np.bincount(raw["src"], minlength=len(ut)) if len(raw["src"]) else np.zeros(len(ut))
        overflow += int(np.sum(counts >= settings.max_num_paths_per_src))
        link = grid[raw["src"], raw["tgt"]] if len(raw["src"]) else np.zeros(0, np.int64)
        keep = link >= 0
        raw = {k: v[keep] for k, v in raw.items()}
        geo = _geometry(raw, ut, ur, id_to_index, meshes)
        f_tx, f_rx = _antenna_vectors(twin.scene, geo["k_tx"], geo["k_last_in"])
        D = max(1, settings.max_depth)
        parts.append(dict(link=link[keep], geo=geo, f_tx=f_tx, f_rx=f_rx, a=raw["a"], D=D))
    # assemble in link order
    link = np.concatenate([p["link"] for p in parts])
    order = np.argsort(link, kind="stable")

    def cat(fn):
        return torch.from_numpy(np.ascontiguousarray(np.concatenate([fn(p) for p in parts])[order]))

    meta = dict(format_version=FORMAT_VERSION, object_names=twin.names,
                object_labels=[o.label for o in twin.objects],
                trace_frequency_hz=float(twin.scene.frequency[0]), settings=asdict(settings),
                mechanisms=settings.mechanisms(), tx_antenna=asdict(tx_antenna), rx_antenna=asdict(rx_antenna),
                scene=twin.source, cache_key=key, overflowed_sources=overflow)
    ps = PathSet(
        tx_pos=torch.from_numpy(tx_pos.copy()), rx_pos=torch.from_numpy(rx_pos.copy()),
        link=torch.from_numpy(link[order]),
        length_m=cat(lambda p: p["geo"]["length"]), k_tx=cat(lambda p: p["geo"]["k_tx"]),
        k_rx=cat(lambda p: p["geo"]["k_rx"]), f_tx=cat(lambda p: p["f_tx"]), f_rx=cat(lambda p: p["f_rx"]),
        a_ref=cat(lambda p: p["a"]), itype=cat(lambda p: p["geo"]["itype"]), obj=cat(lambda p: p["geo"]["obj"]),
        prim=cat(lambda p: p["geo"]["prim"]), point=cat(lambda p: p["geo"]["point"]),
        normal=cat(lambda p: p["geo"]["normal"]), cos_i=cat(lambda p: p["geo"]["cos_i"]),
        rot_in=cat(lambda p: p["geo"]["rot_in"]), rot_out=cat(lambda p: p["geo"]["rot_out"]),
        prob=cat(lambda p: p["geo"]["prob"]), meta=meta)
    if cpath is not None:
        ps.save(cpath)
    return ps


__all__ = ["AntennaSpec", "SolverSettings", "trace", "concat", "cache_key"]
