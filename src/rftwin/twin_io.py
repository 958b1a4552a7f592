"""Calibrated twin folders: ``materials.json`` + ``scene.xml`` (+ meshes), and per-link material values."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rftwin.materials.itu import power_law_eval
from rftwin.physics.engine import MaterialValues
from rftwin.scene.load import TwinScene, load
from rftwin.twin_schema import read_materials_document, validate_materials_document

MATERIALS_FILE = "materials.json"
SCENE_FILE = "scene.xml"


def materials_document(twin: TwinScene, eps: np.ndarray, sigma: np.ndarray, frequency_hz: float,
                       power_law: np.ndarray | None = None, eps_std: np.ndarray | None = None,
                       sigma_std: np.ndarray | None = None, labels: list[str | None] | None = None,
                       extra: dict | None = None, scattering_std: np.ndarray | None = None,
                       xpd_std: np.ndarray | None = None, scattering: np.ndarray | None = None,
                       xpd: np.ndarray | None = None) -> dict:
    """The ``materials.json`` document: per object its label, eps_r, sigma [S/m], thickness [m], S and K_xpd
    (``scattering`` / ``xpd`` [K] when given, else the scene's), stds and power laws where given."""
    objs = {}
    for i, o in enumerate(twin.objects):
        s_i = o.scattering_coefficient if scattering is None else scattering[i]
        x_i = o.xpd_coefficient if xpd is None else xpd[i]
        rec = {"label": (labels[i] if labels else o.label), "relative_permittivity": float(eps[i]),
               "conductivity": float(sigma[i]), "thickness": float(o.thickness_m),
               "scattering_coefficient": float(s_i), "xpd_coefficient": float(x_i)}
        if eps_std is not None:
            rec["relative_permittivity_std"] = float(eps_std[i])
        if sigma_std is not None:
            rec["conductivity_std"] = float(sigma_std[i])
        if scattering_std is not None:
            rec["scattering_coefficient_std"] = float(scattering_std[i])
        if xpd_std is not None:
            rec["xpd_coefficient_std"] = float(xpd_std[i])
        if power_law is not None:
            rec.update(a=float(power_law[i, 0]), b=float(power_law[i, 1]), c=float(power_law[i, 2]),
                       d=float(power_law[i, 3]))
        objs[o.name] = rec
    doc = {"reference_frequency_hz": float(frequency_hz), "objects": objs}
    if extra:
        doc.update(extra)
    return doc


def load_twin(ref: str | Path, frequency_hz: float = 3.5e9) -> tuple[TwinScene, dict | None]:
    """A scene reference (XML / built-in name) or a calibration output folder -> (twin, materials document)."""
    p = Path(ref)
    if p.is_dir():
        xml, mj = p / SCENE_FILE, p / MATERIALS_FILE
        if not xml.is_file():
            raise FileNotFoundError(f"{p}: not a calibrated twin folder (no {SCENE_FILE})")
        if mj.exists() and not mj.is_file():
            raise FileNotFoundError(f"{mj}: not a regular file")
        doc = read_materials_document(mj) if mj.is_file() else None
        twin = load(xml, frequency_hz)
        if doc is not None:
            validate_materials_document(doc, twin.names, mj)  # schema + physics, before any use
            for o in twin.objects:
                o.label = doc["objects"][o.name].get("label")
        return twin, doc
    return load(ref, frequency_hz), None


def material_values(twin: TwinScene, doc: dict | None, frequencies_hz: np.ndarray,
                    dtype=torch.float64) -> MaterialValues:
    """Per-object values [1, F, K] at the given frequencies: power law (a, b, c, d) of the document when present,
    else its constant values, else the scene's radio-material values. The scattering coefficient S and K_xpd
    ([1, 1, K], document first, then scene) are included when S > 0 somewhere."""
    F, K = len(frequencies_hz), len(twin.objects)
    eps, sig = np.empty((F, K)), np.empty((F, K))
    scat, xpd = np.zeros(K), np.zeros(K)
    fh = np.asarray(frequencies_hz, dtype=np.float64)
    for k, o in enumerate(twin.objects):
        rec = (doc or {}).get("objects", {}).get(o.name)
        scat[k] = (rec or {}).get("scattering_coefficient", o.scattering_coefficient)
        xpd[k] = (rec or {}).get("xpd_coefficient", o.xpd_coefficient)
        if rec and all(x in rec for x in "abcd"):
            e, s = power_law_eval(rec["a"], rec["b"], rec["c"], rec["d"], fh)
            eps[:, k], sig[:, k] = np.maximum(e, 1.0), s
        elif rec:
            eps[:, k], sig[:, k] = rec["relative_permittivity"], rec["conductivity"]
        else:
            eps[:, k], sig[:, k] = o.relative_permittivity, o.conductivity
    th = torch.tensor([o.thickness_m for o in twin.objects], dtype=dtype).reshape(1, 1, K)
    diffuse = bool(np.any(scat > 0))

    def per_object(x):
        return torch.as_tensor(x, dtype=dtype).reshape(1, 1, K) if diffuse else None

    return MaterialValues(torch.as_tensor(eps, dtype=dtype)[None], torch.as_tensor(sig, dtype=dtype)[None], th,
                          scattering=per_object(scat), xpd=per_object(xpd))


def unique_links(tx_pos: np.ndarray, rx_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (tx, rx) pairs: (tx [L,3], rx [L,3], row -> link index [M])."""
    both = np.concatenate([tx_pos, rx_pos], axis=1)
    u, inv = np.unique(both, axis=0, return_inverse=True)
    return u[:, :3], u[:, 3:], inv.reshape(-1)
