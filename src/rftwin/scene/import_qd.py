"""Import scenarios of the NIST Q-D realization software (github.com/wigig-tools/qd-realization).

Q-D describes geometry as AMF-style CAD XML (``<amf unit="millimeter">``: ``<object>`` with a name, ``<mesh>``
vertices and ``<volume materialid=...>`` triangles; ``<material id>`` with a name that is a row of its material
library CSV), node positions as ``NodePosition<i>.dat`` (one ``x, y, z`` row per time step, m), and writes its
channels as ``qdOutput.json`` (one JSON object per Tx/Rx pair and line: ``Delay`` [s], ``Gain`` [dB], ``Phase``
[rad], ``AODEL``/``AODAZ``/``AOAEL``/``AOAAZ`` [deg; EL measured from +z, AZ from +x], one list per time step)
and ``Mpc.json`` (the deterministic rays' vertices per Tx/Rx pair and reflection order). This module reads all of
them (plain XML / JSON / CSV parsing; nothing read can run code) and turns the geometry into an rftwin scene
folder (one object per Q-D object volume, every object with the same prior ITU label, since Q-D's library holds
reflection losses, not permittivities).

Errors name the file and the object / line and what was expected.
"""
from __future__ import annotations

import csv
import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: AMF length units -> metres
UNITS = {"millimeter": 1e-3, "centimeter": 1e-2, "meter": 1.0, "inch": 0.0254, "feet": 0.3048, "micron": 1e-6}


class QdFormatError(ValueError):
    """A Q-D file that does not have the expected structure (message names file, element and expectation)."""


@dataclass
class QdObject:
    """One Q-D object volume: name, vertices [V, 3] (m), triangles [F, 3] (0-based), Q-D material name."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    material: str


@dataclass
class QdGeometry:
    source: Path
    objects: list[QdObject] = field(default_factory=list)

    @property
    def materials(self) -> list[str]:
        return sorted({o.material for o in self.objects})


def _float(el, tag: str, where: str) -> float:
    node = el.find(tag)
    if node is None or node.text is None:
        raise QdFormatError(f"{where}: missing <{tag}>")
    try:
        v = float(node.text)
    except ValueError:
        raise QdFormatError(f"{where}: <{tag}> is '{node.text.strip()}', expected a number") from None
    if not math.isfinite(v):
        raise QdFormatError(f"{where}: <{tag}> is not finite")
    return v


def _name(el) -> str | None:
    for m in el.findall("metadata"):
        if m.get("type") == "name" and m.text and m.text.strip():
            return m.text.strip()
    return None


def read_amf(path: str | os.PathLike) -> QdGeometry:
    """Read Q-D's CAD XML (AMF) into objects in metres. Volumes of one object with different materials become
    separate objects ``<name>_<material>``."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise QdFormatError(f"{path}: cannot be read as XML: {exc}") from None
    if root.tag != "amf":
        raise QdFormatError(f"{path}: root element is <{root.tag}>, expected <amf>")
    unit = root.get("unit", "millimeter").lower()
    if unit not in UNITS:
        raise QdFormatError(f"{path}: unit '{unit}' unknown; expected one of {', '.join(UNITS)}")
    scale = UNITS[unit]
    materials = {}
    for m in root.findall("material"):
        mid = m.get("id")
        if mid is None:
            raise QdFormatError(f"{path}: a <material> has no id")
        materials[mid] = _name(m) or f"material{mid}"
    geo = QdGeometry(path)
    seen: dict[str, int] = {}
    for k, o in enumerate(root.findall("object")):
        oname = _name(o) or f"object{o.get('id', k)}"
        where = f"{path}: object '{oname}'"
        verts = []
        for j, v in enumerate(o.findall("mesh/vertices/vertex")):
            c = v.find("coordinates")
            if c is None:
                raise QdFormatError(f"{where}: vertex {j} has no <coordinates>")
            verts.append([_float(c, a, f"{where}, vertex {j}") for a in ("x", "y", "z")])
        if not verts:
            raise QdFormatError(f"{where}: no vertices (expected <mesh><vertices><vertex>)")
        V = np.asarray(verts, np.float64) * scale
        vols = o.findall("mesh/volume")
        if not vols:
            raise QdFormatError(f"{where}: no <volume> with triangles")
        for vol in vols:
            mid = vol.get("materialid")
            if mid not in materials:
                raise QdFormatError(f"{where}: volume materialid '{mid}' is not a <material> of the file "
                                    f"(ids: {', '.join(sorted(materials)) or 'none'})")
            tris = []
            for t in vol.findall("triangle"):
                try:
                    tri = [int(t.find(a).text) for a in ("v1", "v2", "v3")]
                except (AttributeError, TypeError, ValueError):
                    raise QdFormatError(f"{where}: a <triangle> lacks integer <v1>, <v2>, <v3>") from None
                tris.append(tri)
            F = np.asarray(tris, np.int64).reshape(-1, 3)
            if len(F) == 0:
                raise QdFormatError(f"{where}: a volume has no triangles")
            if F.min() < 0 or F.max() >= len(V):
                raise QdFormatError(f"{where}: triangle vertex index {int(F.max())} outside 0..{len(V) - 1}")
            name = oname if len(vols) == 1 else f"{oname}_{materials[mid]}"
            if name in seen:  # Q-D files may repeat names: keep every object, number the repeats
                seen[name] += 1
                name = f"{name}_{seen[name]}"
            else:
                seen[name] = 0
            geo.objects.append(QdObject(name, V, F, materials[mid]))
    if not geo.objects:
        raise QdFormatError(f"{path}: no <object> found")
    return geo


