"""Proxy meshes of moving things (a person as a box or cylinder, or any mesh with a label) in a twin's Sionna scene.

The proxy becomes one more scene object (appended to the twin's object table, so the indices of the existing
objects and their calibrated materials stay valid) whose material is either an ITU label or ``body``: a
skin-like dielectric (eps_r = 16, sigma = 25 S/m, roughly human skin at 28 GHz after Gabriel et al. 1996; a
0.2 m slab of it transmits nothing). Positions are the centre of the proxy's axis-aligned bounding box (Sionna's
``SceneObject.position``).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rftwin.materials.itu import normalise_label
from rftwin.runtime import sionna_rt
from rftwin.scene.load import SceneObjectInfo, TwinScene

BODY = {"relative_permittivity": 16.0, "conductivity": 25.0, "thickness": 0.2}
MESH_SUFFIXES = (".ply", ".obj", ".stl", ".glb", ".gltf", ".off")


class ProxyError(ValueError):
    """Bad proxy mesh or label (the message names the mesh / label)."""


@dataclass(frozen=True)
class ProxySpec:
    """``mesh``: ``box:WxDxH`` (m), ``cylinder:RxH`` (radius, height in m) or a mesh file; ``label``: ``body`` or
    an ITU material name; ``name`` of the scene object."""

    mesh: str = "box:0.4x0.3x1.8"
    label: str = "body"
    name: str = "proxy"


def _numbers(text: str, n: int, what: str) -> list[float]:
    parts = text.lower().split("x")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) != n or not all(np.isfinite(vals)) or min(vals, default=0) <= 0:
        raise ProxyError(f"mesh '{what}': expected {n} positive sizes in metres separated by 'x'")
    return vals


def proxy_trimesh(spec: ProxySpec):
    """The proxy as a ``trimesh.Trimesh`` centred on its bounding box."""
    import trimesh  # noqa: PLC0415

    m = spec.mesh.strip()
    if m.lower().startswith("box:"):
        w, d, h = _numbers(m[4:], 3, m)
        mesh = trimesh.creation.box(extents=[w, d, h])
    elif m.lower().startswith("cylinder:"):
        r, h = _numbers(m[9:], 2, m)
        mesh = trimesh.creation.cylinder(radius=r, height=h, sections=24)
    else:
        path = Path(m)
        if not path.is_file():
            raise ProxyError(f"mesh '{m}': no such file (expected a mesh file, box:WxDxH or cylinder:RxH)")
        if path.suffix.lower() not in MESH_SUFFIXES:
            raise ProxyError(f"mesh '{m}': unsupported type '{path.suffix}'; expected one of "
                             f"{', '.join(MESH_SUFFIXES)}")
        try:
            mesh = trimesh.load(path, force="mesh", process=True)
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad file
            raise ProxyError(f"mesh '{m}': cannot be loaded ({type(exc).__name__}: {exc})") from None
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise ProxyError(f"mesh '{m}': holds no triangles")
        if not np.isfinite(mesh.vertices).all():
            raise ProxyError(f"mesh '{m}': has non-finite vertex coordinates")
    mesh = mesh.copy()
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    return mesh


def _material(spec: ProxySpec, frequency_hz: float):
    rt = sionna_rt()
    try:
        lab = normalise_label(spec.label, ("body",))
    except ValueError as exc:
        raise ProxyError(str(exc)) from None
    mat_name = f"{spec.name}-material"
    if lab == "body":
        return rt.RadioMaterial(name=mat_name, **BODY), None, BODY
    try:
        mat = rt.ITURadioMaterial(name=mat_name, itu_type=lab, thickness=BODY["thickness"])
    except Exception as exc:  # noqa: BLE001
        raise ProxyError(f"label '{spec.label}': {exc}") from None
    return mat, lab, None


def insert_proxy(twin: TwinScene, spec: ProxySpec, position: np.ndarray) -> None:
    """Add the proxy to the twin's scene at ``position`` [3] (bounding-box centre, m) and to its object table."""
    rt = sionna_rt()
    if spec.name in twin.scene.objects:
        raise ProxyError(f"the scene already has an object named '{spec.name}'")
    mesh = proxy_trimesh(spec)
    mat, label, _ = _material(spec, float(twin.scene.frequency[0]))
    with tempfile.TemporaryDirectory(prefix="rftwin-proxy-") as tmp:  # the mesh is read into memory
        ply = Path(tmp) / f"{spec.name}.ply"
        mesh.export(ply)
        try:
            obj = rt.SceneObject(fname=str(ply), name=spec.name, radio_material=mat)
            twin.scene.edit(add=obj)
        except ValueError as exc:
            raise ProxyError(f"mesh '{spec.mesh}' / label '{spec.label}': {exc}") from None
    twin.scene.objects[spec.name].position = [float(x) for x in position]
    rm = twin.scene.objects[spec.name].radio_material
    twin.objects.append(SceneObjectInfo(
        name=spec.name, label=label, thickness_m=float(rm.thickness[0]),
        relative_permittivity=float(rm.relative_permittivity[0]), conductivity=float(rm.conductivity[0]),
        watertight=bool(mesh.is_watertight)))


def remove_proxy(twin: TwinScene, name: str) -> None:
    """Take the proxy ``name`` out of the twin's scene and object table (the inverse of :func:`insert_proxy`)."""
    twin.scene.edit(remove=[name])
    twin.objects = [o for o in twin.objects if o.name != name]


def move_proxy(twin: TwinScene, name: str, position: np.ndarray) -> None:
    """Move the proxy's bounding-box centre to ``position`` [3] (m)."""
    twin.scene.objects[name].position = [float(x) for x in position]


def proxy_half_size(spec: ProxySpec) -> np.ndarray:
    """Half the bounding-box extent [3] (m) of the proxy."""
    lo, hi = proxy_trimesh(spec).bounds
    return (hi - lo) / 2


def proxy_triangles(spec: ProxySpec) -> np.ndarray:
    """Triangles [M, 3, 3] (m) of the proxy centred on its bounding box (add the position to place it)."""
    mesh = proxy_trimesh(spec)
    return np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)]
