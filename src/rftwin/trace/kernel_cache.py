"""Dr.Jit kernels that can be reused: what goes into a Sionna solver call as kernel inputs, not as code.

Dr.Jit compiles every distinct kernel with LLVM and keeps it in memory and on disk (``~/.drjit``), keyed by its
code. Values that enter the code change the key, and then each solver call compiles anew; on an empty kernel cache
that took longer than the tracing itself (docs/scale.md, "Kernels compiled per call"):

* literals: Sionna 2.2 scatters every device position into the path endpoints as a literal and keeps the material
  values (eps_r, sigma, thickness, S, K_xpd) as literals: :func:`array_endpoints`, :func:`opaque_materials`;
* the alignment of numpy memory, which Dr.Jit reads in place: :func:`aligned`, :func:`float_array`;
* sizes: kernels specialised to a call's path count remain (Sionna's own tensor strides).

:func:`release_kernels` and :func:`release_allocations` free the in-memory caches (the kernels stay on disk).
"""
from __future__ import annotations

import numpy as np

MATERIAL_SLOTS = ("_eta_r", "_sigma", "_d", "_s", "_kx")  # Sionna 2.2 RadioMaterial: eps_r, sigma, thickness, S, K_xpd


def aligned(x: np.ndarray, align: int = 64) -> np.ndarray:
    """A contiguous copy of ``x`` starting at a multiple of ``align`` bytes: Dr.Jit reads numpy memory in place and
    compiles the pointer's alignment into the kernel, so arrays at other offsets would compile other kernels."""
    x = np.ascontiguousarray(x)
    buf = np.empty(x.size * x.itemsize + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    out = buf[off:off + x.size * x.itemsize].view(x.dtype).reshape(x.shape)
    out[...] = x
    return out


def float_array(x: np.ndarray):
    """``mi.Float`` of ``x`` (any shape, flattened) as float32 from 64-byte aligned memory."""
    import mitsuba as mi  # noqa: PLC0415

    return mi.Float(aligned(np.asarray(x, dtype=np.float32).reshape(-1)))


def array_endpoints(scene, positions: dict[str, np.ndarray]):
    """``Scene._endpoints`` of Sionna 2.2 (positions, orientations, antenna offsets and velocities of the path
    sources or targets) built from the arrays of the device positions [m] by name, for devices with zero
    orientation and velocity and a synthetic array (as :func:`rftwin.trace.tracer.solve_paths` adds them); other
    calls go to Sionna's own.

    Sionna scatters every device's position into the endpoint arrays one by one, as literals: kernels whose code
    holds the positions, compiled anew for every call with other receivers (2 048 receivers: 8-12 s of LLVM per
    call, benchmarks/bench_kernel_cache.py). Built from arrays, the code depends on the device count only; the
    values are the same float32 numbers."""
    import drjit as dr  # noqa: PLC0415
    import mitsuba as mi  # noqa: PLC0415

    own = scene._endpoints  # noqa: SLF001

    def endpoints(radio_devices, array, synthetic_array, return_velocities):
        devs = list(radio_devices)
        if not synthetic_array or array is None or not devs or any(d.name not in positions for d in devs):
            return own(devs, array, synthetic_array, return_velocities)
        p = np.stack([positions[d.name] for d in devs])
        pos = mi.Point3f(*(float_array(p[:, k]) for k in range(3)))
        offsets = array.rotate(scene.wavelength, mi.Point3f(0.0, 0.0, 0.0))  # [array size], as at zero orientation
        idx = dr.arange(mi.UInt, len(devs) * array.array_size) % array.array_size
        rel = mi.Point3f(*(dr.gather(mi.Float, c, idx) for c in (offsets.x, offsets.y, offsets.z)))
        vel = dr.zeros(mi.Vector3f, len(devs)) if return_velocities else None  # the devices do not move
        return pos, dr.zeros(mi.Point3f, len(devs)), rel, vel

    return endpoints


def opaque_materials(scene) -> None:
    """Make the values of every radio material of ``scene`` kernel inputs instead of literals (eps_r, sigma,
    thickness, S, K_xpd): otherwise each trace at new material values, e.g. every re-trace of a calibration,
    compiled the solver's kernels again (the demo's 96 links, 10^5 rays: 1.4-1.6 s of LLVM per re-trace on an
    empty kernel cache, benchmarks/bench_kernel_cache.py)."""
    import drjit as dr  # noqa: PLC0415

    for rm in scene.radio_materials.values():
        vals = [getattr(rm, k) for k in MATERIAL_SLOTS if hasattr(rm, k)]
        if vals:
            dr.make_opaque(*vals)


#: (tx, rx) pairs traced between releases of Dr.Jit's in-memory kernel cache (~10 kB of kernels per pair)
KERNEL_RELEASE_PAIRS = 2048
_pairs_since_release = 0


def release_kernels(pairs: int) -> None:
    """After a solver call of ``pairs`` (tx, rx) pairs: free Dr.Jit's in-memory kernel cache once
    :data:`KERNEL_RELEASE_PAIRS` pairs were traced since the last release. Kernels specialised to each call
    accumulated there (a 10^5-link trace grew by 1 GiB); they stay on disk, where a later call finds the ones it
    needs. Small calls keep their kernels in memory a while: reloading them for every call of a few links cost
    more than the call."""
    global _pairs_since_release
    import drjit as dr  # noqa: PLC0415

    _pairs_since_release += int(pairs)
    if _pairs_since_release >= KERNEL_RELEASE_PAIRS:
        dr.flush_kernel_cache()
        _pairs_since_release = 0


def release_allocations() -> None:
    """Give the buffers Dr.Jit keeps for reuse back to the system. The calls of one trace reuse them (Dr.Jit rounds
    sizes up to powers of two, so calls of the same receiver count fit each other's buffers): flushed after every
    call, each call had the kernel zero its pages anew (the demo: 6.2 M page faults, a quarter of its CPU time).
    Flushed when a call of another size comes and when a trace ends, so the next trace is sized from the resident
    memory without them (rftwin.trace.budget)."""
    import drjit as dr  # noqa: PLC0415

    dr.flush_malloc_cache()


__all__ = ["aligned", "array_endpoints", "float_array", "opaque_materials", "release_allocations",
           "release_kernels"]
