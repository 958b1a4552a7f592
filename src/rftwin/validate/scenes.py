"""Tiny Sionna XML scenes for the closed-form checks: flat rectangles with fixed radio materials."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr


@dataclass(frozen=True)
class Plate:
    """A flat rectangle (Mitsuba ``rectangle``) of ``size_m`` (u, v) centred at ``center_m``, whose normal is
    +z rotated by ``tilt_deg`` about the y axis then by ``yaw_deg`` about z (0, 0: horizontal; 90, 0: a wall
    facing +x), with a ``radio-material`` of fixed relative permittivity, conductivity [S/m], thickness [m]."""

    name: str
    center_m: tuple[float, float, float]
    size_m: tuple[float, float]
    eps_r: float
    sigma_s_per_m: float
    thickness_m: float
    tilt_deg: float = 0.0
    yaw_deg: float = 0.0

    def normal(self) -> tuple[float, float, float]:
        t, y = math.radians(self.tilt_deg), math.radians(self.yaw_deg)
        return (math.sin(t) * math.cos(y), math.sin(t) * math.sin(y), math.cos(t))


@dataclass(frozen=True)
class KnifeEdge:
    """A thin wedge-shaped screen: two faces meeting at the straight top edge (along y, at height ``edge_z_m``,
    x = 0, from -``half_width_m`` to +``half_width_m``), each going down ``depth_m`` with a half opening angle
    ``half_angle_deg`` (exterior wedge angle 2 pi - 2 half_angle: n = 2 - half_angle / 90 deg). The bottom and
    side edges are free edges (one face), so with ``edge_diffraction`` off only the top edge diffracts."""

    name: str
    edge_z_m: float
    half_width_m: float
    depth_m: float
    eps_r: float
    sigma_s_per_m: float
    thickness_m: float
    half_angle_deg: float = 2.0
    vertical: bool = False  # True: y and z swapped (edge along z at y = edge_z_m, screen towards -y)

    def obj_text(self) -> str:
        w, h, z = self.half_width_m, self.depth_m, self.edge_z_m
        x = h * math.tan(math.radians(self.half_angle_deg))
        v = [(0.0, -w, z), (0.0, w, z), (-x, -w, z - h), (-x, w, z - h), (x, -w, z - h), (x, w, z - h)]
        f = [(1, 4, 3), (1, 2, 4), (1, 6, 2), (1, 5, 6)]  # OBJ: 1-based, outward normals
        if self.vertical:  # swapping two axes mirrors the mesh: reverse the winding to keep normals outward
            v = [(a, c, b) for a, b, c in v]
            f = [(a, c, b) for a, b, c in f]
        return "".join(f"v {a!r} {b!r} {c!r}\n" for a, b, c in v) + "".join(f"f {a} {b} {c}\n" for a, b, c in f)


def _material(name: str, eps_r: float, sigma: float, thickness: float) -> str:
    return (f'  <bsdf type="radio-material" id={quoteattr("mat_" + name)}>\n'
            f'    <float name="relative_permittivity" value="{eps_r!r}"/>\n'
            f'    <float name="conductivity" value="{sigma!r}"/>\n'
            f'    <float name="thickness" value="{thickness!r}"/>\n  </bsdf>\n')


def scene_xml(plates: list[Plate], knives: list[KnifeEdge] = (), mesh_dir: Path | None = None) -> str:
    """Sionna/Mitsuba XML of ``plates`` and ``knives`` (one radio material ``mat_<name>`` per object, shape id
    = name; knives are OBJ files ``<name>.obj`` in ``mesh_dir``, named by absolute path)."""
    out = ['<?xml version="1.0" encoding="utf-8"?>\n<scene version="2.1.0">\n']
    for k in knives:
        out.append(_material(k.name, k.eps_r, k.sigma_s_per_m, k.thickness_m))
        obj = str(Path(mesh_dir).resolve() / (k.name + ".obj"))  # absolute: see SIONNA_NOTES on mesh paths
        out.append(f'  <shape type="obj" id={quoteattr(k.name)}>\n'
                   f'    <string name="filename" value={quoteattr(obj)}/>\n'
                   '    <boolean name="face_normals" value="true"/>\n'
                   f'    <ref id={quoteattr("mat_" + k.name)}/>\n  </shape>\n')
    for p in plates:
        out.append(_material(p.name, p.eps_r, p.sigma_s_per_m, p.thickness_m))
    for p in plates:
        cx, cy, cz = p.center_m
        out.append(f'  <shape type="rectangle" id={quoteattr(p.name)}>\n'
                   '    <transform name="to_world">\n'
                   f'      <scale x="{p.size_m[0] / 2!r}" y="{p.size_m[1] / 2!r}" z="1"/>\n'
                   f'      <rotate y="1" angle="{p.tilt_deg!r}"/>\n'
                   f'      <rotate z="1" angle="{p.yaw_deg!r}"/>\n'
                   f'      <translate x="{cx!r}" y="{cy!r}" z="{cz!r}"/>\n'
                   '    </transform>\n'
                   f'    <ref id={quoteattr("mat_" + p.name)}/>\n  </shape>\n')
    out.append("</scene>\n")
    return "".join(out)


def write_scene(plates: list[Plate], folder: str | Path, name: str = "scene.xml",
                knives: list[KnifeEdge] = ()) -> Path:
    """Write the XML of ``plates`` (and the OBJ meshes of ``knives``) into ``folder`` (created); returns the
    XML path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k in knives:
        (folder / f"{k.name}.obj").write_text(k.obj_text(), encoding="utf-8")
    path = folder / name
    path.write_text(scene_xml(plates, knives, folder), encoding="utf-8")
    return path
