"""Closed-form references, written from the public recommendations (numpy only, float64, no rftwin physics).

- Free space: Friis, path gain G = (lambda / (4 pi d))^2 for isotropic antennas.
- ITU-R P.2040-3, "Effects of building materials and structures on radiowave propagation above about 100 MHz":
  complex relative permittivity eta = eps_r - j sigma / (2 pi f eps_0) (time convention exp(+j w t)); Fresnel
  coefficients of one air-material interface for TE (E perpendicular to the plane of incidence) and TM
  (E in that plane); the single-layer slab of thickness d in air (multiple internal reflections summed), with
  q = (2 pi d / lambda) sqrt(eta - sin^2 theta):
  R = r (1 - e^{-j2q}) / (1 - r^2 e^{-j2q}),  T = (1 - r^2) e^{-jq} / (1 - r^2 e^{-j2q}).
  T carries no free-space phase of the slab's thickness (the path is measured straight through it).
- Two-ray ground reflection: direct ray plus the ray reflected at the specular point of a flat ground, added as
  fields (spherical waves, vector polarisation for vertically polarised isotropic antennas).
- ITU-R P.526-16, "Propagation by diffraction", single knife edge: Fresnel-Kirchhoff parameter
  nu = h sqrt(2 (d1 + d2) / (lambda d1 d2)) and the loss J(nu) = -20 log10 |F(nu)| with F from the Fresnel
  integrals C, S (P.526 eq. 26), and its approximation J(nu) = 6.9 + 20 log10(sqrt((nu - 0.1)^2 + 1) + nu - 0.1)
  for nu > -0.78, 0 dB otherwise (P.526 eq. 31).

Every function takes and returns numpy arrays (broadcasting); angles of incidence are measured from the normal.
"""
from __future__ import annotations

import numpy as np

C0 = 299_792_458.0  # speed of light in vacuum [m/s]
EPS0 = 8.8541878128e-12  # vacuum permittivity [F/m]


def wavelength_m(frequency_hz):
    return C0 / np.asarray(frequency_hz, dtype=np.float64)


def db(x):
    """10 log10 of a power (floored at 1e-30)."""
    return 10.0 * np.log10(np.maximum(np.asarray(x, dtype=np.float64), 1e-30))


def friis_gain_db(distance_m, frequency_hz):
    """Free-space path gain (dB) between isotropic antennas: 20 log10(lambda / (4 pi d))."""
    return 20.0 * np.log10(wavelength_m(frequency_hz) / (4.0 * np.pi * np.asarray(distance_m, dtype=np.float64)))


def complex_permittivity(eps_r, sigma_s_per_m, frequency_hz):
    """eta = eps_r - j sigma / (2 pi f eps_0) (P.2040 section 2.1, exp(+j w t) convention)."""
    return np.asarray(eps_r, np.float64) - 1j * np.asarray(sigma_s_per_m, np.float64) / (
        2.0 * np.pi * np.asarray(frequency_hz, np.float64) * EPS0)


def _root(eta, theta_rad):
    # principal root: eta - sin^2 has Im <= 0 so the root decays into the material for exp(+j w t)
    return np.sqrt(eta - np.sin(theta_rad) ** 2 + 0j)


def interface_coefficients(eta, theta_rad):
    """Fresnel reflection coefficients (r_TE, r_TM) of an air-material interface (P.2040 section 2)."""
    c = np.cos(theta_rad)
    a = _root(eta, theta_rad)
    return (c - a) / (c + a), (eta * c - a) / (eta * c + a)


