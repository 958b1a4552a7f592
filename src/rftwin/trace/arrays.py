"""Put antenna arrays on a traced PathSet (Sionna RT's ``PlanarArray`` and antenna patterns, no re-trace).

The shoot-and-bounce geometry does not depend on the antennas, so a PathSet traced with one isotropic element
serves any array: the per-pattern field vectors ``f_tx``/``f_rx`` are re-evaluated with Sionna's pattern
functions in the direction of every path (rotated by the device orientation), and the element offsets of Sionna's
``PlanarArray`` (rotated the same way) are stored in ``meta["tx_array"]``/``meta["rx_array"]`` for the synthetic
per-element phases of :mod:`rftwin.physics.arrays`.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import torch

from rftwin.pathset import PathSet
from rftwin.physics.arrays import ArraySpec
from rftwin.physics.slab import SPEED_OF_LIGHT
from rftwin.runtime import sionna_rt
from rftwin.trace.kernel_cache import float_array


def planar_array(spec: ArraySpec):
    """Sionna's ``PlanarArray`` of ``spec``."""
    rt = sionna_rt()
    return rt.PlanarArray(num_rows=spec.num_rows, num_cols=spec.num_cols, vertical_spacing=spec.vertical_spacing,
                          horizontal_spacing=spec.horizontal_spacing, pattern=spec.pattern,
                          polarization=spec.polarization)


def array_geometry(spec: ArraySpec, frequency_hz: float) -> dict:
    """Element positions of ``spec``: ``normalized`` [M, 3] (wavelengths, unrotated, Sionna's element order) and
    ``positions_m`` [M, 3] (metres at the spacing frequency, rotated by the orientation)."""
    import mitsuba as mi  # noqa: PLC0415

    f = spec.spacing_frequency_hz or frequency_hz
    arr = planar_array(spec)
    npos = arr.normalized_positions
    normalized = np.stack([np.array(npos.x), np.array(npos.y), np.array(npos.z)], 1).astype(np.float64)
    rot = arr.rotate(SPEED_OF_LIGHT / f, mi.Point3f(*(float(x) for x in spec.orientation)))
    pos = np.stack([np.array(rot.x), np.array(rot.y), np.array(rot.z)], 1).astype(np.float64)
    return {"normalized": normalized, "positions_m": pos, "spacing_frequency_hz": float(f)}


def field_vectors(spec: ArraySpec, k: np.ndarray, direction: str) -> np.ndarray:
    """Complex field vectors [N, P, 2] of the array's P patterns in Sionna's world implicit basis of ``k``
    [N, 3] (departure direction with ``direction="out"``, arrival direction pointing back with ``"in"``)."""
    import mitsuba as mi  # noqa: PLC0415
    from sionna.rt.antenna_pattern import antenna_pattern_to_world_implicit  # noqa: PLC0415
    from sionna.rt.utils import rotation_matrix  # noqa: PLC0415

    n = k.shape[0]
    if n == 0:
        return np.zeros((0, spec.num_patterns, 2), dtype=np.complex128)
    rot = rotation_matrix(mi.Point3f(*(float_array(np.full(n, float(x))) for x in spec.orientation)))
    kv = mi.Vector3f(*(float_array(k[:, i]) for i in range(3)))
    out = []
    for p in planar_array(spec).antenna_pattern.patterns:
        f = antenna_pattern_to_world_implicit(p, rot, kv, direction=direction)
        f = np.stack([np.array(f.x), np.array(f.y), np.array(f.z), np.array(f.w)], -1).astype(np.float64)
        out.append(f[:, :2] + 1j * f[:, 2:])
    return np.stack(out, 1)


def _record(spec: ArraySpec, frequency_hz: float) -> dict:
    geo = array_geometry(spec, frequency_hz)
    rec = asdict(spec)
    rec["orientation"] = [float(x) for x in spec.orientation]
    rec.update(normalized_positions=geo["normalized"].tolist(), positions_m=geo["positions_m"].tolist(),
               spacing_frequency_hz=geo["spacing_frequency_hz"])
    return rec


def with_arrays(ps: PathSet, tx: ArraySpec | None, rx: ArraySpec | None, frequency_hz: float) -> PathSet:
    """The PathSet with arrays ``tx``/``rx`` (None keeps that side as traced): field vectors of their patterns and
    element offsets (spacings in wavelengths at ``frequency_hz`` unless the spec fixes a spacing frequency).

    ``a_ref`` (Sionna's coefficients at trace time, for the traced antennas) is set to NaN when an array is put
    on, so that nothing compares against coefficients of other antennas.
    """
    if tx is None and rx is None:
        return ps
    kw: dict = {}
    meta = dict(ps.meta)
    if tx is not None:
        kw["f_tx"] = torch.from_numpy(field_vectors(tx, ps.k_tx.numpy(), "out")).to(ps.f_tx.dtype)
        meta["tx_array"] = _record(tx, frequency_hz)
    if rx is not None:
        kw["f_rx"] = torch.from_numpy(field_vectors(rx, ps.k_rx.numpy(), "in")).to(ps.f_rx.dtype)
        meta["rx_array"] = _record(rx, frequency_hz)
    R = kw.get("f_rx", ps.f_rx).shape[1]
    T = kw.get("f_tx", ps.f_tx).shape[1]
    kw["a_ref"] = torch.full((ps.num_paths, R, T), complex("nan"), dtype=ps.a_ref.dtype)
    meta["a_ref_valid"] = False
    return replace(ps, meta=meta, **kw)


__all__ = ["array_geometry", "field_vectors", "planar_array", "with_arrays"]
