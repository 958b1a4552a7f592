"""Geometry-only polarisation bases and Jones rotations (float64 NumPy), matching Sionna RT 2.2's conventions.

All arrays broadcast over leading dimensions; vectors are [..., 3], rotators [..., 2, 2].
"""
from __future__ import annotations

import numpy as np

_POLE_Z = 1.0 - 5e-7  # Sionna: near-pole threshold of the implicit basis
EPSILON_FLOAT = 100.0 * 2.0 ** -24  # Sionna's EPSILON_FLOAT (100 x float32 epsilon)


def normalize(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1)


def theta_hat(k: np.ndarray) -> np.ndarray:
    """Spherical unit vector theta-hat of direction k (azimuth pinned to 0 at the poles)."""
    rho = np.hypot(k[..., 0], k[..., 1])
    theta = np.arctan2(rho, k[..., 2])
    phi = np.where(rho < EPSILON_FLOAT, 0.0, np.arctan2(k[..., 1], k[..., 0]))
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


def te_basis(k: np.ndarray, n: np.ndarray, frame_n: np.ndarray | None = None) -> np.ndarray:
    """Transverse-electric unit vector normalize(k x n); at normal incidence Sionna's deterministic fallback.

    Sionna evaluates ``transverse_basis_from_normal`` in the local frame of the interaction (Mitsuba's
    ``coordinate_system`` of the surface normal ``frame_n``, default ``n``); the fallback uses its tangent axes.
    """
    basis = np.cross(k, n)
    degenerate = dot(basis, basis) < 1e-12
    if np.any(degenerate):
        s, t = coordinate_system(n if frame_n is None else frame_n)
        k_x_local = dot(k, s)
        ref = np.where((np.abs(k_x_local) < 0.9)[..., None], s, t)
        fb = ref - dot(ref, k)[..., None] * k
        basis = np.where(degenerate[..., None], fb, basis)
    return normalize(basis)