def slab_coefficients(eps_r, sigma_s_per_m, thickness_m, frequency_hz, theta_rad):
    """Reflection and transmission coefficients of a single slab in air (P.2040 section 3, multiple internal
    reflections summed): returns (R_TE, R_TM, T_TE, T_TM), complex, broadcast over all arguments."""
    eta = complex_permittivity(eps_r, sigma_s_per_m, frequency_hz)
    r_te, r_tm = interface_coefficients(eta, theta_rad)
    q = 2.0 * np.pi * np.asarray(thickness_m, np.float64) / wavelength_m(frequency_hz) * _root(eta, theta_rad)
    e2 = np.exp(-2j * q)
    e1 = np.exp(-1j * q)

    def rt(r):
        den = 1.0 - r * r * e2
        return r * (1.0 - e2) / den, (1.0 - r * r) * e1 / den

    R_te, T_te = rt(r_te)
    R_tm, T_tm = rt(r_tm)
    return R_te, R_tm, T_te, T_tm


def brewster_grazing_angle_rad(eps_r):
    """Grazing angle (from the surface) of the Brewster angle of a lossless half space: pi/2 - atan(sqrt(eps))."""
    return np.pi / 2 - np.arctan(np.sqrt(np.asarray(eps_r, np.float64)))


def _theta_hat(k):
    """Unit vector theta-hat of spherical coordinates for propagation directions k [..., 3] (z up)."""
    x, y, z = k[..., 0], k[..., 1], k[..., 2]
    rho = np.hypot(x, y)
    th = np.arctan2(rho, z)
    ph = np.arctan2(y, x)
    return np.stack([np.cos(th) * np.cos(ph), np.cos(th) * np.sin(ph), -np.sin(th)], axis=-1)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def slab_path_amplitude(tx_m, rx_m, plane_point_m, normal, frequency_hz, eps_r, sigma_s_per_m, thickness_m,
                        kind: str = "reflect"):
    """Complex amplitude of the single ray from ``tx_m`` to ``rx_m`` [..., 3] reflected at (``kind="reflect"``)
    or passing through (``"transmit"``) an infinite slab (point ``plane_point_m``, unit ``normal``), for
    vertically polarised isotropic antennas (field along theta-hat at both ends):
    a = lambda / (4 pi L) x (e_rx . Gamma e_tx) x exp(-j 2 pi L / lambda), L the unfolded path length.

    The incident field is split into TE (e_perp = k_i x n / |k_i x n|) and TM (e_par = e_perp x k, for the
    incident and the outgoing direction) parts, each scaled by its P.2040 slab coefficient at the angle of
    incidence, and projected on the receiver's theta-hat. Returns (amplitude, theta_rad, L)."""
    tx = np.asarray(tx_m, np.float64)
    rx = np.asarray(rx_m, np.float64)
    n = _unit(np.asarray(normal, np.float64))
    p0 = np.asarray(plane_point_m, np.float64)
    if kind == "reflect":
        img = tx - 2.0 * np.sum((tx - p0) * n, -1, keepdims=True) * n  # image of the transmitter
        length = np.linalg.norm(rx - img, axis=-1)
        k_o = _unit(rx - img)  # reflected direction (image -> receiver)
        k_i = k_o - 2.0 * np.sum(k_o * n, -1, keepdims=True) * n  # its mirror: transmitter -> plane
    elif kind == "transmit":
        length = np.linalg.norm(rx - tx, axis=-1)
        k_i = _unit(rx - tx)
        k_o = k_i
    else:
        raise ValueError(f"kind must be 'reflect' or 'transmit', not {kind!r}")
    cos_t = np.abs(np.sum(k_i * n, -1))
    theta = np.arccos(np.clip(cos_t, 0.0, 1.0))
    R_te, R_tm, T_te, T_tm = slab_coefficients(eps_r, sigma_s_per_m, thickness_m, frequency_hz, theta)
    c_te, c_tm = (R_te, R_tm) if kind == "reflect" else (T_te, T_tm)
    e_perp = np.cross(k_i, n)
    nrm = np.linalg.norm(e_perp, axis=-1, keepdims=True)
    # normal incidence: any perpendicular direction will do (TE and TM coefficients coincide there)
    fallback = np.cross(k_i, np.where(np.abs(k_i[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    e_perp = np.where(nrm > 1e-9, e_perp / np.maximum(nrm, 1e-300), _unit(fallback))
    e_par_i = np.cross(e_perp, k_i)
    e_par_o = np.cross(e_perp, k_o)
    e_tx = _theta_hat(k_i)
    field = (c_te * np.sum(e_tx * e_perp, -1))[..., None] * e_perp + \
            (c_tm * np.sum(e_tx * e_par_i, -1))[..., None] * e_par_o
    proj = np.sum(field * _theta_hat(k_o), -1)
    lam = wavelength_m(frequency_hz)
    amp = lam / (4 * np.pi * length) * proj * np.exp(-2j * np.pi * length / lam)
    return amp, theta, length


def two_ray_field(distance_m, tx_height_m, rx_height_m, frequency_hz, eps_r, sigma_s_per_m, thickness_m):
    """Two-ray model over a flat ground slab at z = 0 (vertically polarised isotropic antennas, Tx at x = 0, Rx
    at x = d). Returns the complex amplitudes (direct, reflected), a = lambda / (4 pi L) x ... x exp(-j k L),
    so that the coherent path gain is |direct + reflected|^2 (see :func:`slab_path_amplitude`)."""
    d = np.asarray(distance_m, np.float64)
    z = np.zeros_like(d)
    tx = np.stack([z, z, z + tx_height_m], -1)
    rx = np.stack([d, z, z + rx_height_m], -1)
    lam = wavelength_m(frequency_hz)
    d1 = np.linalg.norm(rx - tx, axis=-1)
    direct = lam / (4 * np.pi * d1) * np.exp(-2j * np.pi * d1 / lam)
    reflected, _, _ = slab_path_amplitude(tx, rx, [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], frequency_hz, eps_r,
                                          sigma_s_per_m, thickness_m, "reflect")
    return direct, reflected


def fresnel_kirchhoff_nu(h_m, d1_m, d2_m, frequency_hz):
    """Knife-edge parameter nu = h sqrt(2 (d1 + d2) / (lambda d1 d2)) (P.526 section 4.1); h > 0: edge above
    the line of sight."""
    lam = wavelength_m(frequency_hz)
    d1 = np.asarray(d1_m, np.float64)
    d2 = np.asarray(d2_m, np.float64)
    return np.asarray(h_m, np.float64) * np.sqrt(2.0 * (d1 + d2) / (lam * d1 * d2))


def knife_edge_loss_db(nu):
    """J(nu) from the Fresnel integrals (P.526 eq. 26): -20 log10 |((1 - C - S) + j (C - S)) / 2|, C and S the
    Fresnel cosine / sine integrals at nu (scipy's normalisation, argument pi t^2 / 2)."""
    from scipy.special import fresnel  # noqa: PLC0415

    s, c = fresnel(np.asarray(nu, np.float64))
    f = ((1.0 - c - s) + 1j * (c - s)) / 2.0
    return -20.0 * np.log10(np.abs(f))


def knife_edge_loss_approx_db(nu):
    """P.526 eq. 31: J(nu) = 6.9 + 20 log10(sqrt((nu - 0.1)^2 + 1) + nu - 0.1) for nu > -0.78, else 0 dB."""
    nu = np.asarray(nu, np.float64)
    j = 6.9 + 20.0 * np.log10(np.sqrt((nu - 0.1) ** 2 + 1.0) + nu - 0.1)
    return np.where(nu > -0.78, j, 0.0)


def _kp_transition(x):
    """Kouyoumjian-Pathak transition function F(x) = 2j sqrt(x) e^{jx} int_{sqrt(x)}^inf e^{-j t^2} dt (x >= 0),
    via scipy's Fresnel integrals (argument sqrt(2 x / pi))."""
    from scipy.special import fresnel  # noqa: PLC0415

    x = np.asarray(x, np.float64)
    sx = np.sqrt(x)
    s, c = fresnel(sx * np.sqrt(2.0 / np.pi))
    tail = np.sqrt(np.pi / 2.0) * ((0.5 - c) - 1j * (0.5 - s))
    return 2j * sx * np.exp(1j * x) * tail


def _kp_a(beta, n, sign):
    N = np.round((beta + sign * np.pi) / (2.0 * np.pi * n))
    return 2.0 * np.cos((2.0 * n * np.pi * N - beta) / 2.0) ** 2


def _utd_knife_terms(h_m, d1_m, d2_m, frequency_hz, half_angle_deg):
    """K-P terms d1..d4 (with the common factor) of the knife-edge geometry and the spreading ratio."""
    h = np.maximum(np.asarray(h_m, np.float64), 1e-6)
    k = 2.0 * np.pi / wavelength_m(frequency_hz)
    half = np.radians(half_angle_deg)
    n = 2.0 - 2.0 * half / np.pi  # exterior angle n pi = 2 pi - opening
    s1, s2 = np.hypot(d1_m, h), np.hypot(d2_m, h)
    L = s1 * s2 / (s1 + s2)
    phip = np.pi / 2 - np.arctan2(h, d1_m) - half  # from the 0-face (Tx side)
    phi = n * np.pi - (np.pi / 2 - np.arctan2(h, d2_m) - half)

    def cot(b):
        return 1.0 / np.tan(b)

    b1, b2 = phi - phip, phi + phip
    fac = -np.exp(-1j * np.pi / 4) / (2 * n * np.sqrt(2 * np.pi * k))
    d = [fac * cot((np.pi + b1) / (2 * n)) * _kp_transition(k * L * _kp_a(b1, n, 1)),
         fac * cot((np.pi - b1) / (2 * n)) * _kp_transition(k * L * _kp_a(b1, n, -1)),
         fac * cot((np.pi + b2) / (2 * n)) * _kp_transition(k * L * _kp_a(b2, n, 1)),
         fac * cot((np.pi - b2) / (2 * n)) * _kp_transition(k * L * _kp_a(b2, n, -1))]
    spread = (d1_m + d2_m) / np.sqrt(s1 * s2 * (s1 + s2))  # diffracted / free-space field per unit D
    return d, spread


def utd_knife_loss_db(h_m, d1_m, d2_m, frequency_hz, half_angle_deg, polarization: str):
    """Diffraction loss (dB, relative to free space over d1 + d2) of a perfectly conducting thin wedge by the
    first-order UTD (R. G. Kouyoumjian, P. H. Pathak, Proc. IEEE 62(11), 1974) with the face reflection factors
    of R. J. Luebbers (IEEE Trans. AP-32(1), 1984), D = d1 + d2 + R (d3 + d4) with R = -1 (soft: E parallel to
    the edge) or +1 (hard: E perpendicular to it), for Tx and Rx d1 / d2 from the edge on either side at h into
    its shadow (the geometry of :func:`rftwin.validate.closed_form_cases.knife_edge_case`; sin beta0 = 1).
    Valid where the edge path is the only one (h >= 0); h = 0 is evaluated as the limit h -> 0+ (h = 1 um),
    since the shadow-boundary term is 0 x infinity there."""
    if polarization not in ("soft", "hard"):
        raise ValueError(f"polarization must be 'soft' or 'hard', not {polarization!r}")
    (t1, t2, t3, t4), spread = _utd_knife_terms(h_m, d1_m, d2_m, frequency_hz, half_angle_deg)
    R = -1.0 if polarization == "soft" else 1.0
    return -20.0 * np.log10(np.abs(t1 + t2 + R * (t3 + t4)) * spread)


def utd_knife_loss_grouped_db(h_m, d1_m, d2_m, frequency_hz, half_angle_deg, r0: float, rn: float):
    """The same terms grouped as D = R_0 (d1 - d4) + R_n (d2 - d3), the form of Sionna RT 2.2's
    ``RadioMaterial._diffraction_matrix`` with scalar face factors R_0, R_n = +-1: for diagnosing its values."""
    (t1, t2, t3, t4), spread = _utd_knife_terms(h_m, d1_m, d2_m, frequency_hz, half_angle_deg)
    return -20.0 * np.log10(np.abs(r0 * (t1 - t4) + rn * (t2 - t3)) * spread)
