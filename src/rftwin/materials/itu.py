"""ITU-R P.2040-3 Table 3 material parameters, as used by Sionna RT 2.2.

eps_r = a * f_GHz**b, sigma = c * f_GHz**d [S/m], each valid on a frequency range [GHz].
"""
from __future__ import annotations

from dataclasses import dataclass

# name -> list of ((f_min_GHz, f_max_GHz), (a, b, c, d)); first matching range wins (Sionna's rule)
ITU_TABLE: dict[str, list[tuple[tuple[float, float], tuple[float, float, float, float]]]] = {
    "vacuum": [((0.001, 100.0), (1.0, 0.0, 0.0, 0.0))],
    "concrete": [((1.0, 100.0), (5.24, 0.0, 0.0462, 0.7822)), ((110.0, 330.0), (5.17, 0.0, 0.0145, 1.09))],
    "brick": [((1.0, 40.0), (3.91, 0.0, 0.0238, 0.16)), ((110.0, 330.0), (4.15, 0.0, 0.0006, 1.5712))],
    "plasterboard": [((1.0, 100.0), (2.73, 0.0, 0.0085, 0.9395)), ((110.0, 330.0), (2.56, 0.0, 0.0001, 1.7799)),
                     ((100.0, 400.0), (2.65, 0.0, 0.0002, 1.598))],
    "wood": [((0.001, 100.0), (1.99, 0.0, 0.0047, 1.0718)), ((110.0, 330.0), (1.82, 0.0, 0.004, 1.0761)),
             ((100.0, 400.0), (2.1183, 0.0, 0.0055, 1.1113))],
    "glass": [((0.1, 100.0), (6.31, 0.0, 0.0036, 1.3394)), ((220.0, 450.0), (5.79, 0.0, 0.0004, 1.658)),
              ((100.0, 400.0), (6.5767, 0.0, 0.0012, 1.4697))],
    "clear_acrylic": [((110.0, 330.0), (2.58, 0.0, 0.0001, 1.6524))],
    "ceiling_board": [((1.0, 100.0), (1.48, 0.0, 0.0011, 1.075)), ((220.0, 450.0), (1.52, 0.0, 0.0029, 1.029)),
                      ((100.0, 400.0), (1.2567, 0.0, 0.00013, 1.454))],
    "chipboard": [((1.0, 100.0), (2.58, 0.0, 0.0217, 0.78)), ((100.0, 200.0), (2.16, 0.0, 0.0023, 1.359))],
    "plywood": [((1.0, 40.0), (2.71, 0.0, 0.33, 0.0)), ((110.0, 330.0), (1.94, 0.0, 0.0067, 0.9982)),
                ((100.0, 400.0), (2.17, 0.0, 0.0063, 1.045))],
    "marble": [((1.0, 60.0), (7.074, 0.0, 0.0055, 0.9262)), ((110.0, 330.0), (7.94, 0.0, 0.0001, 1.733)),
               ((100.0, 400.0), (8.62, 0.0, 0.0027, 1.15))],
    "floorboard": [((50.0, 100.0), (3.66, 0.0, 0.0044, 1.3515)), ((220.0, 300.0), (5.27, 0.0, 2.22e-17, 7.3413)),
                   ((300.0, 400.0), (5.27, 0.0, 0.0003, 2.0298)), ((400.0, 450.0), (5.27, 0.0, 49.8726, 0.0)),
                   ((100.0, 400.0), (3.1575, 0.0, 0.001675, 1.32775))],
    "vinyl_tile": [((1.0, 40.0), (3.62, 0.0, 0.0051, 0.8422))],
    "carpet_tile": [((1.0, 40.0), (2.08, 0.0, 0.0009, 0.82))],
    "asphalt_concrete": [((1.0, 40.0), (4.83, 0.0, 0.0108, 1.3969))],
    "metal": [((1.0, 100.0), (1.0, 0.0, 1e7, 0.0))],
    "very_dry_ground": [((1.0, 10.0), (3.0, 0.0, 0.00015, 2.52))],
    "medium_dry_ground": [((1.0, 10.0), (15.0, -0.1, 0.035, 1.63))],
    "wet_ground": [((1.0, 10.0), (30.0, -0.4, 0.15, 1.3))],
}

