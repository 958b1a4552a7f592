"""Export a (calibrated) twin as a Sionna RT scene: ``scene.xml`` + ``meshes/<object>.ply``.

Sionna RT 2.2 has no scene exporter. Every object is written as a PLY mesh (world coordinates, from
``obj.mi_mesh.write_ply``) with its own ``radio-material`` (fixed ``relative_permittivity``, ``conductivity``
[S/m], ``thickness`` [m], ``scattering_coefficient``, ``xpd_coefficient``), so that
``sionna.rt.load_scene(out_dir / "scene.xml", merge_shapes=False)`` gives the same object names and materials.

Notes: ITU materials become fixed values at the twin's current frequency (no frequency dependence); the
scattering-pattern type cannot be expressed in Sionna's XML (Sionna loads ``lambertian``).
"""
from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from rftwin.scene.load import TwinScene

#: XML float names of a Sionna ``radio-material`` and the aliases accepted in ``materials[name]``
MATERIAL_KEYS: dict[str, tuple[str, ...]] = {
    "relative_permittivity": ("eps_r", "epsilon_r", "permittivity"),
    "conductivity": ("sigma", "conductivity_s_per_m"),
    "thickness": ("thickness_m", "d"),
    "scattering_coefficient": ("scattering", "s"),
    "xpd_coefficient": ("xpd", "k_xpd"),
}
_ALIASES = {a: k for k, al in MATERIAL_KEYS.items() for a in (k, *al)}
SCENE_FILE = "scene.xml"
MESH_DIR = "meshes"


def _current_values(twin: TwinScene) -> dict[str, dict[str, float]]:
    out = {}
    for o in twin.objects:
        out[o.name] = {"relative_permittivity": float(o.relative_permittivity), "conductivity": float(o.conductivity),
                       "thickness": float(o.thickness_m), "scattering_coefficient": float(o.scattering_coefficient),
                       "xpd_coefficient": float(o.xpd_coefficient)}
    return out


def resolve_materials(twin: TwinScene, materials: Mapping[str, Mapping[str, float]] | None
                      ) -> dict[str, dict[str, float]]:
    """Per object the five radio-material values: ``materials[name]`` (keys as in :data:`MATERIAL_KEYS`, or
    aliases such as ``eps_r``, ``sigma``, ``thickness_m``) falling back to the twin's current values.

    Raises ValueError for unknown objects or keys and for invalid values (eps_r >= 1, sigma >= 0,
    thickness > 0, scattering and xpd coefficients in [0, 1], all finite)."""
    vals = _current_values(twin)
    errors = []
    for name, mat in (materials or {}).items():
        if name not in vals:
            errors.append(f"materials: no object '{name}' in the scene (objects: {', '.join(twin.names)})")
            continue
        for key, v in mat.items():
            canon = _ALIASES.get(str(key).lower())
            if canon is None:
                errors.append(f"materials['{name}']: unknown key '{key}'; expected one of "
                              f"{', '.join(MATERIAL_KEYS)} (or eps_r, sigma, thickness_m, scattering, xpd)")
                continue
            try:
                vals[name][canon] = float(v)
            except (TypeError, ValueError):
                errors.append(f"materials['{name}']['{key}']: expected a number, found {v!r}")
    for name, m in vals.items():
        bad = []
        if not all(math.isfinite(x) for x in m.values()):
            bad.append("all values must be finite")
        if m["relative_permittivity"] < 1.0:
            bad.append(f"relative_permittivity {m['relative_permittivity']:g} < 1")
        if m["conductivity"] < 0.0:
            bad.append(f"conductivity {m['conductivity']:g} S/m < 0")
        if m["thickness"] <= 0.0:
            bad.append(f"thickness {m['thickness']:g} m <= 0")
        for k in ("scattering_coefficient", "xpd_coefficient"):
            if not 0.0 <= m[k] <= 1.0:
                bad.append(f"{k} {m[k]:g} outside [0, 1]")
        if bad:
            errors.append(f"materials['{name}']: " + "; ".join(bad))
    if errors:
        raise ValueError("cannot export the scene:\n" + "\n".join(errors))
    return vals


def _file_stems(names: list[str]) -> dict[str, str]:
    """Filesystem-safe, case-insensitively unique PLY file stems for object names."""
    out, used = {}, set()
    for n in names:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", n).lstrip(".") or "object"
        cand, k = stem, 1
        while cand.lower() in used:
            k += 1
            cand = f"{stem}_{k}"
        used.add(cand.lower())
        out[n] = cand
    return out


def _shape_id(name: str) -> str:
    """Shape id whose Sionna object name is ``name`` (Sionna strips one leading ``mesh-``)."""
    return f"mesh-{name}" if name.startswith("mesh-") else name


