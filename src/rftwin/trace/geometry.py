"""Geometry-only polarisation bases and Jones rotations (float64 NumPy), matching Sionna RT 2.2's conventions.

All arrays broadcast over leading dimensions; vectors are [..., 3], rotators [..., 2, 2].
"""
from __future__ import annotations

import numpy as np

_POLE_Z = 1.0 - 5e-7  # Sionna: near-pole threshold of the implicit basis


def normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1)


def theta_hat(k: np.ndarray) -> np.ndarray:
    """Spherical unit vector theta-hat of direction k (azimuth pinned to 0 at the poles)."""
    rho = np.hypot(k[..., 0], k[..., 1])
    theta = np.arctan2(rho, k[..., 2])
    phi = np.where(rho < 1e-7, 0.0, np.arctan2(k[..., 1], k[..., 0]))
    return np.stack([np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi), -np.sin(theta)], axis=-1)


def implicit_basis(k: np.ndarray) -> np.ndarray:
    """Sionna's implicit Jones basis vector s(k): theta-hat, with a fallback near the poles."""
    v = theta_hat(k)
    ref = np.array([-1.0, 0.0, 0.0])
    fb = normalize(ref - dot(ref, k)[..., None] * k)
    return np.where((np.abs(k[..., 2]) > _POLE_Z)[..., None], fb, v)


def rotator(k: np.ndarray, s_from: np.ndarray, s_to: np.ndarray) -> np.ndarray:
    """2x2 change of basis for a wave along k from basis vector s_from to s_to: [[c, s], [-s, c]]."""
    c = dot(s_from, s_to)
    s = dot(k, np.cross(s_from, s_to))
    return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)


def coordinate_system(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mitsuba's ``coordinate_system``: tangents (s, t) completing the normal n to an orthonormal frame."""
    sign = np.where(n[..., 2] >= 0, 1.0, -1.0)
    a = -1.0 / (sign + n[..., 2])
    b = n[..., 0] * n[..., 1] * a
    s = np.stack([1.0 + sign * n[..., 0] ** 2 * a, sign * b, -sign * n[..., 0]], -1)
    t = np.stack([b, sign + n[..., 1] ** 2 * a, -n[..., 1]], -1)
    return s, t


def te_basis(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Transverse-electric unit vector normalize(k x n); at normal incidence Sionna's deterministic fallback."""
    basis = np.cross(k, n)
    degenerate = dot(basis, basis) < 1e-12
    if np.any(degenerate):
        s, t = coordinate_system(n)
        k_x_local = dot(k, s)
        ref = np.where((np.abs(k_x_local) < 0.9)[..., None], s, t)
        fb = ref - dot(ref, k)[..., None] * k
        basis = np.where(degenerate[..., None], fb, basis)
    return normalize(basis)


def reflect(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Mirror direction of k about the plane with normal n."""
    return k - 2.0 * dot(k, n)[..., None] * n