def read_material_library(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Q-D material library CSV -> {reflector name: {column: value}} (``mu_RL`` = mean reflection loss, dB)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "Reflector" not in rows[0] or "mu_RL" not in rows[0]:
        raise QdFormatError(f"{path}: expected a CSV header with 'Reflector' and 'mu_RL'")
    out = {}
    for i, r in enumerate(rows, start=2):
        vals = {}
        for k, v in r.items():
            if k == "Reflector":
                continue
            try:
                vals[k] = float(v)
            except (TypeError, ValueError):
                raise QdFormatError(f"{path}: line {i}, column '{k}': '{v}' is not a number") from None
        out[r["Reflector"].strip()] = vals
    return out


def read_node_positions(path: str | os.PathLike) -> np.ndarray:
    """``NodePosition<i>.dat`` -> [T, 3] positions (m), one row per time step (comma and/or blank separated)."""
    path = Path(path)
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p for p in line.replace(",", " ").split() if p]
        try:
            xyz = [float(p) for p in parts]
        except ValueError:
            raise QdFormatError(f"{path}: line {i}: '{line.strip()}' is not three numbers") from None
        if len(xyz) != 3 or not all(map(math.isfinite, xyz)):
            raise QdFormatError(f"{path}: line {i}: expected three finite numbers x, y, z, found {len(xyz)}")
        rows.append(xyz)
    if not rows:
        raise QdFormatError(f"{path}: no positions")
    return np.asarray(rows, np.float64)


QD_OUTPUT_KEYS = ("Delay", "Gain", "Phase", "AODEL", "AODAZ", "AOAEL", "AOAAZ")


@dataclass
class QdChannel:
    """Q-D rays of one Tx/Rx pair at one time step: arrays [P] (delay s, gain dB, phase rad, angles deg)."""

    tx: int
    rx: int
    time_step: int
    delay_s: np.ndarray
    gain_db: np.ndarray
    phase_rad: np.ndarray
    aod_el_deg: np.ndarray
    aod_az_deg: np.ndarray
    aoa_el_deg: np.ndarray
    aoa_az_deg: np.ndarray


def _json_lines(path: Path) -> list[dict]:
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise QdFormatError(f"{path}: line {i}: not a JSON object ({exc.msg})") from None
    return out


def read_qd_output(path: str | os.PathLike) -> list[QdChannel]:
    """``qdOutput.json`` (one JSON object per line and Tx/Rx pair) -> one :class:`QdChannel` per time step."""
    path = Path(path)
    out = []
    for i, d in enumerate(_json_lines(path), start=1):
        miss = [k for k in ("TX", "RX", *QD_OUTPUT_KEYS) if k not in d]
        if miss:
            raise QdFormatError(f"{path}: line {i}: missing keys {', '.join(miss)}")
        steps = len(d["Delay"])
        for t in range(steps):
            try:
                arr = {k: np.asarray(d[k][t], np.float64).reshape(-1) for k in QD_OUTPUT_KEYS}
            except (TypeError, ValueError, IndexError):
                raise QdFormatError(f"{path}: line {i}, time step {t}: arrays of numbers expected") from None
            n = {len(v) for v in arr.values()}
            if len(n) != 1:
                raise QdFormatError(f"{path}: line {i}, time step {t}: arrays of different lengths")
            out.append(QdChannel(int(d["TX"]), int(d["RX"]), t, arr["Delay"], arr["Gain"], arr["Phase"],
                                 arr["AODEL"], arr["AODAZ"], arr["AOAEL"], arr["AOAAZ"]))
    return out


