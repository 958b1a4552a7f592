"""Validation of a twin's ``materials.json``: schema and physics, every problem named by file, object and key.

A twin folder is user-editable; a negative permittivity or a NaN conductivity would otherwise flow into every
prediction (wrong gains, or empty output columns with exit code 0).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from rftwin.materials.itu import ITU_NAMES

# key -> (lowest allowed, highest allowed, lowest inclusive); None = unbounded
_VALUE_KEYS = {
    "relative_permittivity": (1.0, None, True),
    "conductivity": (0.0, None, True),
    "thickness": (0.0, None, False),
    "scattering_coefficient": (0.0, 1.0, True),
    "xpd_coefficient": (0.0, 1.0, True),
    "relative_permittivity_std": (0.0, None, True),
    "conductivity_std": (0.0, None, True),
    "scattering_coefficient_std": (0.0, None, True),
    "xpd_coefficient_std": (0.0, None, True),
    "a": (0.0, None, False),  # eps_r = a f^b (f in GHz)
    "b": (None, None, True),
    "c": (0.0, None, True),  # sigma = c f^d
    "d": (None, None, True),
}
_REQUIRED = ("relative_permittivity", "conductivity")
_NULLABLE = {k for k in _VALUE_KEYS if k.endswith("_std")}  # "not computed"
_UNITS = {"relative_permittivity": "", "conductivity": " S/m", "thickness": " m"}


class TwinFileError(ValueError):
    """An invalid twin file; the message lists every problem (file, object, key, what was expected)."""


def read_materials_document(path: Path) -> dict:
    """Parse ``materials.json`` (UTF-8 JSON object) or raise :class:`TwinFileError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TwinFileError(f"{path}: cannot be read as UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TwinFileError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TwinFileError(f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise TwinFileError(f"{path}: expected a JSON object with 'reference_frequency_hz' and 'objects', found "
                            f"{type(doc).__name__}")
    return doc


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def validate_materials_document(doc: dict, object_names: list[str], source: str | Path) -> None:
    """Check ``doc`` against the scene's objects; raise :class:`TwinFileError` listing every problem."""
    problems: list[str] = []
    f = _number(doc.get("reference_frequency_hz"))
    if f is None or not math.isfinite(f) or f <= 0:
        problems.append(f"key 'reference_frequency_hz': expected a positive frequency in Hz, found "
                        f"{doc.get('reference_frequency_hz')!r}")
    objs = doc.get("objects")
    if not isinstance(objs, dict):
        raise TwinFileError("\n".join([f"{source}: {p}" for p in problems]
                                      + [f"{source}: key 'objects': expected a mapping object name -> material "
                                         f"record, found {type(objs).__name__}"]))
    for name in sorted(set(objs) - set(object_names)):
        problems.append(f"object '{name}': not in the scene (scene objects: {', '.join(object_names)})")
    for name in object_names:
        if name not in objs:
            problems.append(f"object '{name}': missing (every scene object needs a record)")
            continue
        rec = objs[name]
        if not isinstance(rec, dict):
            problems.append(f"object '{name}': expected a mapping of material values, found {type(rec).__name__}")
            continue
        for key in _REQUIRED:
            if key not in rec:
                problems.append(f"object '{name}', key '{key}': missing")
        unknown = sorted(set(rec) - set(_VALUE_KEYS) - {"label"})
        for key in unknown:
            problems.append(f"object '{name}', key '{key}': unknown key (expected one of label, "
                            f"{', '.join(_VALUE_KEYS)})")
        label = rec.get("label")
        if label is not None and (not isinstance(label, str) or label not in ITU_NAMES):
            problems.append(f"object '{name}', key 'label': {label!r} is not an ITU material name (expected null "
                            f"or one of {', '.join(ITU_NAMES)})")
        for key, (lo, hi, lo_incl) in _VALUE_KEYS.items():
            if key not in rec or (rec[key] is None and key in _NULLABLE):
                continue
            v = _number(rec[key])
            where = f"object '{name}', key '{key}'"
            if v is None or not math.isfinite(v):
                problems.append(f"{where}: expected a finite number, found {rec[key]!r}")
                continue
            low = lo is not None and (v < lo if lo_incl else v <= lo)
            if low or (hi is not None and v > hi):
                rng = f"{'[' if lo_incl else '('}{'-inf' if lo is None else f'{lo:g}'}, " \
                      f"{'inf' if hi is None else f'{hi:g}'}]"
                problems.append(f"{where}: {v:g}{_UNITS.get(key, '')} is outside {rng}")
        pl = [k for k in "abcd" if k in rec]
        if pl and len(pl) != 4:
            problems.append(f"object '{name}': power-law keys {', '.join(pl)} without "
                            f"{', '.join(k for k in 'abcd' if k not in rec)}; give all of a, b, c, d or none")
    if problems:
        raise TwinFileError("\n".join(f"{source}: {p}" for p in problems))


__all__ = ["TwinFileError", "read_materials_document", "validate_materials_document"]
