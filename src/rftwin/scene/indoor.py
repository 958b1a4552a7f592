"""An indoor multi-room benchmark scene: rooms off a corridor, walls with door openings, windows, furniture.

Built programmatically (like :mod:`rftwin.scene.room`) as PLY meshes + a Sionna XML with one ITU radio material
per object, written once into a content-addressed folder and loaded with ``merge_shapes=False``.

Default layout (20 x 12 x 3 m, metres): a corridor along x at 5 <= y <= 7; three rooms south of it (walls at
x = 7 and x = 13), two rooms north of it (wall at x = 10); every room has a 1 m wide, 2.1 m high door onto the
corridor; the exterior walls are concrete with glass windows; floor concrete, ceiling ceiling-board,
plasterboard corridor walls, brick room partitions, wooden desks and chipboard cabinets.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DOOR_WIDTH_M = 1.0
DOOR_HEIGHT_M = 2.1


@dataclass(frozen=True)
class Furniture:
    """An axis-aligned box standing on the floor: centre (x, y) and size (dx, dy, dz) in metres."""

    name: str
    material: str
    center_xy: tuple[float, float]
    size_xyz: tuple[float, float, float]


@dataclass(frozen=True)
class IndoorLayout:
    """Geometry of the multi-room floor (all lengths in metres)."""

    size_x: float = 20.0
    size_y: float = 12.0
    height: float = 3.0
    corridor_y: tuple[float, float] = (5.0, 7.0)
    south_partitions_x: tuple[float, ...] = (7.0, 13.0)
    north_partitions_x: tuple[float, ...] = (10.0,)
    window_z: tuple[float, float] = (1.0, 2.2)
    window_width: float = 2.0
    thickness: float = 0.1  # slab thickness of every radio material
    materials: dict = field(default_factory=lambda: {
        "floor": "concrete", "ceiling": "ceiling_board", "exterior_walls": "concrete", "windows": "glass",
        "corridor_wall_south": "plasterboard", "corridor_wall_north": "plasterboard",
        "partitions_south": "brick", "partitions_north": "brick"})
    furniture: tuple[Furniture, ...] = (
        Furniture("desk_1", "wood", (3.5, 2.0), (1.6, 0.8, 0.75)),
        Furniture("desk_2", "wood", (16.5, 2.5), (1.6, 0.8, 0.75)),
        Furniture("desk_3", "wood", (5.0, 10.0), (1.6, 0.8, 0.75)),
        Furniture("cabinet_1", "chipboard", (10.0, 0.6), (1.2, 0.5, 2.0)),
        Furniture("cabinet_2", "chipboard", (15.0, 11.4), (1.2, 0.5, 2.0)),
    )

    def rooms(self) -> list[tuple[float, float, float, float]]:
        """(x0, x1, y0, y1) of every room (the corridor included, last)."""
        ys, yn = self.corridor_y
        out = []
        xs = (0.0, *self.south_partitions_x, self.size_x)
        out += [(a, b, 0.0, ys) for a, b in itertools.pairwise(xs)]
        xn = (0.0, *self.north_partitions_x, self.size_x)
        out += [(a, b, yn, self.size_y) for a, b in itertools.pairwise(xn)]
        out.append((0.0, self.size_x, ys, yn))
        return out


def _quad(p0, u, v) -> tuple[np.ndarray, np.ndarray]:
    """Rectangle with corner ``p0`` and edge vectors ``u``, ``v``: vertices [4, 3], faces [2, 3]."""
    p0, u, v = (np.asarray(x, dtype=np.float64) for x in (p0, u, v))
    verts = np.stack([p0, p0 + u, p0 + u + v, p0 + v])
    return verts, np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)


def _merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    verts, faces, off = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + off)
        off += len(v)
    return np.concatenate(verts), np.concatenate(faces)


def _wall_pieces(axis: str, c: float, a0: float, a1: float, height: float,
                 holes: list[tuple[float, float, float, float]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """A vertical wall in the plane ``axis`` = c spanning [a0, a1] along the other horizontal axis and [0, height]
    in z, minus rectangular ``holes`` (a_lo, a_hi, z_lo, z_hi), as quads."""
    def q(alo, ahi, zlo, zhi):
        if ahi - alo <= 1e-9 or zhi - zlo <= 1e-9:
            return None
        if axis == "y":  # wall along x at y = c
            return _quad((alo, c, zlo), (ahi - alo, 0, 0), (0, 0, zhi - zlo))
        return _quad((c, alo, zlo), (0, ahi - alo, 0), (0, 0, zhi - zlo))

    holes = sorted(holes)
    pieces, cur = [], a0
    for lo, hi, zlo, zhi in holes:
        pieces += [q(cur, lo, 0.0, height), q(lo, hi, 0.0, zlo), q(lo, hi, zhi, height)]
        cur = hi
    pieces.append(q(cur, a1, 0.0, height))
    return [p for p in pieces if p is not None]


def _box(center_xy, size_xyz, lift: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Closed axis-aligned box mesh (outward-facing triangles) standing ``lift`` m above the floor."""
    cx, cy = center_xy
    sx, sy, sz = size_xyz
    lo = np.array([cx - sx / 2, cy - sy / 2, lift])
    hi = np.array([cx + sx / 2, cy + sy / 2, lift + sz])
    corners = np.array([[lo[0] if i & 1 == 0 else hi[0], lo[1] if i & 2 == 0 else hi[1],
                         lo[2] if i & 4 == 0 else hi[2]] for i in range(8)])
    faces = np.array([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
                      [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]], dtype=np.int64)
    return corners, faces