def _material_ids(names: list[str]) -> dict[str, str]:
    """Unique material ids ``rm_<object>``; never an ITU type name, never starting with ``mat-``/``itu_``."""
    out, used = {}, set()
    for n in names:
        base = f"rm_{n}"
        cand, k = base, 1
        while cand in used:
            k += 1
            cand = f"{base}_{k}"
        used.add(cand)
        out[n] = cand
    return out


def scene_xml(twin: TwinScene, materials: Mapping[str, Mapping[str, float]] | None = None,
              mesh_files: Mapping[str, str] | None = None) -> str:
    """The Mitsuba/Sionna XML text of the export (mesh file paths relative to the XML file)."""
    vals = resolve_materials(twin, materials)
    stems = _file_stems(twin.names)
    mesh_files = dict(mesh_files or {n: f"{MESH_DIR}/{stems[n]}.ply" for n in twin.names})
    mids = _material_ids(twin.names)
    freq = float(twin.scene.frequency[0])
    source = twin.source.replace("--", "- -")
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n',
             f"<!-- exported by rftwin from '{escape(source)}'; material values at {freq:.9g} Hz -->\n",
             '<scene version="2.1.0">\n']
    for n in twin.names:
        m = vals[n]
        parts.append(f'  <bsdf type="radio-material" id={quoteattr(mids[n])}>\n')
        for k in MATERIAL_KEYS:
            parts.append(f'    <float name="{k}" value="{m[k]!r}"/>\n')
        color = _color(twin, n)
        if color is not None:
            parts.append(f'    <rgb name="color" value="{color[0]!r} {color[1]!r} {color[2]!r}"/>\n')
        parts.append("  </bsdf>\n")
    for n in twin.names:
        parts.append(f'  <shape type="ply" id={quoteattr(_shape_id(n))}>\n'
                     f'    <string name="filename" value={quoteattr(mesh_files[n])}/>\n'
                     f'    <ref id={quoteattr(mids[n])}/>\n'
                     "  </shape>\n")
    parts.append("</scene>\n")
    return "".join(parts)


def _color(twin: TwinScene, name: str) -> tuple[float, float, float] | None:
    try:
        c = tuple(float(x) for x in twin.scene.objects[name].radio_material.color)
    except Exception:  # noqa: BLE001 - colour is cosmetic
        return None
    return c if len(c) == 3 and all(0.0 <= x <= 1.0 for x in c) else None


def export_scene(twin: TwinScene, out_dir: str | os.PathLike,
                 materials: Mapping[str, Mapping[str, float]] | None = None) -> Path:
    """Write ``out_dir/scene.xml`` and ``out_dir/meshes/<object>.ply`` (world coordinates, m) for ``twin``,
    one ``radio-material`` per object with values from ``materials[name]`` (see :func:`resolve_materials`)
    falling back to the twin's current values. Returns the path of ``scene.xml``.

    Written atomically: everything is staged in a temporary folder; a new ``out_dir`` is renamed into place,
    an existing one gets its ``meshes/`` folder and ``scene.xml`` swapped by renames (other files in it are
    left alone). On error nothing in ``out_dir`` changes.
    """
    out_dir = Path(out_dir)
    names = twin.names
    xml = scene_xml(twin, materials)  # validates materials before anything is written
    stems = _file_stems(names)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a folder")
    existing = out_dir.is_dir()
    stage_parent = out_dir if existing else out_dir.resolve().parent
    stage_parent.mkdir(parents=True, exist_ok=True)
    # staged next to its destination so that the final renames stay on one file system
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export.", suffix=".tmp", dir=stage_parent))
    try:
        (stage / MESH_DIR).mkdir()
        for n in names:
            dst = stage / MESH_DIR / f"{stems[n]}.ply"
            twin.scene.objects[n].mi_mesh.write_ply(str(dst))
            if not dst.is_file() or dst.stat().st_size == 0:
                raise OSError(f"writing the mesh of object '{n}' to {dst} failed")
        (stage / SCENE_FILE).write_text(xml, encoding="utf-8")
        if existing:
            _swap_into(stage, out_dir)
        else:
            os.replace(stage, out_dir)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return out_dir / SCENE_FILE


def _swap_into(stage: Path, out_dir: Path) -> None:
    """Move the staged ``meshes/`` and ``scene.xml`` into the existing ``out_dir`` by renames; the old
    ``meshes/`` is restored if the swap fails."""
    meshes = out_dir / MESH_DIR
    old = stage / f"{MESH_DIR}.old"
    had_old = meshes.exists()
    if had_old:
        os.replace(meshes, old)
    try:
        os.replace(stage / MESH_DIR, meshes)
    except BaseException:
        if had_old:
            os.replace(old, meshes)
        raise
    os.replace(stage / SCENE_FILE, out_dir / SCENE_FILE)


__all__ = ["MATERIAL_KEYS", "export_scene", "resolve_materials", "scene_xml"]
