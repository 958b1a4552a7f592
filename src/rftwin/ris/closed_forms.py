"""Closed forms the RIS model is checked against (numpy / scipy; references for tests and benchmarks only)."""
from __future__ import annotations

import math

import numpy as np

from rftwin.ris.physics import C0


def plate_specular_gain(width_m: float, height_m: float, d1_m: float, d2_m: float, theta_deg: float,
                        frequency_hz: float) -> float:
    """Path gain (linear) of the specular reflection off a perfectly reflecting rectangular plate (centred on the
    specular point; ``width_m`` in the plane of incidence, ``height_m`` across it), Tx and Rx at d1, d2 from its
    centre at incidence angle theta: physical optics with the paraxial (Fresnel) expansion of the path length,
    which factorises into Fresnel integrals,

        G = (lambda / 4 pi (d1 + d2))^2 |F(T_w) F(T_h)|^2,  F(T) = (C(T) - j S(T)) / ((1 - j) / 2),
        T_w = (w / 2) sqrt(2 k a_w / pi), a_w = cos^2(theta) (1/d1 + 1/d2) / 2, a_h = (1/d1 + 1/d2) / 2,

    -> the image-theory gain (lambda / 4 pi (d1 + d2))^2 as the plate grows (F -> 1); up to ~ +6 dB when it
    covers the first Fresnel zone only, and the decay of a small plate below it."""
    from scipy.special import fresnel  # noqa: PLC0415

    lam = C0 / frequency_hz
    k = 2 * math.pi / lam
    inv = 1.0 / d1_m + 1.0 / d2_m
    out = (lam / (4 * math.pi * (d1_m + d2_m))) ** 2
    for half, a in ((width_m / 2, math.cos(math.radians(theta_deg)) ** 2 * inv / 2), (height_m / 2, inv / 2)):
        s, c = fresnel(half * math.sqrt(2 * k * a / math.pi))
        out *= abs((c - 1j * s) / ((1 - 1j) / 2)) ** 2
    return float(out)


def quantisation_loss_db(bits: int) -> float:
    """Mean array-gain loss [dB] of b-bit phase quantisation with uniformly distributed errors:
    -20 log10(sinc(1 / 2^b)) (0.91 dB for 2 bits, 3.92 dB for 1 bit)."""
    x = math.pi / 2**bits
    return float(-20 * np.log10(math.sin(x) / x))


__all__ = ["plate_specular_gain", "quantisation_loss_db"]