def indoor_meshes(layout: IndoorLayout = IndoorLayout()) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """Object name -> (ITU material, vertices [V, 3] m, faces [F, 3]) of the layout."""
    L = layout
    H, X, Y = L.height, L.size_x, L.size_y
    ys, yn = L.corridor_y
    m = L.materials
    out: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    out["floor"] = (m["floor"], *_quad((0, 0, 0), (X, 0, 0), (0, Y, 0)))
    out["ceiling"] = (m["ceiling"], *_quad((0, 0, H), (X, 0, 0), (0, Y, 0)))
    # windows: one per room on the exterior wall it touches (centred), glass panes fill the openings
    zl, zh = L.window_z
    w = L.window_width
    south_win = [((a + b) / 2 - w / 2, (a + b) / 2 + w / 2, zl, zh) for a, b, y0, _ in L.rooms()[:-1] if y0 == 0.0]
    north_win = [((a + b) / 2 - w / 2, (a + b) / 2 + w / 2, zl, zh) for a, b, _, y1 in L.rooms()[:-1] if y1 == Y]
    ext = (_wall_pieces("y", 0.0, 0.0, X, H, south_win) + _wall_pieces("y", Y, 0.0, X, H, north_win)
           + _wall_pieces("x", 0.0, 0.0, Y, H, []) + _wall_pieces("x", X, 0.0, Y, H, []))
    out["exterior_walls"] = (m["exterior_walls"], *_merge(ext))
    panes = [_quad((lo, 0.0, z0), (hi - lo, 0, 0), (0, 0, z1 - z0)) for lo, hi, z0, z1 in south_win]
    panes += [_quad((lo, Y, z0), (hi - lo, 0, 0), (0, 0, z1 - z0)) for lo, hi, z0, z1 in north_win]
    out["windows"] = (m["windows"], *_merge(panes))
    # corridor walls with one door per room (door 1 m from the room's corridor-side corner towards its centre)

    def doors(rooms):
        return [((a + b) / 2 - DOOR_WIDTH_M / 2, (a + b) / 2 + DOOR_WIDTH_M / 2, 0.0, DOOR_HEIGHT_M)
                for a, b, _, _ in rooms]

    south_rooms = [r for r in L.rooms()[:-1] if r[2] == 0.0]
    north_rooms = [r for r in L.rooms()[:-1] if r[3] == Y]
    out["corridor_wall_south"] = (m["corridor_wall_south"],
                                  *_merge(_wall_pieces("y", ys, 0.0, X, H, doors(south_rooms))))
    out["corridor_wall_north"] = (m["corridor_wall_north"],
                                  *_merge(_wall_pieces("y", yn, 0.0, X, H, doors(north_rooms))))
    out["partitions_south"] = (m["partitions_south"], *_merge(
        [p for x in L.south_partitions_x for p in _wall_pieces("x", x, 0.0, ys, H, [])]))
    out["partitions_north"] = (m["partitions_north"], *_merge(
        [p for x in L.north_partitions_x for p in _wall_pieces("x", x, yn, Y, H, [])]))
    for f in L.furniture:
        out[f.name] = (f.material, *_box(f.center_xy, f.size_xyz))
    return out


