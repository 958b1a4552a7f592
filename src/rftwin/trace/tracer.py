"""Run Sionna RT's PathSolver once for a set of links and turn its per-path buffer into a PathSet."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from rftwin.pathset import DIFFRACTION, DIFFUSE, NONE, REFRACTION, PathSet, concat
from rftwin.runtime import default_cache_dir, sionna_rt
from rftwin.scene.load import TwinScene
from rftwin.scene.scene_materials import SceneMaterials, applied_materials, resolve_materials
from rftwin.trace import budget as _budget
from rftwin.trace import cache as _cache
from rftwin.trace import dedup_table as _dedup
from rftwin.trace import geometry as g
from rftwin.trace.kernel_cache import (
    array_endpoints,
    float_array,
    opaque_materials,
    release_allocations,
    release_kernels,
)
from rftwin.trace.shared_materials import share_materials

FORMAT_VERSION = 2  # 2: diffuse-reflection and diffraction records
#: how links are grouped into solver calls, part of the cache key since it changes paths (plan_calls);
#: 2: one transmitter per call
CALL_PLAN = 2


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

    @property
    def lanes_per_pair(self) -> int:
        """Solver lanes one (tx, rx) pair takes: max(depth, 1) x samples per source."""
        return max(1, self.max_depth) * self.samples_per_src

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


def reset_devices(scene, tx_ant: AntennaSpec = AntennaSpec(), rx_ant: AntennaSpec = AntennaSpec()) -> None:
    """Remove every transmitter and receiver of a Sionna scene and give it single-element arrays."""
    _clear_devices(scene)
    _set_arrays(scene, tx_ant, rx_ant)


def antenna_vectors(scene, k_tx: np.ndarray, k_in_last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Antenna field vectors (complex [N, T, 2] and [N, R, 2]) in Sionna's world implicit basis."""
    import mitsuba as mi  # noqa: PLC0415
    from sionna.rt.antenna_pattern import antenna_pattern_to_world_implicit  # noqa: PLC0415
    from sionna.rt.utils import rotation_matrix  # noqa: PLC0415

    n = k_tx.shape[0]
    if n == 0:  # no path in this call: Dr.Jit aborts on size-0 rotations ("jit_var(r0): unknown variable")
        return (np.zeros((0, len(scene.tx_array.antenna_pattern.patterns), 2), np.complex128),
                np.zeros((0, len(scene.rx_array.antenna_pattern.patterns), 2), np.complex128))
    zero = float_array(np.zeros(n))
    rot = rotation_matrix(mi.Point3f(zero, zero, zero))

    def vec(x):
        return mi.Vector3f(*(float_array(x[:, i]) for i in range(3)))

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


def buffer_to_numpy(buf, patterns: tuple[int, int] = (1, 1)) -> dict[str, np.ndarray]:
    """Sionna's per-path solver buffer ``buf`` as numpy arrays (one entry per buffer field)."""
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
    if n == 0 or not a:  # no path at all in this call: Sionna leaves the coefficients empty
        out["a"] = np.zeros((n,) + tuple(patterns), dtype=np.complex128)
    else:
        out["a"] = np.stack([np.stack([np.array(a_.real) + 1j * np.array(a_.imag) for a_ in row], -1)
                             for row in a], 1)
    if buf.max_depth == 0:
        out["itype"][:] = NONE
    wedges = buf.diffracting_wedges
    if wedges is not None:  # first-order diffraction: one wedge per path (Sionna's PathsBuffer)
        for key, name in (("wedge_e", "e_hat"), ("wedge_n0", "n0"), ("wedge_nn", "nn")):
            out[key] = np.array(getattr(wedges, name), dtype=np.float64).reshape(3, n).T.copy()
    return out


def path_records(raw: dict, src: np.ndarray, tgt: np.ndarray, id_to_index: dict[int, int],
              meshes: list[tuple[np.ndarray, np.ndarray]], samples_per_src: int | None = None
              ) -> dict[str, np.ndarray]:
    """Geometry-only per-path / per-interaction records (float64) from the raw buffer of one solver call.

    With ``samples_per_src`` (the solver's value) the diffuse-reflection and diffraction records are added
    (see :func:`_mechanism_geometry`).
    """
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
    out = dict(length=length, k_tx=k_tx, k_rx=-k_last_in, k_last_in=k_last_in, obj=obj, prim=prim,
               point=np.where(mask[..., None], V, 0.0), normal=normal, cos_i=np.where(mask, cos_i, 0.0),
               rot_in=rot_in, rot_out=rot_out, prob=np.where(mask, raw["prob"], 0.0), itype=itype)
    if samples_per_src is not None:
        out.update(_mechanism_geometry(raw, ps, pt, V, nxt, k_in, normal, mask, samples_per_src))
    return out