@dataclass
class QdRay:
    """A deterministic Q-D ray: Tx/Rx node, time step, reflection order and its vertices [order + 2, 3] from
    the transmitter to the receiver."""

    tx: int
    rx: int
    time_step: int
    order: int
    vertices: np.ndarray

    @property
    def length_m(self) -> float:
        return float(np.linalg.norm(np.diff(self.vertices, axis=0), axis=1).sum())


def read_mpc_json(path: str | os.PathLike, tx_positions: dict[int, np.ndarray] | None = None) -> list[QdRay]:
    """``Mpc.json`` (Q-D visualizer output): per line TX, RX, Rorder and per time step either one ray
    (order 0: [x_a, y_a, z_a, x_b, y_b, z_b]) or a list of rays (flat vertex lists). Q-D writes the vertices of
    order >= 1 from the receiver to the transmitter (an optional ``TimeSteps`` list, written by rftwin's subset
    files, gives the time step of each MPC list); with ``tx_positions`` ({node: [T, 3]}) the end nearest to
    the transmitter's position is put first, otherwise the order-0 convention (Tx first) and the reversed one
    for reflections are assumed. Rays that are all ``null`` (Q-D's padding of shorter time steps) are skipped."""
    path = Path(path)
    out = []
    for i, d in enumerate(_json_lines(path), start=1):
        miss = [k for k in ("TX", "RX", "Rorder", "MPC") if k not in d]
        if miss:
            raise QdFormatError(f"{path}: line {i}: missing keys {', '.join(miss)}")
        tx, rx, order = int(d["TX"]), int(d["RX"]), int(d["Rorder"])
        steps = d.get("TimeSteps", list(range(len(d["MPC"]))))  # a subset file names its time steps
        if len(steps) != len(d["MPC"]):
            raise QdFormatError(f"{path}: line {i}: {len(steps)} TimeSteps for {len(d['MPC'])} MPC lists")
        for t, step in zip(steps, d["MPC"]):
            rays = [step] if order == 0 else step
            for ray in rays:
                v = np.asarray([np.nan if x is None else x for x in np.ravel(np.asarray(ray, dtype=object))],
                               np.float64)
                if v.size and np.isnan(v).all():  # Q-D pads the ray lists of a time step with nulls
                    continue
                if v.size != 3 * (order + 2):
                    raise QdFormatError(f"{path}: line {i}, time step {t}: a ray of order {order} needs "
                                        f"{3 * (order + 2)} numbers, found {v.size}")
                if not np.isfinite(v).all():
                    raise QdFormatError(f"{path}: line {i}, time step {t}: a ray of order {order} has missing or "
                                        "non-finite coordinates")
                v = v.reshape(order + 2, 3)
                if tx_positions is not None and tx in tx_positions:
                    p = tx_positions[tx][min(t, len(tx_positions[tx]) - 1)]
                    if np.linalg.norm(v[-1] - p) < np.linalg.norm(v[0] - p):
                        v = v[::-1]
                elif order > 0:
                    v = v[::-1]
                out.append(QdRay(tx, rx, t, order, v.copy()))
    return out


def import_qd_scene(amf: str | os.PathLike, out_dir: str | os.PathLike, label: str = "concrete",
                    thickness_m: float = 0.1) -> Path:
    """Write an rftwin scene folder (``scene.xml`` + PLY meshes) from Q-D's CAD XML: one object per Q-D object
    volume, each with the ITU material ``label`` of ``thickness_m`` as its prior (Q-D's library has reflection
    losses, not permittivities: calibrate them). ``import.json`` records each object's Q-D material. Returns
    the XML path."""
    from rftwin.scene.import_mesh import MaterialSpec, MeshObject, prepare_objects, write_scene_folder  # noqa

    geo = read_amf(amf)
    objs = [MeshObject(o.name, o.vertices, o.faces, str(geo.source)) for o in geo.objects]
    objs, _ = prepare_objects(objs)
    specs = {o.name: MaterialSpec(label, thickness_m) for o in objs}
    report = {"source": str(geo.source), "format": "qd-realization AMF",
              "objects": {o.name: {"qd_material": o.material, "faces": int(len(o.faces))} for o in geo.objects}}
    return write_scene_folder(objs, specs, out_dir, comment=f"imported from NIST Q-D CAD file {geo.source.name}",
                              report=report)


def qd_material_of_objects(scene_dir: str | os.PathLike) -> dict[str, str]:
    """{rftwin object name: Q-D material name} from the ``import.json`` of an imported scene folder."""
    rep = json.loads((Path(scene_dir) / "import.json").read_text(encoding="utf-8"))
    return {k: v["qd_material"] for k, v in rep["objects"].items()}
