"""Import meshes (PLY, OBJ, STL, GLB/glTF, OFF) with a material-label file into a Sionna RT scene folder.

Every object of the input becomes one Sionna object (one calibration unit) with its own
``itu-radio-material`` (ITU-R P.2040 label, frequency dependent as in Sionna), written as
``scene.xml`` + ``meshes/<object>.ply`` with the same conventions as :mod:`rftwin.scene.export`, so
``rftwin.scene.load(out / "scene.xml")`` (or ``sionna.rt.load_scene(..., merge_shapes=False)``) opens it.

Objects: a PLY/STL/OFF file is one object named after the file stem (an ASCII STL with several ``solid``
blocks gives one object per solid); an OBJ file gives one object per ``o`` statement (per ``g`` group when
it has no ``o``); a GLB/glTF file gives one object per scene-graph node that carries a mesh, with the node's
world transform applied (instanced geometry gives one object per instance).

Label file (YAML or JSON): object name or glob pattern -> ITU material name, or a mapping with
``material`` and optional ``thickness`` [m], ``scattering_coefficient``, ``xpd_coefficient``::

    default: concrete            # optional: material of objects no pattern matches
    objects:                     # (or these entries at the top level)
      floor: {material: concrete, thickness: 0.3}
      "wall_*": brick
      window*: {material: glass, thickness: 0.01}

Exact names win over patterns; patterns are tried in file order. An object matched by nothing (and no
``default``), a pattern that matches no object, or an unknown material raises :class:`LabelFileError`
naming the file and the key.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rftwin.materials.itu import ITU_NAMES
from rftwin.scene.export import MESH_DIR, SCENE_FILE
from rftwin.scene.room import DEFAULT_THICKNESS_M

MESH_SUFFIXES = (".ply", ".obj", ".stl", ".glb", ".gltf", ".off")
LABEL_SUFFIXES = (".yaml", ".yml", ".json")
IMPORT_REPORT = "import.json"
LABELS_OUT = "labels.json"
_MAT_KEYS = {"material": ("material", "label", "type", "itu_type"), "thickness": ("thickness", "thickness_m"),
             "scattering_coefficient": ("scattering_coefficient", "scattering", "s"),
             "xpd_coefficient": ("xpd_coefficient", "xpd", "k_xpd")}
_MAT_ALIASES = {a: k for k, al in _MAT_KEYS.items() for a in al}


class LabelFileError(ValueError):
    """A problem with the label file (message starts with the file name and names the key)."""


class MeshImportError(ValueError):
    """A problem with a mesh file (message starts with the file name)."""


# ------------------------------------------------------------------------------------------------ labels
@dataclass(frozen=True)
class MaterialSpec:
    """Radio material of an imported object: ITU label, slab thickness [m], scattering and XPD coefficients."""

    material: str
    thickness: float = DEFAULT_THICKNESS_M
    scattering_coefficient: float = 0.0
    xpd_coefficient: float = 0.0


@dataclass
class LabelMap:
    """Parsed label file: ``rules`` (pattern -> spec, file order) and an optional ``default``."""

    rules: list[tuple[str, MaterialSpec]]
    default: MaterialSpec | None = None
    source: str = "labels"

    def assign(self, names: Sequence[str]) -> dict[str, MaterialSpec]:
        """Material of every object name; raises :class:`LabelFileError` for unmatched objects and patterns."""
        out: dict[str, MaterialSpec] = {}
        used: set[str] = set()
        exact = {p: s for p, s in self.rules}
        for n in names:
            if n in exact:
                out[n] = exact[n]
                used.add(n)
                continue
            for pat, spec in self.rules:
                if fnmatch.fnmatchcase(n, pat):
                    out[n] = spec
                    used.add(pat)
                    break
        problems = []
        unmatched = [n for n in names if n not in out]
        if unmatched and self.default is None:
            problems.append(f"no material for object(s) {', '.join(repr(n) for n in unmatched)}; add them (or a "
                            "glob pattern, or a 'default:' entry) to the label file")
        for n in unmatched:
            if self.default is not None:
                out[n] = self.default
        for pat, _ in self.rules:
            if pat not in used:
                problems.append(f"key '{pat}' matches no object of the mesh; objects: {', '.join(names)}")
        if problems:
            raise LabelFileError(f"{self.source}: " + f"\n{self.source}: ".join(problems))
        return out


def _normalise(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _spec(value, source: str, key: str) -> MaterialSpec:
    where = f"{source}, key '{key}'"
    if isinstance(value, str):
        value = {"material": value}
    if not isinstance(value, Mapping):
        raise LabelFileError(f"{where}: expected an ITU material name or a mapping with 'material' "
                             f"(and optional thickness, scattering_coefficient, xpd_coefficient), "
                             f"found {type(value).__name__} {value!r}")
    vals: dict[str, object] = {}
    for k, v in value.items():
        canon = _MAT_ALIASES.get(str(k).lower())
        if canon is None:
            raise LabelFileError(f"{where}: unknown field '{k}'; expected material, thickness, "
                                 "scattering_coefficient, xpd_coefficient")
        vals[canon] = v
    mat = vals.get("material")
    if not isinstance(mat, str) or not mat.strip():
        raise LabelFileError(f"{where}: missing ITU material name ('material'); expected one of: "
                             f"{', '.join(ITU_NAMES)}")
    m = _normalise(mat)
    if m not in ITU_NAMES:
        import difflib  # noqa: PLC0415

        close = difflib.get_close_matches(m, ITU_NAMES, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise LabelFileError(f"{where}: unknown material '{mat}'{hint}; expected one of: {', '.join(ITU_NAMES)}")
    nums = {}
    for k, lo, hi, default in (("thickness", 0.0, math.inf, DEFAULT_THICKNESS_M),
                               ("scattering_coefficient", 0.0, 1.0, 0.0), ("xpd_coefficient", 0.0, 1.0, 0.0)):
        v = vals.get(k, default)
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise LabelFileError(f"{where}: field '{k}' must be a number, found {v!r}") from None
        ok = math.isfinite(x) and (x > lo if k == "thickness" else lo <= x <= hi)
        if not ok:
            rng = "> 0 m" if k == "thickness" else "in [0, 1]"
            raise LabelFileError(f"{where}: field '{k}' = {x:g} must be {rng}")
        nums[k] = x
    return MaterialSpec(material=m, **nums)


def parse_labels(data, source: str = "labels") -> LabelMap:
    """A label mapping (as loaded from YAML/JSON) -> :class:`LabelMap` (see the module docstring)."""
    if not isinstance(data, Mapping) or not data:
        raise LabelFileError(f"{source}: expected a non-empty mapping of object name (or glob) -> ITU material "
                             f"name, found {type(data).__name__}")
    default = None
    if "objects" in data or "labels" in data:
        extra = set(data) - {"objects", "labels", "default"}
        if extra:
            raise LabelFileError(f"{source}: unknown top-level key(s) {sorted(extra)}; expected 'objects' "
                                 "(or 'labels') and optional 'default'")
        objs = data.get("objects", data.get("labels"))
        if not isinstance(objs, Mapping):
            raise LabelFileError(f"{source}, key 'objects': expected a mapping of object name -> material")
        if data.get("default") is not None:
            default = _spec(data["default"], source, "default")
    else:
        objs = dict(data)
        if "default" in objs:
            default = _spec(objs.pop("default"), source, "default")
    rules = [(str(k), _spec(v, source, str(k))) for k, v in objs.items()]
    if not rules and default is None:
        raise LabelFileError(f"{source}: no object entries and no 'default'")
    return LabelMap(rules=rules, default=default, source=source)


def read_label_file(path: str | os.PathLike) -> LabelMap:
    """Read and validate a YAML/JSON label file (errors name the file, line or key)."""
    p = Path(path)
    if not p.is_file():
        raise LabelFileError(f"{p}: no such label file (expected a .yaml, .yml or .json file)")
    if p.suffix.lower() not in LABEL_SUFFIXES:
        raise LabelFileError(f"{p}: unsupported label file type '{p.suffix}'; expected .yaml, .yml or .json")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelFileError(f"{p}: cannot be read as UTF-8 text: {exc}") from exc
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text) if text.strip() else None
        else:
            import yaml  # noqa: PLC0415

            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise LabelFileError(f"{p}, line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    except Exception as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise LabelFileError(f"{p}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    return parse_labels(data, str(p))


# ------------------------------------------------------------------------------------------------ meshes
@dataclass
class MeshObject:
    """One imported object: world-coordinate triangle mesh (m) and where it came from."""

    name: str
    vertices: np.ndarray  # [V, 3] float64
    faces: np.ndarray  # [F, 3] int64
    source: str


def _clean(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop non-finite vertices' faces, degenerate (zero-area) and duplicate faces, unused vertices."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        return v[:0], f
    ok = np.all(np.isfinite(v), axis=1)[f].all(axis=1)
    f = f[ok]
    tri = v[f]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    f = f[area2 > 1e-12 * max(1.0, float(np.abs(v).max()) ** 2)]
    _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    f = f[np.sort(first)]
    used, inv = np.unique(f, return_inverse=True)
    return v[used], inv.reshape(-1, 3)


def _scene_objects(scene, source: str, stem: str) -> list[MeshObject]:
    import trimesh  # noqa: PLC0415

    out = []
    nodes = list(scene.graph.nodes_geometry)
    for node in sorted(nodes):
        transform, gname = scene.graph[node]
        geom = scene.geometry[gname]
        if not isinstance(geom, trimesh.Trimesh):
            kind = type(geom).__name__
            raise MeshImportError(f"{source}: node '{node}' holds a {kind}, not a triangle mesh"
                                  + ("; import point clouds with --point-cloud" if kind == "PointCloud" else ""))
        v = trimesh.transform_points(np.asarray(geom.vertices, dtype=np.float64), transform)
        name = stem if len(nodes) == 1 and node in (gname, f"{stem}{Path(source).suffix}") else str(node)
        out.append(MeshObject(name=name, vertices=v, faces=np.asarray(geom.faces, dtype=np.int64), source=source))
    return out


def read_mesh_objects(path: str | os.PathLike) -> list[MeshObject]:
    """The objects of one mesh file, in world coordinates (see the module docstring for the splitting rule)."""
    import trimesh  # noqa: PLC0415

    p = Path(path)
    source = str(p)
    if not p.is_file():
        raise MeshImportError(f"{source}: no such mesh file")
    suffix = p.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshImportError(f"{source}: unsupported mesh type '{p.suffix}'; expected one of "
                              f"{', '.join(MESH_SUFFIXES)}")
    try:
        if suffix == ".obj":
            scene = trimesh.load_scene(source, split_objects=True, group_material=False)
            if len(scene.graph.nodes_geometry) == 1 and re.search(rb"^g\s", p.read_bytes(), re.MULTILINE):
                scene = trimesh.load_scene(source, split_objects=True, split_groups=True, group_material=False)
        else:
            scene = trimesh.load_scene(source)
    except Exception as exc:
        raise MeshImportError(f"{source}: cannot be read as a {suffix[1:].upper()} mesh: {exc}") from exc
    objs = _scene_objects(scene, source, p.stem)
    if not objs:
        raise MeshImportError(f"{source}: contains no triangle mesh")
    return objs


def ply_is_point_cloud(path: str | os.PathLike) -> bool:
    """True when ``path`` is a PLY file whose header declares vertices but no faces."""
    p = Path(path)
    if p.suffix.lower() != ".ply" or not p.is_file():
        return False
    with open(p, "rb") as fh:
        head = fh.read(65536)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return False
    counts = dict(re.findall(rb"^element\s+(\w+)\s+(\d+)", head[:end], re.MULTILINE))
    return int(counts.get(b"vertex", 0)) > 0 and int(counts.get(b"face", 0)) == 0


def _unique_names(objs: list[MeshObject]) -> None:
    seen: dict[str, int] = {}
    for o in objs:
        base = o.name.strip() or "object"
        k = seen.get(base, 0)
        seen[base] = k + 1
        o.name = base if k == 0 else f"{base}_{k + 1}"


# ------------------------------------------------------------------------------------------------ writing
@dataclass
class ImportResult:
    """What :func:`import_meshes` wrote: the XML path, per-object material and face count, the offset added."""

    scene_xml: Path
    objects: dict[str, dict] = field(default_factory=dict)
    offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _write_ply(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    """Binary little-endian PLY with float32 x, y, z and uint8-count int32 vertex indices (Mitsuba reads it)."""
    header = ("ply\nformat binary_little_endian 1.0\ncomment written by rftwin import-scene\n"
              f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
              f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n").encode("ascii")
    fr = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    fr["n"] = 3
    fr["i"] = f
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(np.ascontiguousarray(v, dtype="<f4").tobytes())
        fh.write(fr.tobytes())


def _xml(objs: list[MeshObject], specs: Mapping[str, MaterialSpec], stems: Mapping[str, str],
         comment: str) -> str:
    from xml.sax.saxutils import escape, quoteattr  # noqa: PLC0415

    from rftwin.scene.export import _material_ids, _shape_id  # noqa: PLC0415

    names = [o.name for o in objs]
    mids = _material_ids(names)
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n', f"<!-- {escape(comment.replace('--', '- -'))} -->\n",
             '<scene version="2.1.0">\n']
    for n in names:
        s = specs[n]
        parts.append(f'  <bsdf type="itu-radio-material" id={quoteattr(mids[n])}>\n'
                     f'    <string name="type" value="{s.material}"/>\n'
                     f'    <float name="thickness" value="{s.thickness!r}"/>\n')
        if s.scattering_coefficient:
            parts.append(f'    <float name="scattering_coefficient" value="{s.scattering_coefficient!r}"/>\n')
        if s.xpd_coefficient:
            parts.append(f'    <float name="xpd_coefficient" value="{s.xpd_coefficient!r}"/>\n')
        parts.append("  </bsdf>\n")
    for n in names:
        parts.append(f'  <shape type="ply" id={quoteattr(_shape_id(n))}>\n'
                     f'    <string name="filename" value={quoteattr(f"{MESH_DIR}/{stems[n]}.ply")}/>\n'
                     f'    <ref id={quoteattr(mids[n])}/>\n  </shape>\n')
    parts.append("</scene>\n")
    return "".join(parts)


def write_scene_folder(objs: list[MeshObject], specs: Mapping[str, MaterialSpec], out_dir: str | os.PathLike,
                       comment: str = "imported by rftwin", report: dict | None = None) -> Path:
    """Write ``out_dir/scene.xml``, ``meshes/*.ply``, ``labels.json`` and ``import.json`` atomically (staged in a
    temporary folder; an existing ``out_dir`` must be empty or a previous import). Returns the XML path."""
    from rftwin.scene.export import _file_stems  # noqa: PLC0415

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / IMPORT_REPORT).is_file():
        raise FileExistsError(f"{out}: folder exists, is not empty and is not an earlier import; choose another "
                              "--out")
    names = [o.name for o in objs]
    stems = _file_stems(names)
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.import.", suffix=".tmp", dir=parent))
    try:
        (stage / MESH_DIR).mkdir()
        for o in objs:
            _write_ply(stage / MESH_DIR / f"{stems[o.name]}.ply", o.vertices, o.faces)
        (stage / SCENE_FILE).write_text(_xml(objs, specs, stems, comment), encoding="utf-8")
        (stage / LABELS_OUT).write_text(json.dumps({n: specs[n].material for n in names}, indent=2) + "\n")
        (stage / IMPORT_REPORT).write_text(json.dumps(report or {}, indent=2) + "\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=".tmp", dir=parent))
            os.replace(out, old / "x")
            try:
                os.replace(stage, out)
            except BaseException:
                os.replace(old / "x", out)
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return out / SCENE_FILE


def prepare_objects(objs: list[MeshObject], scale: float = 1.0, up_axis: str = "z",
                    recenter: bool = False) -> tuple[list[MeshObject], tuple[float, float, float]]:
    """Scale (e.g. 0.001 for mm), rotate a Y-up model (glTF convention) to Sionna's Z-up, clean the meshes,
    and optionally shift so that the x-y centre of the bounding box is at 0 and its floor at z = 0 (large
    georeferenced coordinates lose precision in Sionna's float32). Returns the objects and the offset added
    [m]."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, found {scale}")
    up = up_axis.lower()
    if up not in ("z", "y"):
        raise ValueError(f"up axis must be 'z' or 'y', found '{up_axis}'")
    rot = np.eye(3) if up == "z" else np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # +90 deg about x
    out = []
    for o in objs:
        v, f = _clean(o.vertices @ rot.T * scale, o.faces)
        if len(f) == 0:
            raise MeshImportError(f"{o.source}: object '{o.name}' has no valid (finite, non-degenerate) triangle")
        out.append(MeshObject(o.name, v, f, o.source))
    offset = np.zeros(3)
    if recenter:
        lo = np.min([o.vertices.min(0) for o in out], axis=0)
        hi = np.max([o.vertices.max(0) for o in out], axis=0)
        offset = -np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
        for o in out:
            o.vertices = o.vertices + offset
    return out, (float(offset[0]), float(offset[1]), float(offset[2]))


def import_meshes(paths: Sequence[str | os.PathLike], labels: LabelMap | str | os.PathLike,
                  out_dir: str | os.PathLike, *, scale: float = 1.0, up_axis: str = "z",
                  recenter: bool = False, extra_objects: Sequence[MeshObject] = (),
                  extra_report: dict | None = None) -> ImportResult:
    """Import mesh files (and ``extra_objects``, e.g. reconstructed point clouds) with a label file into a
    Sionna scene folder. Object names that repeat across files get ``_2``, ``_3`` ... suffixes."""
    lm = labels if isinstance(labels, LabelMap) else read_label_file(labels)
    objs: list[MeshObject] = []
    for p in paths:
        objs.extend(read_mesh_objects(p))
    objs.extend(extra_objects)
    if not objs:
        raise MeshImportError("nothing to import: no mesh file and no point cloud given")
    _unique_names(objs)
    objs, offset = prepare_objects(objs, scale, up_axis, recenter)
    specs = lm.assign([o.name for o in objs])
    report = {"sources": sorted({o.source for o in objs}), "labels_file": lm.source, "scale": scale,
              "up_axis": up_axis, "offset_m": list(offset),
              "objects": {o.name: {**asdict(specs[o.name]), "source": o.source, "num_faces": len(o.faces),
                                   "bbox_min_m": o.vertices.min(0).tolist(), "bbox_max_m": o.vertices.max(0).tolist()}
                          for o in objs}}
    report.update(extra_report or {})
    xml = write_scene_folder(objs, specs, out_dir, comment=f"imported by rftwin from {', '.join(report['sources'])}",
                             report=report)
    return ImportResult(scene_xml=xml, objects=report["objects"], offset_m=offset)


__all__ = ["IMPORT_REPORT", "ImportResult", "LabelFileError", "LabelMap", "MaterialSpec", "MeshImportError",
           "MeshObject", "import_meshes", "parse_labels", "ply_is_point_cloud", "prepare_objects",
           "read_label_file", "read_mesh_objects", "write_scene_folder"]