def _mechanism_geometry(raw: dict, ps: np.ndarray, pt: np.ndarray, V: np.ndarray, nxt: np.ndarray,
                        k_in: np.ndarray, normal: np.ndarray, mask: np.ndarray, samples_per_src: int
                        ) -> dict[str, np.ndarray]:
    """Diffuse-reflection and diffraction records, replaying Sionna's ``FieldCalculator`` bookkeeping.

    ``ps``/``pt`` [N, 3] source/target of each path, ``V`` [N, D, 3] raw buffer vertices (including the unused
    slots, which Sionna's s/s' loop reads), ``nxt`` [N, D, 3] next vertex of every interaction, ``k_in``
    [N, D, 3] incoming directions, ``normal`` [N, D, 3] normals oriented against ``k_in``, ``mask`` [N, D].
    """
    itype = raw["itype"]
    N, D = itype.shape
    diffuse = mask & (itype == DIFFUSE)
    k_out = np.where(mask[..., None], g.normalize(nxt - V), 0.0)
    cos_o = np.where(mask, np.abs(g.dot(k_out, normal)), 0.0)
    cos_psi_r = np.where(mask, g.dot(g.reflect(k_in, normal), k_out), 0.0)
    cos_psi_i = np.where(mask, -g.dot(k_in, k_out), 0.0)
    w_in, w_out = g.diffuse_rotators(k_in, k_out)
    eye = np.broadcast_to(np.eye(2), w_in.shape)
    w_in = np.where(diffuse[..., None, None], w_in, eye)
    w_out = np.where(diffuse[..., None, None], w_out, eye)
    # ray-tube solid angle (Sionna: 4 pi / samples_per_src, x 1/prob per interaction, 2 pi after diffuse)
    prob = raw["prob"]
    omega = np.zeros((N, D))
    cur = np.full(N, 4.0 * np.pi / samples_per_src)
    active = np.ones(N, dtype=bool)
    for d in range(D):
        act = active & mask[:, d]
        p = prob[:, d]
        cur = np.where(act, cur * np.where(p > 0, 1.0 / np.where(p > 0, p, 1.0), 0.0), cur)
        omega[:, d] = np.where(act, cur, 0.0)
        cur = np.where(act & diffuse[:, d], 2.0 * np.pi, cur)
        active = act
    # ray-tube length: segments after the last diffuse interaction
    seg_out = np.linalg.norm(nxt - V, axis=-1) * mask  # [N, D] outgoing segment of every interaction
    first = np.linalg.norm(np.where(mask[:, :1, None], V[:, :1], pt[:, None]) - ps[:, None], axis=-1)[:, 0]
    tube = first.copy()
    for d in range(D):
        tube = np.where(diffuse[:, d], 0.0, tube) + seg_out[:, d]
    out = dict(k_out=k_out, cos_o=cos_o, cos_psi_r=cos_psi_r, cos_psi_i=cos_psi_i, w_in=w_in, w_out=w_out,
               solid_angle=omega, tube_length=tube)
    if "wedge_e" not in raw:
        return out
    # s' (source -> diffraction point) and s (diffraction point -> target), exactly as Sionna's
    # ``_diffraction_compute_s_s_prime``. That loop also reads the vertex slot of the first unused depth, which
    # holds a stale copy of the diffraction point: for paths with interactions after the diffraction that end
    # before max_depth, Sionna's s (and so L and the spreading factor) includes a spurious detour. Replicated for
    # parity; s + s' equals the path length only when the diffraction is the last interaction.
    s = np.zeros(N)
    s_prime = np.zeros(N)
    prev = ps.copy()
    post = np.zeros(N, dtype=bool)
    active = np.ones(N, dtype=bool)
    for d in range(D):
        t = itype[:, d]
        length = np.linalg.norm(V[:, d] - prev, axis=-1)
        s += np.where(active & post, length, 0.0)
        s_prime += np.where(active & ~post, length, 0.0)
        post |= active & (t == DIFFRACTION)
        prev = np.where(active[:, None], V[:, d], prev)
        active &= t != NONE
    last = np.linalg.norm(pt - prev, axis=-1)
    s += np.where(post, last, 0.0)
    s_prime += np.where(~post, last, 0.0)
    has = (mask & (itype == DIFFRACTION)).any(1)
    dd = np.argmax(mask & (itype == DIFFRACTION), axis=1)
    rows = np.nonzero(has)[0]
    out.update(s=np.where(has, s, 0.0), s_prime=np.where(has, s_prime, 0.0),
               wedge_e=np.where(has[:, None], raw["wedge_e"], 0.0),
               wedge_n0=np.where(has[:, None], raw["wedge_n0"], 0.0),
               wedge_nn=np.where(has[:, None], raw["wedge_nn"], 0.0),
               utd_n=np.zeros(N), utd_sin_beta0=np.zeros(N), utd_L=np.zeros(N), utd_psi=np.zeros((N, 4)),
               utd_a=np.zeros((N, 4)), utd_cos=np.zeros((N, 2)),
               utd_rot=np.broadcast_to(np.eye(2), (N, 4, 2, 2)).copy(), utd_wide=np.zeros(N, dtype=bool))
    if len(rows):
        ki, ko = k_in[rows, dd[rows]], k_out[rows, dd[rows]]
        utd = g.utd_geometry(ki, ko, normal[rows, dd[rows]], raw["wedge_e"][rows], raw["wedge_nn"][rows],
                             s[rows], s_prime[rows])
        for k in ("n", "sin_beta0", "L", "psi", "a", "cos", "rot", "wide"):
            out[f"utd_{k}"][rows] = utd[k]
    return out


