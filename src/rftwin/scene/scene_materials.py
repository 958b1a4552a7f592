"""Materials as an argument: per-object radio-material values for one trace or radio map, applied for the
duration of the call and restored afterwards.

A :class:`SceneMaterials` names the values Sionna should see while it traces: per object (in the order of
:attr:`rftwin.scene.load.TwinScene.objects`) relative permittivity ε_r, conductivity σ [S/m], scattering
coefficient S, cross-polarisation coefficient K_xpd and slab thickness [m]. A field left None keeps the scene's
own value of that quantity; ``None`` instead of a record means the scene's own materials throughout.

:func:`applied_materials` sets such a record (and optionally a carrier frequency) on the Sionna scene inside a
``with`` block and restores every touched value, the ITU frequency callbacks and the frequency on exit, also on
errors, so callers never mutate a scene: the tracer, the radio-map solver and the Ray workers apply the record
themselves. Values are applied the way :meth:`~rftwin.scene.load.TwinScene.set_materials` writes them (setting
ε_r or σ removes an ITU material's frequency callback), so a trace at a record equals a trace of a scene set to it.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields

import numpy as np

# order of the values in :meth:`SceneMaterials.resolve` (also the order of TwinScene.geometry_hash)
QUANTITIES = ("thickness", "eps_r", "sigma", "scattering", "xpd")
_OBJ_ATTR = {"thickness": "thickness_m", "eps_r": "relative_permittivity", "sigma": "conductivity",
             "scattering": "scattering_coefficient", "xpd": "xpd_coefficient"}
_LIMITS = {"thickness": (0.0, np.inf, "a thickness >= 0 m"), "eps_r": (1.0, np.inf, "eps_r >= 1"),
           "sigma": (0.0, np.inf, "sigma >= 0 S/m"), "scattering": (0.0, 1.0, "S in [0, 1]"),
           "xpd": (0.0, 1.0, "K_xpd in [0, 1]")}


def _vec(x) -> tuple[float, ...] | None:
    if x is None:
        return None
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return tuple(float(v) for v in np.asarray(x, dtype=np.float64).reshape(-1))


@dataclass(frozen=True)
class SceneMaterials:
    """Per-object material values [K] for one call (None: the scene's own value of that quantity)."""

    eps_r: tuple[float, ...] | None = None
    sigma: tuple[float, ...] | None = None  # S/m
    scattering: tuple[float, ...] | None = None
    xpd: tuple[float, ...] | None = None
    thickness: tuple[float, ...] | None = None  # m

    def __post_init__(self) -> None:  # any sequence / array / tensor in, plain float tuples stored
        for f in fields(self):
            object.__setattr__(self, f.name, _vec(getattr(self, f.name)))

    @classmethod
    def of(cls, eps_r=None, sigma=None, scattering=None, xpd=None, thickness=None) -> SceneMaterials | None:
        """A record of the given values, or None when none is given (the scene's own materials)."""
        if all(v is None for v in (eps_r, sigma, scattering, xpd, thickness)):
            return None
        return cls(eps_r, sigma, scattering, xpd, thickness)

    def resolve(self, twin) -> np.ndarray:
        """Effective values [K, 5] (columns :data:`QUANTITIES`) of ``twin`` (a TwinScene) under this record, as
        Sionna stores them (float32, returned as float64). Raises ValueError naming the quantity and object for a
        wrong length or a value Sionna would refuse."""
        return resolve_materials(twin, self)


def resolve_materials(twin, materials: SceneMaterials | None) -> np.ndarray:
    """:meth:`SceneMaterials.resolve`; ``materials`` None gives the scene's own values."""
    K = len(twin.objects)
    out = np.array([[getattr(o, _OBJ_ATTR[q]) for q in QUANTITIES] for o in twin.objects],
                   dtype=np.float64).reshape(K, len(QUANTITIES))
    if materials is None:
        return out
    for j, q in enumerate(QUANTITIES):
        v = getattr(materials, q)
        if v is None:
            continue
        if len(v) != K:
            raise ValueError(f"materials: {q} has {len(v)} values, expected one per scene object ({K})")
        a = np.asarray(v, dtype=np.float64)
        lo, hi, what = _LIMITS[q]
        bad = ~np.isfinite(a) | (a < lo) | (a > hi)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"materials: {q} of object '{twin.objects[i].name}' is {float(a[i])!r}, expected {what}")
        out[:, j] = a.astype(np.float32).astype(np.float64)
    return out


def _state(rm) -> tuple:
    return (rm.frequency_update_callback, rm.relative_permittivity, rm.conductivity, rm.thickness,
            rm.scattering_coefficient, rm.xpd_coefficient)


def _restore(rm, st: tuple) -> None:
    cb, eps, sig, d, s, x = st
    rm.frequency_update_callback = cb  # recomputes ITU values at the (restored) scene frequency
    rm.relative_permittivity, rm.conductivity, rm.thickness = eps, sig, d
    rm.scattering_coefficient, rm.xpd_coefficient = s, x


@contextmanager
def applied_materials(twin, materials: SceneMaterials | None = None, frequency_hz: float | None = None
                      ) -> Iterator[None]:
    """Inside the block the Sionna scene of ``twin`` has carrier ``frequency_hz`` (if given) and the values of
    ``materials`` (if given; checked before anything is set); on exit every value, callback and the frequency
    are restored and the object table refreshed. The values are read back by object name, so blocks that
    re-point objects to other material instances inside (:func:`rftwin.trace.shared_materials.share_materials`)
    may be nested."""
    if materials is None and frequency_hz is None:
        yield
        return
    sc = twin.scene
    objs = sc.objects
    f0 = sc.frequency
    saved = {o.name: _state(objs[o.name].radio_material) for o in twin.objects}
    try:
        if frequency_hz is not None:
            sc.frequency = float(frequency_hz)
            twin._refresh()  # noqa: SLF001 - same package: the object table follows the scene
        if materials is not None:
            values = resolve_materials(twin, materials)
            given = {q: getattr(materials, q) is not None for q in QUANTITIES}
            cols = {q: values[:, j] for j, q in enumerate(QUANTITIES)}
            for i, o in enumerate(twin.objects):
                rm = objs[o.name].radio_material
                if given["eps_r"] or given["sigma"]:
                    rm.frequency_update_callback = None
                if given["eps_r"]:
                    rm.relative_permittivity = float(cols["eps_r"][i])
                if given["sigma"]:
                    rm.conductivity = float(cols["sigma"][i])
                if given["scattering"]:
                    rm.scattering_coefficient = float(cols["scattering"][i])
                if given["xpd"]:
                    rm.xpd_coefficient = float(cols["xpd"][i])
                if given["thickness"]:
                    rm.thickness = float(cols["thickness"][i])
            twin._refresh()  # noqa: SLF001
        yield
    finally:
        if frequency_hz is not None:
            sc.frequency = f0
        for name, st in saved.items():
            _restore(objs[name].radio_material, st)
        twin._refresh()  # noqa: SLF001


def as_scene_materials(values: Sequence | np.ndarray | SceneMaterials | None) -> SceneMaterials | None:
    """A record from :meth:`SceneMaterials.resolve`-style values [K, 5] (or a record / None passed through)."""
    if values is None or isinstance(values, SceneMaterials):
        return values
    v = np.asarray(values, dtype=np.float64)
    return SceneMaterials(**{q: v[:, j] for j, q in enumerate(QUANTITIES)})


__all__ = ["QUANTITIES", "SceneMaterials", "applied_materials", "as_scene_materials", "resolve_materials"]