def _write_ply(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY (float32 vertices, uint8-count int32 face lists)."""
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(verts)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    fa = np.empty(len(faces), dtype=fdt)
    fa["n"] = 3
    fa["i"] = faces
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(np.ascontiguousarray(verts, dtype="<f4").tobytes())
        fh.write(fa.tobytes())


def indoor_xml(meshes: dict[str, tuple[str, np.ndarray, np.ndarray]], thickness: float) -> str:
    """Sionna XML referencing ``meshes/<name>.ply``, one ITU radio material ``m_<name>`` per object."""
    parts = ['<scene version="2.1.0">\n']
    for name, (mat, _, _) in meshes.items():
        parts.append(f'  <bsdf type="itu-radio-material" id="m_{name}">\n'
                     f'    <string name="type" value="{mat}"/>\n'
                     f'    <float name="thickness" value="{thickness:g}"/>\n  </bsdf>\n')
    for name in meshes:
        parts.append(f'  <shape type="ply" id="{name}">\n    <string name="filename" value="meshes/{name}.ply"/>\n'
                     f'    <ref id="m_{name}"/>\n  </shape>\n')
    parts.append("</scene>\n")
    return "".join(parts)


def write_indoor_scene(out_dir: str | os.PathLike | None = None, layout: IndoorLayout = IndoorLayout()) -> Path:
    """Write ``scene.xml`` + ``meshes/*.ply`` of the layout (atomically) and return the XML path.

    Default folder: ``<trace cache>/../scenes/indoor-<hash>`` (content-addressed, reused when present).
    """
    meshes = indoor_meshes(layout)
    xml = indoor_xml(meshes, layout.thickness)
    h = hashlib.sha256(xml.encode())
    for _, v, f in meshes.values():
        h.update(np.ascontiguousarray(v, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(f, dtype=np.int64).tobytes())
    if out_dir is None:
        from rftwin.runtime import default_cache_dir  # noqa: PLC0415

        out_dir = default_cache_dir().parent / "scenes" / f"indoor-{h.hexdigest()[:16]}"
    out_dir = Path(out_dir)
    if (out_dir / "scene.xml").is_file():
        return out_dir / "scene.xml"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (stage / "meshes").mkdir()
        for name, (_, v, f) in meshes.items():
            _write_ply(stage / "meshes" / f"{name}.ply", v, f)
        (stage / "scene.xml").write_text(xml)
        try:
            os.replace(stage, out_dir)
        except OSError:  # written concurrently by someone else: theirs is identical
            if not (out_dir / "scene.xml").is_file():
                raise
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return out_dir / "scene.xml"


def indoor(frequency_hz: float = 3.5e9, layout: IndoorLayout = IndoorLayout()):
    """Load the indoor multi-room scene as a :class:`rftwin.scene.TwinScene` (one object per mesh)."""
    from rftwin.scene.load import load

    return load(write_indoor_scene(layout=layout), frequency_hz)


def free_grid(layout: IndoorLayout, spacing_m: float, z_m: float, wall_clearance_m: float = 0.2,
              furniture_clearance_m: float = 0.2) -> np.ndarray:
    """Grid points [P, 3] (m) at height ``z_m`` inside the floor, away from walls and furniture."""
    xs = np.arange(spacing_m / 2, layout.size_x, spacing_m)
    ys = np.arange(spacing_m / 2, layout.size_y, spacing_m)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    p = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, z_m)])
    ok = np.ones(len(p), dtype=bool)
    walls_y = (0.0, *layout.corridor_y, layout.size_y)
    walls_x = (0.0, *layout.south_partitions_x, *layout.north_partitions_x, layout.size_x)
    for y in walls_y:
        ok &= np.abs(p[:, 1] - y) > wall_clearance_m
    for x in walls_x:
        ok &= np.abs(p[:, 0] - x) > wall_clearance_m
    for f in layout.furniture:
        if z_m <= f.size_xyz[2] + furniture_clearance_m:
            lo = np.array(f.center_xy) - np.array(f.size_xyz[:2]) / 2 - furniture_clearance_m
            hi = np.array(f.center_xy) + np.array(f.size_xyz[:2]) / 2 + furniture_clearance_m
            ok &= ~np.all((p[:, :2] >= lo) & (p[:, :2] <= hi), axis=1)
    return p[ok]


__all__ = ["DOOR_HEIGHT_M", "DOOR_WIDTH_M", "Furniture", "IndoorLayout", "free_grid", "indoor", "indoor_meshes",
           "indoor_xml", "write_indoor_scene"]
