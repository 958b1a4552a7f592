"""The benchmark room of seed 004: 10 x 10 x 3 m, brick floor and walls, four 1 x 2 x 1 m boxes."""
from __future__ import annotations

from dataclasses import dataclass

# Default slab thickness Sionna RT assigns to a radio material [m]
DEFAULT_THICKNESS_M = 0.1


@dataclass(frozen=True)
class BoxSpec:
    name: str
    material: str
    center_xy: tuple[float, float]
    size_xyz: tuple[float, float, float] = (1.0, 2.0, 1.0)


ROOM_BOXES = (
    BoxSpec("box_wood", "wood", (-3.0, 3.0)),
    BoxSpec("box_chipboard", "chipboard", (3.0, 3.0)),
    BoxSpec("box_concrete", "concrete", (3.0, -3.0)),
    BoxSpec("box_marble", "marble", (-3.0, -3.0)),
)


def _material(obj: str, itu_type: str, thickness: float) -> str:
    return (f'  <bsdf type="itu-radio-material" id="m_{obj}">\n'
            f'    <string name="type" value="{itu_type}"/>\n'
            f'    <float name="thickness" value="{thickness:g}"/>\n  </bsdf>\n')


def _rect(obj: str, transform: str) -> str:
    return (f'  <shape type="rectangle" id="{obj}">\n    <transform name="to_world">{transform}</transform>\n'
            f'    <ref id="m_{obj}"/>\n  </shape>\n')


def room_xml(size_xy: float = 10.0, height: float = 3.0, wall_material: str = "brick",
             floor_material: str = "brick", boxes: tuple[BoxSpec, ...] = ROOM_BOXES,
             thickness: float = DEFAULT_THICKNESS_M, box_lift: float = 1e-3) -> str:
    """Mitsuba/Sionna XML of the room. Every object gets its own radio material (id ``m_<object>``).

    The boxes are lifted by ``box_lift`` metres so their bottom face does not coincide with the floor.
    """
    h = size_xy / 2.0
    parts = ['<scene version="2.1.0">\n']
    walls = {
        "floor": (floor_material, f'<scale x="{h}" y="{h}" z="1"/>'),
        "wall_east": (wall_material, f'<scale x="{height / 2}" y="{h}" z="1"/><rotate y="1" angle="90"/>'
                                     f'<translate x="{h}" y="0" z="{height / 2}"/>'),
        "wall_west": (wall_material, f'<scale x="{height / 2}" y="{h}" z="1"/><rotate y="1" angle="90"/>'
                                     f'<translate x="{-h}" y="0" z="{height / 2}"/>'),
        "wall_north": (wall_material, f'<scale x="{h}" y="{height / 2}" z="1"/><rotate x="1" angle="90"/>'
                                      f'<translate x="0" y="{h}" z="{height / 2}"/>'),
        "wall_south": (wall_material, f'<scale x="{h}" y="{height / 2}" z="1"/><rotate x="1" angle="90"/>'
                                      f'<translate x="0" y="{-h}" z="{height / 2}"/>'),
    }
    for name, (mat, _) in walls.items():
        parts.append(_material(name, mat, thickness))
    for b in boxes:
        parts.append(_material(b.name, b.material, thickness))
    for name, (_, tr) in walls.items():
        parts.append(_rect(name, tr))
    for b in boxes:
        sx, sy, sz = (s / 2.0 for s in b.size_xyz)
        parts.append(f'  <shape type="cube" id="{b.name}">\n    <transform name="to_world">'
                     f'<scale x="{sx}" y="{sy}" z="{sz}"/>'
                     f'<translate x="{b.center_xy[0]}" y="{b.center_xy[1]}" z="{sz + box_lift}"/>'
                     f'</transform>\n    <ref id="m_{b.name}"/>\n  </shape>\n')
    parts.append("</scene>\n")
    return "".join(parts)
