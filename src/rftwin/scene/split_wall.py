"""A synthetic test scene whose one wall is split into several materials inside ONE calibration unit.

Room ``size_x`` x ``size_y`` x ``height`` m (floor at z = 0, centred on the origin): floor, east/west/south walls
and a north wall (plane y = +size_y / 2) made of axis-aligned rectangular *parts*: the part west of ``split_x``
is ``left_material``, the part east of it ``right_material``, and an optional ``patch`` rectangle (default metal)
is cut out of the east part. Sionna traces the true geometry (every part its own shape and ITU radio material);
rftwin treats all parts named ``<unit>__<part>`` as one object ``<unit>`` (:func:`merge_parts`), so a per-object
material model can only fit one value for the whole wall while a spatial material field can resolve the split.
True materials per point are known from the part rectangles (:meth:`SplitWallScene.part_at`).

Simulated measurements on this room: :mod:`rftwin.studies.split_wall`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rftwin.materials.itu import itu_eps_sigma
from rftwin.pathset import PathSet
from rftwin.scene.room import DEFAULT_THICKNESS_M

PART_SEPARATOR = "__"
SPLIT_UNIT = "wall_north"


@dataclass(frozen=True)
class SplitWallSpec:
    """Geometry (m) and ITU materials of the split-wall room. ``patch`` = (x0, x1, z0, z1) on the north wall,
    inside the east part, or None."""

    size_x: float = 8.0
    size_y: float = 6.0
    height: float = 3.0
    split_x: float = 0.0
    left_material: str = "concrete"
    right_material: str = "wood"
    patch: tuple[float, float, float, float] | None = (1.5, 2.5, 1.0, 2.0)
    patch_material: str = "metal"
    wall_material: str = "brick"
    floor_material: str = "concrete"
    thickness: float = DEFAULT_THICKNESS_M


@dataclass(frozen=True)
class Part:
    """One axis-aligned rectangle of the scene: Sionna object ``name``, its ITU material and 3-D bounds."""

    name: str
    material: str
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    @property
    def unit(self) -> str:
        return self.name.split(PART_SEPARATOR)[0]


def _north_rects(s: SplitWallSpec) -> list[tuple[str, str, float, float, float, float]]:
    """(suffix, material, x0, x1, z0, z1) tiling of the north wall."""
    hx = s.size_x / 2.0
    if not -hx < s.split_x < hx:
        raise ValueError(f"split_x={s.split_x} must lie inside the wall (-{hx}, {hx})")
    rects = [("left", s.left_material, -hx, s.split_x, 0.0, s.height)]
    if s.patch is None:
        return rects + [("right", s.right_material, s.split_x, hx, 0.0, s.height)]
    x0, x1, z0, z1 = s.patch
    if not (s.split_x < x0 < x1 < hx and 0.0 < z0 < z1 < s.height):
        raise ValueError(f"patch {s.patch} must lie inside the east part x in ({s.split_x}, {hx}), "
                         f"z in (0, {s.height})")
    m = s.right_material
    return rects + [("right_w", m, s.split_x, x0, 0.0, s.height), ("right_e", m, x1, hx, 0.0, s.height),
                    ("right_below", m, x0, x1, 0.0, z0), ("right_above", m, x0, x1, z1, s.height),
                    ("patch", s.patch_material, x0, x1, z0, z1)]


def scene_parts(s: SplitWallSpec) -> list[Part]:
    """All rectangles of the scene (sorted by name, the order of the traced twin's objects)."""
    hx, hy, H = s.size_x / 2.0, s.size_y / 2.0, s.height
    parts = [Part("floor", s.floor_material, (-hx, -hy, 0.0), (hx, hy, 0.0)),
             Part("wall_east", s.wall_material, (hx, -hy, 0.0), (hx, hy, H)),
             Part("wall_west", s.wall_material, (-hx, -hy, 0.0), (-hx, hy, H)),
             Part("wall_south", s.wall_material, (-hx, -hy, 0.0), (hx, -hy, H))]
    for suffix, mat, x0, x1, z0, z1 in _north_rects(s):
        parts.append(Part(f"{SPLIT_UNIT}{PART_SEPARATOR}{suffix}", mat, (x0, hy, z0), (x1, hy, z1)))
    return sorted(parts, key=lambda p: p.name)


def _rect_xml(p: Part) -> str:
    """A Mitsuba ``rectangle`` ([-1, 1]^2 in the local xy plane) placed on the part's bounds."""
    lo, hi = np.array(p.lo), np.array(p.hi)
    c, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    flat = int(np.argmin(hi - lo))  # the axis the rectangle is normal to
    if flat == 2:
        tr = f'<scale x="{half[0]:g}" y="{half[1]:g}" z="1"/>'
    elif flat == 1:  # rotate local y onto world z
        tr = f'<scale x="{half[0]:g}" y="{half[2]:g}" z="1"/><rotate x="1" angle="90"/>'
    else:  # rotate local x onto world z
        tr = f'<scale x="{half[2]:g}" y="{half[1]:g}" z="1"/><rotate y="1" angle="90"/>'
    tr += f'<translate x="{c[0]:g}" y="{c[1]:g}" z="{c[2]:g}"/>'
    return (f'  <shape type="rectangle" id="{p.name}">\n    <transform name="to_world">{tr}</transform>\n'
            f'    <ref id="m_{p.name}"/>\n  </shape>\n')


def split_wall_xml(spec: SplitWallSpec = SplitWallSpec()) -> str:
    """Mitsuba/Sionna XML of the scene: one ITU radio material (``m_<part>``) and one rectangle per part."""
    parts = scene_parts(spec)
    out = ['<scene version="2.1.0">\n']
    for p in parts:
        out.append(f'  <bsdf type="itu-radio-material" id="m_{p.name}">\n'
                   f'    <string name="type" value="{p.material}"/>\n'
                   f'    <float name="thickness" value="{spec.thickness:g}"/>\n  </bsdf>\n')
    out += [_rect_xml(p) for p in parts]
    out.append("</scene>\n")
    return "".join(out)


def unit_names(names: list[str]) -> tuple[list[str], np.ndarray]:
    """Calibration units of object names ``<unit>__<part>``: (sorted unit names, object -> unit index [K])."""
    units = sorted({n.split(PART_SEPARATOR)[0] for n in names})
    return units, np.array([units.index(n.split(PART_SEPARATOR)[0]) for n in names], dtype=np.int64)


def merge_parts(ps: PathSet) -> PathSet:
    """The PathSet with object indices mapped from parts (``<unit>__<part>``) to units; meta updated
    (``object_names`` = units, ``part_names`` and ``part_index`` [N, D] kept for evaluation)."""
    names = ps.object_names
    if not names:
        raise ValueError("the PathSet has no object_names in its meta; trace it with rftwin.trace.trace")
    units, to_unit = unit_names(names)
    lut = torch.as_tensor(to_unit)
    obj = torch.where(ps.obj >= 0, lut[ps.obj.clamp_min(0)], ps.obj)
    labels = ps.meta.get("object_labels") or [None] * len(names)
    unit_labels = []
    for u in units:
        labs = {labels[i] for i, n in enumerate(names) if n.split(PART_SEPARATOR)[0] == u}
        unit_labels.append(labs.pop() if len(labs) == 1 else None)
    meta = dict(ps.meta, object_names=units, object_labels=unit_labels, part_names=list(names))
    return replace(ps, obj=obj, meta=meta)


@dataclass
class SplitWallScene:
    """The traced twin (parts as objects), its spec and parts; the rftwin units are :attr:`units`."""

    twin: object  # rftwin.scene.TwinScene with one object per part
    spec: SplitWallSpec
    parts: list[Part] = field(default_factory=list)

    @property
    def units(self) -> list[str]:
        return unit_names([p.name for p in self.parts])[0]

    def part_at(self, points: np.ndarray, tol_m: float = 1e-3) -> np.ndarray:
        """Index into :attr:`parts` of the rectangle containing each point [P, 3] (-1: on none)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.full(len(pts), -1, dtype=np.int64)
        for i, p in enumerate(self.parts):
            inside = np.all((pts >= np.array(p.lo) - tol_m) & (pts <= np.array(p.hi) + tol_m), axis=1)
            out[(out < 0) & inside] = i
        return out

    def true_eps_sigma(self, part_index: np.ndarray, frequency_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """True (eps_r, sigma [S/m]) of the parts ``part_index`` (any shape; -1 -> NaN) at ``frequency_hz``."""
        idx = np.asarray(part_index)
        table = np.array([itu_eps_sigma(p.material, frequency_hz) for p in self.parts] + [(np.nan, np.nan)])
        vals = table[np.where(idx >= 0, idx, len(self.parts))]
        return vals[..., 0], vals[..., 1]

    def unit_prior(self, frequency_hz: float, labels: dict[str, str] | None = None
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(unit labels, eps_r [K], sigma [K]) of the units: each unit's ITU label (the split unit's label is
        ``labels[unit]`` or, by default, its largest part's material), evaluated at ``frequency_hz``."""
        labels = dict(labels or {})
        out = []
        for u in self.units:
            if u in labels:
                out.append(labels[u])
                continue
            ps = [p for p in self.parts if p.unit == u]
            areas = [float(np.prod(np.sort(np.array(p.hi) - np.array(p.lo))[1:])) for p in ps]
            by_mat: dict[str, float] = {}
            for p, a in zip(ps, areas):
                by_mat[p.material] = by_mat.get(p.material, 0.0) + a
            out.append(max(by_mat, key=by_mat.get))
        es = np.array([itu_eps_sigma(m, frequency_hz) for m in out])
        return out, es[:, 0], es[:, 1]


def prior_spec(spec: SplitWallSpec, label: str) -> SplitWallSpec:
    """The same room with every part of the split unit (both halves and the patch) made of ITU ``label``."""
    return replace(spec, left_material=label, right_material=label, patch_material=label)


def split_wall(spec: SplitWallSpec = SplitWallSpec(), frequency_hz: float = 3.5e9) -> SplitWallScene:
    """Load the split-wall scene into Sionna (one object per part) as a :class:`SplitWallScene`."""
    from rftwin.runtime import sionna_rt  # noqa: PLC0415
    from rftwin.scene.load import TwinScene, object_table  # noqa: PLC0415

    rt = sionna_rt()
    sc = rt.load_scene_from_string(split_wall_xml(spec), merge_shapes=False)
    sc.frequency = float(frequency_hz)
    twin = TwinScene(scene=sc, source="split_wall", objects=object_table(sc))
    parts = scene_parts(spec)
    if twin.names != [p.name for p in parts]:
        raise RuntimeError(f"split-wall objects {twin.names} do not match the parts {[p.name for p in parts]}")
    return SplitWallScene(twin=twin, spec=spec, parts=parts)
