"""Objects with equal radio-material values share one Sionna material instance while they are traced.

Sionna evaluates an object's radio material through a Dr.Jit virtual call over *every* material instance alive
in the process, so the cost of a solver call grows with the number of material instances, not with the number of
distinct values: a calibrated twin exported with one ``radio-material`` per object (2 367 in ``munich``) traced a
256-receiver shard ~4x slower than the same scene with its 5 ITU materials (docs/scale.md). Objects whose
materials have the same class and values (ε_r, σ, thickness, S, K_xpd, scattering pattern, no frequency
callback) get the same instance; the others are dropped from the scene so Dr.Jit no longer dispatches over them.
The values every interaction sees are unchanged, so the traced paths and coefficients are identical.

:func:`share_materials` is used as a context manager around tracing: on exit every object that was re-pointed
gets a fresh material of its own with its original values again, so per-object edits
(:meth:`rftwin.scene.load.TwinScene.set_materials`) keep touching one object only.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rftwin.runtime import sionna_rt
from rftwin.scene.load import TwinScene
from rftwin.scene.materials import PATTERN_ATTRS, from_snapshot, scalar
from rftwin.scene.materials import snapshot as material_snapshot


def material_key(rm) -> tuple | None:
    """Everything a trace reads from a Sionna radio material ``rm``; None for materials that must stay their own
    (other classes than ``RadioMaterial``/``ITURadioMaterial``, frequency callbacks other than ITU's)."""
    rt = sionna_rt()
    if type(rm) not in (rt.RadioMaterial, rt.ITURadioMaterial):
        return None
    itu = getattr(rm, "itu_type", None) if isinstance(rm, rt.ITURadioMaterial) else None
    if rm.frequency_update_callback is not None and itu is None:
        return None
    sp = rm.scattering_pattern
    pattern = (type(sp).__name__,) + tuple(scalar(getattr(sp, a)) for a in PATTERN_ATTRS if hasattr(sp, a))
    return (type(rm).__name__, itu, rm.frequency_update_callback is not None, scalar(rm.relative_permittivity),
            scalar(rm.conductivity), scalar(rm.thickness), scalar(rm.scattering_coefficient),
            scalar(rm.xpd_coefficient), pattern)


@contextmanager
def share_materials(twin: TwinScene) -> Iterator[int]:
    """Inside the block, objects of ``twin`` with equal material values share one instance (yields the number of
    material instances dropped); on exit each re-pointed object gets its own material with its values again."""
    scene = twin.scene
    objs = scene.objects
    first: dict[tuple, object] = {}
    moved: list[tuple[str, str]] = []  # (object, name of the material it had)
    for o in twin.objects:
        rm = objs[o.name].radio_material
        key = material_key(rm)
        if key is None:
            continue
        keep = first.setdefault(key, rm)
        if keep is not rm:
            moved.append((o.name, rm.name))
    if not moved:
        yield 0
        return
    old = {}
    for name, mname in moved:
        old.setdefault(mname, objs[name].radio_material)
        objs[name].radio_material = first[material_key(old[mname])]
    used = {objs[o.name].radio_material.name for o in twin.objects}
    unused = [m for m in old if m not in used]
    snapshot_ = {m: old[m] for m in unused}
    registry = getattr(scene, "_radio_materials", None)
    if isinstance(registry, dict):  # known unused: Scene.remove checks each against every object (quadratic)
        for m in unused:
            registry.pop(m)._detach_from_scene()  # noqa: SLF001 - what Scene.remove does for a material
    else:
        scene.remove(unused)
    # the Mitsuba scene loaded from XML lists every declared material among its children: rebuild it (the shapes
    # carry over as the same objects, so object ids and geometry are unchanged) so the dropped ones are freed
    scene.edit()
    old.clear()
    # keep only plain values of the dropped materials: a live reference would keep them in Dr.Jit's registry
    values = {m: material_snapshot(rm) for m, rm in snapshot_.items()}
    snapshot_.clear()
    del rm, keep
    try:
        yield len(unused)
    finally:
        for name, mname in moved:
            if scene.get(mname) is None:
                scene.add(from_snapshot(mname, values[mname]))
            objs[name].radio_material = scene.get(mname)


__all__ = ["material_key", "share_materials"]