def reflect(k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Mirror direction of k about the plane with normal n."""
    return k - 2.0 * dot(k, n)[..., None] * n


def safe_acos(x: np.ndarray) -> np.ndarray:
    """arccos with the argument clipped to [-1, 1] (Dr.Jit's ``safe_acos``)."""
    return np.arccos(np.clip(x, -1.0, 1.0))


def sign(x: np.ndarray) -> np.ndarray:
    """Dr.Jit's ``sign``: +1 for x >= 0 (including -0), -1 otherwise."""
    return np.where(x >= 0, 1.0, -1.0)


def diffuse_rotators(k_in: np.ndarray, k_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations of Sionna's diffuse-reflection Jones matrix (``_diffuse_reflection_matrix``).

    W_in: implicit basis of ``k_in`` -> theta-hat of ``k_in``; W_out: theta-hat of ``k_out`` -> implicit basis of
    ``k_out``. Inputs [..., 3] unit vectors, outputs [..., 2, 2].
    """
    w_in = rotator(k_in, implicit_basis(k_in), theta_hat(k_in))
    w_out = rotator(k_out, theta_hat(k_out), implicit_basis(k_out))
    return w_in, w_out


def utd_geometry(k_in: np.ndarray, k_out: np.ndarray, n0: np.ndarray, e_hat: np.ndarray, nn: np.ndarray,
                 s: np.ndarray, s_prime: np.ndarray) -> dict[str, np.ndarray]:
    """Geometry-only terms of Sionna RT 2.2's first-order UTD wedge diffraction (``_diffraction_matrix``).

    Inputs per diffracted path (shapes [M, 3] / [M]): incoming and outgoing unit directions at the diffraction
    point, ``n0`` the normal of the intersected (0-) face oriented against ``k_in``, edge direction ``e_hat`` and
    n-face normal ``nn`` of the wedge, and the distances ``s`` (diffraction point -> receiver) and ``s_prime``
    (source -> diffraction point) [m]. Sionna works in the local frame of the 0-face; all quantities here are
    rotation invariant and are evaluated in the world frame (the frame only enters the normal-incidence fallback
    of the transverse basis, which uses the tangents of ``n0``).

    Returns ``n`` [M], ``sin_beta0`` [M], ``L`` [M] (m), ``psi`` [M, 4], ``a`` [M, 4], ``cos`` [M, 2],
    ``rot`` [M, 4, 2, 2] (out_0, in_0, out_n, in_n folded with the implicit-basis rotations) and ``wide`` [M].
    """
    pi = np.pi
    wedge_angle = safe_acos(-dot(n0, nn))
    exterior = 2.0 * pi - wedge_angle
    beta0 = safe_acos(np.abs(dot(k_in, e_hat)))
    sin_beta0 = np.sin(beta0)
    to_hat = normalize(np.cross(n0, e_hat))
    ki_proj = normalize(k_in - dot(k_in, e_hat)[..., None] * e_hat)
    ko_proj = normalize(k_out - dot(k_out, e_hat)[..., None] * e_hat)
    phi_p = pi - safe_acos(-dot(ki_proj, to_hat))
    phi_p = phi_p * -sign(-dot(ki_proj, n0)) + pi
    phi = pi - safe_acos(dot(ko_proj, to_hat))
    phi = phi * -sign(dot(ko_proj, n0)) + pi
    ssum = s + s_prime
    L = np.where(ssum > 0, s * s_prime / np.where(ssum > 0, ssum, 1.0), 0.0) * sin_beta0 ** 2
    n = exterior / pi
    dif, sm = phi - phi_p, phi + phi_p

    def a_pm(beta):
        n_p = np.round((beta + pi) / (2.0 * exterior))
        n_m = np.round((beta - pi) / (2.0 * exterior))
        return 2.0 * np.cos(exterior * n_p - beta / 2.0) ** 2, 2.0 * np.cos(exterior * n_m - beta / 2.0) ** 2

    a1, a2 = a_pm(dif)
    a3, a4 = a_pm(sm)
    psi = np.stack([(pi + dif) / (2 * n), (pi - dif) / (2 * n), (pi + sm) / (2 * n), (pi - sm) / (2 * n)], -1)
    # basis changes (Hashimoto: components in the shadow-boundary bases reused for the outgoing direction)
    k_sb_0 = reflect(k_in, n0)
    k_sb_n = normalize(k_in - 2.0 * dot(k_in, nn)[..., None] * nn)
    phi_hat_prime = normalize(np.cross(k_in, e_hat))
    phi_sb_0 = -normalize(np.cross(k_sb_0, e_hat))
    phi_sb_n = -normalize(np.cross(k_sb_n, e_hat))
    phi_hat = -normalize(np.cross(k_out, e_hat))
    e_s_0 = te_basis(k_in, n0, frame_n=n0)
    e_s_n = te_basis(k_in, nn, frame_n=n0)
    w_0_in = rotator(k_in, phi_hat_prime, e_s_0)
    w_0_out = rotator(k_sb_0, e_s_0, phi_sb_0)
    w_n_in = rotator(k_in, phi_hat_prime, e_s_n)
    w_n_out = rotator(k_sb_n, e_s_n, phi_sb_n)
    w_in = rotator(k_in, implicit_basis(k_in), phi_hat_prime)
    w_out = rotator(k_out, phi_hat, implicit_basis(k_out))
    wide = exterior > pi + phi_p
    out_n = np.where(wide[..., None, None], w_out, w_out @ w_n_out)
    in_n = np.where(wide[..., None, None], w_in, w_n_in @ w_in)
    rot = np.stack([w_out @ w_0_out, w_0_in @ w_in, out_n, in_n], -3)
    cos = np.stack([np.abs(dot(k_in, n0)), np.abs(dot(k_in, nn))], -1)
    return dict(n=n, sin_beta0=sin_beta0, L=L, psi=psi, a=np.stack([a1, a2, a3, a4], -1), cos=cos, rot=rot,
                wide=wide)
