"""Saving and loading trained fields: a folder with ``field.pt`` (torch state dict), ``field.json`` (kind,
constructor arguments, object names, scene reference, training summary) and optionally ``scene.xml``.

Both files are written atomically (temporary file + rename). ``field.json`` example::

    {"format": 2, "kind": "hashgrid",
     "config": {"kind": "hashgrid", "num_objects": 5, "readout": {"kind": "power_law", ...}, "levels": 8, ...},
     "bbox": [[-4.05, -3.05, -0.05], [4.05, 3.05, 3.05]], "thickness": [0.1, ...],
     "object_names": ["floor", "wall_east", "wall_north", "wall_south", "wall_west"],
     "scene": "scene.xml", "extra": {"train": {"rmse_db": 0.12, ...}}}
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from rftwin.fields.base import MaterialField
from rftwin.fields.fourier import FourierField
from rftwin.fields.hashgrid import HashGridField
from rftwin.io import atomic_path, write_json, write_text

FIELD_STATE = "field.pt"
FIELD_CONFIG = "field.json"
SCENE_XML = "scene.xml"
FORMAT = 2  # 2: power-law read-outs store log_a / c_gain (format-1 files used log_a=False, c_gain=1)
KINDS: dict[str, type[MaterialField]] = {"fourier": FourierField, "hashgrid": HashGridField}


def save_field(folder: str | Path, fld: MaterialField, object_names: list[str], scene: str | None = None,
               scene_xml: str | None = None, extra: dict | None = None) -> Path:
    """Write ``fld`` to ``folder``. ``scene``: a scene reference (built-in name, or XML path stored relative to
    ``folder``);
    ``scene_xml``: XML text written to ``folder/scene.xml`` and referenced instead (programmatic scenes)."""
    folder = Path(folder)
    if len(object_names) != fld.num_objects:
        raise ValueError(f"{len(object_names)} object names for a field over {fld.num_objects} objects")
    folder.mkdir(parents=True, exist_ok=True)
    if scene_xml is not None:
        write_text(folder / SCENE_XML, scene_xml)
        scene = SCENE_XML
    elif scene is not None and str(scene).endswith(".xml") and Path(scene).is_file():
        # stored relative to the field folder: load_field resolves it against the file that names it
        scene = os.path.relpath(Path(scene).resolve(), folder.resolve())
    with atomic_path(folder / FIELD_STATE) as tmp:
        torch.save(fld.state_dict(), tmp)
    doc = {"format": FORMAT, "kind": fld.kind, "config": fld.config(),
           "bbox": [fld.bbox_lo.tolist(), fld.bbox_hi.tolist()], "thickness": fld.thickness.tolist(),
           "object_names": list(object_names), "scene": scene, "extra": extra or {}}
    write_json(folder / FIELD_CONFIG, doc)
    return folder


def is_field_folder(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / FIELD_CONFIG).is_file()


def load_field(folder: str | Path) -> tuple[MaterialField, dict]:
    """(field, its ``field.json`` document); ``doc["scene_path"]`` resolves a scene saved in the folder."""
    folder = Path(folder)
    cfg_path, state_path = folder / FIELD_CONFIG, folder / FIELD_STATE
    if not cfg_path.is_file() or not state_path.is_file():
        raise FileNotFoundError(f"{folder}: not a saved field (needs {FIELD_CONFIG} and {FIELD_STATE})")
    try:
        doc = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path}: invalid JSON: {exc}") from exc
    for key in ("kind", "config", "bbox", "thickness", "object_names"):
        if key not in doc:
            raise ValueError(f"{cfg_path}: missing field '{key}'")
    if doc["kind"] not in KINDS:
        raise ValueError(f"{cfg_path}: unknown field kind '{doc['kind']}', expected one of {sorted(KINDS)}")
    cfg = dict(doc["config"])
    ro = cfg.get("readout")
    if int(doc.get("format", 1)) < 2 and isinstance(ro, dict) and ro.get("kind") == "power_law":
        cfg["readout"] = {"log_a": False, "c_gain": 1.0, **ro}  # the read-out those files were trained with
    for key in ("kind", "num_objects"):
        cfg.pop(key, None)
    dtype = getattr(torch, cfg.pop("dtype", "float64"))
    K = len(doc["thickness"])
    zeros = [1.0] * K
    fld = KINDS[doc["kind"]]((doc["bbox"][0], doc["bbox"][1]), doc["thickness"], [2.0] * K, zeros, dtype=dtype,
                             **cfg)
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    try:
        fld.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{state_path}: does not match {cfg_path}: {exc}") from exc
    if doc.get("scene") == SCENE_XML:
        doc["scene_path"] = str(folder / SCENE_XML)
    elif isinstance(doc.get("scene"), str) and doc["scene"].endswith(".xml") and not Path(doc["scene"]).is_absolute():
        doc["scene_path"] = str(folder / doc["scene"])  # relative paths resolve against the file naming them
    else:
        doc["scene_path"] = doc.get("scene")
    return fld, doc