# PathSet field -> key of the :func:`path_records` record
_MECHANISM_FIELDS = {"tube_length_m": "tube_length", "k_out": "k_out", "cos_o": "cos_o", "cos_psi_r": "cos_psi_r",
                     "cos_psi_i": "cos_psi_i", "w_in": "w_in", "w_out": "w_out", "solid_angle": "solid_angle",
                     "s_m": "s", "s_prime_m": "s_prime", "wedge_e": "wedge_e", "wedge_n0": "wedge_n0",
                     "wedge_nn": "wedge_nn", "utd_n": "utd_n", "utd_sin_beta0": "utd_sin_beta0", "utd_L": "utd_L",
                     "utd_psi": "utd_psi", "utd_a": "utd_a", "utd_cos": "utd_cos", "utd_rot": "utd_rot",
                     "utd_wide": "utd_wide"}


def solve_paths(twin: TwinScene, tx: np.ndarray, rx: np.ndarray, settings: SolverSettings):
    """One PathSolver call with transmitters ``tx`` [T, 3] and receivers ``rx`` [R, 3]; returns the raw buffer
    (plus ``candidates_per_src`` [T]). Its specular-chain tables are sized for the call (the default policy,
    :mod:`rftwin.trace.dedup_table`) and a call that filled them is traced again with larger ones."""
    if _dedup.policy() == "sionna":
        return _solve(twin, tx, rx, settings)
    lanes_per_source = settings.lanes_per_pair * len(rx)
    slots = _dedup.table_slots(lanes_per_source, len(tx), settings.max_num_paths_per_src)
    for _ in range(_dedup.MAX_ATTEMPTS):
        with _dedup.sized_tables(slots):
            raw = _solve(twin, tx, rx, settings)
        fullest = int(raw["candidates_per_src"].max(initial=0))
        larger = _dedup.table_slots(lanes_per_source, len(tx), slots, candidates=fullest)
        if not _dedup.too_full(fullest, slots) or larger <= slots:
            break
        slots = larger
    return raw


def _solve(twin: TwinScene, tx: np.ndarray, rx: np.ndarray, settings: SolverSettings) -> dict:
    rt = sionna_rt()
    sc = twin.scene
    _clear_devices(sc)
    positions = {}
    for prefix, pts, kind in (("tx", tx, rt.Transmitter), ("rx", rx, rt.Receiver)):
        for i, p in enumerate(np.asarray(pts, dtype=np.float64)):
            positions[f"{prefix}{i}"] = p
            sc.add(kind(name=f"{prefix}{i}", position=[float(v) for v in p]))
    solver = rt.PathSolver(deterministic=True)
    counter = _CandidateCounter(solver._candidate_generator)  # noqa: SLF001 - only way to see the budget use
    solver._candidate_generator = counter  # noqa: SLF001
    s = asdict(settings)
    opaque_materials(sc)
    sc._endpoints = array_endpoints(sc, positions)  # noqa: SLF001 - Sionna's compiles a kernel per call
    try:
        paths = solver(sc, synthetic_array=True, **s)
    finally:
        del sc._endpoints  # noqa: SLF001 - the class's own again
    raw = buffer_to_numpy(paths._paths_buffer, (len(sc.rx_array.antenna_pattern.patterns),  # noqa: SLF001
                                                  len(sc.tx_array.antenna_pattern.patterns)))
    raw["candidates_per_src"] = counter.per_source
    _clear_devices(sc)
    del paths, solver, counter
    return raw


