"""Sionna radio-material instances: a plain-value snapshot of one and a fresh instance from such a snapshot, and
giving every object its own instance.

A Sionna scene may let several objects share one radio-material instance (an XML ``bsdf`` used by many shapes;
Sionna's ``munich`` has 5 for 2 367 objects). rftwin calibrates and writes materials per object, so at load every
object gets an instance of its own with the same values (:func:`own_materials`); tracing shares instances of equal
values again for speed (:mod:`rftwin.trace.shared_materials`).
"""
from __future__ import annotations

from rftwin.runtime import sionna_rt

PATTERN_ATTRS = ("alpha_r", "alpha_i", "lambda_")


def scalar(x) -> float:
    try:
        return float(x[0])
    except (TypeError, IndexError):
        return float(x)


def snapshot(rm) -> dict:
    """Plain values of the radio material ``rm`` (no reference to it is kept)."""
    sp = rm.scattering_pattern
    return dict(cls=type(rm).__name__, itu=getattr(rm, "itu_type", None), thickness=scalar(rm.thickness),
                relative_permittivity=scalar(rm.relative_permittivity), conductivity=scalar(rm.conductivity),
                scattering_coefficient=scalar(rm.scattering_coefficient), xpd_coefficient=scalar(rm.xpd_coefficient),
                color=tuple(float(c) for c in rm.color), pattern=type(sp),
                callback=rm.frequency_update_callback is not None,
                pattern_kw={a: getattr(sp, a) for a in PATTERN_ATTRS if hasattr(sp, a)})


def from_snapshot(name: str, v: dict):
    """A new radio material called ``name`` with the values of :func:`snapshot` ``v``."""
    rt = sionna_rt()
    kw = dict(thickness=v["thickness"], scattering_coefficient=v["scattering_coefficient"],
              xpd_coefficient=v["xpd_coefficient"], color=v["color"])
    if v["cls"] == "ITURadioMaterial":
        new = rt.ITURadioMaterial(name=name, itu_type=v["itu"], **kw)
        if not v["callback"]:  # values set by hand (TwinScene.set_materials removes the ITU callback)
            new.frequency_update_callback = None
            new.relative_permittivity = v["relative_permittivity"]
            new.conductivity = v["conductivity"]
    else:
        new = rt.RadioMaterial(name=name, relative_permittivity=v["relative_permittivity"],
                               conductivity=v["conductivity"], **kw)
    new.scattering_pattern = v["pattern"](**v["pattern_kw"])
    return new


def own_materials(scene) -> int:
    """Give every object of the Sionna ``scene`` that shares its radio material with an object before it (by
    name) an instance of its own with the same values; returns how many instances were added. Materials of other
    classes than RadioMaterial / ITURadioMaterial are left shared (their values cannot be copied faithfully)."""
    rt = sionna_rt()
    seen: set[str] = set()
    added = 0
    for name in sorted(scene.objects):
        obj = scene.objects[name]
        rm = obj.radio_material
        if rm.name not in seen or type(rm) not in (rt.RadioMaterial, rt.ITURadioMaterial):
            seen.add(rm.name)
            continue
        new = from_snapshot(f"{rm.name}@{name}", snapshot(rm))
        scene.add(new)
        obj.radio_material = new
        added += 1
    return added


__all__ = ["from_snapshot", "own_materials", "scalar", "snapshot"]
