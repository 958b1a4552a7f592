"""Where an RIS sits and what it sees: poses (centre, front normal, in-plane axes) and visibility of the segments
Tx -> element and element -> Rx, tested against the twin's geometry with Mitsuba's ray casting (the scene that
Sionna RT traces). The RIS itself is not part of the scene: mount it a few millimetres in front of a wall."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rftwin.ris.physics import RisSpec, element_positions

RAY_CHUNK = 1 << 20  # rays per Mitsuba call


@dataclass(frozen=True)
class RisPose:
    """Centre [3] m, unit front normal [3], in-plane unit axes u (columns) and v (rows) [3]; u x v = normal."""

    center: tuple[float, float, float]
    normal: tuple[float, float, float]
    u: tuple[float, float, float]
    v: tuple[float, float, float]

    @classmethod
    def from_normal(cls, center, normal) -> RisPose:
        """Pose facing ``normal``; u is horizontal (z x normal), v = normal x u (up for a vertical RIS); a
        horizontal RIS (normal along z) gets u = x."""
        n = np.asarray(normal, dtype=np.float64)
        norm = float(np.linalg.norm(n))
        if not norm > 0 or not np.all(np.isfinite(n)):
            raise ValueError(f"RIS normal must be a finite non-zero vector, got {tuple(n)}")
        n = n / norm
        u = np.cross([0.0, 0.0, 1.0], n)
        u = np.array([1.0, 0.0, 0.0]) if np.linalg.norm(u) < 1e-9 else u / np.linalg.norm(u)
        v = np.cross(n, u)
        return cls(tuple(map(float, center)), tuple(n), tuple(u), tuple(v))

    @classmethod
    def from_yaw(cls, center, yaw_deg: float) -> RisPose:
        """Vertical RIS whose normal points to azimuth ``yaw_deg`` (from +x towards +y)."""
        y = math.radians(yaw_deg)
        return cls.from_normal(center, (math.cos(y), math.sin(y), 0.0))

    def tensors(self, dtype=torch.float64) -> tuple[torch.Tensor, ...]:
        return tuple(torch.tensor(x, dtype=dtype) for x in (self.center, self.normal, self.u, self.v))


def stack_poses(poses: list[RisPose], spec: RisSpec, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """(element positions [C, E, 3] m, normals [C, 3]) of the poses."""
    c, n, u, v = (torch.stack(t) for t in zip(*(p.tensors(dtype) for p in poses)))
    return element_positions(c, u, v, spec), n


def segments_free(twin, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool [N]: the segments a[i] -> b[i] ([N, 3] m) meet no surface of the twin (end points excluded by a
    relative margin of 1e-4); segments shorter than 1 mm count as free."""
    import drjit as dr  # noqa: PLC0415
    import mitsuba as mi  # noqa: PLC0415

    a = np.asarray(a, dtype=np.float64).reshape(-1, 3)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 3)
    out = np.ones(len(a), dtype=bool)
    for s in range(0, len(a), RAY_CHUNK):
        p, q = a[s:s + RAY_CHUNK], b[s:s + RAY_CHUNK]
        d = np.linalg.norm(q - p, axis=1)
        ok = d > 1e-3
        if not ok.any():
            continue
        u = (q[ok] - p[ok]) / d[ok, None]
        o = mi.Point3f(*(mi.Float(np.ascontiguousarray(p[ok][:, k], dtype=np.float32)) for k in range(3)))
        w = mi.Vector3f(*(mi.Float(np.ascontiguousarray(u[:, k], dtype=np.float32)) for k in range(3)))
        ray = mi.Ray3f(o, w)
        ray.maxt = mi.Float((d[ok] * (1.0 - 1e-4)).astype(np.float32))
        blocked = np.array(twin.scene.mi_scene.ray_test(ray), dtype=bool).reshape(-1)
        dr.eval()
        idx = np.nonzero(ok)[0] + s
        out[idx] = ~blocked
    return out


def ris_visibility(twin, tx: np.ndarray, rx: np.ndarray, elements: torch.Tensor) -> torch.Tensor:
    """bool [C, P, E]: Tx -> element e of RIS c and element -> receiver p both free (tx [3]; rx [P, 3];
    elements [C, E, 3])."""
    el = elements.detach().cpu().numpy()
    C, E, _ = el.shape
    rx = np.asarray(rx, dtype=np.float64).reshape(-1, 3)
    P = len(rx)
    flat = el.reshape(-1, 3)
    vt = segments_free(twin, np.broadcast_to(np.asarray(tx, dtype=np.float64), flat.shape), flat).reshape(C, 1, E)
    a = np.broadcast_to(flat.reshape(C, 1, E, 3), (C, P, E, 3)).reshape(-1, 3)
    b = np.broadcast_to(rx[None, :, None, :], (C, P, E, 3)).reshape(-1, 3)
    vr = segments_free(twin, a, b).reshape(C, P, E)
    return torch.from_numpy(vt & vr)


__all__ = ["RisPose", "ris_visibility", "segments_free", "stack_poses"]