class _CandidateCounter:
    """Wraps Sionna's candidate generator to record how many candidates each source stored.

    Specular, diffuse and diffraction candidates share ``max_num_paths_per_src`` per source; candidates beyond
    it are dropped silently by Sionna (NVlabs/sionna#1172), so a source that reached the budget lost paths.
    """

    def __init__(self, generator) -> None:
        self.generator = generator
        self.per_source: np.ndarray = np.zeros(0, dtype=np.int64)

    def __call__(self, *args, **kwargs):
        buf = self.generator(*args, **kwargs)
        n = min(int(np.array(buf.paths_counter).reshape(-1)[0]), buf.buffer_size)
        src = np.array(buf.source_indices, dtype=np.int64)[:n]
        num_src = int(np.array(kwargs["src_positions"]).reshape(3, -1).shape[1]) if "src_positions" in kwargs \
            else int(src.max() + 1 if n else 0)
        self.per_source = np.bincount(src, minlength=num_src)
        return buf


# Sionna's deterministic solver indexes (depth, ray, target) lanes with 32 bits; calls are also sized from a
# measured memory cost per lane and per path (rftwin.trace.budget).
MAX_SOLVER_LANES = _budget.MAX_SOLVER_LANES


def plan_calls(tx_pos: np.ndarray, rx_pos: np.ndarray, lanes_per_pair: int = 1,
               max_lanes: int | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Group unique links into solver calls: (tx positions [1, 3], rx positions [R, 3], [1, R] link index).

    Every call has one transmitter and the receivers of its requested links (so device-to-device lists trace only
    their pairs), at most ``max_lanes`` solver lanes (``lanes_per_pair`` = depth x samples per source) each.

    One transmitter per call: Sionna samples each ray's interaction type (reflection, refraction, ...) from a
    random stream seeded by the ray's lane in the call, and the lanes of a call's second transmitter follow those
    of its first. A transmitter's paths then depended on its place in the call, and so on the memory budget; alone
    in its call it always has lanes 0 ... samples - 1. ``tests/trace/test_trace_budget.py`` traces three
    transmitters in one call each and together: other paths before, the same now.
    """
    max_lanes = MAX_SOLVER_LANES if max_lanes is None else max_lanes
    r_chunk = max(1, max_lanes // max(1, lanes_per_pair))
    ut, ti = np.unique(tx_pos, axis=0, return_inverse=True)
    ur, ri = np.unique(rx_pos, axis=0, return_inverse=True)
    ti, ri = ti.reshape(-1), ri.reshape(-1)
    calls = []
    for t in range(len(ut)):
        links = np.nonzero(ti == t)[0]
        rx_ids, local = np.unique(ri[links], return_inverse=True)
        grid = np.full(len(rx_ids), -1, dtype=np.int64)
        grid[local.reshape(-1)] = links
        calls += [(ut[t:t + 1], ur[rx_ids[r0:r0 + r_chunk]], grid[None, r0:r0 + r_chunk])
                  for r0 in range(0, len(rx_ids), r_chunk)]
    return calls


def cache_key(twin: TwinScene, tx_pos: np.ndarray, rx_pos: np.ndarray, settings: SolverSettings,
              tx_ant: AntennaSpec, rx_ant: AntennaSpec, materials: SceneMaterials | None = None) -> str:
    """Cache key of a trace: geometry, the trace-time materials (``materials`` over the scene's own: equal
    effective values give equal keys, so a record equal to the scene's own shares its entries), links, solver and
    antenna settings, frequency."""
    h = hashlib.sha256()
    h.update(f"v{FORMAT_VERSION}.{CALL_PLAN}".encode())
    if _dedup.policy() != "sionna":  # other tables, other paths
        h.update(f"tables={_dedup.policy()}".encode())
    h.update(twin.geometry_hash(resolve_materials(twin, materials)).encode())
    h.update(np.ascontiguousarray(tx_pos, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(rx_pos, dtype=np.float64).tobytes())
    h.update(json.dumps([asdict(settings), asdict(tx_ant), asdict(rx_ant), float(twin.scene.frequency[0])]).encode())
    return h.hexdigest()[:32]


@dataclass
class TraceShard:
    """The paths of one solver call: ``links`` [l] global link indices (ascending) and their PathSet (links
    numbered 0..l-1 in the order of ``links``)."""

    links: np.ndarray
    pathset: PathSet


def _trace_meta(twin: TwinScene, settings: SolverSettings, tx_antenna: AntennaSpec, rx_antenna: AntennaSpec,
                key: str, overflow: int, materials: SceneMaterials | None = None) -> dict:
    values = resolve_materials(twin, materials)  # [K, 5] thickness, eps_r, sigma, S, K_xpd
    return dict(format_version=FORMAT_VERSION, object_names=twin.names,
                object_labels=[o.label for o in twin.objects],
                trace_frequency_hz=float(twin.scene.frequency[0]), settings=asdict(settings),
                mechanisms=settings.mechanisms(), tx_antenna=asdict(tx_antenna), rx_antenna=asdict(rx_antenna),
                scene=twin.source, cache_key=key, overflowed_sources=overflow,
                samples_per_src=settings.samples_per_src,
                trace_materials=[dict(eps_r=float(v[1]), sigma=float(v[2]), thickness=float(v[0]),
                                      scattering=float(v[3]), xpd=float(v[4])) for v in values])


def trace_call(twin: TwinScene, ut: np.ndarray, ur: np.ndarray, grid: np.ndarray, tx_pos: np.ndarray,
                rx_pos: np.ndarray, settings: SolverSettings, meta: dict, id_to_index, meshes) -> TraceShard:
    """One solver call (transmitters ``ut`` x receivers ``ur``, ``grid`` [T, R] global link index or -1)."""
    raw = solve_paths(twin, ut, ur, settings)
    cand = raw.pop("candidates_per_src")
    counts = np.bincount(raw["src"], minlength=len(ut)) if len(raw["src"]) else np.zeros(len(ut))
    if len(cand) == len(counts):
        counts = np.maximum(counts, cand)
    overflow = int(np.sum(counts >= settings.max_num_paths_per_src))
    link = grid[raw["src"], raw["tgt"]] if len(raw["src"]) else np.zeros(0, np.int64)
    keep = link >= 0
    raw = {k: v[keep] for k, v in raw.items()}
    geo = path_records(raw, ut, ur, id_to_index, meshes, samples_per_src=settings.samples_per_src)
    f_tx, f_rx = antenna_vectors(twin.scene, geo["k_tx"], geo["k_last_in"])
    release_kernels(len(ut) * len(ur))
    links = np.sort(grid[grid >= 0])
    local = np.searchsorted(links, link[keep])
    order = np.argsort(local, kind="stable")

    def t(x):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(x)[order]))

    geo_fields = dict(length_m="length", k_tx="k_tx", k_rx="k_rx", itype="itype", obj="obj", prim="prim",
                      point="point", normal="normal", cos_i="cos_i", rot_in="rot_in", rot_out="rot_out", prob="prob")
    ps = PathSet(tx_pos=torch.from_numpy(tx_pos[links].copy()), rx_pos=torch.from_numpy(rx_pos[links].copy()),
                 link=t(local), f_tx=t(f_tx), f_rx=t(f_rx), a_ref=t(raw["a"]),
                 meta=dict(meta, overflowed_sources=overflow, shard_links=links.tolist()),
                 **{n: t(geo[k]) for n, k in geo_fields.items()},
                 **{n: t(geo[k]) for n, k in _MECHANISM_FIELDS.items() if k in geo})
    return TraceShard(links, ps)


def _shard_name(links: np.ndarray) -> str:
    """Shard file name: a hash of its (global) link indices, so any plan's shards can be reused."""
    return hashlib.sha256(np.ascontiguousarray(links, dtype=np.int64).tobytes()).hexdigest()[:20] + ".npz"


def _cached_shards(sdir: Path | None, num_links: int) -> list[tuple[Path, np.ndarray]]:
    """Finished shards in ``sdir`` (file, global links) that do not overlap each other (meta read only)."""
    if sdir is None or not sdir.is_dir():
        return []
    covered = np.zeros(num_links, dtype=bool)
    out = []
    for f in sorted(sdir.glob("*.npz")):
        try:
            with np.load(f, allow_pickle=False) as z:
                links = np.asarray(json.loads(bytes(z["meta_json"]).decode())["shard_links"], dtype=np.int64)
        except Exception:  # noqa: BLE001 - unreadable shard: traced again
            continue
        if len(links) and links.max() < num_links and not covered[links].any():
            covered[links] = True
            out.append((f, links))
    return out


def _prepare(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna, cache_dir, materials=None):
    tx_pos = np.asarray(tx_pos, dtype=np.float64).reshape(-1, 3)
    rx_pos = np.asarray(rx_pos, dtype=np.float64).reshape(-1, 3)
    if tx_pos.shape != rx_pos.shape:
        raise ValueError(f"tx_pos {tx_pos.shape} and rx_pos {rx_pos.shape} must have the same shape [L, 3]")
    key = cache_key(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna, materials)
    # a cache location that cannot hold files is an error before any tracing (rftwin.trace.cache)
    root = None if cache_dir is False else _cache.check_cache_dir(cache_dir or default_cache_dir())
    return tx_pos, rx_pos, key, root


def _sizer(settings: SolverSettings, memory_budget: int | None, fixed: float = 0.0,
           resident: int | None = None) -> _budget.CallSizer:
    """Call sizer of ``memory_budget`` (default: the process's) above ``resident`` (default: the resident memory
    now), with ``fixed`` bytes every call needs beyond its lanes and paths."""
    return _budget.CallSizer(_budget.default_budget() if memory_budget is None else int(memory_budget),
                             settings.lanes_per_pair, _budget.current_rss() if resident is None else resident,
                             lane_limit=MAX_SOLVER_LANES,
                             slots_per_lane=_dedup.slots_per_lane(), fixed=fixed)


def _max_pairs(settings: SolverSettings, memory_budget: int | None) -> int:
    """(tx, rx) pairs per solver call that fit ``memory_budget`` (default: the process's) above the resident
    memory now; raises :class:`rftwin.trace.budget.BudgetError` when not even one does."""
    return _sizer(settings, memory_budget).max_pairs()


def iter_trace(twin: TwinScene, tx_pos, rx_pos, settings: SolverSettings = SolverSettings(),
               tx_antenna: AntennaSpec = AntennaSpec(), rx_antenna: AntennaSpec = AntennaSpec(),
               cache_dir: str | os.PathLike | None | bool = None, progress: bool = True,
               memory_budget: int | None = None, materials: SceneMaterials | None = None) -> Iterator[TraceShard]:
    """Trace the links (``tx_pos[i]`` -> ``rx_pos[i]``, [L, 3] m) in solver calls sized by ``memory_budget`` (bytes
    of peak resident memory; default :func:`rftwin.trace.budget.default_budget`) and yield one shard per call.

    Every shard is written to ``<cache>/<key>.shards/`` as soon as it is traced, so a killed trace resumes from
    the finished shards; shards already there are loaded instead of traced. A complete ``<key>.npz`` (written by
    :func:`trace`) is streamed link range by link range. Raises :class:`rftwin.trace.budget.BudgetError` when
    the budget cannot hold a call of one transmitter and one receiver.

    ``materials``: the per-object values to trace at (:class:`rftwin.scene.scene_materials.SceneMaterials`;
    None: the scene's own). They are set on the Sionna scene only while links are traced and restored when the
    generator is exhausted or closed; the caller's scene is never left changed.
    """
    tx_pos, rx_pos, key, root = _prepare(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna, cache_dir,
                                         materials)
    max_pairs = _max_pairs(settings, memory_budget)  # raises BudgetError before anything is traced
    if root is not None:  # entries carry their key and a checksum: a damaged or swapped one is re-traced
        whole = _cache.read_entry(_cache.entry_path(root, key), key)
        if whole is not None:
            for s in range(0, whole.num_links, max_pairs):
                links = np.arange(s, min(s + max_pairs, whole.num_links))
                yield TraceShard(links, whole.select_links(links))
            return
    sdir = None if root is None else root / f"{key}.shards"
    covered = np.zeros(len(tx_pos), dtype=bool)
    for f, links in _cached_shards(sdir, len(tx_pos)):  # resume: shards of any earlier plan
        try:
            ps = PathSet.load(f)
        except Exception:  # noqa: BLE001 - a corrupt shard is re-traced
            continue
        covered[links] = True
        yield TraceShard(links, ps)
    yield from _trace_links(twin, tx_pos, rx_pos, np.nonzero(~covered)[0], settings, tx_antenna, rx_antenna, key,
                            max_pairs, sdir, progress, materials, memory_budget)


def _trace_links(twin: TwinScene, tx_pos: np.ndarray, rx_pos: np.ndarray, links: np.ndarray,
                 settings: SolverSettings, tx_antenna: AntennaSpec, rx_antenna: AntennaSpec, key: str,
                 max_pairs: int, sdir: Path | None, progress: bool, materials: SceneMaterials | None = None,
                 memory_budget: int | None = None) -> Iterator[TraceShard]:
    """Trace the global links ``links`` in calls of at most ``max_pairs`` pairs at ``materials`` (fewer where the
    calls' per-call memory, learned from their peaks, leaves less of ``memory_budget``); save each shard to
    ``sdir``."""
    if not len(links):
        return
    lanes_per_pair = settings.lanes_per_pair
    _set_arrays(twin.scene, tx_antenna, rx_antenna)
    calls = plan_calls(tx_pos[links], rx_pos[links], lanes_per_pair, max_pairs * lanes_per_pair)
    meta = _trace_meta(twin, settings, tx_antenna, rx_antenna, key, 0, materials)
    from rftwin.progress import track  # noqa: PLC0415

    # the call's materials are set (and restored afterwards); objects with equal materials then share one
    # instance while tracing: Sionna's cost grows with the instances
    # Dr.Jit's buffers are kept between calls of one size and given back before a call of another size and at
    # the end (kernel_cache.release_allocations)
    # a call may also need memory that does not grow with its size (Sionna's diffraction records of a city scene:
    # over a GiB): learned from the first call of this scene and settings that sets a new peak of the process; the
    # calls after it are split to stay in the budget
    fixed_key = (id(twin.scene), settings)
    pair_cost = _sizer(settings, memory_budget).pair_cost  # bytes of one (tx, rx) pair's lanes and paths
    size = None
    try:
        with applied_materials(twin, materials), share_materials(twin):
            id_to_index, meshes = twin.id_to_index(), twin.meshes()
            base = _budget.current_rss()  # resident memory without Dr.Jit's buffers (as after a release)
            for ut, ur, grid in track(calls, "tracing (Sionna RT)", enabled=progress and len(calls) > 1):
                grid = np.where(grid >= 0, links[np.maximum(grid, 0)], -1)
                r0 = 0
                while r0 < len(ur):
                    n = min(len(ur) - r0, _pairs_with_fixed(settings, memory_budget, fixed_key, max_pairs, base))
                    if size not in (None, n):
                        release_allocations()
                        base = _budget.current_rss()
                    size = n
                    sl = slice(r0, r0 + n)
                    before, peak_before = _budget.current_rss(), _budget.peak_rss()
                    shard = trace_call(twin, ut, ur[sl], grid[:, sl], tx_pos, rx_pos, settings, meta, id_to_index,
                                       meshes)
                    peak = _budget.peak_rss()  # the call's own peak where it set a new one for the process
                    if _budget.learned_fixed(fixed_key) is None and peak_before is not None and peak > peak_before:
                        cost, after = n * pair_cost, peak
                        if peak - before > _budget.FIXED_MARGIN * cost:  # more than the lanes and paths explain:
                            release_allocations()  # what stays resident without the buffers the next call reuses
                            size, after = None, _budget.current_rss()
                            base = after
                        _budget.learn_fixed(fixed_key, before, after, peak, cost)
                    r0 += n
                    if sdir is not None:
                        shard.pathset.save(sdir / _shard_name(shard.links))
                    yield shard
    finally:
        release_allocations()


def _pairs_with_fixed(settings: SolverSettings, memory_budget: int | None, fixed_key: tuple, max_pairs: int,
                      resident: int) -> int:
    """Pairs of the next call: at most ``max_pairs`` and what the budget holds above ``resident`` (bytes, without
    Dr.Jit's kept buffers) beside the per-call memory learned so far (at least one pair: a budget the learned
    memory alone fills is exceeded, with a warning, rather than ending a trace half-way)."""
    fixed = _budget.learned_fixed(fixed_key)
    if not fixed:  # not learned yet, or nothing beyond the lanes and paths
        return max_pairs
    try:
        # not rounded to a power of two: a call split for its fixed part costs that part's time again (Sionna's
        # diffraction set-up of a city scene: about as long as the rest of a 50-receiver call)
        return min(max_pairs, _sizer(settings, memory_budget, fixed, resident).fitting_pairs())
    except _budget.BudgetError as e:
        warnings.warn(f"{e} (the solver calls of this scene need {_budget.fmt_bytes(fixed)} whatever their size); "
                      "tracing one receiver per call", stacklevel=2)
        return 1


def trace_into_cache(twin: TwinScene, tx_pos, rx_pos, links, settings: SolverSettings, tx_antenna: AntennaSpec,
                     rx_antenna: AntennaSpec, cache_dir, memory_budget: int | None, expected_key: str,
                     materials: SceneMaterials | None = None) -> int:
    """Trace the global links ``links`` of the link list (``tx_pos``, ``rx_pos``) into its shard folder of the
    cache (a worker's part of a fanned-out trace); links already in finished shards are skipped. Returns the
    number of links traced at ``materials``. ``expected_key`` guards against a worker whose scene or materials
    differ from the driver's."""
    tx_pos, rx_pos, key, root = _prepare(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna, cache_dir,
                                         materials)
    if key != expected_key:
        raise RuntimeError(f"worker traces another scene or link list (cache key {key}, expected {expected_key}): "
                           "the scene file must be reachable under the same path on every worker")
    if root is None:
        raise ValueError("a fanned-out trace needs a cache folder shared by the workers")
    max_pairs = _max_pairs(settings, memory_budget)
    sdir = root / f"{key}.shards"
    covered = np.zeros(len(tx_pos), dtype=bool)
    for _, done in _cached_shards(sdir, len(tx_pos)):
        covered[done] = True
    links = np.asarray(links, dtype=np.int64)
    todo = links[~covered[links]]
    n = 0
    for shard in _trace_links(twin, tx_pos, rx_pos, todo, settings, tx_antenna, rx_antenna, key, max_pairs, sdir,
                              False, materials, memory_budget):
        n += len(shard.links)
    return n


def _assemble(shards: list[TraceShard], tx_pos: np.ndarray, rx_pos: np.ndarray, meta: dict) -> PathSet:
    """One PathSet of all links (in link order) from the shards of a trace."""
    if not shards:
        raise ValueError("no links to trace")
    whole = concat([s.pathset for s in shards])
    glob = torch.from_numpy(np.concatenate([s.links for s in shards]))
    link = glob[whole.link]
    order = torch.argsort(link, stable=True)
    kw = {n: t[order] for n, t in whole.tensor_fields().items() if n not in ("tx_pos", "rx_pos", "link")}
    meta = dict(meta, overflowed_sources=int(sum(int(s.pathset.meta.get("overflowed_sources", 0)) for s in shards)))
    meta.pop("shard_links", None)
    return replace(whole, tx_pos=torch.from_numpy(tx_pos.copy()), rx_pos=torch.from_numpy(rx_pos.copy()),
                   link=link[order], meta=meta, **kw)


def trace(twin: TwinScene, tx_pos, rx_pos, settings: SolverSettings = SolverSettings(),
          tx_antenna: AntennaSpec = AntennaSpec(), rx_antenna: AntennaSpec = AntennaSpec(),
          cache_dir: str | os.PathLike | None | bool = None, progress: bool = True,
          memory_budget: int | None = None, materials: SceneMaterials | None = None) -> PathSet:
    """Trace the links (``tx_pos[i]`` -> ``rx_pos[i]``, [L, 3] m) once and return their PathSet (float64, CPU).

    The result is cached under ``cache_dir`` (default ``$RFTWIN_CACHE`` or ``~/.cache/rftwin/paths``; ``False``
    disables caching) keyed by a hash of geometry, trace-time materials, links, solver and antenna settings.
    Solver calls are sized by ``memory_budget`` and written as shards while tracing (see :func:`iter_trace`);
    the assembled PathSet replaces them in the cache. The returned PathSet itself grows with the link count: use
    :func:`iter_trace` to stream.

    ``materials``: per-object values to trace at (:class:`rftwin.scene.scene_materials.SceneMaterials`; None:
    the scene's own), set only while Sionna traces and restored before this returns.
    """
    tx_pos, rx_pos, key, root = _prepare(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna, cache_dir,
                                         materials)
    cpath = None if root is None else _cache.entry_path(root, key)
    if cpath is not None:  # entries carry their key and a checksum (rftwin.trace.cache)
        cached = _cache.read_entry(cpath, key)
        if cached is not None:
            return cached
    shards = list(iter_trace(twin, tx_pos, rx_pos, settings, tx_antenna, rx_antenna, cache_dir, progress,
                             memory_budget, materials))
    meta = _trace_meta(twin, settings, tx_antenna, rx_antenna, key, 0, materials)
    ps = _assemble(shards, tx_pos, rx_pos, meta)
    overflow = ps.meta["overflowed_sources"]
    if overflow:
        warnings.warn(
            f"{overflow} transmitter(s) reached max_num_paths_per_src={settings.max_num_paths_per_src}: Sionna "
            "dropped further candidates (specular, diffuse and diffraction share this budget), so paths are "
            "missing. Increase max_num_paths_per_src (or lower samples_per_src / disable diffuse_reflection).",
            RuntimeWarning, stacklevel=2)
    ps.meta["mechanisms_present"] = ps.mechanisms_present()
    if cpath is not None:
        _cache.write_entry(cpath, ps)
        shutil.rmtree(root / f"{key}.shards", ignore_errors=True)
    return ps


__all__ = ["AntennaSpec", "SceneMaterials", "SolverSettings", "TraceShard", "antenna_vectors", "cache_key", "concat",
           "iter_trace", "path_records", "trace"]
