"""Load Sionna scenes (XML files, built-in names, the benchmark room) into a :class:`TwinScene`."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rftwin.runtime import sionna_rt
from rftwin.scene.room import room_xml
from rftwin.scene.xml_paths import resolved_scene_xml

BUILTIN_ROOM = "room"


@dataclass
class SceneObjectInfo:
    """One separately calibratable scene object and its prior material."""

    name: str
    label: str | None  # ITU type of its radio material, None for a custom radio-material
    thickness_m: float
    relative_permittivity: float  # at the scene frequency when loaded
    conductivity: float  # S/m
    scattering_coefficient: float = 0.0
    xpd_coefficient: float = 0.0
    watertight: bool = False


@dataclass
class TwinScene:
    """A Sionna scene plus rftwin's object table (objects sorted by name; index = calibration unit)."""

    scene: object  # sionna.rt.Scene
    source: str
    objects: list[SceneObjectInfo] = field(default_factory=list)

    @classmethod
    def load(cls, scene: str | os.PathLike, frequency_hz: float = 3.5e9) -> TwinScene:
        """A Sionna XML scene or built-in scene name (:func:`load`)."""
        return load(scene, frequency_hz)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]

    def index_of(self, name: str) -> int:
        for i, o in enumerate(self.objects):
            if o.name == name:
                return i
        raise KeyError(f"scene has no object '{name}'; objects: {', '.join(self.names)}")

    def id_to_index(self) -> dict[int, int]:
        """Sionna object id (shape pointer as uint32) -> rftwin object index."""
        objs = self.scene.objects
        return {int(objs[o.name].object_id): i for i, o in enumerate(self.objects)}

    def meshes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per object (vertices [V,3] float64 world coordinates, faces [F,3] int64)."""
        out = []
        for o in self.objects:
            m = self.scene.objects[o.name].mi_mesh
            v = np.array(m.vertex_positions_buffer(), dtype=np.float64).reshape(-1, 3)
            f = np.array(m.faces_buffer(), dtype=np.int64).reshape(-1, 3)
            out.append((v, f))
        return out

    def bbox(self) -> tuple[np.ndarray, np.ndarray]:
        bb = self.scene.mi_scene.bbox()
        return np.array(bb.min, dtype=np.float64).ravel(), np.array(bb.max, dtype=np.float64).ravel()

    def geometry_hash(self, materials: np.ndarray | None = None) -> str:
        """Content hash of the geometry and trace-time materials (what a trace depends on). ``materials``
        [K, 5]: the values a trace will use (:func:`rftwin.scene.scene_materials.resolve_materials`; default the
        scene's own)."""
        if materials is None:
            from rftwin.scene.scene_materials import resolve_materials  # noqa: PLC0415

            materials = resolve_materials(self, None)
        h = hashlib.sha256()
        for o, (v, f), m in zip(self.objects, self.meshes(), np.asarray(materials, dtype=np.float64)):
            h.update(o.name.encode())
            h.update(np.ascontiguousarray(v, dtype=np.float32).tobytes())
            h.update(np.ascontiguousarray(f, dtype=np.int64).tobytes())
            h.update(np.ascontiguousarray(m).tobytes())
        return h.hexdigest()

    def set_frequency(self, frequency_hz: float) -> None:
        self.scene.frequency = float(frequency_hz)
        self._refresh()

    def set_materials(self, eps_r=None, sigma=None, scattering=None, xpd=None) -> None:
        """Write per-object values (sequences in object order) into the Sionna radio materials.

        ITU frequency callbacks are removed from the touched materials so the values stick.
        """
        for i, o in enumerate(self.objects):
            rm = self.scene.objects[o.name].radio_material
            if eps_r is not None or sigma is not None:
                rm.frequency_update_callback = None
            if eps_r is not None:
                rm.relative_permittivity = float(eps_r[i])
            if sigma is not None:
                rm.conductivity = float(sigma[i])
            if scattering is not None:
                rm.scattering_coefficient = float(scattering[i])
            if xpd is not None:
                rm.xpd_coefficient = float(xpd[i])
        self._refresh()

    def _refresh(self) -> None:
        for o in self.objects:
            rm = self.scene.objects[o.name].radio_material
            o.relative_permittivity = float(rm.relative_permittivity[0])
            o.conductivity = float(rm.conductivity[0])
            o.scattering_coefficient = float(rm.scattering_coefficient[0])
            o.xpd_coefficient = float(rm.xpd_coefficient[0])
            o.thickness_m = float(rm.thickness[0])


def builtin_scene_names() -> list[str]:
    """``room``, ``indoor`` and the scenes Sionna RT ships (``<name>/<name>.xml`` in its package), read from the
    package's file list without importing Sionna (so the command line can check a scene name in well under 1 s)."""
    import importlib.metadata as md  # noqa: PLC0415

    files = md.files("sionna-rt") or []
    parts = [tuple(str(f).replace("\\", "/").split("/")) for f in files]
    names = {p[-2] for p in parts if len(p) >= 4 and p[-4:-2] == ("rt", "scenes") and p[-1] == f"{p[-2]}.xml"}
    return [BUILTIN_ROOM, "indoor"] + sorted(names)


def object_table(scene) -> list[SceneObjectInfo]:
    """One :class:`SceneObjectInfo` per object of the Sionna ``scene`` (name, radio material, ...)."""
    rt = sionna_rt()
    out = []
    for name in sorted(scene.objects):
        obj = scene.objects[name]
        rm = obj.radio_material
        label = rm.itu_type if isinstance(rm, rt.ITURadioMaterial) else None
        m = obj.mi_mesh
        watertight = False
        try:
            f = np.array(m.faces_buffer(), dtype=np.int64).reshape(-1, 3)
            # closed manifold: every undirected edge shared by exactly two faces
            e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
            _, counts = np.unique(e, axis=0, return_counts=True)
            v = np.array(m.vertex_positions_buffer(), dtype=np.float64).reshape(-1, 3)
            # positions may be duplicated per face (flat shading): weld by position before the edge test
            _, inv = np.unique(np.round(v, 6), axis=0, return_inverse=True)
            fw = inv.reshape(-1)[f]
            ew = np.sort(np.concatenate([fw[:, [0, 1]], fw[:, [1, 2]], fw[:, [2, 0]]]), axis=1)
            _, cw = np.unique(ew, axis=0, return_counts=True)
            watertight = bool(len(cw) > 0 and np.all(cw == 2)) or bool(len(counts) > 0 and np.all(counts == 2))
        except Exception:  # noqa: BLE001 - a mesh without buffers is simply not watertight
            watertight = False
        out.append(SceneObjectInfo(
            name=name, label=label, thickness_m=float(rm.thickness[0]),
            relative_permittivity=float(rm.relative_permittivity[0]), conductivity=float(rm.conductivity[0]),
            scattering_coefficient=float(rm.scattering_coefficient[0]), xpd_coefficient=float(rm.xpd_coefficient[0]),
            watertight=watertight))
    return out


def _short(exc: Exception) -> str:
    """Mitsuba's message without its source-location prefix, cut to one short line."""
    msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    if "]" in msg[:80] and msg.startswith("["):
        msg = msg.split("]", 1)[1].strip()
    # Mitsuba quotes offending tokens of the file it parsed: never echo a file's content
    msg = re.sub(r'(token|keyword|value|line)\s+"[^"]*"', r"\1 (not shown)", msg)
    return msg[:300]


def load(scene: str | os.PathLike, frequency_hz: float = 3.5e9, allow_external: bool | None = None) -> TwinScene:
    """Load a scene: ``"room"`` (seed 004), ``"indoor"`` (rooms separated by walls with doors), a Sionna built-in
    name (e.g. ``simple_street_canyon``) or an XML file path.

    Shapes are never merged (``merge_shapes=False``) so every object stays its own calibration unit. Files named
    by an XML resolve against its folder and must lie inside it unless ``allow_external`` (default: the
    ``RFTWIN_ALLOW_EXTERNAL_FILES`` environment variable); see :mod:`rftwin.scene.xml_paths`.
    """
    ref = str(scene)
    if ref == "indoor":
        from rftwin.scene.indoor import indoor  # noqa: PLC0415  (indoor builds on this module)

        return indoor(frequency_hz)
    rt = sionna_rt()
    if ref == BUILTIN_ROOM:
        sc = rt.load_scene_from_string(room_xml(), merge_shapes=False)
    elif not ref.endswith(".xml") and hasattr(rt.scene, ref) and isinstance(getattr(rt.scene, ref), str):
        # built-in XMLs too: their meshes come from the package folder, never the working folder
        sc = rt.load_scene_from_string(resolved_scene_xml(getattr(rt.scene, ref)), merge_shapes=False)
    else:
        p = Path(ref)
        if not p.is_file():
            raise FileNotFoundError(
                f"scene '{ref}': no such file, and not a built-in scene name ({', '.join(builtin_scene_names())})")
        # files named by the XML resolve against its folder (never the working folder) and stay inside it
        text = resolved_scene_xml(p, allow_external)
        try:
            sc = rt.load_scene_from_string(text, merge_shapes=False)
        except Exception as exc:  # Mitsuba's parse errors are long; keep the file name in front
            raise ValueError(f"{p}: cannot be loaded as a Sionna scene: {_short(exc)}") from None
    sc.frequency = float(frequency_hz)
    if not sc.objects:
        raise ValueError(f"scene '{ref}' has no objects")
    from rftwin.scene.materials import own_materials  # noqa: PLC0415

    own_materials(sc)  # per-object values must not overwrite each other through a shared instance
    return TwinScene(scene=sc, source=ref, objects=object_table(sc))


def room(frequency_hz: float = 3.5e9) -> TwinScene:
    """The seed-004 benchmark room (9 objects, each with its own ITU material)."""
    return load(BUILTIN_ROOM, frequency_hz)