ITU_NAMES = tuple(ITU_TABLE)
# Materials that make sense as calibration priors (vacuum and metal are degenerate for eps/sigma fitting).
DIELECTRIC_NAMES = tuple(n for n in ITU_NAMES if n not in ("vacuum", "metal"))


def power_law_eval(a, b, c, d, frequency_hz):
    """eps_r = a * f_GHz**b and sigma = c * f_GHz**d (S/m) at ``frequency_hz`` (Hz; a number or an array): the one
    read-out of power-law coefficients (ITU rows, ``materials.json`` records with a, b, c, d)."""
    f = frequency_hz / 1e9
    return a * f**b, c * f**d


@dataclass(frozen=True)
class PowerLaw:
    """eps_r = a * f_GHz**b, sigma = c * f_GHz**d (S/m)."""

    a: float
    b: float
    c: float
    d: float
    f_min_hz: float
    f_max_hz: float

    def eval(self, frequency_hz: float) -> tuple[float, float]:
        return power_law_eval(self.a, self.b, self.c, self.d, frequency_hz)


def itu_power_law(name: str, frequency_hz: float) -> PowerLaw:
    """The (a, b, c, d) row of ITU material ``name`` valid at ``frequency_hz``.

    Raises ValueError naming the material and the valid ranges when the frequency is outside all of them.
    """
    if name not in ITU_TABLE:
        raise ValueError(f"unknown ITU material '{name}'; expected one of: {', '.join(ITU_NAMES)}")
    f = frequency_hz / 1e9
    for (lo, hi), (a, b, c, d) in ITU_TABLE[name]:
        if lo <= f <= hi:
            return PowerLaw(a, b, c, d, lo * 1e9, hi * 1e9)
    ranges = ", ".join(f"{lo:g}-{hi:g} GHz" for (lo, hi), _ in ITU_TABLE[name])
    raise ValueError(f"ITU material '{name}' is not defined at {f:g} GHz (valid: {ranges})")


def itu_eps_sigma(name: str, frequency_hz: float) -> tuple[float, float]:
    """(relative permittivity, conductivity [S/m]) of ITU material ``name`` at ``frequency_hz``."""
    return itu_power_law(name, frequency_hz).eval(frequency_hz)


def itu_mean(frequency_hz: float) -> tuple[float, float]:
    """Mean (eps_r, sigma) over the dielectric ITU materials defined at ``frequency_hz`` (the 'uniform' prior)."""
    vals = []
    for n in DIELECTRIC_NAMES:
        try:
            vals.append(itu_eps_sigma(n, frequency_hz))
        except ValueError:
            continue
    if not vals:
        raise ValueError(f"no ITU material is defined at {frequency_hz / 1e9:g} GHz")
    return sum(v[0] for v in vals) / len(vals), sum(v[1] for v in vals) / len(vals)


def normalise_label(label: str, extra: tuple[str, ...] = ()) -> str:
    """``label`` as an ITU material name (lower case, ``_`` for spaces and dashes), or one of ``extra``;
    ValueError naming the label, the closest name and the known ones."""
    import difflib  # noqa: PLC0415
    import re  # noqa: PLC0415

    lab = re.sub(r"[\s-]+", "_", label.strip().lower())
    if lab in ITU_NAMES or lab in extra:
        return lab
    close = difflib.get_close_matches(lab, (*ITU_NAMES, *extra), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ValueError(f"label '{label}': unknown material{hint}; expected {' or '.join(extra) + ' or ' if extra else ''}"
                     f"one of {', '.join(ITU_NAMES)}")
